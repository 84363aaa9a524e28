"""dm_control suite tasks with 64×64 pixels, headless and fast.

Rendering frames the scene as the original does (``physics.render(64, 64, camera_id=0)``: same
camera, square field of view, no resize) but goes through one reused :class:`PixelRenderer`, once
per policy step, by default in its fast mode (no shadows; see there). dm_control's own
``physics.render`` is never called: it would create a second GL context, costs about 17 ms a frame
here with shadows, and two EGL users in one process print EGL_BAD_DISPLAY at exit.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

import numpy as np

from planet_torch.config import TaskSpec
from planet_torch.envs.base import Env, Observation
from planet_torch.envs.headless import PixelRenderer, configure_headless, gl_errors
from planet_torch.errors import UserError


def _quiet_mujoco_deprecations(record: logging.LogRecord) -> bool:
    """MuJoCo 3.x warns through absl on every load of cheetah's XML (``settotalmass`` is
    deprecated); the model is dm_control's own and compiles as intended: drop that one line."""
    return "is deprecated and will be removed" not in record.getMessage()


def unknown_dmc_task(name: str, domain: str, task: str, known: tuple[tuple[str, str], ...]) -> str:
    """One line: what is not in the suite, and the closest names that are."""
    names = [f"dmc:{d}-{t}" for d, t in known]
    close = difflib.get_close_matches(f"dmc:{domain}-{task}", names, n=4, cutoff=0.5)
    if not close and domain in {d for d, _ in known}:
        close = [n for n in names if n.startswith(f"dmc:{domain}-")]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see dm_control.suite.ALL_TASKS"
    return f"task {name!r}: dm_control's suite has no {domain}/{task}{hint}"


class DmcEnv(Env):
    """A dm_control suite task (``spec.env_id`` = ``domain/task``)."""

    def __init__(
        self,
        spec: TaskSpec,
        *,
        seed: int,
        action_repeat: int,
        max_policy_steps: int,
        image_size: int = 64,
        camera_id: int = 0,
        exact_render: bool = False,
    ) -> None:
        configure_headless()
        with gl_errors("importing dm_control"):
            from dm_control import suite
        absl_logger = logging.getLogger("absl")
        if _quiet_mujoco_deprecations not in absl_logger.filters:
            absl_logger.addFilter(_quiet_mujoco_deprecations)
        domain, task = spec.env_id.split("/")
        if (domain, task) not in suite.ALL_TASKS:
            raise UserError(unknown_dmc_task(spec.name, domain, task, suite.ALL_TASKS))
        # No dm_control time limit: ours (max_policy_steps) is the only one, so dm_control never
        # ends an episode early or auto-resets, and a last() time step means a real termination.
        self._env: Any = suite.load(
            domain, task, task_kwargs={"random": seed, "time_limit": float("inf")}
        )
        observation_spec = self._env.observation_spec()
        self._state_keys = spec.state_components or tuple(observation_spec)
        action_spec = self._env.action_spec()
        super().__init__(
            action_size=int(np.prod(action_spec.shape)),
            state_size=sum(int(np.prod(observation_spec[k].shape)) for k in self._state_keys),
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
            native_low=action_spec.minimum,
            native_high=action_spec.maximum,
        )
        self.physics: Any = self._env.physics
        cameras = self.physics.model.ncam
        if not 0 <= camera_id < cameras:
            raise UserError(
                f"env.camera-id {camera_id} does not exist: {spec.name} has cameras 0..{cameras - 1}"
            )
        self._renderer = PixelRenderer(self.physics.model.ptr, image_size, camera_id, exact_render)
        self._time_step: Any = None

    def _reset(self, seed: int | None) -> Observation:
        if seed is not None:
            # The task draws every initial state from this RandomState; reseed it in place.
            self._env.task.random.seed(seed)
        self._time_step = self._env.reset()
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        self._time_step = self._env.step(native_action)
        return float(self._time_step.reward or 0.0), bool(self._time_step.last()), False

    def _observe(self) -> Observation:
        values = self._time_step.observation
        state = np.concatenate([np.ravel(values[k]) for k in self._state_keys], dtype=np.float32)
        return Observation(self._renderer.render(self.physics.data.ptr), state)

    # ---- ground truth for the true-simulator planner ----------------------------------------

    def get_physics_state(self) -> np.ndarray:
        """The full MuJoCo integration state (incl. warm-start): stepping from a restored state
        reproduces the original trajectory bit for bit."""
        return self.physics.get_state(sig=_full_state())

    def set_physics_state(self, physics_state: np.ndarray) -> None:
        """Restore a state from :meth:`get_physics_state`; episode counters are not touched."""
        self.physics.set_state(np.asarray(physics_state, np.float64), sig=_full_state())
        self.physics.forward()  # recompute positions, sensors and contacts for observations

    def simulate_returns(self, actions: np.ndarray) -> np.ndarray:
        """Returns of N open-loop action sequences from the current state, on the real physics.

        ``actions`` [H, N, A] in [-1, 1] (policy steps, each repeated ``action_repeat`` times as
        :meth:`step` does) -> [N] float64, the summed task rewards. No rendering; a sequence
        stops at a termination. The physics state is restored afterwards bit for bit, so the
        episode goes on as if nothing had been simulated (the "CEM + true simulator" upper bound).
        """
        actions = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)  # as step() sends them
        horizon, candidates, action_size = actions.shape
        if action_size != self.action_size:
            raise ValueError(f"actions have {action_size} dims, the task has {self.action_size}")
        start = self.get_physics_state()
        task, physics, sig = self._env.task, self.physics, _full_state()
        sub_steps = self._env._n_sub_steps  # dm_control's physics steps per env step
        returns = np.zeros(candidates)
        try:
            for n in range(candidates):
                physics.set_state(start, sig=sig)
                for h in range(horizon):
                    native = self._to_native(actions[h, n])
                    for _ in range(self.action_repeat):  # as dm_control's Environment.step
                        task.before_step(native, physics)
                        physics.step(sub_steps)
                        task.after_step(physics)
                        returns[n] += task.get_reward(physics) or 0.0
                        if task.get_termination(physics) is not None:
                            break
                    else:
                        continue
                    break
        finally:
            self.set_physics_state(start)
        return returns

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


def _full_state() -> int:
    import mujoco

    return int(mujoco.mjtState.mjSTATE_INTEGRATION)
