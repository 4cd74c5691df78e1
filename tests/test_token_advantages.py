import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trl_irl.token_advantages import place_token_advantages, token_level_advantages


def test_reward_to_go_minus_leave_one_out_baseline_by_hand():
    # One prompt, three completions of lengths 3, 2 and 1
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0], [6.0, 7.0, 8.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    # Rewards-to-go: [6, 5, 3], [9, 5, -], [6, -, -]
    expected = torch.tensor(
        [
            [6 - (9 + 6) / 2, 5 - 5, 3 - 0],  # position 2: nobody else reaches it, baseline 0
            [9 - (6 + 6) / 2, 5 - 5, 0],
            [6 - (6 + 9) / 2, 0, 0],
        ]
    )
    torch.testing.assert_close(token_level_advantages(rewards, mask, num_generations=3), expected)


def test_groups_are_independent():
    rewards = torch.tensor([[1.0], [3.0], [10.0], [20.0]])
    mask = torch.ones(4, 1)
    advantages = token_level_advantages(rewards, mask, num_generations=2)
    torch.testing.assert_close(advantages, torch.tensor([[-2.0], [2.0], [-10.0], [10.0]]))


def test_is_unbiased_for_a_one_token_bandit():
    # Each completion is one token; the expected advantage-weighted score equals the true policy gradient
    torch.manual_seed(0)
    logits = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
    action_rewards = torch.tensor([1.0, 3.0, -2.0])
    policy = logits.softmax(0)
    true_gradient = torch.autograd.grad((policy * action_rewards).sum(), logits)[0]

    num_prompts, group = 20000, 4
    actions = torch.multinomial(policy.detach(), num_prompts * group, replacement=True)
    advantages = token_level_advantages(action_rewards[actions][:, None], torch.ones(num_prompts * group, 1), group)
    log_probs = logits.log_softmax(0)[actions]
    estimate = torch.autograd.grad((log_probs * advantages[:, 0]).mean(), logits)[0]
    # The leave-one-out baseline is independent of the completion's own action: no bias, only Monte Carlo noise
    torch.testing.assert_close(estimate, true_gradient, atol=0.02, rtol=0.05)


def test_a_boolean_mask_is_a_mask_of_ones_and_zeros():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    torch.testing.assert_close(
        token_level_advantages(rewards, mask.bool(), num_generations=2), token_level_advantages(rewards, mask, 2)
    )


def test_completions_that_do_not_form_groups_are_refused():
    with pytest.raises(ValueError, match="3 completions do not form groups of 2"):
        token_level_advantages(torch.zeros(3, 2), torch.ones(3, 2), num_generations=2)


class _OneProcess:
    """The accelerator of a single process: gathering and padding across processes leave tensors as they are."""

    process_index = 0

    def gather(self, tensor):
        return tensor

    def pad_across_processes(self, tensor, dim=0):
        return tensor


def _grpo_output(lengths, length):
    mask = torch.tensor([[1] * n + [0] * (length - n) for n in lengths])
    return {"advantages": torch.zeros(len(lengths)), "completion_mask": mask}


def test_placed_advantages_are_the_token_level_advantages_of_the_rewards_laid_out_on_the_mask():
    lengths, length = [3, 1, 2, 2], 4
    token_rewards = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5]), torch.tensor([3.0, 1.0]), torch.zeros(2)]
    placed = place_token_advantages(_grpo_output(lengths, length), token_rewards, _OneProcess(), 2, False)
    rewards = torch.zeros(4, length)
    for row, values in enumerate(token_rewards):
        rewards[row, : len(values)] = values
    expected = token_level_advantages(rewards, _grpo_output(lengths, length)["completion_mask"], 2)
    assert placed.shape == (4, length)
    torch.testing.assert_close(placed, expected)


