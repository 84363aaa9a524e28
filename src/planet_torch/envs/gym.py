"""gymnasium tasks: any registered env with continuous actions and an RGB picture.

How a frame is made, fastest first:

* CarRacing's observation *is* a 96×96 frame (drawn by pygame/Box2D, no OpenGL); it is resized
  to 64×64 with an antialiased bilinear filter (the original: skimage resize, order 1). No state.
* MuJoCo envs are rendered by our own :class:`PixelRenderer` at 64×64, from the model's
  ``track`` camera where it has one (a camera that follows the body, the one gym's
  ``HalfCheetah-v3`` rendered from for the original), else its first camera, else the free one.
  gymnasium 1.x's own ``render()`` would use a free camera that does not follow the runner, and
  costs about 50 ms a frame here. The state is the env's observation vector.
* Every other env (classic control, Box2D) is made with ``render_mode="rgb_array"``; its
  ``render()`` frame is resized to 64×64 with Pillow's antialiased bilinear filter. The state is
  the observation vector when it is a flat Box, else empty.

A gymnasium env that a user's factory returns (``py:`` tasks, envs/custom.py) goes through the
same class. Terminations and time-limit truncations stay apart (``StepResult``).
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from planet_torch.config import TaskSpec
from planet_torch.envs.base import Env, Observation
from planet_torch.envs.headless import PixelRenderer, configure_headless, gl_errors
from planet_torch.errors import UserError


def make_gym_env(
    spec: TaskSpec, *, seed: int, action_repeat: int, max_policy_steps: int, image_size: int = 64
) -> GymEnv:
    """The gymnasium env ``spec.env_id``, checked: registered, continuous actions, a picture."""
    configure_headless(need_gl=False)  # MuJoCo envs check for OpenGL when they render
    import gymnasium

    env_id = spec.env_id
    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join('gym:' + c for c in close)}?" if close else ""
        raise UserError(f"task {spec.name!r}: gymnasium has no env {env_id!r}{hint}")
    entry = gymnasium.spec(env_id).entry_point
    mujoco = isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")
    pixels = env_id.startswith("CarRacing")
    kwargs: dict[str, Any] = {}
    if pixels:
        kwargs["continuous"] = True
    elif not mujoco:
        kwargs["render_mode"] = "rgb_array"
    if mujoco:
        configure_headless()
    with gl_errors(f"creating gymnasium {env_id}"):
        # gymnasium's own limit is set to ours so that it never cuts an episode shorter.
        env = gymnasium.make(env_id, max_episode_steps=max_policy_steps * action_repeat, **kwargs)
    return GymEnv(
        env,
        name=spec.name,
        seed=seed,
        action_repeat=action_repeat,
        max_policy_steps=max_policy_steps,
        image_size=image_size,
    )


def _continuous_twin(env: Any) -> str:
    """``"; its continuous form is gym:X"`` where gymnasium registers the same env with
    ``continuous=True`` (LunarLander-v3 -> LunarLanderContinuous-v3), else ``""``."""
    import gymnasium

    spec = getattr(env, "spec", None)
    twins = [
        env_id
        for env_id, other in gymnasium.registry.items()
        if spec is not None
        and other.entry_point == spec.entry_point
        and other.kwargs.get("continuous") is True
    ]
    return f"; its continuous form is gym:{twins[0]}" if twins else ""


class GymEnv(Env):
    """A gymnasium env (made) with a continuous Box action space, observed in pixels."""

    def __init__(
        self,
        env: Any,
        *,
        name: str,
        seed: int,
        action_repeat: int,
        max_policy_steps: int,
        image_size: int = 64,
    ) -> None:
        import gymnasium

        action_space, observation_space = env.action_space, env.observation_space
        if not isinstance(action_space, gymnasium.spaces.Box):
            env.close()
            raise UserError(
                f"task {name!r} has {type(action_space).__name__} actions; PlaNet plans "
                f"continuous ones (a gymnasium Box action space){_continuous_twin(env)}"
            )
        self._env = env
        unwrapped = env.unwrapped
        self._mujoco: Any = unwrapped if hasattr(unwrapped, "mujoco_renderer") else None
        self._pixels = isinstance(observation_space, gymnasium.spaces.Box) and (
            observation_space.dtype == np.uint8 and len(observation_space.shape) == 3
        )
        flat = isinstance(observation_space, gymnasium.spaces.Box) and not self._pixels
        super().__init__(
            action_size=int(np.prod(action_space.shape)),
            state_size=int(np.prod(observation_space.shape)) if flat else 0,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
            native_low=action_space.low.ravel(),
            native_high=action_space.high.ravel(),
        )
        self._action_shape = action_space.shape
        self._renderer: PixelRenderer | None = None
        if self._mujoco is not None and not self._pixels:
            self._renderer = PixelRenderer(self._mujoco.model, image_size, _camera(self._mujoco))
        elif not self._pixels and env.render_mode != "rgb_array":
            env.close()
            raise UserError(
                f"task {name!r} draws no picture: make it with render_mode='rgb_array' "
                f"(it has {env.render_mode!r})"
            )
        self._unused_seed: int | None = seed  # gymnasium is seeded through its first reset
        self._last_observation: Any = None

    def _reset(self, seed: int | None) -> Observation:
        if seed is None:
            seed, self._unused_seed = self._unused_seed, None
        self._last_observation, _ = self._env.reset(seed=seed)
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        action = native_action.reshape(self._action_shape)
        self._last_observation, reward, terminated, truncated, _ = self._env.step(action)
        return float(reward), bool(terminated), bool(truncated)

    def _observe(self) -> Observation:
        if self._pixels:
            return Observation(self._resize(self._last_observation), np.zeros(0, np.float32))
        if self._renderer is not None:
            image = self._renderer.render(self._mujoco.data)
        else:
            image = self._resize(np.asarray(self._env.render()))
        state = np.zeros(0, np.float32)
        if self.state_size:
            state = np.asarray(self._last_observation, np.float32).ravel()
        return Observation(image, state)

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        if frame.shape[:2] == (self.image_size, self.image_size):
            return np.array(frame[..., :3], dtype=np.uint8)  # a writable copy
        size = (self.image_size, self.image_size)
        image = Image.fromarray(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        return np.array(image.resize(size, Image.Resampling.BILINEAR))  # writable, owned

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._env.close()


def _camera(mujoco_env: Any) -> int | str:
    """``track`` where the model has it, else its first camera, else MuJoCo's free camera."""
    import mujoco

    model = mujoco_env.model
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0:
        return "track"
    return 0 if model.ncam > 0 else -1
