"""Does a planner option change what a trained agent earns? Real episodes, same checkpoint.

    .venv/bin/python benchmarks/bench_planner_choices.py --run-dir runs/learn-cpu-balance-v2-s0 \\
        --episodes 4 > planner_choices.json

Plays noise-free episodes of the run's task with its latest checkpoint under several planner
settings and reports mean return and seconds per action for each:

* ``float32`` vs ``bfloat16`` imagined rollouts (``--planner.compute-dtype``): bf16 must not
  make the chosen actions worse;
* warm start (``--planner.warm-start``: previous plan shifted by one step) vs the original's
  re-initialisation at N(0, 1), at the run's iteration count and at a third of it, where a
  good initial guess should matter most.

Every setting plays the same episode seeds (same initial states).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def play(run_dir: Path, planner: dict[str, Any], episodes: int) -> dict[str, Any]:
    import dataclasses

    from planet_torch.agents.planet import PlanetAgent
    from planet_torch.config import override
    from planet_torch.envs import make_env
    from planet_torch.models import WorldModel
    from planet_torch.training.base import CHECKPOINT_NAME, counter_generator
    from planet_torch.training.checkpoint import load_checkpoint
    from planet_torch.training.collect import episode_seed, run_episode
    from planet_torch.training.loop import Trainer
    from planet_torch.training.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = run.load_config()
    cfg = override(cfg, planner=planner)
    state = load_checkpoint(run.checkpoints / CHECKPOINT_NAME)
    env = make_env(cfg, seed=episode_seed(cfg.seed, "bench", 0, cfg.task_count))
    model = WorldModel(cfg, env.action_size, env.state_size)
    model.load_state_dict(state[Trainer.learner_key]["model"])
    model.eval()
    returns, seconds, steps = [], 0.0, 0
    for i in range(episodes):
        seed = episode_seed(cfg.seed, "bench", i, cfg.task_count)
        agent = PlanetAgent(model, cfg.planner, noise=0.0, generator=counter_generator("cpu", seed))
        start = time.perf_counter()
        episode = run_episode(env, agent, seed)
        seconds += time.perf_counter() - start
        steps += episode.policy_steps
        returns.append(float(episode.reward.sum()))
    env.close()
    return {
        "planner": dataclasses.asdict(cfg.planner),
        "returns": returns,
        "mean": statistics.mean(returns),
        "seconds_per_action": seconds / steps,
        "updates": state["counters"]["updates"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="play only settings whose name starts so")
    args = parser.parse_args()
    from planet_torch.training.run_dir import RunDir

    iterations = RunDir(args.run_dir).load_config().planner.iterations
    few = max(1, iterations // 3)
    settings = {
        "float32": {"compute_dtype": "float32"},
        "bfloat16": {"compute_dtype": "bfloat16"},
        f"cold start, {iterations} iterations": {"warm_start": False},
        f"warm start, {iterations} iterations": {"warm_start": True},
        f"cold start, {few} iterations": {"warm_start": False, "iterations": few},
        f"warm start, {few} iterations": {"warm_start": True, "iterations": few},
    }
    report: dict[str, Any] = {"run_dir": str(args.run_dir), "settings": {}}
    for name, planner in settings.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        result = play(args.run_dir, planner, args.episodes)
        report["settings"][name] = result
        print(
            f"{name:<28} mean return {result['mean']:7.1f}  "
            f"{[round(r) for r in result['returns']]}  {result['seconds_per_action']:.4f} s/action",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
