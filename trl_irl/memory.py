"""How much memory a GAIL or AIRL run needs on each process, from the models' configs alone (no weights are loaded).

    from trl_irl import GAILConfig, estimate_memory

    # `use_cpu=True` only so that a machine without a GPU accepts `bf16=True` while planning a GPU run
    args = GAILConfig(output_dir="run", per_device_train_batch_size=8, use_cpu=True)
    print(estimate_memory("Qwen/Qwen2.5-1.5B", args))

or `trl-irl estimate gail --config gail.yaml`, the YAML a training run takes. Each model is built on the meta device
(`accelerate.init_empty_weights`), so only its config is read; a LoRA adapter is added there too, so that its size is
peft's own count. What the estimate counts, per process and without ZeRO or FSDP sharding:

- the weights of the policy, of its reference model (only where `beta > 0` and the policy is not a LoRA adapter: with
  one, the reference is the adapter switched off) and of the discriminator, in the dtype each is loaded in: the
  policy in `model_init_kwargs`' `dtype` (float32 unless set, as TRL loads it), the discriminator in its
  checkpoint's, except that its trainable parameters are float32 whatever that is (the trainer upcasts them so
  that small updates are not rounded away); a LoRA adapter is float32 (peft's default);
- AdamW's two moments per trainable parameter, in the parameter's dtype (the discriminator's only where it trains:
  `disc_updates_per_generation > 0`);
- on top of those, the largest of three transient peaks: the policy's update (its gradients, the activations its
  backward keeps for `per_device_train_batch_size` sequences, and the float32 logits of their completions), the
  discriminator's update (the same for its micro-batch of sequences) and generation (the key-value cache of the
  generation batch).

The activations follow a Llama-style decoder layer without recomputation: about `14 * hidden_size + 4 *
intermediate_size` values per token and layer (norms, attention inputs and outputs, the gated MLP), in bf16 under
`bf16=True` and float32 otherwise; with gradient checkpointing (GRPO's default; the discriminator's own model does
not checkpoint), one value of `hidden_size` per token and layer plus one layer's. It is an estimate: allocator
caching, the CUDA context (about 0.5 GiB), vLLM and communication buffers are not in it.
`benchmarks/memory_estimate_check.py` compares it with a run's measured peak. Every discriminator is counted as a
causal LM (the likelihood ratio, the default): a classifier's one-label head is smaller than the language-modelling
head counted for it.
"""

from dataclasses import dataclass, field

import torch
from transformers import AutoConfig, PretrainedConfig


GIB = 2**30
# Values an activation-keeping backward stores per token and layer, as multiples of the hidden and MLP sizes
ACTIVATIONS_PER_HIDDEN, ACTIVATIONS_PER_INTERMEDIATE = 14, 4
# Copies of the completions' float32 logits alive in a log-prob backward: the logits, their log-softmax and its grad
LOGIT_COPIES = 3
DISCRIMINATOR_CHOICES = ("trained", "lora", "frozen", "shared_base")


@dataclass
class MemoryEstimate:
    """Bytes per part (`persistent`: held all run; `transient`: the peak phase's), and their sum, the peak."""

    persistent: dict[str, float] = field(default_factory=dict)
    transient: dict[str, float] = field(default_factory=dict)
    peak_phase: str = ""

    @property
    def peak_bytes(self) -> float:
        return sum(self.persistent.values()) + sum(self.transient.values())

    def as_dict(self) -> dict:
        return {
            "persistent_bytes": self.persistent,
            "transient_bytes": self.transient,
            "peak_phase": self.peak_phase,
            "peak_bytes": self.peak_bytes,
        }

    def __str__(self) -> str:
        width = max(len(name) for name in [*self.persistent, *self.transient, "peak"])
        lines = [f"{name:<{width}}  {size / GIB:8.2f} GiB" for name, size in self.persistent.items() if size]
        lines.append(f"during the {self.peak_phase}, at most:")
        lines += [f"{name:<{width}}  {size / GIB:8.2f} GiB" for name, size in self.transient.items() if size]
        lines.append(f"{'peak':<{width}}  {self.peak_bytes / GIB:8.2f} GiB per process")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Model:
    """What the estimate needs of one model: its shape, its parameters and those of its LoRA adapter, if any."""

    config: PretrainedConfig
    parameters: int
    adapter_parameters: int = 0

    @property
    def hidden_size(self) -> int:
        return self.config.get_text_config().hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.get_text_config().num_hidden_layers

    @property
    def vocab_size(self) -> int:
        return self.config.get_text_config().vocab_size

    @property
    def intermediate_size(self) -> int:
        return getattr(self.config.get_text_config(), "intermediate_size", None) or 4 * self.hidden_size

    @property
    def kv_size(self) -> int:
        """Keys or values per token and layer: the key-value heads times the head size."""
        text = self.config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or self.hidden_size // heads
        return (getattr(text, "num_key_value_heads", None) or heads) * head_dim


def _dtype_bytes(dtype) -> int:
    if dtype is None:
        return 4
    return torch.empty((), dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype).element_size()


