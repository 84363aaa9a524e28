"""Uniform random actions: PlaNet's seed episodes (the original's ``action_space.sample()``)."""

from __future__ import annotations

import numpy as np

from planet_torch.envs.base import Observation


class RandomAgent:
    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> None:
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        self.rng = rng

    def reset(self) -> None:
        pass

    def act(self, observation: Observation) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)
