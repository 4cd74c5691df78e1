"""`trl-irl evaluate --config evaluate.yaml`: the held-out evaluation of `trl_irl.evaluation` from a YAML config.

    models:                          # name=path, or a path (named by its folder); the first is the reference
      - sft=sft-model
      - gail=gail-model
    dataset_name: heldout.jsonl      # held-out demonstrations (a file, a local directory or a Hub dataset)
    judge_model_name_or_path: larger-sft-model
    reward_funcs: [my_rewards.checker]
    output: evaluation.json

One process, on the first GPU if there is one: every model, the judge and the samples fit there at once.
"""

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation import TEMPERATURES, compare, completion_text, evaluate, report
from ..trainer.model_loading import is_missing_local_path
from .train import DATA_FILE_BUILDERS, load_reward_funcs


@dataclass
class EvaluateArguments:
    """What `trl-irl evaluate` compares, on what, and how."""

    models: list[str] = field(
        default_factory=list,
        metadata={"help": "Models as name=path or path (named by its folder); the first is the reference."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Held-out demonstrations: a .json/.jsonl/.csv/.parquet file, a directory or a Hub id."},
    )
    dataset_split: str = field(default="train", metadata={"help": "The split of `dataset_name` to evaluate on."})
    num_prompts: int | None = field(default=None, metadata={"help": "Evaluate on the first this many rows only."})
    judge_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A causal LM sharing the models' tokenizer (your larger SFT model): the reverse-KL judge."},
    )
    classifier_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A checkpoint for the two-sample test's fresh sequence classifier (off when unset)."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Checkers, as `trl grpo` names rewards (TRL's or a dotted import path): mean scores."},
    )
    temperatures: list[float] = field(default_factory=lambda: list(TEMPERATURES))
    samples_per_prompt: int = field(default=4)
    max_new_tokens: int = field(default=128)
    micro_batch_size: int | None = field(default=None, metadata={"help": "Completions per forward."})
    seed: int = field(default=0)
    output: str | None = field(default=None, metadata={"help": "Also write the results as JSON here."})
    plot: str | None = field(
        default=None,
        metadata={"help": "Also plot each model's judge reverse KL against the temperature here (PNG and SVG)."},
    )


def _named(models: list[str]) -> dict[str, str]:
    named = {}
    for entry in models:
        name, _, path = entry.rpartition("=")
        named[name or Path(path).name] = path
    return named


def _load_heldout(args: EvaluateArguments):
    from datasets import load_dataset

    path = Path(args.dataset_name)
    if path.suffix in DATA_FILE_BUILDERS:
        if not path.is_file():
            raise SystemExit(f"trl-irl evaluate: `dataset_name` {args.dataset_name!r} does not exist.")
        dataset = load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), split="train")
    else:
        dataset = load_dataset(args.dataset_name, split=args.dataset_split)
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise SystemExit(
            f"trl-irl evaluate: `dataset_name` {args.dataset_name!r} has no {sorted(missing)} column: held-out "
            "demonstrations are prompt-completion rows (standard or conversational)."
        )
    return dataset.select(range(min(args.num_prompts, len(dataset)))) if args.num_prompts else dataset


def check(args: EvaluateArguments) -> dict[str, str]:
    """Fail before loading anything heavy, naming the argument."""
    if not args.models:
        raise SystemExit("trl-irl evaluate: `models` is required (name=path entries; the first is the reference).")
    if args.dataset_name is None:
        raise SystemExit("trl-irl evaluate: `dataset_name` (the held-out demonstrations) is required.")
    named = _named(args.models)
    others = {"judge": args.judge_model_name_or_path, "classifier": args.classifier_model_name_or_path}
    for name, path in {**named, **others}.items():
        if path is not None and is_missing_local_path(path):
            raise SystemExit(f"trl-irl evaluate: the model {name!r} at {path!r} does not exist.")
    return named


