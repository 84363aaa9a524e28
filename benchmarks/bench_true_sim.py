"""Returns of the "CEM + true simulator" planner (the paper's upper bound) on dm_control tasks.

    .venv/bin/python benchmarks/bench_true_sim.py --tasks cartpole-swingup cheetah-run \\
        --episodes 2 --candidates 100 --iterations 5 --workers 2 > true_sim.json

Same CEM as PlaNet's (planning/cem.py), scored by rolling every candidate out on the real
physics (``DmcEnv.simulate_returns``), full 1000-env-step episodes, noise-free. The paper's
settings (1000 candidates × 10 iterations × horizon 12) cost ≈ 1M physics steps per action;
pass smaller ones on a CPU. Episodes run in ``--workers`` processes. The paper reports 850
(cartpole-swingup) and 656 (cheetah-run) for CEM + true simulator (Table 1).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from typing import Any

PAPER_TRUE_SIM = {"cartpole-swingup": 850.0, "cheetah-run": 656.0}


def episode(job: tuple[str, int, int, int, int, int]) -> dict[str, Any]:
    import torch

    from planet_torch.agents.true_sim import TrueSimulatorAgent
    from planet_torch.config import PAPER, PlannerConfig, override
    from planet_torch.envs import make_env
    from planet_torch.envs.dmc import DmcEnv
    from planet_torch.training.collect import run_episode

    torch.set_num_threads(1)
    task, seed, candidates, top_k, iterations, horizon = job
    env = make_env(override(PAPER, task=task), seed=seed)
    assert isinstance(env, DmcEnv)
    planner = PlannerConfig(
        horizon=horizon, candidates=candidates, top_k=top_k, iterations=iterations
    )
    agent = TrueSimulatorAgent(env, planner, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    played = run_episode(env, agent, seed)
    seconds = time.perf_counter() - start
    env.close()
    return {
        "task": task,
        "seed": seed,
        "return": float(played.reward.sum()),
        "policy_steps": played.policy_steps,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["cartpole-swingup", "cheetah-run"])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [
        (task, seed, args.candidates, args.top_k, args.iterations, args.horizon)
        for task in args.tasks
        for seed in range(args.episodes)
    ]
    results = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(episode, jobs):
            results.append(result)  # each episode as it ends, so a killed run keeps some
            print(f"episode {json.dumps(result)}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {"settings": vars(args), "episodes": results, "tasks": {}}
    for task in args.tasks:
        returns = [r["return"] for r in results if r["task"] == task]
        report["tasks"][task] = {
            "mean": statistics.mean(returns),
            "returns": returns,
            "paper_cem_true_simulator": PAPER_TRUE_SIM.get(task),
        }
        print(
            f"{task}: mean return {statistics.mean(returns):.1f} over {len(returns)} episodes "
            f"{[round(r) for r in returns]} (paper CEM + true simulator: "
            f"{PAPER_TRUE_SIM.get(task, 'n/a')})",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
