"""Tiny tokenizers and causal LMs built locally, for the demo, the benchmarks and the tests.

Nothing here touches the Hub: a byte-level BPE is trained on a small corpus and a randomly initialised Llama is
built from a config. Both are saved to a directory and meant to be loaded back through the ordinary
`from_pretrained` paths, so that the code under test is the code users run.
"""

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, PreTrainedTokenizerFast


PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|end|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# Each message is `<|role|>content<|end|>`. The assistant's content and its end-of-turn token sit inside
# `{% generation %}` so that `assistant_only_loss=True` trains the model to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] + '<|end|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


def build_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """
    Train a byte-level BPE tokenizer on `corpus`, with pad and end-of-turn tokens and a chat template.

    Args:
        corpus (`Iterable[str]`): texts to learn the merges from; any text can be encoded (byte-level).
        vocab_size (`int`, *optional*, defaults to `512`): at least 256 bytes plus the special tokens.

    Returns:
        [`~transformers.PreTrainedTokenizerFast`]: `eos_token` is `<|end|>`, `pad_token` is `<|pad|>`.
    """
    special_tokens = [PAD_TOKEN, END_TOKEN, *ROLE_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=bpe_trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_causal_lm(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> PreTrainedModel:
    """
    A randomly initialised Llama sized to `tokenizer`.

    The defaults give about 0.05M parameters with a 512-token vocabulary; `hidden_size=256, num_hidden_layers=8`
    gives about 7M.
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    # Seed the initialisation only, without touching the caller's global random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_checkpoint(directory: str | Path, corpus: Iterable[str], vocab_size: int = 512, **model_kwargs) -> Path:
    """
    Build a tiny tokenizer and causal LM and save both to `directory`, loadable with `from_pretrained(directory)`.

    Args:
        directory (`str` or `Path`): where to save; created if missing.
        corpus (`Iterable[str]`): texts for the tokenizer.
        vocab_size (`int`, *optional*, defaults to `512`): see [`build_tiny_tokenizer`].
        **model_kwargs: passed to [`build_tiny_causal_lm`].

    Returns:
        `Path`: `directory`.
    """
    return save_tiny_model(directory, build_tiny_tokenizer(corpus, vocab_size=vocab_size), **model_kwargs)


def save_tiny_model(directory: str | Path, tokenizer: PreTrainedTokenizerFast, **model_kwargs) -> Path:
    """Build a tiny causal LM for `tokenizer` (`model_kwargs` as in [`build_tiny_causal_lm`]) and save both."""
    directory = Path(directory)
    model = build_tiny_causal_lm(tokenizer, **model_kwargs)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory
