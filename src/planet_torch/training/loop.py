"""PlaNet's training schedule (original scripts/configs.py ``_training_schedule``, trainer.py).

    seed:   S random episodes -> train_episodes/,  S random episodes -> test_episodes/
    repeat until schedule.total_updates:
      train phase  test_every_updates updates on chunks from train_episodes/; after every
                   collect_every_updates-th update one planned episode with exploration noise
                   (planner.train_noise) -> train_episodes/
      test phase   test_batches batches from test_episodes/ scored without gradient (test/...),
                   test_episodes planned episodes without noise -> test_episodes/, their return
                   is the score (test/return); an open-loop video; a checkpoint

Units: the original counts *sequences* (its 50 000 train steps = 1000 updates of 50 chunks).
Here every counter says what it counts: ``updates``, ``env_steps`` (simulator steps in
train_episodes/, after action repeat; the x-axis of the paper's curves), ``policy_steps``.

Exact resume. Every random draw is seeded from counters (the batch of update u from
(seed, u); episode i of a split from (seed, split, i)), so a run is a pure function of its
counters. Which episodes are visible to training is derived from ``updates`` too:
``seed_episodes + updates // collect_every_updates``. After a kill -9, ``--resume`` restores
the last checkpoint; an episode that was already saved after it is not collected again but
*revealed* when the schedule reaches it — it is the very episode the schedule would produce.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import Config
from planet_torch.envs import Env, make_env
from planet_torch.errors import UserError
from planet_torch.models import WorldModel, WorldModelTrainer
from planet_torch.replay import ChunkSampler, Episode, EpisodeDir, EpisodeStore, batch_to_torch
from planet_torch.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from planet_torch.training.collect import collect_random, episode_seed, run_episode
from planet_torch.training.logging import MetricsLogger, keep_first_metrics, read_metrics
from planet_torch.training.run_dir import RunDir
from planet_torch.training.video import write_video

# Independent random streams, keyed by purpose (see collect.SPLIT_STREAM for episodes).
_BATCH_STREAM, _TEST_BATCH_STREAM, _PROBE_STREAM = 10, 11, 12
CHECKPOINT_NAME = "latest.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but this machine has no usable CUDA; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def _generator(device: torch.device, *key: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived: leave at the next safe point, after a checkpoint."""


@dataclass
class Counters:
    """What a checkpoint remembers; everything else is derived from it and from disk."""

    updates: int = 0
    train_collected: int = 0  # planned train episodes the schedule has produced (or revealed)
    tests_done: int = 0  # completed test phases
    last_test_updates: int = -1  # updates at the last completed test phase
    metrics_records: int = 0  # lines of metrics.jsonl covered by the checkpoint
    wall_seconds: float = 0.0


class Stoppable(Protocol):
    stop_requested: bool


