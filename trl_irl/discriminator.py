r"""The discriminator of adversarial imitation: a sequence classifier that tells demonstrations from policy samples.

It owns its model (any `AutoModelForSequenceClassification` with one label, encoder or decoder), its tokenizer (which
may differ from the policy's), its optimizer and its update step, and knows nothing of trainers: it is given texts
and returns logits and statistics.

Sign convention, kept in every name: expert samples are labelled 1 (`labels_expert_is_one`) and the logit is
*expert-is-high*, `logit = log D - log(1 - D)` with `D = P(expert | text)`. The loss is the class-balanced binary
cross-entropy of Eq. 18 / 20 of arXiv 2403.12017,

    loss = -1/2 E_expert[log D] - 1/2 E_policy[log(1 - D)]

so that the expert and policy batches weigh the same whatever their sizes.

Stabilisers, all off by default:
- `label_smoothing` `eps`: targets `1 - eps/2` for the expert and `eps/2` for the policy.
- `gradient_penalty` `lambda`: adds `lambda * E_expert[||d logit / d embeddings||^2]`, the zero-centred R1 penalty
  (Mescheder et al. 2018) taken at the input embeddings, since text itself cannot be differentiated.
- `replay_buffer_size` `K`: past policy samples (up to `K`) are kept; each update adds as many of them, drawn at
  random, to the fresh ones, so the discriminator does not forget what the policy used to do.
"""

import functools
import random
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase


STATE_FILE = "discriminator_state.pt"
# A sharded discriminator's weights and optimizer state gathered whole, on the CPU, to be written by one process
_FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def process_state_file(process_index: int) -> str:
    """The file of one process's discriminator state: `STATE_FILE` for process 0 (which also holds the optimizer)."""
    return STATE_FILE if process_index == 0 else f"discriminator_state_process{process_index}.pt"


def _with_own_adapter(method):
    """Run a discriminator method, forwards and backwards, with its own adapter active (see `_own_adapter`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._own_adapter():
            return method(self, *args, **kwargs)

    return wrapper


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def prompt_response_batch(
    prompt_ids: list, response_ids: list, pad_token_id: int, device: torch.device | str
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """
    Token ids of `prompt + response` pairs, right-padded into one batch: the model's inputs (`input_ids`,
    `attention_mask`) and a mask of the response tokens, each of shape `(N, T)`.
    """
    sequences = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.tensor([seq + [pad_token_id] * (width - len(seq)) for seq in sequences], device=device)
    attention_mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in sequences], device=device)
    response_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        response_mask[row, len(p) : len(p) + len(r)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask}, response_mask


def response_token_log_probs(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    From a causal LM's `(N, T, V)` logits on `input_ids`: the log-probability of each next token at `temperature` and
    which of them are response tokens, both `(N, T - 1)` (position `p` holds token `p + 1`, predicted at `p`).
    """
    from trl.trainer.utils import selective_log_softmax

    token_log_probs = selective_log_softmax(logits[:, :-1], input_ids[:, 1:], temperature)
    return token_log_probs, response_mask[:, 1:]


def classification_statistics(logits_expert: torch.Tensor, logits_policy: torch.Tensor) -> dict[str, torch.Tensor]:
    """
    How well expert-is-high logits separate demonstrations from policy samples: the class-balanced cross-entropy
    `loss` (ln 2 at chance), the balanced accuracy `acc` and the accuracy on each class, `acc_expert` and
    `acc_policy`. A logit of exactly 0 counts as half right (a likelihood-ratio discriminator starts at 0 everywhere,
    which is chance, 0.5, not 0). Scalars without gradient.
    """
    with torch.no_grad():
        logits_expert, logits_policy = logits_expert.float(), logits_policy.float()
        acc_expert = ((logits_expert > 0).float() + 0.5 * (logits_expert == 0).float()).mean()
        acc_policy = ((logits_policy < 0).float() + 0.5 * (logits_policy == 0).float()).mean()
        return {
            "loss": 0.5 * (F.softplus(-logits_expert).mean() + F.softplus(logits_policy).mean()),
            "acc": (acc_expert + acc_policy) / 2,
            "acc_expert": acc_expert,
            "acc_policy": acc_policy,
        }


