"""trl-irl: align language models from demonstrations alone, with TRL trainers that treat SFT as inverse RL."""

from typing import TYPE_CHECKING

from .lazy_exports import lazy_exports


__version__ = "0.1.0.dev0"

# Each exported name and the module that defines it. They are imported on first use, as TRL and transformers do, so
# that `trl-irl --help` answers without importing torch and TRL.
_EXPORTS = {
    "Discriminator": ".discriminator",
    "LikelihoodRatioDiscriminator": ".discriminator",
    "policy_reward": ".divergences",
    "DiscriminatorReward": ".rewards",
    "LikelihoodReward": ".likelihood_rewards",
    "LikelihoodRatioReward": ".likelihood_rewards",
    "best_of_n": ".reranking",
    "estimate_memory": ".memory",
    "occupancy_weights": ".token_weighting",
    "SFTRunCheckpoints": ".sft_run",
    "sft_run_checkpoints": ".sft_run",
    "span_positions": ".token_weighting",
    "token_weights": ".token_weighting",
    "AIRLConfig": ".trainer",
    "AIRLTrainer": ".trainer",
    "DiscriminatorCallback": ".trainer",
    "GAILConfig": ".trainer",
    "GAILTrainer": ".trainer",
    "VarianceRewardConfig": ".trainer",
    "VarianceRewardTrainer": ".trainer",
    "WeightedSFTConfig": ".trainer",
    "WeightedSFTTrainer": ".trainer",
    "variance_bradley_terry_loss": ".trainer",
}

__all__ = [
    "AIRLConfig",
    "AIRLTrainer",
    "Discriminator",
    "DiscriminatorCallback",
    "DiscriminatorReward",
    "GAILConfig",
    "GAILTrainer",
    "LikelihoodRatioDiscriminator",
    "LikelihoodRatioReward",
    "LikelihoodReward",
    "SFTRunCheckpoints",
    "VarianceRewardConfig",
    "VarianceRewardTrainer",
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "best_of_n",
    "estimate_memory",
    "occupancy_weights",
    "policy_reward",
    "sft_run_checkpoints",
    "span_positions",
    "token_weights",
    "variance_bradley_terry_loss",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from .discriminator import Discriminator, LikelihoodRatioDiscriminator
    from .divergences import policy_reward
    from .likelihood_rewards import LikelihoodRatioReward, LikelihoodReward
    from .memory import estimate_memory
    from .reranking import best_of_n
    from .rewards import DiscriminatorReward
    from .sft_run import SFTRunCheckpoints, sft_run_checkpoints
    from .token_weighting import occupancy_weights, span_positions, token_weights
    from .trainer import (
        AIRLConfig,
        AIRLTrainer,
        DiscriminatorCallback,
        GAILConfig,
        GAILTrainer,
        VarianceRewardConfig,
        VarianceRewardTrainer,
        WeightedSFTConfig,
        WeightedSFTTrainer,
        variance_bradley_terry_loss,
    )
