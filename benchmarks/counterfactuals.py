"""Does the adversarial part pay? Every use of the same larger SFT model, paired within seeds, with intervals.

    python benchmarks/counterfactuals.py run --seeds 3 4 5 6 7 --work-dir runs_counterfactuals
    python benchmarks/counterfactuals.py report --sweeps benchmarks/results/counterfactuals \
        --output docs/results/counterfactuals_distil_2048.json
    python benchmarks/counterfactuals.py run --regime memorise --extras --work-dir runs_counterfactuals_memorise

In the distil regime (a teacher LM whose log-probabilities are exact; the user has its text only) a user who trained
a larger SFT model (`large_sft`) can use it in several ways. `run` trains, for each seed, in the same run and on the
same demonstrations: SFT (sampled at temperatures 0.3 to 1.0), `large_sft` (sampled at the same temperatures), GAIL
with `large_sft` as discriminator trained and frozen, TRL's `DistillationTrainer` with `large_sft` as teacher
(`proxy_distillation`, and at TRL's JSD `proxy_distillation_jsd`), SFT on `large_sft`'s samples
(`proxy_sequence_distillation`), and the white-box ceiling (`distillation`, the true teacher's logits); then, where
time allows (`--extras`), AIRL trained and frozen, the oracle and GAIL with GAD's pairwise discriminator on the
policy's own start (`gad`). Each seed's jobs are `imitation_sweep.py` runs
with one thread each, two at a time (the machine's two cores), sharing the seed's teacher and SFT checkpoints; every
job writes its own JSON as soon as it ends. In the memorise regime (`--regime memorise`: 32 demonstrations of 8
prompts, an exact expert, no teacher's logits) the same uses of a larger SFT model are trained, less the ceiling. In
the pretrained regime (`--regime pretrained`: a base pretrained on every rule, 128 demonstrations of a narrower
expert, SFT early-stopped) no larger model exists: GAIL, AIRL and GAD from the policy's own start, and the oracle.

A job whose JSON is already in the output folder is skipped, so that `--extras --jobs airl airl_frozen` adds AIRL to
seeds already run; `--set KEY=VALUE` passes settings to every job (`eval_every=480`: fewer evaluations, the same
final figures; a seed's later jobs must use its base job's settings, or they train SFT again).

`report` merges those JSONs (over the rows of earlier reports given with `--previous`, so that a job added later
joins the seeds it was run for) and prints, for each pair that decides a recommendation, the per-seed differences of
the exact reverse and forward KL, their mean with a 95% t-interval over seeds, and an exact sign test
(`trl_irl.benchmark.paired`); "best temperature" rows take, per seed, the temperature with the lowest reverse KL
(chosen on the evaluation prompts: an optimistic baseline, the harder one to beat). A method is called better only
where the interval excludes 0.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from trl_irl.benchmark.choices import CHECKER_METHODS
from trl_irl.benchmark.comparison import ends_agreement
from trl_irl.benchmark.paired import add_best_temperature_rows, paired_statistics
from trl_irl.benchmark.settings import TEMPERATURE_GRID


@dataclass(frozen=True)
class Regime:
    """What each seed of a regime trains: its jobs after `base`, and the settings every job of the regime shares."""

    demonstrations: int
    jobs: dict[str, tuple[str, ...]]
    settings: tuple[str, ...] = ()
    # The `EXTRA_JOBS` that make sense in the regime (`--extras`)
    extras: tuple[str, ...] = ("airl", "airl_frozen", "oracle", "gad")


REGIMES = {
    # The distil regime's own settings (`ComparisonSettings.for_regime`) already take the larger model and the grid
    "distil": Regime(
        demonstrations=2048,
        jobs={
            "base": ("sft", "large_sft"),
            "gail": ("gail",),
            "gail_frozen": ("gail_frozen",),
            "distillation": ("distillation", "proxy_distillation", "proxy_sequence_distillation"),
            "proxy_distillation_jsd": ("proxy_distillation_jsd",),
            # A verifiable reward (the rules the teacher learned) alone, with KL, and beside the discriminator
            "checker": CHECKER_METHODS,
        },
    ),
    # 32 demonstrations of 8 prompts (the reading where a larger SFT model was the discriminator); no teacher's logits
    "memorise": Regime(
        demonstrations=32,
        jobs={
            "base": ("sft", "large_sft"),
            "gail": ("gail",),
            "gail_frozen": ("gail_frozen",),
            "distillation": ("proxy_distillation", "proxy_sequence_distillation"),
            "proxy_distillation_jsd": ("proxy_distillation_jsd",),
        },
        settings=(
            "disc_from_large_sft=True",
            f"sft_temperatures={TEMPERATURE_GRID}",
            f"method_temperatures={TEMPERATURE_GRID}",
        ),
    ),
    # 2048 demonstrations of the rule expert on unseen prompts, the two-checkpoint recipe (the policy from the middle
    # of one SFT run, the discriminator from its end: frozen, the end's ratio to the middle is not 0), no larger model
    "rules": Regime(
        demonstrations=2048,
        jobs={"base": ("sft",), "gail": ("gail",), "gail_frozen": ("gail_frozen",)},
        settings=(f"sft_temperatures={TEMPERATURE_GRID}", f"method_temperatures={TEMPERATURE_GRID}"),
        extras=("airl", "oracle"),
    ),
    # A base pretrained on every rule, 128 demonstrations of a narrower rule expert, SFT early-stopped (issue 34).
    # No larger model exists: the likelihood ratio's discriminator is a copy of the policy's start, which frozen
    # rewards every completion 0 (the trainers refuse it; the policy would stay SFT's), so no frozen variants here
    "pretrained": Regime(
        demonstrations=128,
        jobs={"base": ("sft",), "gail": ("gail",)},
        extras=("airl", "oracle", "gad"),
    ),
}
EXTRA_JOBS = {"airl": ("airl",), "airl_frozen": ("airl_frozen",), "oracle": ("oracle",), "gad": ("gad",)}
# The checkpoints a seed's later jobs take from its base job (the teacher: the distil regime's only)
SHARED = ("teacher", "sft", "large_sft")
# (method, reference): the pairs that decide what the README recommends
PAIRS = (
    ("gail", "sft_best_temperature"),
    ("gail_frozen", "sft_best_temperature"),
    ("gail", "gail_frozen"),
    ("proxy_distillation", "sft_best_temperature"),
    ("proxy_distillation_jsd", "sft_best_temperature"),
    ("proxy_distillation_jsd", "proxy_distillation"),
    ("proxy_sequence_distillation", "sft_best_temperature"),
    ("gail", "proxy_distillation"),
    ("gail_frozen", "proxy_distillation"),
    ("gail", "proxy_sequence_distillation"),
    ("large_sft_best_temperature", "sft_best_temperature"),
    ("gail", "large_sft_best_temperature"),
    ("proxy_distillation", "large_sft_best_temperature"),
    ("airl", "sft_best_temperature"),
    ("airl", "airl_frozen"),
    ("airl", "proxy_distillation"),
    ("airl_frozen", "sft_best_temperature"),
    ("airl_frozen", "proxy_distillation"),
    ("airl_frozen", "gail_frozen"),
    ("distillation", "proxy_distillation"),
    # The headroom: GRPO with the exact reward
    ("oracle", "sft_best_temperature"),
    ("oracle", "sft"),
    # Where no larger model exists (the pretrained regime) a frozen discriminator is the policy's start, whose
    # policy stays SFT's: trained against frozen is each method against SFT's end at temperature 1
    ("gail", "sft"),
    ("airl", "sft"),
    ("gad", "sft"),
    # The verifiable reward: what GRPO's KL and the discriminator, frozen or trained, add to it
    ("checker", "sft_best_temperature"),
    ("checker_kl", "checker"),
    ("checker_gail_frozen", "checker"),
    ("checker_gail", "checker"),
    ("checker_gail", "checker_gail_frozen"),
    ("checker_gail", "checker_kl"),
    # GAD's discriminator: as large as the policy, pairwise, trained from the policy's own start
    ("gad", "sft_best_temperature"),
    ("gad", "gail"),
    ("gad", "gail_frozen"),
    ("gad", "proxy_distillation"),
    # Each at its best temperature (the trained methods' ends sampled at 0.3 to 1.0 where the run did so)
    ("gail_best_temperature", "sft_best_temperature"),
    ("gail_best_temperature", "proxy_distillation_best_temperature"),
    ("gail_frozen_best_temperature", "proxy_distillation_best_temperature"),
    ("proxy_distillation_best_temperature", "sft_best_temperature"),
    ("proxy_distillation_jsd_best_temperature", "sft_best_temperature"),
    ("proxy_sequence_distillation_best_temperature", "sft_best_temperature"),
)
METRICS = ("reverse_kl", "forward_kl")
# Where the expert's support is enumerable, the policy's mass outside it: 1 minus the checker's expected score
INVALID = "invalid"
# The share of the policy's samples the rules allow (the verifiable reward's mean; the distil regime's teacher too)
CHECKER_SCORE = "checker_score"
PAIRED_METRICS = (*METRICS, INVALID, CHECKER_SCORE)
HIGHER_IS_BETTER = (CHECKER_SCORE,)
TIMINGS = ("seconds", "train_seconds", "evaluation_seconds")


def _job_command(seed: int, job: str, methods: tuple[str, ...], args: argparse.Namespace) -> list[str]:
    regime = REGIMES[args.regime]
    overrides = [*regime.settings, *args.overrides]
    if args.regime == "pretrained":  # one base for every seed and job, pretrained by the first job that needs it
        overrides.append(f"pretrained_base_dir={(args.work_dir / 'pretrained_base').resolve()}")
    overrides = ["--set", *overrides] if overrides else []
    return [
        sys.executable,
        str(Path(__file__).with_name("imitation_sweep.py")),
        *("--regime", args.regime, "--demonstrations", str(regime.demonstrations)),
        *("--seeds", "1", "--first-seed", str(seed)),
        *("--methods", *methods, "--work-dir", str(args.work_dir / job), "--output-dir", str(args.output_dir)),
        *("--name", f"counterfactuals_seed{seed}_{job}", *overrides),
    ]


def _job_json(output_dir: Path, regime: str, seed: int, job: str) -> Path:
    return output_dir / f"imitation_sweep_{regime}_counterfactuals_seed{seed}_{job}.json"


def _share_base_checkpoints(work_dir: Path, regime: str, seed: int, job: str) -> None:
    """Link the seed's teacher and SFT checkpoints into the job's folder, where `run_comparison` reuses them."""
    run_dir = f"{regime}-{REGIMES[regime].demonstrations}-seed{seed}"
    (work_dir / job / run_dir).mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        link = work_dir / job / run_dir / name
        if not link.exists() and (work_dir / "base" / run_dir / name).exists():
            link.symlink_to((work_dir / "base" / run_dir / name).resolve(), target_is_directory=True)


def run(args: argparse.Namespace) -> None:
    # Every seed's base job first: the others wait for it, and two lanes stay busy longest that way
    jobs = [(seed, job, methods) for job, methods in REGIMES[args.regime].jobs.items() for seed in args.seeds]
    if args.extras:
        extras = REGIMES[args.regime].extras
        jobs += [(seed, job, EXTRA_JOBS[job]) for seed in args.seeds for job in extras]
    if args.jobs:
        jobs = [(seed, job, methods) for seed, job, methods in jobs if job in args.jobs or job == "base"]
    done, failed, running, lock = set(), set(), set(), threading.Lock()
    # A job whose JSON is already in the output folder (an earlier run's) is done: a run can be extended or resumed
    done |= {(seed, job) for seed, job, _ in jobs if _job_json(args.output_dir, args.regime, seed, job).is_file()}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # One thread per job, two jobs side by side: deterministic runs, and the two cores both busy
    environment = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def next_job():
        with lock:
            for seed, job, methods in jobs:
                if job != "base" and (seed, "base") in failed:
                    done.add((seed, job))  # nothing to build on: skipped
                    continue
                ready = job == "base" or (seed, "base") in done
                if (seed, job) not in done | running and ready:
                    running.add((seed, job))
                    return seed, job, methods
            return None

    def worker():
        while jobs_left():
            picked = next_job()
            if picked is None:
                time.sleep(5)
                continue
            seed, job, methods = picked
            if job != "base":
                _share_base_checkpoints(args.work_dir, args.regime, seed, job)
            log = args.output_dir / f"counterfactuals_{args.regime}_seed{seed}_{job}.log"
            started = time.perf_counter()
            with log.open("w") as out:
                command = _job_command(seed, job, methods, args)
                code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
            print(f"seed {seed} {job}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
            with lock:
                running.discard((seed, job))
                done.add((seed, job))
                if code != 0:
                    failed.add((seed, job))

    def jobs_left():
        with lock:
            return len(done) < len(jobs)

    workers = [threading.Thread(target=worker) for _ in range(args.workers)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def _finals_by_seed(sweeps: Path, regime: str) -> dict[int, dict[str, dict]]:
    """Each seed's final metrics per row, from the JSONs of `regime`'s jobs in `sweeps`; best temperatures added."""
    by_seed: dict[int, dict[str, dict]] = {}
    for path in sorted(sweeps.glob(f"imitation_sweep_{regime}_counterfactuals_seed*.json")):
        record = json.loads(path.read_text())
        seed = record["args"]["first_seed"]
        for method, by_count in record["runs"].items():
            (runs,) = by_count.values()  # one number of demonstrations per job
            by_seed.setdefault(seed, {})[method] = runs[0]
    for rows in by_seed.values():
        add_best_temperature_rows(rows)
    return by_seed


def paired(by_seed: dict[int, dict[str, dict]], method: str, reference: str, metric: str) -> dict | None:
    """
    Per-seed differences `method - reference` of `metric` (`paired_statistics`: mean, 95% t-interval over seeds,
    sign test), beside each seed's evaluation noise where the divergences are estimated: the two evaluations'
    standard errors combined.
    """
    seeds = sorted(
        seed
        for seed, rows in by_seed.items()
        if method in rows and reference in rows and metric in rows[method] and metric in rows[reference]
    )
    differences = [by_seed[seed][method][metric] - by_seed[seed][reference][metric] for seed in seeds]
    result = paired_statistics(differences, lower_is_better=metric not in HIGHER_IS_BETTER)
    if result is None:
        return None
    if not all(f"{metric}_se" in by_seed[seed][name] for seed in seeds for name in (method, reference)):
        return {"seeds": seeds, **result}  # exact divergences (the memorise regime): no evaluation noise
    evaluation_se = [
        math.hypot(by_seed[seed][method][f"{metric}_se"], by_seed[seed][reference][f"{metric}_se"]) for seed in seeds
    ]
    return {"seeds": seeds, **result, "evaluation_se": evaluation_se}


def summary_rows(by_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per row: mean and standard deviation over seeds of each metric and of the training time."""
    names = sorted({name for rows in by_seed.values() for name in rows})
    summary = {}
    for name in names:
        runs = [rows[name] for rows in by_seed.values() if name in rows]
        summary[name] = {"seeds": len(runs)}
        for metric in (*PAIRED_METRICS, "seconds", "train_seconds", "evaluation_seconds", "temperature"):
            values = [run[metric] for run in runs if metric in run]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                summary[name][metric] = [statistics.fmean(values), spread]
    return summary


