"""GAILTrainer against TRL's GRPOTrainer with a frozen reward model of the discriminator's size: median step time.

    python benchmarks/gail_benchmark.py                 # ~10M-parameter Llama policy and discriminator on CPU (fp32)
    python benchmarks/gail_benchmark.py --preset 1b     # ~1B-parameter Llama, random weights, GPU (bf16)

The baseline scores completions with a frozen sequence classifier built from the policy's checkpoint, which is
exactly GAIL's default discriminator; GAIL also trains it (one update per generation batch on demonstrations and
completions). Same policy, data and GRPO settings. Each (trainer, repeat) pair runs in a fresh subprocess, in
alternating order; the first `--warmup-steps` steps of each run are dropped.

With `--discriminator-level token` GAIL's discriminator is a causal token classifier on the policy's checkpoint that
scores every completion token, and the policy gets per-token advantages (the baseline is unchanged).

Targets: median step-time ratio <= 1.3 (issue 3, sequence level), <= 1.4 (issue 4, token level).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmark_utils import PRESETS, StepTimer, build_model_dir, demonstrations, device_name, print_result, run_worker


def train_one(args: argparse.Namespace) -> dict:
    """Train one trainer in this process and return its step times."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import GRPOConfig, GRPOTrainer

    from trl_irl import GAILConfig, GAILTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = torch.cuda.is_available()
    settings = {
        "output_dir": str(Path(args.model_dir).parent / f"out-{args.method}"),
        "max_steps": args.warmup_steps + args.steps,
        "per_device_train_batch_size": args.batch_size,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "learning_rate": 1e-5,
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "bf16": on_gpu,
        "seed": 0,
    }
    dataset = demonstrations(args.batch_size * (args.warmup_steps + args.steps), (8, 24), (16, 48))
    timer = StepTimer()
    if args.method == "grpo":
        reward_model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=1)
        trainer = GRPOTrainer(
            model=args.model_dir,
            reward_funcs=reward_model,
            args=GRPOConfig(**settings),
            train_dataset=dataset,
            callbacks=[timer],
        )
    else:
        trainer = GAILTrainer(
            model=args.model_dir,
            args=GAILConfig(**settings, disc_learning_rate=1e-5, discriminator_level=args.discriminator_level),
            train_dataset=dataset,
            callbacks=[timer],
        )
    trainer.train()
    return {
        "method": args.method,
        "step_seconds": timer.step_seconds[args.warmup_steps :],
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="10m")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per trainer, alternating the order.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per run.")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--discriminator-level", choices=["sequence", "token"], default="sequence")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default).")
    # Internal: run one trainer and print its results
    parser.add_argument("--method", choices=["grpo", "gail"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.method:
        print_result(train_one(args))
        return

    runs = {"grpo": [], "gail": []}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.preset)
        for repeat in range(args.repeats):
            for method in ["grpo", "gail"] if repeat % 2 == 0 else ["gail", "grpo"]:
                command = [sys.executable, __file__, "--method", method, "--model-dir", str(model_dir)]
                for name in (
                    "steps",
                    "warmup_steps",
                    "batch_size",
                    "num_generations",
                    "max_completion_length",
                    "threads",
                ):
                    command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
                runs[method].append(run_worker(command))
                median_step = statistics.median(runs[method][-1]["step_seconds"])
                print(f"repeat {repeat} {method}: median step {median_step:.4f} s")

    medians = {method: statistics.median(s for run in runs[method] for s in run["step_seconds"]) for method in runs}
    first = runs["grpo"][0]
    print()
    print(
        f"preset {args.preset}: policy of {first['num_parameters'] / 1e6:.1f}M parameters on {first['device']}, "
        f"batch {args.batch_size}, {args.num_generations} generations of up to {args.max_completion_length} tokens, "
        f"{args.repeats} x {args.steps} timed steps per trainer, {time.strftime('%Y-%m-%d')}"
    )
    target = 1.3 if args.discriminator_level == "sequence" else 1.4
    print(f"median step: GRPO + frozen reward model {medians['grpo']:.4f} s, GAIL {medians['gail']:.4f} s")
    print(
        f"time ratio (GAIL, {args.discriminator_level} level / GRPO): {medians['gail'] / medians['grpo']:.3f}   "
        f"target <= {target}"
    )


if __name__ == "__main__":
    main()
