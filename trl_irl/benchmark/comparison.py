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
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from ..discriminator import LikelihoodRatioDiscriminator
from ..trainer import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, WeightedSFTConfig, WeightedSFTTrainer
from .choices import METHODS
from .monitoring import REWARD_METRICS, DiscriminatorAtStart, DivergenceTracker, ExactReverseKLReward, RewardMonitor
from .settings import ComparisonSettings
from .synthetic import WORDS, SyntheticExpert, expert_divergences
from .tiny_models import save_tiny_checkpoint


METRICS = ("reverse_kl", "forward_kl", "js", "invalid", "mode_coverage", "mean_length")
__all__ = [
    "METHODS",
    "METRICS",
    "REWARD_METRICS",
    "ComparisonSettings",
    "ExactReverseKLReward",
    "results_table",
    "run_comparison",
]


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


@dataclass
class _Comparison:
    """What every method's builder needs: the settings, the expert, the data, the shared trainer settings."""

    settings: ComparisonSettings
    output_dir: Path
    expert: SyntheticExpert
    demonstrations: object
    tokenizer: object
    base: Path
    sft_middle: Path | None
    evaluate: object
    common: dict

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
        settings = self.settings
        return {
            **self.common,
            "learning_rate": settings.adversarial_learning_rate,
            "disc_learning_rate": settings.disc_learning_rate,
            "beta": settings.adversarial_kl_coef,
            "disc_warmup_generations": settings.disc_warmup_generations,
            "disc_type": settings.disc_type,
            "disc_updates_per_generation": settings.disc_updates_per_generation,
            "disc_demonstration_source": settings.disc_demonstration_source,
            "scale_rewards": settings.scale_rewards,
            "per_device_train_batch_size": settings.adversarial_batch_size,
            "num_generations": 8,
            "max_completion_length": 12,
            "max_steps": settings.adversarial_steps,
        }


@dataclass
class _Built:
    trainer: object
    tracker: DivergenceTracker
    discriminator_at_start: DiscriminatorAtStart | None = None


