"""The trainers and their configs, one pair per method; imported on first use, so that a config (read by `trl-irl`'s
argument parser) does not import the trainers' runtime."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports


# Each exported name and the module that defines it
_EXPORTS = {
    "AIRLConfig": ".airl_config",
    "AIRLTrainer": ".airl_trainer",
    "DiscriminatorCallback": ".adversarial_trainer",
    "GAILConfig": ".gail_config",
    "GAILTrainer": ".gail_trainer",
    "VarianceRewardConfig": ".variance_reward_config",
    "VarianceRewardTrainer": ".variance_reward_trainer",
    "WeightedSFTConfig": ".weighted_sft_config",
    "WeightedSFTTrainer": ".weighted_sft_trainer",
    "variance_bradley_terry_loss": ".variance_reward_trainer",
}

__all__ = [
    "AIRLConfig",
    "AIRLTrainer",
    "DiscriminatorCallback",
    "GAILConfig",
    "GAILTrainer",
    "VarianceRewardConfig",
    "VarianceRewardTrainer",
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "variance_bradley_terry_loss",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from .adversarial_trainer import DiscriminatorCallback
    from .airl_config import AIRLConfig
    from .airl_trainer import AIRLTrainer
    from .gail_config import GAILConfig
    from .gail_trainer import GAILTrainer
    from .variance_reward_config import VarianceRewardConfig
    from .variance_reward_trainer import VarianceRewardTrainer, variance_bradley_terry_loss
    from .weighted_sft_config import WeightedSFTConfig
    from .weighted_sft_trainer import WeightedSFTTrainer
