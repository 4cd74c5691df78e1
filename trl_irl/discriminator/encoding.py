"""What a discriminator's model reads: samples (texts, or prompt and response token ids) made into batches."""

import torch
from transformers import PreTrainedTokenizerBase
from trl.trainer.utils import pad, selective_log_softmax


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


def micro_batches(samples: list, size: int | None):
    """`samples` in consecutive slices of `size` (all at once when `size` is `None`): the loop of every forward."""
    size = size or len(samples)
    for first in range(0, len(samples), size):
        yield samples[first : first + size]


def num_response_tokens(samples: list) -> int:
    """How many response tokens `(prompt_ids, response_ids)` samples hold."""
    return sum(len(response_ids) for _, response_ids in samples)


def text_batch(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int | None, device: torch.device
) -> dict[str, torch.Tensor]:
    """`texts` tokenised and padded; longer than `max_length` tokens, each keeps its *end* (the response)."""
    previous_side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        batch = tokenizer(
            texts,
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="pt",
            add_special_tokens=True,
        )
    finally:
        tokenizer.truncation_side = previous_side
    return {key: value.to(device) for key, value in batch.items()}


def token_id_batch(
    samples: list, max_length: int | None, min_prompt_tokens: int, pad_token_id: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """
    `(prompt_ids, response_ids)` samples as one right-padded batch and its response mask, `(N, T)` each. A sample
    longer than `max_length` loses the first tokens of its prompt; a response that does not fit beside
    `min_prompt_tokens` prompt tokens is an error.
    """
    prompts, responses = [], []
    for prompt_ids, response_ids in samples:
        if max_length is not None:
            if len(response_ids) + min_prompt_tokens > max_length:
                raise ValueError(
                    f"A response of {len(response_ids)} tokens does not fit the discriminator's window "
                    f"(its `max_length`, {max_length}): lower the completions' length or raise the window."
                )
            prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(response_ids) - max_length) :]
        prompts.append(prompt_ids)
        responses.append(response_ids)
    return prompt_response_batch(prompts, responses, pad_token_id, device)
