"""What every training run shares, PlaNet's (loop.py) and DDPG's (ddpg_loop.py).

A run lives in one run folder and owes its user four guarantees, implemented once here:

* **Counted in units.** ``updates`` (gradient updates), ``env_steps`` (simulator steps in the
  visible train_episodes/, a policy step counting action_repeat: the x-axis of the paper's curves).
* **Exact resume.** Every random draw is seeded from counters (the batch of update u from
  (seed, stream, u); episode i of a split from (seed, split, i)), and what is due next is derived
  from the counters. After a kill -9, ``--resume`` restores the last checkpoint; an episode that
  was saved after it is not played again but *revealed* when the schedule reaches it -- it is
  the very episode the schedule would produce. Metrics logged after the checkpoint are dropped
  and redone, so metrics.jsonl has no gaps and no duplicates.
* **Clean stops.** SIGINT/SIGTERM set a flag; the run checkpoints at the next safe point and
  leaves (a second Ctrl-C leaves at once, the last checkpoint stands). A non-finite loss stops
  the run with a one-line message and keeps the last good checkpoint.
* **A cost line.** After a few updates: env steps/s, seconds per update and per action, and the
  projected wall-clock hours of the configured run.
"""

from __future__ import annotations

import abc
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from planet_torch.agents.base import Agent
from planet_torch.config import Config
from planet_torch.envs import Env, make_env
from planet_torch.envs.multitask import returns_per_task
from planet_torch.errors import UserError
from planet_torch.machine import available_memory_gib, cpu_sample, crowded, others_cpus
from planet_torch.replay import Episode, EpisodeDir, EpisodeStore
from planet_torch.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from planet_torch.training.collect import collect_random, episode_seed, run_episode
from planet_torch.training.logging import MetricsLogger, keep_first_metrics, read_metrics
from planet_torch.training.run_dir import CHECKPOINT_NAME, RunDir
from planet_torch.training.video import write_video

MEMORY_HEADROOM = 0.8
"""The share of the RAM available at a run's start that its episodes still to come may take
before the run warns: the update itself (≈ 3 GB at the paper's batch on a CPU, BENCHMARKS.md)
and the rest of the machine need the remainder."""


