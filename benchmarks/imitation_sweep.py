"""Every method against the synthetic expert, over the number of demonstrations and several seeds.

    python benchmarks/imitation_sweep.py --regime memorise --demonstrations 8 32 128 512 --seeds 3
    python benchmarks/imitation_sweep.py --regime rules --demonstrations 512 2048 8192 --seeds 3
    python benchmarks/imitation_sweep.py --regime rules --demonstrations 2048 --seeds 3 --work-dir runs \
        --methods sft gail airl --set disc_type=likelihood_ratio --name likelihood_ratio
    python benchmarks/imitation_sweep.py --regime rules --demonstrations 2048 --seeds 3 --work-dir runs \
        --methods sft oracle gail airl --set sft_steps=3000 policy_from_sft_step=1500 disc_pretraining_steps=0

Each (number of demonstrations, seed) is one `trl_irl.benchmark.comparison.run_comparison` with the regime's settings
(`ComparisonSettings.for_regime`): SFT and WeightedSFT from the base model; GAIL and AIRL at both levels and the
oracle (GRPO with the exact reverse-KL reward) from the SFT checkpoint (in the rules regime GAIL and AIRL start from
SFT's middle checkpoint, with their discriminator from its end); exact divergences from the expert at the end.
Seeds are the outer loop and the JSON is rewritten after every run (each method's final metrics with its wall-clock
`seconds`), so an interrupted sweep keeps whole seeds. Prints Markdown tables (mean +- standard deviation over seeds;
differences from SFT within each seed; shares of the oracle's paired reverse-KL drop) and plots the reverse KL and
the reward fidelity against the number of demonstrations, one line per method (PNG and SVG).

`--set KEY=VALUE` overrides a field of `ComparisonSettings` (for example `disc_type=likelihood_ratio`,
`adversarial_steps=240`) or sets one of `GAILConfig` / `AIRLConfig` for the adversarial methods (for example
`disc_label_smoothing=0.2`), and `--work-dir` keeps each (number of demonstrations, seed)'s runs in a folder of its
own, so that a later sweep with other adversarial settings reuses their SFT checkpoints instead of training SFT again.
"""

import argparse
import ast
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from trl_irl.benchmark.choices import REGIMES
from trl_irl.benchmark.comparison import METHODS, REWARD_METRICS, ComparisonSettings, run_comparison
from trl_irl.plots import line_chart
from trl_irl.trainer import AIRLConfig, GAILConfig


# `discriminator_reverse_kl`: that of the likelihood-ratio discriminator's own language model q_phi at the end;
# `discriminator_start_reverse_kl`: at the start of adversarial training (after any `disc_pretraining_steps`)
# `*_se`: the distil regime's standard errors of one evaluation (its divergences are estimated from samples)
REPORTED = (
    "reverse_kl",
    "reverse_kl_se",
    "forward_kl",
    "forward_kl_se",
    "invalid",
    "mode_coverage",
    "mean_length",
    *REWARD_METRICS,
    "discriminator_start_reverse_kl",
    "discriminator_reverse_kl",
)
PAIRED = ("reverse_kl", "forward_kl", "invalid")


def summarise(finals: dict[str, dict[str, list[dict]]]) -> dict:
    """
    Mean and standard deviation over seeds of each reported metric, per method and number of demonstrations (the
    reward metrics for the adversarial methods only).
    """
    return {
        method: {
            count: {
                metric: (
                    statistics.mean(run[metric] for run in runs),
                    statistics.stdev(run[metric] for run in runs) if len(runs) > 1 else 0.0,
                )
                for metric in REPORTED
                if all(metric in run for run in runs)
            }
            for count, runs in by_count.items()
        }
        for method, by_count in finals.items()
    }


