"""bfloat16 only where this machine runs it faster: the measurement behind the ``auto`` dtypes.

Whether bf16 pays depends on the CPU, not on its flags alone: on Zen 4 (avx512_bf16, no AMX)
bf16 matmuls ran 2.2× faster than fp32, on a Xeon with avx512_bf16 but no AMX 0.54×, and
AVX2-only CPUs emulate it. So ``auto`` times the actual work in both dtypes, once per process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import torch

from planet_torch.models.decoder import Decoder
from planet_torch.models.encoder import Encoder

AUTO_MIN_SPEEDUP = 1.2
"""``auto`` picks bfloat16 when it measures at least this much faster (else float32)."""


def bf16_speedup(step: Callable[[torch.dtype], object], repeats: int = 3) -> float:
    """fp32 seconds / bf16 seconds of ``step(dtype)``: best of ``repeats`` after a warm-up."""
    best: dict[torch.dtype, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        step(dtype)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step(dtype)
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.float32] / best[torch.bfloat16]


@functools.cache
def conv_bf16_speedup(cnn_depth: int, feature_size: int, frames: int = 32) -> float:
    """fp32 / bf16 time of one forward + backward of a fresh encoder and decoder of this size
    on ``frames`` images, under CPU autocast as :class:`WorldModel` runs them (≈ 0.5 s at
    depth 32; cached per process)."""
    # A model often first runs while acting, under inference_mode or no_grad: the probe trains.
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng():
        torch.manual_seed(0)  # fork_rng: the caller's random stream stays as it was
        encoder, decoder = Encoder(cnn_depth), Decoder(feature_size, cnn_depth)
        image = torch.rand(frames, 3, 64, 64) - 0.5
        features = torch.randn(frames, feature_size)

        def step(dtype: torch.dtype) -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = encoder(image).float().sum() + decoder(features).float().square().sum()
            loss.backward()

        return bf16_speedup(step)


def choose_model_dtype(
    device: torch.device, cnn_depth: int, feature_size: int
) -> tuple[torch.dtype, str]:
    """What ``model.compute_dtype = "auto"`` means on ``device``, and why, in words."""
    if device.type != "cpu":
        return torch.float32, "auto: float32 off the CPU (not measured there)"
    speedup = conv_bf16_speedup(cnn_depth, feature_size)
    dtype = torch.bfloat16 if speedup >= AUTO_MIN_SPEEDUP else torch.float32
    return dtype, f"auto: bf16 convs measured {speedup:.2f}× fp32's speed on this CPU"
