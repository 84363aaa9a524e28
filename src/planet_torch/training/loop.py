"""PlaNet's training schedule (original scripts/configs.py ``_training_schedule``, trainer.py).

    seed:   S random episodes -> train_episodes/,  S random episodes -> test_episodes/
    repeat until schedule.total_updates, schedule.max_hours or the env-step budget
    (schedule.max_env_steps in train_episodes/, then a last test phase at the budget):
      train phase  updates_per_test_phase updates (schedule.test_every_updates, stretched with
                   the rule below) on chunks from train_episodes/; after every
                   updates_per_train_episode-th update (schedule.collect_every_updates, or more
                   with schedule.min_updates_per_decision) one planned episode with exploration
                   noise (planner.train_noise) -> train_episodes/
      test phase   test_batches batches from test_episodes/ scored without gradient (test/...),
                   test_episodes planned episodes without noise -> test_episodes/, their return
                   is the score (test/return); an open-loop video; a checkpoint

Units: the original counts *sequences* (its 50 000 train steps = 1000 updates of 50 chunks).
Here every counter says what it counts: ``updates``, ``env_steps`` (simulator steps in
train_episodes/, a policy step counting action_repeat; the x-axis of the paper's curves),
``policy_steps``.

Exact resume, clean stops, the cost line and the run folder are shared with DDPG: base.py.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from planet_torch.agents.base import Agent, FilteringAgent
from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import Config, OptimConfig
from planet_torch.errors import UserError
from planet_torch.models import WorldModel, WorldModelTrainer, retain_freed_memory
from planet_torch.models.imagination import resolve_plan_dtype
from planet_torch.models.legacy import upgrade_model_state
from planet_torch.models.precision import worth_saying
from planet_torch.replay import ChunkSampler, batch_to_torch
from planet_torch.training.base import BaseTrainer, counter_generator, counter_rng
from planet_torch.training.video import write_video

# Random streams keyed by purpose (collect.SPLIT_STREAM holds the episodes' 0-2).
_BATCH_STREAM, _TEST_BATCH_STREAM, _PROBE_STREAM = 10, 11, 12


def trained_world_model(
    cfg: Config, state: dict[str, Any], action_size: int, state_size: int, device: torch.device
) -> WorldModel:
    """The world model of a PlaNet checkpoint's ``state``, in eval mode on ``device``: what
    ``planet eval`` plans with and ``planet inspect`` explains (a DDPG checkpoint is refused)."""
    if Trainer.learner_key not in state:
        raise UserError(
            "this checkpoint holds no PlaNet world model; was it trained with --algo ddpg?"
        )
    model = WorldModel(cfg, action_size, state_size).to(device)
    model.load_state_dict(state[Trainer.learner_key]["model"])
    return model.eval()


class Trainer(BaseTrainer):
    """One PlaNet run in one run folder; :meth:`train` runs the schedule to its end."""

    learner_key = "world_model"

    def _build(self) -> None:
        retain_freed_memory()  # no page faults on every update's fresh activations (≈1.2-1.4×)
        self.model = WorldModel(self.cfg, self.env.action_size, self.env.state_size).to(self.device)
        self.optimizer = WorldModelTrainer(self.model, self._world_model_optim())
        dtype = str(self.model.resolve_compute_dtype()).removeprefix("torch.")
        reason = self.model.compute_dtype_reason  # what auto chose, or a slow explicit bf16
        if worth_saying(self.cfg.model.compute_dtype, reason):
            print(f"encoder/decoder in {dtype} ({reason})", flush=True)
        if (plan := self._said_plan_dtype()) is not None:
            print(f"planning in {plan[0]} ({plan[1]})", flush=True)

    def _said_plan_dtype(self) -> tuple[str, str] | None:
        """(dtype, why) of the planner, where a run says it: chosen by ``planner.compute_dtype
        auto``, or an explicit bfloat16 on a CPU where it is emulated (slow); None otherwise and
        where the algorithm does not plan."""
        planner = self.cfg.planner
        if self.cfg.algo != "planet":
            return None
        dtype, reason = resolve_plan_dtype(planner.compute_dtype, self.model, planner.candidates)
        if not worth_saying(planner.compute_dtype, reason):
            return None
        return str(dtype).removeprefix("torch."), reason

    def _world_model_optim(self) -> OptimConfig:
        """The world model's Adam settings: ``optim`` (Dreamer takes its own)."""
        return self.cfg.optim

    def _learner_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "compute_dtype": str(self.model.resolve_compute_dtype()).removeprefix("torch."),
        }

    def _load_learner(self, state: dict[str, Any]) -> None:
        model_state, moved = upgrade_model_state(state["model"])  # an older layout, if any
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"], moved)
        started = state.get("compute_dtype")  # "auto" keeps what it chose when the run started:
        if self.cfg.model.compute_dtype == "auto" and started is not None:  # exact resume
            measured = self.model.resolve_compute_dtype()
            self.model.compute_dtype = getattr(torch, started)
            if self.model.compute_dtype != measured:
                self.model.compute_dtype_reason = f"auto: {started}, as when this run started"
                print(f"encoder/decoder in {started}, as when this run started", flush=True)

    def _machine_notes(self) -> dict[str, str]:
        dtype = str(self.model.resolve_compute_dtype()).removeprefix("torch.")
        notes = {"compute_dtype": dtype, "compute_dtype_reason": self.model.compute_dtype_reason}
        if (plan := self._said_plan_dtype()) is not None:
            notes["planner_dtype"], notes["planner_dtype_reason"] = plan
        return notes

    @property
    def train_noise(self) -> float:
        return self.cfg.planner.train_noise

    @property
    def test_noise(self) -> float:
        return self.cfg.planner.test_noise

    def _make_agent(self, seed: int, noise: float, test: bool = False) -> Agent:
        return self._agent(counter_generator(self.device, seed), noise, test)

    def _agent(
        self, generator: torch.Generator, noise: float, test: bool = False
    ) -> FilteringAgent:
        """The acting agent of this algorithm (PlaNet: CEM planning) on the current model."""
        self.model.eval()
        return PlanetAgent(
            self.model, self.cfg.planner, noise=noise, generator=generator, test=test
        )

    def _schedule(self) -> None:
        while True:
            self._check_stop()
            while (
                self.counters.train_collected
                < self._episodes_after_updates(self.cfg, self.counters.updates)
                and not self.budget_reached
            ):
                self._train_episode()
            if self._test_due():
                self._test_phase()
            if self._finished():
                return
            self._update()

    def _update(self) -> None:
        cfg, u = self.cfg, self.counters.updates
        sampler = ChunkSampler(list(self.train_store[: self.train_visible]))
        rng = counter_rng(cfg.seed, _BATCH_STREAM, u)
        batch = batch_to_torch(
            sampler.sample(cfg.data.batch_size, cfg.data.chunk_length, rng), self.device
        )
        start = time.perf_counter()
        metrics = self._learn(batch, counter_generator(self.device, cfg.seed, _BATCH_STREAM, u))
        self._after_update(metrics, time.perf_counter() - start, finite=("total", "grad_norm"))

    def _learn(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, float]:
        """One update of what the algorithm learns from a training batch: PlaNet's world model
        (Dreamer adds its actor and value: dreamer_loop.py)."""
        return self.optimizer.update(batch, generator)

    @torch.no_grad()
    def _test_extras(self) -> dict[str, float]:
        """Model loss on test_batches chunks of test_episodes/ (no gradient), and a video."""
        cfg, s, k = self.cfg, self.cfg.schedule, self.counters.tests_done
        self.model.eval()
        sampler = ChunkSampler(list(self.test_store[: self.visible_test_episodes]))
        sums: dict[str, float] = {}
        for b in range(s.test_batches):
            rng = counter_rng(cfg.seed, _TEST_BATCH_STREAM, k, b)
            batch = batch_to_torch(
                sampler.sample(cfg.data.batch_size, cfg.data.chunk_length, rng), self.device
            )
            generator = counter_generator(self.device, cfg.seed, _TEST_BATCH_STREAM, k, b)
            _, terms = self.model.loss(batch, generator)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value / s.test_batches
        self._open_loop_video(
            batch, counter_generator(self.device, cfg.seed, _TEST_BATCH_STREAM, k)
        )
        return sums

    def _open_loop_video(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> None:
        """5 context frames, then imagination: truth | model side by side, first chunk."""
        truth = batch["image"][:, :1]
        predicted = self.model.open_loop(
            truth, batch["action"][:, :1], context=min(5, truth.shape[0]), generator=generator
        )
        frames = torch.cat([truth, predicted.to(truth.device)], dim=3)[:, 0].cpu().numpy()
        write_video(self.run.videos / f"openloop-{self.counters.updates:07d}.mp4", frames, fps=5)
        self.logger.image(
            "test/open_loop", np.concatenate(list(frames), axis=0), updates=self.counters.updates
        )

    @staticmethod
    def _updates_before_episode(cfg: Config, n: int) -> int:
        return n * cfg.updates_per_train_episode

    @staticmethod
    def _episodes_after_updates(cfg: Config, updates: int) -> int:
        return updates // cfg.updates_per_train_episode

    def _probe_seconds_per_action(self) -> float:
        """Time one decision on a stored frame (own generator: the run's streams untouched)."""
        agent = self._agent(counter_generator(self.device, self.cfg.seed, _PROBE_STREAM), 0.0)
        frame = self.train_store[0].image[:1]
        agent.act_batch(frame)  # warm-up
        start = time.perf_counter()
        agent.act_batch(frame)
        return time.perf_counter() - start
