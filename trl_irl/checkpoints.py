"""
A run's `checkpoint-<step>` folders as `Trainer` writes them: found, told complete from interrupted, and resumed from.
Every trainer of the package resumes through `ResumesFromCompleteCheckpoints`; `sft_run` chooses an SFT run's two
checkpoints from the same folders.
"""

import os
import re
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Written last by `Trainer._save_checkpoint`, after the weights, optimizer and everything `save_model` writes, and
# before old checkpoints are rotated away: a checkpoint without it was interrupted
TRAINER_STATE_FILE = "trainer_state.json"
# The folder name `Trainer` gives a checkpoint, with its step
CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_folders(output_dir: str | os.PathLike) -> dict[int, Path]:
    """Each `checkpoint-<step>` folder of `output_dir` by its step, complete or not."""
    folders = {}
    for path in Path(output_dir).iterdir():
        if (match := CHECKPOINT_NAME.match(path.name)) and path.is_dir():
            folders[int(match.group(1))] = path
    return folders


def last_complete_checkpoint(output_dir: str | os.PathLike, required: tuple[str, ...] = ()) -> str | None:
    """
    The newest `checkpoint-<step>` folder of `output_dir` whose save finished: it holds `trainer_state.json` and every
    path in `required` (relative to the checkpoint). Newer, incomplete ones (a save interrupted by a crash or a lost
    machine) are skipped with a warning instead of being half-loaded. `None` if there is none.
    """
    for _, folder in sorted(checkpoint_folders(output_dir).items(), reverse=True):
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
