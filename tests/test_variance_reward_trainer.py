import math

import pytest
import torch
import torch.nn.functional as F
from helpers import fast_config, logged_warnings, one_grpo_step
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForSequenceClassification
from trl import RewardConfig, RewardTrainer

from trl_irl import VarianceRewardConfig, VarianceRewardTrainer, variance_bradley_terry_loss


def _config(tmp_path, config_class=VarianceRewardConfig, **overrides):
    return fast_config(config_class, tmp_path, **overrides)


class TestVarianceBradleyTerryLoss:
    def test_unit_scales_are_the_usual_loss(self):
        chosen, rejected = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5])
        expected = -F.logsigmoid(chosen - rejected).mean()
        zeros = torch.zeros(3)
        assert torch.equal(variance_bradley_terry_loss(chosen, rejected), expected)
        torch.testing.assert_close(variance_bradley_terry_loss(chosen, rejected, zeros, zeros), expected)

    def test_matches_hand_computation(self):
        # V+ = 2, V- = 1: sqrt((4 + 1) / 2) = sqrt(2.5); reward gap 1.5, margin 0.5
        loss = variance_bradley_terry_loss(
            torch.tensor([2.0]),
            torch.tensor([0.5]),
            torch.tensor([math.log(2.0)]),
            torch.tensor([0.0]),
            margin=torch.tensor([0.5]),
        )
        expected = -math.log(1 / (1 + math.exp(-(1.5 - 0.5) / math.sqrt(2.5))))
        assert loss.item() == pytest.approx(expected, rel=1e-6)

    def test_large_scales_make_a_comparison_a_coin_flip(self):
        loss = variance_bradley_terry_loss(
            torch.tensor([-5.0]), torch.tensor([5.0]), torch.tensor([60.0]), torch.tensor([60.0])
        )
        assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)
        tiny = variance_bradley_terry_loss(
            torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([-60.0]), torch.tensor([-60.0])
        )
        assert torch.isfinite(tiny) and tiny.item() == pytest.approx(0.0, abs=1e-6)


class TestVarianceRewardConfig:
    def test_defaults(self, tmp_path):
        config = VarianceRewardConfig(output_dir=str(tmp_path), bf16=False)
        assert config.learn_variance is True
        assert isinstance(config, RewardConfig)


class TestVarianceRewardTrainer:
    @pytest.mark.parametrize("with_margin", [False, True])
    def test_without_variance_reproduces_reward_trainer_exactly(
        self, tmp_path, tiny_model_path, preference_dataset, with_margin
    ):
        dataset = preference_dataset
        if with_margin:
            dataset = dataset.map(lambda row, index: {"margin": (index % 3) / 2}, with_indices=True)
        common = {
            "center_rewards_coefficient": 0.01,
            "gradient_accumulation_steps": 2,
            "per_device_train_batch_size": 4,
        }
        reward = RewardTrainer(
            model=tiny_model_path, args=_config(tmp_path / "reward", RewardConfig, **common), train_dataset=dataset
        )
        reward.train()
        variance = VarianceRewardTrainer(
            model=tiny_model_path,
            args=_config(tmp_path / "variance", learn_variance=False, **common),
            train_dataset=dataset,
        )
        variance.train()

        reward_losses = [log["loss"] for log in reward.state.log_history if "loss" in log]
        assert len(reward_losses) == 8
        assert [log["loss"] for log in variance.state.log_history if "loss" in log] == reward_losses
        for (name, a), b in zip(reward.model.named_parameters(), variance.model.parameters(), strict=True):
            assert torch.equal(a, b), name

    def test_learns_rewards_and_scales(self, tmp_path, tiny_model_path, preference_dataset):
        trainer = VarianceRewardTrainer(
            model=tiny_model_path, args=_config(tmp_path, max_steps=20), train_dataset=preference_dataset
        )
        assert trainer.model.config.num_labels == 2
        before = {name: param.clone() for name, param in trainer.model.named_parameters()}
        trainer.train()
        logs = [log for log in trainer.state.log_history if "loss" in log]
        assert sum(log["loss"] for log in logs[-3:]) < sum(log["loss"] for log in logs[:3])
        for name, param in trainer.model.named_parameters():
            assert not torch.equal(param, before[name]), f"{name} did not change"
        # Both rows of the head learned: the reward's and the log-scale's
        score = trainer.model.score.weight
        assert not torch.equal(score[1], before["score.weight"][1])
        assert {"mean_log_scale", "accuracy", "margin", "mean_reward"} <= set(logs[0])

    def test_saved_model_is_a_reward_model_for_grpo(self, tmp_path, tiny_model_path, preference_dataset):
        trainer = VarianceRewardTrainer(
            model=tiny_model_path, args=_config(tmp_path / "rm", max_steps=2), train_dataset=preference_dataset
        )
        trainer.train()
        trainer.save_model()
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
        assert reloaded.config.num_labels == 2
        for name, param in reloaded.named_parameters():
            torch.testing.assert_close(param, trainer.model.get_parameter(name))

        # A model object: given a path, GRPO would load it with one output (`num_labels=1`) and refuse the head
        prompts = preference_dataset.remove_columns(["chosen", "rejected"])
        grpo = one_grpo_step(reloaded, tiny_model_path, tmp_path / "grpo", prompts)
        assert "rewards/rm/mean" in grpo.state.log_history[0]
        assert grpo.reward_processing_classes[0] is not None

    def test_model_card(self, tmp_path, tiny_model_path, preference_dataset):
        trainer = VarianceRewardTrainer(
            model=tiny_model_path, args=_config(tmp_path), train_dataset=preference_dataset
        )
        trainer.create_model_card()
        card = (tmp_path / "README.md").read_text()
        assert "2403.12017" in card and "VarianceReward" in card

    @pytest.mark.parametrize(("learn_variance", "num_labels"), [(True, 1), (False, 2)])
    def test_rejects_a_model_with_the_wrong_number_of_outputs(
        self, tmp_path, tiny_model_path, preference_dataset, learn_variance, num_labels
    ):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=num_labels)
        with pytest.raises(ValueError, match="num_labels"):
            VarianceRewardTrainer(
                model=model, args=_config(tmp_path, learn_variance=learn_variance), train_dataset=preference_dataset
            )


