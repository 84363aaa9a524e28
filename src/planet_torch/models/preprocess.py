"""Images in and out of the model: bit-depth reduction with dequantisation noise, and back.

The original (tools/preprocess.py) turns a uint8 frame into

    x = floor(u8 / 2^(8-bits)) / 2^bits + U[0, 1/2^bits) - 0.5        x in [-0.5, 0.5)

and uses the *same noisy tensor* as encoder input and reconstruction target. Frames arrive
channels-last (HWC, as rendered); convolutions want [N, 3, H, W]. The result here is that shape
as a free view of the HWC memory, i.e. a ``torch.channels_last`` tensor, the layout the CPU
convolutions run fastest in (measured: about 2x over contiguous NCHW, benchmarks/).
"""

from __future__ import annotations

import torch
from torch import Tensor


def preprocess(image: Tensor, bits: int, generator: torch.Generator | None = None) -> Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-0.5, 0.5), channels-last in memory.

    ``generator`` (on the image's device) draws the dequantisation noise; None = torch's global one.
    """
    if image.dtype != torch.uint8 or image.dim() < 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 [..., H, W, 3], got {image.dtype} {list(image.shape)}")
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    levels = image >> (8 - bits) if bits < 8 else image  # floor(u8 / 2^(8-bits)), exact
    noise = torch.rand(image.shape, generator=generator, device=image.device)
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
