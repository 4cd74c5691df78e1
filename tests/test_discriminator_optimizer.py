"""trl_irl/discriminator/optimizer.py: the discriminator's step, clipped, and refused whole when not finite."""

import pytest
import torch

from trl_irl.discriminator.optimizer import adamw, guarded_step
from trl_irl.discriminator.parallel import Replicated


def _model_and_loss(scale: float = 1.0):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    loss = scale * model(torch.ones(2, 3)).sum()
    loss.backward()
    return model, loss


def test_a_step_clips_the_gradient_and_returns_its_norm_before_clipping():
    model, loss = _model_and_loss(scale=10.0)
    parameters = list(model.parameters())
    norm_before = torch.linalg.vector_norm(torch.stack([param.grad.norm() for param in parameters]))
    before = [param.detach().clone() for param in parameters]
    optimizer = torch.optim.SGD(parameters, lr=1.0)
    grad_norm = guarded_step(loss, optimizer, parameters, Replicated(), max_grad_norm=0.5)
    assert grad_norm.item() == pytest.approx(norm_before.item())
    # SGD with rate 1: the step is the clipped gradient, of norm 0.5
    moves = [(old - param.detach()).flatten() for param, old in zip(parameters, before, strict=True)]
    step = torch.linalg.vector_norm(torch.cat(moves))
    assert step.item() == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("broken", ["loss", "gradient"])
def test_a_loss_or_gradient_not_finite_skips_the_step_and_says_what_to_do(broken):
    model, loss = _model_and_loss()
    parameters = list(model.parameters())
    if broken == "loss":
        loss = loss * float("nan")
    else:
        parameters[0].grad[0, 0] = float("inf")
    before = [param.detach().clone() for param in parameters]
    optimizer = adamw(parameters, learning_rate=1e-2)
    with pytest.raises(FloatingPointError, match="not finite.*step was skipped.*lower the discriminator's learning"):
        guarded_step(loss, optimizer, parameters, Replicated(), max_grad_norm=1.0)
    assert all(torch.equal(param, old) for param, old in zip(parameters, before, strict=True))
    assert all(param.grad is None for param in parameters)  # nothing left to leak into the next update
    assert not optimizer.state  # AdamW's moments untouched
