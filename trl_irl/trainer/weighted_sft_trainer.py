from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainingArguments
from trl import SFTTrainer

from ..checkpoints import ResumesFromCompleteCheckpoints
from ..token_weighting import token_weights
from .model_cards import SFT_AS_IRL_CITATION
from .model_loading import check_tokenizer_given
from .row_checks import check_rows_kept, check_sft_rows
from .trl_parents import check_dataset_columns, resolve_config
from .weighted_sft_config import WeightedSFTConfig


class WeightedSFTTrainer(ResumesFromCompleteCheckpoints, SFTTrainer):
    r"""
    SFT whose per-token weights make it forward-KL matching of the state-action occupancy (arXiv 2403.12017, Eq. 12).

    A drop-in for [`~trl.SFTTrainer`]: same constructor, same datasets (language modelling, prompt-completion,
    conversational), same collators, packing, padding-free batches, PEFT, gradient accumulation and logged metrics.
    The only difference is the loss: token `t` (0-indexed) of an `n`-token completion (or assistant turn, or sequence)
    weighs `(n - t) / n` (`token_weighting="occupancy"`, optionally discounted by `occupancy_gamma`), and the weighted
    negative log-likelihood is reduced exactly as SFT reduces the unweighted one. With `token_weighting="uniform"` it
    reproduces `SFTTrainer` exactly.

    Why: SFT maximises the likelihood of whole demonstrations, which matches the expert's trajectory distribution.
    Matching its *state-action occupancy* instead counts the log-likelihood of every prefix once per state it leads
    to, so token `t` is counted `n - t` times: early tokens weigh more, because an early error compounds through
    every later state.

    How: [`~trl.SFTTrainer`] computes the loss from the per-token log-probabilities its fused LM head returns. A
    forward hook on the model multiplies those log-probabilities by the weights, which it derives from the `labels`
    and `position_ids` the forward already receives, so the weights do not depend on padding or packing. The hook is
    active only inside [`compute_loss`], and after each call the loss is checked against the weighted
    log-probabilities: should a future TRL compute the loss another way, training stops with an error instead of
    silently going unweighted.

    Args:
        args ([`WeightedSFTConfig`], [`~trl.SFTConfig`] or [`~transformers.TrainingArguments`], *optional*):
            The last two get the default weighting (`"occupancy"`).
        model, data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        optimizer_cls_and_kwargs, preprocess_logits_for_metrics, quantization_config, peft_config, formatting_func:
            As in [`~trl.SFTTrainer`].
        compute_loss_func:
            Not supported (must be `None`): a custom loss bypasses the token weights.
    """

    _tag_names = ["trl", "sft", "trl-irl", "weighted-sft"]
    _name = "WeightedSFT"
    _paper = {
        "title": "Supervised Fine-Tuning as Inverse Reinforcement Learning",
        "id": "2403.12017",
        "citation": SFT_AS_IRL_CITATION,
    }

    def __init__(
        self,
        model,
        args: WeightedSFTConfig | TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_loss_func: Callable | None = None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics=None,
        quantization_config=None,
        peft_config=None,
        formatting_func=None,
    ):
        # An `SFTConfig` from an existing SFT script keeps every value and gets the default weighting
        args = resolve_config(args, model, WeightedSFTConfig, "WeightedSFT")
        if compute_loss_func is not None:
            raise ValueError(
                "`compute_loss_func` is not supported by `WeightedSFTTrainer`: a custom loss bypasses the token "
                "weights. Use `SFTTrainer` for a custom loss."
            )

        check_tokenizer_given(model, processing_class)
        if formatting_func is None:
            # The formats `SFTTrainer` reads (it fails on others with a `KeyError` on `text`)
            formats = [(args.dataset_text_field,), ("prompt", "completion"), ("messages",), ("input_ids",)]
            check_dataset_columns(train_dataset, "train_dataset", formats, "supervised fine-tuning")
            check_dataset_columns(eval_dataset, "eval_dataset", formats, "supervised fine-tuning")
            check_sft_rows(train_dataset, "train_dataset", args.dataset_text_field)
            check_sft_rows(eval_dataset, "eval_dataset", args.dataset_text_field)

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )

        if not args.packing:  # packing changes the number of rows
            check_rows_kept(train_dataset, self.train_dataset, "train_dataset", "SFTTrainer", args.max_length)
        if self.aux_loss_enabled:
            raise ValueError(
                "The MoE load-balancing auxiliary loss is not supported by `WeightedSFTTrainer` yet: the check that "
                "the loss is the weighted one does not account for it. Set `router_aux_loss_coef=0.0`."
            )
        parallelism_config = self.accelerator.parallelism_config
        if parallelism_config is not None and (parallelism_config.cp_enabled or parallelism_config.sp_enabled):
            raise ValueError(
                "Context and sequence parallelism are not supported by `WeightedSFTTrainer`: they shard each "
                "sequence across processes, so a token's position inside its completion is unknowable on any one "
                "of them. Disable `parallelism_config`'s `cp_size` / `sp_size`."
            )

        # Set by `compute_loss` around the parent's call, read by the hook: other forwards (generation, evaluation
        # with logits, user code) see the model's own outputs
        self._token_weighting_active = False
        self._weighted_forwards: list[tuple[torch.Tensor, torch.Tensor]] = []
        # `self.model` is what `compute_loss` receives, or what the accelerate wrapper calls (DDP, FSDP, DeepSpeed),
        # and with PEFT it is the `PeftModel`, whose own forward calls the base model's `forward` directly, so a hook
        # on the base model would not fire
        self.model.register_forward_hook(self._weight_log_probs, with_kwargs=True)

    def _weight_log_probs(self, module, args, kwargs, outputs):
        if not (self._token_weighting_active and kwargs.get("fused_lm_head")):
            return None
        if kwargs.get("shift_labels") is not None:
            raise RuntimeError(
                "The forward received pre-shifted `shift_labels` (context or sequence parallelism), whose positions "
                "inside each completion are unknowable; `WeightedSFTTrainer` cannot weight them."
            )
        labels = kwargs["labels"]  # (B, T)
        position_ids = kwargs.get("position_ids")  # (B, T) in padding-free and packed batches
        # The fused LM head scores token t + 1 from position t: align the weights with `labels[:, 1:]`
        weights = token_weights(
            labels[:, 1:],
            None if position_ids is None else position_ids[:, 1:],
            token_weighting=self.args.token_weighting,
            gamma=self.args.occupancy_gamma,
        ).to(outputs.log_probs.device)  # (B, T - 1)
        if weights.shape != outputs.log_probs.shape:
            raise RuntimeError(
                f"The fused LM head returned log-probabilities of shape {tuple(outputs.log_probs.shape)}, but the "
                f"token weights have shape {tuple(weights.shape)}: TRL's fused forward changed how it aligns labels, "
                "and `WeightedSFTTrainer` must be updated for it."
            )
        outputs.log_probs = outputs.log_probs * weights
        self._weighted_forwards.append((outputs.log_probs.detach(), outputs.label_mask.sum()))
        return outputs

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        self._weighted_forwards.clear()
        self._token_weighting_active = True
        try:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        finally:
            self._token_weighting_active = False
        loss = result[0] if return_outputs else result
        self._check_loss_is_weighted(loss, num_items_in_batch)
        return result

    def _check_loss_is_weighted(self, loss: torch.Tensor, num_items_in_batch: torch.Tensor | int | None) -> None:
        """
        Fail loudly unless `loss` is the weighted negative log-likelihood of the one fused forward of this step.

        This restates `SFTTrainer.compute_loss`'s reduction (TRL 1.16). It is the guard against TRL computing the loss
        from something other than the log-probabilities the hook weighted, which would otherwise train plain SFT
        without a word.
        """
        if len(self._weighted_forwards) != 1:
            raise RuntimeError(
                f"`SFTTrainer.compute_loss` ran {len(self._weighted_forwards)} forwards with `fused_lm_head=True` "
                "(expected 1), so the token weights may not have reached the loss. TRL's loss computation changed: "
                "`WeightedSFTTrainer` must be updated for it."
            )
        weighted_log_probs, num_trained_tokens = self._weighted_forwards.pop()
        per_token_loss = -weighted_log_probs
        if self.args.loss_type == "dft":
            per_token_loss = per_token_loss * weighted_log_probs.exp()
        num_tokens = num_trained_tokens if num_items_in_batch is None else num_items_in_batch
        expected = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            expected = expected * (self.accelerator.num_processes // self.get_tp_size())
        if not torch.allclose(loss.detach().float(), expected.float().to(loss.device), rtol=1e-4, atol=1e-6):
            raise RuntimeError(
                f"The loss returned by `SFTTrainer.compute_loss` ({loss.item():.6g}) is not the token-weighted "
                f"negative log-likelihood ({expected.item():.6g}): TRL's loss computation changed and the weights "
                "would be silently dropped. `WeightedSFTTrainer` must be updated for it."
            )
