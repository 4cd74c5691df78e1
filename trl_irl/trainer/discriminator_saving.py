"""
What `GAILTrainer` and `AIRLTrainer` save and publish of their discriminator: its weights and card beside the policy,
its training state in each checkpoint (restored on resume), and its own Hub repository.
"""

import json
import os
import tempfile
from pathlib import Path

from transformers.utils import logging
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from ..discriminator.checkpoint import naming_the_file
from .model_cards import DISCRIMINATOR, learned_model_card, policy_card_section
from .model_loading import is_adapter_checkpoint
from .trl_parents import require_parent_methods


logger = logging.get_logger(__name__)


# Beside the discriminator's own state files: how many generation batches its reward has seen
REWARD_STATE_FILE = "discriminator_reward_state.json"
# The private `Trainer` methods overridden below, thinly: where a checkpoint's optimizer state is saved and restored
# (so that the discriminator's follows `save_only_model`), and where a checkpoint is pushed
require_parent_methods(
    GRPOTrainer, ("_save_optimizer_and_scheduler", "_load_optimizer_and_scheduler", "_push_from_checkpoint")
)


# What the discriminator and its reward are: resuming with other values changes the method mid-run, on weights and
# moments that fit either (a change of `disc_type` does not fit, and is refused by the weights' loading)
METHOD_SETTINGS = (
    "disc_level",
    "disc_loss_type",
    "divergence",
    "divergence_alpha",
    "log_prob_coef",
    "log_prob_reduction",
)


def _warn_about_changed_settings(saved: dict, args, checkpoint: str) -> None:
    """Say which of `METHOD_SETTINGS` this run changes from the checkpoint's: they are taken from this run's."""
    changed = {
        name: (value, getattr(args, name, None))
        for name, value in saved.items()
        if name in METHOD_SETTINGS and value != getattr(args, name, None)
    }
    if changed:
        listed = "; ".join(f"`{name}` {old!r} -> {new!r}" for name, (old, new) in changed.items())
        logger.warning(
            f"Resuming from {checkpoint} with other discriminator settings than it was written with ({listed}): the "
            "discriminator's weights, optimizer moments and replay buffer continue, and this run's settings decide "
            "what it learns and rewards from now on, a change of method in the middle of the run."
        )