def test_lora_trains_adapter_and_both_head_rows(tmp_path, tiny_model_path, preference_dataset):
    from peft import LoraConfig

    trainer = VarianceRewardTrainer(
        model=tiny_model_path,
        args=_config(tmp_path),
        train_dataset=preference_dataset,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"),
    )
    before = {name: param.clone() for name, param in trainer.model.named_parameters()}
    trainer.train()
    changed = {name for name, param in trainer.model.named_parameters() if not torch.equal(param, before[name])}
    assert any("lora_B" in name for name in changed)
    head = next(name for name in changed if "score" in name)
    assert not torch.equal(trainer.model.get_parameter(head)[1], before[head][1])
    assert all("lora_" in name or "score" in name for name in changed)


def test_a_dataset_without_preference_pairs_is_refused_by_name(tmp_path, tiny_model_path, prompt_completion_dataset):
    with pytest.raises(ValueError, match=r"columns \['prompt', 'completion'\].*`chosen` and `rejected`"):
        VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=prompt_completion_dataset)


def test_the_loss_with_learned_variance_is_the_scaled_bradley_terry_loss(
    tmp_path, tiny_model_path, preference_dataset
):
    # Computed here from the model's two outputs with the formula written out, not with the package's function
    trainer = VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=preference_dataset)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    loss = trainer.compute_loss(trainer.model, batch)
    # A copy without the trainer's hook, which keeps only the reward column of the outputs
    model = type(trainer.model)(trainer.model.config)
    model.load_state_dict(trainer.model.state_dict())
    with torch.no_grad():
        outputs = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rewards_chosen, rewards_rejected = outputs[:, 0].chunk(2)
    scales_chosen, scales_rejected = outputs[:, 1].exp().chunk(2)
    scale = ((scales_chosen**2 + scales_rejected**2) / 2).sqrt()
    expected = -F.logsigmoid((rewards_chosen - rewards_rejected) / scale).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(scale, torch.ones_like(scale))  # the scales took part


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"margin": float("nan")}, r"Row 2 of `train_dataset` has the margin nan: a margin must be a finite number"),
        ({"margin": float("inf")}, r"Row 2 of `train_dataset` has the margin inf"),
        ({"margin": None}, r"Row 2 of `train_dataset` has the margin None"),
        ({"chosen": None}, r"Row 2 of `train_dataset` has None \(a NoneType\) in `chosen`"),
        ({"rejected": None}, r"Row 2 of `train_dataset` has None \(a NoneType\) in `rejected`"),
    ],
)
def test_a_pair_no_loss_can_use_is_refused_naming_its_row(
    tmp_path, tiny_model_path, preference_dataset, change, message
):
    column, value = next(iter(change.items()))
    if column == "margin":
        preference_dataset = preference_dataset.add_column("margin", [1.0] * len(preference_dataset))
    rows = preference_dataset.to_list()
    rows[2][column] = value
    from datasets import Dataset

    with pytest.raises(ValueError, match=message):
        VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=Dataset.from_list(rows))