class Discriminator:
    """
    Sequence classifier trained to output a high logit on demonstrations and a low one on policy samples.

    Args:
        model ([`~transformers.PreTrainedModel`]): a sequence classifier with `num_labels=1` (a PEFT model is
            accepted; only its trainable parameters are optimised).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): the model's tokenizer; must have a padding token.
        learning_rate (`float`, *optional*, defaults to `1e-5`): AdamW learning rate.
        max_length (`int`, *optional*): texts longer than this many tokens keep their *last* `max_length` tokens,
            so the response is always seen and the start of a long prompt is dropped. Defaults to the model's
            `max_position_embeddings` when it has one.
        label_smoothing (`float`, *optional*, defaults to `0.0`): see the module docstring.
        gradient_penalty (`float`, *optional*, defaults to `0.0`): see the module docstring.
        replay_buffer_size (`int`, *optional*, defaults to `0`): see the module docstring.
        seed (`int`, *optional*, defaults to `0`): seeds the replay buffer's draws.
        max_grad_norm (`float`, *optional*): clip the gradient's norm to this before each step (off by default).
        autocast_dtype (`torch.dtype`, *optional*): run the forward under `torch.autocast` in this dtype (the
            policy's mixed precision, `torch.bfloat16`); the trainable parameters are float32 whatever the
            checkpoint's dtype, so that small updates are not rounded away.
        micro_batch_size (`int`, *optional*): forward and backward this many samples of a class at a time and
            accumulate the gradients (the step is the same up to float rounding); default: each class at once.
        adapter_name (`str`, *optional*): the discriminator's own adapter on a PEFT model it shares with the policy,
            so that one base model serves both: only this adapter is trained, and it is made the active adapter
            (in eval mode) for the discriminator's forwards and backwards only, then the policy's is restored.
    """

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
    ):
        self._check_model(model)
        if adapter_name is not None:
            from peft import PeftModel

            if not isinstance(model, PeftModel) or adapter_name not in model.peft_config:
                raise ValueError(
                    f"`adapter_name={adapter_name!r}` names the discriminator's adapter on a PEFT model shared with "
                    f"the policy, but the model ({type(model).__name__}) has no adapter of that name."
                )
            if gradient_penalty > 0:
                raise ValueError(
                    "The gradient penalty needs eager attention, which would change the attention of the policy "
                    "sharing this model: set the gradient penalty to 0 or give the discriminator its own model."
                )
        self.adapter_name = adapter_name
        if tokenizer.pad_token_id is None:
            raise ValueError(
                f"The discriminator's tokenizer ({type(tokenizer).__name__}, {tokenizer.name_or_path!r}) has no "
                "padding token, which batches of texts of different lengths need. Set one, for example "
                "`tokenizer.pad_token = tokenizer.eos_token`, and pass the tokenizer as "
                "`discriminator_processing_class`."
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing}.")
        # Dropout stays off, in training too: the logits of an update's forward are then exactly the discriminator's
        # scores before its step, which spares the reward a second forward on the same samples. Label smoothing and
        # the gradient penalty are the regularisers instead. (On a model shared with the policy, only while in use.)
        if adapter_name is None:
            model.eval()
        if gradient_penalty > 0:
            # The penalty differentiates through the gradient (double backward), which the fused SDPA and flash
            # attention kernels do not implement
            model.set_attn_implementation("eager")
        self.model = model
        self.tokenizer = tokenizer
        # A decoder classifier scores the last non-padding token, which it finds through the config's pad token
        model.config.pad_token_id = tokenizer.pad_token_id
        # Trainable parameters in float32, as mixed precision keeps its master weights: in bf16 an AdamW step of
        # 1e-5 is below half a unit in the last place of most weights and rounds away (88% of a bf16 checkpoint's
        # weights were unchanged after one update), and an fp16 checkpoint overflowed to NaN in its first step
        for param in self.trainable_parameters():
            if param.is_floating_point() and param.dtype != torch.float32:
                param.data = param.data.float()
        self.autocast_dtype = autocast_dtype
        self.max_grad_norm = max_grad_norm
        self.micro_batch_size = micro_batch_size
        self._check_output_shape(model)
        if max_length is None:
            max_length = getattr(model.config, "max_position_embeddings", None)
        self.max_length = max_length
        self.label_smoothing = label_smoothing
        self.gradient_penalty = gradient_penalty
        self.replay_buffer_size = replay_buffer_size
        self.replay_buffer: list[str] = []
        self._rng = random.Random(seed)
        self.learning_rate = learning_rate
        self.optimizer = self._new_optimizer()
        # Whether `shard` has split the weights across processes (FSDP2)
        self.sharded = False

    # One logit per sample (False) or one per response token (True)
    token_level = False

    def _check_model(self, model: PreTrainedModel) -> None:
        if model.config.num_labels != 1:
            raise ValueError(
                f"The discriminator must output one logit (`num_labels=1`), but its config has "
                f"`num_labels={model.config.num_labels}`. Load it with "
                "`AutoModelForSequenceClassification.from_pretrained(..., num_labels=1)`."
            )

    # The shape of the model's logits on one sequence of `T` tokens, and the class that gives it
    _expected_logits = ("(1, 1)", "AutoModelForSequenceClassification", "discriminator_level='sequence'")

    def _output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return tuple(logits.shape) == (1, 1)

    @_with_own_adapter
    @torch.no_grad()
    def _check_output_shape(self, model: PreTrainedModel) -> None:
        """A model with another head than the level needs fails here, by name, rather than as a shape error later."""
        if self._on_meta_device():
            return  # no values to run: process 0, which has them, checks
        length = 4
        device = next(model.parameters()).device
        input_ids = torch.arange(1, length + 1, device=device)[None] % model.config.vocab_size
        logits = model(input_ids=input_ids).logits
        if not self._output_shape_ok(logits, length):
            shape, auto_class, level = self._expected_logits
            raise ValueError(
                f"The discriminator ({type(model).__name__}) gives logits of shape {tuple(logits.shape)} on one "
                f"sequence of {length} tokens, but {level} needs {shape}: load it with "
                f"`{auto_class}.from_pretrained(..., num_labels=1)`, or set the discriminator level and type that "
                "match it."
            )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trainable_parameters(), lr=self.learning_rate)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the discriminator trains: its model's trainable parameters, or its own adapter's on a shared model."""
        if self.adapter_name is None:
            return [param for param in self.model.parameters() if param.requires_grad]
        return [param for name, param in self.model.named_parameters() if f".{self.adapter_name}." in name]

    @contextmanager
    def _own_adapter(self):
        """
        On a model shared with the policy: the discriminator's adapter active (and trainable), in eval mode, for
        a forward and its backward; then the policy's adapter and mode as they were. Otherwise nothing.
        """
        if self.adapter_name is None or self.model.active_adapter == self.adapter_name:
            yield
            return
        previous, was_training = self.model.active_adapter, self.model.training
        self.model.set_adapter(self.adapter_name)
        self.model.eval()
        try:
            yield
        finally:
            self.model.set_adapter(previous)
            self.model.train(was_training)

    def _on_meta_device(self) -> bool:
        return any(tensor.is_meta for tensor in [*self.model.parameters(), *self.model.buffers()])

    def to(self, device: torch.device | str) -> "Discriminator":
        """
        Move the model to `device`. A model whose weights are on the meta device (FSDP's ram-efficient loading leaves
        them there on every process but the first) gets empty storage here, filled by [`synchronize`] from process 0.
        """
        if not self._on_meta_device():
            self.model.to(device)
        elif _world_size() > 1 and dist.get_rank() != 0:
            self.model.to_empty(device=device)
            # Leaving the meta device makes new parameter objects: the optimizer must hold those
            self.optimizer = self._new_optimizer()
        else:
            raise ValueError(
                "The discriminator's weights are on the meta device (a `from_pretrained` under FSDP's "
                "`cpu_ram_efficient_loading`, or `device_map='meta'`), and no other process has them to send: load "
                "the discriminator with its weights on process 0, or turn `fsdp_cpu_ram_efficient_loading` off."
            )
        return self

    def synchronize(self) -> None:
        """
        Make every process's replica equal to process 0's: heads initialised after a per-rank seed differ, and
        replicas loaded on the meta device (see [`to`]) have no values yet. Buffers too (rotary frequencies).
        """
        if _world_size() > 1 and not self.sharded:  # sharded weights were made from equal replicas (see `shard`)
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def shard(self, mesh=None) -> "Discriminator":
        """
        Split the weights, gradients and AdamW state across processes with FSDP2 (`fully_shard`), as FSDP shards the
        policy: each decoder layer, then the rest of the model, is a unit whose weights are gathered for its forward
        and backward, so that between steps each of `N` processes holds `1/N` of the weights and of the optimizer's
        state instead of a full replica (16 bytes per parameter in float32 with AdamW). The reduce-scatter of the
        backward averages the gradients across processes, in place of the all-reduce of the replicated form.

        From then on every process must call `logits`, `update`, `likelihood_update`, `save_pretrained`,
        `save_state` and `load` together, with batches that take as many forwards (the same number of samples, or
        of micro-batches): each forward gathers weights from every process. The replicas are made equal first
        ([`synchronize`]), since each process keeps its slice of its own copy.

        Args:
            mesh (`torch.distributed.device_mesh.DeviceMesh`, *optional*): the processes to shard across; defaults
                to all of them, on the model's device type.
        """
        from peft import PeftModel
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if isinstance(self.model, PeftModel):
            # Resuming restores adapter weights by their PEFT names, which the sharded form does not map; a LoRA
            # discriminator's trainable state is small, and stays replicated
            raise ValueError("A PEFT (LoRA) discriminator is not sharded: keep it replicated, without `shard`.")
        if self.gradient_penalty > 0:
            raise ValueError(
                "The gradient penalty differentiates through the gradient, which FSDP2's sharded backward does not "
                "support: set `disc_gradient_penalty=0` or keep the discriminator replicated."
            )
        if _world_size() < 2:
            raise ValueError("Sharding the discriminator needs several processes (`torch.distributed` initialised).")
        if self.sharded:
            return self
        self.synchronize()
        mesh = mesh or init_device_mesh(self.device.type, (_world_size(),))
        layer_classes = set(getattr(self.model, "_no_split_modules", None) or [])
        for module in self.model.modules():
            if type(module).__name__ in layer_classes:
                fully_shard(module, mesh=mesh)
        fully_shard(self.model, mesh=mesh)
        self.sharded = True
        # The parameters are now distributed tensors (new objects): the optimizer must hold those
        self.optimizer = self._new_optimizer()
        return self

    def _model_inputs(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The model's inputs for `texts`, and which positions' logits are used: `None` for the pooled one."""
        previous_side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"  # keep the end: the response
        try:
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                return_tensors="pt",
                add_special_tokens=True,
            )
        finally:
            self.tokenizer.truncation_side = previous_side
        return {key: value.to(self.device) for key, value in batch.items()}, None

    def _num_logits(self, samples: list) -> int:
        """How many logits `samples` get: one each."""
        return len(samples)

    def _select(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor], positions: torch.Tensor | None):
        """The logits among the model's outputs: `(N, 1)` pooled, or `(N, T, 1)` per token and `positions` scored."""
        return outputs[:, 0] if positions is None else outputs[..., 0][positions]

    def _forward(self, samples: list, capture_embeddings: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (one per sample, or one per scored token) and, if asked, the input embeddings they come from."""
        batch, positions = self._model_inputs(samples)

        def select(outputs):
            return self._select(outputs.float(), batch, positions)

        if not capture_embeddings:
            with self._autocast():
                return select(self.model(**batch).logits), None
        # Captured from the embedding layer rather than passed as `inputs_embeds`: classifiers pool at a position
        # they find from `input_ids` (the last non-padding token of a decoder, the first token of an encoder)
        captured = []

        def capture(module, args, output):
            if not output.requires_grad:  # frozen embeddings (PEFT)
                output = output.detach().requires_grad_(True)
            captured.append(output)
            return output

        handle = self.model.get_input_embeddings().register_forward_hook(capture)
        try:
            with self._autocast():
                logits = select(self.model(**batch).logits)
        finally:
            handle.remove()
        return logits, captured[0]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    @_with_own_adapter
    @torch.no_grad()
    def logits(self, texts: list[str], logit_offsets: torch.Tensor | None = None) -> torch.Tensor:
        """
        Expert-is-high logits of `texts`, shape `(len(texts),)`, float32, without gradient: the model's output plus
        `logit_offsets` if given (AIRL's `-beta log pi`).
        """
        logits = self._forward(texts)[0].float()
        return logits if logit_offsets is None else logits + logit_offsets.to(logits.device)

    @_with_own_adapter
    def update(
        self,
        expert_texts: list[str],
        policy_texts: list[str],
        expert_logit_offsets: torch.Tensor | None = None,
        policy_logit_offsets: torch.Tensor | None = None,
        return_policy_logits: bool = False,
    ) -> dict[str, float] | tuple[dict[str, float], torch.Tensor]:
        """
        One optimizer step on demonstrations (label 1) against policy samples (label 0).

        With several processes, each process passes its own samples; gradients and statistics are averaged across
        processes, so the replicas stay identical.

        Args:
            expert_texts (`list[str]`): demonstrations.
            policy_texts (`list[str]`): fresh policy samples (replayed ones are added here when the buffer is on).
            expert_logit_offsets, policy_logit_offsets (`torch.Tensor`, *optional*): added to the model's outputs to
                make the logits, one per text (AIRL's `-beta log pi`); the loss and statistics use the sums. Not
                supported with the replay buffer, whose samples have no offsets.
            return_policy_logits (`bool`, *optional*, defaults to `False`): also return the logits of
                `policy_texts` before the step, equal to `logits(policy_texts)` called before `update`.

        Returns:
            `dict[str, float]`: statistics of this update's batch, computed before the step: `loss`, `acc`,
            `acc_expert`, `acc_policy`, `entropy`, `logit_expert`, `logit_policy`, `grad_norm` (the gradient's norm
            before clipping; and `gradient_penalty` when on). With `return_policy_logits=True`, a tuple of these and
            the `(len(policy_texts),)` logits.
        """
        if not expert_texts or not policy_texts:
            raise ValueError(
                f"A discriminator update needs both classes, got {len(expert_texts)} demonstrations and "
                f"{len(policy_texts)} policy samples."
            )
        if policy_logit_offsets is not None and self.replay_buffer_size > 0:
            raise ValueError("Logit offsets are not supported with the replay buffer: replayed samples have none.")
        replayed = self._rng.sample(self.replay_buffer, min(len(policy_texts), len(self.replay_buffer)))
        # Labels: expert is one (smoothed towards 1/2 by `label_smoothing`)
        expert_target = 1.0 - self.label_smoothing / 2
        policy_target = self.label_smoothing / 2
        self.optimizer.zero_grad(set_to_none=True)
        # Each class's loss is a mean over its logits, accumulated over micro-batches as sums divided by the whole
        # count, so that micro-batching changes the memory needed and not the step
        logits_expert, penalty = self._accumulate(
            expert_texts, expert_logit_offsets, expert_target, with_penalty=self.gradient_penalty > 0
        )
        logits_policy, _ = self._accumulate(policy_texts + replayed, policy_logit_offsets, policy_target)
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(logits_expert, torch.full_like(logits_expert, expert_target))
            + F.binary_cross_entropy_with_logits(logits_policy, torch.full_like(logits_policy, policy_target))
        )
        stats = {}
        if penalty is not None:
            loss = loss + self.gradient_penalty * penalty
            stats["gradient_penalty"] = penalty

        grad_norm = self._step(loss, self.optimizer)

        if self.replay_buffer_size > 0:
            self.replay_buffer = (self.replay_buffer + policy_texts)[-self.replay_buffer_size :]

        with torch.no_grad():
            probs = torch.cat([logits_expert, logits_policy]).sigmoid()
            separation = classification_statistics(logits_expert, logits_policy)
            stats.update(
                loss=loss.detach(),
                acc=separation["acc"],
                acc_expert=separation["acc_expert"],
                acc_policy=separation["acc_policy"],
                entropy=F.binary_cross_entropy(probs, probs).mean(),  # mean binary entropy of D
                logit_expert=logits_expert.mean(),
                logit_policy=logits_policy.mean(),
                grad_norm=grad_norm.detach().to(logits_expert.device),
            )
            values = torch.stack(list(stats.values())).to(self.device)
            world_size = _world_size()
            if world_size > 1:
                dist.all_reduce(values, op=dist.ReduceOp.SUM)
                values /= world_size
        stats = dict(zip(stats, values.tolist(), strict=True))
        if return_policy_logits:
            return stats, logits_policy[: self._num_logits(policy_texts)].detach()
        return stats

    def _step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None
    ) -> torch.Tensor:
        """
        Average the accumulated gradients across processes, clip them to `max_grad_norm` (default: the
        discriminator's own) and step `optimizer`, unless `loss` or the gradient is not finite on any process (then
        every process skips the step and raises). Returns the gradient's norm before clipping.
        """
        max_grad_norm = max_grad_norm or self.max_grad_norm
        world_size = _world_size()
        trainable = [param for param in self.trainable_parameters() if param.grad is not None]
        if world_size > 1 and not self.sharded:  # sharded, the backward's reduce-scatter has averaged them
            for param in trainable:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad /= world_size
        # The norm before clipping, as `Trainer` logs `grad_norm`; of the averaged gradient, so equal on every process
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm or float("inf"))
        if isinstance(grad_norm, DTensor):  # sharded: the norm over every process's slices
            grad_norm = grad_norm.full_tensor()
        finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).float().to(self.device)
        if world_size > 1:
            # Every process refuses the step together, or the others would wait for it forever
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"The discriminator's loss ({loss.item()}) or gradient norm ({grad_norm.item()}) is not finite on "
                "this batch; its step was skipped, so its weights are those of the last finite step. The logits "
                "diverged: lower `disc_learning_rate`, train in float32 or bf16 rather than fp16, or add "
                "`disc_gradient_penalty`; then resume from the last checkpoint."
            )
        optimizer.step()
        return grad_norm

    def _accumulate(
        self, samples: list, logit_offsets: torch.Tensor | None, target: float, with_penalty: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Forward and backward `samples`, `micro_batch_size` at a time, for half the class-balanced cross-entropy
        towards `target` (and, with `with_penalty`, the gradient penalty's share). Gradients accumulate in the
        parameters. Returns the logits, detached, and the penalty (without its weight) or `None`.
        """
        num_logits = self._num_logits(samples)
        size = self.micro_batch_size or len(samples)
        logits, penalty, start = [], torch.zeros((), device=self.device), 0
        for first in range(0, len(samples), size):
            chunk = samples[first : first + size]
            chunk_logits, embeddings = self._forward(chunk, capture_embeddings=with_penalty)
            count = self._num_logits(chunk)
            if logit_offsets is not None:
                chunk_logits = chunk_logits + logit_offsets[start : start + count].to(chunk_logits.device)
            start += count
            targets = torch.full_like(chunk_logits, target)
            loss = 0.5 * F.binary_cross_entropy_with_logits(chunk_logits, targets, reduction="sum") / num_logits
            if with_penalty:
                (gradients,) = torch.autograd.grad(chunk_logits.sum(), embeddings, create_graph=True)
                chunk_penalty = gradients.pow(2).sum(dim=(1, 2)).sum() / len(samples)  # a mean over samples
                loss = loss + self.gradient_penalty * chunk_penalty
                penalty = penalty + chunk_penalty.detach()
            loss.backward()
            logits.append(chunk_logits.detach())
        return torch.cat(logits), (penalty if with_penalty else None)

    def save_pretrained(self, directory: str | Path, is_main_process: bool = True) -> None:
        """
        The model (safetensors and config) and tokenizer, loadable with `from_pretrained(directory)`, written by the
        process with `is_main_process`. Sharded (see [`shard`]), every process must call it: the full weights are
        gathered from all of them.
        """
        state_dict = None
        if self.sharded:
            state_dict = get_model_state_dict(self.model, options=_FULL_ON_CPU)
            # Gathered, a tied weight (a head tied to the input embeddings) comes once per name, as separate copies:
            # keep its first name only, as `save_pretrained` writes an unsharded tied model
            parameters = dict(self.model.named_parameters(remove_duplicate=False))
            first_name = {}
            for name, param in parameters.items():
                first_name.setdefault(id(param), name)
            state_dict = {
                name: tensor
                for name, tensor in state_dict.items()
                if name not in parameters or first_name[id(parameters[name])] == name
            }
        if not is_main_process:
            return
        if self.adapter_name is not None:
            # Only its own adapter, as a PEFT adapter of the shared base (PEFT would put a second adapter in a
            # subfolder named after it): `AutoPeftModelForCausalLM.from_pretrained(directory)` loads q_phi
            from peft.utils import get_peft_model_state_dict
            from safetensors.torch import save_file

            Path(directory).mkdir(parents=True, exist_ok=True)
            weights = get_peft_model_state_dict(self.model, adapter_name=self.adapter_name)
            save_file(
                {name: tensor.contiguous() for name, tensor in weights.items()},
                Path(directory) / "adapter_model.safetensors",
                metadata={"format": "pt"},
            )
            self.model.peft_config[self.adapter_name].save_pretrained(directory)
        else:
            self.model.save_pretrained(directory, state_dict=state_dict)
        self.tokenizer.save_pretrained(directory)

    def save_state(self, directory: str | Path, process_index: int = 0) -> None:
        """
        What resuming needs beyond the weights: the optimizer, the replay buffer and its random state.

        Each process calls it with its own index: the optimizer is the same on every process (gradients are averaged)
        and process 0 writes it (sharded, gathered from every process and keyed by parameter name); the replay buffer
        and the random state are each process's own, so every other process writes its own file
        (`process_state_file(index)`), as `Trainer` writes one random state per process.
        """
        state = {"replay_buffer": self.replay_buffer, "rng_state": self._rng.getstate()}
        optimizer_state = (
            get_optimizer_state_dict(self.model, self.optimizer, options=_FULL_ON_CPU)
            if self.sharded
            else self.optimizer.state_dict()
        )
        if process_index == 0:
            state["optimizer"] = optimizer_state
            state["sharded"] = self.sharded
        torch.save(state, Path(directory) / process_state_file(process_index))

    def load(self, directory: str | Path, process_index: int = 0) -> None:
        """
        Restore weights and training state written by `save_pretrained` and `save_state` to `directory`; the replay
        buffer and random state are those `process_index` saved.

        The state file is read with `torch.load(weights_only=True)`: a checkpoint downloaded from someone else cannot
        run code when it is resumed. A missing, corrupt or crafted file is refused with an error naming it.
        """
        from peft import PeftModel, set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        is_peft = isinstance(self.model, PeftModel)
        weights_file = directory / ("adapter_model.safetensors" if is_peft else "model.safetensors")
        state_file = directory / STATE_FILE
        process_file = directory / process_state_file(process_index)
        for path in dict.fromkeys((weights_file, state_file, process_file)):
            if not path.is_file():
                more_processes = " with more processes than it was written with," if path == process_file else ""
                raise FileNotFoundError(
                    f"The discriminator checkpoint {directory} has no {path.name}: it is incomplete (an interrupted "
                    f"save),{more_processes} or was not written by trl-irl. Resume from another checkpoint"
                    + (", or with as many processes as wrote it." if more_processes else ".")
                )
        try:
            weights = load_file(weights_file, device=str(self.device))
        except Exception as error:
            raise ValueError(f"Cannot restore the discriminator: {weights_file} is corrupt ({error}).") from error
        shared_state = self._read_state(state_file, {"optimizer", "replay_buffer", "rng_state"})
        own_state = (
            shared_state
            if process_file == state_file
            else self._read_state(process_file, {"replay_buffer", "rng_state"})
        )
        written_sharded = shared_state.get("sharded", False)  # absent from checkpoints older than sharding
        if written_sharded != self.sharded:
            form = {True: "sharded", False: "replicated"}
            raise ValueError(
                f"The discriminator checkpoint {directory} was written by a {form[written_sharded]} "
                f"discriminator, and this one is {form[self.sharded]}: its optimizer state does not fit. Resume "
                "with the same FSDP setting (under FSDP2 the discriminator is sharded, otherwise replicated)."
            )
        if is_peft:
            set_peft_model_state_dict(self.model, weights, adapter_name=self.adapter_name or "default")
        else:
            # Not strict: `save_pretrained` writes a tied weight once (a language model's head tied to its input
            # embeddings, as in most small checkpoints), and loading the one written fills both
            if self.sharded:
                options = StateDictOptions(full_state_dict=True, strict=False)
                missing, unexpected = set_model_state_dict(self.model, weights, options=options)
            else:
                missing, unexpected = self.model.load_state_dict(weights, strict=False)
            missing = self._untied(missing, weights)
            if missing or unexpected:
                raise ValueError(
                    f"Cannot restore the discriminator: {weights_file} does not fit its model (missing "
                    f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); it was saved from another "
                    "architecture or discriminator type. Resume with the settings that wrote the checkpoint."
                )
        if self.sharded:
            set_optimizer_state_dict(
                self.model, self.optimizer, shared_state["optimizer"], options=StateDictOptions(full_state_dict=True)
            )
        else:
            self.optimizer.load_state_dict(shared_state["optimizer"])
        self.replay_buffer = own_state["replay_buffer"]
        self._rng.setstate(own_state["rng_state"])

    def _untied(self, missing: list[str], weights: dict) -> list[str]:
        """The `missing` weights that are not tied to (the same parameter as) a weight in `weights`."""
        parameters = dict(self.model.named_parameters(remove_duplicate=False))
        loaded = {id(parameters[name]) for name in weights if name in parameters}
        return [name for name in missing if name not in parameters or id(parameters[name]) not in loaded]

    @staticmethod
    def _read_state(path: Path, keys: set[str]) -> dict:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
            if not isinstance(state, dict) or not keys <= set(state):
                raise ValueError(f"it lacks some of {sorted(keys)}")
        except Exception as error:
            reason = str(error).strip().splitlines()[0]
            raise ValueError(
                f"Cannot restore the discriminator: {path} is corrupt, crafted or not a trl-irl discriminator "
                f"state ({type(error).__name__}: {reason}). It is loaded with `weights_only=True`, so a file that "
                "would run code when loaded is refused; resume from a checkpoint you wrote."
            ) from error
        return state


class TokenDiscriminator(Discriminator):
    r"""
    A state-action discriminator: one logit per response token, `l_t = D(x, y_<=t)`, from a causal backbone.

    Samples are `(prompt_ids, response_ids)` pairs of token ids in the policy's vocabulary (the discriminator must
    share the policy's tokenizer, so that its logits align with the policy's tokens). The logit at a response token's
    position sees the prompt, the earlier response tokens and the token itself: the state `s_t = (x, y_<t)` and the
    action `a_t = y_t` (Eq. 17-18, 22 of arXiv 2403.12017). `logits` and `update` work on the flat sequence of
    response-token logits, sample after sample; the loss balances expert and policy tokens, and the statistics are
    per token.

    Args:
        model: a token classifier with `num_labels=1` on a causal backbone, for example
            `AutoModelForTokenClassification.from_pretrained(policy_checkpoint, num_labels=1)`. A bidirectional
            encoder is refused: its logit at a token would see the tokens after it.
        Others as [`Discriminator`]. Prompts longer than `max_length` lose their first tokens; a response longer than
        `max_length` is an error.
    """

    token_level = True
    # Prompt tokens a window must keep besides the response (a next-token model needs one to score the first)
    _min_prompt_tokens = 0
    _expected_logits = ("(1, T, 1)", "AutoModelForTokenClassification", "discriminator_level='token'")

    def _output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return tuple(logits.shape) == (1, length, 1)

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if not self._on_meta_device() and not self._is_causal():
            raise ValueError(
                f"A token-level discriminator needs a causal backbone, but {type(model).__name__} lets a token's "
                "logit see the tokens after it (changing the last token changed the earlier logits). Use a decoder "
                "(for example the policy's own checkpoint) or `discriminator_level='sequence'`."
            )

    @_with_own_adapter
    @torch.no_grad()
    def _is_causal(self) -> bool:
        generator = torch.Generator().manual_seed(0)
        input_ids = torch.randint(0, self.model.config.vocab_size, (1, 8), generator=generator).to(self.device)
        changed = input_ids.clone()
        changed[0, -1] = (changed[0, -1] + 1) % self.model.config.vocab_size
        before = self.model(input_ids=input_ids).logits[0, :-1]
        after = self.model(input_ids=changed).logits[0, :-1]
        return torch.allclose(before, after, atol=1e-5)

    def _num_logits(self, samples: list) -> int:
        """How many logits `samples` get: one per response token."""
        return sum(len(response_ids) for _, response_ids in samples)

    def _model_inputs(self, samples: list) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        prompts, responses = [], []
        for prompt_ids, response_ids in samples:
            if self.max_length is not None:
                if len(response_ids) + self._min_prompt_tokens > self.max_length:
                    raise ValueError(
                        f"A response of {len(response_ids)} tokens does not fit the discriminator's window "
                        f"(`disc_max_length` {self.max_length}): lower `max_completion_length` or raise the window."
                    )
                prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(response_ids) - self.max_length) :]
            prompts.append(prompt_ids)
            responses.append(response_ids)
        return prompt_response_batch(prompts, responses, self.tokenizer.pad_token_id, self.device)  # (N, T) each


