"""Train every method on demonstrations of a synthetic expert and track exact divergences from it.

Used by `trl-irl demo` and `benchmarks/imitation_sweep.py`. Methods:

- `sft`: TRL's `SFTTrainer` (the baseline), from the base model; its checkpoint is also evaluated sampling at each of
  `sft_temperatures` (rows `sft_temperature_0.8`, ...): sharpening alone lowers the reverse KL, at no training cost.
- `weighted_sft`: `WeightedSFTTrainer` (occupancy weights), from the base model, same steps.
- `gail`, `gail_token`, `airl`, `airl_token`: the adversarial trainers (sequence or token level), started from the SFT
  checkpoint, as adversarial imitation is meant to be used, or with `policy_from_sft_step` from an earlier checkpoint
  of the same SFT run, with their discriminator from its end.
- `oracle`: TRL's `GRPOTrainer` from the SFT checkpoint with the exact reverse-KL reward
  `log p_exp(y | x) - log pi(y | x)` (the expert smoothed as in the metrics): the best reward any discriminator could
  hand out, with the same GRPO settings as the adversarial methods.

Every method is evaluated on the same prompts every `eval_every` steps; adversarial curves continue the SFT curve
(their steps count from the end of SFT). The adversarial methods' curves also follow their learned reward:
`reward_fidelity`, the within-prompt Spearman correlation between the reward the policy was given and the exact
reward `log p_exp(y | x) - log pi(y | x)` on the same completions (1 for the oracle, by construction), and
`disc_heldout_acc` / `disc_heldout_loss`, the discriminator on held-out demonstrations against fresh completions;
each averaged over the generation batches since the previous evaluation.
"""

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from .demo_choices import METHODS
from .discriminator import LikelihoodRatioDiscriminator
from .synthetic import (
    INVALID_MASS,
    WORDS,
    SyntheticExpert,
    expert_divergences,
    response_probabilities,
    within_prompt_spearman,
)
from .tiny_models import save_tiny_checkpoint
from .trainer import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, WeightedSFTConfig, WeightedSFTTrainer


METRICS = ("reverse_kl", "forward_kl", "js", "invalid", "mode_coverage", "mean_length")
# Of the adversarial methods only: how good the learned reward is (see `_RewardMonitor`)
REWARD_METRICS = ("reward_fidelity", "disc_heldout_acc", "disc_heldout_loss")


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
    methods: tuple[str, ...] = METHODS
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
    discriminator_type: str = "likelihood_ratio"
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
        if quick:
            settings |= {"sft_steps": 100, "adversarial_steps": 40, "eval_every": 20}
        settings |= overrides
        if regime == "rules" and "policy_from_sft_step" not in overrides:
            settings["policy_from_sft_step"] = settings["sft_steps"] // 2
        return cls(**settings)


class _DivergenceTracker(TrainerCallback):
    def __init__(self, evaluate, step_offset: int, every: int, reward_monitor: "_RewardMonitor | None" = None):
        self.evaluate, self.step_offset, self.every = evaluate, step_offset, every
        self.reward_monitor = reward_monitor
        self.curve: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            point = {"step": self.step_offset + state.global_step, **self.evaluate(model)}
            if self.reward_monitor is not None:
                point |= self.reward_monitor.flush()
            self.curve.append(point)


class _DiscriminatorAtStart(TrainerCallback):
    """
    Evaluates the likelihood-ratio discriminator's `q_phi` as a generator when the policy starts to move (after any
    `disc_pretraining_steps`): how much more than the policy its reward can know.
    """

    def __init__(self, evaluate, discriminator: LikelihoodRatioDiscriminator):
        self.evaluate, self.discriminator = evaluate, discriminator
        self.metrics: dict | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.metrics = self.evaluate(self.discriminator.model)


class _RewardMonitor:
    """
    Follows an adversarial trainer's learned reward (as its `discriminator_reward.on_scored`): on each generation
    batch, the within-prompt Spearman correlation between the rewards handed out and the exact reverse-KL rewards of
    the same completions (`ExactReverseKLReward`, from the policy as it sampled them), and the discriminator's
    held-out statistics. `flush` returns their means since the last call.
    """

    def __init__(self, exact_reward: "ExactReverseKLReward"):
        self.exact_reward = exact_reward
        self.values: dict[str, list[float]] = {name: [] for name in REWARD_METRICS}

    def __call__(self, prompts, completions, completion_ids, rewards, stats):
        exact = self.exact_reward(prompts, completions, completion_ids)
        fidelity = within_prompt_spearman(prompts, rewards, exact)
        if fidelity is not None:
            self.values["reward_fidelity"].append(fidelity)
        for name in ("heldout_acc", "heldout_loss"):
            if name in stats:
                self.values[f"disc_{name}"].append(stats[name])

    def flush(self) -> dict[str, float]:
        means = {name: sum(values) / len(values) for name, values in self.values.items() if values}
        self.values = {name: [] for name in REWARD_METRICS}
        return means


