"""How far can a user trust `trl-irl evaluate`? Its proxies against the exact divergences, on the same models.

    python benchmarks/counterfactuals.py run --regime pretrained --extras --seeds 3 4 5 6 7 \
        --work-dir runs_pretrained --output-dir benchmarks/results/counterfactuals_pretrained
    python benchmarks/proxy_validation.py --regime pretrained --work-dir runs_pretrained \
        --sweeps benchmarks/results/counterfactuals_pretrained --output docs/results/proxy_validation_pretrained.json

Seeds whose work directories are gone are kept from earlier reports (`--add-to`, the same settings): a run on new
seeds then reports over all of them.

A counterfactuals sweep whose regime keeps every method's end (`save_models`) leaves, per seed, each method's final
policy and its exact reverse and forward KL from the expert at temperature 1 (the synthetic expert's, or in the
distil regime the teacher's, estimated from samples with its exact log-probabilities). Here each seed's policies
go through `trl_irl.evaluation.evaluate` as a user's would, on held-out demonstrations of the same expert (fresh
prompts, none trained on, `--demonstrations` of them), sampled at temperature 1: the held-out NLL, the rule checker's
score (the expert's support, as a user's task checker), the two-sample test (a fresh head on the seed's SFT
checkpoint, `trl-irl evaluate`'s example), the length gap to the demonstrations and, where the regime has a larger SFT
model (`--judge large_sft`), the judge's reverse KL. Per seed, Spearman's correlation between each proxy and each exact
divergence over the methods; their mean over seeds. And the spread a user's interval needs: per seed and method, the
standard deviation of the per-demonstration held-out NLL difference from SFT, and the number of held-out
demonstrations that puts the 95% interval of the mean difference within +-0.05 nats per token.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl.benchmark.comparison import ends_agreement, heldout_demonstrations
from trl_irl.benchmark.pretraining import NARROW_RULES
from trl_irl.benchmark.synthetic import ExpertSupportChecker, SyntheticExpert
from trl_irl.benchmark.teacher import MAX_NEW_TOKENS, load_teacher
from trl_irl.evaluation import evaluate


# Each proxy, oriented so that lower means closer to the expert (as the exact divergences are)
PROXIES = ("heldout_nll", "judge_reverse_kl", "checker_miss", "two_sample_accuracy", "length_gap")
EXACT = ("reverse_kl", "forward_kl")
# The interval half-width a user might ask of the held-out NLL difference (nats per token)
HALF_WIDTH = 0.05
# Folders of a run that hold no method's end
NOT_METHODS = {"base", "large_base", "teacher", "pretrained_base", "initial"}


def expert_of(
    regime: str, seed: int, num_demonstrations: int, run_folder: Path, tokenizer
) -> tuple[object, set[str], SyntheticExpert]:
    """
    The seed's expert as `run_comparison` builds it (the distil regime's: its teacher, saved in the run), the prompts
    its demonstrations used, and the rules a checker checks (the synthetic expert, or the rules the teacher learned).
    """
    if regime == "pretrained":
        expert = SyntheticExpert("rules", seed=seed, rules=NARROW_RULES)
        return expert, set(expert.demonstrations(num_demonstrations, seed=seed)["prompt"]), expert
    if regime in ("memorise", "rules"):
        expert = SyntheticExpert(regime, seed=seed)
        return expert, set(expert.demonstrations(num_demonstrations, seed=seed)["prompt"]), expert
    # The distil regime: the teacher's demonstrations are its samples of these prompts (`TeacherExpert.demonstrations`)
    rules = SyntheticExpert("rules", seed=seed)
    teacher = load_teacher(run_folder / "teacher", tokenizer, rules)
    return teacher, set(rules.prompts(2048, seed)), rules


def exact_finals(sweeps: Path, regime: str) -> dict[int, dict[str, dict]]:
    """Each seed's methods' final exact metrics (at temperature 1), from a counterfactuals sweep's JSONs."""
    finals: dict[int, dict[str, dict]] = {}
    for path in sorted(sweeps.glob(f"imitation_sweep_{regime}_counterfactuals_seed*.json")):
        record = json.loads(path.read_text())
        for method, by_count in record["runs"].items():
            if "temperature" not in method:
                ((final, *_),) = by_count.values()  # one number of demonstrations, one seed per job
                finals.setdefault(record["args"]["first_seed"], {})[method] = final
    return finals


def saved_models(work_dir: Path, run_folder: str, methods) -> dict[str, Path]:
    """Each method's saved end under any job's `run_folder` (the seed's SFT is linked into every job's)."""
    found = {}
    for job in sorted(path for path in work_dir.iterdir() if path.is_dir()):
        for method in methods:
            folder = job / run_folder / method
            if method not in NOT_METHODS and (folder / "model.safetensors").is_file():
                found.setdefault(method, folder)
    return found


