from dataclasses import dataclass, field

from trl import SFTConfig

from ..token_weighting import TOKEN_WEIGHTINGS


# Packing strategies that cut a sequence into pieces: the position of a token inside its completion, and the
# completion's length, are then unknowable from the packed row
_SPLITTING_PACKING_STRATEGIES = ("bfd_split", "wrapped")


@dataclass
class WeightedSFTConfig(SFTConfig):
    r"""
    Configuration class for the [`WeightedSFTTrainer`].

    Every parameter of [`~trl.SFTConfig`] is accepted and keeps its meaning. This class adds only the parameters that
    choose the per-token weights.

    Parameters:
        > Parameters that control the token weights

        token_weighting (`str`, *optional*, defaults to `"occupancy"`):
            How each trained token is weighted in the loss. `"occupancy"`: token `t` (0-indexed) of an `n`-token
            completion, assistant turn or sequence weighs `(n - t) / n` (forward-KL matching of the state-action
            occupancy, Eq. 12 of arXiv 2403.12017), discounted by `occupancy_gamma`. `"uniform"`: every token weighs
            1, which is plain SFT and reproduces [`~trl.SFTTrainer`] exactly.
        occupancy_gamma (`float`, *optional*, defaults to `1.0`):
            Discount of the occupancy, in `(0, 1]`. Token `t` weighs `sum_{k=t}^{n-1} gamma^k / sum_{k=0}^{n-1}
            gamma^k`; smaller values concentrate the weight on the first tokens. Only used with
            `token_weighting="occupancy"`.

    > [!NOTE]
    > The weights multiply the per-token negative log-likelihood, which is then reduced exactly as in
    > [`~trl.SFTTrainer`]: divided by the number of trained tokens (of the whole accumulated batch, across processes,
    > as TRL counts them). Options whose loss bypasses the per-token log-probabilities are refused: `loss_type="dft"`
    > with non-uniform weights, `label_smoothing_factor > 0`, and packing strategies that split sequences.
    """

    token_weighting: str = field(
        default="occupancy",
        metadata={
            "help": "How each trained token is weighted in the loss: `'occupancy'` (token t of an n-token completion "
            "weighs (n - t) / n, discounted by `occupancy_gamma`; Eq. 12 of arXiv 2403.12017) or `'uniform'` (plain "
            "SFT, identical to `SFTTrainer`).",
            "choices": list(TOKEN_WEIGHTINGS),
        },
    )
    occupancy_gamma: float = field(
        default=1.0,
        metadata={
            "help": "Discount of the occupancy, in (0, 1]: token t weighs sum_{k>=t} gamma^k / sum_{k>=0} gamma^k. "
            "Only used with `token_weighting='occupancy'`."
        },
    )

    def __post_init__(self):
        super().__post_init__()

        if self.token_weighting not in TOKEN_WEIGHTINGS:
            raise ValueError(
                f"`token_weighting` must be one of {list(TOKEN_WEIGHTINGS)}, got {self.token_weighting!r}."
            )
        if not 0.0 < self.occupancy_gamma <= 1.0:
            raise ValueError(f"`occupancy_gamma` must be in (0, 1], got {self.occupancy_gamma}.")
        if self.occupancy_gamma != 1.0 and self.token_weighting != "occupancy":
            raise ValueError(
                f"`occupancy_gamma={self.occupancy_gamma}` has no effect with `token_weighting="
                f"{self.token_weighting!r}`: set `token_weighting='occupancy'` or leave `occupancy_gamma` at 1.0."
            )

        # The weights multiply the fused LM head's per-token log-probabilities; a loss computed from anything else
        # would train unweighted, so it is refused here rather than discovered after training
        if self.label_smoothing_factor > 0:
            raise ValueError(
                f"`label_smoothing_factor={self.label_smoothing_factor}` is not supported by `WeightedSFTTrainer`: "
                "label smoothing computes its loss from the full logits, which bypasses the token weights. Set "
                "`label_smoothing_factor=0.0`."
            )
        if self.token_weighting != "uniform":
            if self.loss_type != "nll":
                raise ValueError(
                    f"`loss_type={self.loss_type!r}` is not supported with `token_weighting="
                    f"{self.token_weighting!r}`: the weights are defined for the negative log-likelihood (Eq. 12). "
                    "Set `loss_type='nll'`, or `token_weighting='uniform'`."
                )
            packs_train = self.packing
            packs_eval = self.packing if self.eval_packing is None else self.eval_packing
            if (packs_train or packs_eval) and self.packing_strategy in _SPLITTING_PACKING_STRATEGIES:
                raise ValueError(
                    f"`packing_strategy={self.packing_strategy!r}` is not supported with `token_weighting="
                    f"{self.token_weighting!r}`: it cuts sequences into pieces, so a token's position inside its "
                    "completion, and the completion's length, are lost. Use `packing_strategy='bfd'` (or "
                    "`padding_free=True` without packing)."
                )
