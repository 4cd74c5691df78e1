"""Train one method on a dataset from a YAML config and command-line overrides.

    python -m trl_irl.scripts.train gail --config config.yaml [--key value ...]
    accelerate launch [launch arguments] -m trl_irl.scripts.train gail --config config.yaml [--key value ...]

`trl-irl gail ...` runs this module through `accelerate launch`. The keys are those of TRL's `ScriptArguments`
(dataset), `ModelConfig` (model) and the method's config class, and for `gail` and `airl` those of
[`DiscriminatorArguments`] (the discriminator's model and LoRA) and [`RewardArguments`] (rewards beside it).
"""

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import (
    DatasetMixtureConfig,
    DistillationConfig,
    DistillationTrainer,
    ModelConfig,
    ScriptArguments,
    SFTConfig,
    SFTTrainer,
    TrlParser,
    get_peft_config,
    get_quantization_config,
)

from ..trainer import (
    AIRLConfig,
    AIRLTrainer,
    GAILConfig,
    GAILTrainer,
    VarianceRewardConfig,
    VarianceRewardTrainer,
    WeightedSFTConfig,
    WeightedSFTTrainer,
)
from ..trainer.model_cards import peft_task_type
from .launch_checks import DATA_FILE_BUILDERS, check_arguments, check_teacher


TRAINERS = {
    "sft": (SFTConfig, SFTTrainer),
    "weighted_sft": (WeightedSFTConfig, WeightedSFTTrainer),
    "gail": (GAILConfig, GAILTrainer),
    "airl": (AIRLConfig, AIRLTrainer),
    "variance_reward": (VarianceRewardConfig, VarianceRewardTrainer),
    # TRL's on-policy distillation, for the recipe that uses a larger SFT model's logits (`teacher_model_name_or_path`)
    "distillation": (DistillationConfig, DistillationTrainer),
}
ADVERSARIAL_METHODS = ("gail", "airl")


@dataclass
class DiscriminatorArguments:
    """
    The discriminator of `gail` and `airl`, as `ModelConfig` describes the policy (TRL's precedent for a second model:
    `teacher_model_name_or_path`). Its `from_pretrained` keyword arguments are the config's
    `disc_init_kwargs`. `sft_run` instead chooses the policy's and the discriminator's checkpoints together,
    from one SFT run.
    """

    discriminator_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "The discriminator's model id or path. Defaults to the policy's checkpoint."},
    )
    sft_run: str | None = field(
        default=None,
        metadata={
            "help": "The output directory of one SFT run that saved a checkpoint halfway: the policy starts from "
            "that checkpoint and the discriminator from the run's end (`trl_irl.sft_run_checkpoints`). Replaces "
            "`model_name_or_path` and `discriminator_model_name_or_path`."
        },
    )
    sft_run_policy_at: float = field(
        default=0.5,
        metadata={"help": "With `sft_run`: the fraction of the run whose nearest checkpoint the policy starts from."},
    )
    discriminator_use_peft: bool = field(
        default=False, metadata={"help": "Train the discriminator as a LoRA adapter."}
    )
    discriminator_lora_r: int = field(default=16, metadata={"help": "LoRA rank of the discriminator."})
    discriminator_lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha of the discriminator."})
    discriminator_lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout of the discriminator."})
    discriminator_lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules the discriminator's LoRA adapts. Defaults to all linear layers."}
    )


@dataclass
class RewardArguments:
    """Rewards added beside the discriminator's (`GAILTrainer(reward_funcs=...)`), named as `trl grpo` names them."""

    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Rewards beside the discriminator's, as in `trl grpo`: one of TRL's (`accuracy_reward`, "
            "`reasoning_accuracy_reward`, `think_format_reward`, `get_soft_overlong_punishment`) or a dotted import "
            "path (`my_rewards.checker`, importable from the working directory). `reward_weights` weighs the "
            "discriminator's reward first, then these in order."
        },
    )


