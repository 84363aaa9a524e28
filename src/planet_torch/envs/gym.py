"""gymnasium tasks: CarRacing (pixels from its own observation) and MuJoCo ones like HalfCheetah.

* CarRacing's observation *is* a 96×96 frame (drawn by pygame/Box2D, no OpenGL); it is resized to
  64×64 with an antialiased bilinear filter (the original: skimage resize, order 1). No state.
* MuJoCo tasks are rendered by our own :class:`PixelRenderer` from the model's ``track`` camera
  (a camera that follows the body, the one gym's ``HalfCheetah-v3`` rendered from for the
  original). gymnasium 1.x's own ``render()`` would use a free camera that does not follow the
  runner, and costs about 50 ms a frame here. The state is the env's observation vector.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from planet_torch.config import TaskSpec
from planet_torch.envs.base import Env, Observation
from planet_torch.envs.headless import PixelRenderer, configure_headless, gl_errors


class GymEnv(Env):
    """A gymnasium task with a continuous Box action space."""

    def __init__(
        self,
        spec: TaskSpec,
        *,
        seed: int,
        action_repeat: int,
        max_policy_steps: int,
        image_size: int = 64,
    ) -> None:
        pixel_observations = spec.env_id.startswith("CarRacing")
        configure_headless(need_gl=not pixel_observations)
        with gl_errors(f"creating gymnasium {spec.env_id}"):
            import gymnasium

            kwargs: dict[str, Any] = {"continuous": True} if pixel_observations else {}
            # gymnasium's own limit is set to ours so that it never cuts an episode shorter.
            self._env = gymnasium.make(
                spec.env_id, max_episode_steps=max_policy_steps * action_repeat, **kwargs
            )
        action_space, observation_space = self._env.action_space, self._env.observation_space
        assert isinstance(action_space, gymnasium.spaces.Box), "continuous actions only"
        assert isinstance(observation_space, gymnasium.spaces.Box)
        super().__init__(
            action_size=int(np.prod(action_space.shape)),
            state_size=0 if pixel_observations else int(np.prod(observation_space.shape)),
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
            native_low=action_space.low,
            native_high=action_space.high,
        )
        # MuJoCo envs (MujocoEnv) expose model and data; gymnasium's Env type does not know them.
        self._mujoco: Any = cast(Any, self._env.unwrapped)
        self._renderer = (
            None
            if pixel_observations
            else PixelRenderer(self._mujoco.model, image_size, camera="track")
        )
        self._unused_seed: int | None = seed  # gymnasium is seeded through its first reset
        self._last_observation: np.ndarray = np.zeros(0)

    def _reset(self, seed: int | None) -> Observation:
        if seed is None:
            seed, self._unused_seed = self._unused_seed, None
        self._last_observation, _ = self._env.reset(seed=seed)
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        self._last_observation, reward, terminated, truncated, _ = self._env.step(native_action)
        return float(reward), bool(terminated), bool(truncated)

    def _observe(self) -> Observation:
        if self._renderer is None:
            return Observation(self._resize(self._last_observation), np.zeros(0, np.float32))
        image = self._renderer.render(self._mujoco.data)
        return Observation(image, np.asarray(self._last_observation, np.float32).ravel())

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        size = (self.image_size, self.image_size)
        return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._env.close()
