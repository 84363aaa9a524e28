"""What machine a benchmark ran on, and its fp32 matmul ceiling, so numbers can be compared.

Used by the scripts beside it (``from machine import machine_info, matmul_ceiling_gflops``); run
on its own it prints both as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import IO, Any

import torch

from planet_torch.machine import machine_info

__all__ = ["machine_info", "matmul_ceiling_gflops", "run_child_json"]


def matmul_ceiling_gflops(
    size: int = 2048, seconds: float = 1.0, threads: int | None = None
) -> float:
    """Best fp32 GFLOP/s of ``size``×``size`` torch.matmul on ``threads`` (default: all CPUs).

    The best of several timed batches over about ``seconds``: a ceiling, not an average, so that
    other benchmarks can state what fraction of the machine they use.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        out = torch.empty(size, size)
        torch.matmul(a, b, out=out)  # warm-up: thread pool, page faults
        flops = 2.0 * size**3
        best, deadline = 0.0, time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            best = max(best, flops / (time.perf_counter() - start) / 1e9)
            if time.perf_counter() > deadline:
                return best
    finally:
        torch.set_num_threads(previous)


def run_child_json(command: list[str], label: str, log: IO[str]) -> dict[str, Any] | None:
    """Run a benchmark's child process, whose last stdout line is its JSON result. On failure
    print ``label`` and the end of its stderr to ``log`` and return None."""
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"{label} failed:\n{out.stderr[-3000:]}", file=log)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps({**machine_info(), "matmul_fp32_gflops": matmul_ceiling_gflops()}, indent=2))
