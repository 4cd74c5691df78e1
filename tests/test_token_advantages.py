import torch

from trl_irl.token_advantages import token_level_advantages


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
