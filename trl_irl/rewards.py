"""The reward function that plugs a discriminator into GRPO's `reward_funcs`.

GRPO calls a reward function once per generation batch, on every process, with that process's prompts and
completions and every other dataset column as a keyword argument. `DiscriminatorReward` uses the `demonstration`
column (the expert's response to the same prompt) to update the discriminator against the fresh completions, then
turns the discriminator's logits on the completions into rewards. It is a callable object, not an `nn.Module`,
because GRPO runs module rewards under `torch.inference_mode()`, where the discriminator could not train.
"""

from collections.abc import Callable

import torch

from .discriminator import Discriminator, TokenDiscriminator
from .divergences import policy_reward


DEMONSTRATION_COLUMN = "demonstration"
SCORINGS = ("before_update", "after_update")


class DiscriminatorReward:
    """
    Reward function for GRPO: trains the discriminator on each generation batch and rewards expert-like completions.

    Args:
        discriminator ([`Discriminator`]): updated and queried here.
        render (`Callable`): `(prompts, responses, completion_ids=None) -> samples` turns prompts and responses, as
            GRPO passes them (strings or chat messages, and the generated token ids), into the discriminator's
            samples: texts for a [`Discriminator`], `(prompt_ids, response_ids)` pairs for a [`TokenDiscriminator`].
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
            discriminator's outputs to make its logits (AIRL's `-beta log pi(y | x)`); `completion_ids` is `None` for
            demonstrations.
    """

    # GRPO names a reward function by its `__name__`: metrics read `rewards/discriminator/mean`
    __name__ = "discriminator"

    def __init__(
        self,
        discriminator: Discriminator,
        render: Callable[[list, list], list[str]],
        divergence: str = "js",
        alpha: float = 0.5,
        updates_per_generation: int = 1,
        scoring: str = "before_update",
        reward_clip: float | None = None,
        warmup_generations: int = 0,
        is_training: Callable[[], bool] = lambda: True,
        logit_offsets: Callable | None = None,
    ):
        if scoring not in SCORINGS:
            raise ValueError(f"`scoring` must be one of {SCORINGS}, got {scoring!r}.")
        self.discriminator = discriminator
        self.render = render
        self.divergence = divergence
        self.alpha = alpha
        self.updates_per_generation = updates_per_generation
        self.scoring = scoring
        self.reward_clip = reward_clip
        self.warmup_generations = warmup_generations
        self.is_training = is_training
        self.logit_offsets = logit_offsets
        self.num_generations_seen = 0
        # With a token discriminator: the per-token rewards of the last batch scored, one tensor per completion
        self.token_rewards: list[torch.Tensor] | None = None

    def __call__(
        self, prompts: list, completions: list, completion_ids: list | None = None, log_metric=None, **kwargs
    ) -> list[float]:
        if DEMONSTRATION_COLUMN not in kwargs:
            raise KeyError(
                f"The discriminator reward needs the expert's responses in a dataset column named "
                f"{DEMONSTRATION_COLUMN!r}; the columns passed were {sorted(kwargs)}."
            )
        demonstrations = kwargs[DEMONSTRATION_COLUMN]
        policy_samples = self.render(prompts, completions, completion_ids)
        # GRPO repeats each prompt once per generation: one copy of each demonstration is enough
        first_row_of = {}  # demonstration sample -> the first row holding it
        for row, sample in enumerate(self.render(prompts, demonstrations)):
            first_row_of.setdefault(sample, row)
        expert_samples, expert_rows = list(first_row_of), list(first_row_of.values())

        policy_offsets = expert_offsets = None
        if self.logit_offsets is not None:
            policy_offsets = self.logit_offsets(prompts, completions, completion_ids)
            expert_offsets = self.logit_offsets(
                [prompts[row] for row in expert_rows], [demonstrations[row] for row in expert_rows], None
            )

        updates_discriminator = self.is_training() and self.updates_per_generation > 0
        if not updates_discriminator:
            logits = self.discriminator.logits(policy_samples, policy_offsets)
        else:
            # The first update's forward gives the scores before any update (see `Discriminator.update`)
            offsets = {"expert_logit_offsets": expert_offsets, "policy_logit_offsets": policy_offsets}
            stats, logits = self.discriminator.update(
                expert_samples, policy_samples, **offsets, return_policy_logits=True
            )
            for _ in range(self.updates_per_generation - 1):
                stats = self.discriminator.update(expert_samples, policy_samples, **offsets)
            if self.scoring == "after_update":
                logits = self.discriminator.logits(policy_samples, policy_offsets)

        rewards = policy_reward(logits, self.divergence, self.alpha)
        if self.reward_clip is not None:
            rewards = rewards.clamp(-self.reward_clip, self.reward_clip)
        if self.is_training():
            if self.num_generations_seen < self.warmup_generations:
                rewards = torch.zeros_like(rewards)
            self.num_generations_seen += 1
        if log_metric is not None:
            if updates_discriminator:
                for name, value in stats.items():
                    log_metric(f"disc/{name}", value)
            log_metric("disc/logit_scored", logits.mean().item())
        if isinstance(self.discriminator, TokenDiscriminator):
            # One reward per response token: kept for the trainer's per-token advantages; GRPO gets their sums
            self.token_rewards = list(rewards.split([len(response) for _, response in policy_samples]))
            return [token_rewards.sum().item() for token_rewards in self.token_rewards]
        return rewards.tolist()
