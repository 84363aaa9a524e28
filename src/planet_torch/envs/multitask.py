"""One agent for several tasks (the paper's multi-task experiment): ``--task a+b+c``.

Each episode is played in one of the tasks; the agent is not told which one, it sees only the
pixels. Actions are padded to the largest action space (the extra dims are ignored by tasks with
fewer), and the low-dimensional state is dropped because its size differs between tasks (the
original: ``PadActions`` + ``SelectObservations(['image'])``, configs.py ``_tasks``).

Which task an episode plays is a function of its seed: ``tasks[seed % n]``. Episode seeds
(training/collect.py:episode_seed) of a multi-task run are made so that ``seed % n == index % n``,
so the tasks alternate episode by episode -- in collection, tests and evaluation, in worker
processes, and after a resume.
"""

from __future__ import annotations

import numpy as np

from planet_torch.config import Config, TaskSpec, override
from planet_torch.envs.base import Env, Observation


def task_names(spec: TaskSpec) -> list[str]:
    """The tasks of a (possibly multi-task) spec, e.g. ``cartpole-balance+walker-walk``."""
    return spec.name.split("+")


def task_of_seed(spec: TaskSpec, seed: int) -> str:
    """The task an episode with this seed plays."""
    names = task_names(spec)
    return names[seed % len(names)]


def returns_per_task(spec: TaskSpec, seeds: list[int], returns: list[float]) -> dict[str, float]:
    """Mean return of each task among episodes (seed, return); {} for a single-task spec."""
    if spec.suite != "multi":
        return {}
    per_task: dict[str, list[float]] = {}
    for seed, value in zip(seeds, returns, strict=True):
        per_task.setdefault(task_of_seed(spec, seed), []).append(value)
    return {task: float(np.mean(values)) for task, values in sorted(per_task.items())}


class MultiTaskEnv(Env):
    def __init__(self, cfg: Config, seed: int) -> None:
        from planet_torch.envs import make_env

        self.names = task_names(cfg.spec)
        # Each task with the run's shared action repeat and episode length.
        self.envs: list[Env] = [
            make_env(override(cfg, task=name, env={"action_repeat": cfg.action_repeat}), seed)
            for name in self.names
        ]
        super().__init__(
            action_size=max(e.action_size for e in self.envs),
            state_size=0,
            action_repeat=cfg.action_repeat,
            max_policy_steps=cfg.episode_policy_steps,
            image_size=cfg.env.image_size,
        )
        self.current = 0

    @property
    def task(self) -> str:
        """The task of the current (or last) episode."""
        return self.names[self.current]

    def _reset(self, seed: int | None) -> Observation:
        if seed is None:
            self.current = (self.current + 1) % len(self.envs)
        else:
            self.current = seed % len(self.envs)
        return self._strip(self.envs[self.current]._reset(seed))

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        env = self.envs[self.current]
        return env._env_step(env._to_native(native_action[: env.action_size]))

    def _observe(self) -> Observation:
        return self._strip(self.envs[self.current]._observe())

    @staticmethod
    def _strip(observation: Observation) -> Observation:
        return Observation(observation.image, np.zeros(0, np.float32))

    def close(self) -> None:
        for env in self.envs:
            env.close()


__all__ = ["MultiTaskEnv", "returns_per_task", "task_names", "task_of_seed"]