def test_placing_a_truncated_completion_masked_out_keeps_it_out_of_the_baselines():
    # `mask_truncated_completions`: its mask row is all zero though it has rewards
    token_rewards = [torch.tensor([1.0, 1.0]), torch.tensor([5.0, 5.0])]
    output = {"advantages": torch.zeros(2), "completion_mask": torch.tensor([[1, 1], [0, 0]])}
    placed = place_token_advantages(output, token_rewards, _OneProcess(), 2, mask_truncated_completions=True)
    torch.testing.assert_close(placed, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(RuntimeError, match="TRL changed"):
        place_token_advantages(output, token_rewards, _OneProcess(), 2, mask_truncated_completions=False)


@pytest.mark.parametrize(
    ("output", "token_rewards"),
    [
        ({"completion_mask": torch.ones(2, 2, dtype=torch.long)}, [torch.ones(2)] * 2),  # no advantages
        ({"advantages": torch.zeros(2)}, [torch.ones(2)] * 2),  # no completion mask
        (
            {"advantages": torch.zeros(2, 1), "completion_mask": torch.ones(2, 2, dtype=torch.long)},
            [torch.ones(2)] * 2,
        ),
        ({"advantages": torch.zeros(2), "completion_mask": torch.ones(2, dtype=torch.long)}, [torch.ones(2)] * 2),
        ({"advantages": torch.zeros(3), "completion_mask": torch.ones(2, 2, dtype=torch.long)}, [torch.ones(2)] * 2),
        ({"advantages": torch.zeros(2), "completion_mask": torch.ones(3, 2, dtype=torch.long)}, [torch.ones(2)] * 2),
        ({"advantages": torch.zeros(2), "completion_mask": torch.ones(2, 2, dtype=torch.long)}, [torch.ones(3)] * 2),
        ({"advantages": torch.zeros(2), "completion_mask": torch.ones(2, 2, dtype=torch.long)}, None),
    ],
)
def test_placing_refuses_what_grpo_no_longer_returns(output, token_rewards):
    message = (
        "`GRPOTrainer._generate_and_score_completions` no longer returns what the token-level discriminator relies "
        "on (one `advantages` value and one `completion_mask` row per completion, aligned with the completions given "
        "to the reward function). TRL changed; the per-token advantages cannot be placed safely, and `GAILTrainer` "
        "must be updated for it."
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        place_token_advantages(output, token_rewards, _OneProcess(), 2, False)


class _SecondOfTwoProcesses:
    """
    Process 1 of 2, process 0's rewards and mask given: padding across processes pads along `dim` to the longer of
    the two, gathering puts process 0's rows first, as accelerate does.
    """

    process_index = 1

    def __init__(self, first_rewards, first_mask):
        self.first = {True: first_rewards, False: first_mask}  # by whether the tensor is floating point

    def pad_across_processes(self, tensor, dim=0):
        first = self.first[tensor.is_floating_point()]
        length = max(tensor.shape[dim], first.shape[dim])
        padded = tensor.new_zeros(*tensor.shape[:dim], length, *tensor.shape[dim + 1 :])
        padded.narrow(dim, 0, tensor.shape[dim]).copy_(tensor)
        return padded

    def gather(self, tensor):
        first = self.first[tensor.is_floating_point()]
        first = torch.nn.functional.pad(first, (0, tensor.shape[1] - first.shape[1]))
        return torch.cat([first, tensor])


def test_a_group_straddling_two_processes_gets_the_whole_group_s_baseline_and_each_process_its_rows():
    # Process 0 holds completions 0-1 (at most 3 tokens), process 1 completions 2-3 (at most 2): groups of 4
    first_rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    first_mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    token_rewards = [torch.tensor([0.5, 0.5]), torch.tensor([2.0])]
    output = {"advantages": torch.zeros(2), "completion_mask": torch.tensor([[1, 1], [1, 0]])}

    placed = place_token_advantages(output, token_rewards, _SecondOfTwoProcesses(first_rewards, first_mask), 4, False)

    rewards = torch.cat([first_rewards, torch.tensor([[0.5, 0.5, 0.0], [2.0, 0.0, 0.0]])])
    mask = torch.cat([first_mask, torch.tensor([[1, 1, 0], [1, 0, 0]])])
    whole = token_level_advantages(rewards, mask, num_generations=4)
    torch.testing.assert_close(placed, whole[2:, :2])  # this process's rows, at its own length


@given(
    groups=st.integers(1, 3),
    num_generations=st.integers(2, 4),
    length=st.integers(1, 6),
    data=st.data(),
)
def test_token_advantages_are_reward_to_go_minus_the_leave_one_out_baseline(groups, num_generations, length, data):
    batch = groups * num_generations
    rewards = torch.tensor(
        data.draw(st.lists(st.floats(-5, 5), min_size=batch * length, max_size=batch * length))
    ).view(batch, length)
    lengths = data.draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = torch.tensor([[1] * n + [0] * (length - n) for n in lengths])
    advantages = token_level_advantages(rewards, mask, num_generations)
    for row in range(batch):
        group = range(row // num_generations * num_generations, (row // num_generations + 1) * num_generations)
        for t in range(length):
            if t >= lengths[row]:
                assert advantages[row, t] == 0
                continue
            to_go = rewards[row, t : lengths[row]].sum().item()
            others = [rewards[j, t : lengths[j]].sum().item() for j in group if j != row and lengths[j] > t]
            baseline = sum(others) / len(others) if others else 0.0
            assert advantages[row, t].item() == pytest.approx(to_go - baseline, abs=1e-4)
