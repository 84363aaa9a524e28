"""bfloat16 only where this machine runs it faster: the measurement behind the ``auto`` dtypes.

Whether bf16 pays depends on the CPU, not on its flags alone: on Zen 4 (avx512_bf16, no AMX)
bf16 matmuls ran 2.2× faster than fp32, on a Xeon with avx512_bf16 but no AMX 0.54×, and
AVX2-only CPUs emulate it. So ``auto`` times the actual work in both dtypes — once per machine:
the ratio is kept in ``precision.json`` of the cache folder (:func:`cache_dir`), keyed by CPU
model, bf16-relevant flags, torch version and thread count, so every later run on the same
machine makes the same choice. Measured afresh in each process, a ratio near the threshold had
chosen float32 in one process and bfloat16 in the next on the same CPU (1.05× vs 1.42×), and two
runs with the same seed then trained in different precisions. Delete the file to measure again.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text
from planet_torch.machine import (
    cpu_sample,
    machine_info,
    onednn_has_bf16,
    others_cpus,
    usable_cpus,
)
from planet_torch.models.fast import FastDecoder, FastEncoder

AUTO_MIN_SPEEDUP = 1.2
"""``model.compute_dtype auto`` picks bfloat16 when its convs measure at least this much faster."""

AUTO_PLAN_MIN_SPEEDUP = 1.3
"""``planner.compute_dtype auto`` picks bfloat16 rollouts when the planner's largest matmul
measures at least this much faster: a higher bar than the model's, as bf16 rollouts had planned
measurably worse at horizon 12 with sampled futures (BENCHMARKS.md, session 5)."""

AUTO_BEHAVIOUR_MIN_SPEEDUP = 1.3
"""``dreamer.compute_dtype auto`` picks a bfloat16 behaviour update when an actor-sized MLP's
forward and backward measure at least this much faster (the planner's bar: the update is
matmuls of the same kind, and its gradients run through 15 imagined steps)."""

FAR_SLOWER = 0.5
"""A ratio below this after a round ends the timing: no later round can lift it past the
thresholds above (its bf16 time would have to fall 2.4-2.6× below its own best). CPUs without
bf16 instructions emulate it at 0.01-0.1× fp32's speed (Zen 3: 0.09×), where the five rounds
took 15 s of a 1-thread process, mostly bf16 steps; one round says the same."""


SLOW_BF16 = "slow on this CPU, which has no bf16 kernels: float32 is faster"
"""What an explicitly configured bf16 dtype's reason says where it is emulated."""


