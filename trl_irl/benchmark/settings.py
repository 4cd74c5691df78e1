"""What one comparison of `trl_irl.benchmark.comparison` trains, and the settings measured to suit each regime."""

import dataclasses
from dataclasses import dataclass

from .choices import BY_NAME_ONLY, METHODS


# Completions per prompt of every GRPO-based method (the group GRPO's baseline is taken over)
NUM_GENERATIONS = 8
# Where SFT's and every method's end are also sampled (1.0 is the row itself), for their best temperatures
TEMPERATURE_GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


# The pretrained regime (issue 34): a base pretrained on every rule, 128 demonstrations of a narrower expert. Its
# headroom was checked before any comparison was read: GRPO with the exact reward lowered the reverse KL from SFT's
# best temperature by 24% (10 seeds, docs/benchmarks.md)
PRETRAINED_REGIME = {
    "num_demonstrations": 128,
    "sft_steps": 400,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "sft_learning_rate": 3e-4,
    "sft_early_stopping": True,
    # 128 demonstrations are 8 batches: the held-out loss is lowest within a few epochs, so it is read every 5 steps
    # (the exact divergences every `eval_every`, as in the other regimes)
    "sft_eval_every": 5,
    "save_models": True,
    "num_eval_prompts": 64,
    "eval_every": 25,
    "adversarial_batch_size": 64,
    "adversarial_learning_rate": 1e-4,
    "sft_temperatures": TEMPERATURE_GRID,
    "method_temperatures": TEMPERATURE_GRID,
}


# The methods a regime trains unless told. `distillation` needs the distil regime's teacher's logits; `large_sft` (a
# model of the teacher's size, about 3.5 minutes in the distil regime) is asked for by name. The distil regime trains
# the path measured there (GAIL with `large_sft` as discriminator) against SFT and the two limits, about 13 minutes
def default_methods(regime: str) -> tuple[str, ...]:
    if regime == "distil":
        return ("sft", "gail", "oracle", "distillation")
    return tuple(method for method in METHODS if method not in BY_NAME_ONLY)


