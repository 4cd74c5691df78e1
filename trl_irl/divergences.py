r"""Policy rewards from a discriminator's logit, one per f-divergence (Ghasemipour et al. 2020, arXiv 1911.02256).

The discriminator is trained with expert samples labelled 1, so its logit `l = log D - log(1 - D)` is *expert-is-high*
and, at the discriminator's optimum (Eq. 16 of arXiv 2403.12017), estimates `l = log rho_exp - log rho_pi`. Write
`u = exp(l) = rho_exp / rho_pi`.

To minimise an f-divergence `D_f(rho_exp || rho_pi) = E_pi[f(u)]`, note that `u` depends on the policy too. Its exact
policy gradient is `-E_pi[grad log pi * (u f'(u) - f(u))]` (differentiate `sum_a pi_a f(p_a / pi_a)`), so the reward
the policy must maximise, with the discriminator held fixed during the policy step, is

    r(l) = u f'(u) - f(u) = f*(f'(u)),     u = exp(l)

the f-MAX reward, `f*` being the convex conjugate. It is increasing in `l` for every convex `f`
(`dr/du = u f''(u) >= 0`), so more expert-like samples always earn more.

| divergence   | `f(u)`                                              | `r(l)`                              |
|--------------|-----------------------------------------------------|-------------------------------------|
| `reverse_kl` | `-log u`              (KL(rho_pi \|\| rho_exp), AIRL)   | `l`                                 |
| `js`         | `u log u - (1 + u) log((1 + u) / 2)`  (GAIL)        | `softplus(l) - log 2`               |
| `forward_kl` | `u log u`             (KL(rho_exp \|\| rho_pi))         | `exp(l) - 1`                        |
| `alpha`      | `(u^(1-a) - (1-a) u - a) / (a (a - 1))`             | `(exp((1 - a) l) - 1) / (1 - a)`    |

Each reward is fixed up to a constant; we choose the one that makes **every reward 0 at `l = 0`**, where the
discriminator sees no difference between expert and policy (`softplus(l) - log 2 = -log(1 - D) - log 2` is GAIL's
reward and the exact `u f'(u) - f(u)` of the JS divergence; AIRL's exact one is `l - 1`). For one reward per response
the constant does not matter, since GRPO normalises rewards within each group of completions. For one reward per
*token* it does: a constant `c` per token adds `c` times the response length to its return, so `softplus(l)` (GAIL's
usual form, positive everywhere) pays the policy for every extra token even where the discriminator is at chance: a
length bias, the language-model form of the absorbing-state bias of adversarial imitation (Kostrikov et al. 2019,
arXiv 1809.02925). With a zero at `l = 0`, tokens the discriminator cannot tell apart earn nothing.

Two signs differ from what the paper prints. Eq. 17 and 19 read `min_pi E_pi[log D - log(1 - D)]`, which would
*increase* the reverse KL: the consistent objective maximises `l`. And the FAIRL reward `-l exp(l)` (the table's
`-f(exp(l))` for the forward KL) holds `u` fixed where it depends on the policy; it decreases in `l` near the optimum,
and on a one-step problem with the exact log-ratio it drives the policy away from the expert
(`tests/test_divergences.py`). `exp(l)` is the forward-KL reward that converges.
"""

import math

import torch
import torch.nn.functional as F


DIVERGENCES = ("js", "reverse_kl", "forward_kl", "alpha")

# Exponents are clamped here: GRPO's group normalisation squares the rewards in float32, where `exp(80)` was finite but
# its square was not (logits 50 and 45 gave an infinite standard deviation and zero advantages). `exp(30)^2` is 1e26.
_MAX_EXPONENT = 30.0


def policy_reward(logits_expert_is_high: torch.Tensor, divergence: str = "js", alpha: float = 0.5) -> torch.Tensor:
    """
    Map discriminator logits (expert is high) to the policy's reward for the chosen f-divergence.

    Args:
        logits_expert_is_high (`torch.Tensor`): `log D - log(1 - D)`, any shape.
        divergence (`str`, *optional*, defaults to `"js"`): one of `"js"` (GAIL), `"reverse_kl"` (AIRL),
            `"forward_kl"`, `"alpha"`.
        alpha (`float`, *optional*, defaults to `0.5`): parameter of the alpha-divergence, not 1. `alpha -> 1` tends
            to `"reverse_kl"`, `alpha = 0` is `"forward_kl"`.

    Returns:
        `torch.Tensor`: rewards, same shape, finite for finite logits, increasing in the logit, 0 where it is 0.
    """
    logits = logits_expert_is_high
    if divergence == "js":
        return F.softplus(logits) - math.log(2.0)
    elif divergence == "reverse_kl":
        return logits
    elif divergence == "forward_kl":
        return torch.expm1(logits.clamp(max=_MAX_EXPONENT))
    elif divergence == "alpha":
        if alpha == 1.0:
            raise ValueError("`alpha=1` is the limit `divergence='reverse_kl'`; use that instead.")
        exponent = ((1.0 - alpha) * logits).clamp(max=_MAX_EXPONENT)
        return torch.expm1(exponent) / (1.0 - alpha)
    else:
        raise ValueError(f"Unknown `divergence` {divergence!r}; expected one of {DIVERGENCES}.")


def reward_slope(logits_expert_is_high: torch.Tensor, divergence: str = "js", alpha: float = 0.5) -> torch.Tensor:
    """
    `d reward / d logit` of [`policy_reward`] at each logit (0 where the reward is clamped): how much a change in the
    discriminator's verdict still moves the reward. Where it vanishes for a whole group of completions, GRPO's
    advantages vanish with it: the discriminator is saturated.
    """
    logits = logits_expert_is_high
    if divergence == "js":
        return torch.sigmoid(logits)
    elif divergence == "reverse_kl":
        return torch.ones_like(logits)
    elif divergence == "forward_kl":
        return torch.where(logits <= _MAX_EXPONENT, torch.exp(logits.clamp(max=_MAX_EXPONENT)), 0.0)
    elif divergence == "alpha":
        exponent = (1.0 - alpha) * logits
        return torch.where(exponent <= _MAX_EXPONENT, torch.exp(exponent.clamp(max=_MAX_EXPONENT)), 0.0)
    else:
        raise ValueError(f"Unknown `divergence` {divergence!r}; expected one of {DIVERGENCES}.")
