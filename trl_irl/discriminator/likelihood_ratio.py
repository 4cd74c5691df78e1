"""The likelihood-ratio discriminator, `l = log q_phi - log pi`, and the maximum-likelihood pre-training of `q_phi`."""

from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..log_probs import micro_batches
from .adapters import with_own_adapter
from .discriminator import Discriminator
from .encoding import num_response_tokens
from .scorers import LikelihoodRatioScorer


class LikelihoodRatioDiscriminator(Discriminator):
    r"""
    A discriminator whose logit is a likelihood ratio, `l(x, y) = log q_phi(y | x) - log pi(y | x)`, with `q_phi` a
    causal LM (`LikelihoodRatioScorer`); the caller adds `-log pi` as the logit offset.

    AIRL's structure `f - c log pi` with `f = log q_phi` and `c = 1`. Initialised from the policy's own (SFT)
    checkpoint, `l = 0` until the policy moves; its optimum is `q_phi = p_exp` (Eq. 16), so `q_phi` is the recovered
    expert and `log q_phi` its reward. Sequence level: the sum over the response's tokens; `token_level=True`: one
    logit per response token, whose sum is the sequence logit. Arguments not listed here are [`Discriminator`]'s.

    Args:
        model: a causal LM (for example `AutoModelForCausalLM.from_pretrained(sft_checkpoint)`); PEFT accepted.
        tokenizer: the policy's tokenizer.
        token_level (`bool`, *optional*, defaults to `False`): one logit per response token rather than per response.
        temperature (`float`, *optional*, defaults to `1.0`): divides `q_phi`'s logits, as the policy's sampling does.
        likelihood_weight (`float`, *optional*, defaults to `0.0`): weight of a maximum-likelihood term in each
            update, `q_phi`'s mean negative log-likelihood per response token of the update's demonstrations (SFT's
            loss), added to the cross-entropy. Its minimiser is the cross-entropy's, `q_phi = p_exp`, so the target
            stays; it was meant to hold `q_phi` on the demonstrations, which the cross-entropy alone lets it drift
            from. On a finite set it is more SFT on the same rows: in the distil benchmark `q_phi` memorised them.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        token_level: bool = False,
        temperature: float = 1.0,
        likelihood_weight: float = 0.0,
        **kwargs,
    ):
        # Written so that NaN, which compares false with everything, is refused too
        if not likelihood_weight >= 0:
            raise ValueError(f"`likelihood_weight` must be >= 0, got {likelihood_weight}.")
        super().__init__(model, tokenizer, scorer=LikelihoodRatioScorer(token_level, temperature), **kwargs)
        self.likelihood_weight = likelihood_weight

    @property
    def temperature(self) -> float:
        return self.scorer.temperature

    @with_own_adapter
    def likelihood_update(
        self, demonstrations: list, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None
    ) -> float:
        """
        One maximum-likelihood step of `q_phi` on `demonstrations`, as SFT takes one on their responses: the mean
        negative log-likelihood per response token, its gradient averaged across processes and clipped to
        `max_grad_norm` (default: the discriminator's), with its own `optimizer`. Pre-trains `q_phi` before the policy
        moves, so that it knows more about the demonstrations than the policy. Returns this process's loss.
        """
        optimizer.zero_grad(set_to_none=True)
        num_tokens = self._num_response_tokens(demonstrations)
        total = torch.zeros((), device=self.device)
        for chunk in micro_batches(demonstrations, self.micro_batch_size):
            # The logits are `log q_phi` per response token or summed per response: their sum is the same either way
            loss = -self.model_logits(chunk)[0].sum() / num_tokens
            loss.backward()
            total = total + loss.detach()
        self._step(total, optimizer, max_grad_norm)
        return total.item()

    @with_own_adapter
    @torch.no_grad()
    def negative_log_likelihood(self, demonstrations: list) -> float:
        """Mean negative log-likelihood per response token of `demonstrations` under `q_phi`, without gradient."""
        total = sum(
            -self.model_logits(chunk)[0].sum().item() for chunk in micro_batches(demonstrations, self.micro_batch_size)
        )
        return total / self._num_response_tokens(demonstrations)

    @staticmethod
    def _num_response_tokens(samples: list) -> int:
        count = num_response_tokens(samples)
        if count == 0:
            raise ValueError("These demonstrations have no response tokens to fit `q_phi` to.")
        return count


def pretrain_likelihood(
    discriminator: LikelihoodRatioDiscriminator,
    draw_batch: Callable[[int], list],
    steps: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    heldout: list | None = None,
) -> dict[str, float]:
    """
    `steps` maximum-likelihood steps of `q_phi` on `draw_batch(step)`'s demonstrations, before the policy moves: the
    SFT it stands for, with a fresh AdamW (`weight_decay`), a linear decay of `learning_rate` to 0 and clipping to
    `max_grad_norm`, so that the adversarial updates then start from their own optimizer state.

    Returns `pretraining_loss` (the mean of the last tenth of the steps' losses) and, given `heldout` demonstrations,
    their negative log-likelihood per token before and after (`pretraining_heldout_nll_start` / `_end`).
    """
    optimizer = torch.optim.AdamW(discriminator.trainable_parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    stats = {}
    if heldout is not None:
        stats["pretraining_heldout_nll_start"] = discriminator.negative_log_likelihood(heldout)
    losses = []
    for step in range(steps):
        losses.append(discriminator.likelihood_update(draw_batch(step), optimizer, max_grad_norm))
        schedule.step()
    last_tenth = losses[-max(1, steps // 10) :]
    stats["pretraining_loss"] = sum(last_tenth) / len(last_tenth)
    if heldout is not None:
        stats["pretraining_heldout_nll_end"] = discriminator.negative_log_likelihood(heldout)
    return stats