class DiscriminatorSaving:
    """
    Mixin of the adversarial trainers, which set `discriminator`, `discriminator_reward`, `discriminator_dir` (where
    the discriminator goes beside the policy) and `_card_role`.
    """

    def save_discriminator(
        self,
        output_dir: str | os.PathLike,
        load_from: str | None = None,
        subfolder: str | None = None,
        dataset_name: str | None = None,
    ) -> None:
        """
        Save the discriminator on its own (safetensors, config, tokenizer, model card), loadable by transformers. Its
        card's example loads it from `load_from` (default: `output_dir`) and `subfolder`. The process that saves
        (`args.should_save`) writes; when the discriminator is sharded (FSDP2), every process must call it, as
        `save_model`, so that its full weights can be gathered.
        """
        self.discriminator.save_pretrained(output_dir, is_main_process=self.args.should_save)
        if self.args.should_save:
            adapter = is_adapter_checkpoint(output_dir)
            card = self._discriminator_card(load_from or str(output_dir), subfolder, dataset_name, adapter)
            card.save(Path(output_dir, "README.md"))

    def _discriminator_base_model(self) -> str | None:
        """The discriminator's Hub id, for its model card; `None` when it was loaded from a local directory."""
        base_model = get_config_model_id(self.discriminator.model.config)
        return None if os.path.isdir(base_model or "") else base_model

    # What the model saved beside the policy is, in its card
    _card_role = DISCRIMINATOR

    def _discriminator_card(
        self, load_from: str, subfolder: str | None = None, dataset_name: str | None = None, adapter: bool = False
    ):
        return learned_model_card(
            role=self._card_role,
            trainer_name=self._name,
            disc_type=self.args.disc_type,
            level=self.args.disc_level,
            divergence=self.args.divergence,
            base_model=self._discriminator_base_model(),
            dataset_name=dataset_name,
            load_from=load_from,
            subfolder=subfolder,
            adapter=adapter,
        )

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """
        TRL's card of the policy, plus a section on the discriminator saved beside it (where it is, how to load it);
        the discriminator's own card is written again with the dataset's name and the repository it is pushed to.
        """
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        # Pushing sets `hub_model_id`; a card made locally points at the directory
        load_from = getattr(self, "hub_model_id", None) or self.args.hub_model_id or str(output_dir)
        saved = output_dir / self.discriminator_dir
        adapter = is_adapter_checkpoint(saved)
        if (saved / "config.json").is_file() or adapter:
            card = self._discriminator_card(load_from, self.discriminator_dir, dataset_name, adapter)
            card.save(saved / "README.md")
        readme = output_dir / "README.md"
        if readme.is_file():
            section = policy_card_section(
                self._card_role,
                self.args.disc_type,
                self.args.disc_level,
                load_from,
                self.discriminator_dir,
                adapter,
            )
            readme.write_text(readme.read_text().rstrip() + "\n" + section)

    def push_discriminator_to_hub(
        self, repo_id: str, private: bool | None = None, token: str | None = None
    ) -> str | None:
        """
        Push the discriminator, with its model card, to its own Hub repository, private if `private` (defaults to
        `args.hub_private_repo`, as `push_to_hub` does). Returns the commit URL on the main process and `None` on the
        others, as `push_to_hub` does; call it on every process (a sharded discriminator's weights are gathered).
        """
        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory() as tmp:
            self.save_discriminator(tmp, load_from=repo_id)
            if not self.is_world_process_zero():
                return None
            api = HfApi(token=token or self.args.hub_token)
            private = self.args.hub_private_repo if private is None else private
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message="Upload discriminator")

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        directory = Path(output_dir or self.args.output_dir)
        # On every process, as `Trainer` calls `save_model`: one writes (see `save_discriminator`)
        self.save_discriminator(
            directory / self.discriminator_dir, load_from=str(directory), subfolder=self.discriminator_dir
        )

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        # A checkpoint's training state, beside the policy's optimizer (and so skipped with `save_only_model`): before
        # `trainer_state.json` marks the checkpoint complete and before `save_total_limit` deletes older ones. Every
        # process writes its own replay buffer and random state, as `Trainer` writes its random states
        super()._save_optimizer_and_scheduler(output_dir)
        directory = Path(output_dir) / self.discriminator_dir
        directory.mkdir(parents=True, exist_ok=True)
        self.discriminator.save_state(directory, self.accelerator.process_index)
        if self.args.should_save:
            reward_state = {
                "num_generations_seen": self.discriminator_reward.num_generations_seen,
                "settings": {name: getattr(self.args, name, None) for name in METHOD_SETTINGS},
            }
            with naming_the_file(directory / REWARD_STATE_FILE, "the discriminator reward's state"):
                (directory / REWARD_STATE_FILE).write_text(json.dumps(reward_state))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        directory = Path(checkpoint) / self.discriminator_dir
        self.discriminator.load(directory, self.accelerator.process_index)
        state = json.loads((directory / REWARD_STATE_FILE).read_text())
        self.discriminator_reward.num_generations_seen = state["num_generations_seen"]
        _warn_about_changed_settings(state.get("settings", {}), self.args, checkpoint)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self.args.hub_strategy != "end":
            # `Trainer` pushes `output_dir` with the policy's files copied from the checkpoint: the discriminator
            # beside them must be this checkpoint's too, its card pointing at the repository
            self.save_discriminator(
                Path(self.args.output_dir) / self.discriminator_dir,
                load_from=self.hub_model_id,
                subfolder=self.discriminator_dir,
            )
        super()._push_from_checkpoint(checkpoint_folder)

    @property
    def checkpoint_requires(self) -> tuple[str, ...]:
        return (f"{self.discriminator_dir}/{REWARD_STATE_FILE}",)

    def _refuse_incomplete_checkpoint(self, checkpoint: str) -> None:
        """Refuse, before any work, a checkpoint without the discriminator's state (rather than when it is loaded)."""
        state_file = Path(checkpoint) / self.discriminator_dir / REWARD_STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(
                f"The checkpoint {checkpoint} has no discriminator state ({state_file}); it was not written by "
                f"{type(self).__name__}, was saved with `save_only_model=True`, or its save was interrupted."
            )
