"""Train every method on demonstrations of an expert and track exact divergences from it.

The expert is a synthetic one (`benchmark.synthetic`, regimes `memorise` and `rules`) or, in the `distil` regime, a
larger causal LM whose text the smaller policy learns from (`benchmark.teacher`). Used by `trl-irl demo` and
`benchmarks/imitation_sweep.py`. Methods:

- `sft`: TRL's `SFTTrainer` (the baseline), from the base model; its checkpoint is also evaluated sampling at each of
  `sft_temperatures` (rows `sft_temperature_0.8`, ...): sharpening alone lowers the reverse KL, at no training cost.
- `weighted_sft`: `WeightedSFTTrainer` (occupancy weights), from the base model, same steps.
- `large_sft`: TRL's `SFTTrainer` on a model of the teacher's size (`teacher_hidden_size`, ...), same steps: a
  larger model than the policy, and with `disc_from_large_sft` the adversarial methods' discriminator.
- `gail`, `gail_token`, `airl`, `airl_token`: the adversarial trainers (sequence or token level), started from the SFT
  checkpoint, as adversarial imitation is meant to be used, or with `policy_from_sft_step` from an earlier checkpoint
  of the same SFT run, with their discriminator from its end.
- `oracle`: TRL's `GRPOTrainer` from the SFT checkpoint with the exact reverse-KL reward
  `log p_exp(y | x) - log pi(y | x)` (the expert smoothed as in the metrics): the best reward any discriminator could
  hand out, with the same GRPO settings as the adversarial methods.
- `distillation` (distil regime only): TRL's `DistillationTrainer` from the SFT checkpoint with the teacher's
  logits, the white-box alternative to learning from its text, with the adversarial methods' batch, learning rate,
  steps and completion length.
- `sdft` (asked for by name): TRL's experimental `SDFTTrainer` from the SFT checkpoint, the model its own teacher
  with the demonstration in its prompt, with the same batch, learning rate, steps and completion length.

Every method is evaluated on the same prompts every `eval_every` steps; adversarial curves continue the SFT curve
(their steps count from the end of SFT). The adversarial methods' curves also follow their learned reward:
`reward_fidelity`, the within-prompt Spearman correlation between the reward the policy was given and the exact
reward `log p_exp(y | x) - log pi(y | x)` on the same completions (1 for the oracle, by construction), and
`disc/heldout_acc` / `disc/heldout_loss` (the trainers' names), the discriminator on held-out demonstrations against
fresh completions; each averaged over the generation batches since the previous evaluation.
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import DistillationConfig, DistillationTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from ..discriminator import LikelihoodRatioDiscriminator
from ..trainer import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, WeightedSFTConfig, WeightedSFTTrainer
from .choices import ADVERSARIAL_METHODS, METHODS
from .monitoring import REWARD_METRICS, DiscriminatorAtStart, DivergenceTracker, ExactReverseKLReward, RewardMonitor
from .settings import ComparisonSettings
from .sft_records import reusable_sft_record, write_sft_record
from .synthetic import WORDS, SyntheticExpert, expert_divergences
from .teacher import MAX_NEW_TOKENS, TeacherExpert, TeacherReverseKLReward, load_teacher, train_teacher
from .tiny_models import build_tiny_tokenizer, save_tiny_model


# The distil regime has no "invalid" outcome, and estimates its divergences with standard errors (`*_se`)
METRICS = (
    "reverse_kl",
    "reverse_kl_se",
    "forward_kl",
    "forward_kl_se",
    "js",
    "invalid",
    "mode_coverage",
    "mean_length",
)
__all__ = [
    "METHODS",
    "METRICS",
    "REWARD_METRICS",
    "ComparisonSettings",
    "ExactReverseKLReward",
    "results_table",
    "run_comparison",
]


@dataclass
class _Comparison:
    """What every method's builder needs: the settings, the expert, the data, the shared trainer settings."""

    settings: ComparisonSettings
    output_dir: Path
    expert: SyntheticExpert | TeacherExpert
    demonstrations: object
    tokenizer: object
    base: Path
    large_base: Path | None
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
            "max_completion_length": MAX_NEW_TOKENS,
            "max_steps": settings.adversarial_steps,
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


@dataclass
class _Built:
    trainer: object
    tracker: DivergenceTracker
    discriminator_at_start: DiscriminatorAtStart | None = None


