"""`trl_irl/reranking.py`: Best-of-N sampling scored by a learned (or any GRPO) reward."""

import math

import pytest
import torch
import toy_colors
from helpers import fast_config
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from trl_irl import LikelihoodRatioReward, LikelihoodReward, best_of_n


PROMPTS = ["Count from 1 by 1, 3 numbers:", "Count from 2 by 2, 3 numbers:", "Count from 5 by 1, 3 numbers:"]


@pytest.fixture
def model_and_tokenizer(tiny_model_path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_path), AutoTokenizer.from_pretrained(tiny_model_path)


def test_it_keeps_the_completion_the_reward_scores_highest(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    calls = []

    def reward(prompts, completions, completion_ids, **kwargs):
        calls.append((prompts, completions, completion_ids))
        return [float(len(ids) + 0.01 * sum(ids) % 1) for ids in completion_ids]

    kept = best_of_n(model, tokenizer, PROMPTS, reward, n=5, max_new_tokens=8, seed=0)
    [(prompts, completions, completion_ids)] = calls
    assert prompts == [prompt for prompt in PROMPTS for _ in range(5)]
    scores = reward(prompts, completions, completion_ids)
    for index, row in enumerate(kept):
        group = range(5 * index, 5 * index + 5)
        assert row["prompt"] == PROMPTS[index]
        assert row["score"] == max(scores[i] for i in group)
        assert row["completion"] == completions[max(group, key=lambda i: scores[i])]
    # As GRPO hands them to rewards: up to and including the end-of-sequence token, or cut at the length limit
    assert all(ids[-1] == tokenizer.eos_token_id or len(ids) == 8 for ids in completion_ids)
    assert tokenizer.pad_token_id not in sum((ids[:-1] for ids in completion_ids), [])
    # The seed fixes the samples without touching the global random state
    assert (
        best_of_n(model, tokenizer, PROMPTS, reward, n=5, max_new_tokens=8, seed=0)["completion"] == kept["completion"]
    )


def test_best_of_sixteen_by_the_expert_s_likelihood_is_likelier_under_the_expert(colours_sft_path):
    model = AutoModelForCausalLM.from_pretrained(colours_sft_path)
    tokenizer = AutoTokenizer.from_pretrained(colours_sft_path)

    def expert_log_likelihood(prompts, completions, completion_ids, **kwargs):
        # The smoothed expert's: an expert colour, or anything else
        return [math.log(toy_colors.EXPERT.get(c, toy_colors.OTHER_MASS)) for c in completions]

    prompts = [toy_colors.PROMPT] * 48
    plain = best_of_n(model, tokenizer, prompts, expert_log_likelihood, n=1, max_new_tokens=6, seed=0)
    best = best_of_n(model, tokenizer, prompts, expert_log_likelihood, n=16, max_new_tokens=6, seed=0)
    plain_mean, best_mean = (sum(rows["score"]) / len(rows) for rows in (plain, best))
    # The SFT checkpoint (reverse KL 2.19) often says something else; 16 tries almost never miss every colour
    assert best_mean > plain_mean + 1.0
    assert sum(c in toy_colors.EXPERT for c in best["completion"]) > sum(
        c in toy_colors.EXPERT for c in plain["completion"]
    )


def test_the_kept_conversations_are_a_dataset_sft_trains_on(tmp_path, tiny_model_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
    kept = best_of_n(model, tokenizer, prompts, LikelihoodReward(model, tokenizer), n=3, max_new_tokens=6, seed=1)
    assert all(row["completion"][0]["role"] == "assistant" for row in kept)
    trainer = SFTTrainer(
        model=tiny_model_path,
        args=fast_config(SFTConfig, tmp_path, max_steps=1, per_device_train_batch_size=3),
        train_dataset=kept,
    )
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0


def test_likelihood_ratio_reward_is_the_difference_of_the_two_likelihoods(tiny_model_path):
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    sft = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    completions = [" 1 2 3", " 2 4 6"]
    completion_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions
    ]
    assert LikelihoodRatioReward(sft, policy, tokenizer)(PROMPTS[:2], completions, completion_ids) == pytest.approx(
        [0.0, 0.0], abs=1e-5
    )
    torch.manual_seed(0)
    with torch.no_grad():
        sft.lm_head.weight.add_(0.1 * torch.randn_like(sft.lm_head.weight))
    ratio = LikelihoodRatioReward(sft, policy, tokenizer)(PROMPTS[:2], completions, completion_ids)
    log_q = LikelihoodReward(sft, tokenizer)(PROMPTS[:2], completions, completion_ids)
    log_p = LikelihoodReward(policy, tokenizer)(PROMPTS[:2], completions, completion_ids)
    assert ratio == pytest.approx([q - p for q, p in zip(log_q, log_p, strict=True)])
    assert all(abs(value) > 1e-3 for value in ratio)


def test_a_reward_model_or_its_path_is_taken_as_grpo_takes_it(tmp_path, model_and_tokenizer, tiny_model_path):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = model_and_tokenizer
    torch.manual_seed(0)
    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    reward_model.save_pretrained(tmp_path / "reward")
    tokenizer.save_pretrained(tmp_path / "reward")

    def by_hand(prompts, completions, **kwargs):
        # One text at a time, unpadded: the logit GRPO reads from the right-padded batch
        scores = []
        for prompt, completion in zip(prompts, completions, strict=True):
            inputs = tokenizer(prompt + completion, add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                scores.append(reward_model(**inputs).logits[0, 0].item())
        return scores

    arguments = {"n": 3, "max_new_tokens": 6, "seed": 1}
    expected = best_of_n(model, tokenizer, PROMPTS, by_hand, **arguments)
    for reward in (str(tmp_path / "reward"), reward_model):
        kept = best_of_n(model, tokenizer, PROMPTS, reward, **arguments)
        assert kept["completion"] == expected["completion"]
        assert kept["score"] == pytest.approx(expected["score"], abs=1e-5)
    with pytest.raises(ValueError, match="scores with one label"):
        best_of_n(model, tokenizer, PROMPTS, AutoModelForSequenceClassification.from_pretrained(tiny_model_path))
    with pytest.raises(TypeError, match="`reward` must be a reward function, a reward model or its path"):
        best_of_n(model, tokenizer, PROMPTS, 3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n": 0}, "`n` must be an integer of at least 1"),
        ({"n": 2.5}, r"`n` must be an integer of at least 1, got 2.5"),
        ({"n": True}, r"`n` must be an integer of at least 1, got True"),
        ({"prompts": []}, "`prompts` is empty"),
        ({"prompts": "Count to three:"}, "`prompts` must be a list of prompts, got one str"),
        ({"temperature": 0.0}, "`temperature` must be positive, got 0.0"),
        ({"temperature": float("nan")}, "`temperature` must be positive, got nan"),
    ],
)
def test_bad_arguments_are_refused_by_name(model_and_tokenizer, arguments, message):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match=message):
        best_of_n(model, tokenizer, **{"prompts": PROMPTS, "reward": LikelihoodReward(model, tokenizer), **arguments})


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (lambda count: [float("nan")] * count, r"scored 4 of 4 completions as nan \(the first is completion 0"),
        (lambda count: [0.0] * (count - 1) + [float("inf")], r"scored 1 of 4 completions as inf"),
        (lambda count: [0.0] * (count - 1) + [None], r"scored 1 of 4 completions as nan"),
        (lambda count: [0.0], "`reward` returned 1 scores for 4 completions"),
    ],
)
def test_scores_that_cannot_rank_the_samples_are_refused(model_and_tokenizer, scores, message):
    # A NaN among the scores would be kept or passed over depending on where it falls: refused, naming the sample
    model, tokenizer = model_and_tokenizer

    def reward(prompts, completions, **kwargs):
        return scores(len(prompts))

    with pytest.raises(ValueError, match=message):
        best_of_n(model, tokenizer, PROMPTS[:1], reward, n=4, max_new_tokens=4, seed=0)


