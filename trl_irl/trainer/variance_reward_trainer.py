import math
import textwrap

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedModel, TrainingArguments, set_seed
from trl import RewardTrainer

from ..checkpoints import ResumesFromCompleteCheckpoints
from .model_cards import SFT_AS_IRL_CITATION
from .model_loading import check_tokenizer_given
from .row_checks import check_preference_rows, check_rows_kept
from .trl_parents import check_dataset_columns, resolve_config
from .variance_reward_config import VarianceRewardConfig


def variance_bradley_terry_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    log_scales_chosen: torch.Tensor | None = None,
    log_scales_rejected: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Bradley-Terry loss with a per-response scale (Eq. 26 of arXiv 2403.12017), averaged over pairs:

        -log sigmoid((R(x, y+) - R(x, y-) - margin) / sqrt((V(x, y+)^2 + V(x, y-)^2) / 2))

    with `V = exp(log_scale)`. Without log-scales, `V = 1` and this is the usual reward-model loss (Eq. 27), computed
    with the very same operations as [`~trl.RewardTrainer`].

    Args:
        rewards_chosen, rewards_rejected (`torch.Tensor` of shape `(B,)`): rewards of the preferred and other response.
        log_scales_chosen, log_scales_rejected (`torch.Tensor` of shape `(B,)`, *optional*): `log V` of each.
        margin (`torch.Tensor` of shape `(B,)`, *optional*): margins, as in `RewardTrainer`.
    """
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin
    if log_scales_chosen is not None:
        # log sqrt((V+^2 + V-^2) / 2), in log space so that large or small scales neither overflow nor vanish
        log_scale = 0.5 * (torch.logaddexp(2 * log_scales_chosen, 2 * log_scales_rejected) - math.log(2.0))
        difference = difference * torch.exp(-log_scale)
    return -F.logsigmoid(difference).mean()


class VarianceRewardTrainer(ResumesFromCompleteCheckpoints, RewardTrainer):
    r"""
    A reward model whose Bradley-Terry likelihood knows how hard each comparison is (arXiv 2403.12017, Appendix A).

    The usual reward model assumes `P(y+ > y-) = sigmoid(R(x, y+) - R(x, y-))`: every comparison is equally noisy.
    Here the model also outputs a per-response scale `V(x, y)`, and `P(y+ > y-) = sigmoid((R+ - R-) / sqrt((V+^2 +
    V-^2) / 2))` (Eq. 26): pairs with large scales count as hard, close to a coin flip whatever the reward gap, so
    they stop pulling the rewards apart.

    The model is an `AutoModelForSequenceClassification` with two outputs: the reward (first output) and `log V`
    (second). The reward comes first so that the saved model works as it is as a reward model in TRL's
    `GRPOTrainer`, which reads the first output: pass it loaded, as
    `reward_funcs=AutoModelForSequenceClassification.from_pretrained(path)` (given a path, GRPO would load it with one
    output). `logits[:, 1].exp()` is the scale. With `learn_variance=False` the model has one output, `V = 1`, and
    training is exactly [`~trl.RewardTrainer`]'s.

    Same datasets (preference pairs, explicit or implicit prompt, standard or conversational), collator, margins,
    `center_rewards_coefficient` (applied to the rewards), PEFT and logged metrics as `RewardTrainer`; the logged
    rewards are the first output. Adds the metric `mean_log_scale`.

    The arguments are [`~trl.RewardTrainer`]'s. A model given as a string is loaded with two outputs (one with
    `learn_variance=False`); a model object must have `num_labels=2` (1 with `learn_variance=False`).
    """

    _tag_names = ["trl", "reward-trainer", "trl-irl", "variance-reward"]
    _name = "VarianceReward"
    _paper = {
        "title": "Supervised Fine-Tuning as Inverse Reinforcement Learning",
        "id": "2403.12017",
        "citation": SFT_AS_IRL_CITATION
        + "\n\n"
        # docstyle-ignore
        + textwrap.dedent("""\
            @article{bradley1952rank,
                title        = {{Rank Analysis of Incomplete Block Designs: I. The Method of Paired Comparisons}},
                author       = {Ralph Allan Bradley and Milton E. Terry},
                year         = 1952,
                journal      = {Biometrika},
                volume       = 39,
                number       = {3/4},
                pages        = {324--345},
            }"""),
    }

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: VarianceRewardConfig | TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics=None,
        quantization_config=None,
        peft_config=None,
    ):
        args = resolve_config(args, model, VarianceRewardConfig, self._name)
        formats = [("chosen", "rejected"), ("chosen_input_ids", "rejected_input_ids")]
        check_tokenizer_given(model, processing_class)
        check_dataset_columns(train_dataset, "train_dataset", formats, "preference")
        check_dataset_columns(eval_dataset, "eval_dataset", formats, "preference")
        check_preference_rows(train_dataset, "train_dataset")
        check_preference_rows(eval_dataset, "eval_dataset")

        num_outputs = 2 if args.learn_variance else 1
        if isinstance(model, str) and args.learn_variance:
            # `RewardTrainer` would load one output; seed as it does, since the head is new
            set_seed(args.seed)
            model_init_kwargs = dict(args.model_init_kwargs or {})
            model_init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
            if quantization_config is not None:
                model_init_kwargs["quantization_config"] = quantization_config
                quantization_config = None  # used; `RewardTrainer` would warn that it is ignored
            model = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, **model_init_kwargs)
            args.model_init_kwargs = None  # used; `RewardTrainer` would warn that they are ignored
        if not isinstance(model, str) and model.config.num_labels != num_outputs:
            raise ValueError(
                f"With `learn_variance={args.learn_variance}` the model needs `num_labels={num_outputs}` (the reward"
                f"{' and its log-scale' if args.learn_variance else ''}), but it has `num_labels="
                f"{model.config.num_labels}`."
            )

        parent_kwargs = {
            "data_collator": data_collator,
            "train_dataset": train_dataset,
            "eval_dataset": eval_dataset,
            "processing_class": processing_class,
            "compute_metrics": compute_metrics,
            "callbacks": callbacks,
            "optimizers": optimizers,
            "optimizer_cls_and_kwargs": optimizer_cls_and_kwargs,
            "preprocess_logits_for_metrics": preprocess_logits_for_metrics,
            "quantization_config": quantization_config,
            "peft_config": peft_config,
        }
        if args.learn_variance:
            # `RewardTrainer` accepts one-output models only: present the config as such while it checks, then
            # restore it, so that the saved config matches the two-output head
            model.config.num_labels = 1
            try:
                super().__init__(model, args, **parent_kwargs)
            finally:
                model.config.num_labels = 2
            # The parent's `compute_loss` then sees the reward alone; the log-scale is kept aside for the loss
            self.model.register_forward_hook(self._split_reward_and_log_scale)
        else:
            super().__init__(model, args, **parent_kwargs)
        check_rows_kept(train_dataset, self.train_dataset, "train_dataset", "RewardTrainer", args.max_length)
        self._log_scales = None

    def _split_reward_and_log_scale(self, module, args, outputs):
        if outputs.logits.shape[-1] != 2:
            raise RuntimeError(
                f"The reward model returned logits of shape {tuple(outputs.logits.shape)}; expected (batch, 2): the "
                "reward and its log-scale."
            )
        self._log_scales = outputs.logits[:, 1]  # (2B,)
        outputs.logits = outputs.logits[:, :1]  # (2B, 1): the reward, as `RewardTrainer` expects
        return outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The parent computes the metrics (on the rewards) and the plain Bradley-Terry loss, which is replaced below
        _, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)  # (B,), (B,)
        log_scales_chosen = log_scales_rejected = None
        if self.args.learn_variance:
            log_scales_chosen, log_scales_rejected = torch.chunk(self._log_scales, chunks=2)  # (B,), (B,)
            mode = "train" if self.model.training else "eval"
            mean_log_scale = self.accelerator.gather_for_metrics(self._log_scales.detach().mean()).mean()
            self._metrics[mode]["mean_log_scale"].append(mean_log_scale.item())
            self._log_scales = None
        loss = variance_bradley_terry_loss(
            rewards_chosen, rewards_rejected, log_scales_chosen, log_scales_rejected, inputs.get("margin")
        )
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        return (loss, outputs) if return_outputs else loss