def _build_sft(run: _Comparison, method: str, config_class=None, trainer_class=None) -> _Built:
    """TRL's SFT (or, through `config_class`, `trainer_class`, WeightedSFT) from the base model (or the large one)."""
    config_class, trainer_class = config_class or SFTConfig, trainer_class or SFTTrainer
    tracker = DivergenceTracker(run.evaluate, 0, run.settings.eval_every)
    saving = {}
    if method == "sft" and run.sft_middle is not None:
        # SFT's checkpoint where the adversarial methods' policy starts; saving changes nothing in the run
        saving = {"save_strategy": "steps", "save_steps": run.settings.policy_from_sft_step, "save_only_model": True}
    trainer = trainer_class(
        model=str(run.large_base if method == "large_sft" else run.base),
        args=config_class(str(run.output_dir / method), **run.sft_settings | saving),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    return _Built(trainer, tracker)


def _build_oracle(run: _Comparison, method: str) -> _Built:
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
    return _Built(trainer, tracker)


def _build_adversarial(run: _Comparison, method: str, config_class, trainer_class, level: str) -> _Built:
    """GAIL or AIRL at `level`, from the SFT checkpoint (or its middle, with the discriminator from its end)."""
    settings = run.settings
    reward_monitor = RewardMonitor(run.exact_reward())
    tracker = DivergenceTracker(run.evaluate, settings.sft_steps, settings.eval_every, reward_monitor)
    discriminator = settings.discriminator_checkpoint
    if discriminator is not None:
        discriminator = discriminator.format(seed=settings.seed, num_demonstrations=settings.num_demonstrations)
    elif settings.disc_from_large_sft:
        discriminator = str(run.output_dir / "large_sft")
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


def _build_distillation(run: _Comparison, method: str) -> _Built:
    """
    TRL's `DistillationTrainer` from the SFT checkpoint with the distil regime's teacher (its logits, the white-box
    ceiling of learning from its text), on-policy, with the adversarial methods' batch, learning rate and steps.
    """
    tracker = DivergenceTracker(run.evaluate, run.settings.sft_steps, run.settings.eval_every)
    settings = run.adversarial_settings_for(DistillationConfig, leave_out=("beta",))
    trainer = DistillationTrainer(
        model=str(run.output_dir / "sft"),
        teacher_model=run.expert.model,
        args=DistillationConfig(str(run.output_dir / method), **settings),
        train_dataset=run.demonstrations,
        callbacks=[tracker],
    )
    return _Built(trainer, tracker)


def _build_sdft(run: _Comparison, method: str) -> _Built:
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
    return _Built(trainer, tracker)


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
    "large_sft": _build_sft,
    "gail": _build_gail,
    "gail_token": _build_gail_token,
    "airl": _build_airl,
    "airl_token": _build_airl_token,
    "oracle": _build_oracle,
    "distillation": _build_distillation,
    "sdft": _build_sdft,
}
assert tuple(BUILDERS) == METHODS, "every method has its builder, in the order the methods are trained"


