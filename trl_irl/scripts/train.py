"""Train one method on a dataset from a YAML config and command-line overrides.

    python -m trl_irl.scripts.train gail --config config.yaml [--key value ...]
    accelerate launch [launch arguments] -m trl_irl.scripts.train gail --config config.yaml [--key value ...]

`trl-irl gail ...` runs this module through `accelerate launch`. The keys are those of TRL's `ScriptArguments`
(dataset), `ModelConfig` (model) and the method's config class, and for `gail` and `airl` those of
[`DiscriminatorArguments`] (the discriminator's model and LoRA) and [`RewardArguments`] (rewards beside it).
"""

import dataclasses
import enum
import importlib
import os
import sys
import types
import typing
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
from ..trainer.utils import is_missing_local_path


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
DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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

    if training_args.disc_type == "likelihood_ratio":
        task_type = "CAUSAL_LM"
    else:
        task_type = "TOKEN_CLS" if training_args.disc_level == "token" else "SEQ_CLS"
    return LoraConfig(
        r=discriminator_args.discriminator_lora_r,
        lora_alpha=discriminator_args.discriminator_lora_alpha,
        lora_dropout=discriminator_args.discriminator_lora_dropout,
        target_modules=discriminator_args.discriminator_lora_target_modules or "all-linear",
        task_type=task_type,
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


def check_config_types(method: str, config_file: str | Path, dataclass_types) -> None:
    """
    Refuse, before anything is launched, YAML values of a kind their field cannot take. TRL's parser makes the YAML's
    values argparse defaults: text is converted by each option's type (and refused by it), but a list, a mapping, a
    boolean or a number is kept as it is, and fails, if at all, inside the launched training.
    """
    import yaml

    config = yaml.safe_load(Path(config_file).read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"trl-irl {method}: the config file {str(config_file)!r} must hold a YAML mapping.")
    fields = {}
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        fields |= {item.name: (hints[item.name], item.default) for item in dataclasses.fields(dataclass_type)}
    problems = []
    for key, value in config.items():
        if key in fields and not isinstance(value, str):
            annotation, default = fields[key]
            if not _value_fits(value, annotation, default):
                kind = "null" if value is None else type(value).__name__
                problems.append(f"`{key}: {value!r}` is of type {kind}, and the field takes {_type_name(annotation)}")
    if problems:
        raise SystemExit(
            f"trl-irl {method}: in {str(config_file)!r}, " + "; ".join(problems) + ". Nothing was launched."
        )


def _kinds(annotation) -> set:
    """The kinds of YAML value a field's annotation takes: `list`, `dict`, `bool`, `int`, `float`, `str`, `None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(argument) for argument in typing.get_args(annotation)))
    if annotation is type(None):
        return {None}
    if origin is typing.Literal:
        return {type(argument) for argument in typing.get_args(annotation)}
    base = origin or annotation
    if base in (list, tuple, dict, bool, int, float, str):
        return {list if base is tuple else base}
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return {str}
    return {object}  # anything else (`Any`, a class): left to the config class


def _value_fits(value, annotation, default) -> bool:
    kinds = _kinds(annotation)
    if object in kinds:
        return True
    if value is None:
        return None in kinds or default is None
    if isinstance(value, bool):
        return bool(kinds & {bool, str})
    if isinstance(value, int):
        return bool(kinds & {int, float, bool, str})
    if isinstance(value, float):
        return bool(kinds & {float, str}) or (int in kinds and value.is_integer())
    if isinstance(value, list):
        return list in kinds
    if isinstance(value, dict):
        return dict in kinds
    return True


def _type_name(annotation) -> str:
    return str(annotation).replace("typing.", "") if typing.get_origin(annotation) else annotation.__name__


def check_arguments(
    method: str,
    script_args: ScriptArguments,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig | None = None,
) -> None:
    """Fail before any work with a message naming the missing or bad argument."""
    if model_args.model_name_or_path is None:
        raise SystemExit(
            f"trl-irl {method}: `model_name_or_path` is required (in the YAML config or on the command line)."
        )
    if is_missing_local_path(model_args.model_name_or_path):
        raise SystemExit(f"trl-irl {method}: `model_name_or_path` {model_args.model_name_or_path!r} does not exist.")
    if dataset_args is not None and dataset_args.datasets:
        return  # a mixture (`datasets:` in the YAML config) replaces `dataset_name`, as in TRL's scripts
    if script_args.dataset_name is None:
        raise SystemExit(
            f"trl-irl {method}: `dataset_name` (a Hub dataset, a local directory or a file) or a `datasets:` mixture "
            "is required."
        )
    path = Path(script_args.dataset_name)
    if is_missing_local_path(script_args.dataset_name) or (path.suffix in DATA_FILE_BUILDERS and not path.exists()):
        raise SystemExit(f"trl-irl {method}: `dataset_name` {script_args.dataset_name!r} does not exist.")
    if path.is_file() and path.suffix not in DATA_FILE_BUILDERS:
        raise SystemExit(
            f"trl-irl {method}: `dataset_name` {script_args.dataset_name!r}: unsupported file type {path.suffix!r} "
            f"(expected one of {', '.join(DATA_FILE_BUILDERS)})."
        )


def check_before_launch(
    method: str, script_args: ScriptArguments, training_args, model_args: ModelConfig, discriminator_args=None
) -> None:
    """
    What the command can check without loading a model, beyond `check_arguments`: the discriminator's path, the
    output directory, and, for a local data file of conversations, that the policy's tokenizer has a chat template.
    """
    discriminator = getattr(discriminator_args, "discriminator_model_name_or_path", None)
    if discriminator is not None and is_missing_local_path(discriminator):
        raise SystemExit(f"trl-irl {method}: `discriminator_model_name_or_path` {discriminator!r} does not exist.")
    output_dir = Path(training_args.output_dir or "trainer_output")
    if output_dir.exists() and not output_dir.is_dir():
        raise SystemExit(f"trl-irl {method}: `output_dir` {str(output_dir)!r} is a file, not a directory.")
    existing = next(parent for parent in (output_dir, *output_dir.absolute().parents) if parent.exists())
    if not os.access(existing, os.W_OK):
        raise SystemExit(
            f"trl-irl {method}: `output_dir` {str(output_dir)!r} cannot be written ({existing} is read-only)."
        )
    path = Path(script_args.dataset_name or "")
    if path.is_file() and path.suffix in (".json", ".jsonl") and _first_row_is_conversational(path):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path,
            revision=model_args.model_revision,
            trust_remote_code=training_args.trust_remote_code,
        )
        if tokenizer.chat_template is None:
            raise SystemExit(
                f"trl-irl {method}: `dataset_name` {str(path)!r} holds conversations, but the tokenizer of "
                f"`model_name_or_path` {model_args.model_name_or_path!r} has no chat template to render them: use "
                "a model whose tokenizer has one (an instruct or chat checkpoint), or set `chat_template` in its "
                "`tokenizer_config.json`."
            )


def _first_row_is_conversational(path: Path) -> bool:
    """Whether a JSON Lines (or JSON array) file's first row is in a conversational format (TRL's test)."""
    import json

    from trl.data_utils import is_conversational

    with path.open() as file:
        text = file.readline() if path.suffix == ".jsonl" else file.read()
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        return False  # the dataset loader names what is wrong with the file
    row = row[0] if isinstance(row, list) and row else row
    return isinstance(row, dict) and is_conversational(row)


def check_teacher(training_args: DistillationConfig, model_args: ModelConfig) -> None:
    """
    `distillation` needs `teacher_model_name_or_path`, an existing model, loaded as TRL's `distillation` script loads
    it (unquantized, the policy's `dtype` and attention; `teacher_model_init_kwargs` over that).
    """
    teacher = training_args.teacher_model_name_or_path
    if teacher is None:
        raise SystemExit(
            "trl-irl distillation: `teacher_model_name_or_path` is required: the model whose logits the policy learns "
            "(a larger model trained by SFT on the same demonstrations, with the policy's tokenizer)."
        )
    if is_missing_local_path(teacher):
        raise SystemExit(f"trl-irl distillation: `teacher_model_name_or_path` {teacher!r} does not exist.")
    kwargs = {
        "revision": training_args.teacher_model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.teacher_model_init_kwargs = {**kwargs, **(training_args.teacher_model_init_kwargs or {})}


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


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: python -m trl_irl.scripts.train {{{','.join(TRAINERS)}}} --config config.yaml")
    method = canonical_method(sys.argv[1])
    # YAML keys that are not the method's are `accelerate launch` options, already used by the launcher (as in TRL)
    main(method, *make_parser(method).parse_args_and_config(sys.argv[2:], fail_with_unknown_args=False))