def _meta_model(model, peft_config=None) -> _Model:
    """The model's parameter count (and its adapter's, with `peft_config`), counted on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    config = model if isinstance(model, PretrainedConfig) else AutoConfig.from_pretrained(model)
    with init_empty_weights():
        built = AutoModelForCausalLM.from_config(config)
        parameters = sum(param.numel() for param in built.parameters())
        if peft_config is None:
            return _Model(config, parameters)
        from peft import get_peft_model

        trainable, _ = get_peft_model(built, peft_config).get_nb_trainable_parameters()
    return _Model(config, parameters, trainable)


def _checkpoint_dtype(config: PretrainedConfig):
    return getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32


def _activations(
    model: _Model, sequences: int, length: int, logit_positions: int, bytes_, checkpointing: bool
) -> float:
    """What a forward keeps for its backward over `sequences` of `length` tokens, logits at `logit_positions` each."""
    per_layer = (
        sequences
        * length
        * (ACTIVATIONS_PER_HIDDEN * model.hidden_size + ACTIVATIONS_PER_INTERMEDIATE * model.intermediate_size)
    )
    if checkpointing:
        values = sequences * length * model.hidden_size * model.num_layers + per_layer
    else:
        values = per_layer * model.num_layers
    return values * bytes_ + LOGIT_COPIES * sequences * logit_positions * model.vocab_size * 4


def estimate_memory(
    model,
    args,
    discriminator=None,
    peft_config=None,
    discriminator_peft_config=None,
    max_prompt_length: int = 512,
) -> MemoryEstimate:
    """
    The peak memory of one process of `GAILTrainer` / `AIRLTrainer` built with these arguments (see the module's
    docstring for what is counted). `model` and `discriminator` are ids, paths or configs (`discriminator=None`: a copy
    of the policy, trained in full); `args` a `GAILConfig` or `AIRLConfig`; `peft_config` and
    `discriminator_peft_config` as the trainers take them; prompts are assumed `max_prompt_length` tokens long.
    """
    if args.disc_shares_policy_base and (peft_config is None or discriminator or discriminator_peft_config):
        raise ValueError(
            "`disc_shares_policy_base=True` makes the discriminator a copy of a LoRA policy's adapter, as the "
            "trainers do: pass `peft_config`, and leave `discriminator` and `discriminator_peft_config` unset."
        )
    policy = _meta_model(model, peft_config)
    policy_dtype = (args.model_init_kwargs or {}).get("dtype", "float32")
    policy_bytes = _dtype_bytes(_checkpoint_dtype(policy.config) if policy_dtype == "auto" else policy_dtype)
    activation_bytes = 2 if args.bf16 or policy_bytes == 2 else 4
    length = max_prompt_length + args.max_completion_length
    persistent, phases = {}, {}

    trained_policy = policy.adapter_parameters or policy.parameters
    policy_state_bytes = 4 if policy.adapter_parameters else policy_bytes
    persistent["policy weights"] = policy.parameters * policy_bytes + policy.adapter_parameters * 4
    if args.beta > 0 and peft_config is None:
        persistent["reference model weights"] = policy.parameters * policy_bytes
    persistent["policy optimizer (AdamW)"] = 2 * trained_policy * policy_state_bytes
    phases["policy update"] = {
        "policy gradients": trained_policy * policy_state_bytes,
        "policy activations": _activations(
            policy,
            args.per_device_train_batch_size,
            length,
            args.max_completion_length,
            activation_bytes,
            # transformers 5's name for it, then the older one
            getattr(args, "activation_checkpointing", args.gradient_checkpointing),
        ),
    }

    generation_batch = args.per_device_train_batch_size * (args.steps_per_generation or 1)
    phases["generation"] = {
        "key-value cache": 2 * generation_batch * length * policy.num_layers * policy.kv_size * activation_bytes
        + 2 * generation_batch * policy.vocab_size * 4
    }

    if args.disc_shares_policy_base:  # a copy of the policy's adapter, on the policy's own base
        disc = _Model(policy.config, 0, policy.adapter_parameters)
        disc_weights = disc.adapter_parameters * 4
    else:
        disc = _meta_model(discriminator if discriminator is not None else model, discriminator_peft_config)
        if disc.adapter_parameters:
            base_dtype = policy_bytes if discriminator is None else _dtype_bytes(_checkpoint_dtype(disc.config))
            disc_weights = disc.parameters * base_dtype + disc.adapter_parameters * 4
        else:
            disc_weights = disc.parameters * 4  # trainable parameters upcast to float32, trained or not
    trained_disc = disc.adapter_parameters or disc.parameters
    persistent["discriminator weights"] = disc_weights
    if args.disc_updates_per_generation > 0:
        persistent["discriminator optimizer (AdamW)"] = 2 * trained_disc * 4
        micro_batch = min(args.disc_micro_batch_size or generation_batch, generation_batch)
        phases["discriminator update"] = {
            "discriminator gradients": trained_disc * 4,
            "discriminator activations": _activations(
                disc if disc.parameters else policy, micro_batch, length, length, activation_bytes, False
            ),
        }
    peak_phase = max(phases, key=lambda phase: sum(phases[phase].values()))
    return MemoryEstimate(persistent, phases[peak_phase], peak_phase)


def discriminator_choice(choice: str, args, lora_r: int = 16):
    """
    `(args, peft_config, discriminator_peft_config)` changes for one of `DISCRIMINATOR_CHOICES` on the policy's own
    checkpoint: trained in full, a LoRA adapter on its own copy, frozen (`disc_updates_per_generation=0`; the trainer
    asks for another checkpoint then), or a copy of a LoRA policy's adapter on the policy's base
    (`disc_shares_policy_base`, both adapters of rank `lora_r`).
    """
    import copy

    from peft import LoraConfig

    if choice not in DISCRIMINATOR_CHOICES:
        raise ValueError(f"`choice` must be one of {DISCRIMINATOR_CHOICES}, got {choice!r}.")
    lora = LoraConfig(r=lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    changed = copy.copy(args)
    if choice == "frozen":
        changed.disc_updates_per_generation = 0
        return changed, None, None
    if choice == "shared_base":  # the policy a LoRA adapter, the discriminator a copy of it on the same base
        changed.disc_shares_policy_base = True
        return changed, lora, None
    return changed, None, lora if choice == "lora" else None
