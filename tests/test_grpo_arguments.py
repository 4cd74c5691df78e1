"""GRPO's own arguments in the adversarial trainers: `reward_funcs` beside the discriminator, refusals by name."""

import pytest
from helpers import adversarial_config, length_reward
from trl import GRPOConfig

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer
from trl_irl.trainer.grpo_arguments import combined_reward_funcs, refuse_unsupported_arguments


@pytest.mark.parametrize(("config_class", "trainer_class"), [(GAILConfig, GAILTrainer), (AIRLConfig, AIRLTrainer)])
def test_a_rule_reward_is_added_to_the_discriminator_with_its_weight_and_logged_under_its_name(
    tmp_path, tiny_model_path, prompt_completion_dataset, config_class, trainer_class
):
    args = adversarial_config(config_class, tmp_path, max_steps=2, logging_steps=1, reward_weights=[0.5, 2.0])
    trainer = trainer_class(
        model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset, reward_funcs=length_reward
    )
    trainer.train()
    assert len(trainer.state.log_history) == 3  # two steps logged, then the run's summary
    for logged in trainer.state.log_history[:-1]:
        # The reward GRPO's advantages come from: the weighted sum, the discriminator's weight first
        expected = 0.5 * logged["rewards/discriminator/mean"] + 2.0 * logged["rewards/length_reward/mean"]
        assert logged["reward"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert logged["rewards/length_reward/mean"] > 0


def test_unsupported_grpo_arguments_are_refused_by_name(tmp_path, tiny_model_path, prompt_completion_dataset):
    with pytest.raises(ValueError, match="`rollout_func` is not supported.*text the policy did not write"):
        GAILTrainer(
            model=tiny_model_path,
            args=adversarial_config(GAILConfig, tmp_path),
            train_dataset=prompt_completion_dataset,
            rollout_func=lambda prompts, trainer: {},
        )
    with pytest.raises(ValueError, match="`environment_factory` is not supported"):
        refuse_unsupported_arguments(rollout_func=None, environment_factory=object)
    refuse_unsupported_arguments(rollout_func=None, environment_factory=None)


class TestCombinedRewardFuncs:
    def _args(self, tmp_path, **overrides):
        return GRPOConfig(output_dir=str(tmp_path), bf16=False, **overrides)

    def test_the_discriminator_comes_first_and_a_single_reward_becomes_a_list(self, tmp_path):
        discriminator = object()
        funcs, classes = combined_reward_funcs(discriminator, length_reward, None, self._args(tmp_path), "GAIL")
        assert funcs == [discriminator, length_reward] and classes is None
        assert combined_reward_funcs(discriminator, None, None, self._args(tmp_path), "GAIL") == (
            [discriminator],
            None,
        )

    def test_processing_classes_are_aligned_with_the_discriminator_left_out(self, tmp_path):
        tokenizer = object()
        funcs, classes = combined_reward_funcs(
            "disc", ["model-id", length_reward], [tokenizer, None], self._args(tmp_path), "GAIL"
        )
        assert funcs == ["disc", "model-id", length_reward] and classes == [None, tokenizer, None]
        with pytest.raises(ValueError, match="`reward_processing_classes` has 1 entries for the 2 of `reward_funcs`"):
            combined_reward_funcs("disc", ["model-id", length_reward], tokenizer, self._args(tmp_path), "GAIL")
        with pytest.raises(ValueError, match="`reward_processing_classes` is given without `reward_funcs`"):
            combined_reward_funcs("disc", None, tokenizer, self._args(tmp_path), "GAIL")

    def test_reward_weights_need_one_weight_per_reward_the_discriminators_first(self, tmp_path):
        args = self._args(tmp_path, reward_weights=[1.0])
        with pytest.raises(
            ValueError, match="`reward_weights` has 1 weights for 2 rewards: the discriminator's first"
        ):
            combined_reward_funcs("disc", length_reward, None, args, "GAIL")
        assert combined_reward_funcs("disc", None, None, args, "GAIL")[0] == ["disc"]

    def test_a_token_level_discriminator_takes_no_other_reward(self, tmp_path):
        args = GAILConfig(output_dir=str(tmp_path), bf16=False, disc_level="token")
        with pytest.raises(ValueError, match="`reward_funcs` cannot be combined with `disc_level='token'`"):
            combined_reward_funcs("disc", length_reward, None, args, "GAIL")


def test_a_causal_lm_among_the_rewards_is_refused_naming_its_place(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    # The policy itself, or any causal LM: GRPO would read its logits as a classifier's and fail at the first batch
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    with pytest.raises(ValueError, match=r"`reward_funcs\[1\]` is a LlamaForCausalLM.*LikelihoodReward"):
        GAILTrainer(
            model=policy,
            args=adversarial_config(GAILConfig, tmp_path),
            train_dataset=prompt_completion_dataset,
            reward_funcs=[length_reward, policy],
        )
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    funcs, _ = combined_reward_funcs(
        "disc", classifier, None, GAILConfig(output_dir=str(tmp_path), bf16=False), "GAIL"
    )
    assert funcs == ["disc", classifier]
