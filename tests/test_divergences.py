import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trl_irl.divergences import DIVERGENCES, policy_reward, reward_slope


LOGITS = torch.linspace(-50.0, 50.0, 2001, dtype=torch.float32)


class TestPolicyReward:
    @pytest.mark.parametrize(
        ("divergence", "closed_form"),
        [
            ("js", lambda logit: math.log1p(math.exp(logit)) - math.log(2)),  # -log(1 - D) - log 2, D = sigmoid(l)
            ("reverse_kl", lambda logit: logit),
            ("forward_kl", lambda logit: math.exp(logit) - 1),
            ("alpha", lambda logit: (math.exp(0.5 * logit) - 1.0) / 0.5),
        ],
    )
    def test_closed_forms(self, divergence, closed_form):
        logits = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.0], dtype=torch.float64)
        expected = torch.tensor([closed_form(logit) for logit in logits.tolist()], dtype=torch.float64)
        torch.testing.assert_close(policy_reward(logits, divergence, alpha=0.5), expected)

    def test_js_is_minus_log_one_minus_d_less_log_two(self):
        logits = torch.tensor([-4.0, 0.0, 3.0], dtype=torch.float64)
        discriminator = torch.sigmoid(logits)
        torch.testing.assert_close(policy_reward(logits, "js"), -torch.log1p(-discriminator) - math.log(2))

    @pytest.mark.parametrize("divergence", DIVERGENCES)
    def test_zero_where_the_discriminator_sees_no_difference(self, divergence):
        # Summed over tokens, a reward that is not 0 at l = 0 would pay (or charge) for length alone
        assert policy_reward(torch.zeros(3), divergence, alpha=0.5).abs().max() == 0

    def test_js_is_the_exact_f_max_reward(self):
        # u f'(u) - f(u) for the JS divergence's f, with f'(u) by finite differences: no constant left over
        def f(u):
            return u * u.log() - (1 + u) * ((1 + u) / 2).log()

        u = torch.tensor([0.2, 0.9, 1.0, 1.7, 4.0], dtype=torch.float64)
        eps = 1e-6
        f_max = u * (f(u + eps) - f(u - eps)) / (2 * eps) - f(u)
        torch.testing.assert_close(policy_reward(u.log(), "js"), f_max, rtol=1e-6, atol=1e-8)

    @pytest.mark.parametrize("alpha", [-1.0, 0.3, 2.0])
    def test_alpha_is_the_f_max_reward_of_its_f(self, alpha):
        # r(u) = u f'(u) - f(u), with f'(u) by finite differences, up to the constant GRPO removes
        def f(u):
            return (u ** (1 - alpha) - (1 - alpha) * u - alpha) / (alpha * (alpha - 1))

        u = torch.tensor([0.2, 0.9, 1.0, 1.7, 4.0], dtype=torch.float64)
        eps = 1e-6
        f_prime = (f(u + eps) - f(u - eps)) / (2 * eps)
        f_max = u * f_prime - f(u)
        reward = policy_reward(u.log(), "alpha", alpha=alpha)
        torch.testing.assert_close(reward - reward[2], f_max - f_max[2], rtol=1e-5, atol=1e-6)

    def test_alpha_limits(self):
        logits = torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64)
        torch.testing.assert_close(policy_reward(logits, "alpha", alpha=1 - 1e-7), logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(policy_reward(logits, "alpha", alpha=0.0), logits.exp() - 1)
        torch.testing.assert_close(policy_reward(logits, "alpha", alpha=0.0), policy_reward(logits, "forward_kl"))

    @pytest.mark.parametrize("divergence", DIVERGENCES)
    def test_monotonic_and_finite(self, divergence):
        rewards = policy_reward(LOGITS, divergence, alpha=0.5)
        assert torch.isfinite(rewards).all()
        assert (rewards[1:] >= rewards[:-1]).all()

    @pytest.mark.parametrize("divergence", DIVERGENCES)
    def test_group_standard_deviation_stays_finite_at_large_logits(self, divergence):
        # GRPO normalises each group's rewards by their float32 standard deviation; an infinite one zeroes the
        # advantages (logits 50 and 45 gave `inf` with `forward_kl` before the clamp was lowered)
        rewards = policy_reward(torch.tensor([50.0, 45.0, 60.0, -3.0]), divergence, alpha=0.5)
        assert torch.isfinite(rewards.std())

    @pytest.mark.parametrize("divergence", DIVERGENCES)
    @pytest.mark.parametrize("alpha", [0.5, -1.0, 2.0])
    def test_slope_is_the_derivative_of_the_reward(self, divergence, alpha):
        logits = LOGITS.double().requires_grad_(True)
        (gradient,) = torch.autograd.grad(policy_reward(logits, divergence, alpha=alpha).sum(), logits)
        torch.testing.assert_close(reward_slope(logits.detach(), divergence, alpha=alpha), gradient)

    @pytest.mark.parametrize("function", [policy_reward, reward_slope])
    def test_rejects_unknown_divergence(self, function):
        with pytest.raises(ValueError, match=r"Unknown `divergence` 'wasserstein'; expected one of \("):
            function(LOGITS, "wasserstein")

    def test_rejects_alpha_one(self):
        with pytest.raises(
            ValueError, match=r"^`alpha=1` is the limit `divergence='reverse_kl'`; use that instead\.$"
        ):
            policy_reward(LOGITS, "alpha", alpha=1.0)
        # Its slope is the limit's, 1: nothing to refuse there
        torch.testing.assert_close(reward_slope(LOGITS, "alpha", alpha=1.0), torch.ones_like(LOGITS))

    @pytest.mark.parametrize("function", [policy_reward, reward_slope])
    def test_defaults_are_jensen_shannon_and_alpha_one_half(self, function):
        torch.testing.assert_close(function(LOGITS), function(LOGITS, "js", alpha=0.5))
        torch.testing.assert_close(function(LOGITS, "alpha"), function(LOGITS, "alpha", alpha=0.5))


def _train_one_step_policy(reward_of_logit, steps: int = 3000, learning_rate: float = 0.1) -> tuple[torch.Tensor, ...]:
    """
    A one-step problem: the policy is a softmax over 4 actions, the expert a fixed distribution. Each iteration the
    discriminator is exact (logit = log p_exp - log pi) and held fixed while the policy takes an exact policy-gradient
    step on E_pi[r(logit)], as in alternating adversarial training.
    """
    expert = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    logits = torch.zeros(4, dtype=torch.float64)
    for _ in range(steps):
        policy = logits.softmax(0)
        rewards = reward_of_logit(expert.log() - policy.log())
        logits = logits + learning_rate * policy * (rewards - (policy * rewards).sum())
        if not torch.isfinite(logits).all():
            break
    return expert, logits.softmax(0)


def _reverse_kl(policy, expert) -> float:
    return float((policy * (policy / expert).log()).sum())


class TestConvergence:
    @pytest.mark.parametrize("divergence", DIVERGENCES)
    def test_every_divergence_drives_the_policy_to_the_expert(self, divergence):
        expert, policy = _train_one_step_policy(lambda logit: policy_reward(logit, divergence, alpha=0.5))
        torch.testing.assert_close(policy, expert, rtol=0, atol=1e-4)
        assert _reverse_kl(policy, expert) < 1e-6


class TestWhyTheSignsAreOurs:
    """
    Documentation of the maths, not tests of package code: the two rewards the paper prints, on the same exact
    one-step problem, drive the policy away from the expert. They explain the two sign corrections of
    `docs/divergences.md`; the package's own rewards are tested in `TestConvergence` above.
    """

    def test_the_paper_s_printed_sign_drives_it_away(self):
        # Eq. 17 / 19 as printed: minimise E_pi[log D - log(1 - D)], i.e. reward -l
        expert, policy = _train_one_step_policy(lambda logit: -logit, steps=300)
        assert not torch.isfinite(policy).all() or _reverse_kl(policy, expert) > 1.0

    def test_fairl_reward_with_u_held_fixed_drives_it_away(self):
        # -l exp(l) = -f(u) for the forward KL: decreasing in l near the optimum, hence not our `forward_kl`
        expert, policy = _train_one_step_policy(lambda logit: -logit * logit.exp(), steps=300)
        assert not torch.isfinite(policy).all() or _reverse_kl(policy, expert) > 1.0


finite_logits = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)
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
@given(first=finite_logits, second=finite_logits, alpha=alphas)
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
