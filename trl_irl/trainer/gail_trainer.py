import copy
import json
import os
import tempfile
import textwrap
from functools import partial
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, IterableDataset
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from ..discriminator import Discriminator, LikelihoodRatioDiscriminator, TokenDiscriminator
from ..rewards import DEMONSTRATION_COLUMN, DemonstrationPool, DiscriminatorReward, response_log_probs
from ..token_advantages import token_level_advantages
from .gail_config import GAILConfig
from .model_cards import learned_model_card, policy_card_section
from .utils import SFT_AS_IRL_CITATION, is_missing_local_path, resolve_config, resolve_resume_checkpoint


logger = logging.get_logger(__name__)

_REWARD_STATE_FILE = "discriminator_reward_state.json"


def prepare_demonstrations(
    dataset: Dataset | IterableDataset, name: str = "train_dataset"
) -> Dataset | IterableDataset:
    """
    Turn an SFT dataset into GRPO's prompts plus a `demonstration` column holding the expert's response.

    Prompt-completion rows (standard or conversational) keep their `prompt`; `completion` becomes `demonstration`,
    since GRPO withholds a column named `completion` from reward functions. Conversational `messages` rows are split
    at their last assistant turn: what precedes it is the prompt, the turn itself the demonstration.

    Every row of a `Dataset` is checked here; the rows of an `IterableDataset` as they are read.

    Raises:
        `ValueError`: naming `name` and the offending column or row, for datasets without demonstrations, rows with
        an empty demonstration, `messages` without an assistant turn or with turns after the last one, a prompt and
        a demonstration of different formats (text and chat messages), or a message without string `content`.
    """
    columns = dataset.column_names
    if columns is None and isinstance(dataset, IterableDataset):
        # An `IterableDataset` built from a generator declares no features; its first row tells its columns
        columns = list(next(iter(dataset)).keys())
    columns = columns or []
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"`{name}` is empty: adversarial imitation needs demonstrations.")
    if DEMONSTRATION_COLUMN in columns and "prompt" in columns:
        converted = dataset
    elif "prompt" in columns and "completion" in columns:
        converted = dataset.rename_column("completion", DEMONSTRATION_COLUMN)
    elif "messages" in columns:

        def split_last_assistant_turn(example, index):
            messages = example["messages"]
            _check_messages(messages, index, name, "messages", text_only=False)
            assistant_turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
            if not assistant_turns:
                raise ValueError(f"Row {index} of `{name}` has no assistant turn in its `messages`.")
            last = assistant_turns[-1]
            if last != len(messages) - 1:
                raise ValueError(
                    f"Row {index} of `{name}` has {len(messages) - 1 - last} turn(s) after its last assistant turn "
                    f"(roles {[m['role'] for m in messages[last + 1 :]]}): the last assistant turn is the "
                    "demonstration, and what follows it would be dropped. End each conversation with the assistant's "
                    "turn."
                )
            return {"prompt": messages[:last], DEMONSTRATION_COLUMN: [messages[last]]}

        converted = dataset.map(split_last_assistant_turn, with_indices=True, remove_columns=["messages"])
    else:
        raise ValueError(
            f"`{name}` has columns {columns}, but adversarial imitation needs prompts and the expert's responses: "
            "either `prompt` and `completion` (standard or conversational) or `messages`. A language-modelling "
            "dataset (`text` only) has no prompts to generate from."
        )

    def check(example, index):
        _check_prompt_and_demonstration(example["prompt"], example[DEMONSTRATION_COLUMN], index, name)
        return example

    if isinstance(converted, Dataset):
        for index, (prompt, demonstration) in enumerate(
            zip(converted["prompt"], converted[DEMONSTRATION_COLUMN], strict=True)
        ):
            _check_prompt_and_demonstration(prompt, demonstration, index, name)
        return converted
    return converted.map(check, with_indices=True)


