"""
Log-probabilities of responses under a causal LM, and the batching every forward of the package shares: samples in
micro-batches, a model in eval mode for the while, `prompt + response` token ids padded into one batch, the prompt ids
GRPO generates from. A leaf: it imports nothing of the package, so that the rewards, reranking, the evaluation, the
discriminator and the benchmark all read responses one way.
"""

from contextlib import contextmanager

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import is_conversational
from trl.trainer.utils import pad, selective_log_softmax


def micro_batches(samples: list, size: int | None):
    """`samples` in consecutive slices of `size` (all at once when `size` is `None`): the loop of every forward."""
    size = size or len(samples) or 1  # no samples: no slice (a step of 0 would be an error)
    for first in range(0, len(samples), size):
        yield samples[first : first + size]


@contextmanager
def evaluating(model: torch.nn.Module):
    """`model` in eval mode (no dropout) for the block, then in the mode it was in, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def prompt_response_batch(
    prompt_ids: list, response_ids: list, pad_token_id: int, device: torch.device | str
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """
    Token ids of `prompt + response` pairs, right-padded into one batch: the model's inputs (`input_ids`,
    `attention_mask`) and a mask of the response tokens, each of shape `(N, T)`.
    """
    sequences = [torch.tensor([*p, *r], dtype=torch.long) for p, r in zip(prompt_ids, response_ids, strict=True)]
    input_ids = pad(sequences, padding_value=pad_token_id).to(device)
    attention_mask = pad([torch.ones_like(sequence) for sequence in sequences]).to(device)
    response_mask = pad(
        [
            torch.tensor([False] * len(p) + [True] * len(r), dtype=torch.bool)
            for p, r in zip(prompt_ids, response_ids, strict=True)
        ],
        padding_value=False,
    ).to(device)
    return {"input_ids": input_ids, "attention_mask": attention_mask}, response_mask


def response_token_log_probs(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    From a causal LM's `(N, T, V)` logits on `input_ids`: the log-probability of each next token at `temperature` and
    which of them are response tokens, both `(N, T - 1)` (position `p` holds token `p + 1`, predicted at `p`).
    """
    token_log_probs = selective_log_softmax(logits[:, :-1], input_ids[:, 1:], temperature)
    return token_log_probs, response_mask[:, 1:]


@torch.no_grad()
def response_log_probs(
    model: PreTrainedModel, prompt_ids: list, response_ids: list, pad_token_id: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    `log p(y_t | x, y_<t)` of every response token under a causal LM, without gradient, at `temperature`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: the log-probabilities and a mask of the response tokens, both of shape
        `(N, T - 1)`: position `p` holds the log-probability of token `p + 1` of `prompt + response`.
    """
    batch, response_mask = prompt_response_batch(prompt_ids, response_ids, pad_token_id, model.device)
    return response_token_log_probs(model(**batch).logits.float(), batch["input_ids"], response_mask, temperature)


@torch.no_grad()
def summed_log_probs(
    model: PreTrainedModel,
    pad_token_id: int,
    prompt_ids: list,
    completion_ids: list,
    temperature: float = 1.0,
    micro_batch_size: int | None = None,
) -> tuple[list[float], list[int]]:
    """
    `log p(y | x)` of each completion's token ids under a causal LM sampling at `temperature` (in eval mode, without
    gradient, `micro_batch_size` completions per forward), and each completion's number of tokens.
    """
    sums, counts = [], []
    with evaluating(model):
        for chunk in micro_batches(list(zip(prompt_ids, completion_ids, strict=True)), micro_batch_size):
            prompts, responses = zip(*chunk, strict=True)
            token_log_probs, mask = response_log_probs(model, prompts, responses, pad_token_id, temperature)
            sums += (token_log_probs * mask).sum(dim=1).tolist()
            counts += mask.sum(dim=1).long().tolist()
    return sums, counts


def mean_negative_log_likelihood(
    model: PreTrainedModel, samples: list, pad_token_id: int, temperature: float = 1.0, micro_batch_size=None
) -> float:
    """Mean negative log-likelihood per response token of `(prompt_ids, response_ids)` samples under a causal LM."""
    prompt_ids, response_ids = zip(*samples, strict=True) if samples else ((), ())
    sums, counts = summed_log_probs(model, pad_token_id, prompt_ids, response_ids, temperature, micro_batch_size)
    return -sum(sums) / max(sum(counts), 1)


def generation_prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: list) -> list[list[int]]:
    """
    Prompts tokenised as GRPO tokenises them for generation when no trainer is at hand: the text, or the chat
    template with a generation prompt for conversations. (A trainer's own, with its tools, is `_tokenize_prompts`.)
    """
    if not is_conversational({"prompt": prompts[0]}):
        return tokenizer(prompts)["input_ids"]
    return tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
