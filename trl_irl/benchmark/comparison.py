"""Train every method on demonstrations of an expert and track exact divergences from it.

The expert is a synthetic one (`benchmark.synthetic`, regimes `memorise` and `rules`) or, in the `distil` regime, a
larger causal LM whose text the smaller policy learns from (`benchmark.teacher`). Used by `trl-irl demo` and
`benchmarks/imitation_sweep.py`. How each method trains is in `benchmark.methods`; this module prepares the expert,
the data and the models, trains the methods in order and evaluates them alike.

SFT's checkpoint (and `large_sft`'s, where trained) is also evaluated sampling at each of `sft_temperatures` (rows
`sft_temperature_0.8`, `large_sft_temperature_0.8`, ...): sharpening alone lowers the reverse KL, at no training cost.

Every method is evaluated on the same prompts every `eval_every` steps; adversarial curves continue the SFT curve
(their steps count from the end of SFT). The adversarial methods' curves also follow their learned reward:
`reward_fidelity`, the within-prompt Spearman correlation between the reward the policy was given and the exact
reward `log p_exp(y | x) - log pi(y | x)` on the same completions (1 for the oracle, by construction), and
`disc/heldout_acc` / `disc/heldout_loss` (the trainers' names), the discriminator on held-out demonstrations against
fresh completions; each averaged over the generation batches since the previous evaluation.

Each method's `seconds` is its wall-clock time; `evaluation_seconds` the part of it spent evaluating and following
the learned reward against the exact one (work a user's run does not do), and `train_seconds` the rest.
"""

import json
import random
import time
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..evaluation import heldout_nll
from ..log_probs import evaluating
from ..trainer import AIRLTrainer
from .choices import ADVERSARIAL_METHODS, METHODS, OWN_DISCRIMINATOR_METHODS, PROXY_METHODS
from .methods import BUILDERS, ComparisonRun
from .monitoring import REWARD_METRICS, ExactReverseKLReward, Stopwatch
from .pretraining import NARROW_RULES, pretrained_base
from .settings import ComparisonSettings
from .sft_records import reusable_sft_record, write_sft_record
from .synthetic import WORDS, SyntheticExpert, expert_divergences
from .teacher import TeacherExpert, load_teacher, sample, train_teacher
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
    # A proxy a user without the expert has (`trl_irl.evaluation`): beside the exact divergences, to see how far to
    # trust it
    "heldout_nll",
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
    with_discriminator = {*ADVERSARIAL_METHODS, "checker_gail_frozen", "checker_gail"} - set(OWN_DISCRIMINATOR_METHODS)
    adversarial = with_discriminator & set(settings.methods)
    proxies = set(PROXY_METHODS) & set(settings.methods)
    return "large_sft" in settings.methods or bool(proxies) or (settings.disc_from_large_sft and bool(adversarial))


def _expert_and_base(settings: ComparisonSettings, output_dir: Path) -> tuple:
    """The synthetic expert, its demonstrations, and the base model the policy starts from (with its tokenizer)."""
    size = {"hidden_size": settings.hidden_size, "num_hidden_layers": settings.num_hidden_layers}
    if settings.regime == "pretrained":
        base = pretrained_base(
            Path(settings.pretrained_base_dir or output_dir / "pretrained_base"),
            **size,
            steps=settings.pretraining_steps,
            num_examples=settings.pretraining_examples,
        )
        synthetic = SyntheticExpert("rules", seed=settings.seed, rules=NARROW_RULES)
        demonstrations = synthetic.demonstrations(settings.num_demonstrations, seed=settings.seed)
        return synthetic, demonstrations, base
    synthetic = SyntheticExpert("rules" if settings.regime == "distil" else settings.regime, seed=settings.seed)
    # The distil regime's tokenizer is learned from its teacher's training data, the rule expert's demonstrations
    demonstrations = synthetic.demonstrations(
        settings.num_demonstrations, seed=settings.seed + (20_000 if settings.regime == "distil" else 0)
    )
    corpus = [row["prompt"] + row["completion"] for row in demonstrations] + [" ".join(WORDS)] * 4
    corpus += [f"Task {k}:" for k in range(10)]
    base = save_tiny_model(output_dir / "base", build_tiny_tokenizer(corpus, vocab_size=400), **size)
    return synthetic, demonstrations, base