class LikelihoodRatioDiscriminator(TokenDiscriminator):
    r"""
    A discriminator whose logit is a likelihood ratio: `l(x, y) = log q_phi(y | x) - log pi(y | x)`, with `q_phi` a
    causal language model.

    This is AIRL's structure `f_theta - beta log pi` with `f_theta = log q_phi` and `beta = 1`. Initialised from the
    policy's own (SFT) checkpoint, `l = 0` as long as the policy has not moved, and the discriminator starts with the
    SFT model's knowledge of the task instead of a fresh classification head. Trained with the same class-balanced
    cross-entropy, its optimum is `q_phi = p_exp` (where `l = log p_exp - log pi`, Eq. 16), so `q_phi` is the
    recovered expert and `log q_phi` its reward.

    The model outputs only `log q_phi`; the trainer adds `-log pi` as the logit offset (`Discriminator.update`'s
    `*_logit_offsets`). Sequence level: `log q_phi(y | x)`, the sum over the response's tokens; token level
    (`token_level=True`): one `log q_phi(y_t | x, y_<t)` per response token, so that `l_t` is the per-token log-ratio
    and the sequence logit is the sum of the token logits.

    Samples are `(prompt_ids, response_ids)` pairs in the policy's tokens (`q_phi` must share its tokenizer).

    Args:
        model: a causal language model (for example `AutoModelForCausalLM.from_pretrained(sft_checkpoint)`); a PEFT
            model is accepted.
        tokenizer: the policy's tokenizer.
        token_level (`bool`, *optional*, defaults to `False`): one logit per response token rather than per response.
        temperature (`float`, *optional*, defaults to `1.0`): `q_phi`'s logits are divided by it, as the policy's are
            when its `log pi` is taken at the sampling temperature, so that `l = 0` where `q_phi` is the policy.
        Others as [`Discriminator`].
    """

    _min_prompt_tokens = 1

    def _output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return logits.dim() == 3 and logits.shape[:2] == (1, length)  # a distribution over the vocabulary per token

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        token_level: bool = False,
        temperature: float = 1.0,
        **kwargs,
    ):
        self.token_level = token_level
        self.temperature = temperature
        super().__init__(model, tokenizer, **kwargs)

    def _check_model(self, model: PreTrainedModel) -> None:
        if model.get_output_embeddings() is None:
            raise ValueError(
                f"A likelihood-ratio discriminator is a causal language model, but {type(model).__name__} has no "
                "language-modelling head. Load it with `AutoModelForCausalLM` (by default the policy's checkpoint), "
                "or use `discriminator_type='classifier'` for a sequence or token classifier."
            )

    def _num_logits(self, samples: list) -> int:
        """How many logits `samples` get: one per response token (token level) or one per response."""
        return super()._num_logits(samples) if self.token_level else len(samples)

    def _select(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
        token_log_probs, scored = response_token_log_probs(  # (N, T - 1) each
            outputs, batch["input_ids"], positions, self.temperature
        )
        if self.token_level:
            return token_log_probs[scored]  # (total response tokens,)
        return (token_log_probs * scored).sum(dim=1)  # (N,)

    @_with_own_adapter
    def likelihood_update(
        self, demonstrations: list, optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None
    ) -> float:
        """
        One maximum-likelihood step of `q_phi` on `demonstrations` (`(prompt_ids, response_ids)` pairs), as SFT takes
        one on their responses: the loss is the mean negative log-likelihood per response token, its gradient averaged
        across processes and clipped to `max_grad_norm` (default: the discriminator's). Used to pre-train `q_phi`
        before the policy moves, with its own `optimizer`, so that the discriminator starts knowing more about the
        demonstrations than the policy (`disc_pretraining_steps`). Returns the loss of this process's batch, before
        the step.
        """
        optimizer.zero_grad(set_to_none=True)
        num_tokens = self._num_response_tokens(demonstrations)
        size = self.micro_batch_size or len(demonstrations)
        total = torch.zeros((), device=self.device)
        for first in range(0, len(demonstrations), size):
            # The logits are `log q_phi` per response token or summed per response: their sum is the same either way
            loss = -self._forward(demonstrations[first : first + size])[0].sum() / num_tokens
            loss.backward()
            total = total + loss.detach()
        self._step(total, optimizer, max_grad_norm)
        return total.item()

    @_with_own_adapter
    @torch.no_grad()
    def negative_log_likelihood(self, demonstrations: list) -> float:
        """Mean negative log-likelihood per response token of `demonstrations` under `q_phi`, without gradient."""
        size = self.micro_batch_size or len(demonstrations)
        total = sum(
            -self._forward(demonstrations[first : first + size])[0].sum().item()
            for first in range(0, len(demonstrations), size)
        )
        return total / self._num_response_tokens(demonstrations)

    def _num_response_tokens(self, samples: list) -> int:
        count = TokenDiscriminator._num_logits(self, samples)  # one per response token, whatever the level
        if count == 0:
            raise ValueError("These demonstrations have no response tokens to fit `q_phi` to.")
        return count
