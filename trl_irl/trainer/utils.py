"""Pieces the trainers share."""

import dataclasses
import json
import os
import re
import textwrap
from pathlib import Path

from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging
from trl.trainer.utils import get_config_model_id


logger = logging.get_logger(__name__)

# Written last by `Trainer._save_checkpoint`, after the weights, optimizer and everything `save_model` writes, and
# before old checkpoints are rotated away: a checkpoint without it was interrupted
TRAINER_STATE_FILE = "trainer_state.json"
# The folder name `Trainer` gives a checkpoint, with its step
CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


# The paper every trainer of this package implements a part of
SFT_AS_IRL_CITATION = textwrap.dedent("""\
    @article{sun2024supervised,
        title        = {{Supervised Fine-Tuning as Inverse Reinforcement Learning}},
        author       = {Hao Sun},
        year         = 2024,
        eprint       = {arXiv:2403.12017},
    }""")


def resolve_config(args: TrainingArguments | None, model, config_class: type, method_name: str, **overrides):
    """
    The config a trainer runs with, from what its `args` may be, as for the TRL parents: `None` (the defaults, with an
    output directory named after the model and the method), an instance of `config_class`, or the parent's config
    (or plain `TrainingArguments`) from an existing script, upgraded with [`upgrade_config`] and `overrides`.
    """
    if args is None:
        model_id = model if isinstance(model, str) else get_config_model_id(model.config)
        return config_class(f"{model_id.split('/')[-1]}-{method_name}")
    if isinstance(args, config_class):
        return args
    parent = next(base for base in config_class.__mro__[1:] if base.__module__.startswith("trl."))
    if not isinstance(args, parent) and type(args) is not TrainingArguments:
        raise TypeError(
            f"The {method_name} trainer takes a `{config_class.__name__}` (or TRL's `{parent.__name__}`, or "
            f"`TrainingArguments`) as `args`, but got a `{type(args).__name__}`, whose fields are another trainer's. "
            f"Build a `{config_class.__name__}` with the settings you need."
        )
    return upgrade_config(args, config_class, **overrides)


def upgrade_config(args: TrainingArguments, config_class: type, **overrides) -> TrainingArguments:
    """
    Turn the parent trainer's config (`SFTConfig`, `GRPOConfig`, ...) into ours, keeping every value it holds.

    The fields are read directly rather than through `to_dict`, which masks every `*_token` value (`eos_token`
    included). `overrides` replace values that the parent's `__post_init__` derived and would refuse to see given.
    """
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(args) if field.init}
    return config_class(**{**values, **overrides})


