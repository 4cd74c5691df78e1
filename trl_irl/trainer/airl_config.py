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

        log_prob_coef (`float`, *optional*):
            `c` in the logit `l = f_theta(x, y) - c * log pi(y | x)`. Defaults to 1 with
            `disc_type="likelihood_ratio"` (which requires it: `f_theta = log q_phi` and `l = 0` at the start
            need `c = 1`) and to 0.03 with a classifier. AIRL's is 1, which makes `f_theta` the
            expert's log-density up to a constant; a smaller `c` leaves part of the policy's term in `f_theta`
            (`f_theta = log rho_exp - (1 - c) log pi + const` at the optimum), but keeps the term from swamping a
            fresh `f_theta`. Through the reward `l`, `c` is also the weight of the policy's entropy bonus (summed
            over the remaining tokens at the token level). Measured on the colours toy task: with 1, the policy
            collapsed onto invalid responses within 30 steps (the bonus for unlikely responses won before `f_theta`
            learned); with 0.03 it moved towards the expert at both levels (see `docs/airl_trainer.md`).
        log_prob_reduction (`str`, *optional*):
            How the response's token log-probabilities make `log pi(y | x)`: `"sum"` is the exact sequence
            log-probability; `"mean"` divides it by the response length. Defaults to `"sum"` with
            `disc_type="likelihood_ratio"` (which requires it, its `log q_phi` being a sum too) and to
            `"mean"` with a classifier: a 16-token random response has a summed `-log pi` around 100, which dwarfs a
            fresh classifier's `f_theta` and saturates the discriminator from the first step; the mean keeps the term
            on the scale of one token, whatever the length. Token-level discriminators use per-token terms.
    """

    divergence: str = field(
        default="reverse_kl",
        metadata={
            "help": "f-divergence the policy minimises: 'reverse_kl' (AIRL's reward l), 'js', 'forward_kl' or 'alpha'."
        },
    )
    log_prob_coef: float | None = field(
        default=None,
        metadata={
            "help": "c in the logit l = f_theta(x, y) - c * log pi(y | x). Defaults to 1 for the likelihood-"
            "ratio discriminator (required there) and 0.03 for a classifier (see the docs)."
        },
    )
    log_prob_reduction: str | None = field(
        default=None,
        metadata={
            "help": "'sum' (exact log pi(y | x)) or 'mean' (divided by the response length, so that long responses "
            "do not saturate a classifier). Defaults to 'sum' for the likelihood-ratio discriminator (required "
            "there) and 'mean' for a classifier.",
            "choices": list(LOG_PROB_REDUCTIONS),
        },
    )

    def _logit_holds_log_pi(self) -> tuple[str, str]:
        # AIRL's logit is `f_theta - c log pi` whatever the discriminator, so no discriminator type avoids it
        return "AIRL", "Set it to 0."

    def __post_init__(self):
        super().__post_init__()
        likelihood_ratio = self.disc_type == "likelihood_ratio"
        if self.log_prob_coef is None:
            self.log_prob_coef = 1.0 if likelihood_ratio else 0.03
        if self.log_prob_reduction is None:
            self.log_prob_reduction = "sum" if likelihood_ratio else "mean"
        if likelihood_ratio and (self.log_prob_coef != 1.0 or self.log_prob_reduction != "sum"):
            raise ValueError(
                "The likelihood-ratio discriminator is AIRL with `f_theta = log q_phi(y | x)` and `log_prob_coef=1`, "
                f"`log_prob_reduction='sum'` (its logit is `log q_phi - log pi`), but got `log_prob_coef="
                f"{self.log_prob_coef}` and `log_prob_reduction={self.log_prob_reduction!r}`. Leave both unset, or "
                "use `disc_type='classifier'`."
            )
        if self.log_prob_reduction not in LOG_PROB_REDUCTIONS:
            raise ValueError(
                f"`log_prob_reduction` must be one of {list(LOG_PROB_REDUCTIONS)}, got {self.log_prob_reduction!r}."
            )
        if not self.log_prob_coef >= 0:
            raise ValueError(f"`log_prob_coef` must be >= 0, got {self.log_prob_coef}.")
