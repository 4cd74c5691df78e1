"""The discriminator: a model that tells demonstrations from policy samples, its optimizer and its update step."""

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..log_probs import micro_batches
from . import checkpoint
from .adapters import adapter_parameters, check_shared_model, with_own_adapter
from .losses import LOSSES
from .objective import captured_input_embeddings
from .optimizer import adamw, guarded_step
from .parallel import Replicated, Sharded, average_across_processes, check_can_shard, move_to_device
from .replay import ReplayBuffer
from .scorers import SequenceClassifierScorer, TokenClassifierScorer, check_causal, check_output_shape, prepare_model


@dataclass
class DiscriminatorUpdate:
    """
    What one update returns.

    Attributes:
        stats (`dict[str, float]`): of the update's batch before the step, averaged across processes: `loss`, `acc`,
            `acc_expert`, `acc_policy`, `entropy`, `logit_expert`, `logit_policy`, `grad_norm` (before clipping),
            `gradient_penalty` when on and, for a likelihood ratio, `nll_expert` (`q_phi`'s negative log-likelihood
            per token of the demonstrations).
        policy_logits (`torch.Tensor`): the fresh policy samples' logits before the step, as `logits` gives them.
    """

    stats: dict[str, float]
    policy_logits: torch.Tensor


def _check_arguments(tokenizer: PreTrainedTokenizerBase, label_smoothing: float, loss_type: str) -> None:
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"The discriminator's tokenizer ({type(tokenizer).__name__}, {tokenizer.name_or_path!r}) has no "
            "padding token, which batches of samples of different lengths need. Set one, for example "
            "`tokenizer.pad_token = tokenizer.eos_token`."
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing}.")
    if loss_type not in LOSSES:
        raise ValueError(f"`loss_type` must be one of {list(LOSSES)}, got {loss_type!r}.")


def _check_pairs(loss_type: str, token_level: bool, replay_buffer_size: int) -> None:
    """The pairwise loss pairs whole responses to one prompt: not tokens, not replayed samples (whose pair is gone)."""
    if not LOSSES[loss_type].pairs_samples:
        return
    if token_level:
        raise ValueError(
            "The pairwise loss (`loss_type='bradley_terry'`) compares whole responses to the same prompt; a "
            "token-level discriminator has one logit per token. Use a sequence-level discriminator."
        )
    if replay_buffer_size > 0:
        raise ValueError(
            "The pairwise loss (`loss_type='bradley_terry'`) pairs each policy sample with a demonstration of its "
            "prompt; replayed samples have none. Set the replay buffer size (`replay_buffer_size`) to 0."
        )