def _prepare(settings: ComparisonSettings, output_dir: Path) -> ComparisonRun:
    """The expert, its demonstrations and evaluation prompts, the base model, and the evaluation."""
    synthetic, demonstrations, base = _expert_and_base(settings, output_dir)
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
    heldout = heldout_demonstrations(expert, eval_prompts, seed=settings.seed + 40_000)
    # What early-stopped SFT is evaluated on: more of the expert's demonstrations, none of them trained on
    validation = synthetic.demonstrations(settings.num_validation_demonstrations, seed=settings.seed + 50_000)
    sft_middle = None
    if settings.policy_from_sft_step is not None:
        sft_middle = output_dir / "sft" / f"{PREFIX_CHECKPOINT_DIR}-{settings.policy_from_sft_step}"

    stopwatch = Stopwatch()

    @stopwatch.timed
    def evaluate(model, temperature: float = 1.0):
        with evaluating(model):
            if isinstance(expert, TeacherExpert):
                return expert.divergences(model, eval_prompts, temperature)
            return expert_divergences(model, tokenizer, expert, eval_prompts, temperature)

    common = {
        "bf16": False,
        "report_to": settings.report_to,
        "save_strategy": "no",
        "logging_steps": settings.eval_every,
        "seed": settings.seed,
    }
    paths = {"base": base, "large_base": large_base, "sft_middle": sft_middle}
    return ComparisonRun(
        settings,
        output_dir,
        expert,
        demonstrations,
        tokenizer,
        **paths,
        heldout=heldout,
        validation=validation if settings.sft_early_stopping else None,
        evaluate=evaluate,
        common=common,
        stopwatch=stopwatch,
    )


def _temperature_rows(run: ComparisonRun, method: str, model, temperatures, step: int) -> dict[str, dict]:
    """`model` (`method` at `step`) sampled at each of `temperatures`: one row each, `{method}_temperature_{t}`."""
    rows = {}
    for temperature in temperatures:
        point = {"step": step, **run.evaluate(model, temperature)}
        rows[f"{method}_temperature_{temperature}"] = {"curve": [point], "final": point, "seconds": 0.0}
    return rows


def _add_sft_rows(run: ComparisonRun, results: dict, method: str) -> None:
    """
    Once SFT (`method`: `sft` or `large_sft`) exists: it sampled at each of `sft_temperatures`, and (for `sft`) where
    the adversarial policy starts.
    """
    settings = run.settings
    if method in settings.methods:
        model = AutoModelForCausalLM.from_pretrained(run.output_dir / method)
        results["methods"] |= _temperature_rows(run, method, model, settings.sft_temperatures, settings.sft_steps)
    if method == "sft" and run.sft_middle is not None:
        point = {"step": settings.policy_from_sft_step}
        results["policy_start"] = point | run.evaluate(AutoModelForCausalLM.from_pretrained(run.sft_middle))


