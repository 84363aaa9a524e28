"""Vector environments: the same episodes as single environments, in worker processes too."""

from __future__ import annotations

import numpy as np
import pytest

from planet_torch.config import PAPER, override
from planet_torch.envs import make_env
from planet_torch.envs.vector import VectorEnv
from planet_torch.errors import UserError


def _single_run(cfg, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    env = make_env(cfg, seed)
    images, rewards = [env.reset(seed).image], []
    for action in actions:
        result = env.step(action)
        images.append(result.observation.image)
        rewards.append(result.reward)
        if result.done:
            break
    env.close()
    return images, rewards


@pytest.mark.parametrize(
    ("task", "workers"), [("test-reach", 0), ("test-reach", 2), ("cartpole-balance", 2)]
)
def test_vector_env_equals_single_envs_for_the_same_seeds(task: str, workers: int) -> None:
    cfg = override(PAPER, task=task, env={"episode_env_steps": 48})
    seeds = [11, 12, 13]
    with VectorEnv(cfg, seeds, workers=workers) as venv:
        steps = venv.max_policy_steps + 2  # past the end: finished envs are not stepped again
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, 3, venv.action_size))
        first = venv.reset(seeds)
        images = [[o.image] for o in first]
        rewards: list[list[float]] = [[] for _ in seeds]
        for t in range(steps):
            was_done = [venv._done[i] for i in range(3)]
            for i, result in enumerate(venv.step(actions[t].astype(np.float32))):
                if not was_done[i]:
                    images[i].append(result.observation.image)
                    rewards[i].append(result.reward)
        assert venv.all_done
    for i, seed in enumerate(seeds):
        single_images, single_rewards = _single_run(cfg, seed, actions[:, i].astype(np.float32))
        assert len(images[i]) == len(single_images)
        for a, b in zip(images[i], single_images, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(rewards[i], single_rewards)


def test_worker_errors_reach_the_parent_as_one_line() -> None:
    with pytest.raises(UserError, match="unknown task"):
        VectorEnv(override(PAPER, task="no-such-task"), [0], workers=1)


def test_parallel_random_collection_writes_the_same_episodes(tmp_path) -> None:
    """--env.workers 2 plays the seed episodes in two processes: byte-identical episodes."""
    import subprocess
    import sys

    runs = {}
    for workers in ("1", "2"):
        run = tmp_path / f"w{workers}"
        result = subprocess.run(
            [sys.executable, "-m", "planet_torch.cli", "collect", "--task", "cartpole-balance",
             "--preset", "debug", "--episodes", "3", "--env.workers", workers,
             "--run-dir", str(run)],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        runs[workers] = sorted((run / "train_episodes").iterdir())
    assert [p.name for p in runs["1"]] == [p.name for p in runs["2"]] and len(runs["1"]) == 3
    for a, b in zip(runs["1"], runs["2"], strict=True):
        with np.load(a) as x, np.load(b) as y:
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])


def test_closed_loop_episodes_keep_each_env_in_its_own_slot() -> None:
    """``run_episodes`` (what `planet eval --workers` plays): a policy that reads each env's own
    state plays every slot exactly as it plays that seed alone — a slot fed another env's
    observation would steer towards the wrong target."""
    from planet_torch.training.collect import run_episodes

    cfg = override(PAPER, task="test-reach", env={"episode_env_steps": 48})
    seeds = [21, 22, 23]

    def greedy(state: np.ndarray) -> np.ndarray:  # towards the target: [point, target]
        return np.clip(5.0 * (state[2:] - state[:2]), -1.0, 1.0).astype(np.float32)

    with VectorEnv(cfg, seeds, workers=2) as venv:
        episodes = run_episodes(venv, lambda obs: np.stack([greedy(o.state) for o in obs]), seeds)
    for seed, episode in zip(seeds, episodes, strict=True):
        env = make_env(cfg, seed)
        observation, rewards = env.reset(seed), []
        for _ in range(env.max_policy_steps):
            result = env.step(greedy(observation.state))
            observation = result.observation
            rewards.append(result.reward)
        env.close()
        np.testing.assert_allclose(episode.reward[-len(rewards) :], rewards, rtol=1e-6)
    assert len({float(e.reward.sum()) for e in episodes}) == 3  # three different episodes
