"""
The discriminator of `GAILTrainer` and `AIRLTrainer` built from their arguments and config: its source (a copy of the
policy by default), its kind, checked against the policy before any work, and where it runs on the trainer's
processes. Errors name the trainer's argument or the config field that sets what they refuse.
"""

import copy

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging
from trl.trainer.utils import get_config_model_id

from ..discriminator import Discriminator, LikelihoodRatioDiscriminator, TokenDiscriminator
from ..discriminator.scorers import ModelKindError
from .model_cards import auto_class_of, peft_task_type
from .model_loading import (
    check_tokenizer_given,
    is_adapter_checkpoint,
    is_built_in_memory,
    is_missing_local_path,
    load_trainable_adapter,
)


logger = logging.get_logger(__name__)


def discriminator_settings(args) -> dict:
    """The discriminator's arguments from a `GAILConfig`, built once."""
    return {
        "learning_rate": args.disc_learning_rate,
        "max_length": args.disc_max_length,
        "label_smoothing": args.disc_label_smoothing,
        "gradient_penalty": args.disc_gradient_penalty,
        "replay_buffer_size": args.disc_replay_buffer_size,
        "seed": args.seed,
        "max_grad_norm": args.disc_max_grad_norm,
        "micro_batch_size": args.disc_micro_batch_size,
        "loss_type": args.disc_loss_type,
        # The policy's bf16 mixed precision; under fp16 the discriminator runs in float32 (fp16 needs a loss scaler,
        # which its step does not have)
        "autocast_dtype": torch.bfloat16 if args.bf16 else None,
    }


def _shares_parameters(model, discriminator) -> bool:
    """Whether two model objects hold any parameter tensor in common (one object twice, or one built on the other)."""
    if not (isinstance(model, torch.nn.Module) and isinstance(discriminator, torch.nn.Module)):
        return False
    storage = {parameter.data_ptr() for parameter in model.parameters()} - {0}  # 0: meta tensors hold no storage
    return any(parameter.data_ptr() in storage for parameter in discriminator.parameters())


def refuse_discriminator_arguments(model, discriminator, discriminator_peft_config, args) -> None:
    """
    Refuse the trainer's discriminator arguments where they contradict each other or the config, or would leave the
    policy unmoved (the config alone is checked by `GAILConfig`): the default
    likelihood-ratio discriminator starts as a copy of the policy, so its logit `log q_phi - log pi` is 0 for every
    completion; frozen, it stays a copy of the start, every reward of the first batch is the same and the policy
    never moves: a run that trains to its end and does nothing. And one model in two roles, which two optimizers
    would step.
    """
    if _shares_parameters(model, discriminator):
        raise ValueError(
            "`discriminator` shares parameters with `model` (the same object, or one built on the other's weights): "
            "the policy's optimizer and the discriminator's would both step them. Give the discriminator its own "
            "copy (`copy.deepcopy(model)`, or a path to load it from), or leave it unset for a copy of the policy's "
            "checkpoint; to share the policy's base model on purpose, give a PEFT policy and "
            "`disc_shares_policy_base=True`."
        )
    if args.disc_shares_policy_base and (discriminator is not None or discriminator_peft_config is not None):
        raise ValueError(
            "`disc_shares_policy_base=True` makes the discriminator a copy of the policy's adapter on the "
            "policy's own model: leave `discriminator` and `discriminator_peft_config` unset, or set "
            "`disc_shares_policy_base=False`."
        )
    frozen = args.disc_updates_per_generation == 0 or args.disc_learning_rate == 0
    if discriminator is None and args.disc_type == "likelihood_ratio" and frozen and args.disc_pretraining_steps == 0:
        setting = "disc_updates_per_generation=0" if args.disc_updates_per_generation == 0 else "disc_learning_rate=0"
        raise ValueError(
            f"`{setting}` freezes the discriminator, and without `discriminator` it is a copy of the policy: its "
            "reward `log q_phi - log pi` is 0 for every completion and the policy would never move. Freeze a "
            "discriminator that knows more (`discriminator=` a larger or longer-trained SFT model, or "
            "`disc_pretraining_steps`), or let it train."
        )


