import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from ..divergences import DIVERGENCES


DISCRIMINATOR_LEVELS = ("sequence", "token")
DISCRIMINATOR_TYPES = ("classifier", "likelihood_ratio")
DEMONSTRATION_SOURCES = ("dataset", "batch")
DISCRIMINATOR_LOSSES = ("bce", "bradley_terry")
# When the reward scores a generation batch: before the discriminator's update on it, or after
DISCRIMINATOR_SCORINGS = ("before_update", "after_update")
# Config fields renamed so that every discriminator setting starts with `disc_`: old name -> new name
DEPRECATED_NAMES = {
    "discriminator_type": "disc_type",
    "discriminator_level": "disc_level",
    "discriminator_init_kwargs": "disc_init_kwargs",
}


@dataclass
class GAILConfig(GRPOConfig):
    r"""
    Configuration class for the [`GAILTrainer`].

    Every parameter of [`~trl.GRPOConfig`] is accepted and keeps its meaning (generation, `num_generations`, `beta`,
    reward scaling, logging, ...). This class adds the parameters of the discriminator and of the reward it hands out.

    Parameters:
        > Parameters that control the reward

        divergence (`str`, *optional*, defaults to `"js"`):
            Which f-divergence between the expert's and the policy's response distributions the policy minimises, and
            so how a discriminator logit `l` (expert is high) becomes a reward: `"js"` (GAIL, `softplus(l) - log 2`),
            `"reverse_kl"` (`l`), `"forward_kl"` (`exp(l) - 1`) or `"alpha"`: each 0 at `l = 0`, which matters at the
            token level. See `docs/divergences.md`.
        divergence_alpha (`float`, *optional*, defaults to `0.5`):
            Parameter of the `"alpha"` divergence (not 1).
        reward_clip (`float`, *optional*):
            If set, rewards are clipped to `[-reward_clip, reward_clip]`.

        > Parameters that control the discriminator

        disc_level (`str`, *optional*, defaults to `"sequence"`):
            `"sequence"`: one logit per (prompt, response), from a sequence classifier, so one reward per response
            (Eq. 19-20, 23). `"token"`: one logit per response token from a causal token classifier sharing the
            policy's tokenizer, so one reward per token (Eq. 17-18, 22), turned into per-token advantages by
            reward-to-go with leave-one-out per-position group baselines (`trl_irl/token_advantages.py`).
        disc_type (`str`, *optional*, defaults to `"likelihood_ratio"`):
            `"likelihood_ratio"`: a causal language model `q_phi`, by default a copy of the policy's checkpoint, whose
            logit is `l = log q_phi(y | x) - log pi(y | x)` (per token at the token level): it starts at `l = 0` with
            the policy's knowledge instead of a fresh head, and at its optimum `q_phi` is the expert. It needs the
            policy's tokenizer. `"classifier"`: a classification head (sequence or token classifier, any tokenizer at
            the sequence level) whose output is the logit. The default was chosen by the rules-regime comparison in
            `docs/benchmarks.md` (see `docs/gail_trainer.md`).
        disc_init_kwargs (`dict[str, Any]`, *optional*):
            Keyword arguments for `from_pretrained` (`AutoModelForSequenceClassification`,
            `AutoModelForTokenClassification` or, for the likelihood ratio, `AutoModelForCausalLM`), used when the
            discriminator is given as a model id or path (or defaults to the policy's checkpoint).
        disc_learning_rate (`float`, *optional*, defaults to `1e-5`):
            AdamW learning rate of the discriminator.
        disc_updates_per_generation (`int`, *optional*):
            Discriminator optimizer steps on each generation batch (each on freshly drawn demonstrations against the
            batch's completions). Defaults to 2 for the likelihood ratio (as in the measurements behind its defaults;
            4 undid the gain on one run of its prototype) and 1 for a classifier (with 2, and
            demonstrations drawn from the whole set, a classifier overpowered AIRL's policy on the colours toy task
            of the tests: policy accuracy 0.96, and a collapse at the token level).
        disc_demonstration_source (`str`, *optional*, defaults to `"dataset"`):
            Where each update's demonstrations come from: `"dataset"`, drawn at random from the whole training set
            (less the held-out rows) for each update, `disc_demonstrations_per_update` of them; or `"batch"`, the
            demonstrations of the generation batch's own prompts (one per prompt: far fewer than the completions).
            An `IterableDataset` allows only `"batch"`.
        disc_loss_type (`str`, *optional*, defaults to `"bce"`):
            What each discriminator update minimises: `"bce"`, the class-balanced cross-entropy of demonstrations
            against policy samples (GAIL's, Eq. 18 / 20); or `"bradley_terry"`, GAD's pairwise loss
            (arXiv 2511.10643) `-log sigmoid(l(x, y_expert) - l(x, y_policy))` of each completion against the
            demonstration of its own prompt, so that the discriminator learns only which of two answers to the same
            prompt is the expert's. Its logit is then a score up to a constant per prompt, which GRPO's group baseline
            removes: it needs `divergence="reverse_kl"` (the logit is the reward), `disc_demonstration_source="batch"`
            (the pairs), `disc_level="sequence"` and no replay buffer.
        disc_demonstrations_per_update (`int`, *optional*):
            Demonstrations drawn for each update with `disc_demonstration_source="dataset"`. Defaults to the number of
            completions of the update (on each process), so that both classes weigh the same in numbers too.
        disc_heldout_fraction (`float`, *optional*, defaults to `0.1`):
            Share of the training demonstrations the discriminator never trains on (with
            `disc_demonstration_source="dataset"`). On each generation batch they are scored against the fresh
            completions, before the discriminator's update, and logged as `disc/heldout_loss`, `disc/heldout_acc`,
            `disc/heldout_acc_expert` and `disc/heldout_acc_policy`: how well the reward generalises. 0 turns this off.
        disc_scoring (`str`, *optional*, defaults to `"before_update"`):
            Whether completions are scored by the discriminator as it was before this batch's updates
            (`"before_update"`: an out-of-sample score) or after them (`"after_update"`).
        disc_max_length (`int`, *optional*):
            Discriminator inputs longer than this many tokens keep their last `disc_max_length` tokens (the response
            end is always seen; the start of a long prompt is dropped). Defaults to the discriminator's
            `max_position_embeddings`.
        disc_likelihood_weight (`float`, *optional*, defaults to `0.0`):
            Weight of a maximum-likelihood term in each update of the likelihood-ratio discriminator: `q_phi`'s mean
            negative log-likelihood per token of the update's demonstrations (SFT's loss on them), added to the
            cross-entropy. Both terms are minimised by `q_phi = p_exp`, so the target stays the same; the term was
            meant to keep what a discriminator given by the user (a larger SFT model) knows, which the cross-entropy
            alone erodes. Off by default: over a run it is many more epochs of SFT on the training rows, and in the
            distil benchmark `q_phi` memorised them (docs/benchmarks.md). `disc/nll_expert` logs that negative
            log-likelihood whatever the weight.
        disc_label_smoothing (`float`, *optional*, defaults to `0.0`):
            Discriminator targets become `1 - eps/2` (expert) and `eps/2` (policy).
        disc_gradient_penalty (`float`, *optional*, defaults to `0.0`):
            Weight of the zero-centred gradient penalty (R1) on the discriminator's input embeddings of
            demonstrations.
        disc_max_grad_norm (`float`, *optional*):
            Clip the discriminator's gradient norm to this before each of its steps (off by default). Its norm before
            clipping is logged as `disc/grad_norm` either way.
        disc_micro_batch_size (`int`, *optional*):
            Samples of each class the discriminator forwards and backwards at a time, accumulating the gradients of
            one update (the step is the same up to float rounding; the memory of its activations is that of this many
            samples). Default: each class of the update at once. The policy's no-grad forward for `log pi` (the
            likelihood ratio's and AIRL's logit offset) takes as many samples at a time.
        disc_replay_buffer_size (`int`, *optional*, defaults to `0`):
            Number of past policy completions kept and mixed into each update (as many as the fresh ones).
        disc_warmup_generations (`int`, *optional*, defaults to `0`):
            Generation batches during which only the discriminator learns: every reward is 0, so the policy does not
            move (apart from the KL term when `beta > 0`).
        disc_pretraining_steps (`int`, *optional*, defaults to `0`):
            Maximum-likelihood steps of the likelihood-ratio discriminator's `q_phi` on the demonstrations (the rows
            the discriminator trains on, `disc_pretraining_batch_size` per step on each process) before the policy
            moves, with their own AdamW at `disc_pretraining_learning_rate` decaying linearly to 0 (weight decay and
            gradient clipping from `weight_decay` and `max_grad_norm`, as in SFT): SFT of the discriminator alone, so
            that it starts knowing more than the policy. The log's first step holds
            `disc/pretraining_loss` (the mean loss of the last tenth of the steps) and, with held-out rows,
            `disc/pretraining_heldout_nll_start` and `disc/pretraining_heldout_nll_end`. Not repeated on resume. Off
            by default: it costs about as much as SFT on as many demonstrations, and GAIL with it did not beat SFT
            given the same time (docs/benchmarks.md).
        disc_pretraining_batch_size (`int`, *optional*):
            Demonstrations per pre-training step on each process; defaults to `disc_demonstrations_per_update` (as
            many as an update's completions when that is unset).
        disc_pretraining_learning_rate (`float`, *optional*):
            Learning rate of that pre-training; defaults to `disc_learning_rate`. The SFT learning rate of the
            checkpoint is the natural choice.
        disc_shares_policy_base (`bool`, *optional*, defaults to `False`):
            With a PEFT (LoRA) policy and the likelihood-ratio discriminator: put `q_phi` on the policy's own model,
            as a second adapter that starts as a copy of the policy's (so `l = 0` at the start), instead of loading a
            second copy of the base model. One base model then serves policy, reference and discriminator; only the
            adapters differ. Not under FSDP or DeepSpeed yet.

        > Deprecated names

        discriminator_type, discriminator_level, discriminator_init_kwargs:
            The names of `disc_type`, `disc_level` and `disc_init_kwargs` before 0.1, accepted with a `FutureWarning`
            until 0.2 (every discriminator setting of the config starts with `disc_`).
    """

    divergence: str = field(
        default="js",
        metadata={
            "help": "f-divergence the policy minimises, i.e. how a discriminator logit l becomes a reward: 'js' "
            "(GAIL, softplus(l) - log 2), 'reverse_kl' (l), 'forward_kl' (exp(l) - 1) or 'alpha'.",
            "choices": list(DIVERGENCES),
        },
    )
    divergence_alpha: float = field(default=0.5, metadata={"help": "Parameter of the 'alpha' divergence (not 1)."})
    reward_clip: float | None = field(
        default=None, metadata={"help": "If set, rewards are clipped to [-reward_clip, reward_clip]."}
    )
    disc_level: str = field(
        default="sequence",
        metadata={
            "help": "'sequence' (one logit, so one reward, per response) or 'token' (one per response token; the "
            "discriminator must share the policy's tokenizer).",
            "choices": list(DISCRIMINATOR_LEVELS),
        },
    )
    disc_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for the discriminator's `from_pretrained` (`AutoModelForCausalLM` for the "
            "likelihood ratio, the sequence or token classification class otherwise) when it is given as a path."
        },
    )
    disc_type: str = field(
        default="likelihood_ratio",
        metadata={
            "help": "'classifier' (a classification head's output is the logit) or 'likelihood_ratio' (a causal LM "
            "q_phi, by default the policy's checkpoint; logit log q_phi(y|x) - log pi(y|x)).",
            "choices": list(DISCRIMINATOR_TYPES),
        },
    )
    disc_learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate of the discriminator."})
    disc_demonstration_source: str = field(
        default="dataset",
        metadata={
            "help": "Where each discriminator update's demonstrations come from: 'dataset' (drawn from the whole "
            "training set) or 'batch' (those of the generation batch's prompts).",
            "choices": list(DEMONSTRATION_SOURCES),
        },
    )
    disc_loss_type: str = field(
        default="bce",
        metadata={
            "help": "What each discriminator update minimises: 'bce' (class-balanced cross-entropy, GAIL's) or "
            "'bradley_terry' (GAD's pairwise loss of each completion against its prompt's demonstration).",
            "choices": list(DISCRIMINATOR_LOSSES),
        },
    )
    disc_demonstrations_per_update: int | None = field(
        default=None,
        metadata={
            "help": "Demonstrations drawn for each discriminator update (source 'dataset'). Defaults to the number "
            "of completions of the update."
        },
    )
    disc_heldout_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Share of the demonstrations the discriminator never trains on; they are scored against fresh "
            "completions and logged as disc/heldout_*. 0 turns this off."
        },
    )
    disc_updates_per_generation: int | None = field(
        default=None,
        metadata={
            "help": "Discriminator optimizer steps on each generation batch. Defaults to 2 for the likelihood ratio "
            "and 1 for a classifier."
        },
    )
    disc_scoring: str = field(
        default="before_update",
        metadata={
            "help": "Score completions with the discriminator as it was before this batch's updates "
            "('before_update') or after them ('after_update').",
            "choices": list(DISCRIMINATOR_SCORINGS),
        },
    )
    disc_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Discriminator inputs longer than this keep their last tokens. Defaults to the discriminator's "
            "`max_position_embeddings`."
        },
    )
    disc_likelihood_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a maximum-likelihood (SFT) term on the demonstrations in each update of the "
            "likelihood-ratio discriminator (measured: q_phi memorised its training rows; off by default)."
        },
    )
    disc_label_smoothing: float = field(
        default=0.0, metadata={"help": "Discriminator targets become 1 - eps/2 (expert) and eps/2 (policy)."}
    )
    disc_gradient_penalty: float = field(
        default=0.0,
        metadata={"help": "Weight of the R1 gradient penalty on the input embeddings of demonstrations."},
    )
    disc_max_grad_norm: float | None = field(
        default=None, metadata={"help": "Clip the discriminator's gradient norm to this before each step (off: None)."}
    )
    disc_micro_batch_size: int | None = field(
        default=None,
        metadata={"help": "Samples of each class per discriminator forward/backward, gradients accumulated."},
    )
    disc_replay_buffer_size: int = field(
        default=0, metadata={"help": "Past policy completions kept and mixed into each discriminator update."}
    )
    disc_warmup_generations: int = field(
        default=0,
        metadata={"help": "Generation batches during which only the discriminator learns (rewards are 0)."},
    )
    disc_pretraining_steps: int = field(
        default=0,
        metadata={
            "help": "Maximum-likelihood (SFT) steps of the likelihood-ratio discriminator before the policy moves."
        },
    )
    disc_pretraining_batch_size: int | None = field(
        default=None,
        metadata={"help": "Demonstrations per pre-training step on each process (default: as an update's)."},
    )
    disc_pretraining_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the discriminator's pre-training (default: `disc_learning_rate`)."},
    )
    disc_shares_policy_base: bool = field(
        default=False,
        metadata={
            "help": "With a PEFT policy: the likelihood-ratio discriminator as a second adapter on the policy's "
            "model, instead of a second copy of the base model."
        },
    )
    # The names of `disc_type`, `disc_level` and `disc_init_kwargs` before 0.1: accepted with a warning
    discriminator_type: str | None = field(default=None, metadata={"help": "Deprecated: use `disc_type`."})
    discriminator_level: str | None = field(default=None, metadata={"help": "Deprecated: use `disc_level`."})
    discriminator_init_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Deprecated: use `disc_init_kwargs`."}
    )

    def __post_init__(self):
        self._accept_deprecated_names()
        super().__post_init__()
        self._check_discriminator_choice()
        self._check_reward()
        self._check_discriminator_training()
        self._check_discriminator_pretraining()
        self._check_pairwise_loss()

    def _accept_deprecated_names(self) -> None:
        for old, new in DEPRECATED_NAMES.items():
            value = getattr(self, old)
            if value is None:
                continue
            if getattr(self, new) not in (value, type(self).__dataclass_fields__[new].default):
                raise ValueError(f"`{old}` is the old name of `{new}`: set `{new}` only.")
            warnings.warn(
                f"`{old}` is deprecated and will be removed in 0.2: use `{new}`.", FutureWarning, stacklevel=3
            )
            setattr(self, new, value)
            setattr(self, old, None)

    def _check_discriminator_choice(self) -> None:
        if isinstance(self.disc_init_kwargs, str):
            # From the command line or a YAML string, as `model_init_kwargs`
            self.disc_init_kwargs = json.loads(self.disc_init_kwargs)
        if self.disc_level not in DISCRIMINATOR_LEVELS:
            raise ValueError(f"`disc_level` must be one of {list(DISCRIMINATOR_LEVELS)}, got {self.disc_level!r}.")
        if self.disc_type not in DISCRIMINATOR_TYPES:
            raise ValueError(f"`disc_type` must be one of {list(DISCRIMINATOR_TYPES)}, got {self.disc_type!r}.")
        if self.disc_demonstration_source not in DEMONSTRATION_SOURCES:
            raise ValueError(
                f"`disc_demonstration_source` must be one of {list(DEMONSTRATION_SOURCES)}, got "
                f"{self.disc_demonstration_source!r}."
            )
        if self.disc_demonstrations_per_update is not None and self.disc_demonstrations_per_update <= 0:
            raise ValueError(
                f"`disc_demonstrations_per_update` must be positive, got {self.disc_demonstrations_per_update}."
            )
        if (holder := self._logit_holds_log_pi()) and self.disc_replay_buffer_size > 0:
            what, way_out = holder
            raise ValueError(
                f"`disc_replay_buffer_size` is not supported by {what}: the logit of a replayed response depends on "
                f"the policy's current log-probability of it, which the buffer does not hold. {way_out}"
            )
        if not 0.0 <= self.disc_heldout_fraction < 1.0:
            raise ValueError(f"`disc_heldout_fraction` must be in [0, 1), got {self.disc_heldout_fraction}.")

    def _logit_holds_log_pi(self) -> tuple[str, str] | None:
        """
        What makes the discriminator's logit hold the policy's current `log pi`, if anything, and the settings that
        avoid what that rules out: both for error messages.
        """
        if self.disc_type != "likelihood_ratio":
            return None
        return "the likelihood-ratio discriminator", "Set it to 0 or use `disc_type='classifier'`."

    def _check_reward(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"`divergence` must be one of {list(DIVERGENCES)}, got {self.divergence!r}.")
        if not math.isfinite(self.divergence_alpha):
            raise ValueError(f"`divergence_alpha` must be a finite number, got {self.divergence_alpha}.")
        if self.divergence == "alpha" and self.divergence_alpha == 1.0:
            raise ValueError("`divergence_alpha=1` is the limit `divergence='reverse_kl'`; use that instead.")
        # Written so that NaN, which compares false with everything, is refused too
        if self.reward_clip is not None and not self.reward_clip > 0:
            raise ValueError(f"`reward_clip` must be positive, got {self.reward_clip}.")

    def _check_discriminator_training(self) -> None:
        if self.disc_scoring not in DISCRIMINATOR_SCORINGS:
            raise ValueError(
                f"`disc_scoring` must be one of {list(DISCRIMINATOR_SCORINGS)}, got {self.disc_scoring!r}."
            )
        if self.disc_updates_per_generation is None:
            self.disc_updates_per_generation = 2 if self.disc_type == "likelihood_ratio" else 1
        if self.disc_updates_per_generation < 0:
            raise ValueError(f"`disc_updates_per_generation` must be >= 0, got {self.disc_updates_per_generation}.")
        if not 0.0 <= self.disc_label_smoothing < 1.0:
            raise ValueError(f"`disc_label_smoothing` must be in [0, 1), got {self.disc_label_smoothing}.")
        for name in (
            "disc_learning_rate",
            "disc_gradient_penalty",
            "disc_replay_buffer_size",
            "disc_warmup_generations",
            "disc_pretraining_steps",
            "disc_likelihood_weight",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.disc_max_grad_norm is not None and not self.disc_max_grad_norm > 0:
            raise ValueError(f"`disc_max_grad_norm` must be positive, got {self.disc_max_grad_norm}.")
        if self.disc_micro_batch_size is not None and self.disc_micro_batch_size <= 0:
            raise ValueError(f"`disc_micro_batch_size` must be positive, got {self.disc_micro_batch_size}.")
        if self.disc_max_length is not None and self.disc_max_length <= 0:
            raise ValueError(f"`disc_max_length` must be positive, got {self.disc_max_length}.")
        if self.disc_likelihood_weight > 0 and self.disc_type != "likelihood_ratio":
            raise ValueError(
                "`disc_likelihood_weight` trains the likelihood-ratio discriminator's language model by maximum "
                f"likelihood on the demonstrations, and `disc_type` is {self.disc_type!r}, whose outputs are no "
                "likelihood. Set `disc_type='likelihood_ratio'` or `disc_likelihood_weight=0`."
            )
        if self.disc_shares_policy_base and self.disc_type != "likelihood_ratio":
            raise ValueError(
                "`disc_shares_policy_base` puts the likelihood-ratio discriminator's language model on the policy's "
                f"model, and `disc_type` is {self.disc_type!r}: a classifier has its own head and "
                "backbone. Set `disc_type='likelihood_ratio'` or `disc_shares_policy_base=False`."
            )
        if self.disc_shares_policy_base and self.disc_gradient_penalty > 0:
            raise ValueError(
                "`disc_gradient_penalty` needs eager attention, which would change the attention of the policy the "
                "discriminator shares its model with: set `disc_gradient_penalty=0` or "
                "`disc_shares_policy_base=False`."
            )

    def _check_discriminator_pretraining(self) -> None:
        if self.disc_pretraining_learning_rate is None:
            self.disc_pretraining_learning_rate = self.disc_learning_rate
        if self.disc_pretraining_steps > 0 and not self.disc_pretraining_learning_rate > 0:
            raise ValueError(
                f"`disc_pretraining_learning_rate` must be positive, got {self.disc_pretraining_learning_rate}."
            )
        if self.disc_pretraining_batch_size is not None and self.disc_pretraining_batch_size <= 0:
            raise ValueError(
                f"`disc_pretraining_batch_size` must be positive, got {self.disc_pretraining_batch_size}."
            )
        if self.disc_pretraining_steps > 0 and self.disc_type != "likelihood_ratio":
            raise ValueError(
                "`disc_pretraining_steps` trains the likelihood-ratio discriminator's language model by maximum "
                f"likelihood, and `disc_type` is {self.disc_type!r}. Set "
                "`disc_type='likelihood_ratio'` or `disc_pretraining_steps=0`."
            )
        if self.disc_pretraining_steps > 0 and self.disc_demonstration_source != "dataset":
            raise ValueError(
                "`disc_pretraining_steps` draws its demonstrations from the training set, which needs "
                "`disc_demonstration_source='dataset'` (a `datasets.Dataset`, not an `IterableDataset`)."
            )

    def _check_pairwise_loss(self) -> None:
        if self.disc_loss_type not in DISCRIMINATOR_LOSSES:
            raise ValueError(
                f"`disc_loss_type` must be one of {list(DISCRIMINATOR_LOSSES)}, got {self.disc_loss_type!r}."
            )
        if self.disc_loss_type != "bradley_terry":
            return
        # Each setting the pairwise loss needs, and why: pairs to compare, and a reward that is unchanged, up to
        # GRPO's group baseline, by the constant per prompt that the pairwise score leaves free
        needs = {
            "disc_demonstration_source": ("batch", "each completion is paired with the demonstration of its prompt"),
            "disc_level": ("sequence", "a pair compares whole responses"),
            "disc_replay_buffer_size": (0, "a replayed completion has no demonstration to be paired with"),
            "divergence": (
                "reverse_kl",
                "the score is known up to a constant per prompt, which only a reward linear in it leaves to GRPO's "
                "group baseline",
            ),
        }
        for name, (value, why) in needs.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"`disc_loss_type='bradley_terry'` needs `{name}={value!r}` ({why}), got "
                    f"`{name}={getattr(self, name)!r}`."
                )