def parse_overrides(assignments: list[str]) -> dict:
    """
    `KEY=VALUE` strings as `ComparisonSettings` overrides, values read as Python literals where they parse. A KEY
    that is no field of `ComparisonSettings` but one of `GAILConfig` or `AIRLConfig` goes to its `adversarial_config`.
    """
    fields = {field.name for field in dataclasses.fields(ComparisonSettings)}
    trainer_fields = {field.name for config in (GAILConfig, AIRLConfig) for field in dataclasses.fields(config)}
    overrides = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or key not in fields | trainer_fields:
            raise SystemExit(
                f"--set {assignment!r}: expected KEY=VALUE with KEY a field of ComparisonSettings "
                f"({sorted(fields)}) or of GAILConfig / AIRLConfig."
            )
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        if key in fields:
            overrides[key] = parsed
        else:
            overrides.setdefault("adversarial_config", {})[key] = parsed
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", choices=REGIMES, default="memorise")
    parser.add_argument("--demonstrations", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="Seeds are first-seed, first-seed + 1, ...")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=None, help="Default: every method of the regime."
    )
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    # "extend": `--set A=1 --set B=2` keeps both (with "store", the default, the second flag replaced the first)
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", help="Suffix of the output files' names, for a sweep with --set overrides.")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="Keep the runs here (one folder per size and seed), reusing SFT checkpoints trained with the same "
        "settings; a temporary folder by default.",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="Only print the tables of a saved (maybe partial) sweep, and plot it in --output-dir.",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.report:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        report(json.loads(args.report.read_text()), args.output_dir / args.report.stem)
        return

    overrides = parse_overrides(args.overrides)
    if args.methods is not None:
        overrides["methods"] = tuple(args.methods)
    started = time.perf_counter()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"imitation_sweep_{args.regime}" + (f"_{args.name}" if args.name else "")
    # Keyed by the comparison's rows: the methods asked for, and SFT sampled at lower temperatures
    finals: dict[str, dict[str, list[dict]]] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for count in args.demonstrations:
            settings = ComparisonSettings.for_regime(args.regime, num_demonstrations=count, seed=seed, **overrides)
            if args.work_dir is not None:
                results = run_comparison(settings, args.work_dir / f"{args.regime}-{count}-seed{seed}", log=print)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    results = run_comparison(settings, tmp, log=lambda *_: None)
            for method, result in results["methods"].items():
                # With its wall-clock time, to compare methods at equal time (SFT trained on for longer, say)
                # With the part of it spent evaluating apart (`evaluation_seconds`), where the comparison timed it
                times = ("seconds", "train_seconds", "evaluation_seconds")
                final = result["final"] | {key: result[key] for key in times if key in result}
                if "discriminator_final" in result:
                    final["discriminator_start_reverse_kl"] = result["discriminator_start"]["reverse_kl"]
                    final["discriminator_reverse_kl"] = result["discriminator_final"]["reverse_kl"]
                finals.setdefault(method, {}).setdefault(str(count), []).append(final)
            if "policy_start" in results:
                # Where the adversarial methods' policy started (`policy_from_sft_step`), a row of its own
                start = results["policy_start"] | {"seconds": 0.0}
                finals.setdefault("policy_start", {}).setdefault(str(count), []).append(start)
            summary = summarise(finals)
            record = {
                "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
                "settings": results["settings"] | {"num_demonstrations": None, "seed": None},
                "summary": summary,
                "runs": finals,
            }
            (args.output_dir / f"{stem}.json").write_text(json.dumps(record, indent=2))
            print(f"seed {seed}, {count} demonstrations: done ({time.perf_counter() - started:.0f} s)", flush=True)

    record["seconds"] = round(time.perf_counter() - started)
    (args.output_dir / f"{stem}.json").write_text(json.dumps(record, indent=2))
    report(record, args.output_dir / stem)


PLOTTED = ("reverse_kl", "reward_fidelity")