def load_reward_funcs(names: list[str] | None) -> list:
    """The reward functions `names` stand for, as `trl grpo` resolves them; a name that resolves to none is named."""
    from trl.rewards import (
        accuracy_reward,
        get_soft_overlong_punishment,
        reasoning_accuracy_reward,
        think_format_reward,
    )

    registry = {
        "accuracy_reward": accuracy_reward,
        "reasoning_accuracy_reward": reasoning_accuracy_reward,
        "think_format_reward": think_format_reward,
        # With `trl grpo`'s values
        "get_soft_overlong_punishment": get_soft_overlong_punishment(max_completion_len=1280, soft_punish_cache=256),
    }
    functions = []
    for name in names or []:
        if name in registry:
            functions.append(registry[name])
            continue
        module_path, _, attribute = name.rpartition(".")
        if not module_path:
            raise SystemExit(
                f"`reward_funcs`: {name!r} is neither one of TRL's rewards ({', '.join(registry)}) nor a dotted "
                "import path (`my_rewards.checker`)."
            )
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `trl grpo`: a module beside the config
        try:
            function = getattr(importlib.import_module(module_path), attribute)
        except (ImportError, AttributeError) as error:
            raise SystemExit(
                f"`reward_funcs`: {name!r} cannot be imported from the working directory: {error}"
            ) from None
        functions.append(function)
    return functions


def discriminator_peft_config(discriminator_args: DiscriminatorArguments, training_args):
    """The discriminator's `LoraConfig`, with the task type its kind needs (so that a classifier's head trains)."""
    if not discriminator_args.discriminator_use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=discriminator_args.discriminator_lora_r,
        lora_alpha=discriminator_args.discriminator_lora_alpha,
        lora_dropout=discriminator_args.discriminator_lora_dropout,
        target_modules=discriminator_args.discriminator_lora_target_modules or "all-linear",
        task_type=peft_task_type(training_args.disc_type, training_args.disc_level),
    )


def canonical_method(name: str) -> str:
    """A method's one spelling (`weighted_sft`); the command accepts `weighted-sft` too."""
    return name.replace("-", "_")


def make_parser(method: str, prog: str | None = None) -> TrlParser:
    method = canonical_method(method)
    if method not in TRAINERS:
        raise SystemExit(f"trl-irl: unknown method {method!r}; expected one of: {', '.join(TRAINERS)}.")
    dataclass_types = [ScriptArguments, TRAINERS[method][0], ModelConfig, DatasetMixtureConfig]
    if method in ADVERSARIAL_METHODS:
        dataclass_types += [DiscriminatorArguments, RewardArguments]
    return TrlParser(dataclass_types, prog=prog or f"trl-irl {method}")


def use_sft_run(method: str, model_args: ModelConfig, discriminator_args: DiscriminatorArguments | None) -> None:
    """
    With `sft_run`, set the policy's and the discriminator's checkpoints to the two that `sft_run_checkpoints`
    finds in it; a run without an earlier checkpoint, or `sft_run` beside either checkpoint, fails by name.
    """
    if discriminator_args is None or discriminator_args.sft_run is None:
        return
    from ..sft_run import sft_run_checkpoints

    given = [
        name
        for name, value in (
            ("model_name_or_path", model_args.model_name_or_path),
            ("discriminator_model_name_or_path", discriminator_args.discriminator_model_name_or_path),
        )
        if value is not None
    ]
    if given:
        raise SystemExit(
            f"trl-irl {method}: `sft_run` chooses both checkpoints from one SFT run; remove {', '.join(given)} or "
            "`sft_run`."
        )
    try:
        checkpoints = sft_run_checkpoints(discriminator_args.sft_run, discriminator_args.sft_run_policy_at)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"trl-irl {method}: `sft_run`: {error}") from None
    model_args.model_name_or_path = checkpoints.policy
    discriminator_args.discriminator_model_name_or_path = checkpoints.discriminator


