"""`trl_irl.memory.estimate_memory`: its parts against what the models built for real hold, and each setting's effect.

Whether the sum matches a run's measured peak is `benchmarks/memory_estimate_check.py`'s (a measurement, not a test).
"""

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from trl_irl import GAILConfig, estimate_memory
from trl_irl.memory import discriminator_choice


def config(tmp_path, **changes) -> GAILConfig:
    settings = {
        "output_dir": str(tmp_path),
        "report_to": "none",
        "bf16": False,
        "use_cpu": True,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 16,
    }
    return GAILConfig(**settings | changes)


def lora() -> LoraConfig:
    return LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")


def num_parameters(path) -> int:
    return sum(param.numel() for param in AutoModelForCausalLM.from_pretrained(path).parameters())


def test_weights_and_optimizer_states_are_those_of_the_models_built_for_real(tiny_model_path, tmp_path):
    parameters = num_parameters(tiny_model_path)
    estimate = estimate_memory(tiny_model_path, config(tmp_path), max_prompt_length=8)
    # float32 as TRL loads a policy by default; AdamW's two moments; the discriminator a trained float32 copy
    assert estimate.persistent["policy weights"] == 4 * parameters
    assert estimate.persistent["policy optimizer (AdamW)"] == 8 * parameters
    assert estimate.persistent["discriminator weights"] == 4 * parameters
    assert estimate.persistent["discriminator optimizer (AdamW)"] == 8 * parameters
    assert "reference model weights" not in estimate.persistent  # GRPO's default beta is 0
    assert estimate.peak_bytes == sum(estimate.persistent.values()) + sum(estimate.transient.values())


def test_a_lora_adapter_counts_what_peft_trains(tiny_model_path, tmp_path):
    adapter, _ = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), lora()
    ).get_nb_trainable_parameters()
    parameters = num_parameters(tiny_model_path)
    estimate = estimate_memory(tiny_model_path, config(tmp_path), peft_config=lora(), max_prompt_length=8)
    assert estimate.persistent["policy weights"] == 4 * parameters + 4 * adapter
    assert estimate.persistent["policy optimizer (AdamW)"] == 8 * adapter


def test_the_reference_model_is_counted_only_with_beta_and_without_an_adapter(tiny_model_path, tmp_path):
    parameters = num_parameters(tiny_model_path)
    with_beta = estimate_memory(tiny_model_path, config(tmp_path, beta=0.1), max_prompt_length=8)
    assert with_beta.persistent["reference model weights"] == 4 * parameters
    adapter_policy = estimate_memory(
        tiny_model_path, config(tmp_path, beta=0.1), peft_config=lora(), max_prompt_length=8
    )
    assert "reference model weights" not in adapter_policy.persistent  # the adapter switched off is the reference


def test_bf16_weights_halve_the_policy_and_keep_the_discriminator_in_float32(tiny_model_path, tmp_path):
    parameters = num_parameters(tiny_model_path)
    args = config(tmp_path, model_init_kwargs={"dtype": "bfloat16"})
    estimate = estimate_memory(tiny_model_path, args, max_prompt_length=8)
    assert estimate.persistent["policy weights"] == 2 * parameters
    assert estimate.persistent["policy optimizer (AdamW)"] == 4 * parameters  # two moments in the weights' dtype
    assert estimate.persistent["discriminator weights"] == 4 * parameters


def test_each_discriminator_choice_changes_what_it_should(tiny_model_path, tmp_path):
    parameters = num_parameters(tiny_model_path)
    adapter, _ = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), lora()
    ).get_nb_trainable_parameters()
    estimates = {}
    for choice in ("trained", "lora", "frozen", "shared_base"):
        args, peft_config, disc_peft_config = discriminator_choice(choice, config(tmp_path), lora_r=4)
        estimates[choice] = estimate_memory(tiny_model_path, args, None, peft_config, disc_peft_config, 8)
    assert estimates["trained"].persistent["discriminator weights"] == 4 * parameters
    assert estimates["trained"].persistent["discriminator optimizer (AdamW)"] == 8 * parameters
    assert estimates["lora"].persistent["discriminator weights"] == 4 * parameters + 4 * adapter
    assert estimates["lora"].persistent["discriminator optimizer (AdamW)"] == 8 * adapter
    # Frozen: float32 weights (the trainer upcasts them all the same), no optimizer, no update
    assert estimates["frozen"].persistent["discriminator weights"] == 4 * parameters
    assert "discriminator optimizer (AdamW)" not in estimates["frozen"].persistent
    assert estimates["frozen"].peak_phase != "discriminator update"
    # Shared base: a copy of the policy's adapter and nothing else
    assert estimates["shared_base"].persistent["discriminator weights"] == 4 * adapter
    sizes = [estimates[choice].peak_bytes for choice in ("trained", "lora", "shared_base")]
    assert sizes == sorted(sizes, reverse=True)