class ExactReverseKLReward:
    """
    The exact GRPO reward for the reverse KL that the metrics report, `KL(pi || p_exp)` over the expert's responses
    plus one "invalid" outcome: `r(y) = log p_exp(o(y) | x) - log pi(o(y) | x)`, where `o(y)` is `y` itself for one
    of the expert's responses and "invalid" for anything else. Then `E_pi[grad log pi(y) r(y)]` is exactly minus the
    gradient of that divergence.

    `p_exp` is smoothed as in `synthetic.divergences`: `(1 - INVALID_MASS) p(y)` for the expert's responses (ended by
    the end-of-sequence token, in their canonical tokens) and `INVALID_MASS` for "invalid", whose policy probability
    is `1 - sum` of the policy's probabilities of the expert's responses. Scoring an invalid response with its own
    `-log pi(y)` instead, as if each invalid response had expert mass `INVALID_MASS`, would reward the policy for
    spreading mass over ever more unlikely invalid responses (an entropy bonus with no cap): with a policy learning
    rate of 3e-4 and no KL term, GRPO on that reward put all its mass on invalid responses within 120 steps.

    `log pi` comes from no-grad forwards of `policy` (set once the trainer exists), at temperature 1.
    """

    __name__ = "exact_reverse_kl"

    def __init__(self, expert: SyntheticExpert, tokenizer):
        self.expert, self.tokenizer, self.policy = expert, tokenizer, None

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        policy_probabilities = {}  # prompt -> the policy's probability of each of the expert's responses
        for prompt in set(prompts):
            responses = list(self.expert.distribution(prompt))
            probabilities = response_probabilities(self.policy, self.tokenizer, prompt, responses)
            policy_probabilities[prompt] = dict(zip(responses, probabilities, strict=True))
        rewards = []
        for prompt, completion, ids in zip(prompts, completions, completion_ids, strict=True):
            expert_probability = self.expert.distribution(prompt).get(completion)
            canonical_ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
            if expert_probability and list(ids) == canonical_ids + [self.tokenizer.eos_token_id]:
                log_expert = math.log((1 - INVALID_MASS) * expert_probability)
                log_policy = math.log(max(policy_probabilities[prompt][completion], 1e-300))
            else:
                log_expert = math.log(INVALID_MASS)
                log_policy = math.log(max(1.0 - sum(policy_probabilities[prompt].values()), 1e-12))
            rewards.append(log_expert - log_policy)
        return rewards


# Beside the SFT checkpoint: the settings it was trained with and its curve, so that a later run can reuse it
SFT_RECORD_FILE = "comparison_sft.json"
# The settings that determine the SFT checkpoint and its evaluation
_SFT_FIELDS = (
    "regime",
    "num_demonstrations",
    "sft_steps",
    "eval_every",
    "num_eval_prompts",
    "seed",
    "hidden_size",
    "num_hidden_layers",
    "sft_learning_rate",
)


def _sft_settings(settings: ComparisonSettings) -> dict:
    return {name: getattr(settings, name) for name in _SFT_FIELDS}


def _reusable_sft_record(directory: Path, settings: ComparisonSettings) -> dict | None:
    """The SFT result saved in `directory` by a run with the same SFT settings, or `None`."""
    record_path = directory / SFT_RECORD_FILE
    if not record_path.is_file() or not (directory / "model.safetensors").is_file():
        return None
    record = json.loads(record_path.read_text())
    return record["result"] if record["settings"] == _sft_settings(settings) else None


