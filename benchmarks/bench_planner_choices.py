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

``--topk-states N`` also asks whether bf16 rollouts *rank* as float32 ones do: from N states
the model filtered along the run's test episodes, the run's number of candidates drawn from
N(0, 1) (the CEM's first iteration), scored by the planning objective in both dtypes with the
same imagination noise; reported: how many of float32's top k (the run's ``planner.top_k``)
bf16 also puts in its top k, and whether the best candidate is the same.
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

import numpy as np


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


def topk_overlap(run_dir: Path, states: int) -> dict[str, Any]:
    """float32 vs bfloat16 ranking of the same candidates from the run's own filtered states."""
    import torch

    from planet_torch.models.imagination import LatentObjective
    from planet_torch.replay.episodes import EpisodeDir
    from planet_torch.training.checkpoint import load_checkpoint
    from planet_torch.training.loop import trained_world_model
    from planet_torch.training.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = run.load_config()
    episodes = EpisodeDir(run.test_episodes).load_all()
    first = episodes[0]
    state_size = 0 if first.state is None else first.state.shape[-1]
    model = trained_world_model(
        cfg, load_checkpoint(run.latest_checkpoint()), first.action.shape[-1], state_size,
        torch.device("cpu"),
    )  # fmt: skip
    objectives = {d: LatentObjective(model, d) for d in (torch.float32, torch.bfloat16)}
    p, generator = cfg.planner, torch.Generator().manual_seed(0)
    per_episode = -(-states // len(episodes))
    overlaps, same_best = [], []
    with torch.no_grad():
        for episode in episodes:
            image = torch.from_numpy(episode.image[:, None])
            action = torch.from_numpy(episode.action[:, None])
            posterior = model.observe(image, action, generator)[0]
            rows = np.linspace(0, len(episode.image) - 1, per_episode).round().astype(int)
            for t in rows[: states - len(overlaps)]:
                start = posterior.map(lambda x, t=t: x[t].expand(p.candidates, -1))
                plans = torch.randn(
                    p.horizon, p.candidates, first.action.shape[-1], generator=generator
                )
                plans = plans.clamp(-1, 1)
                seed = int(torch.randint(2**31, (1,), generator=generator))
                scores = {
                    d: f(
                        start, plans, torch.Generator().manual_seed(seed), p.imagination == "sample"
                    )
                    for d, f in objectives.items()
                }
                top32, top16 = (set(v.topk(p.top_k).indices.tolist()) for v in scores.values())
                overlaps.append(len(top32 & top16))
                same_best.append(
                    int(scores[torch.float32].argmax() == scores[torch.bfloat16].argmax())
                )
    return {
        "states": len(overlaps),
        "candidates": p.candidates,
        "top_k": p.top_k,
        "topk_overlap_mean": statistics.mean(overlaps),
        "topk_overlap_min": min(overlaps),
        "same_best_fraction": statistics.mean(same_best),
        "kernels": {str(d): f.uses_onednn(p.candidates) for d, f in objectives.items()},
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
    parser.add_argument("--topk-states", type=int, default=0, metavar="N")
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
    if args.topk_states:
        report["topk_overlap"] = topk_overlap(args.run_dir, args.topk_states)
        print(f"bf16 vs float32 ranking: {report['topk_overlap']}", file=sys.stderr, flush=True)
    for name, planner in settings.items():
        if args.episodes <= 0:  # --episodes 0: the ranking comparison only
            break
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
