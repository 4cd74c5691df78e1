"""
A discriminator's checkpoint format: its weights loadable by transformers (or PEFT), and what resuming needs beside
them, in `discriminator_state.pt` (the optimizer, written by process 0; the replay buffer and its random state) and
one `discriminator_state_process<i>.pt` per other process (its own replay buffer and random state).

State files are read with `torch.load(weights_only=True)`: a checkpoint downloaded from someone else cannot run code
when it is resumed. A missing, corrupt or crafted file is refused with an error naming it.
"""

from contextlib import contextmanager
from pathlib import Path

import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)
STATE_FILE = "discriminator_state.pt"


def process_state_file(process_index: int) -> str:
    """The file of one process's discriminator state: `STATE_FILE` for process 0 (which also holds the optimizer)."""
    return STATE_FILE if process_index == 0 else f"discriminator_state_process{process_index}.pt"


@contextmanager
def naming_the_file(path: str | Path, what: str):
    """
    A write that fails part-way (a full disk, a lost mount, no permission) raises an error naming what was written
    where, instead of the writer's own, which often names nothing (`torch.save`: "file write failed").
    """
    try:
        yield
    except (OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(
            getattr(error, "errno", None),
            f"Writing {what} to {path} failed part-way ({reason}): it is incomplete. A checkpoint that holds it is "
            "not marked complete (its trainer_state.json is written after it), so resuming skips it. Free space or "
            "fix the permissions, then save again.",
        ) from error


def save_pretrained(discriminator, directory: str | Path, is_main_process: bool = True) -> None:
    """The model (safetensors and config) and tokenizer, written by the main process; sharded, gathered by all."""
    state_dict = discriminator.parallel.model_state_dict(discriminator.model)
    if not is_main_process:
        return
    with naming_the_file(directory, "the discriminator's weights and tokenizer"):
        _save_model_and_tokenizer(discriminator, directory, state_dict)


def _save_model_and_tokenizer(discriminator, directory: str | Path, state_dict: dict) -> None:
    if discriminator.adapter_name is not None:
        # Only its own adapter, as a PEFT adapter of the shared base (PEFT would put a second adapter in a subfolder
        # named after it): `AutoPeftModelForCausalLM.from_pretrained(directory)` loads q_phi
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        weights = get_peft_model_state_dict(discriminator.model, adapter_name=discriminator.adapter_name)
        save_file(
            {name: tensor.contiguous() for name, tensor in weights.items()},
            Path(directory) / "adapter_model.safetensors",
            metadata={"format": "pt"},
        )
        discriminator.model.peft_config[discriminator.adapter_name].save_pretrained(directory)
    else:
        discriminator.model.save_pretrained(directory, state_dict=state_dict)
    discriminator.tokenizer.save_pretrained(directory)


def save_state(discriminator, directory: str | Path, process_index: int = 0) -> None:
    """
    Each process writes its own replay buffer and random state (`process_state_file(index)`), as `Trainer` writes one
    random state per process; process 0 adds the optimizer, the same on every process (gathered when sharded).
    """
    state = discriminator.replay_buffer.state_dict()
    optimizer_state = discriminator.parallel.optimizer_state_dict(discriminator.model, discriminator.optimizer)
    if process_index == 0:
        state["optimizer"] = optimizer_state
        state["sharded"] = discriminator.sharded
    path = Path(directory) / process_state_file(process_index)
    with naming_the_file(path, "the discriminator's training state"):
        torch.save(state, path)


def load(discriminator, directory: str | Path, process_index: int = 0) -> None:
    """Restore what `save_pretrained` and `save_state` wrote; the replay buffer is the one `process_index` saved."""
    from peft import PeftModel
    from safetensors.torch import load_file

    directory = Path(directory)
    is_peft = isinstance(discriminator.model, PeftModel)
    weights_file = directory / ("adapter_model.safetensors" if is_peft else "model.safetensors")
    state_file, process_file = directory / STATE_FILE, directory / process_state_file(process_index)
    _check_complete(directory, weights_file, state_file, process_file)
    try:
        weights = load_file(weights_file, device=str(discriminator.device))
    except Exception as error:
        raise ValueError(f"Cannot restore the discriminator: {weights_file} is corrupt ({error}).") from error
    shared_state = _read_state(state_file, {"optimizer", "replay_buffer", "rng_state"})
    own_state = (
        shared_state if process_file == state_file else _read_state(process_file, {"replay_buffer", "rng_state"})
    )
    written_sharded = shared_state.get("sharded", False)  # absent from checkpoints older than sharding
    if written_sharded != discriminator.sharded:
        form = {True: "sharded", False: "replicated"}
        raise ValueError(
            f"The discriminator checkpoint {directory} was written by a {form[written_sharded]} discriminator, and "
            f"this one is {form[discriminator.sharded]}: its optimizer state does not fit. Resume with the same FSDP "
            "setting (under FSDP2 the discriminator is sharded, otherwise replicated)."
        )
    if is_peft:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(discriminator.model, weights, adapter_name=discriminator.adapter_name or "default")
    else:
        missing, unexpected = discriminator.parallel.load_model_state_dict(discriminator.model, weights)
        missing = _untied(discriminator.model, missing, weights)
        if missing or unexpected:
            raise ValueError(
                f"Cannot restore the discriminator: {weights_file} does not fit its model (missing "
                f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); it was saved from another "
                "architecture or discriminator type. Resume with the settings that wrote the checkpoint."
            )
    discriminator.parallel.load_optimizer_state_dict(
        discriminator.model, discriminator.optimizer, shared_state["optimizer"]
    )
    _take_the_new_learning_rate(discriminator)
    discriminator.replay_buffer.load_state_dict(own_state)


