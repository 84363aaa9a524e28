"""Random-episode collection throughput with 1 and with 2 environment worker processes.

    .venv/bin/python benchmarks/bench_collect.py --episodes 6 > collect.json

``collect_random`` as ``planet collect`` / the seed phase use it: full 1000-env-step episodes of
cartpole-balance and cheetah-run at the paper's action repeats, rendered 64×64, saved as .npz
into a temporary run folder. With ``env.workers = 2`` the same episodes are played in two
spawn-ed processes (tests/test_vector.py checks they are byte-identical); worker start-up
(imports, GL context) is included in the time, as a user would see it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info

from planet_torch.config import PAPER, override
from planet_torch.training.collect import collect_random
from planet_torch.training.run_dir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--tasks", nargs="+", default=["cartpole-balance", "cheetah-run"])
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine_info(), "runs": []}
    for task in args.tasks:
        for workers in (1, 2):
            cfg = override(PAPER, task=task, env={"workers": workers, "exact_render": False})
            with tempfile.TemporaryDirectory() as tmp:
                run = RunDir(Path(tmp) / "run").prepare(cfg)
                start = time.perf_counter()
                collected = collect_random(cfg, run, "train", args.episodes)
                seconds = time.perf_counter() - start
            steps = sum(c.policy_steps for c in collected)
            row = {
                "task": task,
                "workers": workers,
                "episodes": len(collected),
                "seconds": seconds,
                "policy_steps_per_second": steps / seconds,
                "env_steps_per_second": steps * cfg.action_repeat / seconds,
            }
            report["runs"].append(row)
            print(
                f"{task:<18} workers {workers}: {row['policy_steps_per_second']:6.0f} policy "
                f"steps/s ({row['env_steps_per_second']:.0f} env steps/s), {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
