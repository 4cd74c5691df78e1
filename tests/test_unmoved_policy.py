"""trl_irl/trainer/unmoved_policy.py: settings that would leave the policy where it started, refused or warned of."""

import pytest
from helpers import adversarial_config, length_reward

from trl_irl import GAILConfig, GAILTrainer


def _config(tmp_path, **overrides) -> GAILConfig:
    return adversarial_config(GAILConfig, tmp_path, **overrides)


@pytest.mark.parametrize(("warmup", "warned"), [(2, True), (1, False)])
def test_a_warm_up_covering_the_whole_run_is_warned_about(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog, warmup, warned
):
    # Two steps, each its own generation batch: a warm-up of two zeroes every reward of the run
    config = _config(tmp_path, max_steps=2, disc_warmup_generations=warmup)
    trainer = GAILTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset)
    with caplog.at_level("WARNING", logger="trl_irl.trainer.unmoved_policy"):
        trainer.train()
    assert ("covers all 2 generation batches of this run" in caplog.text) == warned
    rewards = [entry["rewards/discriminator/mean"] for entry in trainer.state.log_history[:-1]]
    assert (rewards == [0.0, 0.0]) == warned


def test_reward_weights_that_leave_the_policy_unmoved_are_refused_or_warned_about(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    def build(weights):
        args = adversarial_config(GAILConfig, tmp_path, reward_weights=weights)
        return GAILTrainer(
            model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset, reward_funcs=length_reward
        )

    with pytest.raises(ValueError, match=r"Every weight of `reward_weights` \(\[0.0, 0.0\]\) is 0"):
        build([0.0, 0.0])
    with caplog.at_level("WARNING", logger="trl_irl.trainer.unmoved_policy"):
        build([0.0, 1.0])
    assert "`reward_weights[0]`, the discriminator's, is 0" in caplog.text
