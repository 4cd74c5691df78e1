import pytest
import torch
import toy_colors
from helpers import (
    COUNTING_PROMPT,
    adversarial_config,
    assert_imitates_like_the_oracle,
    colours_training_overrides,
    likelihood_ratio_config,
    one_grpo_step,
    train_and_check_both_models_learn,
)
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, LikelihoodReward


def _config(tmp_path, **overrides) -> AIRLConfig:
    return adversarial_config(AIRLConfig, tmp_path, **overrides)


class TestAIRLConfig:
    def test_defaults(self, tmp_path):
        config = AIRLConfig(output_dir=str(tmp_path), bf16=False)
        assert config.divergence == "reverse_kl"
        assert config.disc_type == "likelihood_ratio"
        assert config.log_prob_coef == 1.0  # the likelihood ratio's
        assert config.log_prob_reduction == "sum"
        assert isinstance(config, GAILConfig)

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"log_prob_reduction": "max"}, "log_prob_reduction"),
            ({"log_prob_coef": -1.0}, "log_prob_coef"),
            ({"log_prob_coef": float("nan"), "disc_type": "classifier"}, "log_prob_coef"),
            # AIRL's logit holds `-c log pi` whatever the discriminator: a classifier is no way out
            ({"disc_replay_buffer_size": 8}, "`disc_replay_buffer_size` is not supported by AIRL.* Set it to 0.$"),
            (
                {"disc_replay_buffer_size": 8, "disc_type": "classifier"},
                "`disc_replay_buffer_size` is not supported by AIRL.* Set it to 0.$",
            ),
        ],
    )
    def test_rejects_bad_values_naming_them(self, tmp_path, overrides, message):
        with pytest.raises(ValueError, match=message):
            AIRLConfig(output_dir=str(tmp_path), bf16=False, **overrides)