def validate_seed(args, seed: int, finals: dict[str, dict]) -> dict:
    run_folder = f"{args.regime}-{args.num_demonstrations}-seed{seed}"
    paths = saved_models(args.work_dir, run_folder, finals)
    judge_path = paths.pop(args.judge) if args.judge else None  # not ranked: its own samples score 0 by itself
    tokenizer = AutoTokenizer.from_pretrained(paths["sft"])
    expert, training_prompts, rules = expert_of(
        args.regime, seed, args.num_demonstrations, args.work_dir / "base" / run_folder, tokenizer
    )
    prompts = rules.prompts(args.demonstrations, seed + 60_000, exclude=training_prompts)
    prompts, completions = heldout_demonstrations(expert, prompts, seed + 61_000)
    heldout = [{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)]
    models = {name: AutoModelForCausalLM.from_pretrained(path) for name, path in paths.items()}
    judge = AutoModelForCausalLM.from_pretrained(judge_path) if judge_path else None
    results = evaluate(
        models,
        tokenizer,
        heldout,
        judge=judge,
        checkers={"checker": ExpertSupportChecker(rules, tokenizer)},
        temperatures=(1.0,),
        samples_per_prompt=args.samples_per_prompt,
        max_new_tokens=MAX_NEW_TOKENS,
        seed=seed,
        classifier=str(paths["sft"]),
        show_progress=False,
    )
    demonstration_length = statistics.fmean(
        len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions
    )
    methods = {}
    for name, evaluation in results.items():
        (reading,) = evaluation.readings
        methods[name] = {
            **{metric: finals[name][metric] for metric in EXACT},
            "heldout_nll": evaluation.heldout_nll,
            "judge_reverse_kl": reading.judge_reverse_kl,
            "checker_miss": 1 - reading.checker_scores["checker"],
            "two_sample_accuracy": evaluation.two_sample["accuracy"],
            "length_gap": abs(reading.mean_length - demonstration_length),
        }
        if name != "sft":
            differences = [
                ours - theirs
                for ours, theirs in zip(
                    evaluation.heldout_nll_per_demonstration, results["sft"].heldout_nll_per_demonstration, strict=True
                )
            ]
            spread = statistics.stdev(differences)
            methods[name]["heldout_nll_difference_sd"] = spread
            methods[name]["demonstrations_for_half_width"] = math.ceil((1.96 * spread / HALF_WIDTH) ** 2)
    correlations = {proxy: ends_agreement(methods, proxy) for proxy in PROXIES}
    return {
        "methods": methods,
        "spearman": {proxy: by_metric for proxy, by_metric in correlations.items() if by_metric},
    }


def summarise(per_seed: dict[int, dict]) -> dict:
    """Mean Spearman's correlation over seeds per proxy and exact divergence, and the median spread of NLL pairs."""
    summary = {}
    for proxy in PROXIES:
        for metric in EXACT:
            values = [
                seed["spearman"][proxy][metric]
                for seed in per_seed.values()
                if proxy in seed["spearman"] and not math.isnan(seed["spearman"][proxy][metric])
            ]
            if values:
                summary.setdefault(proxy, {})[metric] = {"mean": statistics.fmean(values), "seeds": len(values)}
    spreads = [
        row["heldout_nll_difference_sd"]
        for seed in per_seed.values()
        for row in seed["methods"].values()
        if "heldout_nll_difference_sd" in row
    ]
    if spreads:
        spread = statistics.median(spreads)
        summary["heldout_nll_difference_sd_median"] = spread
        summary["demonstrations_for_half_width"] = math.ceil((1.96 * spread / HALF_WIDTH) ** 2)
    return summary


def settings_of(args) -> dict:
    """What a report's seeds were measured with: reports agree on these before their seeds are pooled."""
    return {
        "regime": args.regime,
        "heldout_demonstrations": args.demonstrations,
        "samples_per_prompt": args.samples_per_prompt,
        "judge": args.judge,
        "half_width": HALF_WIDTH,
    }


def earlier_seeds(args) -> dict[int, dict]:
    """The seeds of the `--add-to` reports, refused if one was measured with other settings."""
    seeds = {}
    for path in args.add_to:
        earlier = json.loads(path.read_text())
        settings = settings_of(args).items()
        differing = {key: (earlier.get(key), value) for key, value in settings if earlier.get(key) != value}
        if differing:
            raise SystemExit(f"{path} was measured with other settings (earlier, now): {differing}")
        seeds |= {int(seed): result for seed, result in earlier["seeds"].items()}
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", choices=("pretrained", "memorise", "rules", "distil"), required=True)
    parser.add_argument("--num-demonstrations", type=int, default=None, help="The sweep's (default: the regime's).")
    parser.add_argument("--work-dir", type=Path, required=True, help="The counterfactuals sweep's `--work-dir`.")
    parser.add_argument("--sweeps", type=Path, required=True, help="The counterfactuals sweep's `--output-dir`.")
    parser.add_argument("--demonstrations", type=int, default=256, help="Held-out demonstrations per seed.")
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="Only these of the sweep's seeds.")
    parser.add_argument(
        "--judge", default=None, help="A method of the run as the judge (the memorise regime's large_sft)."
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--add-to",
        type=Path,
        nargs="+",
        default=None,
        help="Earlier reports of the same regime and settings whose seeds are kept where this run has none (their "
        "work directories may be gone): the summary is then over all of them.",
    )
    args = parser.parse_args()
    args.num_demonstrations = (
        args.num_demonstrations or {"pretrained": 128, "memorise": 32, "rules": 2048, "distil": 2048}[args.regime]
    )
    per_seed = earlier_seeds(args) if args.add_to else {}
    for seed, finals in sorted(exact_finals(args.sweeps, args.regime).items()):
        if args.seeds and seed not in args.seeds:
            continue
        per_seed[seed] = validate_seed(args, seed, finals)
        print(f"seed {seed}: " + json.dumps(per_seed[seed]["spearman"]), flush=True)
    per_seed = dict(sorted(per_seed.items()))
    record = {**settings_of(args), "summary": summarise(per_seed), "seeds": per_seed}
    print(json.dumps(record["summary"], indent=2))
    if args.output:
        args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