def _merged_with(previous: list[Path], by_seed: dict[int, dict[str, dict]]) -> dict[int, dict[str, dict]]:
    """
    The rows of earlier reports (`report --output` JSONs), then `by_seed`'s over them: a job run again (its seed's
    base job included) replaces what the earlier report held of its rows, except the timings of a row whose figures
    it reproduced exactly; best temperatures are taken again.
    """
    merged: dict[int, dict[str, dict]] = {}
    for path in previous:
        for seed, rows in json.loads(path.read_text())["runs"].items():
            merged.setdefault(int(seed), {}).update(rows)
    for seed, rows in by_seed.items():
        for name, row in rows.items():
            earlier = merged.setdefault(seed, {}).get(name)
            if earlier is not None and all(
                row.get(metric) == earlier[metric] for metric in METRICS if metric in earlier
            ):
                # A deterministic re-run (a seed's base job run again to add jobs to it): the same figures, new ones
                # added (a metric measured since), and the earlier timings kept, as the re-run was timed beside
                # other jobs
                row = row | {key: earlier[key] for key in TIMINGS if key in earlier}
            merged[seed][name] = row
    for rows in merged.values():
        for name in [name for name in rows if name.endswith("_best_temperature")]:
            del rows[name]
        add_best_temperature_rows(rows)
    return merged


