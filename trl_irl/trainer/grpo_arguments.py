"""What the adversarial trainers do with `GRPOTrainer`'s own arguments: pass through, combine, or refuse by name.

`tools`, `peft_config`, `quantization_config`, `callbacks` and `optimizers` pass through unchanged. `reward_funcs`
(with `reward_processing_classes` and `GRPOConfig.reward_weights`) are combined with the discriminator's reward, as
GRPO users combine a format or rule reward with a learned one: the discriminator's reward comes first, each is logged
under its own name (`rewards/discriminator/mean`, `rewards/<name>/mean`) and GRPO sums them with their weights.
"""

from collections.abc import Callable

from trl import GRPOConfig


# GRPOTrainer arguments the adversarial trainers do not take, and why (docs/gail_trainer.md lists them)
UNSUPPORTED_GRPO_ARGUMENTS = {
    "rollout_func": "the discriminator must score what the policy generated, tokenised as GRPO's own generation "
    "does; a custom rollout can return text the policy did not write, which the discriminator would learn to spot",
    "environment_factory": "environment turns inside a completion are text the policy did not write, which the "
    "discriminator would score as the policy's (and learn to spot); demonstrations have no such turns",
}


def refuse_unsupported_arguments(**arguments) -> None:
    """Raise `ValueError` naming each of `UNSUPPORTED_GRPO_ARGUMENTS` given (not `None`), with why."""
    given = [name for name, value in arguments.items() if value is not None]
    if given:
        name = given[0]
        raise ValueError(f"`{name}` is not supported by the adversarial trainers: {UNSUPPORTED_GRPO_ARGUMENTS[name]}.")


def combined_reward_funcs(
    discriminator_reward: Callable,
    reward_funcs,
    reward_processing_classes,
    args: GRPOConfig,
    trainer_name: str,
) -> tuple[list, list | None]:
    """
    GRPO's `reward_funcs` and `reward_processing_classes` for a trainer whose first reward is its discriminator's.

    `reward_funcs` is what a `GRPOTrainer` user passes (a model id, a model, a callable, or a list of them), or `None`.
    Raises `ValueError` naming the argument when the rewards cannot be combined: with a token-level discriminator
    (its per-token advantages replace GRPO's, which the other rewards would enter), or when `args.reward_weights`
    does not hold one weight per reward, the discriminator's first.
    """
    extra = [] if reward_funcs is None else reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    if extra and getattr(args, "disc_level", "sequence") == "token":
        raise ValueError(
            f"`reward_funcs` cannot be combined with `disc_level='token'`: {trainer_name}'s per-token advantages come "
            "from the discriminator's per-token rewards alone and replace GRPO's, so the other rewards would be "
            "ignored. Use `disc_level='sequence'`, or leave `reward_funcs` unset."
        )
    for index, reward in enumerate(extra):
        _refuse_a_model_that_scores_no_sequence(reward, index)
    if args.reward_weights is not None and len(args.reward_weights) != 1 + len(extra):
        raise ValueError(
            f"`reward_weights` has {len(args.reward_weights)} weights for {1 + len(extra)} rewards: the "
            f"discriminator's first, then the {len(extra)} of `reward_funcs`, in order."
        )
    if reward_processing_classes is None:
        return [discriminator_reward, *extra], None
    if not extra:
        raise ValueError(
            "`reward_processing_classes` is given without `reward_funcs`: there is nothing to tokenize for."
        )
    classes = reward_processing_classes if isinstance(reward_processing_classes, list) else [reward_processing_classes]
    if len(classes) != len(extra):
        raise ValueError(
            f"`reward_processing_classes` has {len(classes)} entries for the {len(extra)} of `reward_funcs`: give one "
            "per reward function (None for a callable), the discriminator's left out."
        )
    return [discriminator_reward, *extra], [None, *classes]


def _refuse_a_model_that_scores_no_sequence(reward, index: int) -> None:
    """
    GRPO reads a model in `reward_funcs` as a sequence classifier (its logits' first column per completion): a causal
    LM there, the policy itself included, fails at the first batch with a shape error that names no argument.
    """
    from transformers import PreTrainedModel

    if not isinstance(reward, PreTrainedModel):
        return
    if type(reward).__name__.endswith("ForSequenceClassification"):
        return
    raise ValueError(
        f"`reward_funcs[{index}]` is a {type(reward).__name__}, but GRPO scores completions with a model in "
        "`reward_funcs` as a sequence classifier (one logit per completion). For a causal LM's likelihood of the "
        "completions, pass `trl_irl.LikelihoodReward(model, tokenizer)` instead; the discriminator's reward is "
        "already the first."
    )
