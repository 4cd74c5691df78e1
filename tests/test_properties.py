"""Closed-form identities of the pure functions, on random inputs (hypothesis)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_irl.discriminator.objective import balanced_loss, class_loss_share, smoothed_targets
from trl_irl.divergences import DIVERGENCES, policy_reward, reward_slope
from trl_irl.token_advantages import token_level_advantages
from trl_irl.token_weighting import occupancy_weights, token_weights


# Fast pure functions: many examples, no deadline (the first call of a torch op can be slow)
settings.register_profile("pure", max_examples=200, deadline=None)
settings.load_profile("pure")

logits = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)
alphas = st.floats(min_value=-2.0, max_value=0.95, allow_nan=False)


def _f(divergence: str, u: float, alpha: float) -> float:
    """The generator `f` of each divergence (the table of `trl_irl.divergences`)."""
    if divergence == "reverse_kl":
        return -math.log(u)
    if divergence == "js":
        return u * math.log(u) - (1 + u) * math.log((1 + u) / 2)
    if divergence == "forward_kl":
        return u * math.log(u)
    return (u ** (1 - alpha) - (1 - alpha) * u - alpha) / (alpha * (alpha - 1))


@pytest.mark.parametrize("divergence", DIVERGENCES)
@given(logit=st.floats(min_value=-8.0, max_value=8.0), alpha=alphas)
def test_reward_is_the_f_max_reward_up_to_its_constant(divergence, logit, alpha):
    # r(l) = u f'(u) - f(u) with u = exp(l), shifted so that r(0) = 0; f' by a central difference
    if divergence == "alpha" and abs(alpha) < 1e-3:
        alpha = 0.5  # the alpha family's f divides by alpha: its alpha -> 0 limit is the forward KL

    def f_max(value):
        u, h = math.exp(value), 1e-5 * math.exp(value)
        derivative = (_f(divergence, u + h, alpha) - _f(divergence, u - h, alpha)) / (2 * h)
        return u * derivative - _f(divergence, u, alpha)

    expected = f_max(logit) - f_max(0.0)
    reward = policy_reward(torch.tensor([logit], dtype=torch.float64), divergence, alpha).item()
    assert reward == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("divergence", DIVERGENCES)
@given(first=logits, second=logits, alpha=alphas)
def test_reward_increases_with_the_logit_and_is_zero_at_chance(divergence, first, second, alpha):
    low, high = sorted((first, second))
    rewards = policy_reward(torch.tensor([low, high, 0.0]), divergence, alpha)
    assert torch.isfinite(rewards).all()
    assert rewards[0] <= rewards[1]
    assert rewards[2] == 0


@pytest.mark.parametrize("divergence", DIVERGENCES)
@given(logit=st.floats(min_value=-10.0, max_value=10.0), alpha=alphas)
def test_reward_slope_is_the_derivative_of_the_reward(divergence, logit, alpha):
    point = torch.tensor([logit], dtype=torch.float64, requires_grad=True)
    policy_reward(point, divergence, alpha).sum().backward()
    slope = reward_slope(point.detach(), divergence, alpha)
    assert slope.item() == pytest.approx(point.grad.item(), rel=1e-6, abs=1e-9)


@given(logit=st.floats(min_value=-1e6, max_value=1e6), alpha=alphas)
def test_rewards_stay_finite_and_their_squares_too_for_any_finite_logit(logit, alpha):
    # GRPO squares rewards in float32 to normalise them (the reason for the exponent clamp)
    for divergence in DIVERGENCES:
        reward = policy_reward(torch.tensor([logit]), divergence, alpha)
        assert torch.isfinite(reward**2).all(), divergence


@given(length=st.integers(1, 200), gamma=st.floats(min_value=0.05, max_value=1.0))
def test_occupancy_weights_are_the_discounted_share_of_the_remaining_trajectory(length, gamma):
    positions = torch.arange(length)
    weights = occupancy_weights(positions, torch.full((length,), length), gamma).double()
    discounts = [gamma**k for k in range(length)]
    expected = torch.tensor([sum(discounts[t:]) / sum(discounts) for t in range(length)], dtype=torch.float64)
    assert torch.allclose(weights, expected, rtol=1e-5, atol=1e-6)
    assert weights[0] == pytest.approx(1.0, abs=1e-6)
    assert (weights[1:] <= weights[:-1] + 1e-7).all()
    # Positive, but for weights under float32's smallest (gamma^t < 1e-45), which round to 0
    assert (weights[expected > 1e-44] > 0).all() and (weights >= 0).all()


@given(
    spans=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    prompt_length=st.integers(0, 5),
    gamma=st.floats(min_value=0.1, max_value=1.0),
)
def test_token_weights_restart_at_every_trained_span(spans, prompt_length, gamma):
    # One row: an untrained prompt, then completion spans separated by one untrained token each
    labels, expected = [-100] * prompt_length, [0.0] * prompt_length
    for length in spans:
        labels += list(range(5, 5 + length)) + [-100]
        expected += occupancy_weights(torch.arange(length), torch.full((length,), length), gamma).tolist() + [0.0]
    weights = token_weights(torch.tensor([labels]), token_weighting="occupancy", gamma=gamma)
    assert torch.allclose(weights[0], torch.tensor(expected), atol=1e-6)
    uniform = token_weights(torch.tensor([labels]), token_weighting="uniform")
    assert torch.equal(uniform[0], (torch.tensor(labels) != -100).float())


@given(
    groups=st.integers(1, 3),
    num_generations=st.integers(2, 4),
    length=st.integers(1, 6),
    data=st.data(),
)
def test_token_advantages_are_reward_to_go_minus_the_leave_one_out_baseline(groups, num_generations, length, data):
    batch = groups * num_generations
    rewards = torch.tensor(
        data.draw(st.lists(st.floats(-5, 5), min_size=batch * length, max_size=batch * length))
    ).view(batch, length)
    lengths = data.draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = torch.tensor([[1] * n + [0] * (length - n) for n in lengths])
    advantages = token_level_advantages(rewards, mask, num_generations)
    for row in range(batch):
        group = range(row // num_generations * num_generations, (row // num_generations + 1) * num_generations)
        for t in range(length):
            if t >= lengths[row]:
                assert advantages[row, t] == 0
                continue
            to_go = rewards[row, t : lengths[row]].sum().item()
            others = [rewards[j, t : lengths[j]].sum().item() for j in group if j != row and lengths[j] > t]
            baseline = sum(others) / len(others) if others else 0.0
            assert advantages[row, t].item() == pytest.approx(to_go - baseline, abs=1e-4)


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


# The likelihood ratio `log q(y | x) - log p(y | x)`: scored here with bigram "models" (each token's logits a row of
# a table, indexed by the token before it), whose log-likelihoods have a closed form, through the same batching and
# log-probability code as the discriminator and `LikelihoodReward`
VOCABULARY = 7
token_ids = st.lists(st.integers(1, VOCABULARY - 1), min_size=1, max_size=5)
samples = st.lists(st.tuples(token_ids, token_ids), min_size=1, max_size=4)  # (prompt ids, response ids)


def _bigram_log_likelihoods(table: torch.Tensor, samples: list, temperature: float = 1.0) -> torch.Tensor:
    """Each response's log-likelihood through `prompt_response_batch` and `response_token_log_probs`."""
    from trl_irl.log_probs import prompt_response_batch, response_token_log_probs

    prompt_ids, response_ids = zip(*samples, strict=True)
    batch, response_mask = prompt_response_batch(prompt_ids, response_ids, pad_token_id=0, device="cpu")
    log_probs, mask = response_token_log_probs(
        table[batch["input_ids"]], batch["input_ids"], response_mask, temperature
    )
    return (log_probs * mask).sum(dim=1)


