"""Past policy samples, replayed beside fresh ones so that the discriminator does not forget what the policy did."""

import random


class ReplayBuffer:
    """
    The last `capacity` policy samples (0: off). Each update draws as many of them as it has fresh samples, at random.

    Args:
        capacity (`int`): samples kept, the oldest dropped first.
        seed (`int`, *optional*, defaults to `0`): seeds the draws.
    """

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = capacity
        self.samples: list = []
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, count: int) -> list:
        """Up to `count` kept samples, without replacement."""
        return self._rng.sample(self.samples, min(count, len(self.samples)))

    def add(self, samples: list) -> None:
        if self.capacity > 0:
            self.samples = (self.samples + samples)[-self.capacity :]

    def state_dict(self) -> dict:
        """What resuming needs: the samples and the random state (saved by `trl_irl.discriminator.checkpoint`)."""
        return {"replay_buffer": self.samples, "rng_state": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.samples = state["replay_buffer"]
        self._rng.setstate(state["rng_state"])
