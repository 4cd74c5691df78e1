"""`trl_irl.estimate_memory` against the measured peak memory of GAIL runs with the same settings.

    python benchmarks/memory_estimate_check.py                       # CPU: the 40m preset, each discriminator choice
    python benchmarks/memory_estimate_check.py --preset 1b --bf16    # a GPU: the 1b preset in bf16

Each run trains `GAILTrainer` for a few steps in its own process. On a GPU the measured peak is
`torch.cuda.max_memory_allocated()`; on the CPU it is the process's peak resident memory less its resident memory just
before the trainer is built (imports, tokenizer and dataset already loaded), so that the interpreter and libraries are
not counted, with glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_`) so that freed tensors leave the resident set
as they would leave a GPU allocator's count (left dynamic, glibc keeps them in its heap: +15% at the 10m preset). A
frozen discriminator is a copy of the policy's checkpoint in another folder: frozen on the policy's own, the trainer
refuses it (its reward would be 0). Prints, per discriminator choice, the estimate, the measurement and their ratio;
the target is a ratio within 15% of 1.
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from benchmark_utils import PRESETS, build_model_dir, demonstrations, device_name


CHOICES = ("trained", "lora", "frozen", "shared_base")
TARGET = 0.15


def resident_bytes() -> int:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settings(args, choice: str):
    """The run's config, policy LoRA and discriminator LoRA, as `estimate_memory` and the trainer take them."""
    import torch

    from trl_irl import GAILConfig
    from trl_irl.memory import discriminator_choice

    config = GAILConfig(
        output_dir=str(Path(args.work_dir) / f"out-{choice}"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.batch_size,
        max_completion_length=args.max_completion_length,
        learning_rate=1e-5,
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        model_init_kwargs={"dtype": "bfloat16" if args.bf16 else "float32"},
        seed=0,
        use_cpu=not torch.cuda.is_available(),
    )
    return discriminator_choice(choice, config)


def train_one(args) -> dict:
    import torch
    from transformers import AutoTokenizer

    from trl_irl import GAILTrainer
    from trl_irl.memory import estimate_memory

    torch.set_num_threads(args.threads)
    dataset = demonstrations(args.batch_size * args.steps * 2, (8, 16), (8, 16))
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    prompt_length = max(len(tokenizer(row["prompt"])["input_ids"]) for row in dataset)
    config, peft_config, discriminator_peft_config = settings(args, args.choice)
    discriminator = f"{args.model_dir}-frozen-copy" if args.choice == "frozen" else None
    estimate = estimate_memory(
        args.model_dir, config, discriminator, peft_config, discriminator_peft_config, max_prompt_length=prompt_length
    )
    on_gpu = torch.cuda.is_available()
    baseline = torch.cuda.memory_allocated() if on_gpu else resident_bytes()
    trainer = GAILTrainer(
        model=args.model_dir,
        discriminator=discriminator,
        args=config,
        train_dataset=dataset,
        peft_config=peft_config,
        discriminator_peft_config=discriminator_peft_config,
    )
    trainer.train()
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline  # KiB on Linux
    return {"choice": args.choice, "estimate": estimate.as_dict(), "measured_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="40m")
    parser.add_argument("--choices", nargs="+", choices=CHOICES, default=list(CHOICES))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default="memory_check")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--choice", help=argparse.SUPPRESS)  # one run, in a subprocess
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.choice:
        print(json.dumps(train_one(args)))
        return
    model_dir = Path(args.work_dir) / f"model-{args.preset}"
    if not (model_dir / "config.json").is_file():
        build_model_dir(model_dir, args.preset)
    if not Path(f"{model_dir}-frozen-copy").is_dir():
        shutil.copytree(model_dir, f"{model_dir}-frozen-copy")
    environment = os.environ | {"MALLOC_MMAP_THRESHOLD_": "131072"}
    results = []
    for choice in args.choices:
        command = [sys.executable, __file__, *sys.argv[1:], "--choice", choice, "--model-dir", str(model_dir)]
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout
        result = json.loads(output.strip().splitlines()[-1])
        ratio = result["estimate"]["peak_bytes"] / result["measured_bytes"]
        result["ratio"] = ratio
        results.append(result)
        print(
            f"{choice:<12} estimate {result['estimate']['peak_bytes'] / 2**30:6.2f} GiB  "
            f"measured {result['measured_bytes'] / 2**30:6.2f} GiB  ratio {ratio:.2f}  "
            f"({'within' if abs(ratio - 1) <= TARGET else 'outside'} {TARGET:.0%})",
            flush=True,
        )
    if args.output:
        unrecorded = ("output", "work_dir", "choice", "model_dir")  # paths of this machine, and the worker's own
        record = {
            "preset": args.preset,
            "date": datetime.date.today().isoformat(),
            "device": device_name(),
            "settings": {key: value for key, value in vars(args).items() if key not in unrecorded},
        }
        args.output.write_text(json.dumps(record | {"runs": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
