"""
trl_irl/discriminator/losses.py: each loss's gradient gathered a micro-batch at a time is the gradient of the loss on
the whole batch, computed here in one forward.
"""

import pytest
import torch
from helpers import classifier_discriminator

from trl_irl.discriminator.losses import BalancedCrossEntropy, BradleyTerry
from trl_irl.discriminator.objective import balanced_loss, pairwise_loss, smoothed_targets


EXPERT = ["Count from 1 by 1, 3 numbers: 1 2 3", "Count from 2 by 2, 2 numbers: 2 4", "Say: 5 6", "Count: 7"]
POLICY = ["Count from 1 by 1, 3 numbers: 3 1", "Count from 2 by 2, 2 numbers: 9", "Say: 6 5 5", "Count: 8 8"]


def _gradients(discriminator) -> list[torch.Tensor]:
    gradients = [param.grad.clone() for param in discriminator.trainable_parameters()]
    discriminator.model.zero_grad(set_to_none=True)
    return gradients


@pytest.mark.parametrize(
    ("loss", "whole_batch_loss"),
    [
        (BalancedCrossEntropy(), lambda expert, policy, targets: balanced_loss(expert, policy, *targets)),
        (BradleyTerry(), lambda expert, policy, targets: pairwise_loss(expert, policy, targets[0])),
    ],
)
def test_the_micro_batched_gradient_is_the_whole_loss_s(tiny_model_path, loss, whole_batch_loss):
    discriminator = classifier_discriminator(tiny_model_path, micro_batch_size=3, label_smoothing=0.2)
    offsets = torch.tensor([0.5, -0.5, 0.0, 1.0]), torch.tensor([0.0, 0.25, -1.0, 0.5])
    update = loss.accumulate(discriminator, EXPERT, POLICY, *offsets)
    micro_batched = _gradients(discriminator)
    assert any(gradient.abs().sum() > 0 for gradient in micro_batched)

    # One forward of each class, the offsets added, one backward of the loss on the whole batch
    logits_expert = discriminator.model_logits(EXPERT)[0] + offsets[0]
    logits_policy = discriminator.model_logits(POLICY)[0] + offsets[1]
    whole = whole_batch_loss(logits_expert, logits_policy, smoothed_targets(0.2))
    whole.backward()
    for got, expected in zip(micro_batched, _gradients(discriminator), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert update.loss.item() == pytest.approx(whole.item(), rel=1e-5)
    torch.testing.assert_close(update.logits_expert, logits_expert.detach(), rtol=1e-5, atol=1e-6)


def test_the_pairwise_loss_refuses_classes_of_different_sizes_by_what_it_pairs(tiny_model_path):
    discriminator = classifier_discriminator(tiny_model_path)
    with pytest.raises(ValueError, match="same prompt, but got 4 demonstrations and 3 policy samples"):
        BradleyTerry().accumulate(discriminator, EXPERT, POLICY[:3], None, None)
