"""What the fast renderer changes: its 64×64 frames beside ``physics.render``'s, task by task.

    .venv/bin/python benchmarks/bench_render_diff.py > render_diff.json

For each task two envs with the same seed play the same random actions, one rendering exactly as
the original (``--env.exact-render``: dm_control's ``physics.render``, shadows and reflections on),
one as the ``cpu`` preset does (shadows and reflections off, coarser round meshes). Per task: the
mean absolute difference in grey levels (0-255, all channels), the share of values that differ
by more than 8 levels, the largest difference, and the seconds per policy step of each (render
included; timings are only meaningful on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from machine import machine_info

from planet_torch.config import PAPER, override
from planet_torch.envs import gl_backend, make_env

TASKS = (
    "cartpole-swingup",
    "cheetah-run",
    "walker-walk",
    "cup-catch",
    "finger-spin",
    "reacher-easy",
)


def play(task: str, exact: bool, steps: int, seed: int) -> tuple[np.ndarray, float]:
    cfg = override(PAPER, task=task, env={"exact_render": exact})
    rng = np.random.default_rng(seed)
    with make_env(cfg, seed=seed) as env:
        frames = [env.reset(seed=seed).image]
        start = time.perf_counter()
        for _ in range(steps):
            result = env.step(rng.uniform(-1, 1, env.action_size).astype(np.float32))
            frames.append(result.observation.image)
            if result.done:
                break
        seconds = (time.perf_counter() - start) / max(1, len(frames) - 1)
    return np.stack(frames), seconds


def compare(task: str, steps: int, seed: int, panels: list[np.ndarray]) -> dict[str, Any]:
    exact, exact_s = play(task, True, steps, seed)
    fast, fast_s = play(task, False, steps, seed)
    diff = np.abs(exact.astype(np.int16) - fast.astype(np.int16))
    middle = len(exact) // 2  # exact | fast | difference × 4, one frame from mid-episode
    amplified = np.clip(diff[middle] * 4, 0, 255).astype(np.uint8)
    panels.append(np.concatenate([exact[middle], fast[middle], amplified], axis=1))
    return {
        "frames": len(exact),
        "mean_abs_grey_levels": round(float(diff.mean()), 3),
        "share_over_8_levels": round(float((diff > 8).mean()), 5),
        "max_grey_levels": int(diff.max()),
        "exact_seconds_per_step": round(exact_s, 5),
        "fast_seconds_per_step": round(fast_s, 5),
        "speedup": round(exact_s / fast_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--steps", type=int, default=200, help="policy steps per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", help="write a PNG: per task exact | fast | |diff| × 4")
    args = parser.parse_args()
    panels: list[np.ndarray] = []
    machine = machine_info()
    print(f"CPU: {machine['cpu_model']}; GL: {gl_backend()}", file=sys.stderr)
    results: dict[str, Any] = {"machine": machine, "gl": gl_backend(), "tasks": {}}
    for task in args.tasks:
        row = compare(task, args.steps, args.seed, panels)
        results["tasks"][task] = row
        print(
            f"{task}: mean |diff| {row['mean_abs_grey_levels']:.2f} grey levels, "
            f"{100 * row['share_over_8_levels']:.2f} % over 8, max {row['max_grey_levels']}; "
            f"{row['speedup']:.1f}× faster ({row['fast_seconds_per_step'] * 1e3:.1f} vs "
            f"{row['exact_seconds_per_step'] * 1e3:.1f} ms per step)",
            file=sys.stderr,
            flush=True,
        )
    if args.figure:
        from PIL import Image

        grid = np.concatenate(panels, axis=0)
        Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), 0).save(args.figure)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
