"""``planet doctor``: can this machine run planet-torch headless? Every failed check prints its fix.

Each check does the real thing (imports, a real 64×64 MuJoCo render, a real CarRacing frame), so a
pass here means training will not fail later on the same problem.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Packages whose versions matter, by distribution name.
KEY_PACKAGES = (
    "torch",
    "numpy",
    "mujoco",
    "dm_control",
    "gymnasium",
    "pygame-ce",
    "box2d",
    "tyro",
    "imageio",
    "imageio-ffmpeg",
    "tensorboard",
    "matplotlib",
)
MIN_FREE_DISK_GB = 2.0
SETUP_FIX = "run `make setup` in the planet-torch checkout (installs the pins of constraints.txt into .venv)"


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str
    fix: str = ""


def _constraints_file() -> Path | None:
    """constraints.txt of the checkout this package was installed from (editable installs)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "constraints.txt"
        if candidate.is_file():
            return candidate
    return None


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_python() -> Result:
    exe = sys.executable
    in_venv = sys.prefix != sys.base_prefix
    on_path = shutil.which("python3")
    detail = f"{exe} (Python {platform.python_version()}, {'venv' if in_venv else 'no venv'})"
    if on_path and Path(on_path).resolve() != Path(exe).resolve():
        detail += f"; note: `python3` on PATH is {on_path}, another interpreter — use {exe} -m pip"
    if sys.version_info[:2] != (3, 11):
        return Result(False, detail, "planet-torch is pinned for Python 3.11: " + SETUP_FIX)
    return Result(True, detail)


def installed_version(name: str) -> str | None:
    """The installed version of the distribution ``name`` (from its metadata, nothing
    imported), or None where it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_packages() -> Result:
    versions = {name: installed_version(name) for name in KEY_PACKAGES}
    detail = ", ".join(f"{n} {v or 'MISSING'}" for n, v in versions.items())
    missing = [n for n, v in versions.items() if v is None]
    if missing:
        return Result(False, detail, f"missing {', '.join(missing)}: {SETUP_FIX}")
    if installed_version("pygame") is not None:
        return Result(
            False,
            detail + "; the `pygame` package is installed beside pygame-ce",
            "both provide the `pygame` module and overwrite each other: "
            "`.venv/bin/python -m pip uninstall -y pygame && .venv/bin/python -m pip install "
            "--force-reinstall -c constraints.txt pygame-ce`",
        )
    constraints = _constraints_file()
    if constraints is not None:
        pins = _pins(constraints)
        wrong = [
            f"{n} {v} (pinned {pins[_normal(n)]})"
            for n, v in versions.items()
            if _normal(n) in pins and v is not None and v.split("+")[0] != pins[_normal(n)]
        ]
        if wrong:
            return Result(
                False,
                detail,
                f"versions differ from constraints.txt: {'; '.join(wrong)}; {SETUP_FIX}",
            )
    return Result(True, detail)


def check_torch() -> Result:
    import torch

    cuda = torch.cuda.is_available()
    devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    detail = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs, "
        f"CUDA: {devices if cuda else 'none (runs on CPU; --device cuda will be refused)'}"
    )
    return Result(True, detail)


def check_precision() -> Result:
    """Informational: what ``--model.compute-dtype auto``, ``--planner.compute-dtype auto`` and
    ``--dreamer.compute-dtype auto`` would choose on this CPU at paper size."""
    import torch

    from planet_torch.config import PAPER
    from planet_torch.models.imagination import plan_dtype_choice
    from planet_torch.models.precision import choose_behaviour_dtype, choose_model_dtype

    m = PAPER.model
    dtype, reason = choose_model_dtype(
        torch.device("cpu"), m.cnn_depth, m.belief_size + m.state_size
    )
    plan_dtype, plan_reason = plan_dtype_choice(
        m.hidden_size, m.belief_size, PAPER.planner.candidates
    )
    rows = PAPER.data.batch_size * PAPER.data.chunk_length  # imagination starts per update
    behaviour, behaviour_reason = choose_behaviour_dtype(
        torch.device("cpu"), rows, m.belief_size + m.state_size, PAPER.dreamer.units
    )
    pick, plan_pick, behaviour_pick = (
        str(d).removeprefix("torch.") for d in (dtype, plan_dtype, behaviour)
    )
    return Result(
        True,
        f"--model.compute-dtype auto trains in {pick} here ({reason}); --planner.compute-dtype"
        f" auto plans in {plan_pick} ({plan_reason}); --dreamer.compute-dtype auto runs the"
        f" behaviour update in {behaviour_pick} ({behaviour_reason}); paper size; every run on"
        " this machine makes these choices: delete the file to measure again",
    )


def _real_env_check(task: str, steps: int, what: str, fix: str) -> Result:
    """Build a real environment, step it, check the 64×64 frames are not blank, time it."""
    import numpy as np

    from planet_torch.config import DEFAULT_PRESET, override, preset
    from planet_torch.envs import make_env
    from planet_torch.errors import UserError

    # The renderer a run without --preset uses: what the user will wait for (the paper preset's
    # pixel-exact one is 6-11× slower on a CPU; both draw through the same GL context).
    cfg = override(preset(DEFAULT_PRESET), task=task)
    try:
        env = make_env(cfg, seed=0)
        from planet_torch.envs.dmc import DmcEnv  # imported by make_env where it can be

        renderer = ""
        if isinstance(env, DmcEnv):
            kind = "pixel-exact" if cfg.env.exact_render else "fast"
            renderer = f", the {DEFAULT_PRESET} preset's {kind} MuJoCo renderer"
        try:
            first = env.reset(seed=0).image
            rng = np.random.default_rng(0)
            start = time.perf_counter()
            for _ in range(steps):
                result = env.step(rng.uniform(env.action_low, env.action_high).astype(np.float32))
                if result.terminated or result.truncated:
                    env.reset(seed=1)
            seconds = time.perf_counter() - start
            last = result.observation.image
        finally:
            env.close()
    except UserError as error:
        return Result(False, str(error), fix)
    except Exception as error:  # the doctor reports any failure instead of crashing on it
        return Result(False, f"{type(error).__name__}: {error}", fix)
    if first.shape != (64, 64, 3) or first.dtype != np.uint8 or float(first.std()) < 1.0:
        return Result(
            False, f"{what} frame is blank or malformed ({first.shape}, {first.dtype})", fix
        )
    changed = not np.array_equal(first, last)
    return Result(
        True,
        f"{what}: real 64×64 frames, {steps / seconds:.0f} policy steps/s "
        f"({cfg.action_repeat} env step{'s' if cfg.action_repeat != 1 else ''} + 1 render each"
        f"{renderer})" + ("" if changed else "; note: frames did not change"),
    )


def check_mujoco(steps: int = 200) -> Result:
    from planet_torch.envs.headless import configure_headless

    try:
        configure_headless()
    except Exception as error:
        return Result(False, str(error), "see docs/troubleshooting.md, MuJoCo rendering")
    backend = os.environ.get("MUJOCO_GL", "?")
    return _real_env_check(
        "cartpole-swingup",
        steps,
        f"MuJoCo GL backend {backend}, cartpole",
        "install EGL (`apt-get install libegl1 libgl1-mesa-dri`) and unset MUJOCO_GL, or install "
        "OSMesa (`apt-get install libosmesa6`) and set MUJOCO_GL=osmesa",
    )


def check_sdl() -> Result:
    video, audio = os.environ.get("SDL_VIDEODRIVER"), os.environ.get("SDL_AUDIODRIVER")
    return _real_env_check(
        "car-racing",
        50,
        f"pygame/SDL (video={video or 'dummy'}, audio={audio or 'dummy'}), CarRacing",
        "unset SDL_VIDEODRIVER/SDL_AUDIODRIVER or set both to `dummy` on a server without screen/sound",
    )


def check_disk(run_dir: Path) -> Result:
    path = run_dir.resolve()
    while not path.exists():
        path = path.parent
    free_gb = shutil.disk_usage(path).free / 2**30
    detail = f"{free_gb:.1f} GiB free at {path}"
    if free_gb < MIN_FREE_DISK_GB:
        return Result(
            False,
            detail,
            "a run needs a few GiB (episodes, checkpoints, videos): free space or use --run-dir on another disk",
        )
    return Result(True, detail)


MIN_AVAILABLE_MEMORY_GB = 4.0
"""The paper preset's update peaks at about 3 GB of RSS on a CPU; the cpu preset at 0.7 GB."""