def _by_hand(table: torch.Tensor, prompt: list, response: list, temperature: float = 1.0) -> float:
    sequence = prompt + response
    return sum(
        (table[sequence[i - 1]] / temperature).log_softmax(-1)[sequence[i]].item()
        for i in range(len(prompt), len(sequence))
    )


tables = st.integers(0, 2**16).map(
    lambda seed: torch.randn(VOCABULARY, VOCABULARY, generator=torch.Generator().manual_seed(seed)) * 3
)


@given(q=tables, p=tables, batch=samples, temperature=st.floats(0.3, 2.0))
def test_the_likelihood_ratio_is_the_difference_of_closed_form_log_likelihoods_whatever_the_batch(
    q, p, batch, temperature
):
    ratio = _bigram_log_likelihoods(q, batch, temperature) - _bigram_log_likelihoods(p, batch, temperature)
    for index, (prompt, response) in enumerate(batch):
        expected = _by_hand(q, prompt, response, temperature) - _by_hand(p, prompt, response, temperature)
        assert ratio[index].item() == pytest.approx(expected, rel=1e-5, abs=1e-4)
        # Alone, padded differently, the same figure
        alone = _bigram_log_likelihoods(q, [(prompt, response)], temperature)
        alone -= _bigram_log_likelihoods(p, [(prompt, response)], temperature)
        assert alone.item() == pytest.approx(ratio[index].item(), rel=1e-5, abs=1e-5)
    # A model against itself: 0 for every response; swapping the two flips the sign
    assert torch.equal(_bigram_log_likelihoods(q, batch) - _bigram_log_likelihoods(q, batch), torch.zeros(len(batch)))
    swapped = _bigram_log_likelihoods(p, batch, temperature) - _bigram_log_likelihoods(q, batch, temperature)
    torch.testing.assert_close(swapped, -ratio)


