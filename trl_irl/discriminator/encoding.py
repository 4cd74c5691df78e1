"""What a discriminator's model reads: samples (texts, or prompt and response token ids) made into batches."""

import torch
from transformers import PreTrainedTokenizerBase

from ..log_probs import prompt_response_batch


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
