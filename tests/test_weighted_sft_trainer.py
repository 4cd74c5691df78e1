import pytest
import torch
from helpers import fast_config, logged_warnings
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from trl_irl import WeightedSFTConfig, WeightedSFTTrainer, span_positions


def _config(tmp_path, config_class=WeightedSFTConfig, **overrides) -> WeightedSFTConfig:
    return fast_config(config_class, tmp_path, **overrides)


def _fixed_batch(trainer, size: int):
    """The first `size` training examples collated into one batch, as the trainer's forward receives them."""
    examples = [trainer.train_dataset[i] for i in range(size)]
    return trainer._prepare_inputs(trainer.data_collator(examples))


class TestWeightedSFTConfig:
    def test_defaults(self, tmp_path):
        config = WeightedSFTConfig(output_dir=str(tmp_path), bf16=False)
        assert config.token_weighting == "occupancy"
        assert config.occupancy_gamma == 1.0
        assert isinstance(config, SFTConfig)

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"token_weighting": "linear"}, "token_weighting"),
            ({"occupancy_gamma": 0.0}, "occupancy_gamma"),
            ({"occupancy_gamma": 1.5}, "occupancy_gamma"),
            ({"token_weighting": "uniform", "occupancy_gamma": 0.9}, "occupancy_gamma"),
            ({"loss_type": "dft"}, "loss_type"),
            ({"label_smoothing_factor": 0.1}, "label_smoothing_factor"),
            ({"label_smoothing_factor": 0.1, "token_weighting": "uniform"}, "label_smoothing_factor"),
            ({"packing": True, "packing_strategy": "wrapped"}, "packing_strategy"),
            ({"packing": True, "packing_strategy": "bfd_split"}, "packing_strategy"),
            ({"eval_packing": True, "packing_strategy": "wrapped"}, "packing_strategy"),
        ],
    )
    def test_rejects_unsupported_options_naming_them(self, tmp_path, overrides, message):
        with pytest.raises(ValueError, match=message):
            WeightedSFTConfig(output_dir=str(tmp_path), bf16=False, **overrides)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"token_weighting": "uniform", "loss_type": "dft"},
            {"token_weighting": "uniform", "packing": True, "packing_strategy": "wrapped"},
            {"packing": True, "packing_strategy": "bfd"},
            {"occupancy_gamma": 0.9},
        ],
    )
    def test_accepts_supported_combinations(self, tmp_path, overrides):
        config = WeightedSFTConfig(output_dir=str(tmp_path), bf16=False, **overrides)
        assert {name: getattr(config, name) for name in overrides} == overrides