pairs = st.integers(1, 6).flatmap(
    lambda size: st.tuples(*[st.lists(st.floats(-5, 5), min_size=size, max_size=size) for _ in range(5)])
)


@given(pair=pairs, factor=st.floats(0.1, 10.0))
def test_the_variance_loss_keeps_its_closed_forms(pair, factor):
    from trl_irl import variance_bradley_terry_loss

    chosen, rejected, scale_chosen, scale_rejected, margin = (torch.tensor(values) for values in pair)
    difference = chosen - rejected - margin
    # Unit scales: the Bradley-Terry loss; equal scales V: the Bradley-Terry loss of the difference over V
    zeros = torch.zeros_like(chosen)
    bradley_terry = -torch.nn.functional.logsigmoid(difference).mean()
    torch.testing.assert_close(variance_bradley_terry_loss(chosen, rejected, zeros, zeros, margin), bradley_terry)
    equal = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_chosen, margin)
    torch.testing.assert_close(equal, -torch.nn.functional.logsigmoid(difference / scale_chosen.exp()).mean())
    # Rewards, margins and scales multiplied together by any factor: the same loss
    loss = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_rejected, margin)
    log_factor = math.log(factor)
    scaled = variance_bradley_terry_loss(
        chosen * factor, rejected * factor, scale_chosen + log_factor, scale_rejected + log_factor, margin * factor
    )
    torch.testing.assert_close(scaled, loss, rtol=1e-4, atol=1e-5)
    # Swapping the two sides: -log sigmoid(d) + log sigmoid(-d) = -d, per pair, scaled by the pair's scale
    scale = ((2 * scale_chosen).exp() / 2 + (2 * scale_rejected).exp() / 2).sqrt()
    swapped = variance_bradley_terry_loss(rejected, chosen, scale_rejected, scale_chosen)
    unmargined = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_rejected)
    torch.testing.assert_close(unmargined - swapped, -((chosen - rejected) / scale).mean(), rtol=1e-4, atol=1e-5)


@given(
    expert=st.lists(st.sampled_from([-3.0, -0.5, 0.0, 0.5, 2.0]), min_size=1, max_size=8),
    policy=st.lists(st.sampled_from([-3.0, -0.5, 0.0, 0.5, 2.0]), min_size=1, max_size=8),
)
def test_classification_statistics_count_each_class_and_a_tie_as_half_right(expert, policy):
    from trl_irl.discriminator.objective import classification_statistics

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
    from trl_irl.discriminator.objective import input_gradient_penalty

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
    import math

    from trl_irl.discriminator.objective import pair_loss_share, pairwise_loss

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
    from trl_irl.discriminator.objective import demonstration_terms, with_weighted_terms

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
    from trl_irl.discriminator.objective import demonstration_terms, input_gradient_penalty

    embeddings = torch.arange(12.0).reshape(2, 3, 2).requires_grad_(True)
    logits = (embeddings**2).sum(dim=(1, 2))  # gradient 2e: the penalty is 4 |e|^2 over the class's 5 samples
    terms = demonstration_terms(logits, logits, embeddings, num_samples=5)
    assert set(terms) == {"gradient_penalty"}  # no response tokens counted: no likelihood term
    assert terms["gradient_penalty"].item() == pytest.approx(4 * embeddings.pow(2).sum().item() / 5)
    assert terms["gradient_penalty"].item() == input_gradient_penalty(logits, embeddings, 5).item()
