"""The reward function that plugs a discriminator into GRPO's `reward_funcs`.

GRPO calls a reward function once per generation batch, on every process, with that process's prompts and
completions and every other dataset column as a keyword argument. `DiscriminatorReward` updates the discriminator on
demonstrations against the fresh completions, then turns the discriminator's logits on the completions into rewards.
The demonstrations come from a [`DemonstrationPool`] (drawn from the whole training set for each update, as many as
there are fresh completions) or, without one, from the batch's own `demonstration` column (the expert's responses to
the batch's prompts). It is a callable object, not an `nn.Module`, because GRPO runs module rewards under
`torch.inference_mode()`, where the discriminator could not train.
"""

from collections.abc import Callable

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from .data_utils import DEMONSTRATION_COLUMN, DemonstrationPool
from .discriminator import Discriminator, classification_statistics
from .discriminator.parallel import process_index
from .divergences import policy_reward, reward_slope
from .log_probs import micro_batches, response_log_probs


logger = logging.get_logger(__name__)

SCORINGS = ("before_update", "after_update")
# A logit is saturated where the reward moves by less than this per unit of logit: a group of completions whose logits
# all sit there gets rewards closer together than GRPO's 1e-4 in its standard deviation, and advantages near 0
SATURATED_SLOPE = 1e-4
# Share of a training batch's logits beyond which the trainer warns that the discriminator is saturated
SATURATION_WARNING_FRACTION = 0.9


