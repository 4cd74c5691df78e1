"""The `trl-irl` command.

    trl-irl demo [--quick] [--regime memorise|rules|distil] [--num-demonstrations N] [--output-dir DIR]
    trl-irl sft | weighted_sft | gail | airl | variance_reward | distillation --config config.yaml [--key value ...]
    trl-irl evaluate --config evaluate.yaml [--key value ...]
    trl-irl estimate gail | airl --config config.yaml [--max_prompt_length N]
    trl-irl env

`demo` is the embedded default: it needs no data, model or network. `evaluate` compares trained models on held-out
demonstrations (`trl_irl.evaluation`). `estimate` prints the memory a `gail` or `airl` config needs per process,
from the models' configs alone (`trl_irl.memory`). `env` prints what a bug report needs, as `trl env` does. The
training subcommands follow `trl <method>`: a YAML `--config` whose keys are those of `ScriptArguments` (dataset),
`ModelConfig` (model) and the method's config class (and, for `gail` and `airl`, the discriminator's
`discriminator_model_name_or_path` and LoRA options, or `sft_run`: both checkpoints from one SFT run), any of which
can be overridden on the command line. Training runs through `accelerate launch`, so its options
(`--num_processes 2`, `--multi_gpu`, `--config_file`, or `--accelerate_config` with one of TRL's named configs such as
`zero2`) go on the same command line or in the YAML config. Method names take `-` or `_`.

This module imports only the standard library at the top, so that `trl-irl --help` answers at once.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path


# Each training command and what it trains
TRAINING_METHODS = {
    "sft": "TRL's SFTTrainer, for comparison",
    "weighted_sft": "SFT weighted to match the state-action occupancy (WeightedSFTTrainer)",
    "gail": "adversarial imitation on top of GRPO (GAILTrainer)",
    "airl": "GAIL with AIRL's discriminator, leaving a reward model (AIRLTrainer)",
    "variance_reward": "a Bradley-Terry reward model with a learned per-response scale (VarianceRewardTrainer)",
    "distillation": "TRL's DistillationTrainer, with a larger SFT model as teacher_model_name_or_path",
}


# The option of TRL's `grpo` script (`GRPOScriptArguments`) that names a reward model, which GAIL and AIRL learn
# instead (its `reward_funcs` they take, beside the discriminator)
_GRPO_REWARD_OPTIONS = ("reward_model_name_or_path",)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _demo_parser() -> argparse.ArgumentParser:
    from .benchmark.choices import METHODS, REGIMES

    parser = argparse.ArgumentParser(
        prog="trl-irl demo",
        description="Train SFT, WeightedSFT, GAIL and AIRL (sequence and token level) on demonstrations of an "
        "expert whose distribution is known (synthetic, or a larger LM in the distil regime), plus an oracle (GRPO "
        "with the exact reverse-KL reward), and compare their divergences from it.",
    )
    parser.add_argument("--quick", action="store_true", help="Fewer steps (100 SFT, 40 adversarial).")
    parser.add_argument(
        "--regime",
        choices=REGIMES,
        default="memorise",
        help="memorise: 8 prompts, seen in training (about 2 minutes). rules: a rule-following expert evaluated on "
        "unseen prompts, with a larger model and 3000 SFT steps; GAIL and AIRL start from SFT's middle checkpoint "
        "with their discriminator from its end (about 16 minutes on 2 CPU cores). distil: the expert is a larger LM "
        "trained on the rules, the demonstrations its text, the policy a smaller model; GAIL's discriminator is a "
        "teacher-sized model trained by SFT on the same text, and TRL's DistillationTrainer with the teacher's "
        "logits is the white-box ceiling (about 13 minutes).",
    )
    parser.add_argument(
        "--num-demonstrations",
        "--num_demonstrations",
        type=_positive_int,
        default=None,
        help="Defaults to 64 (memorise) or 2048 (rules, distil).",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        type=lambda name: name.replace("-", "_"),
        help="Default: every method but those asked for by name (memorise, rules); sft, gail, oracle and "
        "distillation (distil, which alone has a teacher's logits for distillation). By name: large_sft (a model of "
        "the teacher's size trained by SFT), gail_frozen and airl_frozen (the discriminator never updates), "
        "proxy_distillation (TRL's DistillationTrainer with large_sft as teacher; proxy_distillation_jsd: the same "
        "at beta=0.5), proxy_sequence_distillation (SFT "
        "on large_sft's samples), and sdft (TRL's experimental SDFTTrainer).",
    )
    parser.add_argument(
        "--output-dir",
        "--output_dir",
        default="trl-irl-demo",
        help="Where each method's run, results.json and the plots go (default: trl-irl-demo).",
    )
    parser.add_argument(
        "--report-to",
        "--report_to",
        default="none",
        help="Where the trainers log, as TrainingArguments' report_to: tensorboard, trackio, wandb, ... (each run "
        "under OUTPUT_DIR/<method>).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seeds the expert's demonstrations, the evaluation prompts and every trainer (default: 0).",
    )
    return parser


def _demo(argv: list[str]) -> None:
    args = _demo_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if importlib.util.find_spec("pandas") is None:
        raise SystemExit(
            '`trl-irl demo` prints its tables with pandas, of the `demo` extra: pip install "trl-irl[demo]".'
        )
    from .benchmark.comparison import (
        REWARD_METRICS,
        ComparisonSettings,
        proxy_agreement,
        results_table,
        run_comparison,
    )

    options = {"seed": args.seed, "report_to": args.report_to}
    if args.methods is not None:
        options["methods"] = tuple(args.methods)
    if args.num_demonstrations is not None:
        options["num_demonstrations"] = args.num_demonstrations
    settings = ComparisonSettings.for_regime(args.regime, quick=args.quick, **options)
    results = run_comparison(settings, args.output_dir)
    output_dir = Path(args.output_dir)
    # The reward metrics exist only where an adversarial method ran
    curves = [result["curve"] for result in results["methods"].values()]
    plotted = [
        metric
        for metric in ("reverse_kl", "forward_kl", *REWARD_METRICS)
        if any(metric in point for curve in curves for point in curve)
    ]
    try:
        from .plots import metric_curves

        # A figure's file is named after its metric, `/` written `_` (`disc_heldout_acc.png`)
        plots = [
            str(path)
            for metric in plotted
            for path in metric_curves(results, metric, output_dir / metric.replace("/", "_"))
        ]
    except ImportError as error:  # the `demo` extra is not installed: the results stand without the figures
        plots = [f"none ({error})"]
    print()
    print(
        f"{args.regime} regime, {settings.num_demonstrations} demonstrations; divergences from the expert at the end "
        f"(expert's mean length: {results['expert_mean_length']:.2f} words):"
    )
    print(results_table(results))
    agreement = proxy_agreement(results)
    if agreement:
        # The proxy a user has (`trl-irl evaluate`) beside the truth it stands for, in this very run
        print(
            "\nheldout_nll (what `trl-irl evaluate` measures without an expert) ranks these methods with Spearman's "
            f"correlation {agreement['reverse_kl']:+.2f} against the reverse KL and {agreement['forward_kl']:+.2f} "
            "against the forward KL (over seeds and regimes: docs/benchmarks.md)."
        )
    print(f"\nresults: {output_dir / 'results.json'}; plots: " + ", ".join(plots))


def _without(arguments: list[str], subsequence: list[str]) -> list[str]:
    """`arguments` with the ordered `subsequence` (the launch arguments found among them) removed."""
    remaining, pending = [], iter(subsequence)
    current = next(pending, None)
    for argument in arguments:
        if current is not None and argument == current:
            current = next(pending, None)
        else:
            remaining.append(argument)
    return remaining


def _launch_arguments(method: str, launch_parser, config_remaining: list[str], cli_remaining: list[str]) -> list[str]:
    """
    The `accelerate launch` arguments among those the method's parser left, checked so that a typo fails before
    anything is launched. YAML flags (`multi_gpu: true`) arrive as `--multi_gpu True` and become `--multi_gpu`.
    """
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    flags = {option for action in launch_parser._actions if action.nargs == 0 for option in action.option_strings}
    options = {option for action in launch_parser._actions for option in action.option_strings}
    from_config = []
    for key, value in zip(config_remaining[::2], config_remaining[1::2], strict=True):
        if key not in flags:
            from_config += [key, value]
        elif str(value).lower() == "true":
            from_config.append(key)
    launch_args = resolve_accelerate_config_argument(from_config + cli_remaining)
    unknown = [arg for arg in launch_args if arg.startswith("-") and arg.split("=")[0] not in options]
    grpo_only = [arg for arg in unknown if arg.split("=")[0].lstrip("-") in _GRPO_REWARD_OPTIONS]
    if grpo_only and method in ("gail", "airl"):
        # A `trl grpo` config brought over as it is: its reward options have no meaning here
        raise SystemExit(
            f"trl-irl {method}: {grpo_only} are `trl grpo` options for a given reward; {method.upper()}'s reward is "
            "its discriminator, learned from the demonstrations. Remove them from the config (choose the "
            "discriminator with `discriminator_model_name_or_path` and `disc_type`). A rule or format reward beside "
            "the discriminator goes in `reward_funcs`."
        )
    if unknown:
        raise SystemExit(
            f"trl-irl {method}: unknown arguments {unknown}: neither options of the method's config, "
            "`ScriptArguments` and `ModelConfig`, nor `accelerate launch` options."
        )
    return launch_args


def _train(method: str, argv: list[str]) -> None:
    from accelerate.commands.launch import launch_command, launch_command_parser

    from .scripts.launch_checks import check_arguments, check_before_launch, check_config_types, check_teacher
    from .scripts.train import load_reward_funcs, make_parser, use_sft_run

    if "--config" in argv:
        position = argv.index("--config")
        config_file = argv[position + 1] if position + 1 < len(argv) else None
        if config_file is None or not Path(config_file).is_file():
            raise SystemExit(f"trl-irl {method}: the `--config` file {config_file!r} does not exist.")
    # As `trl <method>`: arguments that are not the method's (from the YAML config or the command line) are
    # `accelerate launch` arguments, and training runs in the processes it launches
    parser = make_parser(method)
    if "--config" in argv:
        check_config_types(method, config_file, parser.dataclass_types)
    try:
        *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except ValueError as error:
        # The config's own checks (`TrainingArguments.__post_init__`): `bf16` on a machine without it, and others
        hint = " (or set `bf16: false`)" if "bf16" in str(error) else ""
        raise SystemExit(f"trl-irl {method}: {error}{hint}") from None
    script_args, training_args, model_args, dataset_args = parsed[:4]
    discriminator_args = parsed[4] if len(parsed) > 4 else None
    use_sft_run(method, model_args, discriminator_args)
    if discriminator_args is not None and discriminator_args.sft_run is not None:
        print(
            f"trl-irl {method}: the policy from {model_args.model_name_or_path}, the discriminator from "
            f"{discriminator_args.discriminator_model_name_or_path}"
        )
    check_arguments(method, script_args, model_args, dataset_args)
    check_before_launch(method, script_args, training_args, model_args, discriminator_args)
    if method == "distillation":
        check_teacher(training_args, model_args)
    if len(parsed) > 5:
        load_reward_funcs(parsed[5].reward_funcs)  # a reward that cannot be found fails here, before the launch
    launch_parser = launch_command_parser()
    launch_args = _launch_arguments(method, launch_parser, config_remaining, cli_remaining)
    script_argv = _without(argv, cli_remaining)
    launch = launch_parser.parse_args([*launch_args, "--module", "trl_irl.scripts.train", method, *script_argv])
    try:
        launch_command(launch)
    except subprocess.CalledProcessError as error:
        # The training process has printed its own error; do not bury it under the launcher's traceback
        raise SystemExit(f"trl-irl {method}: training failed (exit status {error.returncode}).") from None


# The packages whose versions decide what trl-irl does, in the order `trl-irl env` prints them
ENVIRONMENT_PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "bitsandbytes", "deepspeed")


def _env(argv: list[str]) -> None:
    import importlib.metadata
    import platform

    argparse.ArgumentParser(
        prog="trl-irl env", description="Print the versions and devices a bug report needs (as `trl env`)."
    ).parse_args(argv)
    from . import __version__

    lines = {"trl-irl": __version__, "Python": platform.python_version(), "Platform": platform.platform()}
    for package in ENVIRONMENT_PACKAGES:
        try:
            lines[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            lines[package] = "not installed"
    import torch

    accelerators = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    lines["CUDA"] = torch.version.cuda or "none (CPU build of torch)"
    lines["GPUs"] = ", ".join(accelerators) or "none"
    lines["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "unset")
    width = max(map(len, lines))
    print("\n".join(f"- {name + ':':<{width + 1}} {value}" for name, value in lines.items()))


def _evaluate(argv: list[str]) -> None:
    from trl import TrlParser

    from .scripts.evaluate import EvaluateArguments, main

    (arguments,) = TrlParser([EvaluateArguments], prog="trl-irl evaluate").parse_args_and_config(argv)
    main(arguments)


def _estimate(argv: list[str]) -> None:
    from .scripts.estimate import main

    main(argv)


def _command_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="trl-irl",
        description="Align language models from demonstrations alone, with TRL trainers that treat SFT as inverse RL.",
        epilog="`trl-irl COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"trl-irl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each command parses its own options: its help and its errors are its own
    commands.add_parser(
        "demo", add_help=False, help="every method against a synthetic expert, exact divergences (no data needed)"
    )
    commands.add_parser(
        "evaluate", add_help=False, help="models against each other on held-out demonstrations, with intervals"
    )
    commands.add_parser(
        "estimate", add_help=False, help="the memory a gail or airl config needs per process, before loading weights"
    )
    commands.add_parser("env", add_help=False, help="versions and devices, for a bug report (as `trl env`)")
    for method, description in TRAINING_METHODS.items():
        # One spelling per method (`weighted_sft`, as in the configs and the demo), and the hyphenated one accepted
        aliases = [method.replace("_", "-")] if "_" in method else []
        commands.add_parser(method, aliases=aliases, add_help=False, help=description)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parsed, rest = _command_parser().parse_known_args(argv[:1])
    rest += argv[1:]
    command = parsed.command.replace("-", "_")
    if command == "demo":
        _demo(rest)
    elif command == "env":
        _env(rest)
    elif command == "evaluate":
        _evaluate(rest)
    elif command == "estimate":
        _estimate(rest)
    else:
        _train(command, rest)


if __name__ == "__main__":
    main()
