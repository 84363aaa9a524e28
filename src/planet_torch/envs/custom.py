"""A user's own environment: ``--task py:package.module:factory``.

The factory is imported and called with the keywords it declares among ``seed``,
``action_repeat``, ``max_policy_steps`` and ``image_size``; it returns either

* an :class:`~planet_torch.envs.base.Env` subclass (implement ``_reset``, ``_env_step`` and
  ``_observe``; action repeat, the time limit and action scaling are done for you), or
* a gymnasium ``Env`` with a continuous Box action space that renders ``rgb_array`` frames (or
  whose observations are uint8 frames): it is wrapped as any gymnasium task (envs/gym.py).

``examples/custom_env.py`` is a worked example; docs/custom_envs.md says more.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from planet_torch.config import TaskSpec
from planet_torch.envs.base import Env
from planet_torch.envs.gym import GymEnv
from planet_torch.errors import UserError


def load_factory(spec: TaskSpec) -> Any:
    """The callable ``spec.env_id`` names (``package.module:function``), imported; the current
    folder is importable, as for ``python -m``."""
    module_name, _, attribute = spec.env_id.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"task {spec.name!r}: cannot import {module_name!r} ({error})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"task {spec.name!r}: {module_name} has no function {attribute!r}")
    return factory


def make_custom_env(
    spec: TaskSpec, *, seed: int, action_repeat: int, max_policy_steps: int, image_size: int = 64
) -> Env:
    factory = load_factory(spec)
    attribute = spec.env_id.partition(":")[2]
    offered = {
        "seed": seed,
        "action_repeat": action_repeat,
        "max_policy_steps": max_policy_steps,
        "image_size": image_size,
    }
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: call it with the seed only
        kwargs = {"seed": seed}
    else:
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        kwargs = {k: v for k, v in offered.items() if takes_all or k in parameters}
        unfilled = [
            n
            for n, p in parameters.items()
            if p.default is p.empty and p.kind not in variadic and n not in kwargs
        ]
        if unfilled:  # it would fail at the call with a TypeError a user has to decode
            raise UserError(
                f"task {spec.name!r}: {attribute}() needs {', '.join(unfilled)}, which planet "
                f"does not pass; it calls the factory with the keywords it declares among "
                f"{', '.join(offered)} (give the others defaults)"
            )
    env = factory(**kwargs)
    if isinstance(env, Env):
        got = (env.action_repeat, env.max_policy_steps, env.image_size)
        if got != (action_repeat, max_policy_steps, image_size):
            raise UserError(
                f"task {spec.name!r}: the factory's env has action_repeat, max_policy_steps, "
                f"image_size {got}, the run {(action_repeat, max_policy_steps, image_size)}: "
                "accept these keywords and pass them on to Env.__init__"
            )
        return env
    if _is_gymnasium_env(env):
        return GymEnv(env, name=spec.name, **offered)
    raise UserError(
        f"task {spec.name!r}: the factory returned a {type(env).__name__}, not a "
        "planet_torch.envs.Env or a gymnasium.Env"
    )


def _is_gymnasium_env(value: Any) -> bool:
    try:
        import gymnasium
    except ImportError:
        return False
    return isinstance(value, gymnasium.Env)
