"""A synthetic expert whose probability of any response is known exactly, and divergences of a policy from it.

Two regimes (`SyntheticExpert(regime=...)`):

- `"memorise"`: a handful of prompts (`"Task 3:"`), each with three fixed responses, the modes, drawn with
  probabilities 0.6, 0.3 and 0.1. Evaluation uses the training prompts: a policy can memorise them.
- `"rules"`: a prompt is four colour words; the expert answers by a rule chosen at random: the words reversed (0.6),
  sorted (0.3), or the first word four times (0.1), probabilities adding up where two rules agree. There are 10^4
  prompts and evaluation uses prompts unseen in training: the rules must be learned, per-token errors compound.

Metrics (`expert_divergences`) are exact. The expert's support is enumerable, so the policy's probability of each
expert response is computed by a forward pass (with its end-of-sequence token), and everything else the policy
could say is lumped into one outcome, "invalid". On that finite outcome space the forward KL, reverse KL and
Jensen-Shannon divergence are sums. The forward KL `KL(p_exp || pi)` equals the one over full responses (the expert
puts no mass on invalid ones); the reverse KL is taken against the expert smoothed with `INVALID_MASS` on "invalid"
(otherwise infinite as soon as the policy can say anything invalid), and, like the JS divergence, is a lower bound
of its full-response value (grouping outcomes never increases a divergence).

The mean response length cannot be enumerated (the policy may say anything), so `sampled_mean_length` estimates it
from samples, with a 95% confidence interval; the expert's is exact (`SyntheticExpert.mean_length`).
"""

import math
import random
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..log_probs import response_log_probs
from ..reranking import forked_random_state, sampling_kwargs
from .choices import SYNTHETIC_REGIMES


WORDS = ("red", "green", "blue", "gold", "pink", "gray", "teal", "navy", "lime", "plum")
MODE_PROBABILITIES = (0.6, 0.3, 0.1)
# The rules a `rules`-regime expert answers by, each a function of the prompt's four words
RULES = {
    "reverse": lambda words: words[::-1],
    "sort": sorted,
    "repeat": lambda words: [words[0]] * 4,
    "rotate": lambda words: words[1:] + words[:1],
    "swap": lambda words: [words[-1], *words[1:-1], words[0]],
}
# The rules regime's expert: reversed (0.6), sorted (0.3), the first word four times (0.1)
RULE_PROBABILITIES = {"reverse": 0.6, "sort": 0.3, "repeat": 0.1}
# Expert mass on "invalid" in the reverse KL, which is infinite for an expert that never errs
INVALID_MASS = 1e-3


