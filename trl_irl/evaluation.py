"""
Did a model beat SFT on *your* data? An evaluation on held-out demonstrations, without an exact expert.

For each model (SFT's end, a GAIL or AIRL policy, ...), on the same held-out prompts and with the same sampling seed:

- `heldout_nll`: the mean negative log-likelihood per token of the held-out demonstrations (lower is better; SFT's
  own objective, so it favours SFT);
- at each temperature of a grid, samples of every prompt, scored by
  - a judge, a causal LM sharing the tokenizer (say your larger SFT model): `judge_reverse_kl`, the mean of
    `log pi_T(y | x) - log judge(y | x)` over the samples, an estimate of `KL(pi_T || judge)` (the distil benchmark's
    reverse KL with the judge in the teacher's place; lower is better);
  - checkers, `reward_funcs`-style callables (an answer check, unit tests): their mean score;
  - length: the mean number of completion tokens, the share that ended (end-of-sequence token) within
    `max_new_tokens`, beside the demonstrations' own mean length (a length tell is the classic failure of
    adversarial imitation);
- `best_temperature`: per model, the temperature with the lowest `judge_reverse_kl` (so that SFT at its best
  temperature is one row, the baseline to beat);
- `two_sample` (with a `classifier` checkpoint): how well a fresh classifier, trained on half the prompts, tells the
  demonstrations from the samples at the best temperature on the other half (0.5: it cannot; the ideal);
- `compare`: one model against another, paired by prompt: the per-prompt difference of the judge's reverse KL (each
  at its best temperature) or of the held-out NLL, its mean with a 95% t-interval over prompts and an exact sign
  test.

What it cannot say: how far any of this tracks the exact divergences from your expert, which only a benchmark whose
expert is known measures (docs/benchmarks.md). Runs on each model's device, a micro-batch at a time.
"""

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data_utils import SampleEncoder
from .log_probs import generation_prompt_ids, micro_batches, summed_log_probs
from .reranking import forked_random_state, sample_completion_ids


TEMPERATURES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def _stats():
    """`scipy.stats`, for the intervals and tests (the `evaluation` extra)."""
    try:
        from scipy import stats
    except ImportError as error:
        raise ImportError(
            'The evaluation\'s intervals need scipy, the `evaluation` extra: pip install "trl-irl[evaluation]".'
        ) from error
    return stats


def completion_text(completion) -> str:
    """A completion's text: conversational datasets hold a list of messages, the last the assistant's."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


def heldout_nll_per_demonstration(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    completions: list,
    micro_batch_size: int | None = None,
) -> tuple[list[float], list[int]]:
    """
    Each demonstration's summed negative log-likelihood of its completion (ended by EOS), and its token count: the
    completion tokenised after its prompt, as the trainers' discriminator reads demonstrations (`SampleEncoder`), so
    that it is scored in the tokens a model trained on it generates.
    """
    prompt_ids = generation_prompt_ids(tokenizer, list(prompts))
    encoder = SampleEncoder(tokenizer, 0, lambda _: prompt_ids, takes_token_ids=True)
    completion_ids = encoder.response_ids(list(completions), truncate=False, prompt_ids=prompt_ids)
    sums, counts = summed_log_probs(model, tokenizer.pad_token_id, prompt_ids, completion_ids, 1.0, micro_batch_size)
    return [-value for value in sums], counts


def heldout_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    completions: list,
    micro_batch_size: int | None = None,
) -> float:
    """Mean negative log-likelihood per token of the demonstrations' completions (ended by EOS), as SFT counts it."""
    sums, counts = heldout_nll_per_demonstration(model, tokenizer, prompts, completions, micro_batch_size)
    return sum(sums) / sum(counts)


@dataclass
class TemperatureReading:
    """One model sampled at one temperature: per-prompt means (for pairing) and the overall figures."""

    temperature: float
    judge_reverse_kl_per_prompt: list[float] | None
    checker_scores: dict[str, float]
    mean_length: float
    ended_share: float
    # Each prompt's first sample as text (prompt included), for the two-sample test
    texts: list[str] = field(default_factory=list, repr=False)

    @property
    def judge_reverse_kl(self) -> float | None:
        values = self.judge_reverse_kl_per_prompt
        return None if values is None else statistics.fmean(values)


@dataclass
class ModelEvaluation:
    name: str
    heldout_nll: float
    # Each held-out demonstration's NLL per token (for pairing two models by demonstration)
    heldout_nll_per_demonstration: list[float] = field(default_factory=list, repr=False)
    readings: list[TemperatureReading] = field(default_factory=list)
    # With a classifier: how well a fresh one tells the demonstrations from the samples at the best temperature
    two_sample: dict | None = None

    @property
    def best(self) -> TemperatureReading:
        """The reading with the lowest judge reverse KL (the first temperature's without a judge)."""
        judged = [reading for reading in self.readings if reading.judge_reverse_kl is not None]
        return min(judged, key=lambda reading: reading.judge_reverse_kl) if judged else self.readings[0]