def _build_sft(run: _Comparison, method: str, config_class=None, trainer_class=None) -> _Built:
    """TRL's SFT (or, through `config_class`, `trainer_class`, WeightedSFT) from the base model."""
    config_class, trainer_class = config_class or SFTConfig, trainer_class or SFTTrainer
    tracker = DivergenceTracker(run.evaluate, 0, run.settings.eval_every)
    saving = {}
    if method == "sft" and run.sft_middle is not None:
        # SFT's checkpoint where the adversarial methods' policy starts; saving changes nothing in the run
        saving = {"save_strategy": "steps", "save_steps": run.settings.policy_from_sft_step, "save_only_model": True}
    trainer = trainer_class(
        model=str(run.base),
        args=config_class(str(run.output_dir / method), **run.sft_settings | saving),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    return _Built(trainer, tracker)


def _build_oracle(run: _Comparison, method: str) -> _Built:
    """GRPO from the SFT checkpoint with the exact reverse-KL reward and the adversarial methods' GRPO settings."""
    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    reward = ExactReverseKLReward(run.expert, run.tokenizer)
    grpo_fields = {field.name for field in dataclasses.fields(GRPOConfig)}
    grpo_settings = {k: v for k, v in run.adversarial_settings.items() if k in grpo_fields}
    trainer = GRPOTrainer(
        model=str(run.output_dir / "sft"),
        reward_funcs=reward,
        args=GRPOConfig(str(run.output_dir / method), **grpo_settings),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    reward.policy = trainer.model
    return _Built(trainer, tracker)


def _build_adversarial(run: _Comparison, method: str, config_class, trainer_class, level: str) -> _Built:
    """GAIL or AIRL at `level`, from the SFT checkpoint (or its middle, with the discriminator from its end)."""
    settings = run.settings
    reward_monitor = RewardMonitor(ExactReverseKLReward(run.expert, run.tokenizer))
    tracker = DivergenceTracker(run.evaluate, settings.sft_steps, settings.eval_every, reward_monitor)
    discriminator = settings.discriminator_checkpoint
    if discriminator is not None:
        discriminator = discriminator.format(seed=settings.seed, num_demonstrations=settings.num_demonstrations)
    elif run.sft_middle is not None:
        discriminator = str(run.output_dir / "sft")
    config = run.adversarial_settings | settings.adversarial_config
    trainer = trainer_class(
        model=str(run.sft_middle or run.output_dir / "sft"),
        discriminator=discriminator,
        args=config_class(str(run.output_dir / method), disc_level=level, **config),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    reward_monitor.exact_reward.policy = trainer.model
    trainer.discriminator_reward.on_scored = reward_monitor
    built = _Built(trainer, tracker)
    if isinstance(trainer.discriminator, LikelihoodRatioDiscriminator):
        built.discriminator_at_start = DiscriminatorAtStart(run.evaluate, trainer.discriminator)
        trainer.add_callback(built.discriminator_at_start)
    return built


def _build_weighted_sft(run: _Comparison, method: str) -> _Built:
    return _build_sft(run, method, WeightedSFTConfig, WeightedSFTTrainer)


def _build_gail(run: _Comparison, method: str) -> _Built:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "sequence")


def _build_gail_token(run: _Comparison, method: str) -> _Built:
    return _build_adversarial(run, method, GAILConfig, GAILTrainer, "token")


def _build_airl(run: _Comparison, method: str) -> _Built:
    return _build_adversarial(run, method, AIRLConfig, AIRLTrainer, "sequence")


def _build_airl_token(run: _Comparison, method: str) -> _Built:
    return _build_adversarial(run, method, AIRLConfig, AIRLTrainer, "token")


# One builder per method of `METHODS`
BUILDERS = {
    "sft": _build_sft,
    "weighted_sft": _build_weighted_sft,
    "gail": _build_gail,
    "gail_token": _build_gail_token,
    "airl": _build_airl,
    "airl_token": _build_airl_token,
    "oracle": _build_oracle,
}
assert tuple(BUILDERS) == METHODS, "every method has its builder, in the order the methods are trained"


def _check(settings: ComparisonSettings) -> None:
    unknown = set(settings.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; expected some of {list(METHODS)}.")
    if settings.policy_from_sft_step is not None and not 0 < settings.policy_from_sft_step < settings.sft_steps:
        raise ValueError(
            f"`policy_from_sft_step` must be a step inside the SFT run (1 to {settings.sft_steps - 1}), got "
            f"{settings.policy_from_sft_step}."
        )


def _prepare(settings: ComparisonSettings, output_dir: Path) -> _Comparison:
    """The expert, its demonstrations and evaluation prompts, the base model, and the evaluation."""
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

    common = {
        "bf16": False,
        "report_to": settings.report_to,
        "save_strategy": "no",
        "logging_steps": settings.eval_every,
        "seed": settings.seed,
    }
    return _Comparison(settings, output_dir, expert, demonstrations, tokenizer, base, sft_middle, evaluate, common)


def _add_sft_rows(run: _Comparison, results: dict) -> None:
    """Once SFT exists: SFT sampled at each of `sft_temperatures`, and where the adversarial policy starts."""
    settings = run.settings
    if "sft" in settings.methods:
        model = AutoModelForCausalLM.from_pretrained(run.output_dir / "sft")
        for temperature in settings.sft_temperatures:
            point = {"step": settings.sft_steps, **run.evaluate(model, temperature)}
            results["methods"][f"sft_temperature_{temperature}"] = {"curve": [point], "final": point, "seconds": 0.0}
    if run.sft_middle is not None:
        point = {"step": settings.policy_from_sft_step}
        results["policy_start"] = point | run.evaluate(AutoModelForCausalLM.from_pretrained(run.sft_middle))


def _train(run: _Comparison, method: str, base_metrics: dict) -> dict:
    """Train one method; its curve, final metrics and time (and, for the likelihood ratio, `q_phi`'s metrics)."""
    started = time.perf_counter()
    built = BUILDERS[method](run, method)
    built.trainer.train()
    curve = [base_metrics, *built.tracker.curve] if method in ("sft", "weighted_sft") else built.tracker.curve
    result = {"curve": curve, "final": curve[-1], "seconds": round(time.perf_counter() - started, 1)}
    if method == "sft":
        built.trainer.save_model()
        record = {"settings": _sft_settings(run.settings), "result": result}
        (run.output_dir / "sft" / SFT_RECORD_FILE).write_text(json.dumps(record))
    if built.discriminator_at_start is not None:
        # The likelihood-ratio discriminator's q_phi is a language model too: if it were closer to the expert than the
        # policy, the policy would have something left to learn from it (without the KL term, the optimum of the
        # reward `log q_phi - log pi` is pi = q_phi)
        result["discriminator_start"] = built.discriminator_at_start.metrics
        result["discriminator_final"] = run.evaluate(built.trainer.discriminator.model)
    return result


def run_comparison(settings: ComparisonSettings, output_dir: str | Path, log=print) -> dict:
    """
    Train `settings.methods` and return, for each, its divergence curve and final metrics (also written as JSON).
    """
    _check(settings)
    output_dir = Path(output_dir)
    run = _prepare(settings, output_dir)
    results = {"settings": {k: v for k, v in vars(settings).items()}, "methods": {}}
    base_metrics = {"step": 0, **run.evaluate(AutoModelForCausalLM.from_pretrained(run.base))}
    # The adversarial methods start from the SFT checkpoint: SFT is trained first whenever one of them is asked for
    order = [m for m in METHODS if m in settings.methods or (m == "sft" and set(settings.methods) - {"weighted_sft"})]
    for method in order:
        reused = _reusable_sft_record(output_dir / "sft", settings) if method == "sft" else None
        if reused is not None and (run.sft_middle is None or (run.sft_middle / "model.safetensors").is_file()):
            # Same SFT settings as a run whose checkpoint is still there: CPU training is deterministic, so training
            # again would give the same checkpoint (and curve); variants of the adversarial methods share it
            log("[sft] reusing the checkpoint of an earlier run with the same SFT settings")
            if method in settings.methods:
                results["methods"]["sft"] = reused
            _add_sft_rows(run, results)
            continue
        log(f"[{method}] training")
        result = _train(run, method, base_metrics)
        if method in settings.methods:
            results["methods"][method] = result
        if method == "sft":
            _add_sft_rows(run, results)
        log(f"[{method}] done in {result['seconds']:.0f} s: reverse KL {result['final']['reverse_kl']:.3f}")
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
