from .gail_config import GAILConfig
from .gail_trainer import GAILTrainer
from .weighted_sft_config import WeightedSFTConfig
from .weighted_sft_trainer import WeightedSFTTrainer


__all__ = ["GAILConfig", "GAILTrainer", "WeightedSFTConfig", "WeightedSFTTrainer"]
