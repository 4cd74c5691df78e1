"""What the benchmark scripts share: model presets, synthetic demonstrations, a step timer and a subprocess runner.

Each benchmark compares a trl-irl trainer with its TRL baseline in the same run; every (trainer, repeat) pair runs in
a fresh subprocess (`--method ...`), in alternating order, so that neither warm caches nor machine drift favour one.
"""

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


PRESETS = {
    # ~10M parameters: fits the 2-core CPU machines
    "10m": {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8, "vocab_size": 4096},
    # ~38M parameters: a discriminator larger than the 10m policy (GAD's setting), on CPU
    "40m": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "vocab_size": 4096},
    # ~1.6B parameters (untied head), Llama-3.2-1B-like shape, random weights: for a GPU
    "1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "vocab_size": 128256},
    # ~3.2B parameters: a discriminator larger than the 1b policy, for a GPU (trained in full, its float32 weights and
    # AdamW state take about 51 GB beside the policy's 26 GB: an H200, or `--lora-discriminator` on an H100)
    "3b": {"hidden_size": 2560, "num_hidden_layers": 24, "num_attention_heads": 20, "vocab_size": 128256},
}
WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this from".split()


def build_model_dir(directory: Path, preset: str) -> Path:
    """A randomly initialised Llama of the preset's shape and a tiny tokenizer, saved for `from_pretrained`."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from trl_irl.benchmark.tiny_models import build_tiny_tokenizer

    shape = PRESETS[preset]
    tokenizer = build_tiny_tokenizer([" ".join(WORDS)] * 4 + [str(i) for i in range(1000)], vocab_size=512)
    config = LlamaConfig(
        vocab_size=max(shape["vocab_size"], len(tokenizer)),  # rows past the tokenizer's are never looked up
        hidden_size=shape["hidden_size"],
        intermediate_size=4 * shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_attention_heads"],
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def demonstrations(num_examples: int, prompt_words: tuple[int, int], completion_words: tuple[int, int]):
    """Prompt-completion pairs of random words, with lengths drawn uniformly from the given ranges."""
    from datasets import Dataset

    rng = random.Random(0)
    return Dataset.from_list(
        [
            {
                "prompt": " ".join(rng.choices(WORDS, k=rng.randint(*prompt_words))),
                "completion": " " + " ".join(rng.choices(WORDS, k=rng.randint(*completion_words))),
            }
            for _ in range(num_examples)
        ]
    )


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (synchronising the GPU first, when there is one)."""

    def __init__(self):
        self.step_seconds = []

    def on_step_begin(self, *_, **__):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._started = time.perf_counter()

    def on_step_end(self, *_, **__):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.step_seconds.append(time.perf_counter() - self._started)


def device_name() -> str:
    import platform

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine()


def print_result(result: dict) -> None:
    """How a worker subprocess hands its result back to the orchestrating process."""
    print("RESULT " + json.dumps(result))


def run_worker(command: list[str], env: dict | None = None) -> dict:
    """Run one worker subprocess and return the result it printed with `print_result`."""
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        sys.exit(f"benchmark worker failed: {' '.join(command)}\n{completed.stderr[-4000:]}")
    result_line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(result_line.removeprefix("RESULT "))
