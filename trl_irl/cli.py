"""The `trl-irl` command.

    trl-irl demo [--quick] [--regime memorise|rules] [--num-demonstrations N] [--output-dir DIR]
    trl-irl sft | weighted-sft | gail | airl --config config.yaml [--key value ...]

`demo` is the embedded default: it needs no data, model or network. The training subcommands follow `trl <method>`:
a YAML `--config` whose keys are those of `ScriptArguments` (dataset), `ModelConfig` (model) and the method's config
class, any of which can be overridden on the command line. For several processes, run them through accelerate:
`accelerate launch -m trl_irl.cli gail --config config.yaml`.
"""

import argparse
import os
import sys
from pathlib import Path


TRAINING_METHODS = ("sft", "weighted-sft", "gail", "airl")


def _demo(argv: list[str]) -> None:
    from .comparison import METHODS, ComparisonSettings, results_table, run_comparison, svg_plot
    from .synthetic import REGIMES

    parser = argparse.ArgumentParser(
        prog="trl-irl demo",
        description="Train SFT, WeightedSFT, GAIL and AIRL (sequence and token level) on demonstrations of a "
        "synthetic expert whose distribution is known, plus an oracle (GRPO with the exact reverse-KL reward), and "
        "compare their exact divergences from it.",
    )
    parser.add_argument("--quick", action="store_true", help="Fewer steps (100 SFT, 40 adversarial).")
    parser.add_argument(
        "--regime",
        choices=REGIMES,
        default="memorise",
        help="memorise: 8 prompts, seen in training (about a minute). rules: a rule-following expert evaluated on "
        "unseen prompts, with a larger model and 1500 SFT steps (about 7 minutes on 2 CPU cores).",
    )
    parser.add_argument(
        "--num-demonstrations", type=int, default=None, help="Defaults to 64 (memorise) or 2048 (rules)."
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--output-dir", default="trl-irl-demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    options = {"methods": tuple(args.methods), "seed": args.seed}
    if args.num_demonstrations is not None:
        options["num_demonstrations"] = args.num_demonstrations
    settings = ComparisonSettings.for_regime(args.regime, quick=args.quick, **options)
    results = run_comparison(settings, args.output_dir)
    output_dir = Path(args.output_dir)
    for metric in ("reverse_kl", "forward_kl"):
        (output_dir / f"{metric}.svg").write_text(svg_plot(results, metric))
    print()
    print(
        f"{args.regime} regime, {settings.num_demonstrations} demonstrations; divergences from the expert at the end "
        f"(expert's mean length: {results['expert_mean_length']:.2f} words):"
    )
    print(results_table(results))
    print(
        f"\nresults: {output_dir / 'results.json'}; plots: {output_dir / 'reverse_kl.svg'}, "
        f"{output_dir / 'forward_kl.svg'}"
    )


def _load_dataset(name: str, config: str | None, split: str):
    from datasets import load_dataset

    path = Path(name)
    if path.is_file():
        builder = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix)
        if builder is None:
            raise ValueError(
                f"`dataset_name` {name!r}: unsupported file type {path.suffix!r} (json, jsonl, csv, parquet)."
            )
        return load_dataset(builder, data_files=str(path), split=split)
    return load_dataset(name, name=config, split=split)


def _train(method: str, argv: list[str]) -> None:
    from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser, get_peft_config

    from .trainer import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, WeightedSFTConfig, WeightedSFTTrainer

    config_class, trainer_class = {
        "sft": (SFTConfig, SFTTrainer),
        "weighted-sft": (WeightedSFTConfig, WeightedSFTTrainer),
        "gail": (GAILConfig, GAILTrainer),
        "airl": (AIRLConfig, AIRLTrainer),
    }[method]
    parser = TrlParser((ScriptArguments, config_class, ModelConfig), prog=f"trl-irl {method}")
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    if model_args.model_name_or_path is None:
        raise SystemExit(
            f"trl-irl {method}: `model_name_or_path` is required (in the YAML config or on the command line)."
        )
    if script_args.dataset_name is None:
        raise SystemExit(f"trl-irl {method}: `dataset_name` is required: a Hub dataset, a local directory or a file.")
    train_dataset = _load_dataset(
        script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
    )
    trainer = trainer_class(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = ("demo", *TRAINING_METHODS)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command not in commands:
        raise SystemExit(f"trl-irl: unknown command {command!r}; expected one of: {', '.join(commands)}.")
    if command == "demo":
        _demo(rest)
    else:
        _train(command, rest)


if __name__ == "__main__":
    main()
