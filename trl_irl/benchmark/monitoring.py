"""
What a comparison measures while each method trains: exact divergences from the synthetic expert along the way, the
learned reward's fidelity to the exact one, and the likelihood-ratio discriminator's `q_phi` as a generator.
"""

import functools
import math
import time

from transformers import TrainerCallback

from ..discriminator import LikelihoodRatioDiscriminator
from ..trainer import DiscriminatorCallback
from .synthetic import INVALID_MASS, SyntheticExpert, response_probabilities, within_prompt_spearman


# Of the adversarial methods only: how good the learned reward is (see `RewardMonitor`)
# The discriminator's held-out statistics under the names the trainers log them by
REWARD_METRICS = ("reward_fidelity", "disc/heldout_acc", "disc/heldout_loss")


class Stopwatch:
    """Adds up the seconds spent inside the functions it wraps (`@stopwatch.timed`)."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, function):
        @functools.wraps(function)
        def timed_function(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed_function


class DivergenceTracker(TrainerCallback):
    def __init__(self, evaluate, step_offset: int, every: int, reward_monitor: "RewardMonitor | None" = None):
        self.evaluate, self.step_offset, self.every = evaluate, step_offset, every
        self.reward_monitor = reward_monitor
        self.curve: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            point = {"step": self.step_offset + state.global_step, **self.evaluate(model)}
            if self.reward_monitor is not None:
                point |= self.reward_monitor.flush()
            self.curve.append(point)


class DiscriminatorAtStart(TrainerCallback):
    """
    Evaluates the likelihood-ratio discriminator's `q_phi` as a generator when the policy starts to move (after any
    `disc_pretraining_steps`): how much more than the policy its reward can know.
    """

    def __init__(self, evaluate, discriminator: LikelihoodRatioDiscriminator):
        self.evaluate, self.discriminator = evaluate, discriminator
        self.metrics: dict | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.metrics = self.evaluate(self.discriminator.model)


class RewardMonitor(DiscriminatorCallback):
    """
    Follows an adversarial trainer's learned reward (one of its `callbacks`): on each generation
    batch, the within-prompt Spearman correlation between the rewards handed out and the exact reverse-KL rewards of
    the same completions (`ExactReverseKLReward`, from the policy as it sampled them), and the discriminator's
    held-out statistics. `flush` returns their means since the last call. Its time (the exact reward's forwards) adds
    to `stopwatch`, where one is given.
    """

    def __init__(self, exact_reward: "ExactReverseKLReward", stopwatch: Stopwatch | None = None):
        self.exact_reward = exact_reward
        self.stopwatch = stopwatch or Stopwatch()
        self.values: dict[str, list[float]] = {name: [] for name in REWARD_METRICS}

    def on_discriminator_scored(
        self, args, state, control, prompts, completions, completion_ids, rewards, stats, **kwargs
    ):
        self.stopwatch.timed(self._record)(prompts, completions, completion_ids, rewards, stats)

    def _record(self, prompts, completions, completion_ids, rewards, stats):
        exact = self.exact_reward(prompts, completions, completion_ids)
        fidelity = within_prompt_spearman(prompts, rewards, exact)
        if fidelity is not None:
            self.values["reward_fidelity"].append(fidelity)
        for name in ("heldout_acc", "heldout_loss"):
            if name in stats:
                self.values[f"disc/{name}"].append(stats[name])

    def flush(self) -> dict[str, float]:
        means = {name: sum(values) / len(values) for name, values in self.values.items() if values}
        self.values = {name: [] for name in REWARD_METRICS}
        return means


class ExactReverseKLReward:
    """
    The exact GRPO reward for the reverse KL that the metrics report, `KL(pi || p_exp)` over the expert's responses
    plus one "invalid" outcome: `r(y) = log p_exp(o(y) | x) - log pi(o(y) | x)`, where `o(y)` is `y` itself for one
    of the expert's responses and "invalid" for anything else. Then `E_pi[grad log pi(y) r(y)]` is exactly minus the
    gradient of that divergence.

    `p_exp` is smoothed as in `synthetic.divergences`: `(1 - INVALID_MASS) p(y)` for the expert's responses (ended by
    the end-of-sequence token, in their canonical tokens) and `INVALID_MASS` for "invalid", whose policy probability
    is `1 - sum` of the policy's probabilities of the expert's responses. Scoring an invalid response with its own
    `-log pi(y)` instead, as if each invalid response had expert mass `INVALID_MASS`, would reward the policy for
    spreading mass over ever more unlikely invalid responses (an entropy bonus with no cap): with a policy learning
    rate of 3e-4 and no KL term, GRPO on that reward put all its mass on invalid responses within 120 steps.

    `log pi` comes from no-grad forwards of `policy` (set once the trainer exists), at temperature 1.
    """

    __name__ = "exact_reverse_kl"

    def __init__(self, expert: SyntheticExpert, tokenizer):
        self.expert, self.tokenizer, self.policy = expert, tokenizer, None

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        policy_probabilities = {}  # prompt -> the policy's probability of each of the expert's responses
        for prompt in set(prompts):
            responses = list(self.expert.distribution(prompt))
            probabilities = response_probabilities(self.policy, self.tokenizer, prompt, responses)
            policy_probabilities[prompt] = dict(zip(responses, probabilities, strict=True))
        rewards = []
        for prompt, completion, ids in zip(prompts, completions, completion_ids, strict=True):
            expert_probability = self.expert.distribution(prompt).get(completion)
            canonical_ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
            if expert_probability and list(ids) == canonical_ids + [self.tokenizer.eos_token_id]:
                log_expert = math.log((1 - INVALID_MASS) * expert_probability)
                log_policy = math.log(max(policy_probabilities[prompt][completion], 1e-300))
            else:
                log_expert = math.log(INVALID_MASS)
                log_policy = math.log(max(1.0 - sum(policy_probabilities[prompt].values()), 1e-12))
            rewards.append(log_expert - log_policy)
        return rewards
