"""Pieces the trainers share."""

import dataclasses
import textwrap

from transformers import TrainingArguments


# The paper every trainer of this package implements a part of
SFT_AS_IRL_CITATION = textwrap.dedent("""\
    @article{sun2024supervised,
        title        = {{Supervised Fine-Tuning as Inverse Reinforcement Learning}},
        author       = {Hao Sun},
        year         = 2024,
        eprint       = {arXiv:2403.12017},
    }""")


def upgrade_config(args: TrainingArguments, config_class: type, **overrides) -> TrainingArguments:
    """
    Turn the parent trainer's config (`SFTConfig`, `GRPOConfig`, ...) into ours, keeping every value it holds.

    The fields are read directly rather than through `to_dict`, which masks every `*_token` value (`eos_token`
    included). `overrides` replace values that the parent's `__post_init__` derived and would refuse to see given.
    """
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(args) if field.init}
    return config_class(**{**values, **overrides})
