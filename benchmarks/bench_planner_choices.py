"""Does a planner option change what a trained agent earns? Real episodes, same checkpoint.

    .venv/bin/python benchmarks/bench_planner_choices.py --run-dir runs/learn-cpu-balance-v2-s0 \\
        --episodes 4 > planner_choices.json

Plays noise-free episodes of the run's task with its latest checkpoint under several planner
settings and reports mean return and seconds per action for each:

* ``float32`` vs ``bfloat16`` imagined rollouts (``--planner.compute-dtype``): bf16 must not
  make the chosen actions worse;
* warm start (``--planner.warm-start``: previous plan shifted by one step) vs the original's
  re-initialisation at N(0, 1), at the run's iteration count and at a third of it, where a
  good initial guess should matter most;
* any other planner fields, named on the command line (how the cpu preset's horizon was chosen)::

    .venv/bin/python benchmarks/bench_planner_choices.py --run-dir runs/learn-cpu-balance-v5-s0 \
        --episodes 6 --only as-trained h20 --set h20:horizon=20,candidates=200,top_k=20

Every setting plays the same episode seeds (same initial states), all episodes of a setting at
once (one environment process each, one batched CEM call per step), as test episodes are
planned (``planner.test_imagination``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def play(run_dir: Path, planner: dict[str, Any], episodes: int) -> dict[str, Any]:
    import dataclasses

    import torch

    from planet_torch.config import override
    from planet_torch.training.checkpoint import load_checkpoint
    from planet_torch.training.evaluate import evaluate_batched
    from planet_torch.training.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = override(run.load_config(), planner=planner)
    state = load_checkpoint(run.latest_checkpoint())
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its per-episode lines; stdout is the JSON
        returns, first = evaluate_batched(cfg, state, torch.device("cpu"), episodes, episodes)
    seconds = time.perf_counter() - start
    return {
        "planner": dataclasses.asdict(cfg.planner),
        "returns": returns,
        "mean": statistics.mean(returns),
        "seconds_per_action": seconds / (len(first) - 1),  # batched: wall time per decision
        "updates": state["counters"]["updates"],
    }


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:key=value,key=value`` -> (NAME, planner fields), values typed like the field."""
    from planet_torch.config import PlannerConfig

    name, _, fields = text.partition(":")
    defaults = PlannerConfig()
    planner: dict[str, Any] = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        if not hasattr(defaults, key):
            raise SystemExit(f"--set {text!r}: PlannerConfig has no field {key!r}")
        kind = type(getattr(defaults, key))
        planner[key] = value.lower() in ("1", "true") if kind is bool else kind(value)
    return name, planner


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="play only settings whose name starts so")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="an extra setting: planner fields changed from the run's config",
    )
    args = parser.parse_args()
    from planet_torch.training.run_dir import RunDir

    iterations = RunDir(args.run_dir).load_config().planner.iterations
    few = max(1, iterations // 3)
    settings = {
        "as-trained": {},
        "float32": {"compute_dtype": "float32"},
        "bfloat16": {"compute_dtype": "bfloat16"},
        f"cold start, {iterations} iterations": {"warm_start": False},
        f"warm start, {iterations} iterations": {"warm_start": True},
        f"cold start, {few} iterations": {"warm_start": False, "iterations": few},
        f"warm start, {few} iterations": {"warm_start": True, "iterations": few},
    }
    settings.update(parse_setting(text) for text in args.set)
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