class TestWeightedSFTTrainer:
    def test_uniform_reproduces_sft_trainer_exactly(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        # Gradient accumulation exercises the `num_items_in_batch` reduction too
        common = {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 4}
        sft = SFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path / "sft", SFTConfig, **common),
            train_dataset=prompt_completion_dataset,
        )
        sft.train()
        weighted = WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path / "weighted", token_weighting="uniform", **common),
            train_dataset=prompt_completion_dataset,
        )
        weighted.train()

        sft_losses = [log["loss"] for log in sft.state.log_history if "loss" in log]
        weighted_losses = [log["loss"] for log in weighted.state.log_history if "loss" in log]
        assert len(sft_losses) == 8
        assert weighted_losses == sft_losses
        for (name, sft_param), weighted_param in zip(
            sft.model.named_parameters(), weighted.model.parameters(), strict=True
        ):
            assert torch.equal(sft_param, weighted_param), name

    @pytest.mark.parametrize(
        ("gamma", "hand_weights"),
        [
            # Two completions of 3 and 2 trained tokens: weights 1, 2/3, 1/3 and 1, 1/2, over 5 trained tokens
            (1.0, [[0.0, 1.0, 2 / 3, 1 / 3], [0.0, 1.0, 1 / 2, 0.0]]),
            # Discounted: (g^t - g^n) / (1 - g^n) with g = 1/2: 1, 3/7, 1/7 and 1, 1/3
            (0.5, [[0.0, 1.0, 3 / 7, 1 / 7], [0.0, 1.0, 1 / 3, 0.0]]),
        ],
    )
    def test_occupancy_loss_matches_hand_computation(self, tmp_path, tiny_model_path, gamma, hand_weights):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        trainer = WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path, occupancy_gamma=gamma),
            train_dataset=_one_example_dataset(),
            processing_class=tokenizer,
        )
        input_ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 0]])
        labels = torch.tensor([[-100, -100, 7, 8, 9], [-100, -100, 12, 13, -100]])
        hand_weights = torch.tensor(hand_weights)  # aligned with labels[:, 1:]
        attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])

        loss = trainer.compute_loss(
            trainer.model, {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        )

        with torch.no_grad():
            logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        log_probs = logits.log_softmax(-1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
        expected = -(hand_weights * log_probs).sum() / 5
        torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("layout", ["padding_free", "packing"])
    def test_padding_free_and_packed_losses_equal_padded(
        self, tmp_path, tiny_model_path, prompt_completion_dataset, layout
    ):
        dataset = prompt_completion_dataset.select(range(16))
        padded = WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path / "padded"), train_dataset=dataset)
        overrides = (
            {"padding_free": True, "max_length": None}
            if layout == "padding_free"
            else {"packing": True, "max_length": 64}
        )
        other = WeightedSFTTrainer(
            model=tiny_model_path, args=_config(tmp_path / layout, **overrides), train_dataset=dataset
        )
        padded_loss = padded.compute_loss(padded.model, _fixed_batch(padded, 16))
        other_loss = other.compute_loss(other.model, _fixed_batch(other, len(other.train_dataset)))
        # Same model weights, same 16 completions: same weighted loss, however the batch is laid out
        torch.testing.assert_close(other_loss, padded_loss, rtol=1e-5, atol=1e-6)

    def test_conversational_assistant_turns_are_weighted_separately(
        self, tmp_path, tiny_model_path, conversational_dataset
    ):
        trainer = WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path, assistant_only_loss=True),
            train_dataset=conversational_dataset,
        )
        batch = _fixed_batch(trainer, 4)
        labels = batch["labels"][:, 1:]
        position, length = span_positions(labels)
        trained = labels != -100
        # Each conversation has two assistant turns: two spans per row, each starting at weight 1
        assert ((position == 0) & trained).sum(dim=1).tolist() == [2, 2, 2, 2]
        end_token_id = trainer.processing_class.eos_token_id
        # Every turn is trained up to and including its end-of-turn token, which closes its span
        closes_span = trained & (position == length - 1)
        assert (labels[closes_span] == end_token_id).all()

    @pytest.mark.parametrize(
        ("dataset_name", "overrides"),
        [
            ("language_modeling_dataset", {}),
            ("prompt_completion_dataset", {}),
            ("prompt_completion_dataset", {"packing": True, "max_length": 128}),
            ("prompt_completion_dataset", {"occupancy_gamma": 0.8}),
            ("conversational_dataset", {"assistant_only_loss": True}),
            ("conversational_prompt_completion_dataset", {}),
        ],
    )
    def test_trains(self, tmp_path, tiny_model_path, dataset_name, overrides, request):
        trainer = WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path, max_steps=12, **overrides),
            train_dataset=request.getfixturevalue(dataset_name),
        )
        before = {name: param.clone() for name, param in trainer.model.named_parameters()}
        trainer.train()

        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
        for name, param in trainer.model.named_parameters():
            assert not torch.equal(param, before[name]), f"{name} did not change"
        assert {"entropy", "mean_token_accuracy", "num_tokens"} <= set(trainer.state.log_history[0])

    def test_gradient_accumulation_matches_one_large_batch(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        # Plain SGD: the update is linear in the gradient, which Adam's first step (about the sign) is not
        def train(name, **overrides):
            trainer = WeightedSFTTrainer(
                model=tiny_model_path,
                args=_config(tmp_path / name, max_steps=1, optim="sgd", learning_rate=1.0, **overrides),
                train_dataset=prompt_completion_dataset.select(range(8)),
            )
            trainer.train()
            return dict(trainer.model.named_parameters())

        accumulated = train("accumulated", per_device_train_batch_size=2, gradient_accumulation_steps=4)
        large_batch = train("large", per_device_train_batch_size=8)
        for name, param in large_batch.items():
            torch.testing.assert_close(accumulated[name], param, rtol=1e-4, atol=1e-6)

    def test_peft_trains_only_the_adapter(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        trainer = WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path),
            train_dataset=prompt_completion_dataset,
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        )
        before = {name: param.clone() for name, param in trainer.model.named_parameters()}
        trainer.train()
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                assert not torch.equal(param, before[name]), f"{name} did not change"
            elif "lora_" not in name:
                assert torch.equal(param, before[name]), f"{name} changed"

    def test_accepts_an_sft_config_and_weights_by_occupancy(
        self, tmp_path, tiny_model_path, prompt_completion_dataset
    ):
        sft_config = _config(tmp_path, SFTConfig, eos_token="<|end|>", max_length=77)
        trainer = WeightedSFTTrainer(model=tiny_model_path, args=sft_config, train_dataset=prompt_completion_dataset)
        assert isinstance(trainer.args, WeightedSFTConfig)
        assert trainer.args.token_weighting == "occupancy"
        for name in ("learning_rate", "eos_token", "max_length", "bf16", "output_dir"):
            assert getattr(trainer.args, name) == getattr(sft_config, name), name

    def test_rejects_compute_loss_func(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        with pytest.raises(ValueError, match="compute_loss_func"):
            WeightedSFTTrainer(
                model=tiny_model_path,
                args=_config(tmp_path),
                train_dataset=prompt_completion_dataset,
                compute_loss_func=lambda outputs, labels, num_items_in_batch: outputs.loss,
            )

    def test_save_model_and_card(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        trainer = WeightedSFTTrainer(
            model=tiny_model_path, args=_config(tmp_path, max_steps=2), train_dataset=prompt_completion_dataset
        )
        trainer.train()
        trainer.save_model()
        trainer.create_model_card()

        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
        for name, param in reloaded.named_parameters():
            torch.testing.assert_close(param, trainer.model.get_parameter(name))
        card = (tmp_path / "README.md").read_text()
        assert "WeightedSFT" in card
        assert "2403.12017" in card
        assert "sun2024supervised" in card
        assert "weighted-sft" in card


class TestWeightingGuard:
    """A TRL change that would drop the weights must stop training, not train plain SFT silently."""

    @pytest.fixture
    def trainer(self, tmp_path, tiny_model_path, prompt_completion_dataset):
        return WeightedSFTTrainer(
            model=tiny_model_path, args=_config(tmp_path), train_dataset=prompt_completion_dataset
        )

    def test_loss_from_another_source_fails_loudly(self, trainer, monkeypatch):
        # As if TRL took the fused forward's own (unweighted) `loss` instead of reducing `log_probs`
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs, fused_lm_head=True)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        monkeypatch.setattr(SFTTrainer, "compute_loss", compute_loss)
        with pytest.raises(RuntimeError, match="silently dropped"):
            trainer.compute_loss(trainer.model, _fixed_batch(trainer, 4))

    def test_loss_without_the_fused_head_fails_loudly(self, trainer, monkeypatch):
        # As if TRL went back to full logits and `Trainer`'s own loss
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        monkeypatch.setattr(SFTTrainer, "compute_loss", compute_loss)
        with pytest.raises(RuntimeError, match="ran 0 forwards"):
            trainer.compute_loss(trainer.model, _fixed_batch(trainer, 4))

    def test_weights_stay_out_of_other_forwards(self, trainer):
        batch = _fixed_batch(trainer, 4)
        with torch.no_grad():
            outputs = trainer.model(**batch, fused_lm_head=True)
        # Outside `compute_loss` the fused forward is SFT's own: its loss is the mean of its log-probabilities
        torch.testing.assert_close(outputs.loss, -outputs.log_probs.sum() / outputs.label_mask.sum())
        assert trainer._weighted_forwards == []


def _one_example_dataset():
    from datasets import Dataset

    return Dataset.from_list([{"prompt": "Count from 1 by 1, 3 numbers:", "completion": " 1 2 3"}])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"question": "2 + 2?"}], r"`train_dataset` has columns \['question'\].*`text` or `prompt` and `completion`"),
        ([], "`train_dataset` is empty"),
    ],
)
def test_a_dataset_sft_cannot_read_is_refused_by_name(tmp_path, tiny_model_path, rows, message):
    from datasets import Dataset

    dataset = Dataset.from_list(rows) if rows else Dataset.from_dict({"prompt": [], "completion": []})
    with pytest.raises(ValueError, match=message):
        WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=dataset)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"prompt": ["2 + 2?", "3 + 3?"], "completion": [" 4", None]},
            r"Row 1 of `train_dataset` has None .*`completion`",
        ),
        ({"prompt": [None, "3 + 3?"], "completion": [" 4", " 6"]}, r"Row 0 of `train_dataset` has None .*`prompt`"),
        ({"text": [4, 6]}, r"Row 0 of `train_dataset` has 4 \(a int\) in `text`"),
    ],
)
def test_a_row_without_text_is_refused_naming_its_row_and_column(tmp_path, tiny_model_path, columns, message):
    from datasets import Dataset

    with pytest.raises(ValueError, match=message):
        WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=Dataset.from_dict(columns))