def test_a_shared_base_is_refused_where_the_trainers_refuse_it(tiny_model_path, tmp_path):
    shared = config(tmp_path, disc_shares_policy_base=True)
    with pytest.raises(ValueError, match="pass `peft_config`"):
        estimate_memory(tiny_model_path, shared)  # no LoRA policy to share
    with pytest.raises(ValueError, match="leave `discriminator` and `discriminator_peft_config` unset"):
        estimate_memory(tiny_model_path, shared, peft_config=lora(), discriminator_peft_config=lora())


def test_activations_grow_with_the_sequences_and_shrink_with_checkpointing(tiny_model_path, tmp_path):
    def activations(**changes):
        estimate = estimate_memory(tiny_model_path, config(tmp_path, **changes), max_prompt_length=8)
        phases = {**estimate.transient}
        return phases.get("policy activations") or phases.get("discriminator activations")

    assert activations(max_completion_length=64) > activations(max_completion_length=16)
    # GRPOConfig checkpoints by default
    frozen = {"disc_updates_per_generation": 0}
    full = estimate_memory(
        tiny_model_path, config(tmp_path, gradient_checkpointing=False, **frozen), max_prompt_length=8
    )
    checkpointed = estimate_memory(
        tiny_model_path, config(tmp_path, gradient_checkpointing=True, **frozen), max_prompt_length=8
    )
    assert full.peak_phase == checkpointed.peak_phase == "policy update"
    assert checkpointed.transient["policy activations"] < full.transient["policy activations"]


def test_a_larger_discriminator_is_counted_at_its_own_size(tiny_model_path, tmp_path):
    from transformers import AutoTokenizer

    from trl_irl.benchmark.tiny_models import save_tiny_model

    larger = save_tiny_model(tmp_path / "larger", AutoTokenizer.from_pretrained(tiny_model_path), hidden_size=64)
    estimate = estimate_memory(tiny_model_path, config(tmp_path), str(larger), max_prompt_length=8)
    assert estimate.persistent["discriminator weights"] == 4 * num_parameters(larger)
    # Its update's activations are its own shape's: a policy-shaped count would be smaller
    policy_shaped = estimate_memory(tiny_model_path, config(tmp_path), max_prompt_length=8)
    assert estimate.peak_phase == policy_shaped.peak_phase == "discriminator update"
    assert estimate.transient["discriminator activations"] > policy_shaped.transient["discriminator activations"]
    assert num_parameters(larger) > num_parameters(tiny_model_path)


def test_the_estimate_prints_each_part_and_the_peak(tiny_model_path, tmp_path):
    text = str(estimate_memory(tiny_model_path, config(tmp_path), max_prompt_length=8))
    assert "policy weights" in text and "GiB per process" in text


