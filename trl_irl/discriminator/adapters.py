"""
A discriminator that shares its base model with a LoRA policy, as a second PEFT adapter: one base model in memory
serves both, and only the discriminator's adapter is trained by the discriminator.
"""

import functools
from contextlib import contextmanager

import torch
from trl.trainer.utils import use_adapter

from ..log_probs import evaluating


def check_shared_model(model, adapter_name: str, gradient_penalty: float) -> None:
    from peft import PeftModel

    if not isinstance(model, PeftModel) or adapter_name not in model.peft_config:
        raise ValueError(
            f"`adapter_name={adapter_name!r}` names the discriminator's adapter on a PEFT model shared with the "
            f"policy, but the model ({type(model).__name__}) has no adapter of that name."
        )
    if gradient_penalty > 0:
        raise ValueError(
            "The gradient penalty needs eager attention, which would change the attention of the policy sharing this "
            "model: set the gradient penalty to 0 or give the discriminator its own model."
        )


def adapter_parameters(model, adapter_name: str) -> list[torch.nn.Parameter]:
    return [param for name, param in model.named_parameters() if f".{adapter_name}." in name]


@contextmanager
def active_adapter(model, adapter_name: str | None):
    """
    On a model shared with the policy: `adapter_name` active (and trainable), in eval mode, for a forward and its
    backward; then the policy's adapter and mode as they were (TRL's `use_adapter`). With no name, nothing (where
    `use_adapter` would disable every adapter).
    """
    if adapter_name is None or model.active_adapter == adapter_name:
        yield
        return
    with use_adapter(model, adapter_name), evaluating(model):
        yield


def with_own_adapter(method):
    """Run a discriminator method, forwards and backwards, with the discriminator's own adapter active."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with active_adapter(self.model, self.adapter_name):
            return method(self, *args, **kwargs)

    return wrapper
