"""What machine a run or benchmark ran on, so that its wall-clock numbers can be compared."""

from __future__ import annotations

import functools
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_SPEED_FLAGS = ("avx", "fma", "f16c", "amx")
"""Prefixes of /proc/cpuinfo flags that decide how fast numpy, torch and llvmpipe can run."""


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def machine_info() -> dict[str, Any]:
    """CPU model, speed-relevant CPU flags, core and thread counts, GPU, library versions."""
    cpu = _cpuinfo()
    flags = sorted(f for f in cpu.get("flags", "").split() if f.startswith(_SPEED_FLAGS))
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": flags,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bf16 (Intel Xeon 4th generation and later)."""
    return "amx_bf16" in _cpuinfo().get("flags", "").split()


@functools.cache
def onednn_has_bf16() -> bool:
    """Whether oneDNN builds bfloat16 kernels on this CPU (it needs avx512bw/vl/dq or
    avx_ne_convert). Without them its bf16 primitives fail to build ("could not create a
    primitive descriptor", seen on an AVX2-only Zen 1 EPYC), while torch's own bf16 ops still
    run, slowly, through scalar fallbacks."""
    return torch.backends.mkldnn.is_available() and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def machine_label(info: dict[str, Any]) -> str:
    """One short line: ``AMD EPYC, 2 CPUs, avx512_bf16`` (the flag that decides bf16 speed)."""
    cpus = info.get("affinity_cpus") or info.get("logical_cpus")
    flags = info.get("cpu_flags") or []
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "")
    parts = [str(info.get("cpu_model", "?")), f"{cpus} CPUs", best, info.get("gpu") or ""]
    return ", ".join(p for p in parts if p)


# ---- who else uses the CPUs ------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds spent on this process's CPUs by everyone, and by this process, at one time."""

    wall_seconds: float
    busy_seconds: float  # all processes on the CPUs this process may run on (and VM steal)
    own_seconds: float  # this process (all threads) and its children (vector-env workers)


def _busy_seconds(cpus: set[int]) -> float:
    """Busy CPU seconds of ``cpus`` since boot from /proc/stat: user, nice, system, irq, softirq
    and steal (time a hypervisor gave another guest); idle and iowait are not busy."""
    ticks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    """CPU seconds of this process's live children (from /proc) and of its reaped ones."""
    me, hz, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == me:  # fields[1] is the parent's pid; utime, stime are 11 and 12
            total += (int(fields[11]) + int(fields[12])) / hz
    reaped = os.times()
    return total + reaped.children_user + reaped.children_system


def cpu_sample() -> CpuSample | None:
    """Now; None where /proc/stat is missing (not Linux)."""
    if not Path("/proc/stat").exists() or not hasattr(os, "sched_getaffinity"):
        return None
    return CpuSample(
        wall_seconds=time.monotonic(),
        busy_seconds=_busy_seconds(os.sched_getaffinity(0)),
        own_seconds=time.process_time() + _children_seconds(),
    )


def others_cpus(start: CpuSample | None, end: CpuSample | None) -> float:
    """How many CPUs' worth of work other processes did on this process's CPUs between two
    samples (0.0: the CPUs were ours; NaN: not measurable here). What it costs a run depends on
    the other job (measured 2026-12-02, Zen 3, 2 cores, BENCHMARKS.md "Sharing the CPU"): one
    busy loop made a debug-size update 1.7x slower (1.35x at nice 19); a nice-19 test suite
    took a cpu-preset run from 0.58 to 2.5-5.0 s/update."""
    if start is None or end is None or end.wall_seconds <= start.wall_seconds:
        return math.nan
    others = (end.busy_seconds - start.busy_seconds) - (end.own_seconds - start.own_seconds)
    return max(0.0, others / (end.wall_seconds - start.wall_seconds))


SHARED_CPUS_THRESHOLD = 0.25
"""Other processes' CPUs beyond the ones torch leaves free that count as sharing the machine:
this machine's own daemons took 0.03 (30 s beside a learning run, 2026-12-02)."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def crowded(others: float) -> bool:
    """Did other processes take CPUs this process's torch threads wanted?"""
    spare = max(0, usable_cpus() - torch.get_num_threads())
    return others > spare + SHARED_CPUS_THRESHOLD  # False for NaN


def available_memory_gib() -> float | None:
    """RAM the kernel could give new allocations now (``MemAvailable``), in GiB; None where
    there is no /proc/meminfo."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(fields["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return None
