"""trl-irl: align language models from demonstrations alone, with TRL trainers that treat SFT as inverse RL."""

__version__ = "0.1.0.dev0"

from .token_weighting import occupancy_weights, span_positions, token_weights
from .trainer import WeightedSFTConfig, WeightedSFTTrainer


__all__ = [
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "occupancy_weights",
    "span_positions",
    "token_weights",
]
