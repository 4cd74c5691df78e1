import json
import os
import tempfile
import textwrap
from pathlib import Path

from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, set_seed
from transformers.utils import logging
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from ..data_utils import (
    DemonstrationPool,
    SampleEncoder,
    prepare_train_and_eval,
    warn_about_long_demonstrations,
)
from ..discriminator import pretrain_likelihood
from ..rewards import DiscriminatorReward, PolicyLogProbOffsets
from ..token_advantages import place_token_advantages
from .gail_config import GAILConfig
from .gail_discriminator import (
    build_discriminator,
    check_fits_policy,
    discriminator_on_policy_model,
    shards_discriminator,
)
from .model_cards import learned_model_card, policy_card_section
from .utils import SFT_AS_IRL_CITATION, ResumesFromCompleteCheckpoints, require_parent_methods, resolve_config


logger = logging.get_logger(__name__)

_REWARD_STATE_FILE = "discriminator_reward_state.json"
# The private `Trainer` methods overridden below, thinly: where a checkpoint's optimizer state is saved and restored
# (so that the discriminator's follows `save_only_model`), and where a checkpoint is pushed
_PRIVATE_OVERRIDES = ("_save_optimizer_and_scheduler", "_load_optimizer_and_scheduler", "_push_from_checkpoint")
require_parent_methods(GRPOTrainer, (*_PRIVATE_OVERRIDES, "_generate_and_score_completions", "_tokenize_prompts"))


