"""The two checkpoints of one SFT run that GAIL and AIRL start from: the policy from its middle, the discriminator
from its end (docs/gail_trainer.md, "A discriminator that knows more than the policy")."""

import json
import os
from pathlib import Path
from typing import NamedTuple

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import (
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    logging,
)

from .checkpoints import TRAINER_STATE_FILE, checkpoint_folders
from .likelihood_rewards import RUN_SUBFOLDERS


logger = logging.get_logger(__name__)


# What `save_pretrained` writes for a whole model or for a PEFT adapter, one file or sharded
_WEIGHT_FILES = (
    SAFE_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
)


class SFTRunCheckpoints(NamedTuple):
    """Where GAIL's or AIRL's policy (`model=`) and discriminator (`discriminator=`) start, and at which SFT steps."""

    policy: str
    discriminator: str
    policy_step: int
    discriminator_step: int


def _holds_model(directory: Path) -> bool:
    return any((directory / name).is_file() for name in _WEIGHT_FILES)


def _why_incomplete(directory: Path, is_checkpoint: bool) -> str | None:
    """
    Why a save in `directory` did not finish, or `None`: a checkpoint without `trainer_state.json` (which `Trainer`
    writes last), an index naming a missing shard, or a safetensors file whose header cannot be read.
    """
    if is_checkpoint and not (directory / TRAINER_STATE_FILE).is_file():
        return f"it has no {TRAINER_STATE_FILE}, which `Trainer` writes last"
    for index_name in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME):
        index = directory / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (ValueError, KeyError) as error:
                return f"its {index_name} cannot be read ({error})"
            if missing := sorted(shard for shard in shards if not (directory / shard).is_file()):
                return f"its {index_name} names missing shards {missing[:3]}"
    from safetensors import safe_open

    for weights in directory.glob("*.safetensors"):
        try:
            with safe_open(weights, framework="pt"):
                pass
        except Exception as error:
            return f"{weights.name} cannot be read ({type(error).__name__})"
    return None


def _trainer_state(directory: Path) -> dict:
    """What `Trainer` recorded in `directory`'s `trainer_state.json` (its step, its planned `max_steps`), if any."""
    state_file = directory / TRAINER_STATE_FILE
    return json.loads(state_file.read_text()) if state_file.is_file() else {}