def run_comparison(settings: ComparisonSettings, output_dir: str | Path, log=print) -> dict:
    """
    Train `settings.methods` and return, for each, its divergence curve and final metrics (also written as JSON).
    """
    unknown = set(settings.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; expected some of {list(METHODS)}.")
    if settings.policy_from_sft_step is not None and not 0 < settings.policy_from_sft_step < settings.sft_steps:
        raise ValueError(
            f"`policy_from_sft_step` must be a step inside the SFT run (1 to {settings.sft_steps - 1}), got "
            f"{settings.policy_from_sft_step}."
        )
    output_dir = Path(output_dir)
    expert = SyntheticExpert(settings.regime, seed=settings.seed)
    demonstrations = expert.demonstrations(settings.num_demonstrations, seed=settings.seed)
    eval_prompts = expert.evaluation_prompts(
        settings.num_eval_prompts, seed=settings.seed + 10_000, training_prompts=set(demonstrations["prompt"])
    )
    corpus = [row["prompt"] + row["completion"] for row in demonstrations] + [" ".join(WORDS)] * 4
    corpus += [f"Task {k}:" for k in range(10)]
    base = save_tiny_checkpoint(
        output_dir / "base",
        corpus,
        vocab_size=400,
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.num_hidden_layers,
    )
    tokenizer = AutoTokenizer.from_pretrained(base)

    sft_middle = None
    if settings.policy_from_sft_step is not None:
        sft_middle = output_dir / "sft" / f"{PREFIX_CHECKPOINT_DIR}-{settings.policy_from_sft_step}"

    def evaluate(model, temperature: float = 1.0):
        was_training = model.training
        model.eval()
        metrics = expert_divergences(model, tokenizer, expert, eval_prompts, temperature)
        model.train(was_training)
        return metrics

    def add_policy_start():
        """Where the adversarial methods' policy starts, when that is not SFT's end."""
        if sft_middle is not None:
            point = {"step": settings.policy_from_sft_step}
            results["policy_start"] = point | evaluate(AutoModelForCausalLM.from_pretrained(sft_middle))

    def add_tempered_sft():
        if "sft" not in settings.methods:
            return
        model = AutoModelForCausalLM.from_pretrained(output_dir / "sft")
        for temperature in settings.sft_temperatures:
            point = {"step": settings.sft_steps, **evaluate(model, temperature)}
            results["methods"][f"sft_temperature_{temperature}"] = {"curve": [point], "final": point, "seconds": 0.0}

    common = {
        "bf16": False,
        "report_to": settings.report_to,
        "save_strategy": "no",
        "logging_steps": settings.eval_every,
        "seed": settings.seed,
    }
    sft_common = {
        **common,
        "learning_rate": settings.sft_learning_rate,
        "per_device_train_batch_size": 16,
        "max_steps": settings.sft_steps,
    }
    # SFT's checkpoint where the adversarial methods' policy starts; saving changes nothing in the run
    sft_saving = {}
    if sft_middle is not None:
        sft_saving = {"save_strategy": "steps", "save_steps": settings.policy_from_sft_step, "save_only_model": True}
    adversarial_common = {
        **common,
        "learning_rate": settings.adversarial_learning_rate,
        "disc_learning_rate": settings.disc_learning_rate,
        "beta": settings.adversarial_kl_coef,
        "disc_warmup_generations": settings.disc_warmup_generations,
        "discriminator_type": settings.discriminator_type,
        "disc_updates_per_generation": settings.disc_updates_per_generation,
        "disc_demonstration_source": settings.disc_demonstration_source,
        "scale_rewards": settings.scale_rewards,
        "per_device_train_batch_size": settings.adversarial_batch_size,
        "num_generations": 8,
        "max_completion_length": 12,
        "max_steps": settings.adversarial_steps,
    }
    results = {"settings": {k: v for k, v in vars(settings).items()}, "methods": {}}
    base_metrics = {"step": 0, **evaluate(AutoModelForCausalLM.from_pretrained(base))}
    # The adversarial methods start from the SFT checkpoint: SFT is trained first whenever one of them is asked for
    order = [m for m in METHODS if m in settings.methods or (m == "sft" and set(settings.methods) - {"weighted_sft"})]
    for method in order:
        started = time.perf_counter()
        reused = _reusable_sft_record(output_dir / "sft", settings) if method == "sft" else None
        if reused is not None and (sft_middle is None or (sft_middle / "model.safetensors").is_file()):
            # Same SFT settings as a run whose checkpoint is still there: CPU training is deterministic, so training
            # again would give the same checkpoint (and curve); variants of the adversarial methods share it
            log("[sft] reusing the checkpoint of an earlier run with the same SFT settings")
            if method in settings.methods:
                results["methods"]["sft"] = reused
            add_tempered_sft()
            add_policy_start()
            continue
        log(f"[{method}] training")
        if method in ("sft", "weighted_sft"):
            tracker = _DivergenceTracker(evaluate, 0, settings.eval_every)
            config_class, trainer_class = {
                "sft": (SFTConfig, SFTTrainer),
                "weighted_sft": (WeightedSFTConfig, WeightedSFTTrainer),
            }[method]
            trainer = trainer_class(
                model=str(base),
                args=config_class(str(output_dir / method), **sft_common | (sft_saving if method == "sft" else {})),
                train_dataset=demonstrations,
                callbacks=[tracker],
            )
        elif method == "oracle":
            tracker = _DivergenceTracker(evaluate, settings.sft_steps, settings.eval_every)
            reward = ExactReverseKLReward(expert, tokenizer)
            grpo_fields = {field.name for field in dataclasses.fields(GRPOConfig)}
            grpo_settings = {k: v for k, v in adversarial_common.items() if k in grpo_fields}
            trainer = GRPOTrainer(
                model=str(output_dir / "sft"),
                reward_funcs=reward,
                args=GRPOConfig(str(output_dir / method), **grpo_settings),
                train_dataset=demonstrations,
                callbacks=[tracker],
            )
            reward.policy = trainer.model
        else:
            reward_monitor = _RewardMonitor(ExactReverseKLReward(expert, tokenizer))
            tracker = _DivergenceTracker(evaluate, settings.sft_steps, settings.eval_every, reward_monitor)
            config_class, trainer_class = (
                (GAILConfig, GAILTrainer) if method.startswith("gail") else (AIRLConfig, AIRLTrainer)
            )
            level = "token" if method.endswith("_token") else "sequence"
            config = adversarial_common | settings.adversarial_config
            discriminator = settings.discriminator_checkpoint
            if discriminator is not None:
                discriminator = discriminator.format(
                    seed=settings.seed, num_demonstrations=settings.num_demonstrations
                )
            elif sft_middle is not None:
                discriminator = str(output_dir / "sft")
            trainer = trainer_class(
                model=str(sft_middle or output_dir / "sft"),
                discriminator=discriminator,
                args=config_class(str(output_dir / method), discriminator_level=level, **config),
                train_dataset=demonstrations,
                callbacks=[tracker],
            )
            reward_monitor.exact_reward.policy = trainer.model
            trainer.discriminator_reward.on_scored = reward_monitor
            if isinstance(trainer.discriminator, LikelihoodRatioDiscriminator):
                discriminator_at_start = _DiscriminatorAtStart(evaluate, trainer.discriminator)
                trainer.add_callback(discriminator_at_start)
        trainer.train()
        curve = [base_metrics, *tracker.curve] if method in ("sft", "weighted_sft") else tracker.curve
        result = {"curve": curve, "final": curve[-1], "seconds": round(time.perf_counter() - started, 1)}
        if method == "sft":
            trainer.save_model()
            record = {"settings": _sft_settings(settings), "result": result}
            (output_dir / "sft" / SFT_RECORD_FILE).write_text(json.dumps(record))
        if isinstance(getattr(trainer, "discriminator", None), LikelihoodRatioDiscriminator):
            # The likelihood-ratio discriminator's q_phi is a language model too: if it were closer to the expert than
            # the policy, the policy would have something left to learn from it (without the KL term, the optimum of
            # the reward `log q_phi - log pi` is pi = q_phi)
            result["discriminator_start"] = discriminator_at_start.metrics
            result["discriminator_final"] = evaluate(trainer.discriminator.model)
        if method in settings.methods:
            results["methods"][method] = result
        if method == "sft":
            add_tempered_sft()
            add_policy_start()
        log(f"[{method}] done in {time.perf_counter() - started:.0f} s: reverse KL {curve[-1]['reverse_kl']:.3f}")
    results["sft_start"] = results["methods"].get("sft", {}).get("final")
    results["expert_mean_length"] = base_metrics["expert_mean_length"]
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def results_table(results: dict) -> str:
    """
    The final metrics of each method as a text table (a pandas `DataFrame`, aligned by pandas); the reward metrics are
    averages over the last evaluation interval, and `-` where a method has no learned reward.
    """
    import pandas as pd

    rows = {
        method: {metric: result["final"].get(metric) for metric in METRICS + REWARD_METRICS}
        | {"seconds": result["seconds"]}
        for method, result in results["methods"].items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
    return frame.to_string(
        float_format=lambda value: f"{value:.3f}", formatters={"seconds": lambda value: f"{value:.1f}"}, na_rep="-"
    )
