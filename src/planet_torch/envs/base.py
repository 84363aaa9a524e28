"""The environment interface, and the one implementation of action repeat, time limit and scaling.

Every environment in planet-torch is an :class:`Env` subclass that only knows how to take *one*
simulator step and how to observe; the policy-level logic lives here, once, for all of them:

* actions are always in [-1, 1] for the agent; they are clipped, then mapped linearly to the
  simulator's own bounds (the original's ``NormalizeActions``);
* one policy step = ``action_repeat`` env steps with the same action; rewards are summed and the
  repeat stops early when the simulator terminates (the original's ``ActionRepeat``);
* the episode is truncated after ``max_policy_steps`` policy steps (the original's
  ``MaximumDuration(episode_env_steps // action_repeat)``); for gymnasium and users' envs a
  termination before ``min_policy_steps`` (the chunk length) is ignored (``MinimumDuration``);
* the image is rendered once per policy step, after the repeat, never per env step.

Time alignment (R = action_repeat)::

    reset()      -> o_0
    step(a_0)    -> o_1, r_1 = r(env step 1) + ... + r(env step R)
    step(a_1)    -> o_2, r_2 = r(env step R+1) + ... + r(env step 2R)
    ...
    step(a_T-1)  -> o_T, r_T, truncated=True   where T = max_policy_steps

so ``r_t`` is the reward earned while going from ``o_{t-1}`` to ``o_t``; stored episodes pair it
with ``o_t`` and ``a_{t-1}`` (the original's row convention).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Observation:
    """What the agent sees after a reset or a policy step."""

    image: np.ndarray
    """uint8 [H, W, 3] (HWC, 64×64 by default)."""
    state: np.ndarray
    """float32 [state_size] flat low-dimensional simulator state (may be empty)."""


@dataclass(frozen=True)
class StepResult:
    """Outcome of one policy step (``action_repeat`` env steps)."""

    observation: Observation
    reward: float
    """Sum of the env-step rewards of this policy step."""
    terminated: bool
    """The task ended (e.g. a crash); do not bootstrap."""
    truncated: bool
    """The time limit ended the episode; both flags can be set on the same step."""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class Env(abc.ABC):
    """A pixel environment with actions in [-1, 1]^action_size.

    Subclasses implement :meth:`_reset`, :meth:`_env_step` (one simulator step with an action in
    native bounds) and :meth:`_observe`; they never repeat actions or count time themselves.
    """

    def __init__(
        self,
        *,
        action_size: int,
        state_size: int,
        action_repeat: int,
        max_policy_steps: int,
        image_size: int,
        native_low: np.ndarray | None = None,
        native_high: np.ndarray | None = None,
    ) -> None:
        if action_repeat < 1 or max_policy_steps < 1:
            raise ValueError(
                f"need action_repeat >= 1 and max_policy_steps >= 1, "
                f"got {action_repeat} and {max_policy_steps}"
            )
        self.action_size = action_size
        self.state_size = state_size
        self.action_repeat = action_repeat
        self.max_policy_steps = max_policy_steps
        self.image_size = image_size
        self.action_low = np.full(action_size, -1.0, np.float32)
        self.action_high = np.full(action_size, 1.0, np.float32)
        self.action_low.flags.writeable = self.action_high.flags.writeable = False
        low = np.full(action_size, -1.0) if native_low is None else np.asarray(native_low, float)
        high = np.full(action_size, 1.0) if native_high is None else np.asarray(native_high, float)
        if low.shape != (action_size,) or high.shape != (action_size,):
            raise ValueError(f"native bounds must have shape ({action_size},)")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise ValueError(f"native action bounds must be finite with low < high: {low}, {high}")
        # Skip the affine map when the simulator already uses [-1, 1], so actions pass bit-exact.
        self._native: tuple[np.ndarray, np.ndarray] | None = (
            None if np.all(low == -1) and np.all(high == 1) else (low, high)
        )
        self._policy_steps = 0
        self._running = False  # an episode is in progress (False before reset and after its end)
        self.min_policy_steps = 0
        """A termination before this many policy steps is ignored and the episode plays on (the
        original's ``MinimumDuration`` for gym tasks: every episode fills a training chunk)."""

    # ---- the interface --------------------------------------------------------------------

    @property
    def policy_steps(self) -> int:
        """Policy steps taken in the current episode (0 right after reset)."""
        return self._policy_steps

    def reset(self, seed: int | None = None) -> Observation:
        """Start an episode. ``seed`` reseeds the environment; None continues its random stream."""
        observation = self._reset(seed)
        self._policy_steps = 0
        self._running = True
        return observation

    def step(self, action: np.ndarray) -> StepResult:
        """Apply ``action`` (clipped to [-1, 1]) for ``action_repeat`` env steps."""
        if not self._running:
            raise RuntimeError(
                "no episode running: call reset() first (also after an episode ends)"
            )
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (self.action_size,):
            raise ValueError(f"action has shape {action.shape}, expected ({self.action_size},)")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action is not finite: {action}")
        native = self._to_native(np.clip(action, -1.0, 1.0))
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            env_reward, terminated, truncated = self._env_step(native)
            reward += env_reward
            if terminated or truncated:
                break
        self._policy_steps += 1
        if terminated and self._policy_steps < self.min_policy_steps:
            terminated = False
        truncated = truncated or self._policy_steps >= self.max_policy_steps
        self._running = not (terminated or truncated)
        return StepResult(self._observe(), float(reward), bool(terminated), bool(truncated))

    def close(self) -> None:  # noqa: B027 (a no-op by default: the test env holds nothing)
        """Free simulator and rendering resources; the env is unusable afterwards."""

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- for subclasses -------------------------------------------------------------------

    @abc.abstractmethod
    def _reset(self, seed: int | None) -> Observation:
        """Reset the simulator (reseeding it when ``seed`` is not None) and observe."""

    @abc.abstractmethod
    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        """One simulator step; returns (reward, terminated, truncated)."""

    @abc.abstractmethod
    def _observe(self) -> Observation:
        """Observation of the current simulator state (called once per policy step)."""

    def _to_native(self, action: np.ndarray) -> np.ndarray:
        if self._native is None:
            return action
        low, high = self._native
        return (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32)
