"""trl_irl/discriminator/replay.py: the past policy samples an update replays beside the fresh ones."""

from hypothesis import given
from hypothesis import strategies as st

from trl_irl.discriminator.replay import ReplayBuffer


@given(capacity=st.integers(0, 6), batches=st.lists(st.lists(st.integers(), max_size=5), max_size=5))
def test_it_keeps_the_last_capacity_samples_and_none_when_off(capacity, batches):
    buffer = ReplayBuffer(capacity)
    for samples in batches:
        buffer.add(samples)
    every_sample = [sample for samples in batches for sample in samples]
    assert buffer.samples == (every_sample[-capacity:] if capacity else [])
    assert len(buffer) == len(buffer.samples)


@given(kept=st.integers(0, 8), count=st.integers(0, 10))
def test_a_draw_takes_up_to_count_kept_samples_without_replacement(kept, count):
    buffer = ReplayBuffer(capacity=8)
    buffer.add(list(range(kept)))
    drawn = buffer.draw(count)
    assert len(drawn) == min(count, kept) and len(set(drawn)) == len(drawn) and set(drawn) <= set(range(kept))


def test_a_restored_buffer_draws_what_the_saved_one_would_have():
    buffer = ReplayBuffer(capacity=10, seed=3)
    buffer.add(list(range(10)))
    buffer.draw(4)  # the random state moves on
    restored = ReplayBuffer(capacity=10, seed=0)
    restored.load_state_dict(buffer.state_dict())
    assert restored.samples == buffer.samples
    assert [restored.draw(3) for _ in range(3)] == [buffer.draw(3) for _ in range(3)]
    # The seed decides the draws
    assert _draws(seed=1) == _draws(seed=1) != _draws(seed=2)


def _draws(seed: int) -> list:
    buffer = ReplayBuffer(capacity=10, seed=seed)
    buffer.add(list(range(10)))
    return [buffer.draw(5) for _ in range(3)]
