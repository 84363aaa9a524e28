"""The "CEM + true simulator" planner: exact rollouts on the real physics, and it beats random."""

from __future__ import annotations

import numpy as np
import torch

from planet_torch.agents.base import Agent
from planet_torch.agents.random import RandomAgent
from planet_torch.agents.true_sim import TrueSimulatorAgent
from planet_torch.config import PAPER, PlannerConfig, override
from planet_torch.envs import make_env
from planet_torch.envs.dmc import DmcEnv
from planet_torch.training.collect import run_episode


def _env(task: str, steps: int) -> DmcEnv:
    cfg = override(PAPER, task=task, env={"episode_env_steps": steps})
    env = make_env(cfg, seed=3)
    assert isinstance(env, DmcEnv)
    return env


def test_simulated_return_equals_executed_return_and_state_is_restored() -> None:
    env = _env("cartpole-swingup", 80)
    env.reset(seed=3)
    env.step(np.array([0.5], np.float32))
    before = env.get_physics_state().copy()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (4, 3, 1))  # [H, N, A]
    simulated = env.simulate_returns(actions)
    np.testing.assert_array_equal(env.get_physics_state(), before)  # untouched
    assert simulated.shape == (3,) and len(set(simulated.tolist())) == 3
    for n in (2, 0):  # executing a sequence for real earns exactly its simulated return
        env.set_physics_state(before)
        executed = sum(env.step(actions[h, n].astype(np.float32)).reward for h in range(4))
        assert abs(executed - simulated[n]) < 1e-9 * max(1.0, abs(executed))
    env.close()


def _episode_return(env: DmcEnv, agent: Agent, seed: int) -> float:
    return float(run_episode(env, agent, seed).reward.sum())


def test_true_simulator_planner_beats_random_on_cartpole_balance() -> None:
    env = _env("cartpole-balance", 160)  # 20 policy steps of 8 env steps
    planner = PlannerConfig(horizon=4, candidates=24, top_k=4, iterations=2)
    agent = TrueSimulatorAgent(env, planner, generator=torch.Generator().manual_seed(0))
    random_agent = RandomAgent(env.action_low, env.action_high, np.random.default_rng(0))
    planned = np.mean([_episode_return(env, agent, seed) for seed in (0, 1)])
    random = np.mean([_episode_return(env, random_agent, seed) for seed in (0, 1)])
    env.close()
    # 160 env steps: at most 160 reward; a random policy lets the cart drift and the pole lean.
    # Measured (session 12, generator seeds 0-3, same episodes): planned 157.6-159.3 per
    # episode, random 64.9-81.4, pair means 72.5-77.2 apart; 40 is half the smallest gap.
    assert planned > random + 40, (planned, random)
    assert planned > 0.8 * 160, planned


def test_true_simulator_rollouts_in_worker_processes_equal_the_local_ones() -> None:
    from planet_torch.envs.vector import VectorEnv

    cfg = override(PAPER, task="cartpole-swingup", env={"episode_env_steps": 80})
    env = _env("cartpole-swingup", 80)
    env.reset(seed=3)
    env.step(np.array([0.3], np.float32))
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 5, 1))
    local = env.simulate_returns(actions)
    with VectorEnv(cfg, [0, 1], workers=2) as pool:
        pooled = pool.simulate(env.get_physics_state(), actions)
        np.testing.assert_array_equal(pooled, local)
        agent = TrueSimulatorAgent(
            env,
            PlannerConfig(horizon=3, candidates=8, top_k=2, iterations=2),
            generator=torch.Generator().manual_seed(0),
            pool=pool,
        )
        alone = TrueSimulatorAgent(
            env,
            PlannerConfig(horizon=3, candidates=8, top_k=2, iterations=2),
            generator=torch.Generator().manual_seed(0),
        )
        observation = env.step(np.array([0.0], np.float32)).observation
        np.testing.assert_array_equal(agent.act(observation), alone.act(observation))
    env.close()
