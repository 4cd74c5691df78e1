"""The distil regime: the expert is a larger causal LM trained locally, and the demonstrations are its text.

This is black-box distillation as a user of an API model meets it: the student sees the teacher's text only, shares
its tokenizer, and is smaller than it, so it cannot represent it exactly (where `memorise` and `rules` use an expert
that the policy can represent, and SFT is near-optimal). The teacher is a `rules`-regime SFT model: a model four
times wider and twice as deep as the student, trained on the rule expert's demonstrations, so that its text has
structure (the rules, imperfectly learned) and a spread that a small model covers only approximately.

Divergences are exact in expectation: the teacher's log-probability of any token sequence is one forward pass, so
`KL(pi || teacher) = E_pi[log pi(y | x) - log teacher(y | x)]` is estimated without bias from the policy's samples and
`KL(teacher || pi)` from a fixed set of the teacher's samples, each with its standard error. Both are over token
sequences of at most `MAX_NEW_TOKENS` (a sequence that has not ended by then is an outcome of its own, under both
models alike), the space GRPO samples from with `max_completion_length=MAX_NEW_TOKENS`.
"""

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from ..log_probs import evaluating, generation_prompt_ids, summed_log_probs
from ..reranking import forked_random_state, sample_completion_ids
from .synthetic import ExpertSupportChecker, SyntheticExpert


# The longest completion sampled anywhere in the distil regime (the adversarial methods' `max_completion_length`)
MAX_NEW_TOKENS = 12
# Rows per forward pass when scoring sequences (tiny models: a large batch is cheap)
SCORING_BATCH_SIZE = 512
# Beside the teacher: the settings it was trained with, so that a later run reuses it only if they are the same
TEACHER_RECORD_FILE = "teacher_settings.json"


@torch.no_grad()
def sequence_log_probs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completion_ids: list[list[int]],
    temperature: float = 1.0,
) -> list[float]:
    """`log p(y | x)` of each completion's token ids under `model` sampling at `temperature`."""
    # Lists, also from a dataset's columns (which the tokenizer does not take)
    prompt_ids = generation_prompt_ids(tokenizer, list(prompts))
    log_probs, _ = summed_log_probs(
        model, tokenizer.pad_token_id, prompt_ids, list(completion_ids), temperature, SCORING_BATCH_SIZE
    )
    return log_probs


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    n: int,
    seed: int,
    temperature: float = 1.0,
) -> tuple[list[str], list[list[int]]]:
    """`n` samples of each prompt: the prompts repeated, and the completions' token ids (global random state kept)."""
    with evaluating(model), forked_random_state(model.device):
        torch.manual_seed(seed)
        ids = sample_completion_ids(
            model, tokenizer, generation_prompt_ids(tokenizer, prompts), n, temperature, MAX_NEW_TOKENS
        )
    return [prompt for prompt in prompts for _ in range(n)], ids


