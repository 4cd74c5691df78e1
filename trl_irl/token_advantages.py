"""Per-token advantages from per-token rewards, for GRPO's loss (token-level discriminators).

With a reward `r_t` for every response token, the policy gradient of the expected return is
`E[sum_t grad log pi(a_t | s_t) * G_t]`, `G_t = sum_{k>=t} r_k` the reward-to-go (earlier rewards do not depend on
the action at `t`, so leaving them out keeps the estimate unbiased and lowers its variance). A baseline that does not
depend on the sample's own actions keeps it unbiased too; we use, for each position `t`, the mean reward-to-go at `t`
of the *other* completions of the same prompt that reach `t` (leave-one-out, as in RLOO), and 0 where none does:

    A_t^(i) = G_t^(i) - mean_{j != i, |y_j| > t} G_t^(j)

No scaling by a standard deviation is applied (GRPO's `scale_rewards` concerns its own, sequence-level advantages).
"""

import torch


def token_level_advantages(
    token_rewards: torch.Tensor, completion_mask: torch.Tensor, num_generations: int
) -> torch.Tensor:
    """
    Args:
        token_rewards (`torch.Tensor` of shape `(B, T)`): reward of each completion token (ignored where masked).
        completion_mask (`torch.Tensor` of shape `(B, T)`): 1 on completion tokens, 0 on padding.
        num_generations (`int`): completions per prompt; rows `[g * G, (g + 1) * G)` share a prompt, as GRPO orders
            them.

    Returns:
        `torch.Tensor` of shape `(B, T)`: the advantages, 0 on padding.
    """
    batch_size, length = token_rewards.shape
    if batch_size % num_generations != 0:
        raise ValueError(f"{batch_size} completions do not form groups of {num_generations}.")
    mask = completion_mask.to(token_rewards.dtype)
    rewards = token_rewards * mask
    reward_to_go = rewards.flip(-1).cumsum(-1).flip(-1) * mask  # (B, T)

    grouped = reward_to_go.view(-1, num_generations, length)  # (B / G, G, T)
    grouped_mask = mask.view(-1, num_generations, length)
    total = grouped.sum(dim=1, keepdim=True)  # (B / G, 1, T)
    count = grouped_mask.sum(dim=1, keepdim=True)
    others = (count - grouped_mask).clamp(min=1)  # completions other than this one that reach position t
    baseline = (total - grouped) / others  # (B / G, G, T): 0 where no other completion reaches t
    return ((grouped - baseline) * grouped_mask).view(batch_size, length)


def place_token_advantages(
    output: dict, token_rewards: list | None, accelerator, num_generations: int, mask_truncated_completions: bool
) -> torch.Tensor:
    """
    This process's `(B_local, T)` per-token advantages, from the token rewards of its completions (one tensor each)
    and `output`, what `GRPOTrainer._generate_and_score_completions` returned. Groups of completions may straddle
    processes: the advantages are computed on the whole gathered batch, then this process's rows kept.

    Raises `RuntimeError` when `output` no longer holds what this relies on (one `advantages` value and one
    `completion_mask` row per completion, aligned with the completions given to the reward): TRL changed.
    """
    advantages, completion_mask = output.get("advantages"), output.get("completion_mask")
    if (
        token_rewards is None
        or advantages is None
        or completion_mask is None
        or advantages.dim() != 1
        or completion_mask.dim() != 2
        or len(token_rewards) != advantages.shape[0]
        or len(token_rewards) != completion_mask.shape[0]
        or any(
            len(r) != int(n) and not (n == 0 and mask_truncated_completions)
            for r, n in zip(token_rewards, completion_mask.sum(dim=1), strict=True)
        )
    ):
        raise RuntimeError(
            "`GRPOTrainer._generate_and_score_completions` no longer returns what the token-level discriminator "
            "relies on (one `advantages` value and one `completion_mask` row per completion, aligned with the "
            "completions given to the reward function). TRL changed; the per-token advantages cannot be placed "
            "safely, and `GAILTrainer` must be updated for it."
        )
    device = completion_mask.device
    local_size, length = completion_mask.shape
    rewards = torch.zeros(local_size, length, device=device)
    for row, row_rewards in enumerate(token_rewards):
        # A truncated completion masked by `mask_truncated_completions` keeps its rewards here; its all-zero mask row
        # leaves it out of the advantages and of the other completions' baselines
        rewards[row, : len(row_rewards)] = row_rewards[:length].to(device)
    rewards = accelerator.gather(accelerator.pad_across_processes(rewards, dim=1))  # (B, T_max)
    mask = accelerator.gather(accelerator.pad_across_processes(completion_mask, dim=1))
    all_advantages = token_level_advantages(rewards, mask, num_generations)
    start = accelerator.process_index * local_size
    return all_advantages[start : start + local_size, :length]  # (B_local, T)
