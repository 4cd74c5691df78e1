"""trl_irl/checkpoints.py: a run's checkpoint folders, complete or interrupted, and what a resume starts from."""

import pytest
from helpers import logged_warnings

from trl_irl.checkpoints import (
    TRAINER_STATE_FILE,
    checkpoint_folders,
    last_complete_checkpoint,
    resolve_resume_checkpoint,
)


def _checkpoint(output_dir, step: int, complete: bool = True, extra: tuple[str, ...] = ()):
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir()
    for name in ((TRAINER_STATE_FILE,) if complete else ()) + extra:
        (folder / name).mkdir() if name.endswith("/") else (folder / name).write_text("{}")
    return folder


def test_checkpoint_folders_are_the_checkpoint_directories_by_step(tmp_path):
    for step in (10, 2, 100):
        _checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint-last").mkdir()
    (tmp_path / "runs").mkdir()
    assert checkpoint_folders(tmp_path) == {
        2: tmp_path / "checkpoint-2",
        10: tmp_path / "checkpoint-10",
        100: tmp_path / "checkpoint-100",
    }


def test_the_newest_complete_checkpoint_is_chosen_by_step_not_by_name(tmp_path, caplog):
    warnings = logged_warnings(caplog, "trl_irl.checkpoints")
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 10)  # sorts before checkpoint-9 as a string
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert warnings == []


def test_interrupted_checkpoints_are_skipped_with_a_warning_naming_what_they_lack(tmp_path, caplog):
    warnings = logged_warnings(caplog, "trl_irl.checkpoints")
    _checkpoint(tmp_path, 4, extra=("discriminator/",))
    _checkpoint(tmp_path, 8, complete=False, extra=("discriminator/",))  # the trainer state never came
    _checkpoint(tmp_path, 12)  # the discriminator never came
    assert last_complete_checkpoint(tmp_path, required=("discriminator",)) == str(tmp_path / "checkpoint-4")
    assert len(warnings) == 2
    assert "checkpoint-12" in warnings[0] and "lacks discriminator" in warnings[0]
    assert "checkpoint-8" in warnings[1] and TRAINER_STATE_FILE in warnings[1]


def test_no_complete_checkpoint_is_none(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 3, complete=False)
    assert last_complete_checkpoint(tmp_path) is None


@pytest.mark.parametrize("no_resume", [None, False])
def test_no_resume_is_none(tmp_path, no_resume):
    assert resolve_resume_checkpoint(no_resume, str(tmp_path / "missing")) is None


def test_a_path_is_resumed_from_as_given_and_true_finds_the_last_complete_one(tmp_path):
    assert resolve_resume_checkpoint(str(tmp_path / "anywhere"), str(tmp_path)) == str(tmp_path / "anywhere")
    _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 6, complete=False)
    assert resolve_resume_checkpoint(True, str(tmp_path)) == str(tmp_path / "checkpoint-5")


@pytest.mark.parametrize("exists", [True, False])
def test_true_without_a_complete_checkpoint_names_the_output_dir(tmp_path, exists):
    output_dir = tmp_path / "run"
    if exists:
        output_dir.mkdir()
    with pytest.raises(ValueError, match=f"No complete checkpoint found in `output_dir` \\({output_dir}\\)"):
        resolve_resume_checkpoint(True, str(output_dir))