def proxy_agreement(by_seed: dict[int, dict[str, dict]], proxy: str = "heldout_nll") -> dict:
    """
    How well a proxy a user has ranks the methods as the exact divergences do: per seed, Spearman's correlation
    between `proxy` and each metric over the methods' ends that have it (`comparison.ends_agreement`), and the mean.
    """
    per_seed = {seed: ends_agreement(rows, proxy) for seed, rows in sorted(by_seed.items())}
    agreement = {}
    for metric in METRICS:
        values = {seed: by_metric[metric] for seed, by_metric in per_seed.items() if by_metric}
        if values:
            agreement[metric] = {"per_seed": values, "mean": statistics.fmean(values.values())}
    return agreement


# What a curve keeps of each evaluation: the exact divergences, and how well the learned reward follows the exact one
CURVE_METRICS = ("step", "reverse_kl", "forward_kl", "reward_fidelity")


def _curves(work_dir: Path, regime: str) -> dict[str, dict[str, list[dict]]]:
    """
    Each seed's divergence curve per method (temperature rows left out), from the `results.json` of every job of
    `regime` under `work_dir` (`run --work-dir`): steps count from the start of SFT, as in the comparison.
    """
    curves: dict[str, dict[str, list[dict]]] = {}
    for path in sorted(work_dir.glob(f"*/{regime}-{REGIMES[regime].demonstrations}-seed*/results.json")):
        seed = path.parent.name.rsplit("seed", 1)[1]
        for method, result in json.loads(path.read_text())["methods"].items():
            if "curve" in result and "_temperature_" not in method:
                points = [{key: point[key] for key in CURVE_METRICS if key in point} for point in result["curve"]]
                curves.setdefault(seed, {})[method] = points
    return curves


