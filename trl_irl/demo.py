"""The embedded default: occupancy-weighted SFT of a tiny model on the counting demonstrations, offline, on CPU.

    python -m trl_irl.demo [--max-steps 300] [--token-weighting occupancy] [--output-dir trl-irl-demo]

Builds a tiny tokenizer and Llama locally (no Hub), trains them with `WeightedSFTTrainer` on the shipped
demonstrations, saves the model, and reports how often greedy decoding reproduces the held-out demonstrations
before and after training.
"""

import argparse
import os
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .data import load_counting_demonstrations
from .tiny_models import save_tiny_checkpoint
from .token_weighting import TOKEN_WEIGHTINGS
from .trainer import WeightedSFTConfig, WeightedSFTTrainer


@torch.no_grad()
def greedy_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, demonstrations: Dataset, max_new_tokens: int = 24
) -> dict[str, float]:
    """
    Share of prompts whose greedy completion equals the demonstration (`exact_match`), and share whose first number
    does (`first_number`): the first tokens decide the rest of a counting response.
    """
    tokenizer.padding_side = "left"  # generation appends to the right
    inputs = tokenizer(list(demonstrations["prompt"]), return_tensors="pt", padding=True).to(model.device)
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    completions = tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    exact, first = 0, 0
    for completion, expected in zip(completions, demonstrations["completion"], strict=True):
        exact += completion.split() == expected.split()
        first += completion.split()[:1] == expected.split()[:1]
    return {"exact_match": exact / len(completions), "first_number": first / len(completions)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="trl-irl-demo", help="Where the base and trained models are saved.")
    parser.add_argument("--max-steps", type=int, default=300, help="Optimizer steps of weighted SFT.")
    parser.add_argument("--token-weighting", default="occupancy", choices=TOKEN_WEIGHTINGS)
    parser.add_argument("--occupancy-gamma", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    started = time.perf_counter()
    output_dir = Path(args.output_dir)
    train_dataset = load_counting_demonstrations("train")
    eval_dataset = load_counting_demonstrations("eval")
    corpus = [row["prompt"] + row["completion"] for row in train_dataset]
    base_path = save_tiny_checkpoint(
        output_dir / "base-model", corpus, vocab_size=400, hidden_size=128, num_hidden_layers=2, seed=args.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    before = greedy_accuracy(AutoModelForCausalLM.from_pretrained(base_path), tokenizer, eval_dataset)

    config = WeightedSFTConfig(
        output_dir=str(output_dir / "weighted-sft"),
        token_weighting=args.token_weighting,
        occupancy_gamma=args.occupancy_gamma,
        max_steps=args.max_steps,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        logging_steps=max(1, args.max_steps // 10),
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=args.seed,
    )
    trainer = WeightedSFTTrainer(
        model=str(base_path), args=config, train_dataset=train_dataset, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    after = greedy_accuracy(trainer.model, tokenizer, eval_dataset)

    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    print()
    print(
        f"WeightedSFT ({args.token_weighting}) on {len(train_dataset)} counting demonstrations, {args.max_steps} steps"
    )
    print(f"training loss: {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"{'held-out prompts (' + str(len(eval_dataset)) + ')':<28}{'before':>8}{'after':>8}")
    for metric in ("exact_match", "first_number"):
        print(f"{metric:<28}{before[metric]:>8.1%}{after[metric]:>8.1%}")
    print(f"model saved to {config.output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
