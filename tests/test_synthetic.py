import math
from collections import Counter

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl.benchmark.synthetic import (
    INVALID_MASS,
    SyntheticExpert,
    divergences,
    response_probabilities,
    sampled_mean_length,
    spearman,
    within_prompt_spearman,
)


class TestSyntheticExpert:
    @pytest.mark.parametrize("regime", ["memorise", "rules"])
    def test_distributions_sum_to_one(self, regime):
        expert = SyntheticExpert(regime)
        for prompt in expert.prompts(5, seed=0):
            assert sum(expert.distribution(prompt).values()) == pytest.approx(1.0)

    def test_rules_add_up_where_they_agree(self):
        # "red red red red": reversed, sorted and repeated are the same response
        assert SyntheticExpert("rules").distribution("red red red red:") == {" red red red red": pytest.approx(1.0)}
        assert SyntheticExpert("rules").distribution("red gold blue teal:") == {
            " teal blue gold red": 0.6,
            " blue gold red teal": 0.3,
            " red red red red": 0.1,
        }

    def test_demonstrations_follow_the_distribution(self):
        expert = SyntheticExpert("memorise", num_prompts=1)
        demonstrations = expert.demonstrations(3000, seed=0)
        counts = Counter(demonstrations["completion"])
        for response, probability in expert.distribution("Task 0:").items():
            assert counts[response] / 3000 == pytest.approx(probability, abs=0.03)

    def test_rules_evaluation_prompts_are_unseen(self):
        expert = SyntheticExpert("rules")
        training = set(expert.demonstrations(200, seed=0)["prompt"])
        evaluation = expert.evaluation_prompts(50, seed=1, training_prompts=training)
        assert len(set(evaluation)) == 50 and not set(evaluation) & training

    def test_mean_length_is_exact(self):
        # "red gold blue teal": three four-word responses; "red red red red": one
        assert SyntheticExpert("rules").mean_length(["red gold blue teal:"]) == pytest.approx(4.0)
        expert = SyntheticExpert("memorise", num_prompts=1)
        expected = sum(p * len(response.split()) for response, p in expert.distribution("Task 0:").items())
        assert expert.mean_length(["Task 0:"]) == pytest.approx(expected)

    def test_bad_input_is_named(self):
        with pytest.raises(ValueError, match="regime"):
            SyntheticExpert("imitate")
        with pytest.raises(ValueError, match="rules regime"):
            SyntheticExpert("rules").distribution("red blue:")


class TestDivergences:
    def test_match_brute_force(self):
        expert, policy = [0.6, 0.3, 0.1], [0.5, 0.2, 0.1]  # the policy puts 0.2 on invalid responses
        smoothed = {"a": 0.6 * (1 - INVALID_MASS), "b": 0.3 * (1 - INVALID_MASS), "c": 0.1 * (1 - INVALID_MASS)}
        smoothed["invalid"] = INVALID_MASS
        p = {"a": 0.6, "b": 0.3, "c": 0.1, "invalid": 0.0}
        q = {"a": 0.5, "b": 0.2, "c": 0.1, "invalid": 0.2}
        m = {k: (p[k] + q[k]) / 2 for k in p}
        expected = {
            "forward_kl": sum(p[k] * math.log(p[k] / q[k]) for k in p if p[k] > 0),
            "reverse_kl": sum(q[k] * math.log(q[k] / smoothed[k]) for k in q),
            "js": 0.5 * sum(p[k] * math.log(p[k] / m[k]) for k in p if p[k] > 0)
            + 0.5 * sum(q[k] * math.log(q[k] / m[k]) for k in q),
            "invalid": 0.2,
            "mode_coverage": 1.0,  # 0.5 >= 0.3, 0.2 >= 0.15, 0.1 >= 0.05
        }
        assert divergences(expert, policy) == pytest.approx(expected)

    def test_identical_distributions(self):
        metrics = divergences([0.6, 0.4], [0.6, 0.4])
        assert metrics["forward_kl"] == pytest.approx(0.0, abs=1e-12)
        assert metrics["js"] == pytest.approx(0.0, abs=1e-12)
        assert metrics["reverse_kl"] == pytest.approx(-math.log(1 - INVALID_MASS))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_response_probabilities_are_products_of_token_probabilities(tiny_model_path, temperature):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    prompt = "Count from 1 by 1, 3 numbers:"
    probabilities = response_probabilities(model, tokenizer, prompt, [" 1 2 3", " 2"], temperature=temperature)
    for response, probability in zip([" 1 2 3", " 2"], probabilities, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            log_probs = (model(input_ids=torch.tensor([ids])).logits[0] / temperature).log_softmax(-1)
        expected = math.exp(sum(log_probs[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids))))
        assert probability == pytest.approx(expected, rel=1e-4)


