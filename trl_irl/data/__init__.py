"""Demonstration sets shipped with the package: small, offline, for the demo and the tests."""

import json
from pathlib import Path

from datasets import Dataset


_DATA_DIR = Path(__file__).resolve().parent
COUNTING_SPLITS = ("train", "eval")


def load_counting_demonstrations(split: str = "train") -> Dataset:
    """
    The counting demonstrations (prompt-completion): `"Count from 7 by 4, 6 numbers:"` -> `" 7 11 15 19 23 27"`.

    Args:
        split (`str`, *optional*, defaults to `"train"`): `"train"` (432 demonstrations) or `"eval"` (48, with
            prompts that do not occur in `"train"`).

    Returns:
        [`~datasets.Dataset`] with columns `prompt` and `completion`.
    """
    if split not in COUNTING_SPLITS:
        raise ValueError(f"Unknown split {split!r} of the counting demonstrations; expected one of {COUNTING_SPLITS}.")
    with open(_DATA_DIR / f"counting_{split}.jsonl") as f:
        return Dataset.from_list([json.loads(line) for line in f])