def test_likelihood_reward_scores_in_micro_batches_as_in_one(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    completions = [" 1 2 3", " 2 4 6 8 10", " 3", " 4 8"]
    completion_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions
    ]
    prompts = (PROMPTS * 2)[:4]
    whole = LikelihoodReward(model, tokenizer)(prompts, completions, completion_ids)
    seen = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: seen.append(kwargs["input_ids"].shape[0]) or forward(*args, **kwargs)
    # Three completions per forward, fewer than the batch: each padded only to its own chunk's longest
    in_chunks = LikelihoodReward(model, tokenizer, micro_batch_size=3)(prompts, completions, completion_ids)
    assert seen == [3, 1]
    assert in_chunks == pytest.approx(whole, abs=1e-5)
    with pytest.raises(ValueError, match="`micro_batch_size`"):
        LikelihoodReward(model, tokenizer, micro_batch_size=0)


def test_likelihood_reward_moves_its_model_to_the_scoring_device(tiny_model_path, monkeypatch):
    # The device of the calling process (the policy's, under a trainer) unless one is given; a device the model is not
    # on is simulated: `to` records the move and `model.device` stays the CPU
    import trl_irl.likelihood_rewards as likelihood_rewards

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    moves = []
    monkeypatch.setattr(type(model), "to", lambda self, device: moves.append(str(device)) or self)
    completion_ids = [tokenizer(" 1 2 3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    LikelihoodReward(model, tokenizer, device="cpu")(PROMPTS[:1], [" 1 2 3"], completion_ids)
    assert moves == []  # already there
    assert likelihood_rewards.process_device() == torch.device("cpu")  # this machine's, as no device is given
    monkeypatch.setattr(likelihood_rewards, "process_device", lambda: torch.device("cuda:1"))
    reward = LikelihoodReward(model, tokenizer)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cpu")))
    reward(PROMPTS[:1], [" 1 2 3"], completion_ids)  # the recorded move leaves it on the CPU, where it scores
    assert moves == ["cuda:1"] and reward.device == torch.device("cuda:1")