def test_exact_reverse_kl_reward_is_that_of_the_reported_divergence(tiny_model_path):
    from trl_irl.benchmark.comparison import ExactReverseKLReward

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    expert = SyntheticExpert("memorise", num_prompts=1)
    responses, probabilities = zip(*expert.distribution("Task 0:").items(), strict=True)
    reward = ExactReverseKLReward(expert, tokenizer)
    reward.policy = model
    ended = tokenizer(responses[0], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = ended[:-1]  # the same words, but the response did not end: invalid
    rewards = reward(["Task 0:"] * 3, [responses[0], responses[0], " gibberish"], [ended, truncated, [5, 6, 7]])

    policy = response_probabilities(model, tokenizer, "Task 0:", list(responses))
    assert rewards[0] == pytest.approx(math.log((1 - INVALID_MASS) * probabilities[0]) - math.log(policy[0]), rel=1e-4)
    # Every invalid response is the one outcome "invalid": the policy's probability of it is 1 - sum(valid)
    invalid_reward = math.log(INVALID_MASS) - math.log(1 - sum(policy))
    assert rewards[1] == pytest.approx(invalid_reward, rel=1e-4)
    assert rewards[2] == pytest.approx(invalid_reward, rel=1e-4)


def test_the_checker_passes_the_expert_s_responses_only_as_the_metrics_count_them(tiny_model_path):
    from trl_irl.benchmark.synthetic import ExpertSupportChecker

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    expert = SyntheticExpert("memorise", num_prompts=1)
    responses = list(expert.distribution("Task 0:"))
    checker = ExpertSupportChecker(expert, tokenizer)
    ended = [
        tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for response in responses
    ]
    # Each of the expert's responses, whatever its probability, passes; one that did not end, or any other, fails
    completions = [*responses, responses[0], " red"]
    ids = [*ended, ended[0][:-1], tokenizer(" red", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert checker(["Task 0:"] * len(completions), completions, ids) == [1.0, 1.0, 1.0, 0.0, 0.0]


class TestSampledMeanLength:
    def test_matches_the_exact_mean_of_one_token_responses(self, tiny_model_path):
        # With one new token the exact mean is a sum over the vocabulary: P(token) * words in the decoded token
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt = "Count from 1 by 1, 3 numbers:"
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1]
        probabilities = logits.float().softmax(-1)
        words = [
            len(tokenizer.decode([token], skip_special_tokens=True).split()) for token in range(len(probabilities))
        ]
        exact = sum(p * w for p, w in zip(probabilities.tolist(), words, strict=True))
        mean, ci95 = sampled_mean_length(model, tokenizer, [prompt] * 4, samples_per_prompt=500, max_new_tokens=1)
        assert 0 < ci95 < 0.1
        assert abs(mean - exact) < 2 * ci95  # a 4-sigma band: fails by chance about once in 15,000 runs

    def test_leaves_the_global_random_state_alone(self, tiny_model_path):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        first = sampled_mean_length(model, tokenizer, ["Count:"], samples_per_prompt=4, seed=1)
        assert torch.equal(torch.rand(3), expected)
        assert sampled_mean_length(model, tokenizer, ["Count:"], samples_per_prompt=4, seed=1) == first


class TestRewardFidelity:
    def test_spearman_by_hand(self):
        assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
        assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
        # Ranks (0, 1, 2, 3) against (0.5, 0.5, 3, 2), both of mean 1.5: covariance 1.5 + 0.5 + 0.75 + 0.75 = 3.5,
        # spreads sqrt(5) and sqrt(4.5)
        assert spearman([1, 2, 3, 4], [5, 5, 9, 7]) == pytest.approx(3.5 / (5**0.5 * 4.5**0.5))
        assert spearman([1, 1, 1], [1, 2, 3]) is None

    def test_within_prompt_averages_over_prompts_and_skips_constant_groups(self):
        prompts = ["a", "b", "a", "b", "c", "c", "a"]
        learned = [1.0, 2.0, 2.0, 1.0, 0.0, 0.0, 3.0]
        exact = [1.0, 5.0, 3.0, 6.0, 1.0, 2.0, 2.0]
        # a: ranks (0, 1, 2) against (0, 2, 1) -> 0.5; b: perfectly reversed -> -1; c: learned constant -> skipped
        assert within_prompt_spearman(prompts, learned, exact) == pytest.approx((0.5 - 1.0) / 2)
        assert within_prompt_spearman(["a", "b"], [1.0, 2.0], [3.0, 4.0]) is None