def check_memory() -> Result:
    from planet_torch.machine import available_memory_gib

    available_gb = available_memory_gib()
    if available_gb is None:
        return Result(True, "unknown (no /proc/meminfo)")
    detail = f"{available_gb:.1f} GiB available"
    if available_gb < MIN_AVAILABLE_MEMORY_GB:
        return Result(
            False,
            detail,
            "the paper preset needs about 3 GB at batch 50 × 50: use --preset cpu, or a smaller "
            "--data.batch-size / --data.chunk-length",
        )
    return Result(True, detail + " (paper preset update ≈ 3 GB, cpu preset ≈ 0.7 GB)")


def check_task(task: str, steps: int = 50) -> Result:
    """A task the user names (``planet doctor --tasks dmc:walker-run``): it builds, draws, steps."""
    return _real_env_check(
        task,
        steps,
        task,
        "check the task name (planet train --help, --task) or docs/custom_envs.md",
    )


def task_list(items: tuple[str, ...]) -> list[str]:
    """``--tasks a b`` or ``--tasks a,b`` (as sweep and random-policy take them): the names."""
    return [task for item in items for task in item.split(",") if task]


def run_checks(run_dir: Path, render_frames: int = 200, tasks: tuple[str, ...] = ()) -> int:
    checks: list[tuple[str, Callable[[], Result]]] = [
        ("python", check_python),
        ("packages", check_packages),
        ("torch", check_torch),
        ("precision", check_precision),
        ("mujoco", lambda: check_mujoco(render_frames)),
        ("sdl", check_sdl),
        ("memory", check_memory),
        ("disk", lambda: check_disk(run_dir)),
    ]
    checks += [("task", lambda task=task: check_task(task)) for task in task_list(tasks)]  # type: ignore[misc]
    failed = 0
    for name, check in checks:
        result = check()
        mark = "ok  " if result.ok else "FAIL"
        print(f"[{mark}] {name:8s} {result.detail}", flush=True)
        if not result.ok:
            failed += 1
            print(f"       fix: {result.fix}", flush=True)
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1
