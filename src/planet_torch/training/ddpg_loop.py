"""DDPG's training schedule, in the same run folder and with the same guarantees as loop.py.

    seed:     S random episodes -> train_episodes/,  S' random episodes -> test_episodes/
    repeat until schedule.total_updates (or schedule.max_hours, or the env-step budget
    schedule.max_env_steps in train_episodes/):
      collect one episode with the exploration-noise actor -> train_episodes/ (after a checkpoint)
      update  until round(ddpg.updates_per_policy_step × policy steps of all noisy episodes so
              far) updates are done, each on ddpg.batch_size transitions (chunks of 2 rows)
              sampled from every train episode collected so far
      test    every schedule.test_every_updates updates: schedule.test_episodes noise-free
              episodes -> test_episodes/, their mean return is test/return; a video of the
              first; a checkpoint

Updates are owed per policy step collected (rounded on the running total, so a fractional rate
never drifts) and paid after the episode is saved; the paper's x-axis ``env_steps`` counts the
simulator steps in train_episodes/ (a policy step counts action_repeat), as for PlaNet.

Exact resume, clean stops, the cost line and the run folder are shared with PlaNet (base.py); a
checkpoint is also written at every episode boundary.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from planet_torch.agents.base import Agent
from planet_torch.agents.ddpg import DDPG, DDPGAgent, DDPGNetworks
from planet_torch.config import Config
from planet_torch.envs import Env
from planet_torch.errors import UserError
from planet_torch.replay import ChunkSampler, batch_to_torch
from planet_torch.training.base import BaseTrainer, counter_generator, counter_rng

# Random streams of DDPG (distinct from loop.py's 10-12 and collect.SPLIT_STREAM's 0-2).
_BATCH_STREAM, _EVAL_STREAM = 20, 21
_TRANSITION_ROWS = 2  # (s, a, r, d, s') spans two episode rows; see agents/ddpg.py


def load_ddpg_agent(
    cfg: Config, checkpoint_state: dict[str, Any], env: Env, device: torch.device
) -> DDPGAgent:
    """The noise-free agent of a DDPG checkpoint (``planet eval``); reset() it per episode."""
    if "ddpg" not in checkpoint_state:
        raise UserError(
            "this checkpoint holds no DDPG agent; was the run trained with --algo ddpg?"
        )
    networks = DDPGNetworks(cfg.ddpg, env.action_size, env.state_size).to(device)
    networks.load_state_dict(checkpoint_state["ddpg"]["online"])
    return DDPGAgent(
        networks,
        cfg.ddpg,
        noise_std=0.0,
        generator=counter_generator(device, cfg.seed, _EVAL_STREAM),
    )


class DDPGTrainer(BaseTrainer):
    """One DDPG run in one run folder; :meth:`train` runs the schedule to its end."""

    learner_key = "ddpg"

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool | None = None
    ) -> None:
        if cfg.algo != "ddpg":
            raise ValueError(f"DDPGTrainer needs algo 'ddpg', got {cfg.algo!r}")
        super().__init__(cfg, run_dir, resume=resume, progress=progress)
        # (updates, train_collected) of the last checkpoint: skip a save when nothing changed.
        self._saved_at = (self.counters.updates, self.counters.train_collected) if resume else None
        self.updates_due = 0

    def _build(self) -> None:
        self.learner = DDPG(self.cfg.ddpg, self.env.action_size, self.env.state_size, self.device)

    def _learner_state(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def _load_learner(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)

    @property
    def train_noise(self) -> float:
        return self.cfg.ddpg.noise_std

    def _make_agent(self, seed: int, noise: float, test: bool = False) -> Agent:
        return DDPGAgent(
            self.learner.online,
            self.cfg.ddpg,
            noise_std=noise,
            generator=counter_generator(self.device, seed),
        )

    def _refresh_updates_due(self) -> None:
        """Updates owed for the noisy episodes collected so far (seed episodes owe none)."""
        noisy = self.train_store[self.cfg.schedule.seed_episodes : self.train_visible]
        steps = sum(e.policy_steps for e in noisy)
        self.updates_due = round(self.cfg.ddpg.updates_per_policy_step * steps)

    def _schedule(self) -> None:
        self._refresh_updates_due()
        while True:
            self._check_stop()
            if self._test_due():
                self._test_phase()
            if self._finished():
                return
            if self.counters.updates < self.updates_due:
                self._update()
            else:
                if self._saved_at != (self.counters.updates, self.counters.train_collected):
                    self.save()  # a checkpoint at every episode boundary
                self._train_episode()
                self._refresh_updates_due()

    def save(self) -> Path:
        self._saved_at = (self.counters.updates, self.counters.train_collected)
        return super().save()

    def _update(self) -> None:
        cfg, u = self.cfg, self.counters.updates
        sampler = ChunkSampler(list(self.train_store[: self.train_visible]))
        rng = counter_rng(cfg.seed, _BATCH_STREAM, u)
        batch = batch_to_torch(
            sampler.sample(cfg.ddpg.batch_size, _TRANSITION_ROWS, rng), self.device
        )
        start = time.perf_counter()
        metrics = self.learner.update(
            batch, counter_generator(self.device, cfg.seed, _BATCH_STREAM, u)
        )
        self._after_update(
            metrics, time.perf_counter() - start, finite=("critic_loss", "actor_loss")
        )

    @staticmethod
    def _updates_before_episode(cfg: Config, n: int) -> int:
        rate = cfg.ddpg.updates_per_policy_step
        return round(rate * max(0, n - 1) * cfg.episode_policy_steps)

    @staticmethod
    def _episodes_after_updates(cfg: Config, updates: int) -> int:
        return math.ceil(updates / (cfg.ddpg.updates_per_policy_step * cfg.episode_policy_steps))
