"""Images in and out of the model: bit-depth reduction with dequantisation noise, and back.

The original (tools/preprocess.py) turns a uint8 frame into

    x = floor(u8 / 2^(8-bits)) / 2^bits + U[0, 1/2^bits) - 0.5        x in [-0.5, 0.5)

and uses the *same noisy tensor* as encoder input and reconstruction target. Frames arrive
channels-last (HWC, as rendered); convolutions want [N, 3, H, W]. The result here is that shape
as a free view of the HWC memory, i.e. a ``torch.channels_last`` tensor, the layout the CPU
convolutions run fastest in (measured: about 2x over contiguous NCHW, benchmarks/).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

NOISE_BLOCK = 1 << 20
"""Elements per noise stream of a large CPU draw (:func:`uniform_noise`): 85 frames' worth."""

_noise_pools: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_noise_pools.clear)  # a forked child has none of the threads


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _noise_pools:
        _noise_pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="planet-noise")
    return _noise_pools[workers]


def uniform_noise(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """U[0, 1) float32 noise of ``shape``, a function of ``generator``'s state alone.

    torch's CPU generator is one serial Mersenne twister: a training batch's noise took 85 ms of
    a 1.2 s paper-size bf16 update on a 2-core AMX Xeon (BENCHMARKS.md, session 19), ≈ 17 ms of
    the ``cpu`` preset's 0.14 s. So on the CPU a draw of at least ``NOISE_BLOCK`` elements takes
    one 62-bit seed from ``generator`` and fills each block of ``NOISE_BLOCK`` elements from
    its own numpy PCG64 stream (``SeedSequence(seed).spawn``), the blocks shared among torch's
    threads (numpy fills without the GIL). Every element is a float32 uniform on [0, 1) as
    ``torch.rand``'s, and the values do not depend on the thread count. Smaller draws (one
    frame per decision) and other devices use ``torch.rand``.
    """
    device = torch.device(device)
    if device.type != "cpu" or math.prod(shape) < NOISE_BLOCK:
        return torch.rand(shape, generator=generator, device=device)
    return _blocked_noise(shape, generator)


def _blocked_noise(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    finish: Callable[[np.ndarray, int, int], None] | None = None,
) -> Tensor:
    """:func:`uniform_noise`'s large CPU draw; ``finish(rows, first, last)`` then works on each
    block's elements ``[first, last)`` in the same thread, while they are still in its cache."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    out = torch.empty(shape, dtype=torch.float32)
    flat = out.view(-1).numpy()
    blocks = np.random.SeedSequence(seed).spawn(-(-n // NOISE_BLOCK))

    def fill(first: int, last: int) -> None:
        for i, stream in enumerate(blocks[first:last], first):
            lo, hi = i * NOISE_BLOCK, min(n, (i + 1) * NOISE_BLOCK)
            np.random.Generator(np.random.PCG64(stream)).random(out=flat[lo:hi], dtype=np.float32)
            if finish is not None:
                finish(flat[lo:hi], lo, hi)

    workers = max(1, min(torch.get_num_threads(), len(blocks)))
    if workers == 1:
        fill(0, len(blocks))
    else:
        bounds = np.linspace(0, len(blocks), workers + 1).round().astype(int).tolist()
        list(_pool(workers).map(lambda ab: fill(*ab), itertools.pairwise(bounds)))
    return out


def preprocess(image: Tensor, bits: int, generator: torch.Generator | None = None) -> Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-0.5, 0.5), channels-last in memory.

    ``generator`` (on the image's device) draws the dequantisation noise; None = torch's global one.
    A training batch on the CPU (a :func:`uniform_noise` draw of whole blocks) adds its levels,
    scales and shifts each block right after drawing its noise, in the same thread: bit for bit
    the torch expression below, in one pass over memory instead of four (tested; with the image
    loss's same-dtype passes the ``cpu`` preset's bf16 update went 118-119 → 108 ms, quiet, on
    a 2-core AMX Xeon; BENCHMARKS.md, session 23).
    """
    if image.dtype != torch.uint8 or image.dim() < 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 [..., H, W, 3], got {image.dtype} {list(image.shape)}")
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    if image.device.type == "cpu" and image.numel() >= NOISE_BLOCK:
        pixels = image.contiguous().view(-1).numpy()

        def finish(rows: np.ndarray, first: int, last: int) -> None:
            np.add(rows, pixels[first:last] >> (8 - bits), out=rows)  # level + U[0, 1)
            rows *= 1.0 / 2**bits
            rows -= 0.5

        return _blocked_noise(image.shape, generator, finish).movedim(-1, -3)
    levels = image >> (8 - bits) if bits < 8 else image  # floor(u8 / 2^(8-bits)), exact
    noise = uniform_noise(image.shape, generator, image.device)
    x = noise.add_(levels).mul_(1.0 / 2**bits).sub_(0.5)  # (level + U[0,1)) / 2^bits - 0.5
    return x.movedim(-1, -3)  # [..., 3, H, W], a view: channels-last strides


def postprocess(x: Tensor, bits: int = 8) -> Tensor:
    """float [..., 3, H, W] (model space) -> uint8 [..., H, W, 3] for display, clipped.

    As the original's ``postprocess(..., uint8)``: floor(2^bits (x + 0.5)) * 256 / 2^bits. For a
    frame that went through :func:`preprocess` with the same ``bits`` this gives back its
    quantised value exactly.
    """
    levels = torch.floor((x.detach().float() + 0.5) * 2**bits)
    pixels = (levels * (256.0 / 2**bits)).clamp_(0, 255).to(torch.uint8)
    return pixels.movedim(-3, -1).contiguous()
