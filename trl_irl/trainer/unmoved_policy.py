"""
Settings of the adversarial trainers whose combination would leave the policy where it started: a run that trains to
its end and does nothing. Refused where nothing could come of the run, warned about where the discriminator alone
learns.
"""

import math

from transformers import TrainerCallback
from transformers.utils import logging


logger = logging.get_logger(__name__)


def check_reward_weights(reward_weights: list[float] | None) -> None:
    """
    With every weight 0 every reward is 0 and GRPO's advantages vanish: refused. With the discriminator's weight
    (the first) 0, the discriminator trains for nothing: warned about.
    """
    if reward_weights is None:
        return
    if all(weight == 0 for weight in reward_weights):
        raise ValueError(
            f"Every weight of `reward_weights` ({reward_weights}) is 0: every reward would be 0 and the policy would "
            "never move. The first weight is the discriminator's."
        )
    if reward_weights[0] == 0:
        logger.warning(
            "`reward_weights[0]`, the discriminator's, is 0: the policy learns from `reward_funcs` alone and the "
            "discriminator trains for nothing (GRPOTrainer does that at less cost)."
        )


class WarnIfWarmUpCoversTheRun(TrainerCallback):
    """
    `disc_warmup_generations` zeroes every reward of its generation batches: if they are all of the run's, the policy
    does not move (apart from the KL term). The run's length is known once training begins (`state.max_steps`).
    """

    def on_train_begin(self, args, state, control, **kwargs):
        steps_per_generation = (args.steps_per_generation or args.gradient_accumulation_steps) * args.num_iterations
        generations = math.ceil(state.max_steps * args.gradient_accumulation_steps / steps_per_generation)
        if args.disc_warmup_generations >= generations > 0:
            logger.warning(
                f"`disc_warmup_generations={args.disc_warmup_generations}` covers all {generations} generation "
                "batches of this run: every reward is 0 and the policy will not move (apart from the KL term). Lower "
                "it, or train for longer; to train the discriminator alone first, use `disc_pretraining_steps`."
            )
