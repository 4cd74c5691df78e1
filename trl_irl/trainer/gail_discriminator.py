"""
The discriminator of `GAILTrainer` and `AIRLTrainer` built from their config: loaded, checked against the policy, and
placed on the trainer's processes. The discriminator's own errors name its own arguments; these say which config
field sets each.
"""

import copy

import torch
from datasets import Dataset
from tqdm.auto import tqdm
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

from ..data_utils import DemonstrationPool
from ..discriminator import Discriminator, LikelihoodRatioDiscriminator, TokenDiscriminator, pretrain_likelihood
from ..likelihood_rewards import mean_negative_log_likelihood
from .model_cards import auto_class_of
from .utils import (
    check_tokenizer_given,
    is_adapter_checkpoint,
    is_built_in_memory,
    is_missing_local_path,
    load_trainable_adapter,
)


logger = logging.get_logger(__name__)

# The discriminator's arguments and the config fields that set them, for its errors
CONFIG_FIELDS = {
    "`max_length`": "`max_length` (`disc_max_length`)",
    "learning rate": "learning rate (`disc_learning_rate`)",
    "(`loss_type='bradley_terry'`)": "(`disc_loss_type='bradley_terry'`)",
    "(`replay_buffer_size`)": "(`disc_replay_buffer_size`)",
    "a sequence-level discriminator": "a sequence-level discriminator (`disc_level='sequence'`)",
    "a token-level discriminator": "a token-level discriminator (`disc_level='token'`)",
    "a likelihood-ratio discriminator": "a likelihood-ratio discriminator (`disc_type='likelihood_ratio'`)",
    "or a sequence classifier.": "or `disc_level='sequence'`.",
    "or use a sequence or token classifier.": "or use `disc_type='classifier'`.",
    "`tokenizer.pad_token = tokenizer.eos_token`.": (
        "`tokenizer.pad_token = tokenizer.eos_token`, and pass the tokenizer as `discriminator_processing_class`."
    ),
}


