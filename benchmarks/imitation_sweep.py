"""Every method against the synthetic expert, over the number of demonstrations and several seeds.

    python benchmarks/imitation_sweep.py --regime memorise --demonstrations 8 32 128 512 --seeds 3

Each (number of demonstrations, seed) is one `trl_irl.comparison.run_comparison` with its default settings: SFT and
WeightedSFT from the base model, GAIL and AIRL at both levels from the SFT checkpoint, exact divergences from the
expert at the end. Prints a Markdown table (mean +- standard deviation over seeds) and writes the results as JSON
and an SVG plot of the reverse KL against the number of demonstrations, one line per method.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from trl_irl.comparison import METHODS, ComparisonSettings, line_chart_svg, run_comparison


REPORTED = ("reverse_kl", "forward_kl", "invalid", "mode_coverage")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", choices=["memorise", "rules"], default="memorise")
    parser.add_argument("--demonstrations", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    started = time.perf_counter()
    finals: dict[str, dict[int, list[dict]]] = {method: {} for method in args.methods}
    for count in args.demonstrations:
        for seed in range(args.seeds):
            settings = ComparisonSettings(
                regime=args.regime, num_demonstrations=count, seed=seed, methods=tuple(args.methods)
            )
            with tempfile.TemporaryDirectory() as tmp:
                results = run_comparison(settings, tmp, log=lambda *_: None)
            for method, result in results["methods"].items():
                finals[method].setdefault(count, []).append(result["final"])
            print(f"{count} demonstrations, seed {seed}: done ({time.perf_counter() - started:.0f} s)", flush=True)

    summary = {
        method: {
            str(count): {
                metric: (
                    statistics.mean(run[metric] for run in runs),
                    statistics.stdev(run[metric] for run in runs) if len(runs) > 1 else 0.0,
                )
                for metric in REPORTED
            }
            for count, runs in by_count.items()
        }
        for method, by_count in finals.items()
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"imitation_sweep_{args.regime}"
    (args.output_dir / f"{stem}.json").write_text(
        json.dumps({"args": vars(args) | {"output_dir": str(args.output_dir)}, "summary": summary}, indent=2)
    )
    series = {
        method: [(int(count), values["reverse_kl"][0]) for count, values in by_count.items()]
        for method, by_count in summary.items()
    }
    chart = line_chart_svg(series, "number of demonstrations", "reverse_kl (mean over seeds)", log_x=True)
    (args.output_dir / f"{stem}_reverse_kl.svg").write_text(chart)

    print(
        f"\n{args.regime} regime, {args.seeds} seeds, {time.strftime('%Y-%m-%d')}, "
        f"{time.perf_counter() - started:.0f} s; mean +- std over seeds\n"
    )
    print("| demonstrations | method | " + " | ".join(REPORTED) + " |")
    print("|---|---|" + "---|" * len(REPORTED))
    for count in args.demonstrations:
        for method in args.methods:
            cells = " | ".join(
                f"{m:.3f} +- {s:.3f}" for m, s in (summary[method][str(count)][metric] for metric in REPORTED)
            )
            print(f"| {count} | {method} | {cells} |")


if __name__ == "__main__":
    main()
