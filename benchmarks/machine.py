"""What machine a benchmark ran on, and its fp32 and bf16 matmul ceilings, so numbers can be
compared: a timing in float32 is a fraction of the fp32 ceiling, one in bfloat16 of the bf16
ceiling (on a Xeon with AMX bf16 is ≈ 3.1× fp32, on Zen 4 2.0-2.7×, on a Xeon without AMX 0.54×).

Used by the scripts beside it (``from machine import machine_info, matmul_ceilings``); run on
its own it prints both as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import IO, Any

import torch

from planet_torch.machine import machine_info

__all__ = [
    "bf16_slower",
    "ceiling_line",
    "count_flops",
    "fraction_of_ceiling",
    "machine_info",
    "matmul_ceiling_gflops",
    "matmul_ceilings",
    "run_child_json",
]

PRECISIONS = ("float32", "bfloat16")


def _register_onednn_flops() -> None:
    """Teach torch's FLOP counter oneDNN's fused ops, which it would count as 0: the planner's
    dense layers (``mkldnn::_linear_pointwise``, 2·M·K·N as ``aten.mm``) and, on AMX CPUs in
    bf16, the convs fused with their ReLU (``_convolution_pointwise``,
    ``_convolution_transpose_pointwise``, counted as ``aten.convolution``)."""
    from torch.utils.flop_counter import conv_flop_count, register_flop_formula

    mkldnn = getattr(torch.ops, "mkldnn", None)
    linear = getattr(mkldnn, "_linear_pointwise", None)
    if linear is not None:

        @register_flop_formula(linear)
        def _linear_flops(x_shape: Any, w_shape: Any, *args: Any, **kwargs: Any) -> int:
            rows = 1
            for size in x_shape[:-1]:
                rows *= size
            return 2 * rows * x_shape[-1] * w_shape[0]

    for name, transposed in (
        ("_convolution_pointwise", False),
        ("_convolution_transpose_pointwise", True),
    ):
        op = getattr(mkldnn, name, None)
        if op is None:
            continue

        def _conv_flops(
            x_shape: Any, w_shape: Any, *args: Any, out_shape: Any = None, t: bool = transposed,
            **kwargs: Any,
        ) -> int:  # fmt: skip
            return int(conv_flop_count(x_shape, w_shape, out_shape, transposed=t))

        register_flop_formula(op)(_conv_flops)


_register_onednn_flops()


def count_flops(fn: Any) -> float:
    """FLOPs of ``fn()`` by torch's FlopCounterMode (oneDNN's fused linear included)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_ceiling_gflops(
    size: int = 2048,
    seconds: float = 1.0,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best GFLOP/s of ``size``×``size`` torch.matmul in ``dtype`` on ``threads`` (default: all
    CPUs).

    The best of several timed batches over about ``seconds``: a ceiling, not an average, so that
    other benchmarks can state what fraction of the machine they use. Where one call of 512² takes
    more than ``seconds`` / 50 the size stays 512: on CPUs without bf16 instructions (AVX2-only
    EPYC: 1.3 GFLOP/s at 512², 0.3 at 2048², against 168 in fp32) a 4096² bf16 call would take
    eight minutes, and a ceiling that slow says all it needs to at 512².
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        generator = torch.Generator().manual_seed(0)
        probe = torch.ones(512, 512, dtype=dtype)
        torch.matmul(probe, probe)  # the first call pays for thread start-up and kernel JIT
        start = time.perf_counter()
        torch.matmul(probe, probe)
        if time.perf_counter() - start > seconds / 50:
            size = min(size, 512)
        a = torch.randn(size, size, generator=generator).to(dtype)
        b = torch.randn(size, size, generator=generator).to(dtype)
        out = torch.empty(size, size, dtype=dtype)
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


def matmul_ceilings(size: int = 2048, seconds: float = 1.0) -> dict[str, float]:
    """``{"float32": GFLOP/s, "bfloat16": GFLOP/s}``, measured one after the other in this run."""
    return {
        name: matmul_ceiling_gflops(size, seconds, dtype=getattr(torch, name))
        for name in PRECISIONS
    }


def fraction_of_ceiling(gflops: float, precision: str, ceilings: dict[str, float]) -> float:
    """``gflops`` over the ceiling of the precision the timing ran in (bf16 work against the bf16
    ceiling: dividing it by fp32's reads as more than 100 % on bf16-fast CPUs)."""
    return gflops / ceilings[precision]


def bf16_slower(ceilings: dict[str, float]) -> bool:
    """True where bf16 matmul is slower than fp32 (no bf16 instructions): ``auto`` never picks
    bf16 there, and the emulated kernels would take hours at paper size, so benchmarks skip their
    bf16 variants."""
    return ceilings["bfloat16"] < ceilings["float32"]


def ceiling_line(ceilings: dict[str, float]) -> str:
    fp32, bf16 = ceilings["float32"], ceilings["bfloat16"]
    return (
        f"matmul ceilings: fp32 {fp32:.0f}, bf16 {bf16:.0f} GFLOP/s (bf16 {bf16 / fp32:.2f}× fp32)"
    )


def run_child_json(
    command: list[str], label: str, log: IO[str], timeout_s: float | None = None
) -> dict[str, Any] | None:
    """Run a benchmark's child process, whose last stdout line is its JSON result. On failure,
    or when it runs past ``timeout_s``, print ``label`` and the end of its stderr to ``log`` and
    return None."""
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        print(f"{label} stopped after its {timeout_s:.0f} s limit", file=log)
        return None
    if out.returncode != 0:
        print(f"{label} failed:\n{out.stderr[-3000:]}", file=log)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps({**machine_info(), "matmul_gflops": matmul_ceilings()}, indent=2))