class PolicyLogProbOffsets:
    """
    The logit offsets `-coef * log pi(y | x)` of a discriminator whose logit subtracts the policy's log-probability:
    the likelihood ratio (`coef=1`, summed over the response) and AIRL (`f - coef log pi`, its `log_prob_coef`).
    `log pi` is taken at the sampling temperature, without gradient, summed (`reduction="sum"`) or averaged
    (`"mean"`) over the response's tokens, or one per response token for a discriminator that scores tokens.

    The policy's forward takes `micro_batch_size` samples at a time, as the discriminator's does: its float32 logits
    over the vocabulary for the whole generation batch would otherwise be the largest tensor of the update.

    Args:
        policy (`Callable[[], PreTrainedModel]`): returns the policy as it is now.
        sample_encoder (`Callable`): the trainer's sample encoder, with `prompt_ids` and `response_ids`.
        pad_token_id (`int`): the policy's.
        coef (`float`, *optional*, defaults to `1.0`): the weight of `log pi`.
        reduction (`str`, *optional*, defaults to `"sum"`): `"sum"` or `"mean"` over the response's tokens.
        token_level (`bool`, *optional*, defaults to `False`): one offset per response token.
        temperature (`float`, *optional*, defaults to `1.0`): the sampling temperature.
        micro_batch_size (`int`, *optional*): samples per forward; default: all at once.
        autocast_dtype (`torch.dtype`, *optional*): the discriminator's (`Discriminator.autocast_dtype`): the policy's
            forward runs in the same precision as `q_phi`'s, so that a likelihood ratio copied from the policy gives
            exactly `l = 0` at the start (in another precision, rounding noise of about 1e-3 nats, which GRPO's
            normalisation within a group turns into full-size advantages).
    """

    def __init__(
        self,
        policy: Callable[[], PreTrainedModel],
        sample_encoder,
        pad_token_id: int,
        coef: float = 1.0,
        reduction: str = "sum",
        token_level: bool = False,
        temperature: float = 1.0,
        micro_batch_size: int | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.policy, self.sample_encoder, self.pad_token_id = policy, sample_encoder, pad_token_id
        self.autocast_dtype = autocast_dtype
        self.coef, self.reduction, self.token_level = coef, reduction, token_level
        self.temperature, self.micro_batch_size = temperature, micro_batch_size

    def __call__(self, prompts: list, responses: list, completion_ids: list | None) -> torch.Tensor:
        prompt_ids = self.sample_encoder.prompt_ids(prompts)
        if completion_ids is None:
            completion_ids = self.sample_encoder.response_ids(responses, prompt_ids=prompt_ids)
        response_ids = completion_ids
        log_pi = []
        pairs = list(zip(prompt_ids, response_ids, strict=True))
        policy = self.policy()
        for chunk in micro_batches(pairs, self.micro_batch_size):
            chunk_prompt_ids, chunk_response_ids = zip(*chunk, strict=True)
            with torch.autocast(
                policy.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
            ):
                token_log_probs, mask = response_log_probs(  # (n, T - 1) each
                    policy, chunk_prompt_ids, chunk_response_ids, self.pad_token_id, self.temperature
                )
            if self.token_level:
                log_pi.append(token_log_probs[mask])  # (response tokens,)
            elif self.reduction == "mean":
                log_pi.append((token_log_probs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))  # (n,)
            else:
                log_pi.append((token_log_probs * mask).sum(dim=1))  # (n,)
        return -self.coef * torch.cat(log_pi)


class DiscriminatorReward:
    """
    Reward function for GRPO: trains the discriminator on each generation batch and rewards expert-like completions.

    Args:
        discriminator ([`Discriminator`]): updated and queried here; may be `None` until `bind`.
        sample_encoder (`Callable`): `(prompts, responses, completion_ids=None) -> samples` turns prompts and
            responses, as GRPO passes them (strings or chat messages, and the generated token ids), into the
            discriminator's samples (`trl_irl.data_utils.SampleEncoder`): texts for a sequence classifier,
            `(prompt_ids, response_ids)` pairs for a discriminator that `takes_token_ids`. May be `None` until `bind`.
        divergence (`str`, *optional*, defaults to `"js"`): see [`~trl_irl.divergences.policy_reward`].
        alpha (`float`, *optional*, defaults to `0.5`): parameter of the `"alpha"` divergence.
        updates_per_generation (`int`, *optional*, defaults to `1`): discriminator steps per generation batch.
        scoring (`str`, *optional*, defaults to `"before_update"`): score the completions with the discriminator as
            it was before this batch's updates (an out-of-sample score) or after them.
        reward_clip (`float`, *optional*): clip rewards to `[-reward_clip, reward_clip]`.
        warmup_generations (`int`, *optional*, defaults to `0`): generation batches during which only the
            discriminator learns (every reward is 0, so GRPO's advantages vanish).
        is_training (`Callable[[], bool]`, *optional*): tells whether the trainer is training; during evaluation the
            discriminator scores but does not learn.
        logit_offsets (`Callable`, *optional*): `(prompts, responses, completion_ids) -> (N,) tensor` added to the
            discriminator's outputs to make its logits (AIRL's `-c log pi(y | x)`); `completion_ids` is `None` for
            demonstrations.
        demonstration_pool ([`DemonstrationPool`], *optional*): where each update's demonstrations are drawn from;
            without it, the batch's `demonstration` column is used (one copy of each). With held-out rows, each
            training batch also logs `disc/heldout_*`: held-out demonstrations against the fresh completions, scored by
            the discriminator before this batch's updates, so neither side was trained on.
        demonstrations_per_update (`int`, *optional*): demonstrations drawn from the pool for each update; defaults to
            the number of fresh completions, so that both classes weigh the same in numbers too.
        on_scored (`Callable`, *optional*): called after each training batch is scored, as
            `on_scored(prompts, completions, completion_ids, rewards, stats)`, with `rewards` one per completion and
            `stats` the discriminator's statistics logged for the batch (without their `disc/` prefix). GAIL and AIRL
            raise [`DiscriminatorCallback`]'s `on_discriminator_scored` from here.
        completions_per_prompt (`int`, *optional*, defaults to `1`): completions GRPO generates per prompt (its
            `num_generations`): without a pool, each demonstration of the batch appears this many times and is used
            once per dataset row it comes from.
    """

    # GRPO names a reward function by its `__name__`: metrics read `rewards/discriminator/mean`
    __name__ = "discriminator"

    def __init__(
        self,
        discriminator: Discriminator | None,
        sample_encoder: Callable[[list, list], list] | None,
        divergence: str = "js",
        alpha: float = 0.5,
        updates_per_generation: int = 1,
        scoring: str = "before_update",
        reward_clip: float | None = None,
        warmup_generations: int = 0,
        is_training: Callable[[], bool] = lambda: True,
        logit_offsets: Callable | None = None,
        demonstration_pool: DemonstrationPool | None = None,
        demonstrations_per_update: int | None = None,
        on_scored: Callable | None = None,
        completions_per_prompt: int = 1,
    ):
        if scoring not in SCORINGS:
            raise ValueError(f"`scoring` must be one of {SCORINGS}, got {scoring!r}.")
        self.discriminator = discriminator
        self.sample_encoder = sample_encoder
        self.divergence = divergence
        self.alpha = alpha
        self.updates_per_generation = updates_per_generation
        self.scoring = scoring
        self.reward_clip = reward_clip
        self.warmup_generations = warmup_generations
        self.is_training = is_training
        self.logit_offsets = logit_offsets
        self.demonstration_pool = demonstration_pool
        self.demonstrations_per_update = demonstrations_per_update
        self.on_scored = on_scored
        self.completions_per_prompt = completions_per_prompt
        self.num_generations_seen = 0
        self._warned_saturation = False
        # Statistics of work done before training (the discriminator's pre-training), logged with the first batch
        self.pending_stats: dict[str, float] = {}
        # With a token discriminator: the per-token rewards of the last batch scored, one tensor per completion
        self.token_rewards: list[torch.Tensor] | None = None

    def bind(
        self, discriminator: Discriminator, sample_encoder: Callable, logit_offsets: Callable | None = None
    ) -> None:
        """
        Give the reward its discriminator, sample encoder and logit offsets, once. A trainer builds the reward before
        `GRPOTrainer.__init__` (which needs its reward functions) and binds it after, when the discriminator may live
        on the policy's own model.
        """
        if self.discriminator is not None:
            raise RuntimeError("This reward is already bound to a discriminator.")
        self.discriminator, self.sample_encoder, self.logit_offsets = discriminator, sample_encoder, logit_offsets

    def __call__(
        self, prompts: list, completions: list, completion_ids: list | None = None, log_metric=None, **kwargs
    ) -> list[float]:
        try:
            return self._score(prompts, completions, completion_ids, log_metric, **kwargs)
        except FloatingPointError as error:
            phase = f"training generation batch {self.num_generations_seen}" if self.is_training() else "evaluation"
            raise FloatingPointError(f"In {phase} (counted from 0): {error}") from error

    def _score(self, prompts: list, completions: list, completion_ids: list | None, log_metric, **kwargs) -> list:
        training = self.is_training()
        updates_discriminator = training and self.updates_per_generation > 0
        if updates_discriminator and self.demonstration_pool is None and DEMONSTRATION_COLUMN not in kwargs:
            raise KeyError(
                f"The discriminator reward needs the expert's responses in a dataset column named "
                f"{DEMONSTRATION_COLUMN!r}; the columns passed were {sorted(kwargs)}."
            )
        policy_samples = self.sample_encoder(prompts, completions, completion_ids)
        policy_offsets = self._offsets(prompts, completions, completion_ids)
        # Scored before this batch's updates: held-out demonstrations and fresh completions are both unseen
        heldout_logits = self._heldout_logits(len(policy_samples)) if training else None
        stats = {}
        if updates_discriminator:
            logits_before_update = self._update(prompts, kwargs, policy_samples, policy_offsets, stats)
        else:
            logits_before_update = self.discriminator.logits(policy_samples, policy_offsets)
        if updates_discriminator and self.scoring == "after_update":
            logits = self.discriminator.logits(policy_samples, policy_offsets)
        else:
            logits = logits_before_update
        if heldout_logits is not None:
            heldout = classification_statistics(heldout_logits, logits_before_update)
            stats.update({f"heldout_{name}": value.item() for name, value in heldout.items()})
        rewards = self._rewards(logits, stats, training)
        if log_metric is not None:
            for name, value in stats.items():
                log_metric(f"disc/{name}", value)
            log_metric("disc/logit_scored", logits.mean().item())
        if self.discriminator.token_level:
            # One reward per response token: kept for the trainer's per-token advantages; GRPO gets their sums
            self.token_rewards = list(rewards.split([len(response) for _, response in policy_samples]))
            sequence_rewards = [token_rewards.sum().item() for token_rewards in self.token_rewards]
        else:
            sequence_rewards = rewards.tolist()
        if training and self.on_scored is not None:
            self.on_scored(prompts, completions, completion_ids, sequence_rewards, stats)
        return sequence_rewards

    def _heldout_logits(self, count: int) -> torch.Tensor | None:
        """The logits of up to `count` held-out demonstrations of the pool, or `None` without any."""
        pool = self.demonstration_pool
        if pool is None or not pool.heldout_rows:
            return None
        prompts, demonstrations = pool.sample(min(len(pool.heldout_rows), count), self._draw_key(), heldout=True)
        return self.discriminator.logits(
            self.sample_encoder(prompts, demonstrations), self._offsets(prompts, demonstrations, None)
        )

    def _update(
        self, prompts: list, columns: dict, policy_samples: list, policy_offsets: torch.Tensor | None, stats: dict
    ) -> torch.Tensor:
        """
        `updates_per_generation` discriminator updates on this batch; their statistics, averaged over the updates, go
        into `stats`. Returns the policy samples' logits before the first, which its forward gives for free.
        """
        totals: dict[str, float] = {}
        for update in range(self.updates_per_generation):
            expert_prompts, demonstrations = self._expert_batch(prompts, columns, update, len(policy_samples))
            result = self.discriminator.update(
                self.sample_encoder(expert_prompts, demonstrations),
                policy_samples,
                expert_logit_offsets=self._offsets(expert_prompts, demonstrations, None),
                policy_logit_offsets=policy_offsets,
            )
            if update == 0:
                logits_before_update = result.policy_logits
            for name, value in result.stats.items():
                totals[name] = totals.get(name, 0.0) + value
        stats.update({name: total / self.updates_per_generation for name, total in totals.items()})
        return logits_before_update

    def _rewards(self, logits: torch.Tensor, stats: dict, training: bool) -> torch.Tensor:
        """Each logit's reward by the divergence, clipped, zero in warm-up; adds `saturated_fraction` to `stats`."""
        if not torch.isfinite(logits).all():
            raise FloatingPointError(
                "The discriminator's logits on this batch are not finite (NaN or inf): its weights or the policy's "
                "log-probabilities diverged. Lower `disc_learning_rate` (and `learning_rate`), train in float32 or "
                "bf16 rather than fp16, or add `disc_gradient_penalty`; resume from the last checkpoint."
            )
        rewards = policy_reward(logits, self.divergence, self.alpha)
        slope = reward_slope(logits, self.divergence, self.alpha)
        if self.reward_clip is not None:
            slope = torch.where(rewards.abs() >= self.reward_clip, 0.0, slope)
            rewards = rewards.clamp(-self.reward_clip, self.reward_clip)
        stats["saturated_fraction"] = (slope < SATURATED_SLOPE).float().mean().item()
        if training:
            stats.update(self.pending_stats)
            self.pending_stats = {}
            self._warn_if_saturated(logits, stats["saturated_fraction"])
            if self.num_generations_seen < self.warmup_generations:
                rewards = torch.zeros_like(rewards)
            self.num_generations_seen += 1
        return rewards

    def _warn_if_saturated(self, logits: torch.Tensor, saturated_fraction: float) -> None:
        if saturated_fraction < SATURATION_WARNING_FRACTION or self._warned_saturation:
            return
        self._warned_saturation = True
        logger.warning(
            f"The discriminator is saturated: {saturated_fraction:.0%} of this batch's logits (mean "
            f"{logits.mean().item():.1f}) lie where the `{self.divergence}` reward is flat"
            + (" or clipped by `reward_clip`" if self.reward_clip is not None else "")
            + ", so GRPO's advantages vanish and the policy stops learning (logged as `disc/saturated_fraction`). "
            "Likely fixes: a lower `disc_learning_rate` or fewer `disc_updates_per_generation` (the discriminator "
            "outruns the policy), `disc_label_smoothing` or `disc_gradient_penalty` (it grows overconfident), "
            "`divergence='reverse_kl'` (whose reward never flattens), or a higher `reward_clip`. Warned once."
        )

    def _offsets(self, prompts: list, responses: list, completion_ids: list | None) -> torch.Tensor | None:
        return None if self.logit_offsets is None else self.logit_offsets(prompts, responses, completion_ids)

    def _draw_key(self, update: int = -1) -> tuple:
        return (process_index(), self.num_generations_seen, update)

    def _expert_batch(self, prompts: list, columns: dict, update: int, num_policy_samples: int) -> tuple[list, list]:
        """The prompts and demonstrations of one update: drawn from the pool, or the batch's own."""
        if self.discriminator.pairs_samples:
            # A pairwise loss: each completion against the demonstration of its own prompt, row for row
            if self.demonstration_pool is not None:
                raise ValueError(
                    "The discriminator's pairwise loss pairs each completion with the demonstration of its prompt, "
                    "which a pool's random draw does not give: use the batch's own demonstrations "
                    "(`disc_demonstration_source='batch'`)."
                )
            return prompts, list(columns[DEMONSTRATION_COLUMN])
        if self.demonstration_pool is not None:
            count = self.demonstrations_per_update or num_policy_samples
            return self.demonstration_pool.sample(count, self._draw_key(update))
        demonstrations = columns[DEMONSTRATION_COLUMN]
        # GRPO repeats each row once per generation: one copy per dataset row. Identical rows of the dataset stay as
        # many as they are: `c` copies of a sample come from `ceil(c / completions_per_prompt)` rows (a group cut
        # between processes leaves fewer than `completions_per_prompt` copies here, still one row)
        rows_of = {}  # demonstration sample -> the rows holding it
        for row, sample in enumerate(self.sample_encoder(prompts, demonstrations)):
            rows_of.setdefault(sample, []).append(row)
        rows = [row for copies in rows_of.values() for row in copies[: -(-len(copies) // self.completions_per_prompt)]]
        return [prompts[row] for row in rows], [demonstrations[row] for row in rows]
