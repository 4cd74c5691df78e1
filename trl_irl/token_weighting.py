"""Per-token weights that turn SFT into forward-KL matching of the state-action occupancy (paper Eq. 8-12).

Everything here is a pure tensor function of the tensors a causal-LM forward already receives (`labels` and, for
padding-free or packed batches, `position_ids`), so the weights do not depend on how a batch was laid out.

Notation: a *span* is one completion (prompt-completion data), one assistant turn (conversational data with
`assistant_only_loss=True`) or one whole sequence (language modelling data): a maximal run of consecutive trained
tokens inside one sequence. Token `t` (0-indexed) of an `n`-token span weighs

    uniform:   1                                                  (plain SFT, Eq. 7 / 14)
    occupancy: sum_{k=t}^{n-1} gamma^k / sum_{k=0}^{n-1} gamma^k    (Eq. 12; (n - t) / n when gamma = 1)

so the first token of every span weighs 1 and later tokens less: an error early in a response compounds through
every later state, and the occupancy objective counts token `t` once for every state `k >= t` it leads to.
"""

import torch
import torch.nn.functional as F


TOKEN_WEIGHTINGS = ("uniform", "occupancy")


def span_positions(
    labels: torch.Tensor, position_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Locate every trained token inside its own span.

    Args:
        labels (`torch.Tensor` of shape `(B, T)`):
            Next-token targets aligned with the log-probabilities they score (already shifted), `-100` where nothing
            is trained (prompt, user turns, padding, the first token of a packed sequence).
        position_ids (`torch.Tensor` of shape `(B, T)`, *optional*):
            Positions aligned with `labels`. A position of 0 starts a new sequence, which also starts a new span: in
            padding-free and packed batches, several sequences share one row.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `(position, length)`, both `(B, T)` int64: the 0-indexed position of
        each trained token in its span and the number of trained tokens of that span. Untrained tokens get
        `position = 0` and `length = 1`, so that any weight formula stays finite there.
    """
    trained = labels != -100  # (B, T)
    starts_sequence = torch.zeros_like(trained) if position_ids is None else position_ids == 0  # (B, T)
    trained_before = F.pad(trained[:, :-1], (1, 0), value=False)  # (B, T)
    starts_span = trained & (~trained_before | starts_sequence)  # (B, T)

    index = torch.arange(labels.size(1), device=labels.device).expand_as(labels)  # (B, T)
    span_start_index = torch.where(starts_span, index, 0).cummax(dim=1).values  # (B, T)
    position = torch.where(trained, index - span_start_index, 0)  # (B, T)

    # Span ids count the span starts so far in the row: 1, 2, ... for trained tokens (slot 0 collects nothing)
    span_id = starts_span.cumsum(dim=1)  # (B, T)
    tokens_per_span = torch.zeros(labels.size(0), labels.size(1) + 1, dtype=torch.long, device=labels.device)
    tokens_per_span.scatter_add_(1, span_id, trained.long())  # (B, T + 1)
    length = torch.where(trained, tokens_per_span.gather(1, span_id), 1)  # (B, T)
    return position, length


def occupancy_weights(position: torch.Tensor, length: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """
    Weight of token `position` of a `length`-token span under the (discounted) occupancy objective, Eq. 12.

    `sum_{k=t}^{n-1} gamma^k / sum_{k=0}^{n-1} gamma^k`, which is `(n - t) / n` for `gamma = 1` and the closed form
    `(gamma^t - gamma^n) / (1 - gamma^n)` otherwise. Computed in float64 (the closed form subtracts close numbers when
    `gamma` is near 1) and returned as float32.

    Args:
        position (`torch.Tensor`): 0-indexed positions `t`, any shape.
        length (`torch.Tensor`): span lengths `n >= 1`, same shape.
        gamma (`float`, *optional*, defaults to `1.0`): discount of the occupancy, in `(0, 1]`.

    Returns:
        `torch.Tensor`: the weights, float32, in `(0, 1]` for `t < n`, except that a weight below float32's
        smallest (about `1e-45`, reached for example at `gamma=0.25` past position 74) rounds to 0.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"`gamma` must be in (0, 1], got {gamma}.")
    t = position.double()
    n = length.double()
    if gamma == 1.0:
        weights = (n - t) / n
    else:
        weights = (gamma**t - gamma**n) / (1.0 - gamma**n)
    return weights.float()


def token_weights(
    labels: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    token_weighting: str = "occupancy",
    gamma: float = 1.0,
) -> torch.Tensor:
    """
    Per-token loss weights for a batch of shifted next-token labels.

    Args:
        labels (`torch.Tensor` of shape `(B, T)`): shifted labels, `-100` where nothing is trained.
        position_ids (`torch.Tensor` of shape `(B, T)`, *optional*): shifted position ids (padding-free or packed).
        token_weighting (`str`, *optional*, defaults to `"occupancy"`): `"uniform"` or `"occupancy"`.
        gamma (`float`, *optional*, defaults to `1.0`): occupancy discount, used by `"occupancy"` only.

    Returns:
        `torch.Tensor` of shape `(B, T)`: float32 weights, 0 on untrained tokens.
    """
    trained = labels != -100  # (B, T)
    if token_weighting == "uniform":
        weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    elif token_weighting == "occupancy":
        position, length = span_positions(labels, position_ids)
        weights = occupancy_weights(position, length, gamma)
    else:
        raise ValueError(f"Unknown `token_weighting` {token_weighting!r}; expected one of {TOKEN_WEIGHTINGS}.")
    return torch.where(trained, weights, 0.0)
