from dataclasses import dataclass, field

from trl import RewardConfig


@dataclass
class VarianceRewardConfig(RewardConfig):
    r"""
    Configuration class for the [`VarianceRewardTrainer`].

    Every parameter of [`~trl.RewardConfig`] is accepted and keeps its meaning. This class adds the switch of the
    learned scale.

    Parameters:
        > Parameters that control the scale

        learn_variance (`bool`, *optional*, defaults to `True`):
            Whether the model also outputs a per-response log-scale `log V(x, y)` (its second output) that divides the
            reward difference in the Bradley-Terry likelihood (Eq. 26 of arXiv 2403.12017). With `False`, `V = 1`,
            the model has one output and training is exactly [`~trl.RewardTrainer`]'s (Eq. 27).
    """

    learn_variance: bool = field(
        default=True,
        metadata={
            "help": "Whether the model also outputs a per-response log-scale log V(x, y) that divides the reward "
            "difference in the Bradley-Terry likelihood (Eq. 26). With False, V = 1: exactly RewardTrainer."
        },
    )
