"""
The record written beside each SFT checkpoint of a comparison (the settings it was trained with and its result), so
that a later comparison with the same SFT settings (other adversarial settings, another method) reuses the checkpoint
instead of training SFT again.
"""

import json
from pathlib import Path

from .settings import ComparisonSettings


# Beside the SFT checkpoint: the settings it was trained with and its curve, so that a later run can reuse it
SFT_RECORD_FILE = "comparison_sft.json"
# The settings that determine the SFT checkpoint and its evaluation
SFT_FIELDS = (
    "regime",
    "num_demonstrations",
    "sft_steps",
    "eval_every",
    "num_eval_prompts",
    "seed",
    "hidden_size",
    "num_hidden_layers",
    "sft_learning_rate",
    "teacher_hidden_size",
    "teacher_num_hidden_layers",
    "teacher_steps",
    # Early stopping picks the checkpoint kept; the pretrained regime's base is what SFT starts from
    "sft_early_stopping",
    "sft_eval_every",
    "num_validation_demonstrations",
    "pretraining_steps",
    "pretraining_examples",
)


def sft_settings(settings: ComparisonSettings) -> dict:
    return {name: getattr(settings, name) for name in SFT_FIELDS}


def reusable_sft_record(directory: Path, settings: ComparisonSettings) -> dict | None:
    """The SFT result saved in `directory` by a run with the same SFT settings, or `None`."""
    record_path = directory / SFT_RECORD_FILE
    if not record_path.is_file() or not (directory / "model.safetensors").is_file():
        return None
    record = json.loads(record_path.read_text())
    return record["result"] if record["settings"] == sft_settings(settings) else None


def write_sft_record(directory: Path, settings: ComparisonSettings, result: dict) -> None:
    """Record beside the SFT checkpoint in `directory` the settings it was trained with and its `result`."""
    record = {"settings": sft_settings(settings), "result": result}
    (directory / SFT_RECORD_FILE).write_text(json.dumps(record))
