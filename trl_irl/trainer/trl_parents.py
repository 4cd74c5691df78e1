"""
How each trainer stands on its TRL parent: its config resolved from what the parent takes, the parent's private methods
it relies on guarded at import, and datasets refused, naming the column, before the parent fails on them.
"""

import dataclasses

from transformers import TrainingArguments
from trl.trainer.utils import get_config_model_id


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
