"""
The learned reward put to use without RL: Best-of-N sampling (rejection sampling), scored by any GRPO reward function,
for example AIRL's reward model as a `LikelihoodReward`, or a `LikelihoodRatioReward` `log q - log p` between the
discriminator's `q_phi` (or an SFT checkpoint) and the sampling model.

The kept completions form a prompt-completion dataset that `SFTTrainer` takes as it is (the "optionally SFT on the
kept ones" step of rejection-sampling fine-tuning).
"""

import math
from collections.abc import Callable

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import is_conversational
from trl.trainer.utils import pad

from .log_probs import evaluating, generation_prompt_ids, micro_batches


def sampling_kwargs(tokenizer: PreTrainedTokenizerBase, temperature: float, max_new_tokens: int, n: int) -> dict:
    """`generate` arguments that sample from the model's own distribution at `temperature` (no top-k or top-p)."""
    return {
        "do_sample": True,
        "temperature": temperature,
        "top_k": 0,
        "top_p": 1.0,
        "max_new_tokens": max_new_tokens,
        "num_return_sequences": n,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def forked_random_state(device: torch.device):
    """
    `torch.random.fork_rng` for the CPU generator and, on an accelerator, `device`'s too: seeding inside leaves the
    caller's random state (a training run's, say) as it was on either.
    """
    on_cpu = device.type == "cpu"
    devices = [] if on_cpu else [device.index or 0]
    return torch.random.fork_rng(devices=devices, device_type="cuda" if on_cpu else device.type)


@torch.no_grad()
def sample_completion_ids(
    model, tokenizer, prompt_ids: list, n: int, temperature: float, max_new_tokens: int
) -> list[list[int]]:
    """`n` completions of each prompt, as token ids up to and including the end-of-sequence token, as in GRPO."""
    rows = [torch.tensor(ids, dtype=torch.long) for ids in prompt_ids]
    # Left-padded, as a decoder generates from the end of each row
    input_ids = pad(rows, padding_value=tokenizer.pad_token_id, padding_side="left").to(model.device)
    attention_mask = pad([torch.ones_like(row) for row in rows], padding_side="left").to(model.device)
    width = input_ids.shape[1]
    generated = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        **sampling_kwargs(tokenizer, temperature, max_new_tokens, n),
    )[:, width:]  # (len(prompt_ids) * n, T)
    completions = []
    for row in generated.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        completions.append(row)
    return completions


class SequenceClassifierReward:
    """
    A reward model (a sequence classifier with one label, as `RewardTrainer` trains) as a GRPO reward function,
    scoring as `GRPOTrainer` scores a model in its `reward_funcs`: the prompt and completion as one text (a
    conversation through the reward tokenizer's chat template), right-padded, without special tokens added, its logit
    the score.
    """

    __name__ = "reward_model"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        if getattr(model.config, "num_labels", None) != 1:
            raise ValueError(
                f"A reward model scores with one label; {type(model).__name__} has "
                f"{getattr(model.config, 'num_labels', None)} (load it with `AutoModelForSequenceClassification` "
                "and `num_labels=1`)."
            )
        if tokenizer.pad_token_id is None:
            raise ValueError(f"The reward model's tokenizer ({tokenizer.name_or_path!r}) has no padding token.")
        self.model, self.tokenizer = model.eval(), tokenizer

    @torch.no_grad()
    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        from trl.data_utils import apply_chat_template

        if is_conversational({"prompt": prompts[0]}):
            texts = [
                apply_chat_template({"messages": prompt + completion}, self.tokenizer)["text"]
                for prompt, completion in zip(prompts, completions, strict=True)
            ]
        else:
            texts = [prompt + completion for prompt, completion in zip(prompts, completions, strict=True)]
        inputs = self.tokenizer(
            text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
        ).to(self.model.device)
        return self.model(**inputs).logits[:, 0].tolist()