@dataclass
class SyntheticExpert:
    """
    A prompt-conditioned, multi-modal expert over colour words, with exact response probabilities.

    Args:
        regime (`str`, *optional*, defaults to `"memorise"`): `"memorise"` or `"rules"` (see the module docstring).
        num_prompts (`int`, *optional*, defaults to `8`): prompts of the `"memorise"` regime.
        seed (`int`, *optional*, defaults to `0`): fixes the `"memorise"` regime's responses.
        rules (`dict[str, float]`, *optional*): the `"rules"` regime's mixture, rule name (of `RULES`) -> probability;
            defaults to `RULE_PROBABILITIES`.
    """

    regime: str = "memorise"
    num_prompts: int = 8
    seed: int = 0
    rules: dict[str, float] | None = None

    def __post_init__(self):
        if self.regime not in SYNTHETIC_REGIMES:
            raise ValueError(f"Unknown `regime` {self.regime!r}; expected one of {SYNTHETIC_REGIMES}.")
        self.rules = dict(RULE_PROBABILITIES if self.rules is None else self.rules)
        unknown = set(self.rules) - set(RULES)
        if unknown or not math.isclose(sum(self.rules.values()), 1.0) or min(self.rules.values()) <= 0:
            raise ValueError(
                f"`rules` must give each of some of {list(RULES)} a positive probability, summing to 1; got "
                f"{self.rules}."
            )
        rng = random.Random(self.seed)
        self._memorised = {}
        for k in range(self.num_prompts):
            modes = []
            while len(modes) < len(MODE_PROBABILITIES):
                response = " " + " ".join(rng.choices(WORDS, k=rng.randint(2, 4)))
                if response not in modes:
                    modes.append(response)
            self._memorised[f"Task {k}:"] = modes

    def distribution(self, prompt: str) -> dict[str, float]:
        """The expert's exact distribution over responses to `prompt` (response text, with its leading space)."""
        if self.regime == "memorise":
            if prompt not in self._memorised:
                raise ValueError(f"{prompt!r} is not one of the {self.num_prompts} prompts of the memorise regime.")
            return dict(zip(self._memorised[prompt], MODE_PROBABILITIES, strict=True))
        words = prompt.removesuffix(":").split()
        if len(words) != 4 or any(word not in WORDS for word in words):
            raise ValueError(f"{prompt!r} is not a prompt of the rules regime (four colour words and a colon).")
        distribution: dict[str, float] = {}
        for rule, probability in self.rules.items():
            response = " " + " ".join(RULES[rule](words))
            distribution[response] = distribution.get(response, 0.0) + probability
        return distribution

    def mean_length(self, prompts: list[str]) -> float:
        """The expert's exact mean response length in words, averaged over `prompts`."""
        return sum(
            sum(probability * len(response.split()) for response, probability in self.distribution(prompt).items())
            for prompt in prompts
        ) / len(prompts)

    def prompts(self, count: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
        """`count` prompts (with repetition in the memorise regime; distinct and not in `exclude` in the other)."""
        rng = random.Random(seed)
        if self.regime == "memorise":
            return [rng.choice(list(self._memorised)) for _ in range(count)]
        chosen: list[str] = []
        while len(chosen) < count:
            prompt = " ".join(rng.choices(WORDS, k=4)) + ":"
            if prompt not in exclude and prompt not in chosen:
                chosen.append(prompt)
        return chosen

    def demonstrations(self, count: int, seed: int = 0) -> Dataset:
        """`count` (prompt, completion) demonstrations: prompts drawn, then responses sampled from the expert."""
        prompts = self.prompts(count, seed)
        completions = self.sample_responses(prompts, random.Random(seed + 1))
        return Dataset.from_list([{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)])

    def sample_responses(self, prompts: list[str], rng: random.Random) -> list[str]:
        """One response to each of `prompts`, drawn from the expert's distribution with `rng`, in order."""
        responses = []
        for prompt in prompts:
            candidates, probabilities = zip(*self.distribution(prompt).items(), strict=True)
            responses.append(rng.choices(candidates, weights=probabilities)[0])
        return responses

    def evaluation_prompts(self, count: int, seed: int, training_prompts: set[str]) -> list[str]:
        """All prompts in the memorise regime; `count` prompts unseen in training in the rules regime."""
        if self.regime == "memorise":
            return list(self._memorised)
        return self.prompts(count, seed, exclude=training_prompts)


def response_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    responses: list[str],
    temperature: float = 1.0,
) -> list[float]:
    """
    The policy's probability of each response to `prompt`, end-of-sequence token included, when it samples each token
    at `temperature` (its logits divided by it).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    token_log_probs, mask = response_log_probs(
        model, [prompt_ids] * len(responses), response_ids, tokenizer.pad_token_id, temperature
    )
    return [math.exp(log_probability) for log_probability in (token_log_probs * mask).sum(dim=1).tolist()]


@torch.no_grad()
def sampled_mean_length(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    samples_per_prompt: int = 16,
    max_new_tokens: int = 16,
    seed: int = 0,
    temperature: float = 1.0,
) -> tuple[float, float]:
    """
    The policy's mean response length in words (as the expert's is counted), estimated by sampling.

    Samples at `temperature` with no top-k or top-p truncation, so they follow the policy's own distribution; a
    response that does not end within `max_new_tokens` counts with its truncated length. The global random state is
    left as it was, so evaluating during training does not change the training run.

    Returns:
        `tuple[float, float]`: the mean over all `len(prompts) * samples_per_prompt` samples, and the half-width of its
        95% confidence interval (normal approximation).
    """
    # One batch for all prompts (left-padded, as generation needs)
    batch = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt").to(model.device)
    with forked_random_state(model.device):
        torch.manual_seed(seed)
        generated = model.generate(
            **batch, **sampling_kwargs(tokenizer, temperature, max_new_tokens, samples_per_prompt)
        )
    texts = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    lengths = [len(text.split()) for text in texts]
    mean = sum(lengths) / len(lengths)
    variance = sum((length - mean) ** 2 for length in lengths) / max(len(lengths) - 1, 1)
    return mean, 1.96 * math.sqrt(variance / len(lengths))


def divergences(expert: list[float], policy: list[float]) -> dict[str, float]:
    """
    Divergences between two distributions over the expert's responses plus one "invalid" outcome.

    Args:
        expert (`list[float]`): the expert's probabilities of its responses (summing to 1).
        policy (`list[float]`): the policy's probabilities of the same responses (summing to at most 1; the rest is
            its probability of "invalid").

    Returns:
        `dict[str, float]`: `forward_kl` (`KL(expert || policy)`), `reverse_kl` (`KL(policy || smoothed expert)`),
        `js` (Jensen-Shannon, natural log), `invalid` (the policy's "invalid" mass) and `mode_coverage` (share of the
        expert's responses to which the policy gives at least half the expert's probability).
    """
    invalid = max(0.0, 1.0 - sum(policy))
    forward_kl = sum(p * math.log(p / max(q, 1e-300)) for p, q in zip(expert, policy, strict=True) if p > 0)
    smoothed = [(1 - INVALID_MASS) * p for p in expert] + [INVALID_MASS]
    policy_all = list(policy) + [invalid]
    reverse_kl = sum(q * math.log(q / s) for q, s in zip(policy_all, smoothed, strict=True) if q > 0)
    expert_all = list(expert) + [0.0]
    mixture = [(p + q) / 2 for p, q in zip(expert_all, policy_all, strict=True)]
    js = 0.5 * sum(p * math.log(p / m) for p, m in zip(expert_all, mixture, strict=True) if p > 0) + 0.5 * sum(
        q * math.log(q / m) for q, m in zip(policy_all, mixture, strict=True) if q > 0
    )
    coverage = sum(q >= p / 2 for p, q in zip(expert, policy, strict=True)) / len(expert)
    return {
        "forward_kl": forward_kl,
        "reverse_kl": reverse_kl,
        "js": js,
        "invalid": invalid,
        "mode_coverage": coverage,
    }


def expert_divergences(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    expert: SyntheticExpert,
    prompts: list[str],
    temperature: float = 1.0,
) -> dict[str, float]:
    """
    `divergences` of the policy (sampling at `temperature`) from the expert, averaged over `prompts`, and the policy's
    `mean_length` (sampled, with `mean_length_ci95`, the half-width of its 95% confidence interval) beside the
    expert's exact `expert_mean_length`.
    """
    totals: dict[str, float] = {}
    for prompt in prompts:
        responses, probabilities = zip(*expert.distribution(prompt).items(), strict=True)
        policy = response_probabilities(model, tokenizer, prompt, list(responses), temperature)
        for name, value in divergences(list(probabilities), policy).items():
            totals[name] = totals.get(name, 0.0) + value
    metrics = {name: total / len(prompts) for name, total in totals.items()}
    metrics["mean_length"], metrics["mean_length_ci95"] = sampled_mean_length(
        model, tokenizer, prompts, temperature=temperature
    )
    metrics["expert_mean_length"] = expert.mean_length(prompts)
    return metrics


def _average_ranks(values: list[float]) -> list[float]:
    """Ranks from 0, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2
        start = end + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (ties get average ranks); `None` where either side is constant."""
    rx, ry = _average_ranks(xs), _average_ranks(ys)
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry, strict=True))
    spread_x = math.sqrt(sum((a - mean_x) ** 2 for a in rx))
    spread_y = math.sqrt(sum((b - mean_y) ** 2 for b in ry))
    if spread_x == 0 or spread_y == 0:
        return None
    return covariance / (spread_x * spread_y)


def within_prompt_spearman(prompts: list, learned: list[float], exact: list[float]) -> float | None:
    """
    Reward fidelity: the Spearman correlation between a learned and the exact reward among the completions of each
    prompt, averaged over prompts. Only the order within a prompt matters to GRPO (it centres and scales rewards per
    group), hence within prompts. Prompts where either reward is constant are left out; `None` if all are.
    """
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(repr(prompt), []).append(index)
    correlations = [
        spearman([learned[i] for i in rows], [exact[i] for i in rows]) for rows in groups.values() if len(rows) > 1
    ]
    correlations = [value for value in correlations if value is not None]
    return sum(correlations) / len(correlations) if correlations else None


class ExpertSupportChecker:
    """
    A verifiable reward, as a rule checker gives one: 1 where the completion is one of the synthetic expert's
    responses to its prompt (in its canonical tokens, ended by the end-of-sequence token), else 0. It checks
    correctness only: every correct response scores the same, so GRPO on it alone has nothing that keeps the
    expert's proportions between them (the drift it is measured for). Its expected score is `1 - invalid` of the
    metrics; in the distil regime it checks the rules the teacher learned, which the teacher itself does not always
    follow (`TeacherExpert.divergences` reports both's `checker_score`).
    """

    __name__ = "checker"

    def __init__(self, expert: SyntheticExpert, tokenizer):
        self.expert, self.tokenizer = expert, tokenizer

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        rewards = []
        for prompt, completion, ids in zip(prompts, completions, completion_ids, strict=True):
            canonical_ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
            correct = completion in self.expert.distribution(prompt)
            rewards.append(float(correct and list(ids) == canonical_ids + [self.tokenizer.eos_token_id]))
        return rewards