def _refuse_another_vocabulary(tokenizer, paths: dict) -> None:
    """
    Every model is sampled and scored in the first model's tokens: one of another vocabulary would read them as other
    words, with no error. Each model's own tokenizer is loaded (not its weights) and compared.
    """
    from transformers import AutoTokenizer

    vocabulary = tokenizer.get_vocab()
    for name, path in paths.items():
        if path is None:
            continue
        try:
            own = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError):
            continue  # a checkpoint saved without its tokenizer: nothing to compare
        if own.get_vocab() != vocabulary:
            raise SystemExit(
                f"trl-irl evaluate: the model {name!r} at {path!r} has another vocabulary than the first model's: "
                "every model is sampled and scored in the first one's tokens. Compare models of one tokenizer."
            )


def main(args: EvaluateArguments) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    named = check(args)
    checkers = dict(zip(args.reward_funcs or [], load_reward_funcs(args.reward_funcs), strict=True))
    heldout = _load_heldout(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(next(iter(named.values())))
    _refuse_another_vocabulary(tokenizer, {**named, "judge": args.judge_model_name_or_path})
    models = {name: AutoModelForCausalLM.from_pretrained(path).to(device) for name, path in named.items()}
    judge = None
    if args.judge_model_name_or_path:
        judge = AutoModelForCausalLM.from_pretrained(args.judge_model_name_or_path).to(device)
    results = evaluate(
        models,
        tokenizer,
        heldout,
        judge=judge,
        checkers=checkers,
        temperatures=tuple(args.temperatures),
        samples_per_prompt=args.samples_per_prompt,
        max_new_tokens=args.max_new_tokens,
        micro_batch_size=args.micro_batch_size,
        seed=args.seed,
        classifier=args.classifier_model_name_or_path,
    )
    record = {"models": report(results)}
    completions = heldout["completion"]
    record["demonstrations_mean_length"] = statistics.fmean(
        len(tokenizer(completion_text(completion), add_special_tokens=False)["input_ids"])
        + 1  # the end-of-sequence token, as the samples count it
        for completion in completions
    )
    reference, *others = results.values()
    # Every model against the first, by held-out NLL (always) and by the judge's reverse KL (with a judge)
    metrics = ("heldout_nll", "judge_reverse_kl") if judge is not None else ("heldout_nll",)
    record["comparisons"] = [compare(method, reference, metric) for metric in metrics for method in others]
    print(table(record))
    if args.output:
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    if args.plot and judge is not None:
        from ..plots import line_chart

        series = {
            name: [(reading["temperature"], reading["judge_reverse_kl"]) for reading in model["readings"]]
            for name, model in record["models"].items()
        }
        line_chart(series, "sampling temperature", "judge reverse KL (lower is closer)", args.plot)
    return record


def table(record: dict) -> str:
    """Each model at its best temperature, then each against the reference, as Markdown."""
    lines = [
        "| model | held-out NLL | best temperature | judge reverse KL | mean length | ended | checkers | two-sample |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, model in record["models"].items():
        best = next(r for r in model["readings"] if r["temperature"] == model["best_temperature"])
        judged = "-" if best["judge_reverse_kl"] is None else f"{best['judge_reverse_kl']:.3f}"
        checks = ", ".join(f"{key.removeprefix('checker/')} {value:.3f}" for key, value in best.items() if "/" in key)
        cells = [name, f"{model['heldout_nll']:.3f}", f"{best['temperature']:.1f}", judged]
        cells += [f"{best['mean_length']:.1f}", f"{best['ended_share']:.2f}", checks or "-"]
        test = model["two_sample"]
        cells.append(
            "-" if test is None else f"{test['accuracy']:.2f} [{test['interval'][0]:.2f}, {test['interval'][1]:.2f}]"
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nDemonstrations' mean length: {record['demonstrations_mean_length']:.1f} tokens.")
    for result in record.get("comparisons", []):
        low, high = result["interval"]
        reading = (
            "judge reverse KL, each at its best temperature"
            if result["metric"] == "judge_reverse_kl"
            else "held-out NLL per token"
        )
        lines.append(
            f"{result['method']} minus {result['reference']} ({reading}, paired over {result['prompts']} prompts): "
            f"{result['mean']:+.3f} [{low:+.3f}, {high:+.3f}], better in {result['better_in_prompts']} prompts: "
            f"{result['verdict']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser([EvaluateArguments], prog="trl-irl evaluate").parse_args_and_config(sys.argv[1:]))