def as_reward_function(reward, tokenizer: PreTrainedTokenizerBase | None = None) -> Callable:
    """
    `reward` as a function of `(prompts=, completions=, completion_ids=)`: a callable as it is; a reward model, or
    the path or Hub id of one, as `GRPOTrainer` takes them (`SequenceClassifierReward`, with `tokenizer` or its own).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(reward, str):
        model = AutoModelForSequenceClassification.from_pretrained(reward, num_labels=1)
        return SequenceClassifierReward(model, tokenizer or AutoTokenizer.from_pretrained(reward))
    if isinstance(reward, PreTrainedModel):
        if tokenizer is None and not reward.name_or_path:
            raise ValueError("A reward model built in memory needs its tokenizer: pass `reward_tokenizer`.")
        return SequenceClassifierReward(reward, tokenizer or AutoTokenizer.from_pretrained(reward.name_or_path))
    if not callable(reward):
        raise TypeError(
            f"`reward` must be a reward function, a reward model or its path, as GRPO's `reward_funcs` take; got "
            f"{type(reward).__name__}."
        )
    return reward


def best_of_n(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    reward: Callable | PreTrainedModel | str,
    n: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    prompts_per_batch: int | None = None,
    seed: int | None = None,
    reward_tokenizer: PreTrainedTokenizerBase | None = None,
) -> Dataset:
    """
    Sample `n` completions of each prompt from `model` and keep the one `reward` scores highest.

    Args:
        model ([`~transformers.PreTrainedModel`]): the causal LM to sample from (a policy, an SFT checkpoint).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): its tokenizer; needs a padding token.
        prompts (`list`): texts, or conversations (lists of messages) rendered with the chat template.
        reward (`Callable`, [`~transformers.PreTrainedModel`] or `str`): what a `GRPOTrainer` takes as a reward: a
            function `reward(prompts=, completions=, completion_ids=)` returning one float per completion (a
            `LikelihoodReward`, AIRL's reward model; a `LikelihoodRatioReward`), or a reward model (a sequence
            classifier with one label, as `RewardTrainer` trains), or its path or Hub id, scored as GRPO scores it.
        n (`int`, *optional*, defaults to `4`): samples per prompt; `n=1` is plain sampling.
        temperature (`float`, *optional*, defaults to `1.0`): the sampling temperature (no top-k or top-p).
        max_new_tokens (`int`, *optional*, defaults to `64`): the longest completion.
        prompts_per_batch (`int`, *optional*): prompts sampled at a time (each gives `n` rows); default: all.
        seed (`int`, *optional*): seeds the sampling without touching the global random state.
        reward_tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*): a reward model's tokenizer; default:
            the one saved with it.

    Returns:
        [`~datasets.Dataset`] with `prompt`, `completion` (text, or a list with one assistant message for
        conversations, as GRPO hands completions to rewards), `score` (the kept completion's reward) and
        `completion_ids` (its generated token ids, up to and including the end-of-sequence token): a prompt-completion
        dataset that `SFTTrainer` trains on as it is.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be an integer of at least 1, got {n!r}.")
    if not temperature > 0:  # NaN fails it too
        raise ValueError(f"`temperature` must be positive, got {temperature!r}; `n=1` with a low one is near greedy.")
    if tokenizer.pad_token_id is None:
        raise ValueError(f"The tokenizer ({tokenizer.name_or_path!r}) has no padding token, which batches need.")
    if isinstance(prompts, str | dict):
        # A string would be sampled one character at a time, a message as its keys
        raise ValueError(f"`prompts` must be a list of prompts, got one {type(prompts).__name__}: wrap it in a list.")
    if not prompts:
        raise ValueError("`prompts` is empty: there is nothing to sample.")
    reward = as_reward_function(reward, reward_tokenizer)
    conversational = is_conversational({"prompt": prompts[0]})
    rows = {"prompt": [], "completion": [], "score": [], "completion_ids": []}
    with evaluating(model), forked_random_state(model.device):
        if seed is not None:
            torch.manual_seed(seed)
        for chunk in micro_batches(list(prompts), prompts_per_batch):
            completion_ids = sample_completion_ids(
                model, tokenizer, generation_prompt_ids(tokenizer, chunk), n, temperature, max_new_tokens
            )
            repeated = [prompt for prompt in chunk for _ in range(n)]
            texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
            completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
            scores = _checked_scores(
                reward(prompts=repeated, completions=completions, completion_ids=completion_ids), len(repeated)
            )
            for index, prompt in enumerate(chunk):
                group = range(index * n, (index + 1) * n)
                best = max(group, key=lambda row: scores[row])  # the first of equal scores
                rows["prompt"].append(prompt)
                rows["completion"].append(completions[best])
                rows["score"].append(float(scores[best]))
                rows["completion_ids"].append(completion_ids[best])
    return Dataset.from_dict(rows)


def _checked_scores(scores, expected: int) -> list[float]:
    """
    One finite score per completion, or an error saying which: a NaN is neither above nor below any score, so the
    best of a group holding one would depend on where it falls.
    """
    scores = [float("nan") if score is None else float(score) for score in scores]
    if len(scores) != expected:
        raise ValueError(f"`reward` returned {len(scores)} scores for {expected} completions: one each.")
    not_finite = [index for index, score in enumerate(scores) if not math.isfinite(score)]
    if not_finite:
        raise ValueError(
            f"`reward` scored {len(not_finite)} of {expected} completions as {scores[not_finite[0]]} (the first is "
            f"completion {not_finite[0]} of this batch): every score must be a finite number."
        )
    return scores
