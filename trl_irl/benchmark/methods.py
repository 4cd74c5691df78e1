"""How each method of a comparison is trained: one builder per method of `choices.METHODS`.

A builder gets the comparison's run (`ComparisonRun`: settings, expert, demonstrations, shared trainer settings) and
returns the trainer with its callbacks (`BuiltMethod`); `comparison.run_comparison` trains the builders in the order
of `METHODS` and evaluates them alike. Methods:

- `sft`: TRL's `SFTTrainer` (the baseline), from the base model.
- `weighted_sft`: `WeightedSFTTrainer` (occupancy weights), from the base model, same steps.
- `large_sft`: TRL's `SFTTrainer` on a model of the teacher's size (`teacher_hidden_size`, ...), same steps: a
  larger model than the policy, and with `disc_from_large_sft` the adversarial methods' discriminator.
- `gail`, `gail_token`, `airl`, `airl_token`: the adversarial trainers (sequence or token level), started from the SFT
  checkpoint, as adversarial imitation is meant to be used, or with `policy_from_sft_step` from an earlier checkpoint
  of the same SFT run, with their discriminator from its end.
- `gail_frozen`, `airl_frozen`: the same at sequence level with `disc_updates_per_generation=0`: the discriminator
  never trains, so the reward stays what it knew at the start (with `large_sft`, the fixed `log q_large - log pi`).
- `gad` (asked for by name): GAIL with GAD's discriminator (arXiv 2511.10643): a sequence classifier on the policy's
  own starting checkpoint (never the larger model), the pairwise Bradley-Terry loss of each completion against its
  prompt's demonstration, its score as the reward (`reverse_kl`), after the settings' discriminator warm-up.
- `oracle`: TRL's `GRPOTrainer` from the SFT checkpoint with the exact reverse-KL reward
  `log p_exp(y | x) - log pi(y | x)` (the expert smoothed as in the metrics): the best reward any discriminator could
  hand out, with the same GRPO settings as the adversarial methods.
- `distillation` (distil regime only): TRL's `DistillationTrainer` from the SFT checkpoint with the teacher's
  logits, the white-box ceiling of learning from its text, with the adversarial methods' batch, learning rate,
  steps and completion length.
- `proxy_distillation`: the same trainer and settings with `large_sft` as `teacher_model`: what a user who trained a
  larger SFT model can do with its logits, without any discriminator.
- `proxy_distillation_jsd`: the same at TRL's symmetric generalised Jensen-Shannon divergence (`beta=0.5`, GKD's
  choice) instead of `DistillationConfig`'s default reverse KL (`beta=1`): distillation at a setting of its own.
- `proxy_sequence_distillation`: TRL's `SFTTrainer` from the SFT checkpoint on `large_sft`'s samples of the
  demonstrations' prompts (sequence-level distillation, GAD's baseline), as many samples as the on-policy methods
  draw, at their batch, learning rate and steps.
- `checker`, `checker_kl`, `checker_gail_frozen`, `checker_gail` (asked for by name): a verifiable reward
  (`ExpertSupportChecker`: 1 for any response the rules allow, 0 otherwise; in the distil regime the rules its
  teacher learned, which the teacher does not always follow) from the SFT
  checkpoint with the adversarial methods' GRPO settings: alone (GRPO, `beta=0`), with GRPO's KL to the reference
  (the settings' `beta`), and as `reward_funcs` beside GAIL's discriminator, frozen and trained (the settings'
  discriminator, `beta=0`): what the discriminator adds to a reward that checks correctness and nothing else.
- `sdft` (asked for by name): TRL's experimental `SDFTTrainer` from the SFT checkpoint, the model its own teacher
  with the demonstration in its prompt, with the same batch, learning rate, steps and completion length.
"""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import DistillationConfig, DistillationTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from ..discriminator import LikelihoodRatioDiscriminator
from ..trainer import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, WeightedSFTConfig, WeightedSFTTrainer
from .choices import METHODS
from .monitoring import DiscriminatorAtStart, DivergenceTracker, ExactReverseKLReward, RewardMonitor, Stopwatch
from .settings import ComparisonSettings
from .synthetic import ExpertSupportChecker, SyntheticExpert
from .teacher import MAX_NEW_TOKENS, TeacherExpert, TeacherReverseKLReward, sample


