"""``test-reach``: a tiny deterministic environment for fast tests of the whole pipeline.

A point in the square [-1, 1]² moves by ``0.1 × action`` per env step towards a fixed target. The
image shows the point as a red disc and the target as a green one on black, so a world model can
read both from pixels; the reward ``1 - distance / (2√2)`` is dense and in [0, 1]. Start and
target come from the seed only. A step costs microseconds (pure numpy, a precomputed disc stamp).
"""

from __future__ import annotations

import numpy as np

from planet_torch.envs.base import Env, Observation

_SPEED = 0.1
"""Distance moved per env step at full action."""
_MAX_DISTANCE = 2.0 * np.sqrt(2.0)
"""Diagonal of the square: the largest possible distance, where the reward is 0."""


class ReachEnv(Env):
    """2-D point reaching; action_size 2, state = [point x, point y, target x, target y]."""

    def __init__(
        self, *, seed: int, action_repeat: int, max_policy_steps: int, image_size: int = 64
    ) -> None:
        super().__init__(
            action_size=2,
            state_size=4,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
        )
        self._rng = np.random.default_rng(seed)
        self._point = np.zeros(2)
        self._target = np.zeros(2)
        self._radius = max(1, image_size // 16)
        yy, xx = np.mgrid[-self._radius : self._radius + 1, -self._radius : self._radius + 1]
        self._disc = xx**2 + yy**2 <= self._radius**2  # [2r+1, 2r+1] bool stamp

    def _reset(self, seed: int | None) -> Observation:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._point = self._rng.uniform(-1.0, 1.0, 2)
        self._target = self._rng.uniform(-0.8, 0.8, 2)
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        self._point = np.clip(self._point + _SPEED * native_action, -1.0, 1.0)
        distance = float(np.linalg.norm(self._point - self._target))
        return 1.0 - distance / _MAX_DISTANCE, False, False

    def _observe(self) -> Observation:
        image = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        self._stamp(image, self._target, channel=1)
        self._stamp(image, self._point, channel=0)
        state = np.concatenate([self._point, self._target]).astype(np.float32)
        return Observation(image, state)

    def _stamp(self, image: np.ndarray, position: np.ndarray, channel: int) -> None:
        # Centres keep a margin of one radius, so the stamp never leaves the image. Row 0 is the
        # top, so +y points up as in a plot.
        span = self.image_size - 1 - 2 * self._radius
        x, y = np.rint((position + 1.0) * 0.5 * span).astype(int)
        row = span - y
        image[row : row + 2 * self._radius + 1, x : x + 2 * self._radius + 1, channel][
            self._disc
        ] = 255