class TestAIRLTrainer:
    @pytest.mark.parametrize("dataset_name", ["prompt_completion_dataset", "conversational_dataset"])
    def test_trains_policy_and_reward_model(self, tmp_path, tiny_model_path, dataset_name, request):
        trainer = AIRLTrainer(
            model=tiny_model_path, args=_config(tmp_path), train_dataset=request.getfixturevalue(dataset_name)
        )
        train_and_check_both_models_learn(trainer, discriminator_label="reward model")
        assert {"disc/loss", "disc/acc_expert", "rewards/discriminator/mean"} <= set(trainer.state.log_history[0])

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_logit_offset_is_minus_beta_log_pi_of_the_response(self, tmp_path, tiny_model_path, reduction):
        from datasets import Dataset

        dataset = Dataset.from_list([{"prompt": "Count from 1 by 1, 3 numbers:", "completion": " 1 2 3"}] * 4)
        trainer = AIRLTrainer(
            model=tiny_model_path,
            args=_config(
                tmp_path,
                disc_type="classifier",
                log_prob_coef=0.5,
                log_prob_reduction=reduction,
                temperature=0.7,
            ),
            train_dataset=dataset,
        )
        tokenizer = trainer.processing_class
        offset = trainer.discriminator_reward.logit_offsets(["Count from 1 by 1, 3 numbers:"], [" 1 2 3"], None)

        prompt_ids = tokenizer("Count from 1 by 1, 3 numbers:")["input_ids"]
        response_ids = tokenizer(" 1 2 3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = trainer.model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0] / 0.7
        log_probs = logits.log_softmax(-1)[len(prompt_ids) - 1 : -1].gather(-1, torch.tensor(response_ids)[:, None])
        log_pi = log_probs.sum() if reduction == "sum" else log_probs.mean()
        torch.testing.assert_close(offset, -0.5 * log_pi.reshape(1), rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize(
        ("level", "reduction", "disc_type"),
        [
            ("sequence", "mean", "classifier"),
            ("sequence", "sum", "likelihood_ratio"),
            ("token", "sum", "likelihood_ratio"),
        ],
    )
    def test_micro_batched_log_pi_equals_the_whole_batch_s(
        self, tmp_path, tiny_model_path, level, reduction, disc_type
    ):
        from datasets import Dataset

        prompts = ["Count from 1 by 1, 3 numbers:", "Count from 4 by 2, 2 numbers:", "Count from 2 by 1, 4 numbers:"]
        responses = [" 1 2 3", " 4 6", " 2 3"]  # different lengths, so the micro-batches pad differently
        rows = [
            {"prompt": prompt, "completion": response} for prompt, response in zip(prompts, responses, strict=True)
        ]
        trainer = AIRLTrainer(
            model=tiny_model_path,
            args=_config(
                tmp_path,
                disc_level=level,
                log_prob_reduction=reduction,
                disc_type=disc_type,
            ),
            train_dataset=Dataset.from_list(rows * 2),
        )
        whole = trainer.discriminator_reward.logit_offsets(prompts, responses, None)
        if level == "sequence":
            assert whole.shape == (3,)
        else:
            samples = trainer.sample_encoder(prompts, responses)
            assert whole.shape == (sum(len(response_ids) for _, response_ids in samples),)
        trainer.args.disc_micro_batch_size = 2
        torch.testing.assert_close(trainer.discriminator_reward.logit_offsets(prompts, responses, None), whole)

    def test_reward_model_round_trips_and_serves_grpo(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        trainer = AIRLTrainer(
            model=tiny_model_path,
            args=_config(tmp_path / "airl", disc_type="classifier"),
            train_dataset=prompt_completion_dataset,
        )
        trainer.train()
        trainer.save_model()

        directory = tmp_path / "airl" / "reward_model"
        reward_model = AutoModelForSequenceClassification.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        texts = ["Count from 1 by 1, 3 numbers: 1 2 3", "Count from 4 by 2, 4 numbers: 4 6 8"]
        with torch.no_grad():
            scores = reward_model(**tokenizer(texts, padding=True, return_tensors="pt")).logits[:, 0]
        # Exactly f_theta as in training (the discriminator's logits less AIRL's offset)
        torch.testing.assert_close(scores, trainer.discriminator.logits(texts), rtol=0, atol=0)
        assert "f_theta" in (directory / "README.md").read_text()
        trainer.create_model_card()
        card = (tmp_path / "airl" / "README.md").read_text()
        assert "1710.11248" in card and "2403.12017" in card

        grpo = one_grpo_step(reward_model, tiny_model_path, tmp_path / "grpo", prompt_completion_dataset)
        assert "rewards/reward_model/mean" in grpo.state.log_history[0]


@pytest.mark.slow
@pytest.mark.parametrize("disc_type", ["classifier", "likelihood_ratio"])
@pytest.mark.parametrize("level", ["sequence", "token"])
def test_airl_discriminator_stays_unsaturated_and_the_policy_nears_the_expert(
    tmp_path, colours_sft_path, level, disc_type
):
    # Measured with the classifier (2 CPU cores, 2026-11-27), reverse KL every 10 of 120 steps from the SFT
    # checkpoint's 2.19, its defaults (beta 0.03, mean log-probability): sequence level 3.9, 2.62, 1.84, ..., 1.23,
    # 1.21, 1.20; token level 4.41, 3.96, 2.8, ..., 0.90, 0.96. With a summed log-probability the policy collapsed
    # onto invalid responses (6.91) from the first steps, the discriminator's accuracies pinned at 1 and 0. The
    # likelihood ratio (beta 1, summed, as it must be) does not saturate: it starts at l = 0. After 100 steps
    # (2026-11-29, seeds 0 / 1; the oracle 1.03 / 0.94): likelihood ratio 1.40 / 1.47 (sequence), 1.04 / 0.77
    # (token); classifier 1.09 / 0.72 (sequence), 0.56 / 1.18 (token).
    overrides = colours_training_overrides(max_steps=100, disc_type=disc_type)
    airl = AIRLTrainer(
        model=colours_sft_path,
        args=_config(tmp_path, disc_level=level, **overrides),
        train_dataset=toy_colors.demonstrations(64, seed=1),
    )
    airl.train()
    logs = [log for log in airl.state.log_history if "disc/acc_expert" in log]
    mean_acc_expert = sum(log["disc/acc_expert"] for log in logs) / len(logs)
    mean_acc_policy = sum(log["disc/acc_policy"] for log in logs) / len(logs)
    assert 0.1 < mean_acc_policy < 0.9, mean_acc_policy
    assert 0.1 < mean_acc_expert < 0.95, mean_acc_expert
    assert_imitates_like_the_oracle(airl, colours_sft_path, tmp_path / "oracle", seed=0)


class TestAIRLConfigLikelihoodRatio:
    def test_the_likelihood_ratio_needs_coefficient_one_and_the_sum(self, tmp_path):
        classifier = AIRLConfig(output_dir=str(tmp_path), bf16=False, disc_type="classifier")
        assert (classifier.log_prob_coef, classifier.log_prob_reduction) == (0.03, "mean")
        for overrides in ({"log_prob_coef": 0.5}, {"log_prob_reduction": "mean"}):
            with pytest.raises(ValueError, match="log_prob_coef=1"):
                AIRLConfig(output_dir=str(tmp_path), bf16=False, disc_type="likelihood_ratio", **overrides)


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_likelihood_ratio_airl_leaves_a_reward_model_that_serves_grpo(
    tmp_path, tiny_model_path, prompt_completion_dataset, level
):
    config = likelihood_ratio_config(AIRLConfig, tmp_path, disc_level=level)
    assert (config.log_prob_coef, config.log_prob_reduction) == (1.0, "sum")
    trainer = AIRLTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset)
    trainer.train()
    trainer.save_reward_model(tmp_path / "reward_model")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "reward_model")
    for (name, saved), (_, trained) in zip(
        loaded.named_parameters(), trainer.discriminator.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(saved, trained, msg=name)
    assert "AutoModelForCausalLM" in (tmp_path / "reward_model" / "README.md").read_text()

    # The reward is log q_phi(y | x), the discriminator's own output: at the token level, the sum of its token terms
    reward = LikelihoodReward.from_pretrained(tmp_path / "reward_model")
    tokenizer = reward.tokenizer
    completion_ids = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 9")["input_ids"]]
    rewards = reward([COUNTING_PROMPT, COUNTING_PROMPT], [" 1 2 3", " 9"], completion_ids)
    samples = [(tuple(tokenizer(COUNTING_PROMPT)["input_ids"]), tuple(ids)) for ids in completion_ids]
    logits = trainer.discriminator.logits(samples)
    if level == "token":
        assert logits.shape == (sum(len(ids) for ids in completion_ids),)
        logits = torch.stack([part.sum() for part in logits.split([len(ids) for ids in completion_ids])])
    torch.testing.assert_close(torch.tensor(rewards), logits)
    grpo = one_grpo_step(reward, tiny_model_path, tmp_path / "grpo", prompt_completion_dataset)
    assert "rewards/likelihood/mean" in grpo.state.log_history[0]
