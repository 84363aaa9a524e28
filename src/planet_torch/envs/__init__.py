"""Environments with 64×64 pixels and actions in [-1, 1]: ``make_env(cfg, seed)`` builds one.

Simulators are imported lazily, after :func:`configure_headless`, so importing this package is
cheap and never touches OpenGL.
"""

from __future__ import annotations

from planet_torch.config import Config
from planet_torch.envs.base import Env, Observation, StepResult
from planet_torch.envs.headless import configure_headless, gl_backend

__all__ = ["Env", "Observation", "StepResult", "configure_headless", "gl_backend", "make_env"]


def make_env(cfg: Config, seed: int) -> Env:
    """The environment of ``cfg.task`` with the config's action repeat and episode length.

    An unknown task raises :class:`planet_torch.errors.UserError` listing the valid ones.
    """
    spec = cfg.spec
    action_repeat, max_policy_steps = cfg.action_repeat, cfg.episode_policy_steps
    image_size = cfg.env.image_size
    if spec.suite == "multi":
        from planet_torch.envs.multitask import MultiTaskEnv

        return MultiTaskEnv(cfg, seed)
    if spec.suite == "test":
        from planet_torch.envs.testing import ReachEnv

        return ReachEnv(
            seed=seed,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
        )
    if spec.suite == "dmc":
        from planet_torch.envs.dmc import DmcEnv

        return DmcEnv(
            spec,
            seed=seed,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
            camera_id=cfg.env.camera_id,
            exact_render=cfg.env.exact_render,
        )
    if spec.suite == "py":
        from planet_torch.envs.custom import make_custom_env

        env = make_custom_env(
            spec,
            seed=seed,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
        )
    else:
        from planet_torch.envs.gym import make_gym_env

        env = make_gym_env(
            spec,
            seed=seed,
            action_repeat=action_repeat,
            max_policy_steps=max_policy_steps,
            image_size=image_size,
        )
    # As the original's gym tasks (MinimumDuration): an episode that ends early still fills
    # one training chunk instead of being left out by the sampler.
    env.min_policy_steps = min(cfg.data.chunk_length, max_policy_steps)
    return env