def configured_reason(dtype: torch.dtype, device: torch.device) -> str:
    """Why an explicitly configured dtype is used, in words; it always wins over ``auto``, but
    bfloat16 on a CPU oneDNN builds no bf16 kernels for (AVX2 only) says what it costs: there
    torch runs it through scalar fallbacks (a paper-size planning objective took 6.1 s in bf16
    against 0.30 s in float32 on a Zen 1 EPYC, BENCHMARKS.md)."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not onednn_has_bf16():
        return f"as configured; {SLOW_BF16}"
    return "as configured"


def worth_saying(choice: str, reason: str) -> bool:
    """Whether a run prints its dtype line: what ``auto`` chose, or an explicit bf16 that is
    emulated here (an explicit dtype that runs at full speed goes without saying)."""
    return choice == "auto" or SLOW_BF16 in reason


def bf16_speedup(step: Callable[[torch.dtype], object], repeats: int = 5) -> float:
    """fp32 seconds / bf16 seconds of ``step(dtype)``: a warm-up of each, then ``repeats`` rounds
    that time fp32 and bf16 back to back, best of each (a burst of load elsewhere slows both
    dtypes' rounds alike instead of one dtype's whole block)."""
    dtypes = (torch.float32, torch.bfloat16)
    for dtype in dtypes:
        step(dtype)
    best = dict.fromkeys(dtypes, float("inf"))
    for _ in range(repeats):
        for dtype in dtypes:
            start = time.perf_counter()
            step(dtype)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
        if best[torch.float32] / best[torch.bfloat16] < FAR_SLOWER:
            break
    return best[torch.float32] / best[torch.bfloat16]


def cache_dir() -> Path:
    """``$PLANET_TORCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/planet-torch``, else
    ``~/.cache/planet-torch``: what planet-torch measured about this machine."""
    if os.environ.get("PLANET_TORCH_CACHE_DIR"):
        return Path(os.environ["PLANET_TORCH_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "planet-torch"


def precision_file() -> Path:
    return cache_dir() / "precision.json"


def machine_key() -> str:
    """What decides bf16's speed: CPU model, its bf16/AMX/AVX flags, torch version, threads."""
    info = machine_info()
    flags = [f for f in info["cpu_flags"] if f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2")]
    parts = [info["cpu_model"], " ".join(flags) or "no avx2", f"torch {info['torch']}"]
    return " | ".join(map(str, [*parts, f"{info['torch_threads']} threads"]))


def _read_kept() -> dict[str, Any]:
    try:
        kept = json.loads(precision_file().read_text())
    except (OSError, ValueError):  # none yet, unreadable or half-edited by hand: measure again
        return {}
    return kept if isinstance(kept, dict) else {}


BUSY_ELSEWHERE_MAX = 0.1
"""A measurement is kept only if other processes used at most this share of the machine's CPUs
while it ran: one taken beside a plotting command (1.12× where the quiet machine measures
1.3-2.5×) had chosen float32 for every later run of the machine (session 8, BENCHMARKS.md)."""


MIN_WATCH_SECONDS = 0.25
"""The shortest window over which /proc/stat's 10 ms ticks say whether others used the CPUs."""


def _measure_alone(measure: Callable[[], float]) -> tuple[float, float | None]:
    """``measure()``, and the share of this process's CPUs other processes used meanwhile (None
    where /proc/stat is missing).

    A measurement shorter than ``MIN_WATCH_SECONDS`` is watched that long (this process sleeps
    the rest): the planner's probe takes a few milliseconds, too short to judge, and one taken
    while two training runs held both CPUs (bf16 0.50× fp32, where the quiet machine measures
    several times faster) had been kept as if the machine were quiet (session 19)."""
    start = cpu_sample()
    speedup = measure()
    if start is None:
        return speedup, None
    time.sleep(max(0.0, start.wall_seconds + MIN_WATCH_SECONDS - time.monotonic()))
    end = cpu_sample()
    if end is None:
        return speedup, None
    return speedup, others_cpus(start, end) / usable_cpus()


_NOT_KEPT: dict[str, float] = {}
"""Ratios this process measured but could not keep (busy CPU, unwritable cache): it goes on
using them, so that its own models all run in one precision."""


def remembered_speedup(probe: str, measure: Callable[[], float]) -> tuple[float, str]:
    """``measure()`` once per machine and ``probe``, then the kept value: (speedup, where from).

    Under a lock on the cache folder: runs started together measure once, and all read the
    same value (the others wait for the first one's measurement instead of timing beside it).
    A measurement taken while other processes kept the CPUs busy is used by this process only,
    not kept: the next process measures again.
    """
    try:
        precision_file().parent.mkdir(parents=True, exist_ok=True)
        lock = open(precision_file().with_suffix(".lock"), "a")  # noqa: SIM115 (held below)
    except OSError as error:  # a read-only home: choose per process, and say so
        if probe not in _NOT_KEPT:
            _NOT_KEPT[probe] = measure()
        speedup = _NOT_KEPT[probe]
        return speedup, f"measured in this process; not kept ({cache_dir()}: {error.strerror})"
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = _read_kept()
        key = machine_key()
        found = kept.get(key)
        mine: dict[str, Any] = found if isinstance(found, dict) else {}
        entry = mine.get(probe)
        if isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float)):
            when = entry.get("measured", "?")
            return float(entry["speedup"]), f"measured {when}, kept in {precision_file()}"
        if probe in _NOT_KEPT:  # never write a value measured on a busy CPU later on
            return _NOT_KEPT[probe], "measured earlier in this process; not kept"
        speedup, elsewhere = _measure_alone(measure)
        if elsewhere is not None and elsewhere > BUSY_ELSEWHERE_MAX:
            _NOT_KEPT[probe] = speedup
            return speedup, (
                f"measured now while other processes used {elsewhere:.0%} of the CPUs: not kept, "
                "the next run measures again"
            )
        mine[probe] = {"speedup": round(speedup, 4), "measured": datetime.date.today().isoformat()}
        kept[key] = mine
        try:
            atomic_write_text(precision_file(), json.dumps(kept, indent=2, sort_keys=True) + "\n")
        except (OSError, UserError) as error:  # a full disk: keep training, measure next time
            _NOT_KEPT[probe] = speedup
            reason = getattr(error, "strerror", None) or str(error)
            return speedup, f"measured now; not kept ({precision_file()}: {reason})"
    return speedup, f"measured now, kept in {precision_file()}"