def _trainable_copy(model: PreTrainedModel) -> PreTrainedModel:
    """
    A copy of the policy that trains in full, as its checkpoint loaded again would: a PEFT policy's adapter merged
    into the copy's weights (loading its base checkpoint would leave the adapter out), parameters the policy froze
    trainable.
    """
    from peft import PeftModel

    copied = copy.deepcopy(model)
    if isinstance(copied, PeftModel):
        copied = copied.merge_and_unload()
    return copied.requires_grad_(True)


def discriminator_source(
    model: str | PreTrainedModel,
    discriminator: str | PreTrainedModel | None,
    processing_class: PreTrainedTokenizerBase | None,
    discriminator_processing_class: PreTrainedTokenizerBase | None,
    args,
) -> tuple[str | PreTrainedModel, PreTrainedTokenizerBase | None]:
    """
    What the discriminator is built on, and its tokenizer (`None`: its checkpoint's). Without `discriminator`, the
    likelihood ratio starts as a copy of the policy (`log q_phi - log pi = 0` for every completion): a policy given as
    a path is loaded again, and one given as a model is copied, so that what was done to it in memory (training,
    edited weights, a model built with `from_config`, a PEFT adapter) is in the copy too; a classifier gets a head on
    the policy's checkpoint. What needs a checkpoint that a model built in memory lacks is refused, naming the
    argument to pass (the policy's own tokenizer is checked by the trainer).
    """
    if discriminator is not None:
        check_tokenizer_given(discriminator, discriminator_processing_class, "discriminator_processing_class")
        return discriminator, discriminator_processing_class
    if isinstance(model, str):
        return model, discriminator_processing_class
    copyable = getattr(model, "hf_quantizer", None) is None  # a 4- or 8-bit model cannot be trained in full
    if args.disc_type == "likelihood_ratio" and copyable:
        return _trainable_copy(model), discriminator_processing_class or processing_class
    if is_built_in_memory(model):
        raise ValueError(
            "The policy was built in memory (its `name_or_path` is empty), and the default discriminator "
            + ("(a classifier) is a head on" if copyable else "of a quantized policy is loaded from")
            + " its checkpoint, which it does not have: pass `discriminator` (a model or a path)."
        )
    return get_config_model_id(model.config), discriminator_processing_class


def _refuse_an_adapter_without_the_head(peft_config, args) -> None:
    """
    A classifier's one-label head is new: an adapter whose task type does not name it leaves it frozen at its random
    start and out of the saved adapter, so that the discriminator reloaded has another random head.
    """
    if args.disc_type != "classifier" or getattr(peft_config, "modules_to_save", None):
        return
    task_type = peft_task_type(args.disc_type, args.disc_level)
    if str(getattr(peft_config, "task_type", None)) != task_type:
        raise ValueError(
            f"`discriminator_peft_config` has `task_type={getattr(peft_config, 'task_type', None)!r}`, but a "
            "classifier discriminator's one-label head is new: without it the head stays at its random start and is "
            f"left out of the saved adapter. Set `task_type={task_type!r}` (or list the head in `modules_to_save`)."
        )


