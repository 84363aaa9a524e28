"""Policy steps per second of our 64×64 dm_control envs, and of Kaixhin/PlaNet's wrapper.

    .venv/bin/python benchmarks/bench_env.py > env_bench.json     # JSON on stdout, summary on stderr
    .venv/bin/python benchmarks/bench_env.py --tasks dmc:pendulum-swingup gym:Pendulum-v1

Any task name works (``--tasks``, with its default action repeat); Kaixhin's wrapper is only
timed on the paper's dm_control tasks.

Random actions, episodes reset when they end (resets are timed too). The comparison runs
Kaixhin/PlaNet's ``ControlSuiteEnv`` (``third_party/kaixhin/env.py``, which needs ``cv2``: install
``opencv-python-headless`` with ``pip install --no-deps --target third_party/pydeps``) in a child
process, because two OpenGL users in one process disturb each other. Kaixhin renders 320×240 with
shadows at every env step (dm_control's pixels wrapper) plus once more per policy step, then
resizes; we render 64×64 once per policy step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import ceiling_line, machine_info, matmul_ceilings

from planet_torch.config import PAPER, override, task_spec
from planet_torch.envs import configure_headless, gl_backend, make_env

ROOT = Path(__file__).resolve().parent.parent
KAIXHIN_DIR = ROOT / "third_party" / "kaixhin"
PYDEPS_DIR = ROOT / "third_party" / "pydeps"
CASES = (("cartpole-swingup", 8), ("cheetah-run", 4))
"""(task, action repeat): the paper's repeats, the cheapest and a costly render."""
TARGET_STEPS_PER_SECOND = {"cartpole-swingup": 250.0}
TARGET_SPEEDUP = 50.0


def _gl_renderer() -> str:
    """The OpenGL renderer of the current context (e.g. llvmpipe = software rasteriser)."""
    try:
        from OpenGL import GL

        name = GL.glGetString(GL.GL_RENDERER)
        if name is None:  # e.g. gymnasium's classic control envs draw with pygame, not OpenGL
            return "none (no OpenGL context)"
        return bytes(name).decode()
    except Exception as error:  # informational only; never fail the benchmark for it
        return f"unknown ({type(error).__name__})"


def _time_steps(
    step: Any, reset: Any, action_size: int, steps: int, repeats: int, seed: int
) -> list[float]:
    """Policy steps per second of ``repeats`` runs of ``steps`` random actions each."""
    rng = np.random.default_rng(seed)
    reset()
    rates = []
    for _ in range(repeats):
        actions = rng.uniform(-1.0, 1.0, (steps, action_size)).astype(np.float32)
        start = time.perf_counter()
        for action in actions:
            if step(action):
                reset()
        rates.append(steps / (time.perf_counter() - start))
    return rates


def bench_ours(task: str, action_repeat: int, steps: int, repeats: int) -> dict[str, Any]:
    # the fast renderer, as the cpu preset trains on (the paper preset renders exactly)
    cfg = override(PAPER, task=task, env={"action_repeat": action_repeat, "exact_render": False})
    with make_env(cfg, seed=0) as env:
        rates = _time_steps(
            lambda a: env.step(a).done, env.reset, env.action_size, steps, repeats, seed=0
        )
        renderer = _gl_renderer()
    return {"policy_steps_per_second": rates, "gl_renderer": renderer}


def _kaixhin_worker(task: str, action_repeat: int, steps: int, repeats: int) -> None:
    """Runs in a child process: times Kaixhin's ControlSuiteEnv, prints JSON rates."""
    configure_headless()  # Kaixhin's wrapper relies on MUJOCO_GL being set by the user
    sys.path[:0] = [str(PYDEPS_DIR), str(KAIXHIN_DIR)]
    import torch
    from env import ControlSuiteEnv  # third_party/kaixhin/env.py

    env = ControlSuiteEnv(task, False, 0, 1000, action_repeat, 5)

    def step(action: np.ndarray) -> bool:
        return bool(env.step(torch.from_numpy(action))[2])

    rates = _time_steps(step, env.reset, env.action_size, steps, repeats, seed=0)
    print(json.dumps(rates))


