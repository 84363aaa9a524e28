"""Run agents in environments and store what happens as episodes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planet_torch.agents.base import Agent
from planet_torch.agents.random import RandomAgent
from planet_torch.config import Config
from planet_torch.envs import Env, Observation, make_env
from planet_torch.envs.vector import VectorEnv
from planet_torch.replay import Episode, EpisodeBuilder, EpisodeDir
from planet_torch.training.run_dir import RunDir

# Streams of randomness per purpose, so adding a test episode never shifts a train episode's seed.
SPLIT_STREAM = {"train": 0, "test": 1, "eval": 2, "inspect": 3}


def episode_seed(run_seed: int, split: str, index: int, tasks: int = 1) -> int:
    """Environment seed of episode ``index`` of ``split``: distinct, reproducible, independent.
    With ``tasks`` = n > 1 (a multi-task run) seed ≡ index (mod n): the env plays
    tasks[seed % n], so the tasks alternate episode by episode (envs/multitask.py)."""
    seq = np.random.SeedSequence([run_seed, SPLIT_STREAM[split], index])
    seed = int(seq.generate_state(1)[0])
    return seed if tasks == 1 else seed - seed % tasks + index % tasks


def run_episode(
    env: Env, agent: Agent, seed: int, should_stop: Callable[[], None] | None = None
) -> Episode:
    """Play one episode to its end (termination or time limit) and return it, aligned.

    ``should_stop`` is called before every step; it may raise to abandon the episode.
    """
    observation = env.reset(seed=seed)
    agent.reset()
    builder = EpisodeBuilder()
    builder.start(observation)
    while True:
        if should_stop is not None:
            should_stop()
        action = agent.act(observation)
        result = env.step(action)
        builder.add(action, result.observation, result.reward, result.terminated)
        observation = result.observation
        if result.terminated or result.truncated:
            return builder.finish()


@dataclass(frozen=True)
class Collected:
    path: Path
    episode_return: float
    policy_steps: int


def run_episodes(
    venv: VectorEnv, act: Callable[[list[Observation]], np.ndarray], seeds: Sequence[int]
) -> list[Episode]:
    """Play one episode in every env of ``venv`` in lockstep; ``act`` maps the newest
    observation of every env to actions [N, A] (entries of finished envs are ignored)."""
    observations = venv.reset(list(seeds))
    builders = [EpisodeBuilder() for _ in seeds]
    for builder, observation in zip(builders, observations, strict=True):
        builder.start(observation)
    episodes: list[Episode | None] = [None] * len(seeds)
    while not venv.all_done:
        actions = np.asarray(act(observations), np.float32)
        running = [e is None for e in episodes]
        results = venv.step(actions)
        for i, result in enumerate(results):
            if not running[i]:
                continue
            builders[i].add(actions[i], result.observation, result.reward, result.terminated)
            if result.done:
                episodes[i] = builders[i].finish()
        observations = [r.observation for r in results]
    return [e for e in episodes if e is not None]


def _collect_random_parallel(
    cfg: Config, folder: EpisodeDir, split: str, count: int
) -> list[Collected]:
    """The same episodes as the serial loop (each random agent is seeded by its episode's seed
    and ignores observations), played ``env.workers`` processes wide, saved in index order."""
    first = len(folder)
    seeds = [episode_seed(cfg.seed, split, index, cfg.task_count) for index in range(first, count)]
    with VectorEnv(cfg, seeds, workers=cfg.env.workers) as venv:
        agents = [
            RandomAgent(
                np.full(venv.action_size, -1.0, np.float32),
                np.full(venv.action_size, 1.0, np.float32),
                np.random.default_rng(seed),
            )
            for seed in seeds
        ]

        def act(observations: list[Observation]) -> np.ndarray:
            return np.stack([a.act(o) for a, o in zip(agents, observations, strict=True)])

        episodes = run_episodes(venv, act, seeds)
    done = []
    for episode in episodes:
        path = folder.save(episode)
        done.append(Collected(path, float(episode.reward.sum()), episode.policy_steps))
    return done


def collect_random(cfg: Config, run: RunDir, split: str, count: int) -> list[Collected]:
    """Add random-policy episodes to ``run``'s ``split`` folder until it holds ``count`` of them.

    Counting what is already on disk makes this resumable: a killed collection continues where it
    stopped and never duplicates an episode (each index has its own seed). With ``env.workers``
    > 1 the episodes are played in parallel worker processes -- the very same episodes.
    """
    folder = EpisodeDir(run.train_episodes if split == "train" else run.test_episodes)
    done: list[Collected] = []
    if len(folder) >= count:
        return done
    if cfg.env.workers > 1 and count - len(folder) > 1:
        return _collect_random_parallel(cfg, folder, split, count)
    env = make_env(cfg, seed=episode_seed(cfg.seed, split, 0, cfg.task_count))
    try:
        for index in range(len(folder), count):
            seed = episode_seed(cfg.seed, split, index, cfg.task_count)
            agent = RandomAgent(env.action_low, env.action_high, np.random.default_rng(seed))
            episode = run_episode(env, agent, seed)
            path = folder.save(episode)
            done.append(Collected(path, float(episode.reward.sum()), episode.policy_steps))
    finally:
        env.close()
    return done