def _refuse_a_tokenizer_without_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    """Batches of samples of different lengths need a padding token; GRPO sets the policy's only after this runs."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"The discriminator's tokenizer ({type(tokenizer).__name__}, {tokenizer.name_or_path!r}) has no padding "
            "token, which batches of samples of different lengths need. Set one, for example "
            "`tokenizer.pad_token = tokenizer.eos_token`, and pass the tokenizer as `discriminator_processing_class`."
        )


def build_discriminator(
    discriminator: str | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    peft_config,
    args,
    is_policy_checkpoint: bool = False,
    adapter_name: str | None = None,
) -> Discriminator:
    """
    The discriminator that `args.disc_type` and `args.disc_level` name, on `discriminator` (a model,
    or a path or Hub id loaded with the matching auto class), with `tokenizer` (default: the checkpoint's).
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        # `from_pretrained` would partition the discriminator's weights under `zero.Init`, and no DeepSpeed engine
        # gathers them for its forward: it would fail at the first batch
        raise ValueError(
            "DeepSpeed ZeRO-3 is not supported for the discriminator yet: ZeRO-3 partitions its weights and only "
            "the policy has a DeepSpeed engine to gather them. Use ZeRO-2 (`--accelerate_config zero2`) or FSDP."
        )
    token_level = args.disc_level == "token"
    likelihood_ratio = args.disc_type == "likelihood_ratio"
    auto_classes = {  # looked up here, so that a test can record the loading
        "AutoModelForCausalLM": AutoModelForCausalLM,
        "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
        "AutoModelForTokenClassification": AutoModelForTokenClassification,
    }
    auto_class = auto_classes[auto_class_of(args.disc_type, args.disc_level)]
    init_kwargs = dict(args.disc_init_kwargs or {})
    init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    policy_init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
    if is_policy_checkpoint and "revision" in policy_init_kwargs:
        # The policy's checkpoint is loaded at the policy's revision, tokenizer included
        init_kwargs.setdefault("revision", policy_init_kwargs["revision"])
    if isinstance(discriminator, str):
        if is_missing_local_path(discriminator):
            raise FileNotFoundError(f"`discriminator` {discriminator!r} is a path that does not exist.")
        # A classifier has one label: its expert-is-high logit
        head = {} if likelihood_ratio else {"num_labels": 1}
        if is_adapter_checkpoint(discriminator):
            model = load_trainable_adapter(discriminator, auto_class.__name__, {**head, **init_kwargs})
        else:
            model = auto_class.from_pretrained(discriminator, **head, **init_kwargs)
    else:
        model = discriminator
    if tokenizer is None:
        tokenizer_kwargs = {key: init_kwargs[key] for key in ("revision", "trust_remote_code") if key in init_kwargs}
        tokenizer = AutoTokenizer.from_pretrained(get_config_model_id(model.config), **tokenizer_kwargs)
    if peft_config is not None:
        from peft import get_peft_model

        _refuse_an_adapter_without_the_head(peft_config, args)
        model = get_peft_model(model, peft_config)
    _refuse_a_tokenizer_without_padding(tokenizer)
    settings = {**discriminator_settings(args), "adapter_name": adapter_name}
    try:
        if likelihood_ratio:
            return LikelihoodRatioDiscriminator(
                model,
                tokenizer,
                token_level=token_level,
                temperature=args.temperature,
                likelihood_weight=args.disc_likelihood_weight,
                **settings,
            )
        return (TokenDiscriminator if token_level else Discriminator)(model, tokenizer, **settings)
    except ModelKindError as error:
        raise ValueError(
            f"{error} The discriminator's kind is chosen by `disc_type` (here {args.disc_type!r}) and `disc_level` "
            f"(here {args.disc_level!r})."
        ) from error


def discriminator_on_policy_model(
    policy, tokenizer: PreTrainedTokenizerBase, args, adapter_name: str, wrapped_by_engine: bool
) -> Discriminator:
    """
    `disc_shares_policy_base`: the likelihood-ratio discriminator as a second adapter on the policy's PEFT model, named
    `adapter_name`, a copy of the policy's adapter so that `l = 0` at the start.
    """
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    if not isinstance(policy, PeftModel):
        raise ValueError(
            "`disc_shares_policy_base=True` puts the discriminator on the policy's PEFT model, but the policy is a "
            f"{type(policy).__name__}: pass `peft_config` (or a `PeftModel` as `model`), or set "
            "`disc_shares_policy_base=False`."
        )
    if wrapped_by_engine:
        # FSDP and DeepSpeed wrap the policy's parameters as they find them at `train()`; the discriminator's adapter
        # would be sharded or partitioned without an engine of its own to gather it
        raise ValueError(
            "`disc_shares_policy_base=True` is not supported under FSDP or DeepSpeed yet: set it to False (the "
            "discriminator then has its own model), or launch with DDP."
        )
    policy_adapter = policy.active_adapter
    policy.add_adapter(adapter_name, copy.deepcopy(policy.peft_config[policy_adapter]))
    weights = get_peft_model_state_dict(policy, adapter_name=policy_adapter)
    set_peft_model_state_dict(policy, weights, adapter_name=adapter_name)
    # The policy's adapter stays the active, trainable one: the discriminator's is trainable only in its own use, so
    # that the policy's optimizer, made at `train()`, does not hold it
    policy.set_adapter(policy_adapter)
    return build_discriminator(policy, tokenizer, None, args, adapter_name=adapter_name)


def check_fits_policy(
    discriminator: Discriminator,
    policy_tokenizer: PreTrainedTokenizerBase,
    max_completion_length: int,
    policy: PreTrainedModel | None = None,
) -> None:
    """
    Refuse, before training, a discriminator that cannot score every completion the policy can generate; warn where
    a likelihood ratio that starts as the `policy` cannot start at `l = 0` (`_warn_about_precision`).
    """
    if not discriminator.takes_token_ids:
        return
    if policy is not None:
        _warn_about_precision(discriminator, policy)
    if discriminator.tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise ValueError(
            "A token-level or likelihood-ratio discriminator must share the policy's tokenizer, so that its scores "
            "align with the policy's tokens; `discriminator_processing_class` (or the discriminator checkpoint's "
            "tokenizer) has another vocabulary. Use a discriminator built on the policy's tokenizer, or "
            "`disc_type='classifier'` with `disc_level='sequence'`."
        )
    min_prompt_tokens = discriminator.scorer.min_prompt_tokens
    needed = max_completion_length + min_prompt_tokens
    if discriminator.max_length is not None and needed > discriminator.max_length:
        raise ValueError(
            f"`max_completion_length` ({max_completion_length}) does not fit the discriminator's window "
            f"(`disc_max_length` {discriminator.max_length}, which must hold every response token"
            + (" plus one prompt token" if min_prompt_tokens else "")
            + f"): lower `max_completion_length` or raise `disc_max_length` to at least {needed}."
        )


def _warn_about_precision(discriminator: Discriminator, policy: PreTrainedModel) -> None:
    """
    A likelihood ratio that starts as the policy (the same checkpoint) gives `l = log q_phi - log pi = 0` at the
    start only where both forwards run in one precision. Its trainable weights are float32 and the policy's `log pi`
    runs under the discriminator's autocast, so float32 policy weights (with or without `bf16=True`) give exactly 0;
    bf16 or fp16 policy weights (a LoRA policy's base included) give rounding noise of about 1e-3 nats, which GRPO's
    normalisation within a group turns into full-size advantages until the discriminator has learned something.
    """
    if not isinstance(discriminator, LikelihoodRatioDiscriminator) or discriminator.adapter_name is not None:
        return  # an adapter on the policy's own model runs in the policy's precision
    same_start = get_config_model_id(discriminator.model.config) == get_config_model_id(policy.config)
    low_precision = sorted(
        {str(p.dtype) for p in policy.parameters() if p.is_floating_point() and p.dtype != torch.float32}
    )
    if same_start and low_precision:
        logger.warning(
            f"The discriminator starts as the policy, but the policy's weights are {', '.join(low_precision)} and "
            "the discriminator's float32: `l = log q_phi - log pi` starts as rounding noise (about 1e-3 nats) "
            "instead of 0, and GRPO's normalisation within each group scales that noise to full-size advantages "
            "until the discriminator learns. Load the policy in float32 (`model_init_kwargs={'dtype': 'float32'}`, "
            "with `bf16=True` for mixed precision: exactly 0 then), or expect the first steps to follow noise."
        )


def shards_discriminator(accelerator, discriminator: Discriminator) -> bool:
    """
    Under FSDP2 the discriminator is sharded across the processes as the policy is: replicated, its float32 weights,
    gradients and AdamW state take 16 bytes per parameter on every GPU (128 GB for 8B parameters). A PEFT (LoRA)
    discriminator, whose trainable state is small, stays replicated, as it does under DDP and FSDP1.
    """
    from peft import PeftModel

    shards = bool(getattr(accelerator, "is_fsdp2", False)) and not isinstance(discriminator.model, PeftModel)
    if shards and discriminator.gradient_penalty > 0:
        # Said here in the config's terms: `Discriminator.shard` would name its own argument, `gradient_penalty`
        raise ValueError(
            "`disc_gradient_penalty` differentiates through the gradient, which FSDP2's sharded backward does not "
            "support: set `disc_gradient_penalty=0`, or train without FSDP2 (the discriminator is then replicated)."
        )
    return shards
