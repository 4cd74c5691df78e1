r"""
What a discriminator minimises, and how well it separates the classes: pure tensor functions.

Sign convention, kept in every name: expert samples are labelled 1 and the logit is *expert-is-high*,
`logit = log D - log(1 - D)` with `D = P(expert | sample)`. The loss is the class-balanced binary cross-entropy of
Eq. 18 / 20 of arXiv 2403.12017,

    loss = -1/2 E_expert[log D] - 1/2 E_policy[log(1 - D)]

so that the expert and policy batches weigh the same whatever their sizes. The pairwise (Bradley-Terry) loss of GAD
(arXiv 2511.10643) instead compares a demonstration and a policy sample of the same prompt, pair by pair,

    loss = -E_pairs[log sigmoid(logit_expert - logit_policy)]

so that only differences of logits between responses to one prompt are learned. Label smoothing `eps` moves the
targets to `1 - eps/2` (expert, or expert-above-policy for a pair) and `eps/2` (policy); the gradient penalty is the
zero-centred R1 penalty (Mescheder et al. 2018) `E_expert[||d logit / d embeddings||^2]`, taken at the input
embeddings since text cannot be differentiated.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F


def smoothed_targets(label_smoothing: float) -> tuple[float, float]:
    """The expert's and the policy's targets: 1 and 0, each moved `label_smoothing / 2` towards 1/2."""
    return 1.0 - label_smoothing / 2, label_smoothing / 2


def class_loss_share(logits: torch.Tensor, target: float, num_logits: int) -> torch.Tensor:
    """
    This chunk's share of one class's half of the balanced loss: summed over the chunk, divided by the class's
    `num_logits`, so that micro-batches add up to the mean whatever their sizes.
    """
    targets = torch.full_like(logits, target)
    return 0.5 * F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / num_logits


def balanced_loss(
    logits_expert: torch.Tensor, logits_policy: torch.Tensor, expert_target: float, policy_target: float
) -> torch.Tensor:
    """The class-balanced binary cross-entropy of expert-is-high logits towards their (smoothed) targets."""
    return 0.5 * (
        F.binary_cross_entropy_with_logits(logits_expert, torch.full_like(logits_expert, expert_target))
        + F.binary_cross_entropy_with_logits(logits_policy, torch.full_like(logits_policy, policy_target))
    )


def pairwise_loss(logits_expert: torch.Tensor, logits_policy: torch.Tensor, expert_target: float) -> torch.Tensor:
    """
    The Bradley-Terry loss of pairs (the `i`-th demonstration against the `i`-th policy sample, same prompt): the
    binary cross-entropy of `logits_expert - logits_policy` towards `expert_target` (1 unsmoothed:
    `softplus(logits_policy - logits_expert)`), averaged over the pairs.
    """
    differences = logits_expert - logits_policy
    return F.binary_cross_entropy_with_logits(differences, torch.full_like(differences, expert_target))


def pair_loss_share(differences: torch.Tensor, expert_target: float, num_pairs: int) -> torch.Tensor:
    """
    This chunk's share of the pairwise loss for a backward through one side of its pairs: `differences` are
    `logits_expert - logits_policy` with the other side's logits detached, the loss summed over the chunk and divided
    by all the pairs. A backward through each side adds up to the gradient of `pairwise_loss` (each side's logits
    get their part of it); the values are each the whole loss, so neither is to be added to the other.
    """
    targets = torch.full_like(differences, expert_target)
    return F.binary_cross_entropy_with_logits(differences, targets, reduction="sum") / num_pairs


def input_gradient_penalty(logits: torch.Tensor, embeddings: torch.Tensor, num_samples: int) -> torch.Tensor:
    """
    This chunk's share of the R1 penalty: the squared norm of the logits' gradient at the input `embeddings`
    `(n, T, H)`, summed over the chunk and divided by the class's `num_samples`. Differentiable (double backward).
    """
    (gradients,) = torch.autograd.grad(logits.sum(), embeddings, create_graph=True)
    return gradients.pow(2).sum(dim=(1, 2)).sum() / num_samples


def demonstration_terms(
    outputs: torch.Tensor,
    logits: torch.Tensor,
    embeddings: torch.Tensor | None,
    num_samples: int,
    num_response_tokens: int = 0,
) -> dict[str, torch.Tensor]:
    """
    A chunk of demonstrations' shares of the terms that only demonstrations carry, unweighted and differentiable:
    `gradient_penalty`, the R1 penalty of its `logits`, where their input `embeddings` were captured; and, where the
    model's `outputs` (before any logit offset) are log-likelihoods of the responses, summed per response or per token
    (`num_response_tokens` of them in all), `nll_expert`, their mean negative log-likelihood per response token: SFT's
    loss. Both are divided by the class's totals, so that micro-batches add up to the whole.
    """
    terms = {}
    if embeddings is not None:
        terms["gradient_penalty"] = input_gradient_penalty(logits, embeddings, num_samples)
    if num_response_tokens > 0:
        terms["nll_expert"] = -outputs.sum() / num_response_tokens
    return terms


def with_weighted_terms(loss: torch.Tensor, terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """`loss` plus each term times its weight, where that is positive (a term of weight 0 stays out of the graph)."""
    for name, value in terms.items():
        if weights[name] > 0:
            loss = loss + weights[name] * value
    return loss


@contextmanager
def captured_input_embeddings(model: torch.nn.Module, enabled: bool = True):
    """
    Collect the input embeddings of the forwards run inside, differentiable even where the embeddings are frozen
    (PEFT), for the penalty's gradient. Captured from the embedding layer rather than passed as `inputs_embeds`:
    classifiers pool at a position they find from `input_ids` (a decoder's last non-padding token).
    """
    captured = []

    def capture(module, args, output):
        if not output.requires_grad:  # frozen embeddings
            output = output.detach().requires_grad_(True)
        captured.append(output)
        return output

    handle = model.get_input_embeddings().register_forward_hook(capture) if enabled else None
    try:
        yield captured
    finally:
        if handle is not None:
            handle.remove()


def classification_statistics(logits_expert: torch.Tensor, logits_policy: torch.Tensor) -> dict[str, torch.Tensor]:
    """
    How well expert-is-high logits separate demonstrations from policy samples: the class-balanced cross-entropy
    `loss` (ln 2 at chance), the balanced accuracy `acc` and the accuracy on each class, `acc_expert` and
    `acc_policy`. A logit of exactly 0 counts as half right (a likelihood-ratio discriminator starts at 0 everywhere,
    which is chance, 0.5, not 0). Scalars without gradient.
    """
    with torch.no_grad():
        logits_expert, logits_policy = logits_expert.float(), logits_policy.float()
        acc_expert = ((logits_expert > 0).float() + 0.5 * (logits_expert == 0).float()).mean()
        acc_policy = ((logits_policy < 0).float() + 0.5 * (logits_policy == 0).float()).mean()
        return {
            "loss": 0.5 * (F.softplus(-logits_expert).mean() + F.softplus(logits_policy).mean()),
            "acc": (acc_expert + acc_policy) / 2,
            "acc_expert": acc_expert,
            "acc_policy": acc_policy,
        }


@torch.no_grad()
def pairwise_update_statistics(
    logits_expert: torch.Tensor, logits_policy: torch.Tensor, loss: torch.Tensor
) -> dict[str, torch.Tensor]:
    """
    A pairwise update's statistics: the training `loss`, `acc`, the share of pairs whose demonstration has the higher
    logit (a tie counts half), the entropy of `sigmoid(logit_expert - logit_policy)`, and the mean logits.
    """
    differences = (logits_expert - logits_policy).float()
    probs = differences.sigmoid()
    return {
        "loss": loss.detach(),
        "acc": ((differences > 0).float() + 0.5 * (differences == 0).float()).mean(),
        "entropy": F.binary_cross_entropy(probs, probs).mean(),
        "logit_expert": logits_expert.mean(),
        "logit_policy": logits_policy.mean(),
    }


@torch.no_grad()
def update_statistics(
    logits_expert: torch.Tensor, logits_policy: torch.Tensor, loss: torch.Tensor
) -> dict[str, torch.Tensor]:
    """An update's statistics from its logits before the step: the training `loss`, accuracies, entropy, logits."""
    probs = torch.cat([logits_expert, logits_policy]).sigmoid()
    separation = classification_statistics(logits_expert, logits_policy)
    return {
        "loss": loss.detach(),
        "acc": separation["acc"],
        "acc_expert": separation["acc_expert"],
        "acc_policy": separation["acc_policy"],
        "entropy": F.binary_cross_entropy(probs, probs).mean(),  # mean binary entropy of D
        "logit_expert": logits_expert.mean(),
        "logit_policy": logits_policy.mean(),
    }