def load_datasets(
    script_args: ScriptArguments, training_args, dataset_args: DatasetMixtureConfig | None = None
) -> tuple:
    """
    The training split and, when `eval_strategy` is not `"no"`, the evaluation split (`dataset_test_split`) of a Hub
    dataset, a local dataset directory, or a single JSON, JSON Lines, CSV or Parquet file (whose one split is
    `train`), streamed if `dataset_streaming`; or of a mixture (`datasets:` in the YAML config, TRL's
    `DatasetMixtureConfig`: its splits are `train`, and `test` with `test_split_size`). A missing split is an error
    naming the argument and the splits found.
    """
    from datasets import load_dataset

    if dataset_args is not None and dataset_args.datasets:
        from trl import get_dataset

        dataset = get_dataset(dataset_args)
        wanted = {"dataset_train_split": "train"}
        if training_args.eval_strategy != "no":
            wanted["dataset_test_split"] = "test"
        return _splits(dataset, wanted, "the `datasets:` mixture")
    path = Path(script_args.dataset_name)
    streaming = script_args.dataset_streaming
    if path.is_file():
        dataset = load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), streaming=streaming)
    else:
        dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config, streaming=streaming)
    wanted = {"dataset_train_split": script_args.dataset_train_split}
    if training_args.eval_strategy != "no":
        wanted["dataset_test_split"] = script_args.dataset_test_split
    return _splits(dataset, wanted, repr(script_args.dataset_name))


def _splits(dataset, wanted: dict[str, str], source: str) -> tuple:
    """The training and (if wanted) evaluation splits of `dataset`, or an error naming the argument and the splits."""
    for argument, split in wanted.items():
        if split not in dataset:
            raise SystemExit(
                f"`{argument}` is {split!r}, but {source} has the splits {sorted(dataset)}."
                + (" Set `eval_strategy: no` to train without evaluation." if argument == "dataset_test_split" else "")
            )
    eval_dataset = dataset[wanted["dataset_test_split"]] if "dataset_test_split" in wanted else None
    return dataset[wanted["dataset_train_split"]], eval_dataset


def model_init_kwargs(training_args, model_args: ModelConfig) -> dict:
    """How the policy is loaded, as in TRL's scripts: `ModelConfig`'s options, then `model_init_kwargs` over them."""
    kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    return {**kwargs, **(training_args.model_init_kwargs or {})}


def main(
    method: str,
    script_args: ScriptArguments,
    training_args,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig | None = None,
    discriminator_args: DiscriminatorArguments | None = None,
    reward_args: RewardArguments | None = None,
) -> None:
    method = canonical_method(method)
    use_sft_run(method, model_args, discriminator_args)
    check_arguments(method, script_args, model_args, dataset_args)
    if method == "distillation":
        check_teacher(training_args, model_args)
    trainer_class = TRAINERS[method][1]
    training_args.model_init_kwargs = model_init_kwargs(training_args, model_args)
    train_dataset, eval_dataset = load_datasets(script_args, training_args, dataset_args)
    discriminator_kwargs = {}
    if method in ADVERSARIAL_METHODS:
        discriminator_args = discriminator_args or DiscriminatorArguments()
        discriminator_kwargs = {
            "discriminator": discriminator_args.discriminator_model_name_or_path,
            "discriminator_peft_config": discriminator_peft_config(discriminator_args, training_args),
            "reward_funcs": load_reward_funcs((reward_args or RewardArguments()).reward_funcs) or None,
        }
    if method == "distillation":
        discriminator_kwargs = {"teacher_model": training_args.teacher_model_name_or_path}
    trainer = trainer_class(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
        **discriminator_kwargs,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def end_of_a_distributed_run() -> None:
    """
    Under several processes, wait for all of them and take the process group down before the interpreter does: left
    to its teardown, a process on a 2-core CPU machine sometimes aborted after the run had finished and saved
    ("terminate called without an active exception"), and the launcher reported the whole run as failed.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: python -m trl_irl.scripts.train {{{','.join(TRAINERS)}}} --config config.yaml")
    method = canonical_method(sys.argv[1])
    # YAML keys that are not the method's are `accelerate launch` options, already used by the launcher (as in TRL)
    main(method, *make_parser(method).parse_args_and_config(sys.argv[2:], fail_with_unknown_args=False))
    end_of_a_distributed_run()