@dataclass
class ComparisonRun:
    """What every method's builder needs: the settings, the expert, the data, the shared trainer settings."""

    settings: ComparisonSettings
    output_dir: Path
    expert: SyntheticExpert | TeacherExpert
    demonstrations: object
    tokenizer: object
    base: Path
    large_base: Path | None
    sft_middle: Path | None
    # Prompts and one expert response each, unseen in training where the regime has unseen prompts
    heldout: tuple[list, list]
    # With `sft_early_stopping`: the demonstrations SFT is evaluated on to keep its best checkpoint
    validation: object
    evaluate: object
    common: dict
    # Times `evaluate` and the learned reward's monitoring: the work a comparison adds to each method's training
    stopwatch: Stopwatch

    @property
    def sft_settings(self) -> dict:
        settings = self.settings
        return {
            **self.common,
            "learning_rate": settings.sft_learning_rate,
            "per_device_train_batch_size": 16,
            "max_steps": settings.sft_steps,
        }

    @property
    def adversarial_settings(self) -> dict:
        return {
            **self.common,
            **self.settings.adversarial_trainer_settings(),
            "max_completion_length": MAX_NEW_TOKENS,
        }

    def adversarial_settings_for(self, config_class, leave_out: tuple[str, ...] = ()) -> dict:
        """The adversarial methods' settings that `config_class` takes (a baseline trainer's), less `leave_out`."""
        fields = {field.name for field in dataclasses.fields(config_class)} - set(leave_out)
        return {key: value for key, value in self.adversarial_settings.items() if key in fields}

    def exact_reward(self) -> ExactReverseKLReward | TeacherReverseKLReward:
        """The exact reverse-KL reward of this regime's expert; its `policy` is set once the trainer exists."""
        if isinstance(self.expert, TeacherExpert):
            return TeacherReverseKLReward(self.expert)
        return ExactReverseKLReward(self.expert, self.tokenizer)

    def checker(self) -> ExpertSupportChecker:
        """The verifiable reward: the synthetic expert's support, or in the distil regime the rules of its teacher."""
        rules = self.expert.prompts_from if isinstance(self.expert, TeacherExpert) else self.expert
        return ExpertSupportChecker(rules, self.tokenizer)


@dataclass
class BuiltMethod:
    trainer: object
    tracker: DivergenceTracker
    discriminator_at_start: DiscriminatorAtStart | None = None


def _build_sft(run: ComparisonRun, method: str, config_class=None, trainer_class=None) -> BuiltMethod:
    """TRL's SFT (or, through `config_class`, `trainer_class`, WeightedSFT) from the base model (or the large one)."""
    config_class, trainer_class = config_class or SFTConfig, trainer_class or SFTTrainer
    tracker = DivergenceTracker(run.evaluate, 0, run.settings.eval_every)
    saving = {}
    if method == "sft" and run.sft_middle is not None:
        # SFT's checkpoint where the adversarial methods' policy starts; saving changes nothing in the run
        saving = {"save_strategy": "steps", "save_steps": run.settings.policy_from_sft_step, "save_only_model": True}
    if run.validation is not None:
        every = run.settings.sft_eval_every or run.settings.eval_every
        saving = {
            "eval_strategy": "steps",
            "eval_steps": every,
            "save_strategy": "steps",
            "save_steps": every,
            "save_only_model": True,
            "save_total_limit": 1,
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
        }
    trainer = trainer_class(
        model=str(run.large_base if method == "large_sft" else run.base),
        args=config_class(str(run.output_dir / method), **run.sft_settings | saving),
        train_dataset=run.demonstrations,
        eval_dataset=run.validation,
        callbacks=[tracker],
    )
    return BuiltMethod(trainer, tracker)


