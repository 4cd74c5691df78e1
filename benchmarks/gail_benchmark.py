"""GAILTrainer against TRL's GRPOTrainer with a frozen reward model of the discriminator's size: step time and memory.

    python benchmarks/gail_benchmark.py                 # ~10M-parameter Llama policy and discriminator on CPU (fp32)
    python benchmarks/gail_benchmark.py --preset 1b     # ~1B-parameter Llama, random weights, GPU (bf16)
    python benchmarks/gail_benchmark.py --preset 1b --lora-discriminator   # the discriminator as a LoRA adapter
    python benchmarks/gail_benchmark.py --preset 1b --shared-base   # LoRA policies; GAIL's q_phi a second adapter

The baseline scores completions with a frozen copy of GAIL's discriminator as it starts: for the default likelihood
ratio, the policy's checkpoint as a causal LM whose summed log-probability is the reward (`LikelihoodReward`); with
`--disc-type classifier`, a sequence classifier on it. GAIL also trains its discriminator (its updates per
generation batch on demonstrations and completions) and, for the likelihood ratio, computes `log pi`. Same policy,
data and GRPO settings. Each (trainer, repeat) pair runs in a fresh subprocess, in alternating order; the first
`--warmup-steps` steps of each run are dropped. Peak memory is the GPU's peak allocation, or on CPU the process's
peak resident memory (each run is its own process).

With `--shared-base` both trainers train a LoRA policy, and GAIL's likelihood-ratio discriminator is a second adapter
on the policy's model (`disc_shares_policy_base`), with no second copy of the base model.

With `--disc-level token` GAIL's discriminator scores every completion token, and the policy gets per-token
advantages (the baseline is unchanged).

With `--discriminator-preset` the discriminator is a model of another size on the same tokenizer (GAD's setting: a
larger model than the policy, `--preset 10m --discriminator-preset 40m` on CPU, `--preset 1b --discriminator-preset
3b` on a GPU), and the baseline's frozen reward model is that model. `--disc-updates-per-generation 0` measures the
frozen discriminator (the fixed reward `log q - log pi`).

Beside each measured time ratio the script prints the ratio that the design's passes predict (`design_ratio`): the
forward and backward passes of each step counted in floating-point work (a forward of a model over a token costs its
parameters, a backward twice that, generation one forward per token). Where the measured ratio is above it, the code
costs more than its design; below it, GRPO's step spends more than its share of floating-point work somewhere
(generation, one token at a time, is latency-bound on CPU and small GPUs), which dilutes the discriminator's cost.

Targets: median step-time ratio <= 1.3 (sequence level), <= 1.4 (token level); peak-memory ratio <= 1.3 with the LoRA
discriminator.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmark_utils import PRESETS, StepTimer, build_model_dir, demonstrations, device_name, print_result, run_worker


def design_ratio(
    policy_parameters: float,
    discriminator_parameters: float,
    completion_tokens: float,
    demonstration_tokens: float,
    updates_per_generation: int,
    likelihood_ratio: bool = True,
    lora_discriminator: bool = False,
) -> float:
    """
    GAIL's step over GRPO's with a frozen reward model of the discriminator's size, in floating-point work per
    completion: each model's parameters (less the input embeddings, a lookup) times the tokens of each pass, a
    backward counted twice a forward. `completion_tokens` and `demonstration_tokens` are the mean lengths of a prompt
    with its completion, and with its demonstration; an update draws as many demonstrations as completions, and as
    many held-out ones are scored (the defaults).

    GRPO: generation (one forward of the policy per token), the reward model's forward, the policy's forward and
    backward. GAIL: the same generation and policy training, then per update a forward and backward of the
    discriminator on the completions and on the demonstrations, a forward of both models on the held-out
    demonstrations (the discriminator's scores of the completions come from its first update's forward); the
    likelihood ratio adds the policy's forward for `log pi` of the completions and of each update's demonstrations.
    With no updates (frozen) the discriminator scores the completions with a forward of its own. A LoRA
    discriminator's backward computes no gradient of its frozen weights: about one forward instead of two.
    """
    policy, discriminator = policy_parameters, discriminator_parameters
    grpo = policy * completion_tokens + discriminator * completion_tokens + 3 * policy * completion_tokens
    gail = policy * completion_tokens + 3 * policy * completion_tokens
    gail += (policy if likelihood_ratio else 0) * demonstration_tokens + discriminator * demonstration_tokens
    if updates_per_generation == 0:
        gail += discriminator * completion_tokens
    backward = 1 if lora_discriminator else 2
    gail += updates_per_generation * (1 + backward) * discriminator * (completion_tokens + demonstration_tokens)
    if likelihood_ratio:
        gail += policy * completion_tokens + updates_per_generation * policy * demonstration_tokens
    return gail / grpo


def matmul_parameters(model_dir: str) -> int:
    """The parameters of `model_dir`'s model that a forward multiplies by (all but the input embeddings)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def mean_tokens(model_dir: str, args: argparse.Namespace) -> tuple[float, float]:
    """
    The mean number of tokens of a prompt with its completion (random weights rarely end a response before
    `max_completion_length`) and of a prompt with its demonstration, in the benchmark's dataset.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = benchmark_dataset(args)
    prompts = [len(tokenizer(row["prompt"])["input_ids"]) for row in rows]
    demonstrations = [len(tokenizer(row["completion"])["input_ids"]) + 1 for row in rows]  # and the end of sequence
    prompt = statistics.mean(prompts)
    return prompt + args.max_completion_length, prompt + statistics.mean(demonstrations)


def benchmark_dataset(args: argparse.Namespace):
    return demonstrations(args.batch_size * (args.warmup_steps + args.steps), (8, 24), (16, 48))


def train_one(args: argparse.Namespace) -> dict:
    """Train one trainer in this process and return its step times."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import GRPOConfig, GRPOTrainer

    from trl_irl import GAILConfig, GAILTrainer, LikelihoodReward

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
    dataset = benchmark_dataset(args)
    timer = StepTimer()
    policy_peft_config = None
    if args.shared_base:
        from peft import LoraConfig

        policy_peft_config = LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    if args.method == "grpo":
        if args.disc_type == "likelihood_ratio":
            # At GRPO's default temperature, 1
            reward_model = LikelihoodReward.from_pretrained(args.discriminator_dir)
            reward_model.model.to("cuda" if on_gpu else "cpu")
        else:
            reward_model = AutoModelForSequenceClassification.from_pretrained(args.discriminator_dir, num_labels=1)
        trainer = GRPOTrainer(
            model=args.model_dir,
            reward_funcs=reward_model,
            args=GRPOConfig(**settings),
            train_dataset=dataset,
            callbacks=[timer],
            peft_config=policy_peft_config,
        )
    else:
        discriminator_peft_config = None
        if args.lora_discriminator:
            from peft import LoraConfig

            task_type = "CAUSAL_LM" if args.disc_type == "likelihood_ratio" else "SEQ_CLS"
            discriminator_peft_config = LoraConfig(r=16, target_modules="all-linear", task_type=task_type)
        config = GAILConfig(
            **settings,
            disc_learning_rate=1e-5,
            disc_level=args.disc_level,
            disc_type=args.disc_type,
            disc_shares_policy_base=args.shared_base,
            disc_updates_per_generation=args.disc_updates_per_generation,
        )
        trainer = GAILTrainer(
            model=args.model_dir,
            # The policy's own checkpoint is GAIL's default discriminator; `--shared-base` builds it on the policy
            discriminator=None if args.discriminator_dir == args.model_dir else args.discriminator_dir,
            args=config,
            train_dataset=dataset,
            callbacks=[timer],
            discriminator_peft_config=discriminator_peft_config,
            peft_config=policy_peft_config,
        )
    trainer.train()
    if on_gpu:
        peak_memory = torch.cuda.max_memory_allocated()
    else:
        import resource

        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "method": args.method,
        "step_seconds": timer.step_seconds[args.warmup_steps :],
        "peak_memory_bytes": peak_memory,
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="10m")
    parser.add_argument(
        "--discriminator-preset",
        choices=sorted(PRESETS),
        help="The discriminator's size, on the policy's tokenizer (default: the policy's checkpoint).",
    )
    parser.add_argument(
        "--disc-updates-per-generation",
        type=int,
        help="GAIL's discriminator updates per generation batch (default: the trainer's; 0: frozen).",
    )
    parser.add_argument("--repeats", type=int, default=3, help="Runs per trainer, alternating the order.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per run.")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--disc-level", choices=["sequence", "token"], default="sequence")
    parser.add_argument("--disc-type", choices=["likelihood_ratio", "classifier"], default="likelihood_ratio")
    parser.add_argument("--lora-discriminator", action="store_true", help="The discriminator as a LoRA adapter.")
    parser.add_argument(
        "--shared-base",
        action="store_true",
        help="LoRA policies; GAIL's likelihood-ratio discriminator a second adapter on the policy's model.",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default).")
    parser.add_argument("--output", type=Path, help="Also write the results as JSON here.")
    # Internal: run one trainer and print its results
    parser.add_argument("--method", choices=["grpo", "gail"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--discriminator-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shared_base and (args.lora_discriminator or args.disc_type != "likelihood_ratio"):
        parser.error("--shared-base puts the likelihood-ratio discriminator on the policy's model as its own adapter")
    if args.shared_base and args.discriminator_preset not in (None, args.preset):
        parser.error("--shared-base makes the discriminator an adapter on the policy's model, of the policy's size")

    if args.method:
        print_result(train_one(args))
        return

    runs = {"grpo": [], "gail": []}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.preset)
        discriminator_dir = model_dir
        if args.discriminator_preset not in (None, args.preset):
            # The same tokenizer (built from the same corpus), another size
            discriminator_dir = build_model_dir(Path(tmp) / "discriminator", args.discriminator_preset)
        parameters = {"policy": matmul_parameters(model_dir), "discriminator": matmul_parameters(discriminator_dir)}
        tokens = mean_tokens(model_dir, args)
        for repeat in range(args.repeats):
            for method in ["grpo", "gail"] if repeat % 2 == 0 else ["gail", "grpo"]:
                command = [sys.executable, __file__, "--method", method, "--model-dir", str(model_dir)]
                command += ["--discriminator-dir", str(discriminator_dir)]
                if args.disc_updates_per_generation is not None:
                    command += ["--disc-updates-per-generation", str(args.disc_updates_per_generation)]
                for name in (
                    "steps",
                    "warmup_steps",
                    "batch_size",
                    "num_generations",
                    "max_completion_length",
                    "threads",
                    "disc_level",
                    "disc_type",
                ):
                    command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
                if args.lora_discriminator:
                    command.append("--lora-discriminator")
                if args.shared_base:
                    command.append("--shared-base")
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
    target = 1.3 if args.disc_level == "sequence" else 1.4
    peaks = {method: max(run["peak_memory_bytes"] for run in runs[method]) for method in runs}
    discriminator = f"{args.disc_type}, {args.disc_level} level" + (
        ", an adapter on the LoRA policy's model"
        if args.shared_base
        else ", LoRA"
        if args.lora_discriminator
        else ", full fine-tuning"
    )
    if args.discriminator_preset not in (None, args.preset):
        discriminator += f", the {args.discriminator_preset} preset"
    updates = args.disc_updates_per_generation
    if updates is None:
        updates = 2 if args.disc_type == "likelihood_ratio" else 1  # the trainer's defaults
    discriminator += f", {updates} updates per generation batch"
    predicted = design_ratio(
        parameters["policy"],
        parameters["discriminator"],
        *tokens,
        updates,
        likelihood_ratio=args.disc_type == "likelihood_ratio",
        lora_discriminator=args.lora_discriminator,
    )
    print(
        f"matmul parameters: policy {parameters['policy'] / 1e6:.1f}M, discriminator "
        f"{parameters['discriminator'] / 1e6:.1f}M; mean tokens of a prompt with its completion {tokens[0]:.1f}, "
        f"with its demonstration {tokens[1]:.1f}"
    )
    print(f"median step: GRPO + frozen reward model {medians['grpo']:.4f} s, GAIL {medians['gail']:.4f} s")
    print(
        f"time ratio (GAIL: {discriminator} / GRPO): {medians['gail'] / medians['grpo']:.3f}   "
        f"design ratio {predicted:.3f}   target <= {target}"
    )
    print(
        f"peak memory: GRPO {peaks['grpo'] / 2**30:.2f} GiB, GAIL {peaks['gail'] / 2**30:.2f} GiB; "
        f"ratio {peaks['gail'] / peaks['grpo']:.3f}   target <= 1.3 with the LoRA discriminator"
    )
    if args.output:
        record = {
            "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "date": time.strftime("%Y-%m-%d"),
            "device": first["device"],
            "discriminator": discriminator,
            "policy_parameters": first["num_parameters"],
            "matmul_parameters": parameters,
            "median_step_seconds": medians,
            "time_ratio": medians["gail"] / medians["grpo"],
            "design_ratio": predicted,
            "peak_memory_bytes": peaks,
            "memory_ratio": peaks["gail"] / peaks["grpo"],
            "runs": runs,
        }
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