def last_complete_checkpoint(output_dir: str | os.PathLike, required: tuple[str, ...] = ()) -> str | None:
    """
    The newest `checkpoint-<step>` folder of `output_dir` whose save finished: it holds `trainer_state.json` and every
    path in `required` (relative to the checkpoint). Newer, incomplete ones (a save interrupted by a crash or a lost
    machine) are skipped with a warning instead of being half-loaded. `None` if there is none.
    """
    folders = [path for path in Path(output_dir).iterdir() if path.is_dir() and CHECKPOINT_NAME.match(path.name)]
    for folder in sorted(folders, key=lambda path: int(CHECKPOINT_NAME.match(path.name).group(1)), reverse=True):
        missing = [name for name in (TRAINER_STATE_FILE, *required) if not (folder / name).exists()]
        if not missing:
            return str(folder)
        logger.warning(
            f"Skipping {folder}: it lacks {', '.join(missing)}, so its save was interrupted. Resuming from an "
            "earlier checkpoint."
        )
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str, required=()) -> str | None:
    """
    What `train(resume_from_checkpoint=...)` resumes from: `True` becomes the last complete checkpoint of
    `output_dir` (an error if there is none, as in `Trainer`), a path stays as it is, `None`/`False` mean no resume.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is not True:
        return str(resume_from_checkpoint)
    checkpoint = last_complete_checkpoint(output_dir, required) if os.path.isdir(output_dir) else None
    if checkpoint is None:
        raise ValueError(f"No complete checkpoint found in `output_dir` ({output_dir}) to resume from.")
    return checkpoint


def require_parent_methods(parent: type, names: tuple[str, ...]) -> None:
    """
    Fail at import, naming them, if `parent` lacks methods a trainer overrides or calls although they are private: a
    TRL or transformers release that renamed one would otherwise leave the override silently unused.
    """
    missing = [name for name in names if not callable(getattr(parent, name, None))]
    if missing:
        raise ImportError(
            f"`{parent.__name__}` has no {', '.join(f'`{name}`' for name in missing)}, which trl-irl relies on: the "
            "installed TRL or transformers is not a version trl-irl supports (see its pinned requirements)."
        )


class ResumesFromCompleteCheckpoints:
    """
    Mixin of the trainers: `train(resume_from_checkpoint=True)` resumes from the last checkpoint whose save finished
    (it holds `trainer_state.json` and every path of `checkpoint_requires`), not from an interrupted one, and
    `_prepare_training(checkpoint)` runs first, where a trainer does its own set-up or refuses a checkpoint early.
    """

    # Paths, relative to a checkpoint, without which it is incomplete
    checkpoint_requires: tuple[str, ...] = ()

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir, self.checkpoint_requires)
        self._prepare_training(checkpoint)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _prepare_training(self, checkpoint: str | None) -> None:
        pass


def check_dataset_columns(dataset, name: str, accepted: list[tuple[str, ...]], kind: str) -> None:
    """
    Refuse, naming `name` and its columns, a dataset that is empty or has none of the `accepted` column sets, before
    the parent trainer fails on it with a `KeyError` or `StopIteration`. `None`, and datasets whose columns are only
    known once read, pass; a dict of datasets is checked entry by entry.
    """
    if dataset is None:
        return
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            check_dataset_columns(value, f"{name}[{key!r}]", accepted, kind)
        return
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"`{name}` is empty.")
    if not any(set(columns) >= set(required) for required in accepted):
        formats = " or ".join(" and ".join(f"`{column}`" for column in required) for required in accepted)
        raise ValueError(f"`{name}` has columns {columns}, but a {kind} dataset needs {formats}.")


def is_built_in_memory(model) -> bool:
    """A model object with no checkpoint behind it (`from_config`): its `name_or_path` is empty."""
    config = getattr(model, "config", None)
    return config is not None and not get_config_model_id(config)


def check_tokenizer_given(model, processing_class, argument: str = "processing_class") -> None:
    """
    Refuse a model built in memory given without its tokenizer: the TRL parents would load one from its empty
    `name_or_path`, failing with a message about Hub repository names.
    """
    if processing_class is None and is_built_in_memory(model):
        raise ValueError(
            f"The {'policy' if argument == 'processing_class' else 'discriminator'} was built in memory (its "
            f"`name_or_path` is empty), so there is no checkpoint to load its tokenizer from: pass it as `{argument}`."
        )


def is_adapter_checkpoint(path: str) -> bool:
    """A local directory holding a PEFT adapter (a LoRA SFT run's checkpoint), not a whole model."""
    return os.path.isfile(os.path.join(path, "adapter_config.json"))


def policy_from_adapter_checkpoint(model, model_init_kwargs: dict | None):
    """
    A policy given as the path of a PEFT adapter (a LoRA SFT run's checkpoint), loaded on the base model its config
    names with the adapter trainable, so that GRPO trains it on: GRPO's own loading reads the path as a whole
    model's and fails ("Should have a `model_type` key"). A local checkpoint of another kind of model (a reward
    model's classifier) is refused: GRPO would load it with a new, random language-modelling head, only a load report
    saying so. Anything else is returned as it is.
    """
    if isinstance(model, str) and (Path(model) / "config.json").is_file():
        architectures = json.loads((Path(model) / "config.json").read_text()).get("architectures") or []
        if architectures and not any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):
            raise ValueError(
                f"`model` {model!r} holds a {architectures[0]}, not a causal language model: the policy would get a "
                "new, random language-modelling head. Start the policy from a causal LM (your SFT model); a reward "
                "model goes in `reward_funcs`."
            )
    if not (isinstance(model, str) and is_adapter_checkpoint(model)):
        return model
    return load_trainable_adapter(model, "AutoModelForCausalLM", model_init_kwargs or {})


def load_trainable_adapter(path: str, auto_class_name: str, init_kwargs: dict):
    """
    The adapter in `path` on the base model its config names (loaded with the `auto_class_name` auto class's PEFT
    twin), trainable: `from_pretrained` of the auto class itself loads an adapter frozen, for inference.
    """
    import peft

    peft_class = getattr(peft, auto_class_name.replace("AutoModel", "AutoPeftModel"))
    return peft_class.from_pretrained(path, is_trainable=True, **init_kwargs)


def is_missing_local_path(reference: str) -> bool:
    """
    Whether a model or dataset reference is written as a local path (absolute, `./` or `../`, or more than the one
    `/` of a Hub id `namespace/name`) that does not exist: `from_pretrained` would take it for a Hub id and fail with
    a message about repository names.
    """
    path_like = os.path.isabs(reference) or reference.startswith(".") or reference.count("/") > 1 or "\\" in reference
    return path_like and not os.path.exists(reference)
