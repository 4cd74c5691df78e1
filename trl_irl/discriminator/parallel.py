"""
How a discriminator runs on several processes: replicated (every process holds the whole model and the gradients are
averaged, as DDP does) or sharded with FSDP2 (each process holds a slice, as FSDP shards the policy).

The discriminator is not prepared by accelerate: it has its own optimizer and step, called from inside GRPO's reward,
and runs outside any `Trainer` too. So this module speaks `torch.distributed`, which both settings have, rather than
accelerate's state, which only a trainer sets up.
"""

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor


# A sharded discriminator's weights and optimizer state gathered whole, on the CPU, to be written by one process
_FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_index() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def average_across_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the processes (in place)."""
    if world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= world_size()
    return values


def all_processes_agree(flag: torch.Tensor) -> bool:
    """Whether `flag` (a 0/1 tensor) is 1 on every process: all must take the same branch, or the others hang."""
    if world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.item() >= 1


def move_to_device(model: torch.nn.Module, device: torch.device | str, on_meta_device: bool) -> bool:
    """
    Move `model` to `device`; whether that made new parameter objects. A model whose weights are on the meta device
    (FSDP's ram-efficient loading leaves them there on every process but the first) gets empty storage, to be filled
    from process 0 by `synchronize`.
    """
    if not on_meta_device:
        model.to(device)
        return False
    if world_size() > 1 and process_index() != 0:
        model.to_empty(device=device)
        return True
    raise ValueError(
        "The discriminator's weights are on the meta device (a `from_pretrained` under FSDP's "
        "`cpu_ram_efficient_loading`, or `device_map='meta'`), and no other process has them to send: load the "
        "discriminator with its weights on process 0, or turn `fsdp_cpu_ram_efficient_loading` off."
    )


def check_can_shard(model: torch.nn.Module, gradient_penalty: float) -> None:
    """Refuse, before touching the model, what the sharded form cannot do."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        # Resuming restores adapter weights by their PEFT names, which the sharded form does not map; a LoRA
        # discriminator's trainable state is small, and stays replicated
        raise ValueError("A PEFT (LoRA) discriminator is not sharded: keep it replicated, without `shard`.")
    if gradient_penalty > 0:
        raise ValueError(
            "The gradient penalty differentiates through the gradient, which FSDP2's sharded backward does not "
            "support: set the gradient penalty to 0 (`gradient_penalty=0`) or keep the discriminator replicated."
        )
    if world_size() < 2:
        raise ValueError("Sharding the discriminator needs several processes (`torch.distributed` initialised).")


class Replicated:
    """A full replica per process; the gradients are all-reduced by hand, since no DDP wrapper owns this model."""

    sharded = False

    def synchronize(self, model: torch.nn.Module) -> None:
        """Make every replica equal to process 0's, buffers included (rotary frequencies)."""
        if world_size() > 1:
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def reduce_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if world_size() > 1:
            for param in parameters:
                average_across_processes(param.grad)

    def full_norm(self, norm: torch.Tensor) -> torch.Tensor:
        return norm

    def model_state_dict(self, model: torch.nn.Module) -> dict | None:
        """The weights to save, or `None` for `save_pretrained`'s own."""
        return None

    def optimizer_state_dict(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        return optimizer.state_dict()

    def load_model_state_dict(self, model: torch.nn.Module, weights: dict) -> tuple[list, list]:
        # Not strict: `save_pretrained` writes a tied weight once, and loading the one written fills both
        return model.load_state_dict(weights, strict=False)

    def load_optimizer_state_dict(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)


class Sharded(Replicated):
    """
    FSDP2 (`fully_shard`): each decoder layer, then the rest of the model, is a unit whose weights are gathered for
    its forward and backward, so that between steps each of `N` processes holds `1/N` of the weights and of the
    optimizer's state. The backward's reduce-scatter averages the gradients. Every process must then call each
    forward, step and save together.
    """

    sharded = True

    def __init__(self, model: torch.nn.Module, mesh=None):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        device_type = next(model.parameters()).device.type
        mesh = mesh or init_device_mesh(device_type, (world_size(),))
        layer_classes = set(getattr(model, "_no_split_modules", None) or [])
        for module in model.modules():
            if type(module).__name__ in layer_classes:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)

    def synchronize(self, model):
        pass  # sharded weights were made from equal replicas

    def reduce_gradients(self, parameters):
        pass  # the backward's reduce-scatter has averaged them

    def full_norm(self, norm):
        return norm.full_tensor() if isinstance(norm, DTensor) else norm  # the norm over every process's slices

    def model_state_dict(self, model):
        state_dict = get_model_state_dict(model, options=_FULL_ON_CPU)
        # Gathered, a tied weight (a head tied to the input embeddings) comes once per name, as separate copies: keep
        # its first name only, as `save_pretrained` writes an unsharded tied model
        parameters = dict(model.named_parameters(remove_duplicate=False))
        first_name = {}
        for name, param in parameters.items():
            first_name.setdefault(id(param), name)
        return {
            name: tensor
            for name, tensor in state_dict.items()
            if name not in parameters or first_name[id(parameters[name])] == name
        }

    def optimizer_state_dict(self, model, optimizer):
        return get_optimizer_state_dict(model, optimizer, options=_FULL_ON_CPU)

    def load_model_state_dict(self, model, weights):
        return set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))

    def load_optimizer_state_dict(self, model, optimizer, state):
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
