"""The discriminator's optimizer and its step: gradients averaged, clipped, and refused together when not finite."""

import torch

from .parallel import Replicated, all_processes_agree


def adamw(parameters: list[torch.nn.Parameter], learning_rate: float) -> torch.optim.Optimizer:
    """The discriminator's optimizer: AdamW with torch's defaults, over its trainable parameters."""
    return torch.optim.AdamW(parameters, lr=learning_rate)


def guarded_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    parallel: Replicated,
    max_grad_norm: float | None = None,
) -> torch.Tensor:
    """
    Average the accumulated gradients of `parameters` across processes, clip them to `max_grad_norm` and step
    `optimizer`, unless `loss` or the gradient is not finite on any process: then every process skips the step
    (a process that stepped alone would leave the others waiting, or the replicas apart) and raises. Returns the
    gradient's norm before clipping.
    """
    parallel.reduce_gradients(parameters)
    # The norm before clipping, as `Trainer` logs `grad_norm`; of the averaged gradient, so equal on every process
    grad_norm = parallel.full_norm(torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm or float("inf")))
    device = parameters[0].device if parameters else loss.device
    finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).float().to(device)
    if not all_processes_agree(finite):
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(
            f"The discriminator's loss ({loss.item()}) or gradient norm ({grad_norm.item()}) is not finite on this "
            "batch; its step was skipped, so its weights are those of the last finite step. The logits diverged: "
            "lower the discriminator's learning rate, train in float32 or bf16 rather than fp16, or add a gradient "
            "penalty; then resume from the last checkpoint."
        )
    optimizer.step()
    return grad_norm
