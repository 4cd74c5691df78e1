"""WeightedSFTTrainer against TRL's SFTTrainer: median step time and peak memory, same run, same model and data.

    python benchmarks/weighted_sft_benchmark.py                 # ~10M-parameter Llama on CPU (fp32)
    python benchmarks/weighted_sft_benchmark.py --preset 1b     # ~1B-parameter Llama, random weights, GPU (bf16)

Each (trainer, repeat) pair trains in a fresh subprocess, so that peak memory is that run's own; the order of the
two trainers alternates between repeats, so that drift of the machine does not favour either. Step times are taken
by a callback around each optimizer step; the first `--warmup-steps` of each run are dropped. Peak memory is the
CUDA allocator's peak on a GPU. On CPU it is the growth of the resident set during training (peak RSS minus RSS
before `train()`, which leaves out the several hundred MB of imports both trainers share), taken in one extra run per
trainer with glibc told to return large blocks to the system on free (which slows steps, hence the separate run).

Targets (issue 2): time ratio <= 1.03, memory ratio <= 1.02.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmark_utils import (
    PRESETS,
    StepTimer,
    build_model_dir,
    demonstrations,
    device_name,
    print_result,
    run_worker,
)


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def train_one(args: argparse.Namespace) -> dict:
    """Train one trainer in this process and return its step times and peak memory."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from trl_irl import WeightedSFTConfig, WeightedSFTTrainer

    on_gpu = torch.cuda.is_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    config_class, trainer_class = {
        "sft": (SFTConfig, SFTTrainer),
        "weighted_sft": (WeightedSFTConfig, WeightedSFTTrainer),
    }[args.method]
    config = config_class(
        output_dir=str(Path(args.model_dir).parent / f"out-{args.method}"),
        max_steps=args.warmup_steps + args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=1e-4,
        max_length=args.max_length,
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=on_gpu,
        gradient_checkpointing=on_gpu,
        seed=0,
    )
    timer = StepTimer()
    trainer = trainer_class(
        model=args.model_dir,
        args=config,
        train_dataset=demonstrations(args.batch_size * (args.warmup_steps + args.steps), (16, 48), (48, 160)),
        callbacks=[timer],
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        memory_before = torch.cuda.memory_allocated()
    else:
        memory_before = _current_rss_bytes()
    trainer.train()
    if on_gpu:
        peak_memory = torch.cuda.max_memory_allocated() - memory_before
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - memory_before
    return {
        "method": args.method,
        "step_seconds": timer.step_seconds[args.warmup_steps :],
        "peak_memory_bytes": peak_memory,
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "on_gpu": on_gpu,
        "device": device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="10m")
    parser.add_argument("--repeats", type=int, default=4, help="Runs per trainer, alternating the order.")
    parser.add_argument("--steps", type=int, default=30, help="Timed steps per run.")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default).")
    parser.add_argument("--output", type=Path, help="Also write the results as JSON here.")
    # Internal: run one trainer and print its results
    parser.add_argument("--method", choices=["sft", "weighted_sft"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.method:
        print_result(train_one(args))
        return

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.preset)

        def run(method: str, measure: str) -> dict:
            command = [sys.executable, __file__, "--method", method, "--model-dir", str(model_dir)]
            for name in ("preset", "warmup_steps", "batch_size", "max_length", "threads"):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            env = dict(os.environ)
            if measure == "memory":
                # glibc then serves large blocks from mmap and unmaps them on free, so the resident set follows the
                # live tensors instead of what the allocator keeps cached (without it, CPU peak RSS varies by +-10%
                # between identical runs). It slows steps down, so time is measured in separate runs without it.
                env["MALLOC_MMAP_THRESHOLD_"] = "65536"
                command += ["--steps", str(min(args.steps, 5))]
            else:
                command += ["--steps", str(args.steps)]
            return run_worker(command, env)

        runs = {"sft": [], "weighted_sft": []}
        memory_runs = {"sft": [], "weighted_sft": []}
        for repeat in range(args.repeats):
            order = ["sft", "weighted_sft"] if repeat % 2 == 0 else ["weighted_sft", "sft"]
            for method in order:
                runs[method].append(run(method, "time"))
                median_step = statistics.median(runs[method][-1]["step_seconds"])
                print(f"repeat {repeat} {method}: median step {median_step:.4f} s")
        on_gpu = runs["sft"][0]["on_gpu"]
        for method in ("sft", "weighted_sft"):
            # The CUDA allocator's peak is exact: the timed runs' figures serve
            memory_runs[method] = runs[method] if on_gpu else [run(method, "memory")]
            print(f"{method}: peak memory {memory_runs[method][0]['peak_memory_bytes'] / 2**20:.1f} MB")

    summary = {}
    for method, method_runs in runs.items():
        summary[method] = {
            "median_step_seconds": statistics.median(s for run in method_runs for s in run["step_seconds"]),
            "peak_memory_mb": statistics.median(run["peak_memory_bytes"] for run in memory_runs[method]) / 2**20,
        }
    time_ratio = summary["weighted_sft"]["median_step_seconds"] / summary["sft"]["median_step_seconds"]
    memory_ratio = summary["weighted_sft"]["peak_memory_mb"] / summary["sft"]["peak_memory_mb"]
    first = runs["sft"][0]
    print()
    print(
        f"preset {args.preset}: {first['num_parameters'] / 1e6:.1f}M parameters on {first['device']}, batch "
        f"{args.batch_size}, {args.repeats} x {args.steps} timed steps per trainer, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'trainer':<16}{'median step (s)':>18}{'peak memory (MB)':>19}")
    for method in ("sft", "weighted_sft"):
        print(f"{method:<16}{summary[method]['median_step_seconds']:>18.4f}{summary[method]['peak_memory_mb']:>19.1f}")
    print(f"time ratio   (WeightedSFT / SFT): {time_ratio:.3f}   target <= 1.03")
    print(f"memory ratio (WeightedSFT / SFT): {memory_ratio:.3f}   target <= 1.02")
    if args.output:
        settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        args.output.write_text(
            json.dumps(
                {
                    # What the cost table of docs/benchmarks.md states beside the ratios
                    "args": settings,
                    "date": time.strftime("%Y-%m-%d"),
                    "device": first["device"],
                    "summary": summary,
                    "time_ratio": time_ratio,
                    "memory_ratio": memory_ratio,
                    "runs": runs,
                    "memory_runs": memory_runs,
                }
            )
        )


if __name__ == "__main__":
    main()