def report(record: dict, plot_stem: Path) -> None:
    """
    Print the Markdown tables of a sweep's record and plot each of `PLOTTED` against the number of demonstrations, as
    `{plot_stem}_{metric}` PNG and SVG files (also for a partial record, `--report`).
    """
    summary = record["summary"]
    for metric in PLOTTED:
        # The reward fidelity exists for the adversarial methods only
        series = {
            method: [(int(count), values[metric][0]) for count, values in by_count.items() if metric in values]
            for method, by_count in summary.items()
        }
        series = {method: points for method, points in series.items() if points}
        if series:
            path = Path(f"{plot_stem}_{metric}")
            line_chart(series, "number of demonstrations", f"{metric} (mean over seeds)", path, log_x=True)
    seeds = {len(runs) for by_count in record.get("runs", {}).values() for runs in by_count.values()}
    # The memorise regime's expert, hence its mean length, changes with the seed
    expert_lengths = [
        run["expert_mean_length"]
        for by_count in record.get("runs", {}).values()
        for runs in by_count.values()
        for run in runs
    ]
    print(
        f"\n{record['args']['regime']} regime, {'/'.join(map(str, sorted(seeds))) or record['args']['seeds']} seeds, "
        f"{record.get('seconds', '?')} s; mean +- std over seeds"
        + (f"; expert's mean length {statistics.mean(expert_lengths):.2f} words" if expert_lengths else "")
        + "\n"
    )
    # Sweeps saved before a metric existed lack it; SFT and the oracle have no learned reward to report on
    reported = [
        metric
        for metric in REPORTED
        if any(metric in values for by_count in summary.values() for values in by_count.values())
    ]
    print("| demonstrations | method | " + " | ".join(reported) + " |")
    print("|---|---|" + "---|" * len(reported))
    for count in record["args"]["demonstrations"]:
        for method, by_count in summary.items():
            if str(count) in by_count:
                values = by_count[str(count)]
                cells = " | ".join(
                    f"{values[k][0]:.3f} +- {values[k][1]:.3f}" if k in values else "-" for k in reported
                )
                print(f"| {count} | {method} | {cells} |")

    # Seeds move every method together (same demonstrations, prompts and SFT start), so differences from SFT within a
    # seed say more than the spread of each method across seeds
    runs = record.get("runs", {})
    if "sft" in runs:
        print(
            "\nPaired with SFT (same seed): mean +- std over seeds of (method - SFT), and in how many seeds the "
            "method's value is lower"
        )
        # The distil regime has no "invalid" outcome
        sft_runs = [run for seed_runs in runs["sft"].values() for run in seed_runs]
        paired = [metric for metric in PAIRED if all(metric in run for run in sft_runs)]
        print("| demonstrations | method | " + " | ".join(paired) + " |")
        print("|---|---|" + "---|" * len(paired))
        for count in record["args"]["demonstrations"]:
            for method, by_count in runs.items():
                if method == "sft" or str(count) not in by_count:
                    continue
                cells = []
                for metric in paired:
                    differences = [
                        run[metric] - sft[metric]
                        for run, sft in zip(by_count[str(count)], runs["sft"][str(count)], strict=True)
                    ]
                    spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
                    lower = sum(difference < 0 for difference in differences)
                    cells.append(f"{statistics.mean(differences):+.3f} +- {spread:.3f} ({lower}/{len(differences)})")
                print(f"| {count} | {method} | {' | '.join(cells)} |")
    if "sft" in runs and "oracle" in runs:
        print("\nShare of the oracle's paired reverse-KL drop, (SFT - method) / (SFT - oracle), per seed")
        print("| demonstrations | method | shares |")
        print("|---|---|---|")
        for count in record["args"]["demonstrations"]:
            starts, oracles = runs["sft"].get(str(count), []), runs["oracle"].get(str(count), [])
            for method, by_count in runs.items():
                if method in ("sft", "oracle") or str(count) not in by_count:
                    continue
                shares = [
                    (sft["reverse_kl"] - run["reverse_kl"]) / (sft["reverse_kl"] - oracle["reverse_kl"])
                    for run, sft, oracle in zip(by_count[str(count)], starts, oracles, strict=True)
                ]
                print(f"| {count} | {method} | {', '.join(f'{share:.2f}' for share in shares)} |")


if __name__ == "__main__":
    main()
