"""trl_irl/checkpoints.py: a run's checkpoint folders, complete or interrupted, and what a resume starts from."""

import pytest
from helpers import adversarial_config, assert_resume_is_exact, fast_config, logged_warnings

import trl_irl
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


# Each trainer as its tests build it: its config, the dataset fixture it trains on, its steps and checkpoint interval
TRAINERS = {
    "WeightedSFT": (fast_config, "prompt_completion_dataset", {"max_steps": 8, "save_steps": 4}),
    "VarianceReward": (fast_config, "preference_dataset", {"max_steps": 8, "save_steps": 4}),
    "GAIL": (adversarial_config, "prompt_completion_dataset", {"max_steps": 4, "save_steps": 2}),
    "AIRL": (adversarial_config, "prompt_completion_dataset", {"max_steps": 4, "save_steps": 2}),
}


def _trainer(method: str, output_dir, request, **overrides):
    build_config, dataset_fixture, steps = TRAINERS[method]
    config_class = getattr(trl_irl, f"{method}Config")
    config = build_config(config_class, output_dir, save_strategy="steps", **steps, **overrides)
    return getattr(trl_irl, f"{method}Trainer")(
        model=request.getfixturevalue("tiny_model_path"),
        args=config,
        train_dataset=request.getfixturevalue(dataset_fixture),
    )


# GAIL's discriminators, levels and pre-training have resume tests of their own in test_gail_trainer.py
@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("WeightedSFT", {"token_weighting": "uniform"}),
        ("WeightedSFT", {"token_weighting": "occupancy"}),
        ("VarianceReward", {}),
        ("AIRL", {}),
    ],
)
def test_each_trainer_resumes_like_an_uninterrupted_run(tmp_path, request, method, overrides):
    resume_step = TRAINERS[method][2]["save_steps"]
    _, resumed = assert_resume_is_exact(
        lambda output_dir: _trainer(method, output_dir, request, **overrides), tmp_path, resume_step
    )
    if hasattr(resumed, "discriminator"):  # AIRL's discriminator state in its `reward_model/` folder
        assert (
            tmp_path / f"checkpoint-{resume_step}" / resumed.discriminator_dir / "discriminator_state.pt"
        ).is_file()


@pytest.mark.parametrize("method", TRAINERS)
def test_each_trainer_resuming_with_true_skips_an_interrupted_checkpoint(tmp_path, request, caplog, method):
    _trainer(method, tmp_path, request).train()
    last_step = TRAINERS[method][2]["max_steps"]
    # As if the machine was lost while the last checkpoint was written (`Trainer` would fail loading it)
    (tmp_path / f"checkpoint-{last_step}" / TRAINER_STATE_FILE).unlink()
    warnings = logged_warnings(caplog, "trl_irl.checkpoints")
    resumed = _trainer(method, tmp_path, request)
    resumed.train(resume_from_checkpoint=True)
    assert len(warnings) == 1 and f"checkpoint-{last_step}" in warnings[0] and TRAINER_STATE_FILE in warnings[0]
    # The first steps come from the checkpoint before, the others were trained again
    logged_steps = [entry["step"] for entry in resumed.state.log_history if "train_runtime" not in entry]
    assert logged_steps == list(range(1, last_step + 1))
    if hasattr(resumed, "discriminator_reward"):
        assert resumed.discriminator_reward.num_generations_seen == last_step