def autocast_step_speedup(build: Callable[[], Callable[[], torch.Tensor]]) -> float:
    """fp32 / bf16 time of one training step under CPU autocast: ``build()`` makes fresh
    modules and inputs (under seed 0) and returns the loss function whose forward + backward
    is timed in each dtype by :func:`bf16_speedup`."""
    # A model often first runs while acting, under inference_mode or no_grad: the probe trains.
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng():
        torch.manual_seed(0)  # fork_rng: the caller's random stream stays as it was
        loss_of = build()

        def step(dtype: torch.dtype) -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = loss_of()
            loss.backward()

        return bf16_speedup(step)


def conv_bf16_speedup(cnn_depth: int, feature_size: int, frames: int = 32) -> float:
    """fp32 / bf16 time of one forward + backward of a fresh encoder and decoder of this size
    on ``frames`` images, under CPU autocast as :class:`WorldModel` runs them (≈ 0.5 s at
    depth 32). Not cached here: :func:`remembered_speedup` keeps it (a per-process cache had
    written a busy measurement into the kept file after the file was deleted)."""

    def build() -> Callable[[], torch.Tensor]:
        encoder, decoder = FastEncoder(cnn_depth), FastDecoder(feature_size, cnn_depth)
        image = torch.rand(frames, 3, 64, 64) - 0.5
        features = torch.randn(frames, feature_size)
        return lambda: encoder(image).float().sum() + decoder(features).float().square().sum()

    return autocast_step_speedup(build)


def conv_probe(cnn_depth: int, feature_size: int) -> str:
    """The name :func:`remembered_speedup` keeps the conv measurement of this size under."""
    return f"convs depth {cnn_depth}, features {feature_size}"


def choose_model_dtype(
    device: torch.device, cnn_depth: int, feature_size: int
) -> tuple[torch.dtype, str]:
    """What ``model.compute_dtype = "auto"`` means on ``device``, and why, in words."""
    if device.type != "cpu":
        return torch.float32, "auto: float32 off the CPU (not measured there)"
    speedup, source = remembered_speedup(
        conv_probe(cnn_depth, feature_size), lambda: conv_bf16_speedup(cnn_depth, feature_size)
    )
    dtype = torch.bfloat16 if speedup >= AUTO_MIN_SPEEDUP else torch.float32
    return dtype, f"auto: bf16 convs ran {speedup:.2f}× fp32's speed on this CPU; {source}"


def mlp_bf16_speedup(rows: int, inputs: int, units: int) -> float:
    """fp32 / bf16 time of one forward + backward of a fresh two-layer ELU MLP (``inputs`` →
    ``units`` → ``units``) on ``rows`` inputs under CPU autocast, as the behaviour update runs
    its actor, value and imagined steps."""

    def build() -> Callable[[], torch.Tensor]:
        mlp = torch.nn.Sequential(
            torch.nn.Linear(inputs, units),
            torch.nn.ELU(),
            torch.nn.Linear(units, units),
            torch.nn.ELU(),
        )
        x = torch.randn(rows, inputs)
        return lambda: mlp(x).float().sum()

    return autocast_step_speedup(build)


def choose_behaviour_dtype(
    device: torch.device, rows: int, inputs: int, units: int
) -> tuple[torch.dtype, str]:
    """What ``dreamer.compute_dtype = "auto"`` means on ``device`` for a behaviour update of
    ``rows`` imagined states of ``inputs`` features through ``units``-wide layers, and why."""
    if device.type != "cpu":
        return torch.float32, "auto: float32 off the CPU (not measured there)"
    rows = max(rows, 64)
    speedup, source = remembered_speedup(
        f"behaviour mlp {rows}x{inputs}x{units}", lambda: mlp_bf16_speedup(rows, inputs, units)
    )
    dtype = torch.bfloat16 if speedup >= AUTO_BEHAVIOUR_MIN_SPEEDUP else torch.float32
    shape = f"[{rows}, {inputs}] → {units} → {units}"
    return dtype, f"auto: a bf16 MLP {shape} ran {speedup:.2f}× fp32's speed; {source}"
