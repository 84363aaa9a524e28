"""The one interface every agent offers to the episode loop."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from planet_torch.envs.base import Observation
from planet_torch.models import State, WorldModel


class Agent(Protocol):
    def reset(self) -> None:
        """Forget the previous episode (belief, previous action, noise state)."""

    def act(self, observation: Observation) -> np.ndarray:
        """The action to execute now, float32 [A] within [-1, 1]."""
        ...


class FilteringAgent:
    """What PlaNet's and Dreamer's agents share: per decision, filter the belief with the new
    frame and the action executed last, choose (:meth:`choose`), add N(0, noise²), clip, and
    remember the executed action for the next filter step (zeros at an episode start, as
    training chunks pair ``action[t]`` with ``image[t]``)."""

    def __init__(
        self, model: WorldModel, *, noise: float, generator: torch.Generator, batch: int = 1
    ) -> None:
        self.model, self.noise, self.generator, self.batch = model, noise, generator, batch
        self.action_size = model.action_size

    def reset(self) -> None:
        self.belief: State = self.model.initial_state(self.batch)
        self.prev_action = torch.zeros(self.batch, self.action_size, device=self.model.device)

    def choose(self) -> Tensor:
        """The action [B, A] for the current belief, before exploration noise."""
        raise NotImplementedError

    @torch.inference_mode()
    def act_batch(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [B, 64, 64, 3] (the newest frame of each env) -> actions float32 [B, A]."""
        assert images.shape[0] == self.batch, (images.shape, self.batch)
        frames = torch.from_numpy(np.ascontiguousarray(images))
        self.belief = self.model.filter(self.belief, self.prev_action, frames, self.generator)
        action = self.choose()
        if self.noise > 0:
            noise = torch.randn(action.shape, generator=self.generator, device=action.device)
            action = action + self.noise * noise
        action = action.clamp(-1.0, 1.0)
        self.prev_action = action
        return action.float().cpu().numpy()

    def act(self, observation: Observation) -> np.ndarray:
        return self.act_batch(observation.image[None])[0]
