"""Several environments stepped in lockstep, spread over worker processes.

``VectorEnv(cfg, seeds, workers)`` builds ``len(seeds)`` environments of one config; env i is
created with ``seeds[i]`` and lives in worker ``i % workers`` (``workers = 0``: all in this
process, no subprocess). Each worker is a ``spawn``-ed process whose environments call
:func:`configure_headless` before they import a simulator, so rendering stays headless and every
worker has its own OpenGL context. ``reset`` and ``step`` take and return one entry per env, in
env order; an env whose episode ended is not stepped again until it is reset (its action is
ignored and its last result returned), so a batch of episodes of different lengths runs to the
end of the longest.

A worker that fails sends its error back; the parent raises it (UserErrors stay one line).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from planet_torch.config import Config
from planet_torch.envs.base import Env, Observation, StepResult
from planet_torch.errors import UserError


def _worker(conn: Connection, cfg: Config, seeds: list[int]) -> None:
    from planet_torch.envs import make_env  # each env configures headless rendering first

    envs: list[Env] = []
    try:
        envs = [make_env(cfg, seed) for seed in seeds]
        conn.send(("ok", [(e.action_size, e.state_size, e.max_policy_steps) for e in envs]))
        while True:
            command, payload = conn.recv()
            if command == "reset":
                conn.send(("ok", [envs[j].reset(seed) for j, seed in payload]))
            elif command == "step":
                conn.send(("ok", [envs[j].step(action) for j, action in payload]))
            elif command == "simulate":  # true-simulator rollouts from a given physics state
                conn.send(("ok", [_simulate(envs[j], *item) for j, item in payload]))
            elif command == "close":
                break
    except (KeyboardInterrupt, EOFError):
        pass
    except UserError as error:
        conn.send(("user_error", str(error)))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        for env in envs:
            env.close()
        conn.close()


def _simulate(env: Env, physics_state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    from planet_torch.envs.dmc import DmcEnv

    if not isinstance(env, DmcEnv):
        raise UserError("true-simulator rollouts need a dm_control task")
    env.set_physics_state(physics_state)
    return env.simulate_returns(actions)


class VectorEnv:
    def __init__(self, cfg: Config, seeds: Sequence[int], workers: int = 1) -> None:
        if not seeds:
            raise ValueError("VectorEnv needs at least one environment")
        if workers < 0:
            raise UserError(f"env.workers must be >= 0, not {workers}")
        self.num_envs = len(seeds)
        self._local: list[Env] = []
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._slot: list[tuple[int, int]] = []  # env i -> (worker, index inside the worker)
        workers = min(workers, self.num_envs)
        if workers == 0:
            from planet_torch.envs import make_env

            self._local = [make_env(cfg, seed) for seed in seeds]
            self._slot = [(-1, i) for i in range(self.num_envs)]
            first = self._local[0]
            shape = (first.action_size, first.state_size, first.max_policy_steps)
        else:
            context = multiprocessing.get_context("spawn")
            groups: list[list[int]] = [[] for _ in range(workers)]
            for i in range(self.num_envs):
                self._slot.append((i % workers, len(groups[i % workers])))
                groups[i % workers].append(i)
            for members in groups:
                parent, child = context.Pipe()
                proc = context.Process(
                    target=_worker, args=(child, cfg, [seeds[i] for i in members]), daemon=True
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            shapes = [s for w in range(workers) for s in self._receive(w)]
            shape = shapes[0]
        self.action_size, self.state_size, self.max_policy_steps = shape
        self._done = [False] * self.num_envs
        self._last: list[StepResult | None] = [None] * self.num_envs

    def _receive(self, worker: int) -> Any:
        try:
            status, payload = self._conns[worker].recv()
        except EOFError:
            self.close()
            raise RuntimeError(f"environment worker {worker} died") from None
        if status == "ok":
            return payload
        self.close()
        if status == "user_error":
            raise UserError(payload)
        raise RuntimeError(f"environment worker {worker} failed:\n{payload}")

    def _call(self, command: str, items: dict[int, Any]) -> dict[int, Any]:
        """Send ``command`` with one item per env index; returns env index -> result."""
        if self._local:
            if command == "simulate":
                return {i: _simulate(self._local[i], *item) for i, item in items.items()}
            method = getattr(Env, command)
            return {i: method(self._local[i], item) for i, item in items.items()}
        per_worker: dict[int, list[tuple[int, Any]]] = {}
        order: dict[int, list[int]] = {}
        for i, item in items.items():
            w, j = self._slot[i]
            per_worker.setdefault(w, []).append((j, item))
            order.setdefault(w, []).append(i)
        for w, payload in per_worker.items():  # all workers run at once ...
            self._conns[w].send((command, payload))
        results: dict[int, Any] = {}
        for w in per_worker:  # ... and are collected afterwards
            results.update(zip(order[w], self._receive(w), strict=True))
        return results

    def reset(self, seeds: Sequence[int | None]) -> list[Observation]:
        """Start an episode in every env (``seeds[i]`` reseeds env i; None continues)."""
        assert len(seeds) == self.num_envs, (len(seeds), self.num_envs)
        observations = self._call("reset", dict(enumerate(seeds)))
        self._done = [False] * self.num_envs
        self._last = [None] * self.num_envs
        return [observations[i] for i in range(self.num_envs)]

    def step(self, actions: np.ndarray) -> list[StepResult]:
        """actions [N, A]; one StepResult per env (repeated unchanged for finished envs)."""
        assert actions.shape == (self.num_envs, self.action_size), actions.shape
        running = {i: actions[i] for i in range(self.num_envs) if not self._done[i]}
        for i, result in self._call("step", running).items():
            self._last[i] = result
            self._done[i] = result.done
        assert all(r is not None for r in self._last)
        return [r for r in self._last if r is not None]

    def simulate(self, physics_state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Returns [N] of action sequences [H, N, A] rolled out from ``physics_state`` (a
        DmcEnv's :meth:`get_physics_state`), the N candidates split over all envs and workers:
        the true-simulator planner's objective, in parallel. Ends any running episode."""
        chunks = np.array_split(np.arange(actions.shape[1]), self.num_envs)
        items = {i: (physics_state, actions[:, c]) for i, c in enumerate(chunks) if c.size}
        returns = self._call("simulate", items)
        self._done = [True] * self.num_envs  # the envs' own episodes are no longer meaningful
        return np.concatenate([returns[i] for i in sorted(returns)])

    @property
    def all_done(self) -> bool:
        return all(self._done)

    def close(self) -> None:
        for env in self._local:
            env.close()
        self._local = []
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