def sft_run_checkpoints(output_dir: str | Path, policy_at: float = 0.5) -> SFTRunCheckpoints:
    """
    The checkpoints of one SFT run (the `output_dir` of an `SFTTrainer` or `WeightedSFTTrainer`) that GAIL and AIRL
    start from: the policy from the saved checkpoint nearest `policy_at` of the run (its middle by default), the
    likelihood-ratio discriminator from the run's end, which thereby knows more than the policy.

    The end is the model `trainer.save_model()` wrote into `output_dir`, or else the run's last checkpoint. Save a
    checkpoint halfway for the policy: `SFTConfig(save_strategy="steps", save_steps=0.5)`
    (`save_only_model=True` is enough).

    ```python
    checkpoints = sft_run_checkpoints("sft-output")
    trainer = GAILTrainer(model=checkpoints.policy, discriminator=checkpoints.discriminator, ...)
    ```
    """
    if not 0 < policy_at < 1:
        raise ValueError(f"`policy_at` is a fraction of the SFT run, strictly between 0 and 1; got {policy_at}.")
    if not isinstance(output_dir, str | os.PathLike):
        # A model trained in memory has no checkpoints of its run to choose from
        raise TypeError(
            f"`sft_run_checkpoints` takes the SFT run's `output_dir` (a path), got a {type(output_dir).__name__}. "
            "Pass the directory `SFTTrainer` saved its checkpoints in; a model in memory has none."
        )
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"The SFT run's output directory {str(output_dir)!r} does not exist.")
    if learned := [name for name in RUN_SUBFOLDERS if (output_dir / name).is_dir()]:
        # A GAIL or AIRL run's directory: its checkpoints are an adversarial run's, not an SFT run's
        raise ValueError(
            f"{str(output_dir)!r} holds a `{learned[0]}/` folder: it is the output directory of a GAIL or AIRL run, "
            "not of an SFT run. Pass the directory your SFTTrainer or WeightedSFTTrainer saved its checkpoints in."
        )
    checkpoints, skipped = {}, []
    for step, path in checkpoint_folders(output_dir).items():
        if _holds_model(path):
            if reason := _why_incomplete(path, is_checkpoint=True):
                skipped.append(f"{path.name} ({reason})")
            else:
                checkpoints[step] = path
    if skipped:
        logger.warning(
            f"Skipping the SFT run's incomplete checkpoints (interrupted saves): {', '.join(sorted(skipped))}"
        )
    save_hint = (
        'Save one halfway with `SFTConfig(save_strategy="steps", save_steps=0.5)` (half the run, also when it is '
        "counted in epochs) and train again, or "
        "pass the two checkpoints to the trainer yourself (`model=`, `discriminator=`)."
    )
    if not checkpoints:
        raise ValueError(
            f"{str(output_dir)!r} holds no {PREFIX_CHECKPOINT_DIR}-<step> directory with a model in it, so there is "
            f"no earlier checkpoint of the run for the policy. {save_hint}"
        )
    last_checkpoint_step = max(checkpoints)
    final_incomplete = _holds_model(output_dir) and _why_incomplete(output_dir, is_checkpoint=False)
    if final_incomplete:
        logger.warning(
            f"The model saved in {str(output_dir)!r} is incomplete ({final_incomplete}): the discriminator is the "
            "run's last complete checkpoint instead."
        )
    if _holds_model(output_dir) and not final_incomplete:
        # The model `save_model` wrote after training: its step is the one `save_state` recorded beside it, or else
        # the end the last checkpoint's run planned (`max_steps`), reached since the final model was saved
        planned = _trainer_state(checkpoints[last_checkpoint_step]).get("max_steps") or 0
        end_step = _trainer_state(output_dir).get("global_step") or max(last_checkpoint_step, planned)
        end = output_dir
    else:
        end, end_step = checkpoints[last_checkpoint_step], last_checkpoint_step
    earlier = {step: path for step, path in checkpoints.items() if step < end_step}
    if not earlier:
        raise ValueError(
            f"{str(output_dir)!r} has no checkpoint before the run's end (step {end_step}), so the policy would start "
            f"where the discriminator does. {save_hint}"
        )
    target = policy_at * end_step
    # Nearest to the target; of two as near, the earlier one
    policy_step = min(earlier, key=lambda step: (abs(step - target), step))
    _warn_if_more_than_one_run(output_dir, checkpoints, policy_step, end_step)
    return SFTRunCheckpoints(str(earlier[policy_step]), str(end), policy_step, end_step)


def _warn_if_more_than_one_run(
    output_dir: Path, checkpoints: dict[int, Path], policy_step: int, end_step: int
) -> None:
    """
    Checkpoints whose runs planned different ends (`max_steps` in their `trainer_state.json`) come from more than one
    run written to one directory, or from a run resumed with a longer schedule: say which were chosen, since the first
    would start the policy and the discriminator from different runs.
    """
    by_plan: dict[int, list[int]] = {}
    for step, path in sorted(checkpoints.items()):
        if (planned := _trainer_state(path).get("max_steps")) is not None:
            by_plan.setdefault(planned, []).append(step)
    if len(by_plan) > 1:
        groups = "; ".join(
            f"max_steps {plan}: " + ", ".join(f"{PREFIX_CHECKPOINT_DIR}-{step}" for step in steps)
            for plan, steps in sorted(by_plan.items())
        )
        logger.warning(
            f"{str(output_dir)!r} holds checkpoints of runs that planned different ends ({groups}): more than one SFT "
            "run, or one resumed with a longer schedule. The policy starts from "
            f"{PREFIX_CHECKPOINT_DIR}-{policy_step} and the discriminator from step {end_step}; if they belong to "
            "different runs, give each run its own `output_dir` or pass the two checkpoints yourself (`model=`, "
            "`discriminator=`)."
        )
