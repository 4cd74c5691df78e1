"""
Models as users give them: built in memory (no checkpoint to load a tokenizer or a copy from), a LoRA run's adapter
directory (loaded trainable on its base), a local path that does not exist (refused before `from_pretrained` reads it
as a Hub id), or a checkpoint of another kind of model.
"""

import json
import os
from pathlib import Path

from trl.trainer.utils import get_config_model_id


def is_built_in_memory(model) -> bool:
    """A model object with no checkpoint behind it (`from_config`): its `name_or_path` is empty."""
    config = getattr(model, "config", None)
    return config is not None and not get_config_model_id(config)


def check_tokenizer_given(model, processing_class, argument: str = "processing_class") -> None:
    """
    Refuse a model built in memory given without its tokenizer: the TRL parents would load one from its empty
    `name_or_path`, failing with a message about Hub repository names.
    """
    if processing_class is None and is_built_in_memory(model):
        raise ValueError(
            f"The {'policy' if argument == 'processing_class' else 'discriminator'} was built in memory (its "
            f"`name_or_path` is empty), so there is no checkpoint to load its tokenizer from: pass it as `{argument}`."
        )


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    """A local directory holding a PEFT adapter (a LoRA run's checkpoint, a LoRA discriminator), not a whole model."""
    return os.path.isfile(os.path.join(path, "adapter_config.json"))


def policy_from_adapter_checkpoint(model, model_init_kwargs: dict | None):
    """
    A policy given as the path of a PEFT adapter (a LoRA SFT run's checkpoint), loaded on the base model its config
    names with the adapter trainable, so that GRPO trains it on: GRPO's own loading reads the path as a whole
    model's and fails ("Should have a `model_type` key"). A local checkpoint of another kind of model (a reward
    model's classifier) is refused: GRPO would load it with a new, random language-modelling head, only a load report
    saying so. Anything else is returned as it is.
    """
    if isinstance(model, str) and (Path(model) / "config.json").is_file():
        architectures = json.loads((Path(model) / "config.json").read_text()).get("architectures") or []
        if architectures and not any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):
            raise ValueError(
                f"`model` {model!r} holds a {architectures[0]}, not a causal language model: the policy would get a "
                "new, random language-modelling head. Start the policy from a causal LM (your SFT model); a reward "
                "model goes in `reward_funcs`."
            )
    if not (isinstance(model, str) and is_adapter_checkpoint(model)):
        return model
    return load_trainable_adapter(model, "AutoModelForCausalLM", model_init_kwargs or {})


def load_trainable_adapter(path: str, auto_class_name: str, init_kwargs: dict):
    """
    The adapter in `path` on the base model its config names (loaded with the `auto_class_name` auto class's PEFT
    twin), trainable: `from_pretrained` of the auto class itself loads an adapter frozen, for inference.
    """
    import peft

    peft_class = getattr(peft, auto_class_name.replace("AutoModel", "AutoPeftModel"))
    return peft_class.from_pretrained(path, is_trainable=True, **init_kwargs)


def is_missing_local_path(reference: str) -> bool:
    """
    Whether a model or dataset reference is written as a local path (absolute, `./` or `../`, or more than the one
    `/` of a Hub id `namespace/name`) that does not exist: `from_pretrained` would take it for a Hub id and fail with
    a message about repository names.
    """
    path_like = os.path.isabs(reference) or reference.startswith(".") or reference.count("/") > 1 or "\\" in reference
    return path_like and not os.path.exists(reference)