def _sample_reading(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    temperature: float,
    judge: PreTrainedModel | None,
    checkers: dict[str, Callable],
    settings: dict,
) -> TemperatureReading:
    n, max_new_tokens = settings["samples_per_prompt"], settings["max_new_tokens"]
    prompt_ids = generation_prompt_ids(tokenizer, list(prompts))
    with forked_random_state(model.device):
        torch.manual_seed(settings["seed"])  # the same draws for every model and temperature
        completion_ids = []
        for chunk in micro_batches(prompt_ids, settings["micro_batch_size"]):
            completion_ids += sample_completion_ids(model, tokenizer, chunk, n, temperature, max_new_tokens)
    repeated_prompts = [prompt for prompt in prompts for _ in range(n)]
    repeated_ids = [ids for ids in prompt_ids for _ in range(n)]
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    per_prompt = None
    if judge is not None:
        pad, size = tokenizer.pad_token_id, settings["micro_batch_size"]
        log_policy, _ = summed_log_probs(model, pad, repeated_ids, completion_ids, temperature, size)
        log_judge, _ = summed_log_probs(judge, pad, repeated_ids, completion_ids, 1.0, size)
        differences = [p - j for p, j in zip(log_policy, log_judge, strict=True)]
        per_prompt = [statistics.fmean(differences[i : i + n]) for i in range(0, len(differences), n)]
    scores = {
        name: statistics.fmean(checker(prompts=repeated_prompts, completions=texts, completion_ids=completion_ids))
        for name, checker in checkers.items()
    }
    ended = [bool(ids) and ids[-1] == tokenizer.eos_token_id for ids in completion_ids]
    return TemperatureReading(
        temperature=temperature,
        judge_reverse_kl_per_prompt=per_prompt,
        checker_scores=scores,
        mean_length=statistics.fmean(len(ids) for ids in completion_ids),
        ended_share=statistics.fmean(ended),
        texts=[_as_text(tokenizer, prompt) + texts[i * n] for i, prompt in enumerate(prompts)],
    )


