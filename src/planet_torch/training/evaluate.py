"""``planet eval``: play a trained agent without exploration noise and write its scores."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_torch.agents.base import Agent
from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import Config, override
from planet_torch.envs import Env, Observation, make_env
from planet_torch.envs.multitask import returns_per_task
from planet_torch.envs.vector import VectorEnv
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text
from planet_torch.models import WorldModel
from planet_torch.training.base import counter_generator, resolve_device
from planet_torch.training.checkpoint import load_checkpoint
from planet_torch.training.collect import episode_seed, run_episode, run_episodes
from planet_torch.training.logging import read_metrics
from planet_torch.training.loop import Trainer, trained_world_model
from planet_torch.training.run_dir import RunDir
from planet_torch.training.video import write_video


def agent_factory(
    cfg: Config, state: dict[str, Any], env: Env, device: torch.device
) -> Callable[[int], Agent]:
    """A function episode seed -> noise-free agent, for the algorithm of the run."""
    if cfg.algo == "ddpg":
        from planet_torch.training.ddpg_loop import load_ddpg_agent

        ddpg_agent = load_ddpg_agent(cfg, state, env, device)
        return lambda seed: ddpg_agent
    model = trained_world_model(cfg, state, env.action_size, env.state_size, device)
    if cfg.algo == "dreamer":
        from planet_torch.agents.dreamer import Actor, DreamerAgent

        actor = Actor(model.feature_size, model.action_size, cfg.dreamer).to(device)
        actor.load_state_dict(state[Trainer.learner_key]["behaviour"]["actor"])
        actor.eval()
        return lambda seed: DreamerAgent(
            model, actor, noise=0.0, generator=counter_generator(device, seed), test=True
        )
    return lambda seed: PlanetAgent(
        model,
        cfg.planner,
        noise=cfg.planner.test_noise,
        generator=counter_generator(device, seed),
        test=True,
    )


def evaluate_batched(
    cfg: Config, state: dict[str, Any], device: torch.device, episodes: int, workers: int
) -> tuple[list[float], np.ndarray]:
    """PlaNet episodes ``workers`` at a time: one env per worker process, one batched CEM call
    per step for all of them (PlanetAgent with batch = envs). Returns and the first episode's
    frames. Scores differ from the serial loop's only through the planner's random draws."""
    returns: list[float] = []
    first: np.ndarray | None = None
    model: WorldModel | None = None
    for start in range(0, episodes, workers):
        seeds = [
            episode_seed(cfg.seed, "eval", i, cfg.task_count)
            for i in range(start, min(episodes, start + workers))
        ]
        with VectorEnv(cfg, seeds, workers=len(seeds)) as venv:
            if model is None:  # once: the env's sizes are known after the first workers start
                model = trained_world_model(cfg, state, venv.action_size, venv.state_size, device)
            agent = PlanetAgent(
                model,
                cfg.planner,
                noise=cfg.planner.test_noise,
                generator=counter_generator(device, seeds[0]),
                batch=len(seeds),
                test=True,
            )

            def act(observations: list[Observation], agent: PlanetAgent = agent) -> np.ndarray:
                return agent.act_batch(np.stack([o.image for o in observations]))

            for i, episode in enumerate(run_episodes(venv, act, seeds)):
                returns.append(float(episode.reward.sum()))
                first = episode.image if first is None else first
                print(f"eval episode {start + i}: return {returns[-1]:.1f}", flush=True)
    assert first is not None
    return returns, first


def evaluate(
    run_dir: Path,
    episodes: int = 10,
    video: str | None = "mp4",
    device: str = "auto",
    workers: int = 1,
    planner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` noise-free episodes with the latest checkpoint; write scores.json.
    ``workers`` > 1 (PlaNet runs) plays that many episodes at once in worker processes.
    ``planner``: PlaNet's planner fields changed from the run's config for this evaluation
    (recorded in scores.json; the run's config.json stays as it trained)."""
    if episodes < 1 or workers < 1:
        raise UserError("--episodes and --workers must be >= 1")
    run = RunDir(run_dir)
    cfg = run.load_config()
    if planner:
        if cfg.algo != "planet":
            raise UserError(f"--planner.* changes PlaNet's planner; {run.path} is a {cfg.algo} run")
        cfg = override(cfg, planner=planner).validate()
    path = run.latest_checkpoint()
    torch_device = resolve_device(device)
    state = load_checkpoint(path, map_location=torch_device)
    start = time.perf_counter()
    returns: list[float] = []
    first = None
    if workers > 1 and cfg.algo == "planet" and Trainer.learner_key in state:
        returns, first = evaluate_batched(cfg, state, torch_device, episodes, workers)
    else:
        env = make_env(cfg, seed=episode_seed(cfg.seed, "eval", 0, cfg.task_count))
        try:
            make_agent = agent_factory(cfg, state, env, torch_device)
            for i in range(episodes):
                seed = episode_seed(cfg.seed, "eval", i, cfg.task_count)
                agent = make_agent(seed)
                episode = run_episode(env, agent, seed)
                returns.append(float(episode.reward.sum()))
                first = episode.image if first is None else first
                print(f"eval episode {i}: return {returns[-1]:.1f}", flush=True)
        finally:
            env.close()
    seconds = time.perf_counter() - start
    counters = state["counters"]
    logged = [r["env_steps"] for r in read_metrics(run.metrics_path)[: counters["metrics_records"]]]
    seeds = [episode_seed(cfg.seed, "eval", i, cfg.task_count) for i in range(episodes)]
    scores: dict[str, Any] = {
        "task": cfg.task,
        "variant": cfg.variant,
        "checkpoint": str(path),
        "updates": counters["updates"],
        "env_steps": logged[-1] if logged else 0,
        "train_wall_seconds": round(counters["wall_seconds"], 1),
        "wall_seconds": round(seconds, 1),
        "returns": returns,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "episodes": episodes,
    }
    if planner:
        scores["planner"] = planner
    per_task = returns_per_task(cfg.spec, seeds, returns)
    if per_task:
        scores["per_task"] = per_task
    if video is not None and first is not None:
        name = f"eval-{counters['updates']:07d}.{video}"
        scores["video"] = str(write_video(run.videos / name, first, fps=10))
    atomic_write_text(run.scores_path, json.dumps(scores, indent=2) + "\n")
    scores["scores_path"] = str(run.scores_path)
    return scores