@contextmanager
def _stop_on_signals(trainer: Stoppable) -> Iterator[None]:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next safe point and leaves."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:  # a second Ctrl-C: leave now, the last checkpoint stands
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Trainer:
    """One PlaNet run in one run folder; :meth:`train` runs the schedule to its end."""

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool | None = None
    ) -> None:
        self.run = RunDir(run_dir)
        if resume and not self.run.exists():
            raise UserError(f"nothing to resume in {self.run.path} (no config.json); drop --resume")
        if not resume and self.run.exists():
            raise UserError(
                f"{self.run.path} already holds a run; add --resume to continue it, "
                "or choose another --run-dir"
            )
        self.cfg = cfg.validate()
        self.device = resolve_device(cfg.device)
        self.run.prepare(cfg)  # refuses a run folder of another config
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.stop_requested = False
        self.train_store = EpisodeStore(EpisodeDir(self.run.train_episodes))
        self.test_store = EpisodeStore(EpisodeDir(self.run.test_episodes))
        self.env: Env = make_env(cfg, seed=episode_seed(cfg.seed, "train", 0))
        seed_everything(cfg.seed)  # the model's initial weights come from the global stream
        self.model = WorldModel(cfg, self.env.action_size, self.env.state_size).to(self.device)
        self.optimizer = WorldModelTrainer(self.model)
        self.counters = Counters()
        checkpoint = self.run.checkpoints / CHECKPOINT_NAME
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint, map_location=self.device)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.counters = Counters(**state["counters"])
            restore_rng(state["rng"])
        # What was logged after the checkpoint is redone by this run: drop it (no duplicates).
        keep_first_metrics(self.run.metrics_path, self.counters.metrics_records)
        self.logger = MetricsLogger(
            self.run.metrics_path,
            self.run.path / "tensorboard",
            wall_seconds_before=self.counters.wall_seconds,
            purge_after_updates=self.counters.updates if resume else None,
        )
        self.env_steps_per_second = math.nan
        self._cost_probe_at = self.counters.updates + 3  # after a few updates of this process
        self.seconds_per_update = math.nan
        self.seconds_per_action = math.nan

    # ---- derived counters ------------------------------------------------------------------

    @property
    def train_visible(self) -> int:
        """Train episodes the model may learn from now (seed + planned so far)."""
        return self.cfg.schedule.seed_episodes + self.counters.train_collected

    @property
    def env_steps(self) -> int:
        """Simulator steps in the visible training data (the paper's x-axis)."""
        steps = sum(e.policy_steps for e in self.train_store[: self.train_visible])
        return steps * self.cfg.action_repeat

    # ---- the schedule ----------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run (or continue) the schedule; returns a summary. Ctrl-C checkpoints and returns."""
        s = self.cfg.schedule
        with _stop_on_signals(self):
            try:
                self._seed_episodes()
                self._start_progress()
                while True:
                    self._check_stop()
                    due = self.counters.updates // s.collect_every_updates
                    while self.counters.train_collected < due:
                        self._train_episode()
                    if self.counters.updates - max(0, self.counters.last_test_updates) >= (
                        s.test_every_updates
                    ):
                        self._test_phase()
                    if self._finished():
                        break
                    self._update()
                if self.counters.last_test_updates != self.counters.updates:
                    self._test_phase()  # every run ends with a score and a checkpoint
            except StopRequested:
                self.save()
                print(
                    f"stopped at {self.counters.updates} updates, checkpoint saved; continue with "
                    f"planet train --resume --run-dir {self.run.path}"
                )
            finally:
                self._close_progress()
                self.logger.close()
                self.env.close()
        return self.summary()

    def _finished(self) -> bool:
        s = self.cfg.schedule
        if self.counters.updates >= s.total_updates:
            return True
        return s.max_hours is not None and self.logger.wall_seconds >= s.max_hours * 3600

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise StopRequested

    def _seed_episodes(self) -> None:
        s = self.cfg.schedule
        start = time.perf_counter()
        made = collect_random(self.cfg, self.run, "train", s.seed_episodes)
        made += collect_random(self.cfg, self.run, "test", s.test_seed_episodes)
        self.train_store.refresh()
        self.test_store.refresh()
        if made:
            env_steps = sum(m.policy_steps for m in made) * self.cfg.action_repeat
            self.env_steps_per_second = env_steps / (time.perf_counter() - start)
        if self.counters.metrics_records == 0:  # a fresh run logs its seed returns once
            for split, store, count in (
                ("train", self.train_store, s.seed_episodes),
                ("test", self.test_store, s.test_seed_episodes),
            ):
                for episode in store[:count]:
                    self.logger.log(
                        {f"seed/{split}_return": float(episode.reward.sum())},
                        env_steps=self.env_steps,
                        updates=0,
                    )

    def _update(self) -> None:
        cfg, u = self.cfg, self.counters.updates
        sampler = ChunkSampler(list(self.train_store[: self.train_visible]))
        rng = _rng(cfg.seed, _BATCH_STREAM, u)
        batch = batch_to_torch(
            sampler.sample(cfg.data.batch_size, cfg.data.chunk_length, rng), self.device
        )
        start = time.perf_counter()
        metrics = self.optimizer.update(batch, _generator(self.device, cfg.seed, _BATCH_STREAM, u))
        seconds = time.perf_counter() - start
        self.seconds_per_update = (
            seconds
            if math.isnan(self.seconds_per_update)
            else 0.9 * self.seconds_per_update + 0.1 * seconds
        )
        if not (math.isfinite(metrics["total"]) and math.isfinite(metrics["grad_norm"])):
            raise UserError(
                f"the loss became {metrics['total']} at update {u + 1}: stopped; the last good "
                f"checkpoint stays in {self.run.checkpoints} (try a lower --optim.learning-rate)"
            )
        self.counters.updates = u + 1
        self._advance_progress()
        if self.counters.updates == self._cost_probe_at:
            self._print_cost_line()
        log_every = max(1, self.cfg.schedule.collect_every_updates // 10)
        if self.counters.updates % log_every == 0:
            scalars = {f"train/{k}": v for k, v in metrics.items()}
            scalars["seconds_per_update"] = self.seconds_per_update
            self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)

    def _planned_episode(self, split: str, index: int, noise: float) -> Episode:
        """Episode ``index`` of ``split``, played by the planner -- or, if a run before a crash
        already saved it, that file (same seed, same model state: the same episode)."""
        store = self.train_store if split == "train" else self.test_store
        if index < len(store):
            return store[index]
        if index > len(store):
            raise UserError(
                f"{split}_episodes/ is missing episodes before #{index}; was a file deleted?"
            )
        seed = episode_seed(self.cfg.seed, split, index)
        agent = PlanetAgent(
            self.model, self.cfg.planner, noise=noise, generator=_generator(self.device, seed)
        )
        self.model.eval()
        start = time.perf_counter()
        episode = run_episode(self.env, agent, seed, should_stop=self._check_stop)
        self.seconds_per_action = (time.perf_counter() - start) / max(1, episode.policy_steps)
        store.add(episode)
        return episode

    def _train_episode(self) -> None:
        index = self.train_visible
        episode = self._planned_episode("train", index, self.cfg.planner.train_noise)
        self.counters.train_collected += 1
        self.logger.log(
            {
                "train/return": float(episode.reward.sum()),
                "train/episodes": self.train_visible,
                "seconds_per_planned_action": self.seconds_per_action,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )

    @torch.no_grad()
    def _test_phase(self) -> None:
        cfg, s, k = self.cfg, self.cfg.schedule, self.counters.tests_done
        self.model.eval()
        sampler = ChunkSampler(list(self.test_store[: s.test_seed_episodes + k * s.test_episodes]))
        sums: dict[str, float] = {}
        for b in range(s.test_batches):
            rng = _rng(cfg.seed, _TEST_BATCH_STREAM, k, b)
            batch = batch_to_torch(
                sampler.sample(cfg.data.batch_size, cfg.data.chunk_length, rng), self.device
            )
            _, terms = self.model.loss(
                batch, _generator(self.device, cfg.seed, _TEST_BATCH_STREAM, k, b)
            )
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value / s.test_batches
        self._open_loop_video(batch)
        returns = []
        for j in range(s.test_episodes):
            index = s.test_seed_episodes + k * s.test_episodes + j
            returns.append(
                float(self._planned_episode("test", index, cfg.planner.test_noise).reward.sum())
            )
        scalars = {f"test/{name}": v for name, v in sums.items()}
        scalars["test/return"] = float(np.mean(returns))
        scalars["env_steps_per_second"] = self.env_steps_per_second
        scalars["seconds_per_planned_action"] = self.seconds_per_action
        self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)
        self.counters.tests_done = k + 1
        self.counters.last_test_updates = self.counters.updates
        self.save()
        self._describe_progress(f"test return {scalars['test/return']:.1f}")

    def _open_loop_video(self, batch: dict[str, torch.Tensor]) -> None:
        """5 context frames then open-loop imagination, truth | model side by side, first chunk."""
        truth = batch["image"][:, :1]
        predicted = self.model.open_loop(
            truth, batch["action"][:, :1], context=min(5, truth.shape[0])
        )
        frames = (
            torch.cat([truth, predicted.to(truth.device)], dim=3)[:, 0].cpu().numpy()
        )  # [T, 64, 128, 3]
        name = f"openloop-{self.counters.updates:07d}.mp4"
        write_video(self.run.videos / name, frames, fps=5)
        self.logger.image(
            "test/open_loop", np.concatenate(list(frames), axis=0), updates=self.counters.updates
        )

    # ---- checkpoint, cost, progress, summary -------------------------------------------------

    def save(self) -> Path:
        self.counters.wall_seconds = self.logger.wall_seconds
        self.counters.metrics_records = self.logger.records
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": vars(self.counters).copy(),
            "rng": capture_rng(),
            "config": self.cfg.to_dict(),
        }
        return save_checkpoint(self.run.checkpoints / CHECKPOINT_NAME, state)

    def _probe_seconds_per_action(self) -> float:
        """Time one planned action on a stored frame (own generator: the run's streams untouched)."""
        agent = PlanetAgent(
            self.model,
            self.cfg.planner,
            noise=0.0,
            generator=_generator(self.device, self.cfg.seed, _PROBE_STREAM),
        )
        frame = self.train_store[0].image[:1]
        agent.act_batch(frame)  # warm-up
        start = time.perf_counter()
        agent.act_batch(frame)
        return time.perf_counter() - start

    def _print_cost_line(self) -> None:
        """Throughput and the projected wall-clock time of the whole configured run."""
        s = self.cfg.schedule
        action_seconds = self.seconds_per_action
        if math.isnan(action_seconds):
            action_seconds = self._probe_seconds_per_action()
        policy_steps = self.cfg.episode_policy_steps
        updates_left = max(0, s.total_updates - self.counters.updates)
        train_left = max(
            0, s.total_updates // s.collect_every_updates - self.counters.train_collected
        )
        tests_left = updates_left // s.test_every_updates + 1
        env_seconds = policy_steps * self.cfg.action_repeat / self.env_steps_per_second
        if math.isnan(env_seconds):
            env_seconds = 0.0
        episode_seconds = policy_steps * action_seconds + env_seconds
        hours = (
            updates_left * self.seconds_per_update
            + (train_left + tests_left * s.test_episodes) * episode_seconds
        ) / 3600
        limit = "" if s.max_hours is None else f"; stops at --schedule.max-hours {s.max_hours:g}"
        line = (
            f"cost: {self.env_steps_per_second:,.0f} env steps/s (random policy), "
            f"{self.seconds_per_update:.3f} s/update, {action_seconds:.3f} s/planned action -> "
            f"projected {hours:.2f} h for {updates_left} updates, {train_left} train and "
            f"{tests_left * s.test_episodes} test episodes of {policy_steps} policy steps{limit}"
        )
        print(line, flush=True)
        self.logger.log(
            {
                "cost/env_steps_per_second": self.env_steps_per_second,
                "cost/seconds_per_update": self.seconds_per_update,
                "cost/seconds_per_planned_action": action_seconds,
                "cost/projected_hours": hours,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )

    def _start_progress(self) -> None:
        self._bar: Progress | None = None
        if self.progress:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("updates"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(
                "training", total=self.cfg.schedule.total_updates, completed=self.counters.updates
            )
            self._bar.start()

    def _advance_progress(self) -> None:
        if getattr(self, "_bar", None) is not None:
            self._bar.update(self._task, completed=self.counters.updates)  # type: ignore[union-attr]

    def _describe_progress(self, text: str) -> None:
        if getattr(self, "_bar", None) is not None:
            self._bar.update(self._task, description=text)  # type: ignore[union-attr]
        else:
            print(
                f"[{self.counters.updates}/{self.cfg.schedule.total_updates} updates, "
                f"{self.env_steps} env steps, {self.logger.wall_seconds / 60:.1f} min] {text}",
                flush=True,
            )

    def _close_progress(self) -> None:
        if getattr(self, "_bar", None) is not None:
            self._bar.stop()  # type: ignore[union-attr]

    def summary(self) -> dict[str, Any]:
        returns = [
            r["test/return"] for r in read_metrics(self.run.metrics_path) if "test/return" in r
        ]
        return {
            "run_dir": str(self.run.path),
            "updates": self.counters.updates,
            "env_steps": self.env_steps,
            "test_returns": returns,
            "wall_seconds": round(self.counters.wall_seconds, 1),
        }
