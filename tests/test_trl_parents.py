"""trl_irl/trainer/trl_parents.py: each trainer's config from what its TRL parent takes, its guard, its datasets."""

import pytest
from datasets import Dataset
from trl import GRPOConfig, SFTConfig, SFTTrainer

from trl_irl import GAILConfig, WeightedSFTConfig
from trl_irl.trainer.trl_parents import check_dataset_columns, require_parent_methods, resolve_config, upgrade_config


class _Defaults:
    """A config class that records the output directory it is built with (a real one checks the machine's bf16)."""

    def __init__(self, output_dir):
        self.output_dir = output_dir


def test_no_config_is_the_defaults_in_a_folder_named_after_the_model_and_method():
    config = resolve_config(None, "org/tiny-model", _Defaults, "WeightedSFT")
    assert isinstance(config, _Defaults) and config.output_dir == "tiny-model-WeightedSFT"


def test_the_parent_s_config_is_upgraded_keeping_every_value_tokens_included(tmp_path):
    parent = SFTConfig(output_dir=str(tmp_path), learning_rate=3e-4, eos_token="<|end|>", bf16=False)
    config = resolve_config(parent, "unused", WeightedSFTConfig, "WeightedSFT")
    assert isinstance(config, WeightedSFTConfig)
    # `to_dict` would have masked the token as `<EOS_TOKEN>`
    assert (config.learning_rate, config.eos_token, config.output_dir) == (3e-4, "<|end|>", str(tmp_path))


def test_overrides_replace_values_the_parent_derived(tmp_path):
    parent = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, bf16=False)
    config = upgrade_config(parent, GAILConfig, generation_batch_size=None, steps_per_generation=2)
    assert config.steps_per_generation == 2 and config.generation_batch_size == 16


def test_another_trainer_s_config_is_refused_naming_both(tmp_path):
    with pytest.raises(TypeError, match="takes a `GAILConfig` .* but got a `SFTConfig`"):
        resolve_config(SFTConfig(output_dir=str(tmp_path), bf16=False), "unused", GAILConfig, "GAIL")


@pytest.mark.parametrize(
    ("trainer_name", "foreign_config"),
    [
        ("GAILTrainer", SFTConfig),
        ("AIRLTrainer", SFTConfig),
        ("WeightedSFTTrainer", GRPOConfig),
        ("VarianceRewardTrainer", SFTConfig),
    ],
)
def test_each_trainer_refuses_another_trainer_s_config_by_name(
    tmp_path, tiny_model_path, prompt_completion_dataset, trainer_name, foreign_config
):
    import trl_irl

    trainer_class = getattr(trl_irl, trainer_name)
    config_name = trainer_name.removesuffix("Trainer") + "Config"
    with pytest.raises(TypeError, match=f"takes a `{config_name}`.*got a `{foreign_config.__name__}`"):
        trainer_class(
            model=tiny_model_path,
            args=foreign_config(output_dir=str(tmp_path), bf16=False, report_to="none"),
            train_dataset=prompt_completion_dataset,
        )


def test_a_missing_parent_method_fails_at_import_naming_it():
    require_parent_methods(SFTTrainer, ("compute_loss",))
    with pytest.raises(ImportError, match="`SFTTrainer` has no `_renamed_in_a_later_release`"):
        require_parent_methods(SFTTrainer, ("compute_loss", "_renamed_in_a_later_release"))


PROMPT_COMPLETION = [("prompt", "completion"), ("messages",)]


def test_a_dataset_with_the_columns_of_one_format_passes():
    check_dataset_columns(Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}), "x", PROMPT_COMPLETION, "SFT")
    check_dataset_columns(Dataset.from_dict({"messages": [[]]}), "x", PROMPT_COMPLETION, "SFT")
    check_dataset_columns(None, "eval_dataset", PROMPT_COMPLETION, "SFT")


def test_a_dataset_without_them_is_refused_naming_its_columns_and_the_formats():
    wrong = Dataset.from_dict({"question": ["a"], "answer": ["b"]})
    expected = r"`train_dataset` has columns \['question', 'answer'\], but a SFT dataset needs `prompt` and "
    with pytest.raises(ValueError, match=expected + "`completion` or `messages`"):
        check_dataset_columns(wrong, "train_dataset", PROMPT_COMPLETION, "SFT")


def test_an_empty_dataset_and_a_dict_s_entries_are_named():
    with pytest.raises(ValueError, match="`train_dataset` is empty"):
        check_dataset_columns(
            Dataset.from_dict({"prompt": [], "completion": []}), "train_dataset", PROMPT_COMPLETION, "SFT"
        )
    good, bad = Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}), Dataset.from_dict({"text": ["a"]})
    with pytest.raises(ValueError, match=r"`eval_dataset\['held_out'\]` has columns"):
        check_dataset_columns({"valid": good, "held_out": bad}, "eval_dataset", PROMPT_COMPLETION, "SFT")
