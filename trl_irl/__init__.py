"""trl-irl: align language models from demonstrations alone, with TRL trainers that treat SFT as inverse RL."""

__version__ = "0.1.0.dev0"

from .discriminator import Discriminator, LikelihoodRatioDiscriminator
from .divergences import policy_reward
from .rewards import DiscriminatorReward, LikelihoodReward
from .token_weighting import occupancy_weights, span_positions, token_weights
from .trainer import (
    AIRLConfig,
    AIRLTrainer,
    GAILConfig,
    GAILTrainer,
    VarianceRewardConfig,
    VarianceRewardTrainer,
    WeightedSFTConfig,
    WeightedSFTTrainer,
    variance_bradley_terry_loss,
)


__all__ = [
    "AIRLConfig",
    "AIRLTrainer",
    "Discriminator",
    "DiscriminatorReward",
    "GAILConfig",
    "GAILTrainer",
    "LikelihoodRatioDiscriminator",
    "LikelihoodReward",
    "VarianceRewardConfig",
    "VarianceRewardTrainer",
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "occupancy_weights",
    "policy_reward",
    "span_positions",
    "token_weights",
    "variance_bradley_terry_loss",
]
