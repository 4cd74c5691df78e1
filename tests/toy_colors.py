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
def reverse_kl_to_expert(model, tokenizer) -> float:
    """
    Exact reverse KL from the policy to the expert over the outcomes {each expert response, anything else}:
    `sum_y pi(y) log(pi(y) / p(y))`, with the expert smoothed to put `OTHER_MASS` on "anything else". Grouping
    every other response into one outcome can only lower the KL (data processing), so this is a lower bound of the
    KL to the smoothed expert over full responses.
    """
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    policy = {}
    for response in EXPERT:
        response_ids = tokenizer(response)["input_ids"] + [tokenizer.eos_token_id]
        input_ids = torch.tensor([prompt_ids + response_ids], device=model.device)
        log_probs = model(input_ids=input_ids).logits[0, len(prompt_ids) - 1 : -1].float().log_softmax(-1)
        policy[response] = log_probs.gather(-1, torch.tensor(response_ids, device=model.device)[:, None]).sum().exp()
    policy = {response: float(p) for response, p in policy.items()}
    other = max(1.0 - sum(policy.values()), 1e-12)
    kl = other * math.log(other / OTHER_MASS)
    for response, p in policy.items():
        if p > 0:
            kl += p * math.log(p / ((1 - OTHER_MASS) * EXPERT[response]))
    return kl