def test_a_row_without_text_in_the_eval_dataset_is_refused_by_the_eval_dataset_s_name(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    from datasets import Dataset

    eval_dataset = {"held_out": Dataset.from_dict({"prompt": ["2 + 2?"], "completion": [None]})}
    with pytest.raises(ValueError, match=r"Row 0 of `eval_dataset\['held_out'\]` has None"):
        WeightedSFTTrainer(
            model=tiny_model_path,
            args=_config(tmp_path),
            train_dataset=prompt_completion_dataset,
            eval_dataset=eval_dataset,
        )


def test_blank_completions_are_warned_about_by_row_and_refused_when_no_row_has_one(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    blank_rows = {3, 9}
    some_blank = prompt_completion_dataset.map(
        lambda row, index: {"completion": "  " if index in blank_rows else row["completion"]}, with_indices=True
    )
    warnings = logged_warnings(caplog, "trl_irl.trainer.row_checks")
    WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=some_blank)
    assert warnings == [
        f"2 of {len(some_blank)} rows of `train_dataset` (rows 3, 9) have a blank `completion`: they teach nothing."
    ]

    all_blank = prompt_completion_dataset.map(lambda row: {"completion": ""})
    with pytest.raises(
        ValueError, match=r"64 of 64 rows of `train_dataset` \(rows 0, 1, 2, 3, 4, \.\.\.\) have a blank"
    ):
        WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=all_blank)


