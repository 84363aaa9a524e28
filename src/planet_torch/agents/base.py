"""The one interface every agent offers to the episode loop."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from planet_torch.envs.base import Observation


class Agent(Protocol):
    def reset(self) -> None:
        """Forget the previous episode (belief, previous action, noise state)."""

    def act(self, observation: Observation) -> np.ndarray:
        """The action to execute now, float32 [A] within [-1, 1]."""
        ...
