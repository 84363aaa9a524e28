"""The world model of tests/data/reach_world_model.pt, its config and the episodes it learnt
from: used by the script that wrote it (make_reach_world_model.py) and by the test that reads it
(tests/test_dreamer.py), so both see the same."""

from __future__ import annotations

import numpy as np
import torch

from planet_torch.config import DEBUG, Config, override
from planet_torch.envs import Env
from planet_torch.models import State, WorldModel
from planet_torch.replay import Episode
from planet_torch.training.collect import run_episode


def reach_config() -> Config:
    """A small PlaNet world model on ``test-reach``, big enough to read the two discs from
    pixels within a few thousand updates (debug sizes, CNN depth 4-8, had not in 800:
    docs/dreamer.md). Free nats 1: at 3 the prior learnt nothing the posterior read (session 18)."""
    return override(
        DEBUG,
        task="test-reach",
        model={
            "cnn_depth": 16,
            "belief_size": 64,
            "state_size": 16,
            "hidden_size": 64,
            "reward_layers": 2,
            "reward_units": 64,
            "compute_dtype": "float32",
        },
        data={"batch_size": 16, "chunk_length": 16},
        loss={"free_nats": 1.0},
    )


class StickyRandom:
    """Uniform random actions, each kept for a geometric number of decisions (mean
    ``1 / change``): the point travels and reaches the walls (uniform noise dithers near its
    start), so the model also learns what happens there, where an actor pushing into a corner
    ends up."""

    def __init__(self, env: Env, rng: np.random.Generator, change: float) -> None:
        self.env, self.rng, self.change = env, rng, change
        self.action = self._draw()

    def _draw(self) -> np.ndarray:
        return self.rng.uniform(self.env.action_low, self.env.action_high).astype(np.float32)

    def reset(self) -> None:
        self.action = self._draw()

    def act(self, observation: object) -> np.ndarray:
        if self.rng.random() < self.change:
            self.action = self._draw()
        return self.action


def reach_episodes(env: Env, count: int, seed: int) -> list[Episode]:
    """``count`` episodes of ``test-reach``: half uniform random (change 1), half sticky
    (change 0.1); env seeds ``seed``, ``seed + 1``, …"""
    rng = np.random.default_rng(seed)
    return [
        run_episode(env, StickyRandom(env, rng, 1.0 if i % 2 else 0.1), seed=seed + i)
        for i in range(count)
    ]


def filtered_posterior(
    model: WorldModel, episodes: list[Episode], generator: torch.Generator
) -> State:
    """The posterior states [T, N, ...] of N equally long episodes, filtered along each."""
    image = torch.from_numpy(np.stack([e.image for e in episodes], 1))  # [T, N, 64, 64, 3]
    action = torch.from_numpy(np.stack([e.action for e in episodes], 1))  # [T, N, A]
    with torch.no_grad():
        return model.observe(image, action, generator)[0]
