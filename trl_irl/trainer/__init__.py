from .weighted_sft_config import WeightedSFTConfig
from .weighted_sft_trainer import WeightedSFTTrainer


__all__ = ["WeightedSFTConfig", "WeightedSFTTrainer"]
