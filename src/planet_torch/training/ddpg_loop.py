"""DDPG's training schedule, in the same run folder and with the same guarantees as loop.py.

    seed:     S random episodes -> train_episodes/,  S' random episodes -> test_episodes/
    repeat until schedule.total_updates (or schedule.max_hours):
      collect one episode with the exploration-noise actor -> train_episodes/ (after a checkpoint)
      update  until round(ddpg.updates_per_policy_step × policy steps of all noisy episodes so
              far) updates are done, each on ddpg.batch_size transitions (chunks of 2 rows)
              sampled from every train episode collected so far
      test    every schedule.test_every_updates updates: schedule.test_episodes noise-free
              episodes -> test_episodes/, their mean return is test/return; a video of the
              first; a checkpoint

Updates are owed per policy step collected (rounded on the running total, so a fractional rate
never drifts) and paid after the episode is saved; the paper's x-axis ``env_steps`` counts the
simulator steps in train_episodes/ (after action repeat), as for PlaNet.

Exact resume as in loop.py: every random draw is seeded from counters (batch u from
(seed, u); episode i of a split from (seed, split, i), its exploration noise included), and
what is due next is derived from the counters and the episodes on disk. A checkpoint is written
at every episode boundary and test phase; an episode already on disk after it is *revealed* on
resume, not played again -- it is the very episode the schedule would produce.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from planet_torch.agents.ddpg import DDPG, DDPGAgent, DDPGNetworks, validate_ddpg
from planet_torch.config import Config
from planet_torch.envs import Env, make_env
from planet_torch.errors import UserError
from planet_torch.replay import ChunkSampler, Episode, EpisodeDir, EpisodeStore, batch_to_torch
from planet_torch.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from planet_torch.training.collect import collect_random, episode_seed, run_episode
from planet_torch.training.logging import MetricsLogger, keep_first_metrics, read_metrics
from planet_torch.training.loop import (
    CHECKPOINT_NAME,
    Counters,
    StopRequested,
    _generator,
    _rng,
    _stop_on_signals,
    resolve_device,
    seed_everything,
)
from planet_torch.training.run_dir import RunDir
from planet_torch.training.video import write_video

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
        networks, cfg.ddpg, noise_std=0.0, generator=_generator(device, cfg.seed, _EVAL_STREAM)
    )


class DDPGTrainer:
    """One DDPG run in one run folder; :meth:`train` runs the schedule to its end."""

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool | None = None
    ) -> None:
        if cfg.algo != "ddpg":
            raise ValueError(f"DDPGTrainer needs algo 'ddpg', got {cfg.algo!r}")
        self.run = RunDir(run_dir)
        if resume and not self.run.exists():
            raise UserError(f"nothing to resume in {self.run.path} (no config.json); drop --resume")
        if not resume and self.run.exists():
            raise UserError(
                f"{self.run.path} already holds a run; add --resume to continue it, "
                "or choose another --run-dir"
            )
        self.cfg = cfg.validate()
        validate_ddpg(cfg.ddpg)  # before the run folder is created
        self.device = resolve_device(cfg.device)
        self.run.prepare(cfg)  # refuses a run folder of another config
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.stop_requested = False
        self.train_store = EpisodeStore(EpisodeDir(self.run.train_episodes))
        self.test_store = EpisodeStore(EpisodeDir(self.run.test_episodes))
        self.env: Env = make_env(cfg, seed=episode_seed(cfg.seed, "train", 0))
        seed_everything(cfg.seed)  # the initial weights come from the global stream
        self.learner = DDPG(cfg.ddpg, self.env.action_size, self.env.state_size, self.device)
        self.counters = Counters()
        self._saved_at: tuple[int, int] | None = None  # (updates, train_collected) of the last save
        checkpoint = self.run.checkpoints / CHECKPOINT_NAME
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint, map_location=self.device)
            self.learner.load_state_dict(state["ddpg"])
            self.counters = Counters(**state["counters"])
            restore_rng(state["rng"])
            self._saved_at = (self.counters.updates, self.counters.train_collected)
        # What was logged after the checkpoint is redone by this run: drop it (no duplicates).
        keep_first_metrics(self.run.metrics_path, self.counters.metrics_records)
        self.logger = MetricsLogger(
            self.run.metrics_path,
            self.run.path / "tensorboard",
            wall_seconds_before=self.counters.wall_seconds,
            purge_after_updates=self.counters.updates if resume else None,
        )
        self.updates_due = 0
        self.env_steps_per_second = math.nan
        self.seconds_per_update = math.nan
        self.seconds_per_action = math.nan
        self._cost_probe_at = self.counters.updates + 3  # after a few updates of this process
        self._bar: Progress | None = None

    # ---- derived counters ------------------------------------------------------------------

    @property
    def train_visible(self) -> int:
        """Train episodes the learner may sample from now (seed + collected so far)."""
        return self.cfg.schedule.seed_episodes + self.counters.train_collected

    @property
    def env_steps(self) -> int:
        """Simulator steps in the visible training data (the paper's x-axis)."""
        steps = sum(e.policy_steps for e in self.train_store[: self.train_visible])
        return steps * self.cfg.action_repeat

    def _refresh_updates_due(self) -> None:
        """Updates owed for the noisy episodes collected so far (seed episodes owe none)."""
        noisy = self.train_store[self.cfg.schedule.seed_episodes : self.train_visible]
        steps = sum(e.policy_steps for e in noisy)
        self.updates_due = round(self.cfg.ddpg.updates_per_policy_step * steps)

    # ---- the schedule ----------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run (or continue) the schedule; returns a summary. Ctrl-C checkpoints and returns."""
        s = self.cfg.schedule
        with _stop_on_signals(self):
            try:
                self._seed_episodes()
                self._refresh_updates_due()
                self._start_progress()
                while True:
                    self._check_stop()
                    if self.counters.updates - max(0, self.counters.last_test_updates) >= (
                        s.test_every_updates
                    ):
                        self._test_phase()
                    if self._finished():
                        break
                    if self.counters.updates < self.updates_due:
                        self._update()
                    else:
                        self._save_at_boundary()
                        self._train_episode()
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
            sampler.sample(cfg.ddpg.batch_size, _TRANSITION_ROWS, rng), self.device
        )
        start = time.perf_counter()
        metrics = self.learner.update(batch, _generator(self.device, cfg.seed, _BATCH_STREAM, u))
        seconds = time.perf_counter() - start
        self.seconds_per_update = (
            seconds
            if math.isnan(self.seconds_per_update)
            else 0.9 * self.seconds_per_update + 0.1 * seconds
        )
        if not (math.isfinite(metrics["critic_loss"]) and math.isfinite(metrics["actor_loss"])):
            raise UserError(
                f"the DDPG loss became {metrics['critic_loss']} (critic) / "
                f"{metrics['actor_loss']} (actor) at update {u + 1}: stopped; the last good "
                f"checkpoint stays in {self.run.checkpoints} (try a lower --ddpg.critic-lr)"
            )
        self.counters.updates = u + 1
        self._advance_progress()
        if self.counters.updates == self._cost_probe_at:
            self._print_cost_line()
        if self.counters.updates % max(1, cfg.schedule.test_every_updates // 10) == 0:
            scalars = {f"train/{k}": v for k, v in metrics.items()}
            scalars["seconds_per_update"] = self.seconds_per_update
            self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)

    def _agent_episode(self, split: str, index: int, noise_std: float) -> Episode:
        """Episode ``index`` of ``split``, played by the actor -- or, if a run before a crash
        already saved it, that file (same seed, same weights: the same episode)."""
        store = self.train_store if split == "train" else self.test_store
        if index < len(store):
            return store[index]
        if index > len(store):
            raise UserError(
                f"{split}_episodes/ is missing episodes before #{index}; was a file deleted?"
            )
        seed = episode_seed(self.cfg.seed, split, index)
        agent = DDPGAgent(
            self.learner.online,
            self.cfg.ddpg,
            noise_std=noise_std,
            generator=_generator(self.device, seed),
        )
        start = time.perf_counter()
        episode = run_episode(self.env, agent, seed, should_stop=self._check_stop)
        self.seconds_per_action = (time.perf_counter() - start) / max(1, episode.policy_steps)
        store.add(episode)
        return episode

    def _save_at_boundary(self) -> None:
        """Checkpoint before an episode is collected, unless nothing changed since the last."""
        if self._saved_at != (self.counters.updates, self.counters.train_collected):
            self.save()

    def _train_episode(self) -> None:
        episode = self._agent_episode("train", self.train_visible, self.cfg.ddpg.noise_std)
        self.counters.train_collected += 1
        self._refresh_updates_due()
        self.logger.log(
            {
                "train/return": float(episode.reward.sum()),
                "train/episodes": self.train_visible,
                "seconds_per_action": self.seconds_per_action,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )

    def _test_phase(self) -> None:
        s, k = self.cfg.schedule, self.counters.tests_done
        returns = []
        for j in range(s.test_episodes):
            episode = self._agent_episode(
                "test", s.test_seed_episodes + k * s.test_episodes + j, 0.0
            )
            returns.append(float(episode.reward.sum()))
            if j == 0:
                name = f"test-{self.counters.updates:07d}.mp4"
                write_video(self.run.videos / name, episode.image, fps=10)
        scalars = {
            "test/return": float(np.mean(returns)),
            "env_steps_per_second": self.env_steps_per_second,
            "seconds_per_action": self.seconds_per_action,
        }
        self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)
        self.counters.tests_done = k + 1
        self.counters.last_test_updates = self.counters.updates
        self.save()
        self._describe_progress(f"test return {scalars['test/return']:.1f}")

    # ---- checkpoint, cost, progress, summary -------------------------------------------------

    def save(self) -> Path:
        self.counters.wall_seconds = self.logger.wall_seconds
        self.counters.metrics_records = self.logger.records
        state = {
            "ddpg": self.learner.state_dict(),
            "counters": vars(self.counters).copy(),
            "rng": capture_rng(),
            "config": self.cfg.to_dict(),
        }
        self._saved_at = (self.counters.updates, self.counters.train_collected)
        return save_checkpoint(self.run.checkpoints / CHECKPOINT_NAME, state)

    def _print_cost_line(self) -> None:
        """Throughput and the projected wall-clock time of the whole configured run."""
        s, d = self.cfg.schedule, self.cfg.ddpg
        policy_steps = self.cfg.episode_policy_steps
        updates_left = max(0, s.total_updates - self.counters.updates)
        train_left = math.ceil(updates_left / (d.updates_per_policy_step * policy_steps))
        tests_left = updates_left // s.test_every_updates + 1
        action_seconds = 0.0 if math.isnan(self.seconds_per_action) else self.seconds_per_action
        env_seconds = policy_steps * self.cfg.action_repeat / self.env_steps_per_second
        episode_seconds = policy_steps * action_seconds + (
            0.0 if math.isnan(env_seconds) else env_seconds
        )
        hours = (
            updates_left * self.seconds_per_update
            + (train_left + tests_left * s.test_episodes) * episode_seconds
        ) / 3600
        limit = "" if s.max_hours is None else f"; stops at --schedule.max-hours {s.max_hours:g}"
        print(
            f"cost: {self.env_steps_per_second:,.0f} env steps/s (random policy), "
            f"{self.seconds_per_update:.4f} s/update -> projected {hours:.2f} h for "
            f"{updates_left} updates, {train_left} train and {tests_left * s.test_episodes} "
            f"test episodes of {policy_steps} policy steps{limit}",
            flush=True,
        )
        self.logger.log(
            {
                "cost/env_steps_per_second": self.env_steps_per_second,
                "cost/seconds_per_update": self.seconds_per_update,
                "cost/projected_hours": hours,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )

    def _start_progress(self) -> None:
        if self.progress:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("updates"),
                TimeElapsedColumn(),
            )
            self._task = self._bar.add_task(
                "training ddpg",
                total=self.cfg.schedule.total_updates,
                completed=self.counters.updates,
            )
            self._bar.start()

    def _advance_progress(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.counters.updates)

    def _describe_progress(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)
        else:
            print(
                f"[{self.counters.updates}/{self.cfg.schedule.total_updates} updates, "
                f"{self.env_steps} env steps, {self.logger.wall_seconds / 60:.1f} min] {text}",
                flush=True,
            )

    def _close_progress(self) -> None:
        if self._bar is not None:
            self._bar.stop()

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