def _response_text(response) -> str:
    """A demonstration's text: itself (standard) or its assistant turn's content (conversational)."""
    return response if isinstance(response, str) else response[-1]["content"]


def _check_messages(messages, index: int, name: str, column: str, text_only: bool = True) -> None:
    """
    Every message needs a string `role` and a string `content`; with `text_only=False` (prompts), also content
    parts (a list) or no content beside `tool_calls`, which chat templates render.
    """
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise ValueError(f"Row {index} of `{name}`: `{column}` must be a list of messages, got {messages!r:.80}.")
    for message in messages:
        content = message.get("content")
        valid_content = isinstance(content, str) or (
            not text_only and (isinstance(content, list) or (content is None and message.get("tool_calls")))
        )
        if not isinstance(message.get("role"), str) or not valid_content:
            raise ValueError(
                f"Row {index} of `{name}`: every message of `{column}` needs a string `role` and "
                + ("a string `content`" if text_only else "a `content`")
                + f", got {message!r:.80}."
            )


def _check_prompt_and_demonstration(prompt, demonstration, index: int, name: str) -> None:
    for column, value in (("prompt", prompt), ("demonstration", demonstration)):
        if not isinstance(value, str | list):
            raise ValueError(
                f"Row {index} of `{name}`: the {column} must be text or a list of chat messages, got {value!r:.80}."
            )
    prompt_is_text, demonstration_is_text = isinstance(prompt, str), isinstance(demonstration, str)
    if prompt_is_text != demonstration_is_text:
        kinds = {True: "text", False: "chat messages"}
        raise ValueError(
            f"Row {index} of `{name}` has a prompt of {kinds[prompt_is_text]} and a demonstration of "
            f"{kinds[demonstration_is_text]}: both must be text (standard) or both chat messages (conversational)."
        )
    if demonstration_is_text:
        text = demonstration
    else:
        _check_messages(prompt, index, name, "prompt", text_only=False)
        _check_messages(demonstration, index, name, "completion")
        text = "".join(message["content"] for message in demonstration)
    if not text.strip():
        raise ValueError(f"Row {index} of `{name}` has an empty demonstration.")


