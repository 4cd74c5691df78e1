"""trl_irl/benchmark/monitoring.py: what a comparison measures while each method trains."""

import pytest

from trl_irl.benchmark.monitoring import RewardMonitor, Stopwatch


def test_stopwatch_adds_up_the_time_inside_what_it_wraps_also_when_it_fails():
    stopwatch = Stopwatch()

    @stopwatch.timed
    def fails():
        raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    spent = stopwatch.seconds
    assert spent > 0
    assert stopwatch.timed(lambda: 3)() == 3 and stopwatch.seconds > spent


class _KnownReward:
    """An exact reward given by a table: what `ExactReverseKLReward` would return for each completion."""

    def __init__(self, table: dict):
        self.table = table

    def __call__(self, prompts, completions, completion_ids):
        return [self.table[completion] for completion in completions]


def test_the_reward_monitor_is_a_callback_that_averages_each_batch_s_fidelity_until_flushed():
    from trl_irl import DiscriminatorCallback

    monitor = RewardMonitor(_KnownReward({"a": 1.0, "b": 2.0, "c": 3.0}))
    assert isinstance(monitor, DiscriminatorCallback)
    batch = {"prompts": ["p", "p", "p", "q", "q"], "completions": ["a", "b", "c", "a", "c"], "completion_ids": None}
    # Within prompt p the learned reward orders a, b, c as the exact one does (+1); within q the first batch reverses
    # them (-1) and the second does not (+1)
    monitor.on_discriminator_scored(
        None, None, None, rewards=[0.1, 0.2, 0.3, 5.0, 4.0], stats={"heldout_acc": 0.5}, **batch
    )
    monitor.on_discriminator_scored(None, None, None, rewards=[0.1, 0.2, 0.3, 4.0, 5.0], stats={"loss": 0.7}, **batch)
    assert monitor.flush() == {"reward_fidelity": pytest.approx(0.5), "disc/heldout_acc": 0.5}  # (0 + 1) / 2
    assert monitor.flush() == {}  # nothing since
    assert monitor.stopwatch.seconds > 0
