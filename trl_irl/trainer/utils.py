"""Pieces the trainers share."""

import dataclasses
import textwrap

from transformers import TrainingArguments
from trl.trainer.utils import get_config_model_id


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