def size_text(nbytes: float) -> str:
    """``"6.35 GiB"``, ``"5.9 MiB"``."""
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA where there is one), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or
    CUDA on a machine without it, is a :class:`UserError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserError(f"device {name!r}: use auto, cpu or cuda (cuda:N for one GPU of several)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}, but this machine has no usable CUDA; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def counter_rng(*key: int) -> np.random.Generator:
    """A NumPy generator that is a pure function of ``key`` (e.g. seed, stream, update)."""
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def counter_generator(device: torch.device, *key: int) -> torch.Generator:
    """A torch generator on ``device`` that is a pure function of ``key``."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived: leave at the next safe point, after a checkpoint."""


class Stoppable(Protocol):
    stop_requested: bool


@contextmanager
def stop_on_signals(run: Stoppable) -> Iterator[None]:
    """SIGINT/SIGTERM set ``run.stop_requested``; a second one raises KeyboardInterrupt.

    SIGHUP too (the SSH session of a run started in its shell was closed), unless the run
    was started to ignore it (``nohup``): the terminal is gone, so the run's output goes to
    /dev/null from then on (a write to the dead terminal would fail before the checkpoint),
    and the run stops at its next step with a checkpoint, as after Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            silence_output()
        if run.stop_requested:
            raise KeyboardInterrupt
        run.stop_requested = True

    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be installed from the main thread (e.g. some Ray workers)
        return
    signals = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)  # POSIX only
    if hangup is not None and signal.getsignal(hangup) == signal.SIG_DFL:
        signals.append(hangup)
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def silence_output() -> None:
    """Point this process's stdout and stderr at /dev/null (their terminal has hung up)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # not a real file (captured): no fd
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


@dataclass
class Counters:
    """What a checkpoint remembers; everything else is derived from it and from disk."""

    updates: int = 0
    train_collected: int = 0  # train episodes the schedule has produced (or revealed)
    tests_done: int = 0  # completed test phases
    last_test_updates: int = -1  # updates at the last completed test phase
    metrics_records: int = 0  # lines of metrics.jsonl covered by the checkpoint
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class Plan:
    """Work of a run (or of what is left of it), in the units that cost time."""

    updates: int
    train_episodes: int  # agent episodes with exploration noise
    test_episodes: int  # noise-free episodes of the test phases
    eval_episodes: int  # the final noise-free eval (the run's score)


@dataclass(frozen=True)
class Rates:
    """Measured costs: seconds per gradient update and per decision, env steps per second of a
    random policy (simulation + rendering)."""

    seconds_per_update: float
    seconds_per_action: float
    env_steps_per_second: float


def projected_seconds(cfg: Config, rates: Rates, plan: Plan) -> float:
    """Wall-clock seconds of ``plan`` at ``rates``: updates, then every episode's decisions and
    simulation (seed episodes are not counted: they take seconds)."""
    policy_steps = cfg.episode_policy_steps
    env_seconds = policy_steps * cfg.action_repeat / rates.env_steps_per_second
    episode_seconds = policy_steps * rates.seconds_per_action + (
        0.0 if math.isnan(env_seconds) else env_seconds
    )
    episodes = plan.train_episodes + plan.test_episodes + plan.eval_episodes
    return plan.updates * rates.seconds_per_update + episodes * episode_seconds


class BaseTrainer(abc.ABC):
    """One run in one run folder; :meth:`train` runs the schedule to its end.

    Subclasses build their learner, say how to save it, play an episode and update, and define
    the order of updates and collection in :meth:`_schedule`.
    """

    learner_key: str  # checkpoint entry of the learner's state

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool | None = None
    ) -> None:
        self.run = RunDir(run_dir)
        if resume and not self.run.exists():
            raise UserError(f"nothing to resume in {self.run.path} (no config.json); drop --resume")
        self.cfg = cfg.validate()
        self._validate()  # before the run folder is created
        self.device = resolve_device(cfg.device)
        # A task that cannot be built (unknown, discrete actions...) fails before the folder exists.
        self.env: Env = make_env(cfg, seed=episode_seed(cfg.seed, "train", 0, cfg.task_count))
        try:  # one writing process per run folder; refuses a folder of another config
            self.writer = self.run.open_for_writing(cfg, new_run=not resume)
        except BaseException:
            self.env.close()
            raise
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.stop_requested = False
        self._last_save = time.monotonic()  # periodic checkpoints count from here
        self.train_store = EpisodeStore(EpisodeDir(self.run.train_episodes))
        self.test_store = EpisodeStore(EpisodeDir(self.run.test_episodes))
        seed_everything(cfg.seed)  # initial weights come from the global stream
        self._build()
        self.counters = Counters()
        checkpoint = self.run.checkpoints / CHECKPOINT_NAME
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint, map_location=self.device)
            if self.learner_key not in state:
                raise UserError(f"{checkpoint} holds no '{self.learner_key}' state; wrong --algo?")
            self._load_learner(state[self.learner_key])
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
        self.seconds_per_update = math.nan
        self.seconds_per_action = math.nan
        # The first update of a process is warm-up (allocation, kernel selection): up to 15x a
        # later one on a 2-core CPU (4.5 s against 0.30 s, cpu preset, bf16 convs), so it is not
        # timed, and the cost line waits for a few timed updates of this process.
        self._updates_before_this_process = self.counters.updates
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        # Who else used the CPUs: since this process started (the cost line's warning) and
        # since the last test phase (logged as machine/others_cpus; `planet results` reads it).
        self._cpu_start = self._cpu_mark = cpu_sample()

    # ---- what an algorithm provides --------------------------------------------------------

    def _validate(self) -> None:  # noqa: B027 -- a hook; most algorithms need no extra checks
        """Algorithm-specific config checks (raise UserError)."""

    @abc.abstractmethod
    def _build(self) -> None:
        """Create the learner (its initial weights come from the seeded global stream)."""

    @abc.abstractmethod
    def _learner_state(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _load_learner(self, state: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def _make_agent(self, seed: int, noise: float, test: bool = False) -> Agent:
        """The acting agent for one episode, its randomness drawn from ``seed``; ``test`` for
        the noise-free episodes of a test phase."""

    @abc.abstractmethod
    def _update(self) -> None:
        """One gradient update; calls :meth:`_after_update` with its metrics."""

    @abc.abstractmethod
    def _schedule(self) -> None:
        """Updates, collection and test phases until :meth:`_finished`."""

    @property
    @abc.abstractmethod
    def train_noise(self) -> float: ...

    @property
    def test_noise(self) -> float:
        """Exploration noise of test episodes, as ``planet eval`` plays them (PlaNet:
        ``planner.test_noise``, 0 as the original)."""
        return 0.0

    def _probe_seconds_per_action(self) -> float:
        """Seconds per action before any episode was played in this process (cost line)."""
        return 0.0

    def _machine_notes(self) -> dict[str, str]:
        """What machines.json notes beside the machine (PlaNet: the encoder/decoder precision)."""
        return {}

    def _test_extras(self) -> dict[str, float]:
        """Scalars a test phase logs beside the return (PlaNet: the test-batch losses)."""
        return {}

    # ---- derived counters ------------------------------------------------------------------

    @property
    def train_visible(self) -> int:
        """Train episodes the learner may use now (seed + collected so far)."""
        return self.cfg.schedule.seed_episodes + self.counters.train_collected

    @property
    def env_steps(self) -> int:
        """Simulator steps in the visible training data (the paper's x-axis)."""
        steps = sum(e.policy_steps for e in self.train_store[: self.train_visible])
        return steps * self.cfg.action_repeat

    @property
    def budget_reached(self) -> bool:
        """The train episodes hold the env-step budget (schedule.max_env_steps): collect no more."""
        budget = self.cfg.schedule.max_env_steps
        return budget is not None and self.env_steps >= budget

    @property
    def planned_updates(self) -> int:
        return self.plan(self.cfg).updates

    @classmethod
    def plan(cls, cfg: Config) -> Plan:
        """What a whole run of ``cfg`` does: total_updates, or fewer where the env-step budget
        (counted in full-length episodes) ends it first."""
        s, episode_env_steps = cfg.schedule, cfg.episode_env_steps
        updates = s.total_updates
        if s.max_env_steps is not None:
            episodes = math.ceil(
                max(0, s.max_env_steps - s.seed_episodes * episode_env_steps) / episode_env_steps
            )
            updates = min(updates, cls._updates_before_episode(cfg, episodes))
        return Plan(
            updates=updates,
            train_episodes=cls._episodes_after_updates(cfg, updates),
            # every updates_per_test_phase, and at the end unless one fell there
            test_episodes=max(1, math.ceil(updates / cfg.updates_per_test_phase)) * s.test_episodes,
            eval_episodes=s.final_eval_episodes,
        )

    @staticmethod
    @abc.abstractmethod
    def _updates_before_episode(cfg: Config, n: int) -> int:
        """Updates the schedule makes before it collects the n-th agent episode (1-based)."""

    @staticmethod
    @abc.abstractmethod
    def _episodes_after_updates(cfg: Config, updates: int) -> int:
        """Agent episodes the schedule has collected once it made ``updates`` updates."""

    def _test_due(self) -> bool:
        since = self.counters.updates - max(0, self.counters.last_test_updates)
        return since >= self.cfg.updates_per_test_phase

    # ---- the run ---------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run (or continue) the schedule; returns a summary. Ctrl-C checkpoints and returns."""
        with stop_on_signals(self):
            try:
                self.run.record_machine(self.counters.updates, **self._machine_notes())
                self._seed_episodes()
                self._start_progress()
                self._schedule()
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
                self.writer.release()
        return self.summary()

    def _finished(self) -> bool:
        s = self.cfg.schedule
        if self.counters.updates >= s.total_updates or self.budget_reached:
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

    def _after_update(
        self, metrics: dict[str, float], seconds: float, finite: tuple[str, ...]
    ) -> None:
        """Count the update, guard against a diverged loss, time it, log every few."""
        if not all(math.isfinite(metrics[k]) for k in finite):
            values = ", ".join(f"{k} {metrics[k]}" for k in finite)
            raise UserError(
                f"the loss became non-finite at update {self.counters.updates + 1} ({values}): "
                f"stopped; the last good checkpoint stays in {self.run.checkpoints} "
                "(try a lower learning rate)"
            )
        self.counters.updates += 1
        in_this_process = self.counters.updates - self._updates_before_this_process
        if in_this_process > 1:  # the first is warm-up
            self.seconds_per_update = (
                seconds
                if math.isnan(self.seconds_per_update)
                else 0.9 * self.seconds_per_update + 0.1 * seconds
            )
        self._advance_progress()
        if in_this_process == 6:  # after five timed updates
            self._print_cost_line()
        log_every = max(1, self.cfg.updates_per_test_phase // 20)
        if self.counters.updates % log_every == 0:
            scalars = {f"train/{k}": v for k, v in metrics.items()}
            if not math.isnan(self.seconds_per_update):  # NaN: only the untimed first update
                scalars["seconds_per_update"] = self.seconds_per_update
            self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)

    def _agent_episode(self, split: str, index: int, noise: float) -> Episode:
        """Episode ``index`` of ``split`` played by the agent -- or, if a run before a crash
        already saved it, that file (same seed, same weights: the same episode)."""
        store = self.train_store if split == "train" else self.test_store
        if index < len(store):
            return store[index]
        if index > len(store):
            raise UserError(
                f"{split}_episodes/ is missing episodes before #{index}: a file was deleted, or "
                "is unreadable (a warning above names it); restore it, or start a new run"
            )
        seed = episode_seed(self.cfg.seed, split, index, self.cfg.task_count)
        agent = self._make_agent(seed, noise, test=split == "test")
        start = time.perf_counter()
        episode = run_episode(self.env, agent, seed, should_stop=self._check_stop)
        self.seconds_per_action = (time.perf_counter() - start) / max(1, episode.policy_steps)
        store.add(episode)
        return episode

    def _train_episode(self) -> None:
        episode = self._agent_episode("train", self.train_visible, self.train_noise)
        self.counters.train_collected += 1
        self.logger.log(
            {
                "train/return": float(episode.reward.sum()),
                "train/episodes": self.train_visible,
                "seconds_per_action": self.seconds_per_action,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )
        every_seconds = self.cfg.schedule.checkpoint_every_minutes * 60
        if time.monotonic() - self._last_save >= every_seconds:
            self.save()  # the state a Ctrl-C here would leave: a resume continues exactly

    def _test_phase(self) -> None:
        s, k = self.cfg.schedule, self.counters.tests_done
        scalars = {f"test/{name}": value for name, value in self._test_extras().items()}
        returns, seeds = [], []
        for j in range(s.test_episodes):
            index = s.test_seed_episodes + k * s.test_episodes + j
            episode = self._agent_episode("test", index, self.test_noise)
            returns.append(float(episode.reward.sum()))
            seeds.append(episode_seed(self.cfg.seed, "test", index, self.cfg.task_count))
            if j == 0:
                name = f"test-{self.counters.updates:07d}.mp4"
                write_video(self.run.videos / name, episode.image, fps=10)
        scalars["test/return"] = float(np.mean(returns))
        for task, value in returns_per_task(self.cfg.spec, seeds, returns).items():
            scalars[f"test/return/{task}"] = value  # multi-task runs: each task's own score
        scalars["env_steps_per_second"] = self.env_steps_per_second
        if hasattr(os, "getloadavg"):  # did the run share the CPU? (its wall-clock is slower)
            scalars["machine/load_1min"] = os.getloadavg()[0]
        now = cpu_sample()
        others = others_cpus(self._cpu_mark, now)
        self._cpu_mark = now
        if not math.isnan(others):
            scalars["machine/others_cpus"] = others
        scalars["seconds_per_action"] = self.seconds_per_action
        self.logger.log(scalars, env_steps=self.env_steps, updates=self.counters.updates)
        self.counters.tests_done = k + 1
        self.counters.last_test_updates = self.counters.updates
        self.save()
        self._describe_progress(f"test return {scalars['test/return']:.1f}")

    @property
    def visible_test_episodes(self) -> int:
        s = self.cfg.schedule
        return s.test_seed_episodes + self.counters.tests_done * s.test_episodes

    # ---- checkpoint, cost, progress, summary -------------------------------------------------

    def save(self) -> Path:
        self._last_save = time.monotonic()
        self.counters.wall_seconds = self.logger.wall_seconds
        self.counters.metrics_records = self.logger.records
        state = {
            self.learner_key: self._learner_state(),
            "counters": vars(self.counters).copy(),
            "rng": capture_rng(),
            "config": self.cfg.to_dict(),
        }
        return save_checkpoint(self.run.checkpoints / CHECKPOINT_NAME, state)

    @property
    def rates(self) -> Rates:
        return Rates(self.seconds_per_update, self.seconds_per_action, self.env_steps_per_second)

    def _print_cost_line(self) -> None:
        """Throughput and the projected wall-clock time of the rest of the configured run."""
        s = self.cfg.schedule
        if math.isnan(self.seconds_per_action):  # nothing planned yet in this process
            self.seconds_per_action = self._probe_seconds_per_action()
        plan = self.plan(self.cfg)
        left = Plan(
            updates=max(0, plan.updates - self.counters.updates),
            train_episodes=max(0, plan.train_episodes - self.counters.train_collected),
            test_episodes=max(0, plan.test_episodes - self.counters.tests_done * s.test_episodes),
            eval_episodes=plan.eval_episodes,
        )
        hours = projected_seconds(self.cfg, self.rates, left) / 3600
        limit = "" if s.max_env_steps is None else f"; budget {s.max_env_steps:,} env steps"
        if s.max_hours is not None:
            limit += f"; stops at --schedule.max-hours {s.max_hours:g}"
        print(
            f"cost: {self.env_steps_per_second:,.0f} env steps/s (random policy), "
            f"{self.seconds_per_update:.4f} s/update, {self.seconds_per_action:.4f} s/action -> "
            f"projected {hours:.2f} h for {left.updates} updates, {left.train_episodes} train, "
            f"{left.test_episodes} test and {left.eval_episodes} eval episodes of "
            f"{self.cfg.episode_policy_steps} policy steps{limit}",
            flush=True,
        )
        self._print_memory_line(left)
        others = others_cpus(self._cpu_start, cpu_sample())
        if crowded(others):
            print(
                f"cost: other processes used {others:.1f} CPUs meanwhile: this run shares the "
                "CPU and will take longer than projected (docs/troubleshooting.md: 'Training "
                "much slower than its cost line')",
                flush=True,
            )
        self.logger.log(
            {
                "cost/env_steps_per_second": self.env_steps_per_second,
                "cost/seconds_per_update": self.seconds_per_update,
                "cost/seconds_per_action": self.seconds_per_action,
                "cost/projected_hours": hours,
            },
            env_steps=self.env_steps,
            updates=self.counters.updates,
        )

    def _print_memory_line(self, left: Plan) -> None:
        """What the episodes held in RAM (train and test, all of them: the sampler draws from
        every one) will grow to by the end of the run, against the RAM available now: a run that
        would exhaust it is told at its start, not after hours."""
        stores = [store for store in (self.train_store, self.test_store) if len(store)]
        if not stores:
            return
        held = sum(s.nbytes for s in stores)
        per_episode = held / sum(len(s) for s in stores)
        coming = left.train_episodes + left.test_episodes
        growth = coming * per_episode
        available = available_memory_gib()
        print(
            f"memory: episodes in RAM {size_text(held)} now, {size_text(held + growth)} at the end "
            f"({size_text(per_episode)} each)"
            + ("" if available is None else f"; {available:.1f} GiB available"),
            flush=True,
        )
        if available is not None and growth > MEMORY_HEADROOM * available * 2**30:
            print(
                f"memory: warning: the {coming} episodes still to come need {size_text(growth)}, "
                f"more than this machine has free ({available:.1f} GiB): the run would run out "
                "of memory before its end. Use a machine with more RAM, fewer runs side by "
                "side, or a shorter schedule (--schedule.total-updates, "
                "--schedule.max-env-steps)",
                flush=True,
            )

    def _start_progress(self) -> None:
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
                f"training {self.cfg.variant}",
                total=self.planned_updates,
                completed=self.counters.updates,
            )
            self._bar.start()

    def _advance_progress(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.counters.updates)

    def _describe_progress(self, text: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=text)
        else:
            print(
                f"[{self.counters.updates}/{self.planned_updates} updates, "
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
            "rates": vars(self.rates),  # measured in this process (NaN: not measured)
            "finished": self._finished(),  # False after Ctrl-C / SIGTERM: --resume continues
        }