class GAILTrainer(ResumesFromCompleteCheckpoints, GRPOTrainer):
    r"""
    Generative adversarial imitation of demonstrations, on top of [`~trl.GRPOTrainer`].

    A discriminator learns to tell the expert's responses from the policy's; its logit `l`
    (expert is high) becomes the policy's reward through the chosen divergence (`softplus(l) - log 2` for GAIL's
    Jensen-Shannon), and GRPO maximises it. Alternating the two makes the policy's responses indistinguishable from
    the demonstrations: a mode-seeking match of the expert's response distribution that needs no preference data.

    Everything else is GRPO's: generation (including vLLM), the group baseline, the reference model and `beta`,
    PEFT, logging. The discriminator reaches GRPO as a reward function (see `trl_irl/rewards.py`), which is updated
    on each generation batch before (or after, `disc_scoring`) it scores the batch.

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]): the policy, as for `GRPOTrainer`. Start it from an SFT
            checkpoint: adversarial training refines a policy, it does not teach the task from scratch.
        discriminator (`str` or [`~transformers.PreTrainedModel`], *optional*): a model id or path, or a model. With
            `discriminator_type="likelihood_ratio"` (the default) a causal LM (`AutoModelForCausalLM`), which must
            share the policy's tokenizer; defaults to the policy's checkpoint, loaded from where the policy was, so
            that `l = 0` at the start only if the policy is that checkpoint. With `"classifier"` a one-label sequence
            (or, at the token level, token) classifier, loaded with `num_labels=1`; defaults to a classification head
            on the policy's checkpoint.
        args ([`GAILConfig`], *optional*): a `GRPOConfig` is accepted and gets the default discriminator settings.
        train_dataset, eval_dataset: SFT datasets: prompt-completion (standard or conversational) or `messages`, whose
            last assistant turn is the demonstration.
        processing_class: the policy's tokenizer, as for `GRPOTrainer`.
        discriminator_processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*): the discriminator's
            tokenizer (it may differ from the policy's); loaded from the discriminator's checkpoint if not given.
        callbacks, optimizers, peft_config: as for `GRPOTrainer` (they concern the policy).
        discriminator_peft_config ([`~peft.PeftConfig`], *optional*): wraps the discriminator with PEFT (for a
            classifier use `task_type="SEQ_CLS"`, so that its classification head is trained too; for the likelihood
            ratio `"CAUSAL_LM"`).
        quantization_config ([`~transformers.BitsAndBytesConfig`], *optional*): quantizes the policy when it is given
            as a model id or path (QLoRA, with `peft_config`), as for `GRPOTrainer`.
    """

    _tag_names = ["trl", "grpo", "trl-irl", "gail"]
    _name = "GAIL"
    # Where `save_model` and checkpoints put the discriminator, beside the policy
    discriminator_dir = "discriminator"
    _paper = {
        "title": "Generative Adversarial Imitation Learning",
        "id": "1606.03476",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @inproceedings{ho2016generative,
                title        = {{Generative Adversarial Imitation Learning}},
                author       = {Jonathan Ho and Stefano Ermon},
                year         = 2016,
                booktitle    = {Advances in Neural Information Processing Systems 29},
                eprint       = {arXiv:1606.03476},
            }""")
        + "\n\n"
        + SFT_AS_IRL_CITATION,
    }

    def __init__(
        self,
        model: str | PreTrainedModel,
        discriminator: str | PreTrainedModel | None = None,
        args: GAILConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        discriminator_processing_class: PreTrainedTokenizerBase | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers=(None, None),
        peft_config=None,
        discriminator_peft_config=None,
        quantization_config=None,
    ):
        policy_id = model if isinstance(model, str) else get_config_model_id(model.config)
        # A `GRPOConfig` from an existing script keeps every value and gets the default discriminator settings.
        # `__post_init__` derives `generation_batch_size` from `steps_per_generation` again, and refuses both.
        args = resolve_config(args, model, GAILConfig, self._name, generation_batch_size=None)
        train_dataset, eval_dataset = prepare_train_and_eval(train_dataset, eval_dataset)
        demonstration_pool = self._demonstration_pool(train_dataset, args)
        if args.disc_shares_policy_base and (discriminator is not None or discriminator_peft_config is not None):
            raise ValueError(
                "`disc_shares_policy_base=True` makes the discriminator a copy of the policy's adapter on the "
                "policy's own model: leave `discriminator` and `discriminator_peft_config` unset, or set "
                "`disc_shares_policy_base=False`."
            )
        # A new classification head is initialised here, before GRPO seeds: seed it, so that runs are reproducible
        set_seed(args.seed)
        # Sharing the policy's model, the discriminator is built on it once GRPO has made it a PEFT model
        if not args.disc_shares_policy_base:
            discriminator = build_discriminator(
                discriminator or policy_id,
                discriminator_processing_class,
                discriminator_peft_config,
                args,
                is_policy_checkpoint=discriminator is None,
            )
        self.discriminator_reward = DiscriminatorReward(
            None,
            None,
            divergence=args.divergence,
            alpha=args.divergence_alpha,
            updates_per_generation=args.disc_updates_per_generation,
            scoring=args.disc_scoring,
            reward_clip=args.reward_clip,
            warmup_generations=args.disc_warmup_generations,
            is_training=lambda: self.model.training,
            demonstration_pool=demonstration_pool,
            demonstrations_per_update=args.disc_demonstrations_per_update,
            generations_per_prompt=args.num_generations,
        )
        super().__init__(
            model=model,
            reward_funcs=[self.discriminator_reward],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            quantization_config=quantization_config,
        )
        if args.disc_shares_policy_base:
            engine = self.is_fsdp_enabled or self.is_deepspeed_enabled
            discriminator = discriminator_on_policy_model(
                self.model, self.processing_class, args, self.discriminator_dir, engine
            )
        self.discriminator = discriminator
        check_fits_policy(discriminator, self.processing_class, self.max_completion_length)
        self.sample_encoder = SampleEncoder(
            self.processing_class,
            self.max_completion_length,
            prompt_ids=self._policy_prompt_ids,
            takes_token_ids=discriminator.takes_token_ids,
            text_renderer=discriminator.tokenizer,
            chat_template_kwargs=self.chat_template_kwargs,
        )
        warn_about_long_demonstrations(train_dataset, self.sample_encoder)
        self.discriminator_reward.bind(discriminator, self.sample_encoder, self._logit_offsets())
        discriminator.to(self.accelerator.device)
        # GRPO seeds each process differently; the replicas must start (and, by averaging gradients, stay) identical
        discriminator.synchronize()
        if self._shards_discriminator():
            discriminator.shard()

    def _policy_prompt_ids(self, prompts: list) -> list[list[int]]:
        """The prompts' token ids as GRPO tokenises them for generation: its chat template, tools and kwargs."""
        prompt_ids = self._tokenize_prompts(prompts)[0]
        if len(prompt_ids) != len(prompts) or not all(isinstance(ids, list) for ids in prompt_ids):
            raise RuntimeError(
                "`GRPOTrainer._tokenize_prompts` no longer returns one list of token ids per prompt first; TRL "
                "changed and `GAILTrainer` must be updated for it, or the discriminator would score other prompts "
                "than the policy's."
            )
        return prompt_ids

    @staticmethod
    def _demonstration_pool(train_dataset, args: GAILConfig) -> DemonstrationPool | None:
        if args.disc_demonstration_source != "dataset":
            return None
        if not isinstance(train_dataset, Dataset):
            raise ValueError(
                "`disc_demonstration_source='dataset'` draws demonstrations at random from the training set, which a "
                f"{type(train_dataset).__name__} cannot do. Set `disc_demonstration_source='batch'` (each update "
                "then sees the demonstrations of its generation batch's prompts)."
            )
        return DemonstrationPool(train_dataset, args.disc_heldout_fraction, seed=args.seed)

    def _shards_discriminator(self) -> bool:
        return shards_discriminator(self.accelerator, self.discriminator)

    def _logit_offsets(self) -> PolicyLogProbOffsets | None:
        """
        What the discriminator's outputs need to make its logits: `-log pi` (summed over the response, or per token)
        for the likelihood ratio, nothing for a classifier. AIRL adds its own `-beta log pi`.
        """
        if self.args.discriminator_type == "likelihood_ratio":
            return self._log_prob_offsets(coef=1.0, reduction="sum")
        return None

    def _log_prob_offsets(self, coef: float, reduction: str) -> PolicyLogProbOffsets:
        return PolicyLogProbOffsets(
            policy=lambda: self.model,
            encode=self.sample_encoder,
            pad_token_id=self.processing_class.pad_token_id,
            coef=coef,
            reduction=reduction,
            token_level=self.discriminator.token_level,
            temperature=self.args.temperature,
            micro_batch_size=self.args.disc_micro_batch_size,
        )

    def _generate_and_score_completions(self, inputs):
        # The one private GRPO method overridden, and only at the token level: GRPO turns each completion's reward
        # into one advantage; the token discriminator's per-token rewards need per-token advantages, which GRPO's
        # loss accepts with shape (B, T). Everything else is GRPO's.
        output = super()._generate_and_score_completions(inputs)
        if self.args.discriminator_level == "token":
            token_rewards = self.discriminator_reward.token_rewards
            self.discriminator_reward.token_rewards = None
            num_generations = self.num_generations if self.model.training else self.num_generations_eval
            output["advantages"] = place_token_advantages(
                output, token_rewards, self.accelerator, num_generations, self.mask_truncated_completions
            )
        return output

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
            card = self._discriminator_card(load_from or str(output_dir), subfolder, dataset_name)
            card.save(Path(output_dir, "README.md"))

    def _discriminator_base_model(self) -> str | None:
        """The discriminator's Hub id, for its model card; `None` when it was loaded from a local directory."""
        base_model = get_config_model_id(self.discriminator.model.config)
        return None if os.path.isdir(base_model or "") else base_model

    # What the model saved beside the policy is, in its card
    _card_role = "discriminator"

    def _discriminator_card(self, load_from: str, subfolder: str | None = None, dataset_name: str | None = None):
        return learned_model_card(
            role=self._card_role,
            trainer_name=self._name,
            discriminator_type=self.args.discriminator_type,
            level=self.args.discriminator_level,
            divergence=self.args.divergence,
            base_model=self._discriminator_base_model(),
            dataset_name=dataset_name,
            load_from=load_from,
            subfolder=subfolder,
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
        if (output_dir / self.discriminator_dir / "config.json").is_file():
            card = self._discriminator_card(load_from, self.discriminator_dir, dataset_name)
            card.save(output_dir / self.discriminator_dir / "README.md")
        readme = output_dir / "README.md"
        if readme.is_file():
            section = policy_card_section(
                self._card_role,
                self.args.discriminator_type,
                self.args.discriminator_level,
                load_from,
                self.discriminator_dir,
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
            reward_state = {"num_generations_seen": self.discriminator_reward.num_generations_seen}
            (directory / _REWARD_STATE_FILE).write_text(json.dumps(reward_state))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        directory = Path(checkpoint) / self.discriminator_dir
        self.discriminator.load(directory, self.accelerator.process_index)
        state = json.loads((directory / _REWARD_STATE_FILE).read_text())
        self.discriminator_reward.num_generations_seen = state["num_generations_seen"]

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
        return (f"{self.discriminator_dir}/{_REWARD_STATE_FILE}",)

    def _prepare_training(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            self._pretrain_discriminator()
            return
        # Refused here, before any work, rather than when `Trainer` restores the optimizer
        state_file = Path(checkpoint) / self.discriminator_dir / _REWARD_STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(
                f"The checkpoint {checkpoint} has no discriminator state ({state_file}); it was not written by "
                f"{type(self).__name__}, was saved with `save_only_model=True`, or its save was interrupted."
            )

    def _pretrain_discriminator(self) -> None:
        """
        `disc_pretraining_steps` maximum-likelihood steps of the likelihood-ratio discriminator's `q_phi` on the
        demonstrations it trains on, before the policy moves (see `GAILConfig`). Each process draws its own batch and
        the gradients are averaged, as in the discriminator's updates.
        """
        args, encode = self.args, self.sample_encoder
        if args.disc_pretraining_steps == 0:
            return
        pool = self.discriminator_reward.demonstration_pool
        batch_size = (
            args.disc_pretraining_batch_size
            or args.disc_demonstrations_per_update
            or args.generation_batch_size // self.accelerator.num_processes
        )
        heldout = None
        if pool.heldout_rows:
            heldout = encode(*pool.sample(min(len(pool.heldout_rows), 256), ("pretraining",), heldout=True))

        def draw_batch(step: int) -> list:
            return encode(*pool.sample(batch_size, ("pretraining", self.accelerator.process_index, step)))

        # Weight decay and gradient clipping as `Trainer` applies them in SFT (`weight_decay`, 0 by default, where
        # torch's AdamW would decay by 0.01; `max_grad_norm`, 1.0), so that the pre-training is the SFT it stands for
        stats = pretrain_likelihood(
            self.discriminator,
            draw_batch,
            args.disc_pretraining_steps,
            args.disc_pretraining_learning_rate,
            weight_decay=args.weight_decay,
            max_grad_norm=args.max_grad_norm,
            heldout=heldout,
        )
        logger.info(f"Pre-trained the discriminator for {args.disc_pretraining_steps} steps: {stats}")
        self.discriminator_reward.pending_stats = stats