def test_auto_dtype_is_the_checkpoint_s(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    checkpoint = AutoConfig.from_pretrained(tiny_model_path)
    checkpoint.dtype = "bfloat16"  # as a Hub checkpoint saved in bf16 says
    estimate = estimate_memory(checkpoint, config(tmp_path, model_init_kwargs={"dtype": "auto"}), max_prompt_length=8)
    assert estimate.persistent["policy weights"] == 2 * num_parameters(tiny_model_path)


def test_the_transient_peaks_are_their_closed_forms(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    shape = AutoConfig.from_pretrained(tiny_model_path)
    hidden, layers, vocab = shape.hidden_size, shape.num_hidden_layers, shape.vocab_size
    kv = shape.num_key_value_heads * hidden // shape.num_attention_heads
    batch, prompt, completion = 4, 8, 16
    length = prompt + completion
    per_token_and_layer = 14 * hidden + 4 * shape.intermediate_size  # values a backward keeps, float32 here
    parameters = num_parameters(tiny_model_path)

    def estimate(**changes):
        settings = {"gradient_checkpointing": False, "max_completion_length": completion} | changes
        return estimate_memory(tiny_model_path, config(tmp_path, **settings), max_prompt_length=prompt)

    # Frozen: no discriminator update, so the policy's update is the peak: its activations and completions' logits
    frozen = estimate(disc_updates_per_generation=0)
    policy_activations = 4 * batch * length * per_token_and_layer * layers + 3 * batch * completion * vocab * 4
    assert frozen.peak_phase == "policy update"
    assert frozen.transient == {"policy gradients": 4 * parameters, "policy activations": policy_activations}
    # Trained: the discriminator's update on a micro-batch of whole sequences, logits at every position, is the peak
    whole = estimate()
    assert whole.peak_phase == "discriminator update"
    assert whole.transient == {
        "discriminator gradients": 4 * parameters,
        "discriminator activations": 4 * batch * length * per_token_and_layer * layers
        + 3 * batch * length * vocab * 4,
    }
    # With a micro-batch of 2, whichever phase is largest
    trained = estimate(disc_micro_batch_size=2)
    phases = {
        "policy update": policy_activations + 4 * parameters,
        "discriminator update": 4 * 2 * length * per_token_and_layer * layers
        + 3 * 2 * length * vocab * 4
        + 4 * parameters,
        "generation": 2 * batch * length * layers * kv * 4 + 2 * batch * vocab * 4,
    }
    assert trained.peak_phase == max(phases, key=phases.get)
    assert sum(trained.transient.values()) == phases[trained.peak_phase]
    # Checkpointing keeps one hidden state per token and layer, and one layer's activations
    checkpointed = estimate(gradient_checkpointing=True, disc_updates_per_generation=0)
    kept = 4 * batch * length * (hidden * layers + per_token_and_layer) + 3 * batch * completion * vocab * 4
    assert checkpointed.transient["policy activations"] == kept
    record = trained.as_dict()
    assert record["peak_bytes"] == trained.peak_bytes and record["peak_phase"] == trained.peak_phase
    assert record["persistent_bytes"] == trained.persistent and record["transient_bytes"] == trained.transient
    assert f"{trained.peak_bytes / 2**30:8.2f} GiB per process" in str(trained)
    for part, size in {**trained.persistent, **trained.transient}.items():
        assert any(
            line.startswith(part) and line.endswith(f"{size / 2**30:8.2f} GiB") for line in str(trained).split("\n")
        )
    assert f"during the {trained.peak_phase}, at most:" in str(trained)


def test_generation_s_cache_is_its_closed_form_where_it_is_the_peak(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    shape = AutoConfig.from_pretrained(tiny_model_path)
    kv = shape.num_key_value_heads * shape.hidden_size // shape.num_attention_heads
    # Many generation batches per update, a frozen discriminator, short prompts: the cache of 4 x 32 sequences peaks
    args = config(
        tmp_path,
        per_device_train_batch_size=4,
        steps_per_generation=32,
        gradient_checkpointing=True,
        disc_updates_per_generation=0,
        max_completion_length=64,
    )
    estimate = estimate_memory(tiny_model_path, args, max_prompt_length=192)
    sequences, length = 4 * 32, 192 + 64
    expected = 2 * sequences * length * shape.num_hidden_layers * kv * 4 + 2 * sequences * shape.vocab_size * 4
    assert estimate.peak_phase == "generation" and estimate.transient == {"key-value cache": expected}


def test_bf16_mixed_precision_halves_the_activations_of_float32_weights(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    logits = 3 * 4 * 16 * AutoConfig.from_pretrained(tiny_model_path).vocab_size * 4  # float32 either way

    def activations(**changes):
        args = config(tmp_path, gradient_checkpointing=False, disc_updates_per_generation=0, **changes)
        return estimate_memory(tiny_model_path, args, max_prompt_length=8).transient["policy activations"] - logits

    assert activations(bf16=True) * 2 == activations(bf16=False)
    assert activations(bf16=False, model_init_kwargs={"dtype": "bfloat16"}) == activations(bf16=True)


def test_a_lora_discriminator_keeps_its_checkpoint_s_dtype_and_one_update_is_an_update(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    larger = AutoConfig.from_pretrained(tiny_model_path)
    larger.dtype = "bfloat16"  # a given discriminator checkpoint saved in bf16
    args = config(tmp_path, disc_updates_per_generation=1)
    estimate = estimate_memory(tiny_model_path, args, larger, discriminator_peft_config=lora(), max_prompt_length=8)
    adapter, _ = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), lora()
    ).get_nb_trainable_parameters()
    assert estimate.persistent["discriminator weights"] == 2 * num_parameters(tiny_model_path) + 4 * adapter
    assert estimate.persistent["discriminator optimizer (AdamW)"] == 8 * adapter
    # The default copy of a bf16 policy under LoRA: its base in the policy's dtype
    bf16_policy = config(tmp_path, model_init_kwargs={"dtype": "bfloat16"})
    copy = estimate_memory(tiny_model_path, bf16_policy, discriminator_peft_config=lora(), max_prompt_length=8)
    assert copy.persistent["discriminator weights"] == 2 * num_parameters(tiny_model_path) + 4 * adapter


def test_a_lora_policy_s_adapter_and_its_moments_are_float32_on_a_bf16_base(tiny_model_path, tmp_path):
    adapter, _ = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), lora()
    ).get_nb_trainable_parameters()
    args = config(tmp_path, model_init_kwargs={"dtype": "bfloat16"}, disc_updates_per_generation=0)
    estimate = estimate_memory(tiny_model_path, args, peft_config=lora(), max_prompt_length=8)
    assert estimate.persistent["policy weights"] == 2 * num_parameters(tiny_model_path) + 4 * adapter
    assert estimate.persistent["policy optimizer (AdamW)"] == 8 * adapter
    assert estimate.transient["policy gradients"] == 4 * adapter
