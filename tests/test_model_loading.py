"""trl_irl/trainer/model_loading.py: models as users give them, told apart before any loading fails obscurely."""

import json
from pathlib import Path

import pytest
from helpers import built_in_memory
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from trl_irl.trainer.model_loading import (
    check_tokenizer_given,
    is_adapter_checkpoint,
    is_built_in_memory,
    is_missing_local_path,
    policy_from_adapter_checkpoint,
)


NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@given(NAME, NAME)
def test_a_hub_id_is_never_taken_for_a_missing_path(namespace, name):
    # `namespace/name` and a bare `name` are what `from_pretrained` reads as Hub ids
    assert not is_missing_local_path(f"{namespace}/{name}")
    assert not is_missing_local_path(name)


@pytest.mark.parametrize("reference", ["./model", "../model", "runs/sft/model"])
def test_a_path_written_as_a_path_is_missing_until_it_exists(tmp_path, monkeypatch, reference):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert is_missing_local_path(reference)
    Path(reference).mkdir(parents=True)
    assert not is_missing_local_path(reference)


def test_an_absolute_path_is_missing_until_it_exists(tmp_path):
    assert is_missing_local_path(str(tmp_path / "model"))
    assert not is_missing_local_path(str(tmp_path))


def test_an_adapter_checkpoint_is_a_directory_with_an_adapter_config(tmp_path):
    assert not is_adapter_checkpoint(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    assert is_adapter_checkpoint(tmp_path) and is_adapter_checkpoint(str(tmp_path))


def test_a_checkpoint_of_another_kind_of_model_is_refused_as_the_policy(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(ValueError, match="holds a LlamaForSequenceClassification, not a causal language model"):
        policy_from_adapter_checkpoint(str(tmp_path), None)


def test_anything_but_an_adapter_directory_is_returned_as_it_is(tmp_path, tiny_model_path):
    assert policy_from_adapter_checkpoint("org/model", None) == "org/model"
    assert policy_from_adapter_checkpoint(tiny_model_path, None) == tiny_model_path  # a whole causal LM
    model = object()
    assert policy_from_adapter_checkpoint(model, None) is model


@pytest.mark.parametrize(
    ("argument", "role"), [("processing_class", "policy"), ("discriminator_processing_class", "discriminator")]
)
def test_a_model_built_in_memory_needs_its_tokenizer_named_by_argument(tiny_model_path, argument, role):
    model = built_in_memory(AutoModelForCausalLM, tiny_model_path)
    assert is_built_in_memory(model)
    with pytest.raises(ValueError, match=f"The {role} was built in memory .* pass it as `{argument}`"):
        check_tokenizer_given(model, None, argument)
    check_tokenizer_given(model, object(), argument)  # given: nothing to refuse
    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert not is_built_in_memory(loaded)
    check_tokenizer_given(loaded, None, argument)
