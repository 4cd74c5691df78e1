import os


# Before anything imports `huggingface_hub`: no network in tests, no telemetry
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402
from hypothesis import settings  # noqa: E402

from trl_irl.benchmark.tiny_models import save_tiny_checkpoint  # noqa: E402
from trl_irl.data import load_counting_demonstrations  # noqa: E402


# Property tests of fast pure functions: many examples, no deadline (the first call of a torch op can be slow). Tests
# with settings of their own (the dataset checks) keep theirs.
settings.register_profile("pure", max_examples=200, deadline=None)
settings.load_profile("pure")


def _corpus() -> list[str]:
    demonstrations = load_counting_demonstrations("train")
    texts = [row["prompt"] + row["completion"] for row in demonstrations]
    return texts + ["The quick brown fox jumps over the lazy dog.", "Hello, how are you? I am fine, thank you."]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """A ~50k-parameter Llama and its tokenizer, saved once per test session, loaded with `from_pretrained`."""
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), _corpus(), vocab_size=400))


@pytest.fixture
def prompt_completion_dataset() -> Dataset:
    return load_counting_demonstrations("train").select(range(64))


@pytest.fixture
def language_modeling_dataset(prompt_completion_dataset) -> Dataset:
    return prompt_completion_dataset.map(
        lambda row: {"text": row["prompt"] + row["completion"]}, remove_columns=["prompt", "completion"]
    )


@pytest.fixture
def conversational_dataset(prompt_completion_dataset) -> Dataset:
    """Two user/assistant exchanges per conversation, so that each example has two assistant turns."""
    rows = prompt_completion_dataset.to_list()
    return Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "user", "content": first["prompt"]},
                    {"role": "assistant", "content": first["completion"].strip()},
                    {"role": "user", "content": second["prompt"]},
                    {"role": "assistant", "content": second["completion"].strip()},
                ]
            }
            for first, second in zip(rows[0::2], rows[1::2], strict=True)
        ]
    )


@pytest.fixture
def conversational_prompt_completion_dataset(prompt_completion_dataset) -> Dataset:
    return prompt_completion_dataset.map(
        lambda row: {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"].strip()}],
        }
    )


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> str:
    """A tiny BERT-style encoder with a tokenizer of its own (another vocabulary than the policy's)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from trl_irl.benchmark.tiny_models import build_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = build_tiny_tokenizer(_corpus(), vocab_size=300)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture
def preference_dataset(prompt_completion_dataset) -> Dataset:
    """Explicit-prompt preference pairs: the right count is preferred to the same numbers in reverse order."""
    return prompt_completion_dataset.map(
        lambda row: {
            "chosen": row["completion"],
            "rejected": " " + " ".join(reversed(row["completion"].split())),
        },
        remove_columns=["completion"],
    )


@pytest.fixture(scope="session")
def colours_sft_path(tmp_path_factory) -> str:
    """The colours toy task's SFT checkpoint (and tokenizer), trained once per test session."""
    from helpers import colours_sft_checkpoint

    return str(colours_sft_checkpoint(tmp_path_factory.mktemp("colours")))