def _as_text(tokenizer: PreTrainedTokenizerBase, prompt) -> str:
    """A prompt as the text a sample continues: itself, or a conversation through the chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def two_sample_test(
    demonstrations: list[str],
    samples: list[str],
    classifier: str,
    epochs: int = 8,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    seed: int = 0,
) -> dict:
    """
    The classifier two-sample test: a fresh sequence classifier from `classifier` (a path or Hub id) learns to tell
    `demonstrations` from `samples` (texts, one of each per prompt) on the first half of the prompts, and is scored
    on the other half. `accuracy` (balanced; 0.5 when it cannot tell, the ideal) with its 95% Clopper-Pearson
    interval over the held-out texts. Its epochs and learning rate were checked on a tiny model only (a learnable
    difference found with 192 training pairs); a classifier that cannot learn also scores 0.5.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .discriminator import Discriminator, classification_statistics

    stats = _stats()
    if len(demonstrations) != len(samples) or len(demonstrations) < 4:
        raise ValueError("The two-sample test needs one sample per demonstration, and at least 4 of each.")
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(classifier)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(classifier, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    discriminator = Discriminator(model, tokenizer, learning_rate=learning_rate, seed=seed)
    half = len(demonstrations) // 2
    for _ in range(epochs):
        for start in range(0, half, batch_size):
            end = min(start + batch_size, half)
            discriminator.update(demonstrations[start:end], samples[start:end])
    heldout = classification_statistics(
        discriminator.logits(demonstrations[half:]), discriminator.logits(samples[half:])
    )
    total = 2 * (len(demonstrations) - half)
    correct = round(heldout["acc"].item() * total)
    interval = stats.binomtest(correct, total).proportion_ci(confidence_level=0.95)
    return {"accuracy": heldout["acc"].item(), "interval": [interval.low, interval.high], "heldout_texts": total}


def evaluate(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    heldout,
    judge: PreTrainedModel | None = None,
    checkers: dict[str, Callable] | None = None,
    temperatures: tuple[float, ...] = TEMPERATURES,
    samples_per_prompt: int = 4,
    max_new_tokens: int = 128,
    micro_batch_size: int | None = None,
    seed: int = 0,
    classifier: str | None = None,
    show_progress: bool = True,
) -> dict[str, ModelEvaluation]:
    """
    Every model of `models` (name -> causal LM sharing `tokenizer`) on the held-out demonstrations `heldout` (a
    dataset or a list of rows with `prompt` and `completion`, standard or conversational), as the module docstring
    says; with `classifier` (a checkpoint for a fresh sequence classifier), the two-sample test of each model's
    samples at its best temperature against the demonstrations. Returns each model's evaluation, by name; `report`
    makes them a JSON-able dict, `compare` pairs two.
    """
    rows = list(heldout)
    if not rows or not {"prompt", "completion"} <= set(rows[0]):
        raise ValueError("`heldout` must hold demonstrations with `prompt` and `completion` columns.")
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no padding token, which batches of samples need; set one first.")
    prompts = [row["prompt"] for row in rows]
    completions = [row["completion"] for row in rows]
    settings = {
        "samples_per_prompt": samples_per_prompt,
        "max_new_tokens": max_new_tokens,
        "micro_batch_size": micro_batch_size,
        "seed": seed,
    }
    results = {}
    progress = tqdm(total=len(models) * len(temperatures), desc="evaluating", disable=not show_progress)
    for name, model in models.items():
        sums, counts = heldout_nll_per_demonstration(model, tokenizer, prompts, completions, micro_batch_size)
        per_token = [value / count for value, count in zip(sums, counts, strict=True)]
        evaluation = ModelEvaluation(name, sum(sums) / sum(counts), per_token)
        for temperature in temperatures:
            progress.set_postfix_str(f"{name} at {temperature}")
            reading = _sample_reading(model, tokenizer, prompts, temperature, judge, checkers or {}, settings)
            evaluation.readings.append(reading)
            progress.update()
        if classifier is not None:
            demonstrations = [
                _as_text(tokenizer, p) + completion_text(c) for p, c in zip(prompts, completions, strict=True)
            ]
            evaluation.two_sample = two_sample_test(demonstrations, evaluation.best.texts, classifier, seed=seed)
        results[name] = evaluation
    progress.close()
    return results


COMPARED_METRICS = ("judge_reverse_kl", "heldout_nll")


def compare(method: ModelEvaluation, reference: ModelEvaluation, metric: str = "judge_reverse_kl") -> dict:
    """
    `method` against `reference`, paired by prompt: per-prompt differences of `metric` (method minus reference; below
    0, the method is better), their mean with a 95% t-interval over prompts, the exact sign test, and a verdict only
    where the interval excludes 0. `judge_reverse_kl`: each model at its best temperature; `heldout_nll`: each held-out
    demonstration's NLL per token (no judge needed, no temperature involved).
    """
    stats = _stats()
    if metric not in COMPARED_METRICS:
        raise ValueError(f"`metric` must be one of {COMPARED_METRICS}, not {metric!r}.")
    if metric == "heldout_nll":
        ours, theirs = method.heldout_nll_per_demonstration, reference.heldout_nll_per_demonstration
    else:
        ours, theirs = method.best.judge_reverse_kl_per_prompt, reference.best.judge_reverse_kl_per_prompt
        if ours is None or theirs is None:
            raise ValueError("`compare` pairs the judge's reverse KL: evaluate with a `judge`.")
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    count = len(differences)
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if count > 1 else math.inf
    half_width = stats.t.ppf(0.975, count - 1) * spread / math.sqrt(count) if count > 1 else math.inf
    low, high = mean - half_width, mean + half_width
    better = sum(difference < 0 for difference in differences)
    decided = sum(difference != 0 for difference in differences)
    return {
        "method": method.name,
        "reference": reference.name,
        "metric": metric,
        "temperatures": None if metric == "heldout_nll" else [method.best.temperature, reference.best.temperature],
        "mean": mean,
        "interval": [float(low), float(high)],
        "better_in_prompts": better,
        "prompts": count,
        "sign_test_p": float(stats.binomtest(better, decided, 0.5).pvalue) if decided else 1.0,
        "verdict": "better" if high < 0 else "worse" if low > 0 else "within noise",
    }


def report(results: dict[str, ModelEvaluation]) -> dict:
    """The evaluations as a JSON-able dict: each model's held-out NLL, best temperature and every reading."""
    return {
        name: {
            "heldout_nll": evaluation.heldout_nll,
            "best_temperature": evaluation.best.temperature,
            "two_sample": evaluation.two_sample,
            "readings": [
                {
                    "temperature": reading.temperature,
                    "judge_reverse_kl": reading.judge_reverse_kl,
                    **{f"checker/{name}": score for name, score in reading.checker_scores.items()},
                    "mean_length": reading.mean_length,
                    "ended_share": reading.ended_share,
                }
                for reading in evaluation.readings
            ],
        }
        for name, evaluation in results.items()
    }