def test_rows_whose_prompt_fills_max_length_are_counted_and_refused_when_none_is_left(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    long_prompt = "Count " * 40
    some_long = prompt_completion_dataset.map(
        lambda row, index: {"prompt": long_prompt if index < 5 else row["prompt"]}, with_indices=True
    )
    warnings = logged_warnings(caplog, "trl_irl.trainer.row_checks")
    trainer = WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path, max_length=24), train_dataset=some_long)
    assert len(trainer.train_dataset) == len(some_long) - 5
    assert len(warnings) == 1 and warnings[0].startswith("5 of 64 rows of `train_dataset` have no token to learn")
    assert "`max_length=24`" in warnings[0]

    all_long = prompt_completion_dataset.map(lambda row: {"prompt": long_prompt})
    with pytest.raises(
        ValueError, match="64 of 64 rows .*dropped by `SFTTrainer`: no row is left. Raise `max_length`"
    ):
        WeightedSFTTrainer(model=tiny_model_path, args=_config(tmp_path, max_length=24), train_dataset=all_long)


def test_a_model_built_in_memory_trains_with_its_tokenizer_and_is_refused_without_it(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    from helpers import built_in_memory

    with pytest.raises(ValueError, match=r"built in memory \(its `name_or_path` is empty\).*`processing_class`"):
        WeightedSFTTrainer(
            model=built_in_memory(AutoModelForCausalLM, tiny_model_path),
            args=_config(tmp_path),
            train_dataset=prompt_completion_dataset,
        )
    trainer = WeightedSFTTrainer(
        model=built_in_memory(AutoModelForCausalLM, tiny_model_path),
        args=_config(tmp_path),
        train_dataset=prompt_completion_dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0]


def test_a_training_step_descends_the_hand_computed_occupancy_weighted_loss(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    # One batch holding the whole dataset, plain SGD, no clipping: the step is `-lr` times the gradient of
    # `-sum_t w_t log pi(a_t | s_t) / (trained tokens)`, where the k-th of a completion's n trained tokens weighs
    # (n - k) / n
    dataset = prompt_completion_dataset.select(range(8))
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    learning_rate = 0.5
    trainer = WeightedSFTTrainer(
        model=policy,
        args=_config(tmp_path, max_steps=1, max_grad_norm=0.0, lr_scheduler_type="constant"),
        train_dataset=dataset,
        optimizers=(torch.optim.SGD(policy.parameters(), lr=learning_rate), None),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(dataset))])
    trained = batch["labels"][:, 1:] != -100
    weights = torch.zeros(trained.shape)
    for row in range(len(dataset)):
        positions = trained[row].nonzero().squeeze(-1)
        n = len(positions)
        assert n > 1 and torch.equal(positions, torch.arange(positions[0], positions[0] + n))  # one completion span
        weights[row, positions] = (n - torch.arange(n)) / n
    logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    log_probs = logits.log_softmax(-1).gather(-1, batch["labels"][:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    hand_loss = -(weights * log_probs).sum() / trained.sum()
    hand_loss.backward()

    trainer.train()

    assert trainer.state.log_history[0]["loss"] == pytest.approx(hand_loss.item(), rel=1e-5)
    for (name, after), before in zip(policy.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(after.detach(), before.detach() - learning_rate * before.grad, msg=name)
