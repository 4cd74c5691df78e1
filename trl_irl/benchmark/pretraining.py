"""
The pretrained-base regime's base model: pretrained on a broad distribution, then fine-tuned on a few demonstrations
of a narrower expert whose log-probabilities are exact.

Real fine-tuning starts from a model that already knows much of what the demonstrations show, and often has only
hundreds of them, where SFT overfits fast; every other regime trains its models from scratch. Here the base is
pretrained on samples of every rule of `synthetic.RULES`, each as likely (`BROAD_RULES`); the expert answers by three
of them in proportions the base does not have (`NARROW_RULES`), so that what the demonstrations teach is which rules,
how often, not the rules themselves. The base is trained once per setting and reused (`pretrained_base`), as the
distil regime's teacher is.
"""

import fcntl
import json
from pathlib import Path

from transformers import AutoTokenizer

from .synthetic import RULES, WORDS, SyntheticExpert
from .teacher import train_by_sft
from .tiny_models import build_tiny_tokenizer, save_tiny_model


# Every rule, each as likely: what the base model is pretrained on
BROAD_RULES = {name: 1 / len(RULES) for name in RULES}
# The narrower expert of the demonstrations: rules the base knows, in proportions it does not
NARROW_RULES = {"rotate": 0.6, "swap": 0.3, "repeat": 0.1}
PRETRAINING_RECORD_FILE = "pretraining_record.json"


def pretraining_corpus_tokenizer(demonstrations) -> object:
    """The tokenizer of the regime: learned once from the pretraining data, shared by every seed's models."""
    corpus = [row["prompt"] + row["completion"] for row in demonstrations] + [" ".join(WORDS)] * 4
    return build_tiny_tokenizer(corpus, vocab_size=400)


def pretrained_base(
    directory: Path,
    hidden_size: int,
    num_hidden_layers: int,
    steps: int,
    num_examples: int,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> Path:
    """
    A base model of the given size pretrained by SFT for `steps` on `num_examples` demonstrations of `BROAD_RULES`
    (batches of 16), saved with its tokenizer to `directory`. A base saved there with the same record is reused (CPU
    training is deterministic); any other is trained again.
    """
    directory = Path(directory)
    record = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "steps": steps,
        "num_examples": num_examples,
        "learning_rate": learning_rate,
        "seed": seed,
        "rules": BROAD_RULES,
    }
    directory.mkdir(parents=True, exist_ok=True)
    # Jobs side by side share one base: the first to get here pretrains it, the others wait and reuse it
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record_path = directory / PRETRAINING_RECORD_FILE
        if not (record_path.is_file() and json.loads(record_path.read_text()) == record):
            _pretrain(directory, record)
            record_path.write_text(json.dumps(record))
    return directory


def _pretrain(directory: Path, record: dict) -> None:
    seed, num_examples, steps = record["seed"], record["num_examples"], record["steps"]
    hidden_size, num_hidden_layers, learning_rate = (
        record["hidden_size"],
        record["num_hidden_layers"],
        record["learning_rate"],
    )
    demonstrations = SyntheticExpert("rules", rules=BROAD_RULES).demonstrations(num_examples, seed=seed + 70_000)
    initial = save_tiny_model(
        directory / "initial",
        pretraining_corpus_tokenizer(demonstrations),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
    )
    train_by_sft(directory, initial, demonstrations, steps, learning_rate, seed)
    AutoTokenizer.from_pretrained(initial).save_pretrained(directory)
