"""trl_irl/discriminator/objective.py: the discriminator's losses and statistics against their closed forms."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trl_irl.discriminator.objective import (
    balanced_loss,
    class_loss_share,
    classification_statistics,
    demonstration_terms,
    input_gradient_penalty,
    pair_loss_share,
    pairwise_loss,
    smoothed_targets,
    with_weighted_terms,
)


@given(
    expert=st.lists(st.floats(-10, 10), min_size=1, max_size=8),
    policy=st.lists(st.floats(-10, 10), min_size=1, max_size=8),
    smoothing=st.floats(0.0, 0.9),
    split=st.integers(0, 8),
)
def test_class_loss_shares_of_any_micro_batches_add_up_to_the_balanced_loss(expert, policy, smoothing, split):
    expert_target, policy_target = smoothed_targets(smoothing)
    assert expert_target + policy_target == pytest.approx(1.0)
    logits_expert, logits_policy = torch.tensor(expert), torch.tensor(policy)
    cut = min(split, len(expert))
    shares = (
        class_loss_share(logits_expert[:cut], expert_target, len(expert))
        + class_loss_share(logits_expert[cut:], expert_target, len(expert))
        + class_loss_share(logits_policy, policy_target, len(policy))
    )
    whole = balanced_loss(logits_expert, logits_policy, expert_target, policy_target)
    assert shares.item() == pytest.approx(whole.item(), rel=1e-5, abs=1e-6)


@given(
    expert=st.lists(st.sampled_from([-3.0, -0.5, 0.0, 0.5, 2.0]), min_size=1, max_size=8),
    policy=st.lists(st.sampled_from([-3.0, -0.5, 0.0, 0.5, 2.0]), min_size=1, max_size=8),
)
def test_classification_statistics_count_each_class_and_a_tie_as_half_right(expert, policy):
    statistics = classification_statistics(torch.tensor(expert), torch.tensor(policy))
    right_expert = sum(1.0 if logit > 0 else 0.5 if logit == 0 else 0.0 for logit in expert) / len(expert)
    right_policy = sum(1.0 if logit < 0 else 0.5 if logit == 0 else 0.0 for logit in policy) / len(policy)
    assert statistics["acc_expert"].item() == pytest.approx(right_expert)
    assert statistics["acc_policy"].item() == pytest.approx(right_policy)
    assert statistics["acc"].item() == pytest.approx((right_expert + right_policy) / 2)
    # The class-balanced cross-entropy: -log sigmoid(l) for demonstrations, -log(1 - sigmoid(l)) for samples
    loss_expert = sum(math.log1p(math.exp(-logit)) for logit in expert) / len(expert)
    loss_policy = sum(math.log1p(math.exp(logit)) for logit in policy) / len(policy)
    assert statistics["loss"].item() == pytest.approx((loss_expert + loss_policy) / 2, rel=1e-5)
    assert all(not value.requires_grad for value in statistics.values())


@given(
    num_samples=st.integers(1, 4),
    length=st.integers(1, 3),
    hidden=st.integers(1, 3),
    total=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_the_gradient_penalty_of_a_linear_logit_is_its_weights_squared_norm_per_sample(
    num_samples, length, hidden, total, seed
):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(num_samples, length, hidden, generator=generator, requires_grad=True)
    weights = torch.randn(length, hidden, generator=generator, requires_grad=True)
    # logit_i = <w, e_i>: its gradient at e_i is w, so each sample adds |w|^2, and the share is divided by `total`
    logits = (embeddings * weights).sum(dim=(1, 2))
    penalty = input_gradient_penalty(logits, embeddings, total)
    assert penalty.item() == pytest.approx(num_samples * weights.pow(2).sum().item() / total, rel=1e-5)
    # Differentiable in the weights (double backward): d/dw of n |w|^2 / total = 2 n w / total
    (gradient,) = torch.autograd.grad(penalty, weights)
    torch.testing.assert_close(gradient, 2 * num_samples * weights.detach() / total)


@given(
    pairs=st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=1, max_size=8),
    smoothing=st.floats(0.0, 0.9),
    split=st.integers(0, 8),
)
def test_the_pairwise_loss_is_its_closed_form_and_its_shares_add_up_to_it(pairs, smoothing, split):
    expert_target, _ = smoothed_targets(smoothing)
    logits_expert = torch.tensor([expert for expert, _ in pairs], dtype=torch.float64)
    logits_policy = torch.tensor([policy for _, policy in pairs], dtype=torch.float64)

    def bce(difference):  # -t log sigmoid(d) - (1 - t) log sigmoid(-d), in plain floats
        log_sigmoid = (
            -math.log1p(math.exp(-difference)) if difference > 0 else difference - math.log1p(math.exp(difference))
        )
        log_sigmoid_minus = log_sigmoid - difference
        return -expert_target * log_sigmoid - (1 - expert_target) * log_sigmoid_minus

    expected = sum(bce(expert - policy) for expert, policy in pairs) / len(pairs)
    assert pairwise_loss(logits_expert, logits_policy, expert_target).item() == pytest.approx(expected, rel=1e-9)
    differences = logits_expert - logits_policy
    cut = min(split, len(pairs))
    shares = pair_loss_share(differences[:cut], expert_target, len(pairs)) + pair_loss_share(
        differences[cut:], expert_target, len(pairs)
    )
    assert shares.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(
    outputs=st.lists(st.floats(-50, 0), min_size=1, max_size=6),
    tokens=st.integers(0, 40),
    weights=st.tuples(st.floats(0, 2), st.floats(0, 2)),
)
def test_the_demonstration_terms_are_sft_s_loss_and_enter_the_loss_by_their_weights(outputs, tokens, weights):
    log_likelihoods = torch.tensor(outputs, dtype=torch.float64, requires_grad=True)
    terms = demonstration_terms(log_likelihoods, log_likelihoods, None, len(outputs), tokens)
    # Without captured embeddings no penalty; with no response tokens no likelihood term
    assert "gradient_penalty" not in terms
    if tokens == 0:
        assert terms == {}
        return
    assert terms["nll_expert"].item() == pytest.approx(-sum(outputs) / tokens)
    loss = torch.tensor(1.0, dtype=torch.float64)
    penalty = torch.tensor(3.0, dtype=torch.float64)
    weighted = with_weighted_terms(
        loss, {**terms, "gradient_penalty": penalty}, {"nll_expert": weights[0], "gradient_penalty": weights[1]}
    )
    assert weighted.item() == pytest.approx(1.0 + weights[0] * -sum(outputs) / tokens + weights[1] * 3.0)
    # A term of weight 0 stays out of the graph: no gradient reaches it
    assert weighted.requires_grad == (weights[0] > 0)


def test_the_demonstration_terms_carry_the_penalty_where_embeddings_were_captured():
    embeddings = torch.arange(12.0).reshape(2, 3, 2).requires_grad_(True)
    logits = (embeddings**2).sum(dim=(1, 2))  # gradient 2e: the penalty is 4 |e|^2 over the class's 5 samples
    terms = demonstration_terms(logits, logits, embeddings, num_samples=5)
    assert set(terms) == {"gradient_penalty"}  # no response tokens counted: no likelihood term
    assert terms["gradient_penalty"].item() == pytest.approx(4 * embeddings.pow(2).sum().item() / 5)
    assert terms["gradient_penalty"].item() == input_gradient_penalty(logits, embeddings, 5).item()


def test_classification_statistics_count_ties_as_half():
    stats = classification_statistics(torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, -3.0]))
    assert stats["acc_expert"] == pytest.approx(1.5 / 3)
    assert stats["acc_policy"] == pytest.approx(0.75)
    expected_loss = 0.5 * (
        torch.nn.functional.softplus(-torch.tensor([2.0, 0.0, -1.0])).mean()
        + torch.nn.functional.softplus(torch.tensor([0.0, -3.0])).mean()
    )
    assert stats["loss"] == pytest.approx(expected_loss.item())
