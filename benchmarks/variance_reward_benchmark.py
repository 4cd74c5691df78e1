"""VarianceRewardTrainer against TRL's RewardTrainer on preferences with response-dependent noise.

    python benchmarks/variance_reward_benchmark.py [--seeds 3]

The truth is known: each of `--items` responses has a utility `u ~ N(0, 1)` and a noise scale, small for half of the
responses (easy to compare) and large for the other half (hard). A preference between responses i and j is drawn
with `P(i > j) = sigmoid((u_i - u_j) / sqrt((s_i^2 + s_j^2) / 2))`, the very model of Eq. 26, so the variance-aware
reward model is well specified and the Bradley-Terry one is not. Both train the same tiny model on the same pairs;
on fresh test pairs we report:

- accuracy against the true utility order (`sign(u_i - u_j)`), and against the sampled test labels;
- expected calibration error (ECE, 10 equal-width bins) of the predicted `P(i > j)` against the sampled labels;
- mean absolute error of the predicted `P(i > j)` against the true probability.
"""

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

from trl_irl import VarianceRewardConfig, VarianceRewardTrainer
from trl_irl.benchmark.tiny_models import save_tiny_checkpoint


def response_names(num_items: int) -> list[str]:
    # One distinct, learnable text per response: what the reward model must map to a utility and a scale
    return [f"option {k}" for k in range(num_items)]


def make_task(num_items: int, easy_scale: float, hard_scale: float, seed: int):
    rng = random.Random(seed)
    names = response_names(num_items)
    utilities = [rng.gauss(0.0, 1.0) for _ in names]
    scales = [easy_scale if i % 2 == 0 else hard_scale for i in range(num_items)]
    return names, utilities, scales


def true_preference(i: int, j: int, utilities, scales) -> float:
    return 1 / (1 + math.exp(-(utilities[i] - utilities[j]) / math.sqrt((scales[i] ** 2 + scales[j] ** 2) / 2)))


def sample_pairs(num_pairs: int, num_items: int, utilities, scales, rng: random.Random) -> list[tuple[int, int, bool]]:
    pairs = []
    for _ in range(num_pairs):
        i, j = rng.sample(range(num_items), 2)
        pairs.append((i, j, rng.random() < true_preference(i, j, utilities, scales)))
    return pairs


def expected_calibration_error(predictions: list[float], outcomes: list[bool], bins: int = 10) -> float:
    total, error = len(predictions), 0.0
    for b in range(bins):
        members = [
            k for k, p in enumerate(predictions) if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p == 1)
        ]
        if members:
            mean_prediction = sum(predictions[k] for k in members) / len(members)
            frequency = sum(outcomes[k] for k in members) / len(members)
            error += len(members) / total * abs(mean_prediction - frequency)
    return error


def evaluate(rewards, log_scales, utilities, scales, test_pairs) -> dict:
    predictions, outcomes, truths, order_correct = [], [], [], []
    for i, j, i_wins in test_pairs:
        scale = math.sqrt((math.exp(2 * log_scales[i]) + math.exp(2 * log_scales[j])) / 2)
        predictions.append(1 / (1 + math.exp(-(rewards[i] - rewards[j]) / scale)))
        outcomes.append(i_wins)
        truths.append(true_preference(i, j, utilities, scales))
        order_correct.append((rewards[i] > rewards[j]) == (utilities[i] > utilities[j]))
    label_accuracy = sum((p > 0.5) == o for p, o in zip(predictions, outcomes, strict=True)) / len(outcomes)
    hard = [k for k in range(len(scales)) if scales[k] > min(scales)]
    easy = [k for k in range(len(scales)) if scales[k] == min(scales)]
    return {
        # How much larger the learned scale is on hard responses than on easy ones (truth: log(hard / easy))
        "log_scale_gap": statistics.mean(log_scales[k] for k in hard) - statistics.mean(log_scales[k] for k in easy),
        "accuracy_true_order": sum(order_correct) / len(order_correct),
        "accuracy_labels": label_accuracy,
        "ece": expected_calibration_error(predictions, outcomes),
        "mae_true_probability": sum(abs(p - t) for p, t in zip(predictions, truths, strict=True)) / len(truths),
    }


