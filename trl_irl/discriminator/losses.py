"""
What one update minimises, accumulated over micro-batches: the class-balanced cross-entropy of demonstrations against
policy samples (GAIL's), or the pairwise Bradley-Terry loss of a demonstration against a policy sample of the same
prompt (GAD's, arXiv 2511.10643). The tensor functions are in `objective`; here, how each loss's gradient is gathered
when each class is forwarded and backwarded a micro-batch at a time (`backward_in_chunks`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..log_probs import micro_batches
from .encoding import num_response_tokens
from .objective import (
    balanced_loss,
    class_loss_share,
    demonstration_terms,
    pair_loss_share,
    pairwise_loss,
    pairwise_update_statistics,
    smoothed_targets,
    update_statistics,
    with_weighted_terms,
)


def backward_in_chunks(
    discriminator,
    samples: list,
    logit_offsets: torch.Tensor | None,
    chunk_loss: Callable[[torch.Tensor, int], torch.Tensor],
    demonstrations: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """
    Forward and backward `samples` through `discriminator`, `micro_batch_size` at a time, for `chunk_loss(logits,
    start)` (the chunk's share of the loss, given its logits and the index of the first) and, for `demonstrations`,
    the terms only they carry (`objective.demonstration_terms`) with their weights. Gradients accumulate in the
    parameters. Returns the logits, detached, and those terms over all the samples, without their weights.
    """
    scorer = discriminator.scorer
    with_penalty = demonstrations and discriminator.gradient_penalty > 0
    # Where the outputs are log-likelihoods, SFT's loss on the demonstrations is one of their terms
    num_tokens = num_response_tokens(samples) if demonstrations and scorer.outputs_log_likelihoods else 0
    logits, terms, start = [], {}, 0
    for chunk in micro_batches(samples, discriminator.micro_batch_size):
        outputs, embeddings = discriminator.model_logits(chunk, capture_embeddings=with_penalty)
        count = scorer.num_logits(chunk)
        chunk_logits = outputs
        if logit_offsets is not None:
            chunk_logits = outputs + logit_offsets[start : start + count].to(outputs.device)
        chunk_terms = demonstration_terms(outputs, chunk_logits, embeddings, len(samples), num_tokens)
        with_weighted_terms(chunk_loss(chunk_logits, start), chunk_terms, discriminator.term_weights).backward()
        for name, value in chunk_terms.items():
            terms[name] = terms.get(name, 0.0) + value.detach()
        start += count
        logits.append(chunk_logits.detach())
    return torch.cat(logits), terms


@dataclass
class AccumulatedUpdate:
    """
    An update's logits before its step (detached), the demonstration-only terms (unweighted) and its loss: the value
    whose gradient the parameters hold, the terms' weighted share included.
    """

    logits_expert: torch.Tensor
    logits_policy: torch.Tensor
    expert_terms: dict[str, torch.Tensor]
    loss: torch.Tensor


class BalancedCrossEntropy:
    """
    `loss = -1/2 E_expert[log D] - 1/2 E_policy[log(1 - D)]` (Eq. 18 / 20 of arXiv 2403.12017): each sample is
    labelled by its class alone, so demonstrations and policy samples need not share prompts or be as many.
    """

    pairs_samples = False

    def accumulate(
        self, discriminator, expert_samples: list, policy_samples: list, expert_offsets, policy_offsets
    ) -> AccumulatedUpdate:
        expert_target, policy_target = smoothed_targets(discriminator.label_smoothing)
        num_expert = discriminator.scorer.num_logits(expert_samples)
        num_policy = discriminator.scorer.num_logits(policy_samples)
        logits_expert, terms = backward_in_chunks(
            discriminator,
            expert_samples,
            expert_offsets,
            lambda logits, start: class_loss_share(logits, expert_target, num_expert),
            demonstrations=True,
        )
        logits_policy, _ = backward_in_chunks(
            discriminator,
            policy_samples,
            policy_offsets,
            lambda logits, start: class_loss_share(logits, policy_target, num_policy),
        )
        loss = balanced_loss(logits_expert, logits_policy, expert_target, policy_target)
        return AccumulatedUpdate(
            logits_expert, logits_policy, terms, with_weighted_terms(loss, terms, discriminator.term_weights)
        )

    @staticmethod
    def statistics(logits_expert: torch.Tensor, logits_policy: torch.Tensor, loss: torch.Tensor) -> dict:
        return update_statistics(logits_expert, logits_policy, loss)


class BradleyTerry:
    """
    `loss = -E_i[log sigmoid(l(x_i, y_expert_i) - l(x_i, y_policy_i))]`: the `i`-th demonstration against the `i`-th
    policy sample, which must answer the same prompt; only differences of logits between responses to one prompt are
    learned, so the logit is a score up to a constant per prompt (which GRPO's group baseline removes from the reward).
    Label smoothing moves the pair's target to `1 - eps/2`.

    Each class is forwarded and backwarded on its own, a micro-batch at a time, as for the balanced loss: a no-grad
    forward of the policy samples first gives the other side of each demonstration's pair (one extra forward), and
    the demonstrations' logits then give the other side of each policy sample's. The two backwards add up to the
    gradient of the pairwise loss, as the parameters do not change before the step.
    """

    pairs_samples = True

    def accumulate(
        self, discriminator, expert_samples: list, policy_samples: list, expert_offsets, policy_offsets
    ) -> AccumulatedUpdate:
        if len(expert_samples) != len(policy_samples):
            raise ValueError(
                f"The pairwise (Bradley-Terry) loss compares each demonstration with the policy sample of the same "
                f"prompt, but got {len(expert_samples)} demonstrations and {len(policy_samples)} policy samples."
            )
        expert_target, _ = smoothed_targets(discriminator.label_smoothing)
        num_pairs = len(expert_samples)
        with torch.no_grad():
            opponents = discriminator.forward_logits(policy_samples, policy_offsets)

        def expert_share(logits: torch.Tensor, start: int) -> torch.Tensor:
            differences = logits - opponents[start : start + len(logits)]
            return pair_loss_share(differences, expert_target, num_pairs)

        def policy_share(logits: torch.Tensor, start: int) -> torch.Tensor:
            differences = logits_expert[start : start + len(logits)] - logits
            return pair_loss_share(differences, expert_target, num_pairs)

        logits_expert, terms = backward_in_chunks(
            discriminator, expert_samples, expert_offsets, expert_share, demonstrations=True
        )
        logits_policy, _ = backward_in_chunks(discriminator, policy_samples, policy_offsets, policy_share)
        loss = pairwise_loss(logits_expert, logits_policy, expert_target)
        return AccumulatedUpdate(
            logits_expert, logits_policy, terms, with_weighted_terms(loss, terms, discriminator.term_weights)
        )

    @staticmethod
    def statistics(logits_expert: torch.Tensor, logits_policy: torch.Tensor, loss: torch.Tensor) -> dict:
        return pairwise_update_statistics(logits_expert, logits_policy, loss)


# `Discriminator(loss_type=...)` and `GAILConfig.disc_loss_type`
LOSSES = {"bce": BalancedCrossEntropy, "bradley_terry": BradleyTerry}
