"""
The adversarial trainers' shared machinery: `GAILTrainer` and `AIRLTrainer` are thin siblings on `AdversarialTrainer`,
as in imitation's `adversarial/` (each says what its reward is); everything else is here or in the parts it wires.
"""

from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, set_seed
from trl import GRPOTrainer

from ..checkpoints import ResumesFromCompleteCheckpoints
from ..data_utils import (
    DemonstrationPool,
    SampleEncoder,
    prepare_train_and_eval,
    refuse_conversations_without_chat_template,
    refuse_special_token_text,
    warn_about_long_demonstrations,
)
from ..rewards import DiscriminatorReward, PolicyLogProbOffsets
from ..token_advantages import place_token_advantages
from .discriminator_factory import (
    build_discriminator,
    check_fits_policy,
    discriminator_on_policy_model,
    discriminator_source,
    refuse_discriminator_arguments,
    shards_discriminator,
)
from .discriminator_saving import DiscriminatorSaving
from .discriminator_start import knowledge_gap, pretrain_on_pool
from .gail_config import GAILConfig
from .grpo_arguments import combined_reward_funcs, refuse_unsupported_arguments
from .model_loading import check_tokenizer_given, policy_from_adapter_checkpoint
from .trl_parents import require_parent_methods, resolve_config
from .unmoved_policy import WarnIfWarmUpCoversTheRun, check_reward_weights


# Private GRPO methods overridden or called, where no public surface exists (see docs/architecture.md)
require_parent_methods(GRPOTrainer, ("_generate_and_score_completions", "_tokenize_prompts"))


class DiscriminatorCallback(TrainerCallback):
    """
    A [`~transformers.TrainerCallback`] with one more event, raised by GAIL and AIRL each time the discriminator has
    scored a training batch of completions (after its updates on that batch): `on_discriminator_scored`. `Trainer`'s
    own events see no completions and no rewards, so a monitor of the learned reward (its agreement with a known
    reward, its drift, the completions it prefers) subclasses this one and goes into `callbacks` as any other.
    """

    def on_discriminator_scored(
        self,
        args,
        state,
        control,
        prompts: list,
        completions: list,
        completion_ids: list,
        rewards: list[float],
        stats: dict[str, float],
        **kwargs,
    ):
        """
        Called after the discriminator scored a training batch (not during evaluation).

        Args:
            prompts, completions, completion_ids: the batch, as GRPO gives it to its reward functions.
            rewards (`list[float]`): the discriminator's reward of each completion (summed over its tokens at the
                token level), before `reward_weights`.
            stats (`dict[str, float]`): the discriminator's statistics logged for the batch, without their `disc/`
                prefix (`loss`, `acc`, `heldout_acc`, ...).
            **kwargs: `model` and `processing_class`, as `Trainer` passes them to every event.
        """


