"""A one-prompt imitation task whose expert distribution is known exactly: the expert names a colour at random."""

import math
import random

import torch
from datasets import Dataset


PROMPT = "Pick a color:"
EXPERT = {" red": 0.4, " green": 0.3, " blue": 0.2, " black": 0.1}
CORPUS = [PROMPT + response for response in EXPERT] * 10 + ["The quick brown fox jumps over the lazy dog 0123456789"]
# Expert mass given to "anything else" in the smoothed expert, so that the reverse KL stays finite
OTHER_MASS = 1e-3


def demonstrations(num_demonstrations: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    responses = rng.choices(list(EXPERT), weights=list(EXPERT.values()), k=num_demonstrations)
    return Dataset.from_list([{"prompt": PROMPT, "completion": response} for response in responses])


@torch.no_grad()
def response_probabilities(model, tokenizer) -> dict[str, float]:
    """The policy's probability of each expert response (followed by the end-of-sequence token), exactly."""
    device = next(model.parameters()).device
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    policy = {}
    for response in EXPERT:
        response_ids = tokenizer(response)["input_ids"] + [tokenizer.eos_token_id]
        input_ids = torch.tensor([prompt_ids + response_ids], device=device)
        log_probs = model(input_ids=input_ids).logits[0, len(prompt_ids) - 1 : -1].float().log_softmax(-1)
        token_log_probs = log_probs.gather(-1, torch.tensor(response_ids, device=device)[:, None])
        policy[response] = float(token_log_probs.sum().exp())
    return policy


def _outcomes(model, tokenizer) -> list[tuple[float, float]]:
    """(policy, smoothed expert) probabilities of each outcome: every expert response, and "anything else"."""
    policy = response_probabilities(model, tokenizer)
    other = max(1.0 - sum(policy.values()), 1e-12)
    return [(p, (1 - OTHER_MASS) * EXPERT[response]) for response, p in policy.items()] + [(other, OTHER_MASS)]


def reverse_kl_to_expert(model, tokenizer) -> float:
    """
    Exact reverse KL from the policy to the expert over the outcomes {each expert response, anything else}:
    `sum_y pi(y) log(pi(y) / p(y))`, with the expert smoothed to put `OTHER_MASS` on "anything else". Grouping
    every other response into one outcome can only lower the KL (data processing), so this is a lower bound of the
    KL to the smoothed expert over full responses.
    """
    return sum(pi * math.log(pi / p) for pi, p in _outcomes(model, tokenizer) if pi > 0)


def forward_kl_to_expert(model, tokenizer) -> float:
    """Exact forward KL `sum_y p(y) log(p(y) / pi(y))` over the same outcomes: large when an expert mode is dropped."""
    return sum(p * math.log(p / max(pi, 1e-12)) for pi, p in _outcomes(model, tokenizer))


class ExactReverseKLReward:
    """
    The oracle's reward: `log p(y) - log pi(y)` over the same outcomes, with `pi` the policy being trained (set
    `model` once the trainer has built it). GRPO with it minimises the exact reverse KL, which adversarial imitation
    can only estimate.
    """

    __name__ = "exact_reverse_kl"

    def __init__(self, tokenizer):
        self.tokenizer, self.model = tokenizer, None

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        policy = response_probabilities(self.model, self.tokenizer)
        other = max(1.0 - sum(policy.values()), 1e-12)
        rewards = []
        for completion, ids in zip(completions, completion_ids, strict=True):
            if completion in EXPERT and ids[-1] == self.tokenizer.eos_token_id:
                rewards.append(math.log((1 - OTHER_MASS) * EXPERT[completion]) - math.log(policy[completion]))
            else:
                rewards.append(math.log(OTHER_MASS) - math.log(other))
        return rewards