def report(args: argparse.Namespace) -> None:
    by_seed = _merged_with(args.previous, _finals_by_seed(args.sweeps, args.regime))
    pairs = {
        f"{method} - {reference}": {metric: paired(by_seed, method, reference, metric) for metric in PAIRED_METRICS}
        for method, reference in PAIRS
    }
    # Each pair with the metrics both its rows have (the invalid mass where divergences are exact, the checker's score
    # where it was run)
    pairs = {
        name: {metric: result for metric, result in values.items() if result is not None}
        for name, values in pairs.items()
        if values["reverse_kl"] is not None
    }
    record = {
        "regime": args.regime,
        "threads_per_run": 1,
        "seeds": sorted(by_seed),
        "summary": summary_rows(by_seed),
        "pairs": pairs,
        "runs": {str(seed): rows for seed, rows in sorted(by_seed.items())},
    }
    if args.curves_from:
        record["curves"] = _curves(args.curves_from, args.regime)
    agreement = proxy_agreement(by_seed)
    if agreement:
        record["proxy_agreement"] = {"heldout_nll": agreement}
    if args.output:
        args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"seeds {record['seeds']}, one thread per run\n")
    print("| row | seeds | reverse KL | forward KL | train s | evaluation s |\n|---|---|---|---|---|---|")
    for name, row in record["summary"].items():
        cells = [
            f"{row[key][0]:.3f} +- {row[key][1]:.3f}" if key in row else "-" for key in (*METRICS, "train_seconds")
        ]
        cells.append(f"{row['evaluation_seconds'][0]:.0f}" if "evaluation_seconds" in row else "-")
        print(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " |")
    print("\n| pair | metric | per seed | mean [95% interval] | better in | sign p | verdict |")
    print("|---|---|---|---|---|---|---|")
    for name, by_metric in pairs.items():
        for metric, result in by_metric.items():
            per_seed = ", ".join(f"{difference:+.3f}" for difference in result["differences"])
            interval = f"{result['mean']:+.3f} [{result['interval'][0]:+.3f}, {result['interval'][1]:+.3f}]"
            print(
                f"| {name} | {metric} | {per_seed} | {interval} | {result['better_in']}/{len(result['seeds'])} | "
                f"{result['sign_test_p']:.3f} | {result['verdict']} |"
            )