class AdversarialTrainer(DiscriminatorSaving, ResumesFromCompleteCheckpoints, GRPOTrainer):
    r"""
    What GAIL and AIRL share, on top of [`~trl.GRPOTrainer`]: a discriminator trained alternately on demonstrations
    and on the policy's own completions, whose logit becomes the policy's reward through a divergence; its
    construction, start, saving and resuming. Each method says what its discriminator's logit is (`_logit_offsets`),
    its config (`config_class`) and where its learned model is saved (`discriminator_dir`): see [`GAILTrainer`] and
    [`AIRLTrainer`], whose arguments these are.
    """

    # Where `save_model` and checkpoints put the discriminator, beside the policy
    discriminator_dir = "discriminator"
    config_class = GAILConfig

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
        tools: list | None = None,
        reward_funcs=None,
        reward_processing_classes=None,
        rollout_func=None,
        environment_factory=None,
    ):
        refuse_unsupported_arguments(rollout_func=rollout_func, environment_factory=environment_factory)
        # A `GRPOConfig` from an existing script keeps every value and gets the default discriminator settings.
        # `__post_init__` derives `generation_batch_size` from `steps_per_generation` again, and refuses both.
        args = resolve_config(args, model, self.config_class, self._name, generation_batch_size=None)
        refuse_discriminator_arguments(model, discriminator, discriminator_peft_config, args)
        check_reward_weights(args.reward_weights)
        check_tokenizer_given(model, processing_class)
        train_dataset, eval_dataset = prepare_train_and_eval(train_dataset, eval_dataset)
        demonstration_pool = self._demonstration_pool(train_dataset, args)
        # A new classification head is initialised here, before GRPO seeds: seed it, so that runs are reproducible
        set_seed(args.seed)
        # Sharing the policy's model, the discriminator is built on it once GRPO has made it a PEFT model
        if not args.disc_shares_policy_base:
            source, tokenizer = discriminator_source(
                model, discriminator, processing_class, discriminator_processing_class, args
            )
            is_policy_checkpoint = discriminator is None and isinstance(source, str)
            discriminator = build_discriminator(
                source, tokenizer, discriminator_peft_config, args, is_policy_checkpoint
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
            completions_per_prompt=args.num_generations,
            on_scored=self._discriminator_scored,
        )
        model = policy_from_adapter_checkpoint(model, args.model_init_kwargs)
        reward_funcs, reward_processing_classes = combined_reward_funcs(
            self.discriminator_reward, reward_funcs, reward_processing_classes, args, self._name
        )
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            reward_processing_classes=reward_processing_classes,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            quantization_config=quantization_config,
            tools=tools,
        )
        self._set_up_discriminator(discriminator, train_dataset)
        self.add_callback(WarnIfWarmUpCoversTheRun())

    def _discriminator_scored(self, prompts, completions, completion_ids, rewards, stats) -> None:
        """Raise `on_discriminator_scored` on the callbacks that are [`DiscriminatorCallback`]s."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, DiscriminatorCallback):
                callback.on_discriminator_scored(
                    self.args,
                    self.state,
                    self.control,
                    prompts=prompts,
                    completions=completions,
                    completion_ids=completion_ids,
                    rewards=rewards,
                    stats=stats,
                    model=self.model,
                    processing_class=self.processing_class,
                )

    def _set_up_discriminator(self, discriminator, train_dataset) -> None:
        """Put the discriminator (built, or to build on the policy's own model) in place: checked, bound, placed."""
        if self.args.disc_shares_policy_base:
            engine = self.is_fsdp_enabled or self.is_deepspeed_enabled
            discriminator = discriminator_on_policy_model(
                self.model, self.processing_class, self.args, self.discriminator_dir, engine
            )
        self.discriminator = discriminator
        check_fits_policy(discriminator, self.processing_class, self.max_completion_length, self.model)
        self.sample_encoder = SampleEncoder(
            self.processing_class,
            self.max_completion_length,
            prompt_ids=self._policy_prompt_ids,
            takes_token_ids=discriminator.takes_token_ids,
            chat_template_tokenizer=discriminator.tokenizer,
            chat_template_kwargs=self.chat_template_kwargs,
        )
        refuse_conversations_without_chat_template(self.processing_class, train_dataset)
        refuse_special_token_text(self.processing_class, train_dataset, self.eval_dataset)
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
        """What the discriminator's outputs need to make its logits: what each method's logit is (GAIL, AIRL)."""
        raise NotImplementedError

    def _log_prob_offsets(self, coef: float, reduction: str) -> PolicyLogProbOffsets:
        return PolicyLogProbOffsets(
            policy=lambda: self.model,
            sample_encoder=self.sample_encoder,
            pad_token_id=self.processing_class.pad_token_id,
            coef=coef,
            reduction=reduction,
            token_level=self.discriminator.token_level,
            temperature=self.args.temperature,
            micro_batch_size=self.args.disc_micro_batch_size,
            autocast_dtype=self.discriminator.autocast_dtype,
        )

    def _generate_and_score_completions(self, inputs):
        # The one private GRPO method overridden, and only at the token level: GRPO turns each completion's reward
        # into one advantage; the token discriminator's per-token rewards need per-token advantages, which GRPO's
        # loss accepts with shape (B, T). Everything else is GRPO's.
        output = super()._generate_and_score_completions(inputs)
        if self.args.disc_level == "token":
            token_rewards = self.discriminator_reward.token_rewards
            self.discriminator_reward.token_rewards = None
            num_generations = self.num_generations if self.model.training else self.num_generations_eval
            output["advantages"] = place_token_advantages(
                output, token_rewards, self.accelerator, num_generations, self.mask_truncated_completions
            )
        return output

    def _prepare_training(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            self._pretrain_discriminator()
            reward, sample_encoder = self.discriminator_reward, self.sample_encoder
            gap = knowledge_gap(
                self.discriminator, self.model, reward.demonstration_pool, sample_encoder, self.args, self.eval_dataset
            )
            reward.pending_stats |= gap
        else:
            self._refuse_incomplete_checkpoint(checkpoint)

    def _pretrain_discriminator(self) -> None:
        """`disc_pretraining_steps` maximum-likelihood steps of `q_phi` before the policy moves (see `GAILConfig`)."""
        if self.args.disc_pretraining_steps > 0:
            stats = pretrain_on_pool(
                self.discriminator,
                self.discriminator_reward.demonstration_pool,
                self.sample_encoder,
                self.args,
                self.accelerator.process_index,
                self.accelerator.num_processes,
            )
            self.discriminator_reward.pending_stats = stats
