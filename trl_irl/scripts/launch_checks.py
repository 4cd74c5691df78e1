"""
What `trl-irl <method>` checks before it launches training, in the command's own process and without loading a model:
the config file's value types, the required arguments, the paths named (model, dataset, discriminator, teacher,
output directory) and, for a local file of conversations, the tokenizer's chat template. Each failure names the
argument or file, so that nothing is lost to an error in the launched processes.
"""

import dataclasses
import enum
import os
import types
import typing
from pathlib import Path

from trl import DatasetMixtureConfig, DistillationConfig, ModelConfig, ScriptArguments

from ..trainer.model_loading import is_missing_local_path


DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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
