"""trl_irl/discriminator/adapters.py: a discriminator as a second LoRA adapter on the policy's model."""

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from trl_irl.discriminator.adapters import active_adapter, adapter_parameters, check_shared_model


def _shared_model(path):
    """A LoRA policy (`default`) with a second adapter, `discriminator`, on the same base."""
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), lora)
    model.add_adapter("discriminator", lora)
    return model


def test_inside_the_block_the_discriminator_s_adapter_is_active_in_eval_mode_then_the_policy_s_again(
    tiny_model_path,
):
    model = _shared_model(tiny_model_path)
    model.train()
    with active_adapter(model, "discriminator"):
        assert model.active_adapter == "discriminator" and not model.training
        assert all(param.requires_grad for param in adapter_parameters(model, "discriminator"))
    assert model.active_adapter == "default" and model.training
    with active_adapter(model, None):  # no adapter named: nothing switched (TRL's `use_adapter` would disable all)
        assert model.active_adapter == "default" and model.training


def test_the_discriminator_s_parameters_are_its_adapter_s_only(tiny_model_path):
    model = _shared_model(tiny_model_path)
    names = {
        name
        for name, param in model.named_parameters()
        if any(param is p for p in adapter_parameters(model, "discriminator"))
    }
    assert names and all(".discriminator." in name and "lora_" in name for name in names)


def test_what_cannot_share_the_policy_s_model_is_refused_by_name(tiny_model_path):
    with pytest.raises(ValueError, match="`adapter_name='critic'`.*no adapter of that name"):
        check_shared_model(_shared_model(tiny_model_path), "critic", gradient_penalty=0.0)
    with pytest.raises(ValueError, match="no adapter of that name"):
        check_shared_model(AutoModelForCausalLM.from_pretrained(tiny_model_path), "discriminator", 0.0)
    with pytest.raises(ValueError, match="gradient penalty needs eager attention"):
        check_shared_model(_shared_model(tiny_model_path), "discriminator", gradient_penalty=1.0)
    check_shared_model(_shared_model(tiny_model_path), "discriminator", gradient_penalty=0.0)