def test_pairs_with_the_same_two_sides_are_warned_about_and_refused_when_all_are(
    tmp_path, tiny_model_path, preference_dataset, caplog
):
    some_same = preference_dataset.map(
        lambda row, index: {"rejected": row["chosen"] if index == 7 else row["rejected"]}, with_indices=True
    )
    warnings = logged_warnings(caplog, "trl_irl.trainer.row_checks")
    VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=some_same)
    assert warnings == [
        "1 of 64 rows of `train_dataset` (row 7) have the same `chosen` and `rejected`: they teach nothing."
    ]

    all_same = preference_dataset.map(lambda row: {"rejected": row["chosen"]})
    with pytest.raises(ValueError, match="64 of 64 rows .* have the same `chosen` and `rejected`: there is nothing"):
        VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=all_same)


def test_pairs_longer_than_max_length_are_counted_and_refused_when_none_is_left(
    tmp_path, tiny_model_path, preference_dataset, caplog
):
    long_response = " 1" * 60
    some_long = preference_dataset.map(
        lambda row, index: {"chosen": long_response if index < 4 else row["chosen"]}, with_indices=True
    )
    warnings = logged_warnings(caplog, "trl_irl.trainer.row_checks")
    trainer = VarianceRewardTrainer(
        model=tiny_model_path, args=_config(tmp_path, max_length=32), train_dataset=some_long
    )
    assert len(trainer.train_dataset) == len(some_long) - 4
    assert warnings == [
        "4 of 64 rows of `train_dataset` have a side longer than `max_length=32` tokens and were dropped by "
        "`RewardTrainer`. Raise `max_length`, or shorten the responses."
    ]

    all_long = preference_dataset.map(lambda row: {"chosen": long_response})
    with pytest.raises(ValueError, match="dropped by `RewardTrainer`: no row is left"):
        VarianceRewardTrainer(model=tiny_model_path, args=_config(tmp_path, max_length=32), train_dataset=all_long)


def test_a_model_built_in_memory_is_refused_without_its_tokenizer(tmp_path, tiny_model_path, preference_dataset):
    from helpers import built_in_memory

    model = built_in_memory(AutoModelForSequenceClassification, tiny_model_path, num_labels=2)
    with pytest.raises(ValueError, match=r"built in memory \(its `name_or_path` is empty\).*`processing_class`"):
        VarianceRewardTrainer(model=model, args=_config(tmp_path), train_dataset=preference_dataset)


pairs = st.integers(1, 6).flatmap(
    lambda size: st.tuples(*[st.lists(st.floats(-5, 5), min_size=size, max_size=size) for _ in range(5)])
)


@given(pair=pairs, factor=st.floats(0.1, 10.0))
def test_the_variance_loss_keeps_its_closed_forms(pair, factor):
    chosen, rejected, scale_chosen, scale_rejected, margin = (torch.tensor(values) for values in pair)
    difference = chosen - rejected - margin
    # Unit scales: the Bradley-Terry loss; equal scales V: the Bradley-Terry loss of the difference over V
    zeros = torch.zeros_like(chosen)
    bradley_terry = -torch.nn.functional.logsigmoid(difference).mean()
    torch.testing.assert_close(variance_bradley_terry_loss(chosen, rejected, zeros, zeros, margin), bradley_terry)
    equal = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_chosen, margin)
    torch.testing.assert_close(equal, -torch.nn.functional.logsigmoid(difference / scale_chosen.exp()).mean())
    # Rewards, margins and scales multiplied together by any factor: the same loss
    loss = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_rejected, margin)
    log_factor = math.log(factor)
    scaled = variance_bradley_terry_loss(
        chosen * factor, rejected * factor, scale_chosen + log_factor, scale_rejected + log_factor, margin * factor
    )
    torch.testing.assert_close(scaled, loss, rtol=1e-4, atol=1e-5)
    # Swapping the two sides: -log sigmoid(d) + log sigmoid(-d) = -d, per pair, scaled by the pair's scale
    scale = ((2 * scale_chosen).exp() / 2 + (2 * scale_rejected).exp() / 2).sqrt()
    swapped = variance_bradley_terry_loss(rejected, chosen, scale_rejected, scale_chosen)
    unmargined = variance_bradley_terry_loss(chosen, rejected, scale_chosen, scale_rejected)
    torch.testing.assert_close(unmargined - swapped, -((chosen - rejected) / scale).mean(), rtol=1e-4, atol=1e-5)