def bench_kaixhin(task: str, action_repeat: int, steps: int, repeats: int) -> dict[str, Any]:
    if not (KAIXHIN_DIR / "env.py").exists():
        return {"skipped": f"{KAIXHIN_DIR / 'env.py'} missing (see this script's docstring)"}
    try:
        sys.path.insert(0, str(PYDEPS_DIR))
        import cv2  # noqa: F401
    except ImportError:
        return {
            "skipped": "cv2 missing: pip install --no-deps --target third_party/pydeps "
            "opencv-python-headless"
        }
    finally:
        sys.path.remove(str(PYDEPS_DIR))
    command = [sys.executable, __file__, "--kaixhin-worker", task, str(action_repeat)]
    command += ["--kaixhin-steps", str(steps), "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"skipped": "Kaixhin worker failed: " + result.stderr.strip().splitlines()[-1]}
    return {"policy_steps_per_second": json.loads(result.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="policy steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    parser.add_argument(
        "--kaixhin-steps", type=int, default=40, help="policy steps per Kaixhin run"
    )
    parser.add_argument(
        "--tasks", nargs="+", help="task names (default: cartpole-swingup R8, cheetah-run R4)"
    )
    parser.add_argument(
        "--kaixhin-worker", nargs=2, metavar=("TASK", "REPEAT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.kaixhin_worker:
        task, action_repeat = args.kaixhin_worker
        _kaixhin_worker(task, int(action_repeat), args.kaixhin_steps, args.repeats)
        return

    results: dict[str, Any] = {
        "machine": machine_info(),
        "matmul_gflops": matmul_ceilings(),
        "mujoco_gl": gl_backend(),
        "image_size": 64,
        "cases": {},
    }
    log = sys.stderr
    machine = results["machine"]
    print(
        f"CPU: {machine['cpu_model']} × {machine['logical_cpus']} "
        f"({' '.join(machine['cpu_flags'])}); {ceiling_line(results['matmul_gflops'])}",
        file=log,
    )
    cases = CASES
    if args.tasks:
        cases = tuple((t, override(PAPER, task=t).action_repeat) for t in args.tasks)
    for task, action_repeat in cases:
        ours = bench_ours(task, action_repeat, args.steps, args.repeats)
        theirs: dict[str, Any] = {"skipped": "not one of the paper's dm_control tasks"}
        if task_spec(task).suite == "dmc" and ":" not in task:
            theirs = bench_kaixhin(task, action_repeat, args.kaixhin_steps, min(args.repeats, 3))
        ours_median = statistics.median(ours["policy_steps_per_second"])
        case: dict[str, Any] = {"action_repeat": action_repeat, "ours": ours, "kaixhin": theirs}
        line = (
            f"{task} (R={action_repeat}): {ours_median:.0f} policy steps/s "
            f"({ours_median * action_repeat:.0f} env steps/s), GL {ours['gl_renderer']}"
        )
        target = TARGET_STEPS_PER_SECOND.get(task)
        if target is not None:
            case["target_met"] = ours_median >= target
            line += f"; target {target:.0f}: {'met' if case['target_met'] else 'MISSED'}"
        if "policy_steps_per_second" in theirs:
            theirs_median = statistics.median(theirs["policy_steps_per_second"])
            case["speedup_vs_kaixhin"] = ours_median / theirs_median
            line += (
                f"; Kaixhin {theirs_median:.1f} policy steps/s -> {case['speedup_vs_kaixhin']:.0f}× "
                f"(target {TARGET_SPEEDUP:.0f}×)"
            )
        else:
            line += f"; Kaixhin comparison skipped: {theirs['skipped']}"
        print(line, file=log, flush=True)
        results["cases"][task] = case
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