class GAILTrainer(GRPOTrainer):
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

        if train_dataset is None:
            raise ValueError("`train_dataset` is required: it holds the demonstrations.")
        train_dataset = prepare_demonstrations(train_dataset, "train_dataset")
        if isinstance(eval_dataset, dict | DatasetDict):
            eval_dataset = {
                key: prepare_demonstrations(ds, f"eval_dataset[{key!r}]") for key, ds in eval_dataset.items()
            }
        elif eval_dataset is not None:
            eval_dataset = prepare_demonstrations(eval_dataset, "eval_dataset")

        demonstration_pool = None
        if args.disc_demonstration_source == "dataset":
            if not isinstance(train_dataset, Dataset):
                raise ValueError(
                    "`disc_demonstration_source='dataset'` draws demonstrations at random from the training set, "
                    f"which a {type(train_dataset).__name__} cannot do. Set `disc_demonstration_source='batch'` "
                    "(each update then sees the demonstrations of its generation batch's prompts)."
                )
            demonstration_pool = DemonstrationPool(train_dataset, args.disc_heldout_fraction, seed=args.seed)

        if args.disc_shares_policy_base and (discriminator is not None or discriminator_peft_config is not None):
            raise ValueError(
                "`disc_shares_policy_base=True` makes the discriminator a copy of the policy's adapter on the "
                "policy's own model: leave `discriminator` and `discriminator_peft_config` unset, or set "
                "`disc_shares_policy_base=False`."
            )
        # A new classification head is initialised here, before GRPO seeds: seed it, so that runs are reproducible
        set_seed(args.seed)
        # Sharing the policy's model, the discriminator is built on it once GRPO has made it a PEFT model
        self.discriminator = None
        if not args.disc_shares_policy_base:
            self.discriminator = self._build_discriminator(
                discriminator or policy_id,
                discriminator_processing_class,
                discriminator_peft_config,
                args,
                is_policy_checkpoint=discriminator is None,
            )
        self.discriminator_reward = DiscriminatorReward(
            self.discriminator,
            render=self._render_for_discriminator,
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
            self.discriminator = self._discriminator_on_the_policy_model(args)
            self.discriminator_reward.discriminator = self.discriminator

        if isinstance(self.discriminator, TokenDiscriminator) and (
            self.discriminator.tokenizer.get_vocab() != self.processing_class.get_vocab()
        ):
            raise ValueError(
                "A token-level or likelihood-ratio discriminator must share the policy's tokenizer, so that its "
                "scores align with the policy's tokens; `discriminator_processing_class` (or the discriminator "
                "checkpoint's tokenizer) has another vocabulary. Use a discriminator built on the policy's tokenizer, "
                "or `discriminator_type='classifier'` with `discriminator_level='sequence'`."
            )
        self._check_discriminator_window()
        self._warn_about_long_demonstrations(train_dataset)
        self.discriminator_reward.logit_offsets = self._logit_offsets()
        self.discriminator.to(self.accelerator.device)
        # GRPO seeds each process differently; the replicas must start (and, by averaging gradients, stay) identical
        self.discriminator.synchronize()
        if self._shards_discriminator():
            self.discriminator.shard()

    def _shards_discriminator(self) -> bool:
        """
        Under FSDP2 the discriminator is sharded across the processes as the policy is: replicated, its float32
        weights, gradients and AdamW state take 16 bytes per parameter on every GPU (128 GB for 8B parameters). A PEFT
        (LoRA) discriminator, whose trainable state is small, stays replicated, as it does under DDP and FSDP1.
        """
        from peft import PeftModel

        return bool(getattr(self.accelerator, "is_fsdp2", False)) and not isinstance(
            self.discriminator.model, PeftModel
        )

    def _discriminator_on_the_policy_model(self, args: GAILConfig) -> Discriminator:
        """
        `disc_shares_policy_base`: the likelihood-ratio discriminator as a second adapter on the policy's PEFT model,
        named after the directory it is saved in, a copy of the policy's adapter so that `l = 0` at the start.
        """
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

        policy = self.model
        if not isinstance(policy, PeftModel):
            raise ValueError(
                "`disc_shares_policy_base=True` puts the discriminator on the policy's PEFT model, but the policy is "
                f"a {type(policy).__name__}: pass `peft_config` (or a `PeftModel` as `model`), or set "
                "`disc_shares_policy_base=False`."
            )
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            # Both wrap the policy's parameters as they find them at `train()`; the discriminator's adapter would be
            # sharded or partitioned without an engine of its own to gather it
            raise ValueError(
                "`disc_shares_policy_base=True` is not supported under FSDP or DeepSpeed yet: set it to False (the "
                "discriminator then has its own model), or launch with DDP."
            )
        policy_adapter = policy.active_adapter
        adapter_name = self.discriminator_dir
        policy.add_adapter(adapter_name, copy.deepcopy(policy.peft_config[policy_adapter]))
        weights = get_peft_model_state_dict(policy, adapter_name=policy_adapter)
        set_peft_model_state_dict(policy, weights, adapter_name=adapter_name)
        # The policy's adapter stays the active, trainable one: the discriminator's is trainable only in its own use,
        # so that the policy's optimizer, made at `train()`, does not hold it
        policy.set_adapter(policy_adapter)
        return self._build_discriminator(policy, self.processing_class, None, args, adapter_name=adapter_name)

    def _check_discriminator_window(self) -> None:
        """A discriminator that scores response tokens must fit the longest completion: refuse before training."""
        discriminator = self.discriminator
        if not isinstance(discriminator, TokenDiscriminator) or discriminator.max_length is None:
            return
        needed = self.max_completion_length + discriminator._min_prompt_tokens
        if needed > discriminator.max_length:
            raise ValueError(
                f"`max_completion_length` ({self.max_completion_length}) does not fit the discriminator's window "
                f"(`disc_max_length` {discriminator.max_length}, which must hold every response token"
                + (" plus one prompt token" if discriminator._min_prompt_tokens else "")
                + f"): lower `max_completion_length` or raise `disc_max_length` to at least {needed}."
            )

    def _warn_about_long_demonstrations(self, dataset) -> None:
        """Say once how many demonstrations the discriminator will see cut, as the policy's completions are."""
        if not isinstance(dataset, Dataset):
            return
        lengths = [len(ids) for ids in self._response_ids(dataset[DEMONSTRATION_COLUMN], truncate=False)]
        cut = sum(length > self.max_completion_length for length in lengths)
        if cut:
            logger.warning(
                f"{cut} of {len(lengths)} demonstrations in `train_dataset` are longer than `max_completion_length` "
                f"({self.max_completion_length} tokens with the end-of-sequence token; the longest has "
                f"{max(lengths)}). The discriminator sees them cut to that length, as the policy's completions "
                "are cut, so that it cannot tell the two apart by length alone. Raise `max_completion_length` to "
                "keep them whole."
            )

    @staticmethod
    def _build_discriminator(
        discriminator: str | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None,
        peft_config,
        args: GAILConfig,
        is_policy_checkpoint: bool = False,
        adapter_name: str | None = None,
    ) -> Discriminator:
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            # `from_pretrained` would partition the discriminator's weights under `zero.Init`, and no DeepSpeed engine
            # gathers them for its forward: it would fail at the first batch
            raise ValueError(
                "DeepSpeed ZeRO-3 is not supported for the discriminator yet: ZeRO-3 partitions its weights and only "
                "the policy has a DeepSpeed engine to gather them. Use ZeRO-2 (`--accelerate_config zero2`) or FSDP."
            )
        token_level = args.discriminator_level == "token"
        likelihood_ratio = args.discriminator_type == "likelihood_ratio"
        init_kwargs = dict(args.discriminator_init_kwargs or {})
        init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
        policy_init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
        if is_policy_checkpoint and "revision" in policy_init_kwargs:
            # The policy's checkpoint is loaded at the policy's revision, tokenizer included
            init_kwargs.setdefault("revision", policy_init_kwargs["revision"])
        if isinstance(discriminator, str):
            if is_missing_local_path(discriminator):
                raise FileNotFoundError(f"`discriminator` {discriminator!r} is a path that does not exist.")
            if likelihood_ratio:
                model = AutoModelForCausalLM.from_pretrained(discriminator, **init_kwargs)
            else:
                auto_class = AutoModelForTokenClassification if token_level else AutoModelForSequenceClassification
                model = auto_class.from_pretrained(discriminator, num_labels=1, **init_kwargs)
        else:
            model = discriminator
        if tokenizer is None:
            tokenizer_kwargs = {
                key: init_kwargs[key] for key in ("revision", "trust_remote_code") if key in init_kwargs
            }
            tokenizer = AutoTokenizer.from_pretrained(get_config_model_id(model.config), **tokenizer_kwargs)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        settings = {
            "learning_rate": args.disc_learning_rate,
            "max_length": args.disc_max_length,
            "label_smoothing": args.disc_label_smoothing,
            "gradient_penalty": args.disc_gradient_penalty,
            "replay_buffer_size": args.disc_replay_buffer_size,
            "seed": args.seed,
            "max_grad_norm": args.disc_max_grad_norm,
            "micro_batch_size": args.disc_micro_batch_size,
            # The policy's bf16 mixed precision; under fp16 the discriminator runs in float32 (fp16 needs a loss
            # scaler, which its hand-written step does not have)
            "autocast_dtype": torch.bfloat16 if args.bf16 else None,
            "adapter_name": adapter_name,
        }
        if likelihood_ratio:
            return LikelihoodRatioDiscriminator(
                model, tokenizer, token_level=token_level, temperature=args.temperature, **settings
            )
        discriminator_class = TokenDiscriminator if token_level else Discriminator
        return discriminator_class(model, tokenizer, **settings)

    def _render_for_discriminator(self, prompts: list, responses: list, completion_ids: list | None = None) -> list:
        """
        Prompts and responses as the discriminator reads them: one text each (sequence classifier), or `(prompt_ids,
        response_ids)` in the policy's tokens (token classifier, likelihood ratio), with the generated
        `completion_ids` when given and demonstrations tokenised otherwise. Demonstrations (`completion_ids=None`)
        longer than `max_completion_length` are cut as generation cuts the policy's completions.
        """
        if isinstance(self.discriminator, TokenDiscriminator):
            response_ids = completion_ids if completion_ids is not None else self._response_ids(responses)
            return [(tuple(p), tuple(r)) for p, r in zip(self._prompt_ids(prompts), response_ids, strict=True)]
        if completion_ids is None:
            responses = self._cut_demonstration_texts(responses)
        if isinstance(prompts[0], str):
            return [prompt + response for prompt, response in zip(prompts, responses, strict=True)]
        # Conversations are rendered with the discriminator's chat template if it has one, else with the policy's
        renderer = self.discriminator.tokenizer
        if renderer.chat_template is None:
            renderer = self.processing_class
        return [
            renderer.apply_chat_template(prompt + response, tokenize=False, **self.chat_template_kwargs)
            for prompt, response in zip(prompts, responses, strict=True)
        ]

    def _response_ids(self, responses: list, truncate: bool = True) -> list[list[int]]:
        """
        Demonstrations as the policy would have generated them: their tokens, then the end-of-sequence token, cut to
        `max_completion_length` tokens unless `truncate=False` (a cut one ends without it, as a cut completion does).
        """
        tokenizer = self.processing_class
        token_ids = tokenizer([_response_text(r) for r in responses], add_special_tokens=False)["input_ids"]
        limit = self.max_completion_length if truncate else None
        return [(ids + [tokenizer.eos_token_id])[:limit] for ids in token_ids]

    def _cut_demonstration_texts(self, responses: list) -> list:
        """Text demonstrations of more than `max_completion_length` tokens, cut as the policy's completions are."""
        tokenizer, limit = self.processing_class, self.max_completion_length
        token_ids = tokenizer([_response_text(r) for r in responses], add_special_tokens=False)["input_ids"]
        cut = []
        for response, ids in zip(responses, token_ids, strict=True):
            if len(ids) > limit:
                # As GRPO decodes a completion that reached `max_completion_length` without its end-of-sequence token
                text = tokenizer.decode(ids[:limit], skip_special_tokens=True)
                response = text if isinstance(response, str) else [{**response[-1], "content": text}]
            cut.append(response)
        return cut

    def _prompt_ids(self, prompts: list) -> list[list[int]]:
        """The prompts as GRPO tokenises them for generation."""
        if isinstance(prompts[0], str):
            return self.processing_class(text=prompts)["input_ids"]
        return self.processing_class.apply_chat_template(
            prompts, add_generation_prompt=True, tokenize=True, return_dict=True, **self.chat_template_kwargs
        )["input_ids"]

    def _logit_offsets(self):
        """
        What the trainer adds to the discriminator's outputs to make its logits: `-log pi` (summed over the response,
        or per token) for the likelihood ratio, nothing for a classifier. AIRL adds its own `-beta log pi`.
        """
        if self.args.discriminator_type == "likelihood_ratio":
            return partial(self._minus_beta_log_pi, beta=1.0, reduction="sum")
        return None

    def _minus_beta_log_pi(
        self, prompts: list, responses: list, completion_ids: list | None, beta: float, reduction: str
    ) -> torch.Tensor:
        """
        `-beta * log pi(y | x)` at the sampling temperature for each (prompt, response), `log pi` summed over the
        response's tokens (`reduction="sum"`) or averaged (`"mean"`); or, with a discriminator that scores tokens,
        `-beta * log pi(y_t | x, y_<t)` for each response token, flattened.

        The policy's forward takes `disc_micro_batch_size` samples at a time, as the discriminator's does: its float32
        logits over the vocabulary for the whole generation batch would otherwise be the largest tensor of the update.
        """
        prompt_ids = self._prompt_ids(prompts)
        response_ids = completion_ids if completion_ids is not None else self._response_ids(responses)
        size = self.args.disc_micro_batch_size or len(prompt_ids)
        log_pi = []
        for first in range(0, len(prompt_ids), size):
            token_log_probs, mask = response_log_probs(  # (n, T - 1) each
                self.model,
                prompt_ids[first : first + size],
                response_ids[first : first + size],
                self.processing_class.pad_token_id,
                self.args.temperature,
            )
            if self.discriminator.token_level:
                log_pi.append(token_log_probs[mask])  # (response tokens,)
            elif reduction == "mean":
                log_pi.append((token_log_probs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))  # (n,)
            else:
                log_pi.append((token_log_probs * mask).sum(dim=1))  # (n,)
        return -beta * torch.cat(log_pi)

    def _generate_and_score_completions(self, inputs):
        # The one private GRPO method overridden, and only at the token level: GRPO turns each completion's reward
        # into one advantage; the token discriminator's per-token rewards need per-token advantages, which GRPO's
        # loss accepts with shape (B, T). Everything else is GRPO's.
        output = super()._generate_and_score_completions(inputs)
        if self.args.discriminator_level == "token":
            output["advantages"] = self._token_advantages(output)
        return output

    def _token_advantages(self, output: dict) -> torch.Tensor:
        token_rewards = self.discriminator_reward.token_rewards
        self.discriminator_reward.token_rewards = None
        advantages, completion_mask = output.get("advantages"), output.get("completion_mask")
        if (
            token_rewards is None
            or advantages is None
            or completion_mask is None
            or advantages.dim() != 1
            or completion_mask.dim() != 2
            or len(token_rewards) != advantages.shape[0]
            or len(token_rewards) != completion_mask.shape[0]
            or any(
                len(r) != int(n) and not (n == 0 and self.mask_truncated_completions)
                for r, n in zip(token_rewards, completion_mask.sum(dim=1), strict=True)
            )
        ):
            raise RuntimeError(
                "`GRPOTrainer._generate_and_score_completions` no longer returns what the token-level discriminator "
                "relies on (one `advantages` value and one `completion_mask` row per completion, aligned with the "
                "completions given to the reward function). TRL changed; the per-token advantages cannot be placed "
                "safely, and `GAILTrainer` must be updated for it."
            )
        device = completion_mask.device
        local_size, length = completion_mask.shape
        rewards = torch.zeros(local_size, length, device=device)
        for row, row_rewards in enumerate(token_rewards):
            # A truncated completion masked by `mask_truncated_completions` keeps its rewards here; its all-zero mask
            # row leaves it out of the advantages and of the other completions' baselines
            rewards[row, : len(row_rewards)] = row_rewards[:length].to(device)
        # Groups of completions may straddle processes: compute on the whole batch, then keep this process's rows
        rewards = self.accelerator.gather(self.accelerator.pad_across_processes(rewards, dim=1))  # (B, T_max)
        mask = self.accelerator.gather(self.accelerator.pad_across_processes(completion_mask, dim=1))
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        all_advantages = token_level_advantages(rewards, mask, num_generations)
        start = self.accelerator.process_index * local_size
        return all_advantages[start : start + local_size, :length]  # (B_local, T)

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
        if _internal_call and directory.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-"):
            # A checkpoint: its training state is written here, before `trainer_state.json` marks the checkpoint
            # complete and before `save_total_limit` deletes older ones (a callback's `on_save` came after both). Every
            # process writes its own replay buffer and random state, as `Trainer` writes its random states
            self._save_discriminator_state(directory / self.discriminator_dir)
            if self.args.push_to_hub and self.args.hub_strategy != "end":
                # After each checkpoint, `Trainer` pushes `output_dir` with the policy's files copied from the
                # checkpoint: the discriminator beside it must be this checkpoint's too, its card pointing at the repo
                self.save_discriminator(
                    Path(self.args.output_dir) / self.discriminator_dir,
                    load_from=self.hub_model_id,
                    subfolder=self.discriminator_dir,
                )

    def _save_discriminator_state(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.discriminator.save_state(directory, self.accelerator.process_index)
        if self.args.should_save:
            reward_state = {"num_generations_seen": self.discriminator_reward.num_generations_seen}
            (directory / _REWARD_STATE_FILE).write_text(json.dumps(reward_state))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        required = (f"{self.discriminator_dir}/{_REWARD_STATE_FILE}",)
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir, required)
        if checkpoint is not None:
            directory = Path(checkpoint) / self.discriminator_dir
            if not (directory / _REWARD_STATE_FILE).is_file():
                raise FileNotFoundError(
                    f"The checkpoint {checkpoint} has no discriminator state ({directory / _REWARD_STATE_FILE}); "
                    f"it was not written by {type(self).__name__}, or its save was interrupted."
                )
            self.discriminator.load(directory, self.accelerator.process_index)
            state = json.loads((directory / _REWARD_STATE_FILE).read_text())
            self.discriminator_reward.num_generations_seen = state["num_generations_seen"]
        else:
            self._pretrain_discriminator()
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _pretrain_discriminator(self) -> None:
        """
        `disc_pretraining_steps` maximum-likelihood steps of the likelihood-ratio discriminator's `q_phi` on the
        demonstrations it trains on, before the policy moves (see `GAILConfig`). Each process draws its own batch and
        the gradients are averaged, as in the discriminator's updates.
        """
        steps = self.args.disc_pretraining_steps
        if steps == 0:
            return
        discriminator, pool = self.discriminator, self.discriminator_reward.demonstration_pool
        batch_size = (
            self.args.disc_pretraining_batch_size
            or self.args.disc_demonstrations_per_update
            or self.args.generation_batch_size // self.accelerator.num_processes
        )
        # A fresh optimizer: the adversarial updates then start from their own AdamW state, as without pre-training.
        # Weight decay and gradient clipping as `Trainer` applies them in SFT (`weight_decay`, 0 by default, where
        # torch's AdamW would decay by 0.01; `max_grad_norm`, 1.0), so that the pre-training is the SFT it stands for
        optimizer = torch.optim.AdamW(
            discriminator.trainable_parameters(),
            lr=self.args.disc_pretraining_learning_rate,
            weight_decay=self.args.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)

        stats, heldout = {}, None
        if pool.heldout_rows:
            heldout = self._render_for_discriminator(
                *pool.sample(min(len(pool.heldout_rows), 256), ("pretraining",), heldout=True)
            )
            stats["pretraining_heldout_nll_start"] = discriminator.negative_log_likelihood(heldout)
        losses = []
        for step in range(steps):
            prompts, demonstrations = pool.sample(batch_size, ("pretraining", self.accelerator.process_index, step))
            losses.append(
                discriminator.likelihood_update(
                    self._render_for_discriminator(prompts, demonstrations), optimizer, self.args.max_grad_norm
                )
            )
            schedule.step()
        last_tenth = losses[-max(1, steps // 10) :]
        stats["pretraining_loss"] = sum(last_tenth) / len(last_tenth)
        if heldout is not None:
            stats["pretraining_heldout_nll_end"] = discriminator.negative_log_likelihood(heldout)
        logger.info(f"Pre-trained the discriminator for {steps} steps: {stats}")
        self.discriminator_reward.pending_stats = stats
