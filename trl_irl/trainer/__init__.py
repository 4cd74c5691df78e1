from .airl_config import AIRLConfig
from .airl_trainer import AIRLTrainer
from .gail_config import GAILConfig
from .gail_trainer import GAILTrainer
from .variance_reward_config import VarianceRewardConfig
from .variance_reward_trainer import VarianceRewardTrainer, variance_bradley_terry_loss
from .weighted_sft_config import WeightedSFTConfig
from .weighted_sft_trainer import WeightedSFTTrainer


__all__ = [
    "AIRLConfig",
    "AIRLTrainer",
    "GAILConfig",
    "GAILTrainer",
    "VarianceRewardConfig",
    "VarianceRewardTrainer",
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "variance_bradley_terry_loss",
]