def in_config_terms(error: Exception) -> Exception:
    """`error`, of the same type, with each of the discriminator's argument names followed by its config field."""
    message = str(error)
    for term, field in CONFIG_FIELDS.items():
        message = message.replace(term, field)
    return type(error)(message)


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
    task_type = "TOKEN_CLS" if args.disc_level == "token" else "SEQ_CLS"
    if str(getattr(peft_config, "task_type", None)) != task_type:
        raise ValueError(
            f"`discriminator_peft_config` has `task_type={getattr(peft_config, 'task_type', None)!r}`, but a "
            "classifier discriminator's one-label head is new: without it the head stays at its random start and is "
            f"left out of the saved adapter. Set `task_type={task_type!r}` (or list the head in `modules_to_save`)."
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
    except ValueError as error:
        raise in_config_terms(error) from error


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


# Held-out demonstrations measured before training: by the pre-training (before and after) and the knowledge gap
START_SAMPLE_SIZE = 256


def start_demonstrations(pool, encode) -> list:
    """
    Up to `START_SAMPLE_SIZE` demonstrations of `pool`, held-out ones (training ones when none are held out), encoded:
    one draw for every measurement before training, so that `disc/pretraining_heldout_nll_end` and
    `disc/start_nll_discriminator` are the same figure on the same demonstrations.
    """
    heldout = bool(pool.heldout_rows)
    rows = pool.heldout_rows if heldout else pool.training_rows
    return encode(*pool.sample(min(len(rows), START_SAMPLE_SIZE), ("pretraining",), heldout=heldout))


def pretrain_on_pool(
    discriminator: LikelihoodRatioDiscriminator, pool, encode, args, process_index: int, num_processes: int
) -> dict[str, float]:
    """
    `args.disc_pretraining_steps` maximum-likelihood steps of `q_phi` on demonstrations drawn from `pool` (the ones the
    discriminator trains on), measured on up to 256 held-out ones. Each process draws its own batch and the gradients
    are averaged, as in the discriminator's updates. Returns the statistics logged with the first batch.
    """
    batch_size = (
        args.disc_pretraining_batch_size
        or args.disc_demonstrations_per_update
        or args.generation_batch_size // num_processes
    )
    heldout = start_demonstrations(pool, encode) if pool.heldout_rows else None
    # Pre-training can take as long as an SFT run, before `Trainer`'s own progress bar appears: show its own
    progress = tqdm(
        total=args.disc_pretraining_steps,
        desc="Pre-training the discriminator",
        disable=args.disable_tqdm or process_index != 0,
    )

    def draw_batch(step: int) -> list:
        progress.update(1)
        return encode(*pool.sample(batch_size, ("pretraining", process_index, step)))

    # Weight decay and gradient clipping as `Trainer` applies them in SFT (`weight_decay`, 0 by default, where torch's
    # AdamW would decay by 0.01; `max_grad_norm`, 1.0), so that the pre-training is the SFT it stands for
    stats = pretrain_likelihood(
        discriminator,
        draw_batch,
        args.disc_pretraining_steps,
        args.disc_pretraining_learning_rate,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        heldout=heldout,
    )
    progress.close()
    logger.info(f"Pre-trained the discriminator for {args.disc_pretraining_steps} steps: {stats}")
    return stats


# Below this many nats per token more than the policy, the discriminator is taken to know nothing more: a copy of the
# policy measures about 1e-6 through the two models' different float paths
KNOWLEDGE_GAP_WARNING = 0.01


def knowledge_gap(discriminator: Discriminator, policy, pool, encode, args, eval_dataset=None) -> dict[str, float]:
    """
    How much more than the policy the likelihood-ratio discriminator knows of the demonstrations when training starts:
    the policy's and `q_phi`'s negative log-likelihood per token of up to 256 held-out demonstrations (training ones
    when none are held out), and their difference, `knowledge_gap` (nats per token; 0 for a copy of the policy). The
    reward `log q_phi - log pi` can only teach what `q_phi` knows better; updates may add to it, or erase it.

    Held out from the discriminator's updates, those demonstrations may still be rows that a user's SFT of the
    discriminator (or of the policy) trained on, where the gap measures memorisation too. With an `eval_dataset` (one
    set of demonstrations, which no SFT of the user's should have seen), the same is measured on up to 256 of them
    (`start_eval_*`), and the warning, once, reads that gap. Empty for a classifier, whose logits are no likelihood.
    """
    if not isinstance(discriminator, LikelihoodRatioDiscriminator) or pool is None:
        return {}
    samples = start_demonstrations(pool, encode)
    where = "held-out" if pool.heldout_rows else "training (none are held out: `disc_heldout_fraction=0`)"
    stats = _likelihood_gap(discriminator, policy, samples, encode.tokenizer.pad_token_id, args, "start_")
    prefix = "start_"
    if isinstance(eval_dataset, Dataset) and len(eval_dataset) > 0:
        eval_pool = DemonstrationPool(eval_dataset, seed=args.seed)
        samples, where, prefix = start_demonstrations(eval_pool, encode), "evaluation (`eval_dataset`)", "start_eval_"
        stats |= _likelihood_gap(discriminator, policy, samples, encode.tokenizer.pad_token_id, args, prefix)
    nll_policy, nll_discriminator = stats[f"{prefix}nll_policy"], stats[f"{prefix}nll_discriminator"]
    gap = stats[f"{prefix}knowledge_gap"]
    if gap < KNOWLEDGE_GAP_WARNING:
        logger.warning(
            f"The discriminator knows no more of the demonstrations than the policy: on {len(samples)} {where} "
            f"demonstrations its negative log-likelihood is {nll_discriminator:.3f} nats per token, the policy's "
            f"{nll_policy:.3f} (`disc/{prefix}knowledge_gap` {gap:.3f}). Its reward starts at 0 and teaches only what "
            "its own updates learn; the measured gains over SFT came with a discriminator that knew more: the end of "
            "the SFT run whose middle is the policy (`sft_run_checkpoints`), a larger model trained by SFT on the "
            "same demonstrations, or `disc_pretraining_steps`. See docs/which_trainer.md."
        )
    else:
        logger.info(f"The discriminator knows {gap:.3f} nats per token more than the policy ({where} demonstrations).")
    return stats


def _likelihood_gap(discriminator, policy, samples: list, pad_token_id: int, args, prefix: str) -> dict[str, float]:
    """The policy's and `q_phi`'s negative log-likelihood per token of `samples`, and the first minus the second."""
    nll_policy = mean_negative_log_likelihood(
        policy, samples, pad_token_id, args.temperature, args.disc_micro_batch_size
    )
    nll_discriminator = discriminator.negative_log_likelihood(samples)
    return {
        f"{prefix}nll_policy": nll_policy,
        f"{prefix}nll_discriminator": nll_discriminator,
        f"{prefix}knowledge_gap": nll_policy - nll_discriminator,
    }
