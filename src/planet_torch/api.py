"""planet-torch as a library: train a run, load a run, act with it.

    from planet_torch import load_run, override, preset, train

    cfg = override(preset("cpu"), task="dmc:pendulum-swingup", seed=1)
    summary = train(cfg, "runs/pendulum")          # the schedule of `planet train`, same folder
    run = load_run("runs/pendulum")
    env, agent = run.make_env(seed=0), run.agent(seed=0)
    observation = env.reset(seed=0)
    agent.reset()
    while True:
        step = env.step(agent.act(observation))    # observation.image: uint8 [64, 64, 3]
        observation = step.observation
        if step.done:
            break

``train`` is exactly what ``planet train`` runs (resume, checkpoints, the final score),
``evaluate`` what ``planet eval`` runs; ``load_run`` reads any run folder, PlaNet's, Dreamer's
or DDPG's, finished or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from planet_torch.agents.base import Agent
from planet_torch.config import BOUNDS, Config
from planet_torch.envs import Env, make_env
from planet_torch.errors import UserError
from planet_torch.models import WorldModel
from planet_torch.training.base import resolve_device
from planet_torch.training.checkpoint import load_checkpoint
from planet_torch.training.collect import episode_seed
from planet_torch.training.evaluate import agent_factory
from planet_torch.training.evaluate import evaluate as evaluate_run
from planet_torch.training.loop import Trainer, trained_world_model
from planet_torch.training.run_dir import RunDir
from planet_torch.training.runs import train_and_score


def train(
    cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run of ``cfg`` in ``run_dir``, then score it;
    returns the summary ``planet train`` prints (updates, env steps, test returns, score)."""
    if not isinstance(cfg, Config):
        raise UserError(
            f"train: cfg must be a Config, e.g. override(preset('cpu'), task=...) "
            f"(got {type(cfg).__name__}; a config.json's dict: Config.from_dict(d))"
        )
    return train_and_score(cfg, Path(run_dir), resume=resume, progress=progress)


@dataclass
class LoadedRun:
    """A run folder's config and latest checkpoint, ready to build envs and agents from."""

    path: Path
    config: Config
    checkpoint: dict[str, Any]
    device: torch.device

    @property
    def updates(self) -> int:
        """Gradient updates the checkpoint has seen."""
        return int(self.checkpoint["counters"]["updates"])

    def make_env(self, seed: int = 0) -> Env:
        """An env of the run's task, action repeat and episode length (close it when done)."""
        return make_env(self.config, seed=_checked_seed(seed))

    def world_model(self) -> WorldModel:
        """The trained world model of a PlaNet run (eval mode)."""
        with self.make_env() as env:
            return trained_world_model(
                self.config, self.checkpoint, env.action_size, env.state_size, self.device
            )

    def agent(self, seed: int = 0) -> Agent:
        """A noise-free agent (the one ``planet eval`` plays): ``reset()`` before each episode,
        then ``act(observation)`` -> action in [-1, 1]; its planner draws from ``seed``."""
        seed = _checked_seed(seed)
        with self.make_env() as env:
            return agent_factory(self.config, self.checkpoint, env, self.device)(
                episode_seed(seed, "eval", 0, self.config.task_count)
            )


def evaluate(
    run_dir: str | Path, episodes: int = 10, *, video: str | None = None, device: str = "auto"
) -> dict[str, Any]:
    """What ``planet eval`` does: ``episodes`` noise-free episodes of the run's latest model,
    written to its scores.json (``video="mp4"``: the first one to videos/); returns that record
    (``mean``, ``std``, ``returns``, ``updates``, ...)."""
    return evaluate_run(Path(run_dir), episodes=episodes, video=video, device=device)


def _checked_seed(seed: int) -> int:
    """A seed as ``Config.seed`` takes it (an int in [0, 2^32 - 1]), or a :class:`UserError`."""
    bound = BOUNDS[""]["seed"]
    if type(seed) is not int or not bound.admits(seed):
        raise UserError(f"seed must be an int {bound} (got {seed!r})")
    return seed


def load_run(path: str | Path, device: str = "auto") -> LoadedRun:
    """The run in ``path`` (its config.json and checkpoints/latest.pt)."""
    run = RunDir(Path(path))
    if not run.exists():
        raise UserError(f"{run.path} holds no run (no config.json)")
    config = run.load_config()
    checkpoint_path = run.latest_checkpoint()
    torch_device = resolve_device(device)
    state = load_checkpoint(checkpoint_path, map_location=torch_device)
    if config.algo == "planet" and Trainer.learner_key not in state:
        raise UserError(f"{checkpoint_path} holds no PlaNet world model")
    return LoadedRun(run.path, config, state, torch_device)