def _build_checker(run: ComparisonRun, method: str) -> BuiltMethod:
    """GRPO from the SFT checkpoint on the verifiable reward alone: without (`checker`) or with (`checker_kl`) KL."""
    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    grpo_settings = run.adversarial_settings_for(GRPOConfig)
    if method == "checker":
        grpo_settings["beta"] = 0.0
    trainer = GRPOTrainer(
        model=str(run.output_dir / "sft"),
        reward_funcs=run.checker(),
        args=GRPOConfig(str(run.output_dir / method), **grpo_settings),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    return BuiltMethod(trainer, tracker)


def _build_oracle(run: ComparisonRun, method: str) -> BuiltMethod:
    """GRPO from the SFT checkpoint with the exact reverse-KL reward and the adversarial methods' GRPO settings."""
    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    reward = run.exact_reward()
    grpo_settings = run.adversarial_settings_for(GRPOConfig)
    trainer = GRPOTrainer(
        model=str(run.output_dir / "sft"),
        reward_funcs=reward,
        args=GRPOConfig(str(run.output_dir / method), **grpo_settings),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    reward.policy = trainer.model
    return BuiltMethod(trainer, tracker)


# GAD's discriminator and reward (`gad`); the settings' likelihood-ratio terms do not apply to a classifier
GAD_CONFIG = {
    "disc_type": "classifier",
    "disc_loss_type": "bradley_terry",
    "disc_demonstration_source": "batch",
    "divergence": "reverse_kl",
    "disc_replay_buffer_size": 0,
    "disc_likelihood_weight": 0.0,
    "disc_pretraining_steps": 0,
}


def _build_adversarial(
    run: ComparisonRun,
    method: str,
    config_class,
    trainer_class,
    level: str,
    frozen: bool = False,
    pairwise: bool = False,
    checker: bool = False,
) -> BuiltMethod:
    """
    GAIL or AIRL at `level`, from the SFT checkpoint (or its middle, with the discriminator from its end); `frozen`:
    the discriminator never updates (`disc_updates_per_generation=0`), whatever the settings say; `pairwise`: GAD's
    discriminator (`GAD_CONFIG`) on the policy's own starting checkpoint; `checker`: the verifiable reward beside the
    discriminator's, with no KL term (the discriminator's reward is what keeps the policy near the expert).
    """
    settings = run.settings
    reward_monitor = RewardMonitor(run.exact_reward(), run.stopwatch)
    tracker = DivergenceTracker(run.evaluate, settings.sft_steps, settings.eval_every, reward_monitor)
    discriminator = settings.discriminator_checkpoint
    if discriminator is not None:
        discriminator = discriminator.format(seed=settings.seed, num_demonstrations=settings.num_demonstrations)
    elif settings.disc_from_large_sft:
        discriminator = str(run.output_dir / "large_sft")
    elif run.sft_middle is not None:
        discriminator = str(run.output_dir / "sft")
    config = run.adversarial_settings | settings.adversarial_config
    if frozen:
        config["disc_updates_per_generation"] = 0
    if pairwise:
        discriminator, config = None, config | GAD_CONFIG
    if checker:
        config["beta"] = 0.0
    trainer = trainer_class(
        model=str(run.sft_middle or run.output_dir / "sft"),
        discriminator=discriminator,
        reward_funcs=run.checker() if checker else None,
        args=config_class(str(run.output_dir / method), disc_level=level, **config),
        train_dataset=run.demonstrations,
        callbacks=[tracker, reward_monitor],
    )
    reward_monitor.exact_reward.policy = trainer.model
    built = BuiltMethod(trainer, tracker)
    if isinstance(trainer.discriminator, LikelihoodRatioDiscriminator):
        built.discriminator_at_start = DiscriminatorAtStart(run.evaluate, trainer.discriminator)
        trainer.add_callback(built.discriminator_at_start)
    return built


# `DistillationConfig.beta` of `proxy_distillation_jsd`: 0 is forward KL, 1 (TRL's default) reverse KL, 0.5 the JSD
JSD_BETA = 0.5


def _build_distillation(run: ComparisonRun, method: str) -> BuiltMethod:
    """
    TRL's `DistillationTrainer` from the SFT checkpoint, on-policy, with the adversarial methods' batch, learning rate
    and steps, and as teacher the distil regime's teacher (`distillation`: its logits, the white-box ceiling of
    learning from its text) or `large_sft` (`proxy_distillation`: the larger model a user with only text can train;
    `proxy_distillation_jsd`: the same at the generalised JSD with `beta=0.5`). GRPO's `beta` (a KL coefficient) is
    not DistillationConfig's (which divergence), so it is never passed on.
    """
    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    settings = run.adversarial_settings_for(DistillationConfig, leave_out=("beta",))
    if method == "proxy_distillation_jsd":
        settings["beta"] = JSD_BETA
    teacher = run.expert.model if method == "distillation" else str(run.output_dir / "large_sft")
    trainer = DistillationTrainer(
        model=str(run.output_dir / "sft"),
        teacher_model=teacher,
        args=DistillationConfig(str(run.output_dir / method), **settings),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    return BuiltMethod(trainer, tracker)


# The larger model's samples are drawn this many prompts at a time (the generation cache grows with the rows)
SAMPLING_PROMPTS_PER_BATCH = 256


def larger_model_samples(run: ComparisonRun, count: int) -> Dataset:
    """
    `count` samples of `large_sft` at temperature 1 on the demonstrations' prompts, each prompt as often (give or take
    one), as a prompt-completion dataset; empty samples are left out, as they are from the demonstrations.
    """
    model = AutoModelForCausalLM.from_pretrained(run.output_dir / "large_sft")
    unique_prompts = list(dict.fromkeys(run.demonstrations["prompt"]))
    per_prompt = math.ceil(count / len(unique_prompts))
    prompts, completions = [], []
    for start in range(0, len(unique_prompts), SAMPLING_PROMPTS_PER_BATCH):
        chunk = unique_prompts[start : start + SAMPLING_PROMPTS_PER_BATCH]
        repeated, ids = sample(model, run.tokenizer, chunk, per_prompt, seed=run.settings.seed + start)
        prompts += repeated
        completions += run.tokenizer.batch_decode(ids, skip_special_tokens=True)
    # Round-robin over the prompts, so that the first `count` samples cover them evenly
    order = sorted(range(len(prompts)), key=lambda index: index % per_prompt)[:count]
    rows = [(prompts[i], completions[i]) for i in order if completions[i].strip()]
    return Dataset.from_dict({"prompt": [p for p, _ in rows], "completion": [c for _, c in rows]})


def _build_proxy_sequence_distillation(run: ComparisonRun, method: str) -> BuiltMethod:
    """
    TRL's `SFTTrainer` from the SFT checkpoint on `large_sft`'s samples (sequence-level distillation from the proxy):
    as many samples as the on-policy methods draw (their steps times their batch), seen once, at their batch and
    learning rate.
    """
    settings = run.settings
    tracker = DivergenceTracker(run.evaluate, settings.sft_steps, settings.eval_every)
    samples = larger_model_samples(run, settings.adversarial_steps * settings.adversarial_batch_size)
    sft_settings = run.sft_settings | {
        "learning_rate": settings.adversarial_learning_rate,
        "per_device_train_batch_size": settings.adversarial_batch_size,
        "max_steps": settings.adversarial_steps,
    }
    trainer = SFTTrainer(
        model=str(run.output_dir / "sft"),
        args=SFTConfig(str(run.output_dir / method), **sft_settings),
        train_dataset=samples,
        callbacks=[tracker],
    )
    return BuiltMethod(trainer, tracker)


def _build_sdft(run: ComparisonRun, method: str) -> BuiltMethod:
    """
    TRL's `SDFTTrainer` (experimental) from the SFT checkpoint: on-policy self-distillation whose teacher is the model
    itself with the demonstration in its prompt (`privileged_context`), with the adversarial methods' batch, learning
    rate and steps. It needs no teacher's logits, and relies on the model learning from what is in its context.
    """
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer  # experimental: imported when asked for

    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    settings = run.adversarial_settings_for(SDFTConfig)
    if run.settings.sdft_demonstration_first:
        settings["teacher_prompt_template"] = "{privileged_context}\n\n{prompt}"
    demonstrations = run.demonstrations.map(lambda row: {"privileged_context": row["completion"]})
    trainer = SDFTTrainer(
        model=str(run.output_dir / "sft"),
        args=SDFTConfig(str(run.output_dir / method), **settings),
        train_dataset=demonstrations,
        callbacks=[tracker],
    )
    return BuiltMethod(trainer, tracker)


def _build_weighted_sft(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_sft(run, method, WeightedSFTConfig, WeightedSFTTrainer)


def _build_gail(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "sequence")


def _build_gail_token(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "token")


def _build_airl(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, AIRLConfig, AIRLTrainer, "sequence")


def _build_airl_token(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, AIRLConfig, AIRLTrainer, "token")


def _build_gail_frozen(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "sequence", frozen=True)


def _build_airl_frozen(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, AIRLConfig, AIRLTrainer, "sequence", frozen=True)


def _build_gad(run: ComparisonRun, method: str) -> BuiltMethod:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "sequence", pairwise=True)


def _build_checker_gail(run: ComparisonRun, method: str) -> BuiltMethod:
    frozen = method == "checker_gail_frozen"
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "sequence", frozen=frozen, checker=True)


# One builder per method of `METHODS`
BUILDERS = {
    "sft": _build_sft,
    "weighted_sft": _build_weighted_sft,
    "large_sft": _build_sft,
    "gail": _build_gail,
    "gail_token": _build_gail_token,
    "airl": _build_airl,
    "airl_token": _build_airl_token,
    "gail_frozen": _build_gail_frozen,
    "airl_frozen": _build_airl_frozen,
    "gad": _build_gad,
    "oracle": _build_oracle,
    "distillation": _build_distillation,
    "proxy_distillation": _build_distillation,
    "proxy_distillation_jsd": _build_distillation,
    "proxy_sequence_distillation": _build_proxy_sequence_distillation,
    "sdft": _build_sdft,
    "checker": _build_checker,
    "checker_kl": _build_checker,
    "checker_gail_frozen": _build_checker_gail,
    "checker_gail": _build_checker_gail,
}
assert tuple(BUILDERS) == METHODS, "every method has its builder, in the order the methods are trained"