class Discriminator:
    """
    A model trained to output a high logit on demonstrations (label 1) and a low one on policy samples (label 0): it
    composes a scorer, the objective, an optimizer, a replay buffer, a parallel form and, on a model shared with a
    LoRA policy, an adapter (one module each). It knows nothing of trainers: given samples, it returns logits.

    Args:
        model ([`~transformers.PreTrainedModel`]): the scorer's model; by default a sequence classifier with
            `num_labels=1` (a PEFT model is accepted; only its trainable parameters are optimised).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): the model's tokenizer; must have a padding token.
        learning_rate (`float`, *optional*, defaults to `1e-5`): AdamW learning rate.
        max_length (`int`, *optional*): samples longer than this many tokens keep their *last* `max_length` tokens, so
            the response is always seen. Defaults to the model's `max_position_embeddings` when it has one.
        label_smoothing (`float`, *optional*, defaults to `0.0`): targets `1 - eps/2` and `eps/2`.
        gradient_penalty (`float`, *optional*, defaults to `0.0`): weight of the R1 penalty on expert samples.
        replay_buffer_size (`int`, *optional*, defaults to `0`): past policy samples kept and replayed.
        seed (`int`, *optional*, defaults to `0`): seeds the replay buffer's draws.
        max_grad_norm (`float`, *optional*): clip the gradient's norm to this before each step (off by default).
        autocast_dtype (`torch.dtype`, *optional*): run the forward under `torch.autocast` in this dtype; the trainable
            parameters are float32 whatever the checkpoint's dtype, so that small updates are not rounded away.
        micro_batch_size (`int`, *optional*): forward and backward this many samples of a class at a time and
            accumulate the gradients (the same step up to float rounding); default: each class at once.
        adapter_name (`str`, *optional*): the discriminator's own adapter on a PEFT model it shares with the policy:
            only this adapter is trained, and it is active (in eval mode) for the discriminator's forwards only.
        scorer (*optional*): one of `trl_irl.discriminator.scorers`; defaults to a `SequenceClassifierScorer`.
        loss_type (`str`, *optional*, defaults to `"bce"`): what an update minimises (`losses.LOSSES`): `"bce"`, the
            class-balanced cross-entropy; `"bradley_terry"`, the pairwise loss of each demonstration against the
            policy sample at the same position, which must answer the same prompt (sequence level, no replay).
    """

    # Weight of SFT's loss on the demonstrations in each update: a likelihood ratio's to set (`demonstration_terms`)
    likelihood_weight = 0.0

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        learning_rate: float = 1e-5,
        max_length: int | None = None,
        label_smoothing: float = 0.0,
        gradient_penalty: float = 0.0,
        replay_buffer_size: int = 0,
        seed: int = 0,
        max_grad_norm: float | None = None,
        autocast_dtype: torch.dtype | None = None,
        micro_batch_size: int | None = None,
        adapter_name: str | None = None,
        scorer=None,
        loss_type: str = "bce",
    ):
        self.scorer = scorer or SequenceClassifierScorer()
        self.scorer.check_model(model)
        if adapter_name is not None:
            check_shared_model(model, adapter_name, gradient_penalty)
        self.adapter_name = adapter_name
        _check_arguments(tokenizer, label_smoothing, loss_type)
        _check_pairs(loss_type, self.scorer.token_level, replay_buffer_size)
        self.loss_type, self.loss = loss_type, LOSSES[loss_type]()
        self.model, self.tokenizer, self.learning_rate = model, tokenizer, learning_rate
        prepare_model(
            model, tokenizer, self.trainable_parameters(), own_model=adapter_name is None, eager=gradient_penalty > 0
        )
        self.autocast_dtype = autocast_dtype
        self.max_grad_norm = max_grad_norm
        self.micro_batch_size = micro_batch_size
        self._check_model_behaviour()
        self.max_length = (
            max_length if max_length is not None else getattr(model.config, "max_position_embeddings", None)
        )
        self.label_smoothing = label_smoothing
        self.gradient_penalty = gradient_penalty
        self.replay_buffer = ReplayBuffer(replay_buffer_size, seed)
        self.optimizer = self._new_optimizer()
        self.parallel = Replicated()

    @property
    def token_level(self) -> bool:
        """One logit per response token (True) or one per sample (False)."""
        return self.scorer.token_level

    @property
    def takes_token_ids(self) -> bool:
        """Whether samples are `(prompt_ids, response_ids)` pairs in the policy's tokens (else texts)."""
        return self.scorer.takes_token_ids

    @property
    def sharded(self) -> bool:
        return self.parallel.sharded

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the discriminator trains: its model's trainable parameters, or its own adapter's on a shared model."""
        if self.adapter_name is None:
            return [param for param in self.model.parameters() if param.requires_grad]
        return adapter_parameters(self.model, self.adapter_name)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return adamw(self.trainable_parameters(), self.learning_rate)

    def _on_meta_device(self) -> bool:
        return any(tensor.is_meta for tensor in [*self.model.parameters(), *self.model.buffers()])

    @with_own_adapter
    def _check_model_behaviour(self) -> None:
        """The model's outputs checked on a few tokens (by process 0 alone when the others hold no values yet)."""
        if self._on_meta_device():
            return
        check_output_shape(self.model, self.scorer, self.device)
        if self.scorer.needs_causal_model:
            check_causal(self.model, self.device)

    def to(self, device: torch.device | str) -> "Discriminator":
        """
        Move the model to `device`. A model whose weights are on the meta device (FSDP's ram-efficient loading leaves
        them there on every process but the first) gets empty storage here, filled by [`synchronize`] from process 0.
        """
        if move_to_device(self.model, device, on_meta_device=self._on_meta_device()):
            # Leaving the meta device makes new parameter objects: the optimizer must hold those
            self.optimizer = self._new_optimizer()
        return self

    def synchronize(self) -> None:
        """Make every process's replica equal to process 0's: heads initialised after a per-rank seed differ."""
        self.parallel.synchronize(self.model)

    def shard(self, mesh=None) -> "Discriminator":
        """
        Split the weights, gradients and AdamW state across processes with FSDP2 (see `parallel.Sharded`). From then
        on every process must call `logits`, `update`, `likelihood_update`, `save_pretrained`, `save_state` and `load`
        together, with batches that take as many forwards. The replicas are made equal first.
        """
        check_can_shard(self.model, self.gradient_penalty)
        if self.sharded:
            return self
        self.synchronize()
        self.parallel = Sharded(self.model, mesh)
        # The parameters are now distributed tensors (new objects): the optimizer must hold those
        self.optimizer = self._new_optimizer()
        return self

    def model_logits(
        self, samples: list, capture_embeddings: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (one per sample, or one per scored token) and, if asked, the input embeddings they come from."""
        batch, positions = self.scorer.model_inputs(samples, self.tokenizer, self.max_length, self.device)
        with captured_input_embeddings(self.model, enabled=capture_embeddings) as captured:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                logits = self.scorer.select(self.model(**batch).logits.float(), batch, positions)
        return logits, (captured[0] if capture_embeddings else None)

    @with_own_adapter
    @torch.no_grad()
    def logits(self, samples: list, logit_offsets: torch.Tensor | None = None) -> torch.Tensor:
        """
        Expert-is-high logits of `samples`, one per sample (or per response token), float32, without gradient: the
        model's output plus `logit_offsets` if given (AIRL's `-c log pi`).
        """
        return self.forward_logits(samples, logit_offsets)

    def forward_logits(self, samples: list, logit_offsets: torch.Tensor | None = None) -> torch.Tensor:
        """`logits` without the adapter switch and `no_grad`, for use in an update; `micro_batch_size` at a time."""
        chunks = micro_batches(samples, self.micro_batch_size)
        logits = torch.cat([self.model_logits(chunk)[0].float() for chunk in chunks])
        return logits if logit_offsets is None else logits + logit_offsets.to(logits.device)

    @property
    def pairs_samples(self) -> bool:
        """Whether an update pairs each demonstration with the policy sample at its position (same prompt)."""
        return self.loss.pairs_samples

    @with_own_adapter
    def update(
        self,
        expert_samples: list,
        policy_samples: list,
        expert_logit_offsets: torch.Tensor | None = None,
        policy_logit_offsets: torch.Tensor | None = None,
    ) -> DiscriminatorUpdate:
        """
        One optimizer step on demonstrations (label 1) against fresh policy samples (label 0) and, with the replay
        buffer on, as many replayed ones. With several processes each passes its own samples; gradients and
        statistics are averaged, so the replicas stay identical. The offsets are added to the model's outputs to make
        the logits, one per logit (AIRL's `-c log pi`); replayed samples have none, so not with the replay buffer.
        """
        if not expert_samples or not policy_samples:
            raise ValueError(
                f"A discriminator update needs both classes, got {len(expert_samples)} demonstrations and "
                f"{len(policy_samples)} policy samples."
            )
        if policy_logit_offsets is not None and self.replay_buffer.capacity > 0:
            raise ValueError("Logit offsets are not supported with the replay buffer: replayed samples have none.")
        replayed = self.replay_buffer.draw(len(policy_samples))
        self.optimizer.zero_grad(set_to_none=True)
        accumulated = self.loss.accumulate(
            self, expert_samples, policy_samples + replayed, expert_logit_offsets, policy_logit_offsets
        )
        logits_expert, logits_policy, loss = accumulated.logits_expert, accumulated.logits_policy, accumulated.loss
        stats = dict(accumulated.expert_terms)
        grad_norm = self._step(loss, self.optimizer)
        self.replay_buffer.add(policy_samples)
        stats.update(self.loss.statistics(logits_expert, logits_policy, loss))
        stats["grad_norm"] = grad_norm.detach().to(logits_expert.device)
        with torch.no_grad():
            values = average_across_processes(torch.stack(list(stats.values())).to(self.device))
        policy_logits = logits_policy[: self.scorer.num_logits(policy_samples)].detach()
        return DiscriminatorUpdate(dict(zip(stats, values.tolist(), strict=True)), policy_logits)

    def _step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None
    ) -> torch.Tensor:
        """`optimizer`'s guarded step (see `optimizer.guarded_step`), clipped to `max_grad_norm` or the default."""
        parameters = [param for param in self.trainable_parameters() if param.grad is not None]
        return guarded_step(loss, optimizer, parameters, self.parallel, max_grad_norm or self.max_grad_norm)

    @property
    def term_weights(self) -> dict[str, float]:
        """The weight of each term that only demonstrations carry (`objective.demonstration_terms`)."""
        return {"gradient_penalty": self.gradient_penalty, "nll_expert": self.likelihood_weight}

    def save_pretrained(self, directory: str | Path, is_main_process: bool = True) -> None:
        """The model and tokenizer, loadable with `from_pretrained(directory)` (see `checkpoint.save_pretrained`)."""
        checkpoint.save_pretrained(self, directory, is_main_process)

    def save_state(self, directory: str | Path, process_index: int = 0) -> None:
        """What resuming needs beyond the weights: the optimizer, the replay buffer and its random state."""
        checkpoint.save_state(self, directory, process_index)

    def load(self, directory: str | Path, process_index: int = 0) -> None:
        """Restore weights and training state written by `save_pretrained` and `save_state` to `directory`."""
        checkpoint.load(self, directory, process_index)


class TokenDiscriminator(Discriminator):
    """
    A state-action discriminator: one logit per response token from a causal token classifier with `num_labels=1`
    (`TokenClassifierScorer`). Samples are `(prompt_ids, response_ids)` pairs in the policy's tokens; the loss
    balances expert and policy tokens, and the statistics are per token. Arguments as [`Discriminator`].
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **kwargs):
        super().__init__(model, tokenizer, scorer=TokenClassifierScorer(), **kwargs)
