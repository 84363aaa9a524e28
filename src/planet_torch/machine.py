"""What machine a run or benchmark ran on, so that its wall-clock numbers can be compared."""

from __future__ import annotations

import os
import platform
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


def machine_label(info: dict[str, Any]) -> str:
    """One short line: ``AMD EPYC, 2 CPUs, avx512_bf16`` (the flag that decides bf16 speed)."""
    cpus = info.get("affinity_cpus") or info.get("logical_cpus")
    flags = info.get("cpu_flags") or []
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "")
    parts = [str(info.get("cpu_model", "?")), f"{cpus} CPUs", best, info.get("gpu") or ""]
    return ", ".join(p for p in parts if p)
