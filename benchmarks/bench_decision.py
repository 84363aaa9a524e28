"""Seconds per planned decision of a preset's agent, as its training loop acts: decisions per hour.

    .venv/bin/python benchmarks/bench_decision.py --presets cpu paper > decision.json

One environment (``PlanetAgent.act_batch`` on one 64×64 frame: encode, one posterior step,
CEM with the preset's candidates, iterations and horizon, its warm start where it has one) with
an untrained model of cheetah-run's action size; planning dtype as the preset configures it
(``--planner-dtype`` overrides). Prints the CPU model, flags and both matmul ceilings of the
same run; the timing drops calls during which other processes used the CPU (see
bench_train_step.py). What the paper-size decision is beside Kaixhin/PlaNet's is
bench_vs_kaixhin.py's job; this one says what a preset's decision costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import numpy as np
import torch
from bench_train_step import clean_timings
from machine import ceiling_line, machine_info, matmul_ceilings

from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import override, preset
from planet_torch.models import WorldModel
from planet_torch.models.world_model import retain_freed_memory

ACTION_SIZE = 6  # cheetah-run


def time_decision(name: str, planner_dtype: str | None, repeats: int) -> dict[str, Any]:
    cfg = preset(name)
    if planner_dtype is not None:
        cfg = override(cfg, planner={"compute_dtype": planner_dtype})
    torch.manual_seed(0)
    model = WorldModel(cfg, ACTION_SIZE)
    agent = PlanetAgent(model, cfg.planner, noise=0.0, generator=torch.Generator().manual_seed(1))
    frame = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    for _ in range(3):
        agent.act_batch(frame)
    kept, busy = clean_timings(lambda: agent.act_batch(frame), repeats, 4 * repeats)
    seconds = kept or busy
    median = statistics.median(seconds)
    p = cfg.planner
    return {
        "preset": name,
        "planner": f"{p.candidates} candidates × {p.iterations} iterations × horizon {p.horizon}",
        "planner_dtype": str(agent.compute_dtype).removeprefix("torch."),
        "contended": not kept,
        "seconds": seconds,
        "median_s": median,
        "decisions_per_hour": 3600 / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--planner-dtype", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    retain_freed_memory()
    ceilings = matmul_ceilings()
    print(ceiling_line(ceilings), file=sys.stderr)
    runs = []
    for name in args.presets:
        run = time_decision(name, args.planner_dtype, args.repeats)
        print(
            f"{name:6s} {run['planner']}, {run['planner_dtype']}: median "
            f"{run['median_s'] * 1000:.1f} ms = {run['decisions_per_hour']:.0f} decisions/hour"
            + (" (contended)" if run["contended"] else ""),
            file=sys.stderr,
        )
        runs.append(run)
    report = {"machine": machine_info(), "matmul_gflops": ceilings, "runs": runs}
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
