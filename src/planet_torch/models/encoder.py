"""Convolutional image encoder of the original (networks/conv_ha.py:encoder).

    [N, 3, 64, 64] -conv k4 s2, d-> 31 -conv 2d-> 14 -conv 4d-> 6 -conv 8d-> 2x2 -> flatten 32·d

Valid padding, ReLU after every conv, and no dense layer after the flatten: for d = 32 the
embedding is the 1024 values of the last feature map. Weights glorot-uniform, biases zero (TF1's
defaults, which the original never overrides). The last conv, whose output is only 2×2, gets
its weight gradient from one matrix product (:class:`Im2colGradConv2d`), same function.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_SHAPE = (3, 64, 64)


def glorot_(module: nn.Module) -> None:
    """TF1 defaults on every conv, deconv and dense layer below ``module``: glorot-uniform, zero bias.

    For conv kernels torch and TF count fan-in + fan-out the same way (k·k·(in + out)).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def autocast_args(*tensors: Tensor | None) -> list[Tensor | None]:
    """Cast a custom autograd function's inputs as CPU autocast would cast a conv's (to its
    dtype while autocast is on), for a function then run with autocast off."""
    if not torch.is_autocast_enabled("cpu"):
        return list(tensors)
    dtype = torch.get_autocast_dtype("cpu")
    return [None if t is None else t.to(dtype) for t in tensors]


def patch_matrix(x: Tensor, k: int, stride: int, out_h: int, out_w: int) -> Tensor:
    """im2col of a channels-last [N, C, H, W] map for a valid k×k conv: [N·out_h·out_w, k·k·C],
    columns in (kh, kw, c) order (one copy through a strided view)."""
    n, c, h, w = x.shape
    hwc = x.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous for a channels-last x
    assert hwc.is_contiguous(), "patch_matrix needs a channels-last map"
    view = hwc.as_strided(
        (n, out_h, out_w, k, k, c), (h * w * c, stride * w * c, stride * c, w * c, c, 1)
    )
    return view.reshape(n * out_h * out_w, k * k * c)


class _Im2colGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv2d(x, weight, bias, stride)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        c_out, c_in, k, _ = weight.shape
        grad = grad.contiguous(memory_format=torch.channels_last)  # [N, c_out, h, w]
        grad_x = grad_w = grad_b = None
        if needs[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [ctx.stride] * 2, [0, 0], [1, 1], False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if needs[1]:  # Σ_{n,i,j} grad[n, :, i, j] ⊗ patch(n, i, j): one [c_out, M]·[M, k·k·c_in]
            patches = patch_matrix(x, k, ctx.stride, grad.shape[2], grad.shape[3])
            flat = grad.permute(0, 2, 3, 1).reshape(-1, c_out)  # [M, c_out], a free view
            grad_w = (flat.t() @ patches).view(c_out, k, k, c_in).permute(0, 3, 1, 2)
            grad_w = grad_w.contiguous()
        if ctx.has_bias and needs[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class Im2colGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose CPU weight gradient is one im2col matmul (valid, undilated,
    ungrouped, square stride; any other conv runs as the parent).

    Same parameters and function (tested). For the encoder's last conv (128 → 256 channels,
    6×6 → 2×2) oneDNN's weight-gradient kernel ran at 88-126 GFLOP/s on 2 cores of a Zen 4,
    the matmul at 170 (fp32) and 350 (bf16): 98 → 63 ms and 83 → 30 ms at paper size. For the
    larger maps of the other convs oneDNN was as fast or faster, so they stay ``nn.Conv2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        plain = self.padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1
        if x.device.type != "cpu" or not plain or self.stride[0] != self.stride[1]:
            return super().forward(x)
        x_, weight, bias = autocast_args(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            out = _Im2colGradConv.apply(x_, weight, bias, self.stride[0])
        assert isinstance(out, Tensor)
        return out


class Encoder(nn.Module):
    """float [..., 3, 64, 64] (preprocessed) -> embedding [..., 32·depth]."""

    memory_format = torch.channels_last
    """Activation layout of the convs: channels-last is about 2× faster on CPU (oneDNN)."""

    def __init__(self, depth: int = 32) -> None:
        super().__init__()
        self.embed_size = 32 * depth
        channels = (3, depth, 2 * depth, 4 * depth, 8 * depth)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
            conv = Im2colGradConv2d if i == len(channels) - 2 else nn.Conv2d
            # In-place ReLU: the conv's output is not needed by its backward, so this saves a
            # full-size activation per layer (the encoder's largest is 300 MB at paper size).
            layers += [conv(c_in, c_out, 4, stride=2), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        glorot_(self)

    def forward(self, image: Tensor) -> Tensor:
        lead = image.shape[:-3]
        assert tuple(image.shape[-3:]) == IMAGE_SHAPE, image.shape
        x = image.reshape(-1, *IMAGE_SHAPE).contiguous(memory_format=self.memory_format)
        x = self.net(x)  # [N, 8d, 2, 2]
        # Flatten in TF's (h, w, c) order; for a channels-last map this is a free view.
        return x.permute(0, 2, 3, 1).reshape(*lead, self.embed_size)