def _take_the_new_learning_rate(discriminator) -> None:
    """
    The optimizer's moments come from the checkpoint, its learning rate from this run's settings: loading an
    optimizer's state puts back the rate it was saved with, which would make resuming with a lower
    `disc_learning_rate` (the advice of the saturation warning) silently change nothing.
    """
    saved = sorted({group["lr"] for group in discriminator.optimizer.param_groups})
    for group in discriminator.optimizer.param_groups:
        group["lr"] = discriminator.learning_rate
    if saved != [discriminator.learning_rate]:
        logger.warning(
            f"Resuming the discriminator at the learning rate {discriminator.learning_rate:g} of this run's settings; "
            f"its checkpoint was written at {', '.join(f'{rate:g}' for rate in saved)}."
        )


def _check_complete(directory: Path, weights_file: Path, state_file: Path, process_file: Path) -> None:
    for path in dict.fromkeys((weights_file, state_file, process_file)):
        if not path.is_file():
            more_processes = " with more processes than it was written with," if path == process_file else ""
            raise FileNotFoundError(
                f"The discriminator checkpoint {directory} has no {path.name}: it is incomplete (an interrupted "
                f"save),{more_processes} or was not written by trl-irl. Resume from another checkpoint"
                + (", or with as many processes as wrote it." if more_processes else ".")
            )


def _untied(model: torch.nn.Module, missing: list[str], weights: dict) -> list[str]:
    """The `missing` weights that are not tied to (the same parameter as) a weight in `weights`."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(parameters[name]) for name in weights if name in parameters}
    return [name for name in missing if name not in parameters or id(parameters[name]) not in loaded]


def _read_state(path: Path, keys: set[str]) -> dict:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(state, dict) or not keys <= set(state):
            raise ValueError(f"it lacks some of {sorted(keys)}")
    except Exception as error:
        reason = str(error).strip().splitlines()[0]
        raise ValueError(
            f"Cannot restore the discriminator: {path} is corrupt, crafted or not a trl-irl discriminator state "
            f"({type(error).__name__}: {reason}). It is loaded with `weights_only=True`, so a file that would run "
            "code when loaded is refused; resume from a checkpoint you wrote."
        ) from error
    return state
