"""trl_irl/discriminator/checkpoint.py: what a discriminator writes, reads back, and refuses to load."""

import pytest
import torch
from helpers import classifier_discriminator


class _RunsCodeWhenUnpickled:
    """A payload that a pickle-based `torch.load` would execute: it records that it ran."""

    def __reduce__(self):
        return (exec, ("import builtins; builtins.TRL_IRL_PAYLOAD_RAN = True",))


class TestLoadRefusesUnsafeOrIncompleteState:
    def _saved(self, directory, path):
        discriminator = classifier_discriminator(path)
        discriminator.save_pretrained(directory)
        discriminator.save_state(directory)
        return directory

    def test_a_crafted_state_file_is_refused_without_running_it(self, tmp_path, tiny_model_path):
        import builtins

        from trl_irl.discriminator import STATE_FILE

        directory = self._saved(tmp_path, tiny_model_path)
        state = torch.load(directory / STATE_FILE, weights_only=True)
        state["rng_state"] = _RunsCodeWhenUnpickled()
        torch.save(state, directory / STATE_FILE)
        with pytest.raises(ValueError, match=f"{STATE_FILE} is corrupt, crafted.*weights_only=True"):
            classifier_discriminator(tiny_model_path).load(directory)
        assert not getattr(builtins, "TRL_IRL_PAYLOAD_RAN", False)

    @pytest.mark.parametrize("file_name", ["model.safetensors", "discriminator_state.pt"])
    def test_a_missing_file_is_named(self, tmp_path, tiny_model_path, file_name):
        directory = self._saved(tmp_path, tiny_model_path)
        (directory / file_name).unlink()
        with pytest.raises(FileNotFoundError, match=f"no {file_name}.*incomplete"):
            classifier_discriminator(tiny_model_path).load(directory)

    def test_a_checkpoint_of_a_sharded_discriminator_is_refused_by_a_replicated_one(self, tmp_path, tiny_model_path):
        # A sharded discriminator's optimizer state is keyed by parameter name; loaded into a replicated one's
        # optimizer it would fail with a shape or key error far from the cause
        from trl_irl.discriminator import STATE_FILE

        directory = self._saved(tmp_path, tiny_model_path)
        state = torch.load(directory / STATE_FILE, weights_only=True)
        torch.save(state | {"sharded": True}, directory / STATE_FILE)
        with pytest.raises(ValueError, match="written by a sharded discriminator, and this one is replicated"):
            classifier_discriminator(tiny_model_path).load(directory)

    @pytest.mark.parametrize("file_name", ["model.safetensors", "discriminator_state.pt"])
    def test_a_corrupt_file_is_named(self, tmp_path, tiny_model_path, file_name):
        directory = self._saved(tmp_path, tiny_model_path)
        (directory / file_name).write_bytes(b"truncated")
        with pytest.raises(ValueError, match="corrupt"):
            classifier_discriminator(tiny_model_path).load(directory)