def run(method: str, seed: int, args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    names, utilities, scales = make_task(args.items, args.easy_scale, args.hard_scale, seed)
    rng = random.Random(seed + 1000)
    train_pairs = sample_pairs(args.train_pairs, args.items, utilities, scales, rng)
    test_pairs = sample_pairs(args.test_pairs, args.items, utilities, scales, rng)
    if method == "oracle":
        # The true utilities and scales: the best any reward model could do on these test pairs
        return evaluate(utilities, [math.log(s) for s in scales], utilities, scales, test_pairs)
    dataset = Dataset.from_list(
        [
            {"chosen": names[i] if i_wins else names[j], "rejected": names[j] if i_wins else names[i]}
            for i, j, i_wins in train_pairs
        ]
    )
    settings = {
        "output_dir": str(output_dir / f"{method}-{seed}"),
        "num_train_epochs": args.epochs,
        "per_device_train_batch_size": 32,
        "learning_rate": 3e-3,
        "lr_scheduler_type": "cosine",
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "bf16": False,
        "seed": seed,
    }
    if method == "reward":
        trainer = RewardTrainer(model=str(model_dir), args=RewardConfig(**settings), train_dataset=dataset)
    else:
        trainer = VarianceRewardTrainer(
            model=str(model_dir), args=VarianceRewardConfig(**settings), train_dataset=dataset
        )
    trainer.train()

    # Score each response once, with the saved model, as a user would
    trainer.save_model()
    model = AutoModelForSequenceClassification.from_pretrained(settings["output_dir"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(settings["output_dir"])
    with torch.no_grad():
        outputs = model(**tokenizer(names, padding=True, return_tensors="pt")).logits  # (items, 1 or 2)
    rewards = outputs[:, 0].tolist()
    log_scales = outputs[:, 1].tolist() if outputs.shape[1] == 2 else [0.0] * len(names)

    return evaluate(rewards, log_scales, utilities, scales, test_pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--easy-scale", type=float, default=0.3)
    parser.add_argument("--hard-scale", type=float, default=3.0)
    parser.add_argument("--train-pairs", type=int, default=2000)
    parser.add_argument("--test-pairs", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--output", type=Path, help="Also write every seed's results as JSON here.")
    args = parser.parse_args()

    results = {"reward": [], "variance_reward": [], "oracle": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = response_names(args.items) * 4
        model_dir = save_tiny_checkpoint(Path(tmp) / "base", corpus, vocab_size=400, hidden_size=64)
        for seed in range(args.seeds):
            for method in results:
                results[method].append(run(method, seed, args, model_dir, Path(tmp)))
                print(f"seed {seed} {method}: {results[method][-1]}")

    print()
    print(
        f"{args.items} responses (noise scale {args.easy_scale} for half, {args.hard_scale} for the other half), "
        f"{args.train_pairs} training pairs, {args.test_pairs} test pairs, {args.seeds} seeds, "
        f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s"
    )
    metrics = ["accuracy_true_order", "accuracy_labels", "ece", "mae_true_probability", "log_scale_gap"]
    print(f"{'trainer':<16}" + "".join(f"{m:>22}" for m in metrics))
    for method, runs in results.items():
        cells = []
        for metric in metrics:
            values = [run[metric] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} +- {spread:.3f}")
        print(f"{method:<16}" + "".join(f"{cell:>22}" for cell in cells))
    if args.output:
        record = {
            "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "date": time.strftime("%Y-%m-%d"),
            # Both trainers and the oracle, every seed, on one process (its threads: `OMP_NUM_THREADS`)
            "seconds": time.perf_counter() - started,
            # One row per seed, in seed order, for each trainer: paired within seeds by position
            "runs": results,
        }
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