def heldout_demonstrations(expert, prompts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """One expert response to each evaluation prompt (unseen in training where the regime has unseen prompts)."""
    if isinstance(expert, TeacherExpert):
        repeated, ids = sample(expert.model, expert.tokenizer, prompts, 1, seed)
        return repeated, expert.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return list(prompts), expert.sample_responses(prompts, random.Random(seed))


def _train(run: ComparisonRun, method: str, base_metrics: dict) -> dict:
    """
    Train one method; its curve, final metrics and time (and, for the likelihood ratio, `q_phi`'s metrics, and its
    end sampled at each of `method_temperatures`, under `temperature_rows`).
    """
    started, evaluation_started = time.perf_counter(), run.stopwatch.seconds
    built = BUILDERS[method](run, method)
    built.trainer.train()
    from_base = method in ("sft", "weighted_sft", "large_sft")
    curve = [base_metrics, *built.tracker.curve] if from_base else built.tracker.curve
    best_step = getattr(built.trainer.state, "best_global_step", None) if run.validation is not None else None
    if from_base and best_step is not None:
        # Early-stopped: the model kept is the checkpoint with the lowest held-out loss, which the curve's last point
        # is not; its own evaluation ends the curve
        curve = [*curve, {"step": best_step, "early_stopped": True, **run.evaluate(built.trainer.model)}]
    seconds, evaluation_seconds = time.perf_counter() - started, run.stopwatch.seconds - evaluation_started
    # The held-out demonstrations' NLL per token: the proxy a user has, beside the exact divergences
    proxy = {"heldout_nll": heldout_nll(built.trainer.model, run.tokenizer, *run.heldout)}
    result = {
        "curve": curve,
        "final": curve[-1] | proxy,
        "seconds": round(seconds, 1),
        "evaluation_seconds": round(evaluation_seconds, 1),
        "train_seconds": round(seconds - evaluation_seconds, 1),
    }
    if method in ("sft", "large_sft") or run.settings.save_models:
        built.trainer.save_model()
    if method in ("sft", "large_sft"):
        write_sft_record(run.output_dir / method, run.settings, result)
    if isinstance(built.trainer, AIRLTrainer):
        # What AIRL leaves behind for new prompts: its reward model, which `best_of_n_benchmark.py` reranks with
        built.trainer.save_reward_model(run.output_dir / method / "reward_model")
    if method not in ("sft", "large_sft"):  # those two have rows of their own at `sft_temperatures`
        temperatures, step = run.settings.method_temperatures, curve[-1]["step"]
        result["temperature_rows"] = _temperature_rows(run, method, built.trainer.model, temperatures, step)
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
            _add_sft_rows(run, results, method)
            continue
        log(f"[{method}] training")
        result = _train(run, method, base_metrics)
        temperature_rows = result.pop("temperature_rows", {})
        if method in settings.methods:
            results["methods"][method] = result
            results["methods"] |= temperature_rows
        if method in ("sft", "large_sft"):
            _add_sft_rows(run, results, method)
        log(f"[{method}] done in {result['seconds']:.0f} s: reverse KL {result['final']['reverse_kl']:.3f}")
    results["sft_start"] = results["methods"].get("sft", {}).get("final")
    results["expert_mean_length"] = base_metrics["expert_mean_length"]
    if isinstance(run.expert, TeacherExpert):
        results["empty_demonstrations"] = run.expert.empty_demonstrations
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def proxy_agreement(results: dict, proxy: str = "heldout_nll") -> dict[str, float]:
    """
    How this run's `proxy` (one a user without the expert has: the held-out NLL) ranks its methods' ends against each
    exact divergence: `ends_agreement` over the methods' final metrics.
    """
    return ends_agreement({method: result["final"] for method, result in results["methods"].items()}, proxy)


def ends_agreement(ends: dict[str, dict], proxy: str) -> dict[str, float]:
    """
    Spearman's correlation between `proxy` and each exact divergence over methods' final metrics (`ends`: method ->
    metrics), leaving out temperature rows and ends without the proxy; empty below 3 methods.
    """
    import pandas as pd

    ends = {method: end for method, end in ends.items() if "temperature" not in method and end.get(proxy) is not None}
    if len(ends) < 3:
        return {}
    metrics = ("reverse_kl", "forward_kl")
    # Spearman's correlation as Pearson's of the ranks: `Series.corr(method="spearman")` would need scipy, which the
    # demo's core install does not have
    ranks = pd.DataFrame({key: [end[key] for end in ends.values()] for key in (proxy, *metrics)}).rank()
    return {metric: float(ranks[proxy].corr(ranks[metric])) for metric in metrics}


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