def _mean_and_standard_error(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


@dataclass
class TeacherExpert:
    """
    A causal LM as the expert: its samples are the demonstrations, its log-probabilities make the divergences exact.

    Args:
        model ([`~transformers.PreTrainedModel`]): the teacher.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): its tokenizer, which the student shares.
        prompts_from (`SyntheticExpert`): where the prompts come from (four colour words in the `rules` regime).
        samples_per_prompt (`int`, *optional*, defaults to `32`): the policy's samples per evaluation prompt for the
            reverse KL, and the teacher's for the forward KL (with 64 prompts, a standard error of about 0.06 nats
            where 8 gave 0.13).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompts_from: SyntheticExpert
    samples_per_prompt: int = 32
    empty_demonstrations: int = 0
    _teacher_samples: dict = field(default_factory=dict, repr=False)

    def demonstrations(self, count: int, seed: int = 0) -> Dataset:
        """
        Up to `count` (prompt, completion) demonstrations: distinct prompts, one teacher sample (temperature 1) each.
        Empty samples (the teacher ending at once) are left out, as the adversarial trainers refuse them; how many
        were is `empty_demonstrations`.
        """
        prompts, ids = sample(self.model, self.tokenizer, self.prompts_from.prompts(count, seed), 1, seed + 1)
        completions = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        rows = [(p, c) for p, c in zip(prompts, completions, strict=True) if c.strip()]
        self.empty_demonstrations = count - len(rows)
        return Dataset.from_dict({"prompt": [p for p, _ in rows], "completion": [c for _, c in rows]})

    def evaluation_prompts(self, count: int, seed: int, training_prompts: set[str]) -> list[str]:
        """`count` prompts unseen in training."""
        return self.prompts_from.prompts(count, seed, exclude=training_prompts)

    def _samples_for_forward_kl(self, prompts: list[str]) -> tuple[list[str], list[list[int]], list[float]]:
        """The teacher's samples of `prompts` and their log-probabilities, drawn once per prompt set."""
        key = tuple(prompts)
        if key not in self._teacher_samples:
            repeated, ids = sample(self.model, self.tokenizer, prompts, self.samples_per_prompt, seed=len(prompts))
            log_teacher = sequence_log_probs(self.model, self.tokenizer, repeated, ids)
            self._teacher_samples[key] = (repeated, ids, log_teacher)
        return self._teacher_samples[key]

    def divergences(self, model: PreTrainedModel, prompts: list[str], temperature: float = 1.0) -> dict[str, float]:
        """
        The policy's (sampling at `temperature`) reverse and forward KL from the teacher on `prompts`, with standard
        errors (`reverse_kl_se`, `forward_kl_se`), its sampled `mean_length` in words beside the teacher's
        (`expert_mean_length`, from the teacher's samples), and the share of its samples that follow the rules the
        teacher learned (`checker_score`, the verifiable reward's mean) beside the teacher's own
        (`expert_checker_score`).
        """
        repeated, ids = sample(
            model, self.tokenizer, prompts, self.samples_per_prompt, seed=0, temperature=temperature
        )
        log_policy = sequence_log_probs(model, self.tokenizer, repeated, ids, temperature)
        log_teacher = sequence_log_probs(self.model, self.tokenizer, repeated, ids)
        reverse_kl, reverse_kl_se = _mean_and_standard_error(
            [p - t for p, t in zip(log_policy, log_teacher, strict=True)]
        )
        teacher_prompts, teacher_ids, log_teacher_own = self._samples_for_forward_kl(prompts)
        log_policy_of_teacher = sequence_log_probs(model, self.tokenizer, teacher_prompts, teacher_ids, temperature)
        forward_kl, forward_kl_se = _mean_and_standard_error(
            [t - p for t, p in zip(log_teacher_own, log_policy_of_teacher, strict=True)]
        )
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        lengths = [len(text.split()) for text in texts]
        teacher_texts = self.tokenizer.batch_decode(teacher_ids, skip_special_tokens=True)
        checker = ExpertSupportChecker(self.prompts_from, self.tokenizer)
        return {
            "reverse_kl": reverse_kl,
            "reverse_kl_se": reverse_kl_se,
            "forward_kl": forward_kl,
            "forward_kl_se": forward_kl_se,
            "mean_length": statistics.fmean(lengths),
            "expert_mean_length": statistics.fmean(len(text.split()) for text in teacher_texts),
            "checker_score": statistics.fmean(checker(repeated, texts, ids)),
            "expert_checker_score": statistics.fmean(checker(teacher_prompts, teacher_texts, teacher_ids)),
        }


class TeacherReverseKLReward:
    """
    The exact GRPO reward for the distil regime's reverse KL: `r(y) = log teacher(y | x) - log pi(y | x)` on the
    generated token ids, so that `E_pi[grad log pi(y) r(y)]` is minus the gradient of `KL(pi || teacher)`. `log pi`
    comes from no-grad forwards of `policy` (set once the trainer exists), at temperature 1.
    """

    __name__ = "exact_reverse_kl"

    def __init__(self, teacher: TeacherExpert):
        self.teacher, self.policy = teacher, None

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        tokenizer = self.teacher.tokenizer
        log_teacher = sequence_log_probs(self.teacher.model, tokenizer, prompts, completion_ids)
        log_policy = sequence_log_probs(self.policy, tokenizer, prompts, completion_ids)
        return [t - p for t, p in zip(log_teacher, log_policy, strict=True)]


def train_teacher(directory: Path, base: Path, demonstrations: Dataset, steps: int, seed: int) -> Path:
    """
    Train the teacher by SFT on `demonstrations` (the rule expert's) from the (larger) base model in `base`, and save
    it to `directory`. A teacher saved there by a run with the same settings, from a base of the same architecture
    wherever that lies, is reused (CPU training is deterministic); one trained otherwise is trained again.
    """
    record = {"base": str(base), "num_demonstrations": len(demonstrations), "steps": steps, "seed": seed}
    if _is_trained_teacher(directory, base, record):
        return directory
    train_by_sft(directory, base, demonstrations, steps, learning_rate=1e-3, seed=seed)
    (directory / TEACHER_RECORD_FILE).write_text(json.dumps(record))
    return directory


def train_by_sft(
    directory: Path, base: Path, demonstrations: Dataset, steps: int, learning_rate: float, seed: int
) -> None:
    """SFT of the model in `base` for `steps` in batches of 16, saved to `directory`: the teacher's and the base's."""
    config = SFTConfig(
        str(directory),
        learning_rate=learning_rate,
        per_device_train_batch_size=16,
        max_steps=steps,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=max(steps // 10, 1),
        seed=seed,
    )
    trainer = SFTTrainer(model=str(base), args=config, train_dataset=demonstrations)
    trainer.train()
    trainer.save_model()


# What decides a teacher besides its base model's architecture (the base's path does not: work folders that share one
# teacher, as benchmarks/counterfactuals.py's jobs do, each build the same base in a folder of their own)
TEACHER_SETTINGS = ("num_demonstrations", "steps", "seed")
ARCHITECTURE = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")


def _is_trained_teacher(directory: Path, base: Path, record: dict) -> bool:
    """Whether `directory` holds a teacher trained with `record`'s settings from a base of `base`'s architecture."""
    record_path = directory / TEACHER_RECORD_FILE
    if not ((directory / "model.safetensors").is_file() and record_path.is_file()):
        return False
    saved = json.loads(record_path.read_text())
    if any(saved.get(key) != record[key] for key in TEACHER_SETTINGS):
        return False
    teacher_config, base_config = (json.loads((path / "config.json").read_text()) for path in (directory, Path(base)))
    return all(teacher_config.get(key) == base_config.get(key) for key in ARCHITECTURE)


def load_teacher(directory: Path, tokenizer: PreTrainedTokenizerBase, prompts_from: SyntheticExpert) -> TeacherExpert:
    """The teacher saved in `directory`, checked to share the student's tokenizer."""
    model = AutoModelForCausalLM.from_pretrained(directory)
    if model.config.vocab_size != len(tokenizer):
        raise ValueError(
            f"The teacher in {str(directory)!r} has a vocabulary of {model.config.vocab_size} tokens and the "
            f"student's tokenizer {len(tokenizer)}: they must share a tokenizer."
        )
    return TeacherExpert(model.eval(), tokenizer, prompts_from)