def _check(settings: ComparisonSettings) -> None:
    unknown = set(settings.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; expected some of {list(METHODS)}.")
    if "distillation" in settings.methods and settings.regime != "distil":
        raise ValueError("`distillation` needs a teacher's logits: it is a method of the distil regime only.")
    if settings.policy_from_sft_step is not None and not 0 < settings.policy_from_sft_step < settings.sft_steps:
        raise ValueError(
            f"`policy_from_sft_step` must be a step inside the SFT run (1 to {settings.sft_steps - 1}), got "
            f"{settings.policy_from_sft_step}."
        )


def _trains_large_sft(settings: ComparisonSettings) -> bool:
    adversarial = set(ADVERSARIAL_METHODS) & set(settings.methods)
    return "large_sft" in settings.methods or (settings.disc_from_large_sft and bool(adversarial))


def _prepare(settings: ComparisonSettings, output_dir: Path) -> _Comparison:
    """The expert, its demonstrations and evaluation prompts, the base model, and the evaluation."""
    synthetic = SyntheticExpert("rules" if settings.regime == "distil" else settings.regime, seed=settings.seed)
    # The distil regime's tokenizer is learned from its teacher's training data, the rule expert's demonstrations
    demonstrations = synthetic.demonstrations(
        settings.num_demonstrations, seed=settings.seed + (20_000 if settings.regime == "distil" else 0)
    )
    corpus = [row["prompt"] + row["completion"] for row in demonstrations] + [" ".join(WORDS)] * 4
    corpus += [f"Task {k}:" for k in range(10)]
    tokenizer = build_tiny_tokenizer(corpus, vocab_size=400)
    size = {"hidden_size": settings.hidden_size, "num_hidden_layers": settings.num_hidden_layers}
    base = save_tiny_model(output_dir / "base", tokenizer, **size)
    tokenizer = AutoTokenizer.from_pretrained(base)
    expert, large_base = synthetic, None
    if settings.regime == "distil" or _trains_large_sft(settings):
        large_size = {
            "hidden_size": settings.teacher_hidden_size,
            "num_hidden_layers": settings.teacher_num_hidden_layers,
        }
        large_base = save_tiny_model(output_dir / "large_base", tokenizer, **large_size)
    if settings.regime == "distil":
        teacher = train_teacher(
            output_dir / "teacher", large_base, demonstrations, settings.teacher_steps, settings.seed
        )
        expert = load_teacher(teacher, tokenizer, synthetic)
        demonstrations = expert.demonstrations(settings.num_demonstrations, seed=settings.seed)
    eval_prompts = expert.evaluation_prompts(
        settings.num_eval_prompts, seed=settings.seed + 10_000, training_prompts=set(demonstrations["prompt"])
    )
    sft_middle = None
    if settings.policy_from_sft_step is not None:
        sft_middle = output_dir / "sft" / f"{PREFIX_CHECKPOINT_DIR}-{settings.policy_from_sft_step}"

    def evaluate(model, temperature: float = 1.0):
        was_training = model.training
        model.eval()
        if isinstance(expert, TeacherExpert):
            metrics = expert.divergences(model, eval_prompts, temperature)
        else:
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
    return _Comparison(
        settings, output_dir, expert, demonstrations, tokenizer, base, large_base, sft_middle, evaluate, common
    )


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
    from_base = method in ("sft", "weighted_sft", "large_sft")
    curve = [base_metrics, *built.tracker.curve] if from_base else built.tracker.curve
    result = {"curve": curve, "final": curve[-1], "seconds": round(time.perf_counter() - started, 1)}
    if method in ("sft", "large_sft"):
        built.trainer.save_model()
        write_sft_record(run.output_dir / method, run.settings, result)
    if isinstance(built.trainer, AIRLTrainer):
        # What AIRL leaves behind for new prompts: its reward model, which `best_of_n_benchmark.py` reranks with
        built.trainer.save_reward_model(run.output_dir / method / "reward_model")
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
    # (and `large_sft` where it is their discriminator)
    needs_sft = set(settings.methods) - {"weighted_sft", "large_sft"}
    order = [
        m
        for m in METHODS
        if m in settings.methods or (m == "sft" and needs_sft) or (m == "large_sft" and _trains_large_sft(settings))
    ]
    for method in order:
        reused = reusable_sft_record(output_dir / method, settings) if method in ("sft", "large_sft") else None
        middle_saved = (
            method == "large_sft" or run.sft_middle is None or (run.sft_middle / "model.safetensors").is_file()
        )
        if reused is not None and middle_saved:
            # Same SFT settings as a run whose checkpoint is still there: CPU training is deterministic, so training
            # again would give the same checkpoint (and curve); variants of the adversarial methods share it
            log(f"[{method}] reusing the checkpoint of an earlier run with the same SFT settings")
            if method in settings.methods:
                results["methods"][method] = reused
            if method == "sft":
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
    if isinstance(run.expert, TeacherExpert):
        results["empty_demonstrations"] = run.expert.empty_demonstrations
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def results_table(results: dict) -> str:
    """
    The final metrics of each method as a text table (a pandas `DataFrame`, aligned by pandas); the reward metrics are
    averages over the last evaluation interval, and `-` where a method has no learned reward; metrics that no method
    of the regime has are left out.
    """
    import pandas as pd

    rows = {
        method: {metric: result["final"].get(metric) for metric in METRICS + REWARD_METRICS}
        | {"seconds": result["seconds"]}
        for method, result in results["methods"].items()
    }
    # A regime's metrics only (the distil regime has no "invalid" outcome, the others no standard errors)
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("method").dropna(axis="columns", how="all")
    return frame.to_string(
        float_format=lambda value: f"{value:.3f}", formatters={"seconds": lambda value: f"{value:.1f}"}, na_rep="-"
    )
