import textwrap

from ..rewards import PolicyLogProbOffsets
from .adversarial_trainer import AdversarialTrainer
from .gail_config import GAILConfig
from .model_cards import SFT_AS_IRL_CITATION


class GAILTrainer(AdversarialTrainer):
    r"""
    Generative adversarial imitation of demonstrations, on top of [`~trl.GRPOTrainer`].

    A discriminator learns to tell the expert's responses from the policy's; its logit `l`
    (expert is high) becomes the policy's reward through the chosen divergence (`softplus(l) - log 2` for GAIL's
    Jensen-Shannon), and GRPO maximises it. Alternating the two makes the policy's responses indistinguishable from
    the demonstrations: a mode-seeking match of the expert's response distribution that needs no preference data.

    Everything else is GRPO's: generation (vLLM's path is GRPO's, untested with this trainer), the group baseline,
    the reference model and `beta`, PEFT, logging. The discriminator reaches GRPO as a reward function (see
    `trl_irl/rewards.py`), which is updated on each generation batch before (or after, `disc_scoring`) it scores the
    batch.

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]): the policy, as for `GRPOTrainer`. Start it from an SFT
            checkpoint: adversarial training refines a policy, it does not teach the task from scratch.
        discriminator (`str` or [`~transformers.PreTrainedModel`], *optional*): a model id or path, or a model. With
            `disc_type="likelihood_ratio"` (the default) a causal LM (`AutoModelForCausalLM`), which must
            share the policy's tokenizer; defaults to a copy of the policy, so that `l = 0` at the start: its
            checkpoint loaded again, or, for a policy given as a model, a deep copy (with a PEFT adapter merged in),
            which keeps what was done to it in memory. With `"classifier"` a one-label sequence
            (or, at the token level, token) classifier, loaded with `num_labels=1`; defaults to a classification head
            on the policy's checkpoint.
        args ([`GAILConfig`], *optional*): a `GRPOConfig` is accepted and gets the default discriminator settings.
        train_dataset, eval_dataset: SFT datasets: prompt-completion (standard or conversational) or `messages`, whose
            last assistant turn is the demonstration.
        processing_class: the policy's tokenizer, as for `GRPOTrainer`.
        discriminator_processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*): the discriminator's
            tokenizer (it may differ from the policy's); loaded from the discriminator's checkpoint if not given.
        callbacks, optimizers, peft_config: as for `GRPOTrainer` (they concern the policy).
        discriminator_peft_config ([`~peft.PeftConfig`], *optional*): wraps the discriminator with PEFT (for a
            classifier use `task_type="SEQ_CLS"`, so that its classification head is trained too; for the likelihood
            ratio `"CAUSAL_LM"`).
        quantization_config ([`~transformers.BitsAndBytesConfig`], *optional*): quantizes the policy when it is given
            as a model id or path (QLoRA, with `peft_config`), as for `GRPOTrainer`.
        tools (`list[Callable]`, *optional*): tools the policy may call, as for `GRPOTrainer`; the discriminator reads
            the prompts as the policy does, with the tools' schema rendered by the chat template.
        reward_funcs, reward_processing_classes: rewards added to the discriminator's (a format or rule reward), as
            for `GRPOTrainer`; `reward_weights` weighs the discriminator's first (see `trainer/grpo_arguments.py`).
        rollout_func, environment_factory: refused: the discriminator must score only what the policy wrote.
    """

    _tag_names = ["trl", "grpo", "trl-irl", "gail"]
    _name = "GAIL"
    _paper = {
        "title": "Generative Adversarial Imitation Learning",
        "id": "1606.03476",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @inproceedings{ho2016generative,
                title        = {{Generative Adversarial Imitation Learning}},
                author       = {Jonathan Ho and Stefano Ermon},
                year         = 2016,
                booktitle    = {Advances in Neural Information Processing Systems 29},
                eprint       = {arXiv:1606.03476},
            }""")
        + "\n\n"
        + SFT_AS_IRL_CITATION,
    }

    config_class = GAILConfig

    def _logit_offsets(self) -> PolicyLogProbOffsets | None:
        """
        What the discriminator's outputs need to make its logits: `-log pi` (summed over the response, or per token)
        for the likelihood ratio, nothing for a classifier. AIRL adds its own `-c log pi`.
        """
        if self.args.disc_type == "likelihood_ratio":
            return self._log_prob_offsets(coef=1.0, reduction="sum")
        return None