@dataclass
class ComparisonSettings:
    """What one comparison trains. The defaults took about 2 minutes on 2 CPU cores (every method, memorise regime)."""

    regime: str = "memorise"
    num_demonstrations: int = 64
    sft_steps: int = 150
    adversarial_steps: int = 120
    eval_every: int = 20
    num_eval_prompts: int = 16
    seed: int = 0
    # None: `default_methods(regime)`
    methods: tuple[str, ...] | None = None
    hidden_size: int = 128
    num_hidden_layers: int = 2
    sft_learning_rate: float = 3e-3
    adversarial_learning_rate: float = 1e-4
    # Completions per step (`num_generations` of them per prompt) of the adversarial methods and the oracle
    adversarial_batch_size: int = 16
    adversarial_kl_coef: float = 0.05
    disc_warmup_generations: int = 5
    # A tenth of the rules regime's SFT learning rate: at SFT's own (1e-3) the likelihood-ratio discriminator
    # memorised its demonstrations (held-out loss above ln 2, reward fidelity 0.08); at 3e-5 it learned too little
    disc_learning_rate: float = 1e-4
    disc_type: str = "likelihood_ratio"
    # None: the trainers' default for the discriminator type (2 for the likelihood ratio, 1 for a classifier)
    disc_updates_per_generation: int | None = None
    disc_demonstration_source: str = "dataset"
    # GRPO's reward scaling, for the adversarial methods and the oracle alike
    scale_rewards: str = "group"
    # Where every trainer's logs go, as `TrainingArguments.report_to` ("tensorboard", "trackio", "wandb", ...)
    report_to: str = "none"
    # The SFT checkpoint is also evaluated sampling at these temperatures (rows `sft_temperature_0.8`, ...): sharpening
    # lowers the reverse KL for free, a baseline that costs no training
    sft_temperatures: tuple[float, ...] = (0.8, 0.6)
    # Every other method's end is evaluated at these temperatures too (rows `gail_temperature_0.8`, ...): a
    # mode-seeking method is then compared with the others each at its best temperature
    method_temperatures: tuple[float, ...] = ()
    # The adversarial methods' discriminator checkpoint (default: a copy of the SFT start); `{seed}` and
    # `{num_demonstrations}` are filled in, so that a sweep can give each seed a discriminator trained longer than its
    # policy: `"runs_sft3000/rules-{num_demonstrations}-seed{seed}/sft"`
    discriminator_checkpoint: str | None = None
    # The adversarial methods' policy starts from SFT's checkpoint at this step (saved during the SFT run) and their
    # discriminator from SFT's end (unless `discriminator_checkpoint` is set): one SFT run gives a discriminator that
    # knows more than the policy. The `sft` row and the oracle stay at SFT's end, the model this recipe must beat.
    policy_from_sft_step: int | None = None
    # Any other `GAILConfig` / `AIRLConfig` settings of the adversarial methods (`{"disc_label_smoothing": 0.2}`)
    adversarial_config: dict = dataclasses.field(default_factory=dict)
    # The adversarial methods' discriminator is `large_sft`'s end: a model of the teacher's size trained by SFT on the
    # same demonstrations (GAD's setting: a discriminator that can know more than the policy), trained first
    disc_from_large_sft: bool = False
    # The size of the distil regime's teacher (`benchmark.teacher`) and of `large_sft`'s model, and the teacher's SFT
    # steps on the rule expert's demonstrations
    teacher_hidden_size: int = 256
    teacher_num_hidden_layers: int = 4
    teacher_steps: int = 1500
    # The pretrained regime's base (`benchmark.pretraining`): SFT steps on the broad rule mixture, its examples, and
    # where it is kept (default: in the run's folder; a sweep shares one across seeds)
    pretraining_steps: int = 3000
    pretraining_examples: int = 8192
    pretrained_base_dir: str | None = None
    # SFT as a user with few demonstrations runs it: evaluated on held-out demonstrations every `sft_eval_every` steps
    # (every `eval_every` where None), its checkpoint with the lowest loss there kept (`load_best_model_at_end`)
    sft_early_stopping: bool = False
    sft_eval_every: int | None = None
    num_validation_demonstrations: int = 32
    # Every method's end saved in its folder (SFT's always is), for checks read from the models afterwards (how far
    # `trl-irl evaluate`'s proxies track the exact divergences: benchmarks/proxy_validation.py)
    save_models: bool = False
    # `sdft`'s teacher prompt puts the demonstration before the prompt (`{privileged_context}\n\n{prompt}`) instead of
    # after it (TRL's default, `{prompt}\n\n{privileged_context}`, where a text model's next token ends the response)
    sdft_demonstration_first: bool = False

    def __post_init__(self):
        if self.methods is None:
            self.methods = default_methods(self.regime)

    def adversarial_trainer_settings(self) -> dict:
        """
        The GRPO and discriminator settings of the adversarial methods (and, where they apply, of the oracle and the
        distillation baselines), less `adversarial_config`: what docs/benchmarks.md lists beside the trainers' own.
        """
        return {
            "learning_rate": self.adversarial_learning_rate,
            "disc_learning_rate": self.disc_learning_rate,
            "beta": self.adversarial_kl_coef,
            "disc_warmup_generations": self.disc_warmup_generations,
            "disc_type": self.disc_type,
            "disc_updates_per_generation": self.disc_updates_per_generation,
            "disc_demonstration_source": self.disc_demonstration_source,
            "scale_rewards": self.scale_rewards,
            "per_device_train_batch_size": self.adversarial_batch_size,
            "num_generations": NUM_GENERATIONS,
            "max_steps": self.adversarial_steps,
        }

    @classmethod
    def for_regime(cls, regime: str, quick: bool = False, **overrides) -> "ComparisonSettings":
        """
        The settings measured to suit `regime`; `quick` shortens training (25 s in all on 2 CPU cores for
        the memorise regime), and `overrides` replace any field.

        The rules regime needs a larger model and longer SFT: with the memorise regime's model, SFT left 67% of its
        mass on invalid responses to unseen prompts after 600 steps; with 4 layers, hidden size 256 and learning rate
        1e-3 on 2048 demonstrations it reached about 50% invalid by step 1000 and stayed there until the learning rate
        had decayed at step 1500. Not a plateau of SFT itself: with 3000 steps (the same schedule, stretched) it went
        on to 26-37% invalid (3 seeds, docs/benchmarks.md, 2026-11-30).

        In the rules regime SFT runs for 3000 steps and GAIL and AIRL start their policy from its middle checkpoint,
        with the discriminator from its end (`policy_from_sft_step`, half of `sft_steps` unless given): both then
        ended below SFT's end, the checkpoint their discriminator starts from, in every seed measured, where a
        discriminator copied from the policy's own checkpoint left them within noise of it, and SFT continued inside
        the trainer (`disc_pretraining_steps`) did less (docs/benchmarks.md, fourth reading).
        """
        settings = {"regime": regime}
        if regime == "rules":
            settings |= {
                "num_demonstrations": 2048,
                "sft_steps": 3000,
                "hidden_size": 256,
                "num_hidden_layers": 4,
                "sft_learning_rate": 1e-3,
                "num_eval_prompts": 64,
                "eval_every": 50,
                # The smallest budget tried under which GRPO with the exact reward improved on SFT by far more than
                # the seed noise (seed 0: reverse KL 3.07 to 1.54; batch 16 at 1e-4: 2.71, at 3e-4: 3.31, worse)
                "adversarial_batch_size": 64,
                "adversarial_learning_rate": 3e-4,
            }
        if regime == "distil":
            # A student a quarter as wide and half as deep as the teacher (64 x 2 layers against 256 x 4), with the
            # rules regime's GRPO batch and learning rate. Seed 0 with 120 GRPO steps: SFT's end 1.39 +- 0.13, the
            # oracle 1.10, DistillationTrainer 0.98; GRPO is cheap at this size (13 s), so 4 times the steps.
            # GAIL's policy starts from SFT's end with a teacher-sized SFT model as its discriminator: that beat SFT
            # at its best temperature in 3 seeds of 3, where the two-checkpoint recipe lost to it in 3 of 3
            # (docs/benchmarks.md, distil regime)
            settings |= {
                "disc_from_large_sft": True,
                "policy_from_sft_step": None,
                "adversarial_steps": 480,
                "num_demonstrations": 2048,
                "sft_steps": 1500,
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "sft_learning_rate": 1e-3,
                "num_eval_prompts": 64,
                "eval_every": 50,
                "adversarial_batch_size": 64,
                "adversarial_learning_rate": 3e-4,
                # SFT's best temperature from a grid, as a user would pick it (1.0 is the `sft` row itself)
                "sft_temperatures": TEMPERATURE_GRID,
                "method_temperatures": TEMPERATURE_GRID,
            }
        if regime == "pretrained":
            settings |= PRETRAINED_REGIME
        if quick:
            settings |= {"sft_steps": 100, "adversarial_steps": 40, "eval_every": 20, "teacher_steps": 100}
            settings |= {"pretraining_steps": 100} if regime == "pretrained" else {}
        settings |= overrides
        if regime == "rules" and "policy_from_sft_step" not in overrides:
            settings["policy_from_sft_step"] = settings["sft_steps"] // 2
        return cls(**settings)