def mean_curves(curves: dict[str, dict[str, list[dict]]], rows: list[str], metric: str) -> dict[str, list]:
    """Per row, `(step, mean of metric over the seeds that have that step)`: the curve of the mean over seeds."""
    series = {}
    for row in rows:
        by_step: dict[int, list[float]] = {}
        for by_row in curves.values():
            for point in by_row.get(row, []):
                if metric in point:
                    by_step.setdefault(point["step"], []).append(point[metric])
        series[row] = [(step, statistics.fmean(values)) for step, values in sorted(by_step.items())]
    return series


def plot(args: argparse.Namespace) -> None:
    from trl_irl.plots import line_chart

    record = json.loads(args.report.read_text())
    series = mean_curves(record["curves"], args.rows, args.metric)
    series = {row: [point for point in points if point[0] >= args.from_step] for row, points in series.items()}
    seeds = len(record["curves"])
    label = {"reverse_kl": "reverse KL to the expert", "forward_kl": "forward KL to the expert"}.get(args.metric)
    for path in line_chart(
        series, "step (from the start of SFT)", f"{label or args.metric}, mean of {seeds} seeds", args.output
    ):
        print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5, 6, 7])
    run_parser.add_argument("--work-dir", type=Path, required=True)
    run_parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results/counterfactuals"))
    run_parser.add_argument("--workers", type=int, default=2, help="Jobs side by side, one thread each.")
    run_parser.add_argument(
        "--extras",
        action="store_true",
        help="Then the regime's extras: AIRL trained and frozen, the oracle and GAD's discriminator (less the frozen "
        "ones where no larger model exists).",
    )
    run_parser.add_argument(
        "--jobs", nargs="+", help="Only these jobs of each seed (of base, gail, gail_frozen, distillation, airl, ...)."
    )
    # Shorter runs for a check of the harness; the figures in docs/results come from the regime's own settings
    run_parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    report_parser = commands.add_parser("report")
    for command in (run_parser, report_parser):
        command.add_argument("--regime", choices=REGIMES, default="distil")
    report_parser.add_argument("--sweeps", type=Path, default=Path("benchmarks/results/counterfactuals"))
    report_parser.add_argument("--output", type=Path, help="Where to write the merged JSON.")
    report_parser.add_argument(
        "--previous",
        type=Path,
        nargs="+",
        default=[],
        help="Earlier reports whose rows are kept where `--sweeps` has none (jobs added to seeds run before).",
    )
    report_parser.add_argument(
        "--curves-from", type=Path, help="A `run --work-dir`: keep each seed's divergence curves in the JSON too."
    )
    plot_parser = commands.add_parser("plot", help="Mean curves over seeds of a report with curves.")
    plot_parser.add_argument("report", type=Path)
    plot_parser.add_argument("--rows", nargs="+", required=True)
    plot_parser.add_argument("--metric", default="reverse_kl", choices=CURVE_METRICS[1:])
    plot_parser.add_argument("--output", type=Path, required=True, help="Path without suffix (PNG and SVG).")
    plot_parser.add_argument("--from-step", type=int, default=0, help="Leave out earlier evaluations (SFT's).")
    args = parser.parse_args()
    {"run": run, "report": report, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
