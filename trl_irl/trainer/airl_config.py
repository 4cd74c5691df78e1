from dataclasses import dataclass, field

from .gail_config import GAILConfig


LOG_PROB_REDUCTIONS = ("mean", "sum")


@dataclass
class AIRLConfig(GAILConfig):
    r"""
    Configuration class for the [`AIRLTrainer`].

    Every parameter of [`GAILConfig`] (and so of [`~trl.GRPOConfig`]) is accepted. `divergence` defaults to
    `"reverse_kl"`, AIRL's reward `l = f_theta(x, y) - log_prob_coef * log pi(y | x)`.

    Parameters:
        > Parameters that control the structured discriminator

        log_prob_coef (`float`, *optional*, defaults to `0.03`):
            `beta` in the logit `l = f_theta(x, y) - beta * log pi(y | x)`. AIRL's is 1, which makes `f_theta` the
            expert's log-density up to a constant; a smaller `beta` leaves part of the policy's term in `f_theta`
            (`f_theta = log rho_exp - (1 - beta) log pi + const` at the optimum), but keeps the term from swamping a
            fresh `f_theta`. Through the reward `l`, `beta` is also the weight of the policy's entropy bonus (summed
            over the remaining tokens at the token level). Measured on the colours toy task: with 1, the policy
            collapsed onto invalid responses within 30 steps (the bonus for unlikely responses won before `f_theta`
            learned); with 0.03 it moved towards the expert at both levels (see `docs/airl_trainer.md`).
        log_prob_reduction (`str`, *optional*, defaults to `"mean"`):
            How the response's token log-probabilities make `log pi(y | x)`: `"sum"` is the exact sequence
            log-probability; `"mean"` divides it by the response length. A 16-token random response has a summed
            `-log pi` around 100, which dwarfs `f_theta` and saturates the discriminator from the first step; the mean
            keeps the term on the scale of one token, whatever the length.
    """

    divergence: str = field(
        default="reverse_kl",
        metadata={
            "help": "f-divergence the policy minimises: 'reverse_kl' (AIRL's reward l), 'js', 'forward_kl' or 'alpha'."
        },
    )
    log_prob_coef: float = field(
        default=0.03,
        metadata={"help": "beta in the logit l = f_theta(x, y) - beta * log pi(y | x); AIRL's is 1 (see the docs)."},
    )
    log_prob_reduction: str = field(
        default="mean",
        metadata={
            "help": "'sum' (exact log pi(y | x)) or 'mean' (divided by the response length, so that long responses "
            "do not saturate the discriminator).",
            "choices": list(LOG_PROB_REDUCTIONS),
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.log_prob_reduction not in LOG_PROB_REDUCTIONS:
            raise ValueError(
                f"`log_prob_reduction` must be one of {list(LOG_PROB_REDUCTIONS)}, got {self.log_prob_reduction!r}."
            )
        if self.log_prob_coef < 0:
            raise ValueError(f"`log_prob_coef` must be >= 0, got {self.log_prob_coef}.")
        if self.disc_replay_buffer_size > 0:
            raise ValueError(
                "`disc_replay_buffer_size` is not supported by AIRL: the logit of a replayed response depends on the "
                "policy's current log-probability of it, which the buffer does not hold. Set it to 0."
            )
