"""Dreamer's run: PlaNet's schedule, replay and world-model update, then an actor-critic update
from the same batch's posterior states (agents/dreamer.py); the actor acts instead of CEM.

Everything else — seed episodes, collection every ``collect_every_updates`` updates, test
phases, the env-step budget, checkpoints, exact resume, the final score — is PlaNet's
(loop.py, base.py). The world model's Adam takes Dreamer's step size and clip
(``dreamer.model_lr``, ``dreamer.grad_clip_norm``, ``dreamer.adam_eps``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from planet_torch.agents.base import FilteringAgent
from planet_torch.agents.dreamer import DreamerAgent, DreamerLearner
from planet_torch.config import OptimConfig
from planet_torch.models.precision import worth_saying
from planet_torch.training.loop import Trainer


class DreamerTrainer(Trainer):
    """One Dreamer run in one run folder."""

    def _validate(self) -> None:
        super()._validate()
        if self.cfg.algo != "dreamer":
            raise ValueError(f"DreamerTrainer needs algo 'dreamer', got {self.cfg.algo!r}")

    def _build(self) -> None:
        super()._build()
        self.behaviour = DreamerLearner(self.model, self.cfg.dreamer)
        reason = self.behaviour.compute_dtype_reason  # what auto chose, or a slow explicit bf16
        if worth_saying(self.cfg.dreamer.compute_dtype, reason):
            dtype = str(self.behaviour.compute_dtype).removeprefix("torch.")
            print(f"behaviour update in {dtype} ({reason})", flush=True)

    def _world_model_optim(self) -> OptimConfig:
        d = self.cfg.dreamer
        return dataclasses.replace(
            self.cfg.optim,
            learning_rate=d.model_lr,
            grad_clip_norm=d.grad_clip_norm,
            adam_eps=d.adam_eps,
        )

    def _learner_state(self) -> dict[str, Any]:
        return {**super()._learner_state(), "behaviour": self.behaviour.state_dict()}

    def _load_learner(self, state: dict[str, Any]) -> None:
        super()._load_learner(state)
        measured = self.behaviour.compute_dtype
        self.behaviour.load_state_dict(state["behaviour"])  # auto: the dtype the run started in
        if self.behaviour.compute_dtype != measured:
            dtype = str(self.behaviour.compute_dtype).removeprefix("torch.")
            print(f"behaviour update in {dtype}, as when this run started", flush=True)

    def _machine_notes(self) -> dict[str, str]:
        b = self.behaviour
        dtype = str(b.compute_dtype).removeprefix("torch.")
        return super()._machine_notes() | {
            "behaviour_dtype": dtype,
            "behaviour_dtype_reason": b.compute_dtype_reason,
        }

    @property
    def train_noise(self) -> float:
        return self.cfg.dreamer.exploration_noise

    @property
    def test_noise(self) -> float:
        return 0.0

    def _learn(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, float]:
        metrics, posterior = self.optimizer.update_and_posterior(batch, generator)
        return metrics | self.behaviour.update(posterior, generator)

    def _agent(
        self, generator: torch.Generator, noise: float, test: bool = False
    ) -> FilteringAgent:
        self.model.eval()
        self.behaviour.actor.eval()
        return DreamerAgent(
            self.model, self.behaviour.actor, noise=noise, generator=generator, test=test
        )
