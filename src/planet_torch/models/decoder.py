"""Deconvolutional image decoder of the original (networks/conv_ha.py:decoder).

    features -dense 32·d, linear-> [N, 32·d, 1, 1]
             -deconv k5 s2, 4d, ReLU-> 5x5 -deconv k5, 2d, ReLU-> 13x13
             -deconv k6, d, ReLU-> 30x30 -deconv k6, 3, linear-> 64x64   (mean of N(x; mean, 1))

For d = 32 these are the original's 1024, 128, 64, 32, 3 channels. Two layers are computed
differently from ``nn.ConvTranspose2d``, with the same parameters and the same function, because
it is faster on CPU (benchmarks/bench_train_step.py):

* the transposed conv on the 1×1 map is a matrix product (:class:`Deconv1x1`);
* the last one, 3 output channels, runs its forward pass as a stride-1 conv with 4·3 channels
  followed by a pixel shuffle (:class:`SubPixelConvTranspose2d`): oneDNN's transposed-conv
  forward is slow for so few channels, its backward is fine and is kept;
* the transposed convs add their bias after the convolution (:class:`BiasAfterConvTranspose2d`):
  with the bias inside, oneDNN's transposed conv was up to 4× slower in bf16 forward and its
  backward spent more on the bias gradient (a per-channel sum) than a plain sum takes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.models.encoder import IMAGE_SHAPE, autocast_args, glorot_


class Deconv1x1(nn.Module):
    """``ConvTranspose2d(c_in, c_out, k, stride=s)`` applied to a [N, c_in, 1, 1] input.

    The output pixel (i, j) is ``x @ W[:, :, i, j] + b``. The kernel is stored flat as [c_in,
    k·k·c_out] (pixel-major) so the product lands directly in channels-last order; the bias is
    per channel, as in the transposed conv (not per output pixel).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        self.weight = nn.Parameter(torch.empty(in_channels, kernel_size**2 * out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Glorot-uniform as for TF's conv2d_transpose kernel: fan_in + fan_out = k²·(in + out).
        limit = math.sqrt(6.0 / (kernel_size**2 * (in_channels + out_channels)))
        nn.init.uniform_(self.weight, -limit, limit)

    def forward(self, x: Tensor) -> Tensor:  # [N, c_in] -> [N, c_out, k, k] (channels-last)
        k, c_out = self.kernel_size, self.out_channels
        bias = self.bias.repeat(k * k)  # [k·k·c_out], pixel-major like the weight
        y = torch.addmm(bias, x, self.weight)
        return y.view(-1, k, k, c_out).permute(0, 3, 1, 2)


def _subpixel_forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv_transpose2d(x, weight, bias, stride=2)`` for an even kernel k = 2m, as a conv.

    Output pixel (2i + p, 2j + q) only meets kernel taps of parity (p, q):
    ``y[2i+p, 2j+q] = Σ_{a,b<m} x[i-a, j-b] · W[2a+p, 2b+q]``, a plain m×m correlation of x
    (zero-padded by m-1) with the flipped taps, one output channel per (p, q, c_out).
    """
    c_in, c_out, k, _ = weight.shape
    m = k // 2
    taps = weight.view(c_in, c_out, m, 2, m, 2).flip(2, 4)  # [in, out, a, p, b, q]
    kernel = taps.permute(3, 5, 1, 0, 2, 4).reshape(4 * c_out, c_in, m, m)  # [(p, q, out), in]
    kernel = kernel.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, kernel, None if bias is None else bias.repeat(4), padding=m - 1)
    n, _, h, w = y.shape  # y[i, j, (p, q, c)] -> out[2i + p, 2j + q, c], channels-last
    y = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c_out).transpose(2, 3)
    return y.reshape(n, 2 * h, 2 * w, c_out).permute(0, 3, 1, 2)


class _SubPixelConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _subpixel_forward(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad,
            x,
            weight,
            None,  # bias gradient below: a plain sum is faster than oneDNN's
            [2, 2],  # stride
            [0, 0],  # padding
            [1, 1],  # dilation
            True,  # transposed
            [0, 0],  # output padding
            1,  # groups
            [needs[0], needs[1], False],
        )
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and needs[2] else None
        return grad_x, grad_w, grad_b


class BiasAfterConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose CPU forward adds the bias after the transposed conv.

    Same parameters and function (tested). oneDNN's transposed conv with a bias was measured at
    paper size (2 500 maps, 2-core Zen 4): 128→64 channels on 5×5, forward 87 → 374 ms in bf16
    and 168 → 213 ms in fp32; backward 64→32 on 13×13, 619 → 842 ms in fp32 for the bias
    gradient, which autograd's sum over (N, H, W) computes in ≈ 10 ms.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if x.device.type != "cpu" or output_size is not None or self.bias is None:
            return super().forward(x, output_size)
        assert isinstance(self.padding, tuple)  # transposed convs take no 'same'/'valid'
        y = F.conv_transpose2d(
            x,
            self.weight,
            None,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )
        # In place (the conv's output is not saved) and in y's dtype: a float32 bias on a bf16
        # output (autocast) would make the add copy y to float32 and back.
        return y.add_(self.bias.to(y.dtype).view(-1, 1, 1))


class SubPixelConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(c_in, c_out, 2m, stride=2)`` whose CPU forward is a conv + shuffle.

    Same parameters and function as the parent (tested); on other devices it is the parent.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        if kernel_size % 2:
            raise ValueError("the sub-pixel form needs an even kernel")
        super().__init__(in_channels, out_channels, kernel_size, stride=2)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if x.device.type != "cpu" or output_size is not None:
            return super().forward(x, output_size)
        x_, weight, bias = autocast_args(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            out = _SubPixelConvTranspose.apply(x_, weight, bias)
        assert isinstance(out, Tensor)
        return out


class Decoder(nn.Module):
    """features [..., F] -> image mean [..., 3, 64, 64] (float32, channels-last in memory)."""

    memory_format = torch.channels_last
    """Activation layout of the deconvs: channels-last is about 2× faster on CPU (oneDNN)."""

    def __init__(self, feature_size: int, depth: int = 32) -> None:
        super().__init__()
        self.feature_size = feature_size
        self.dense = nn.Linear(feature_size, 32 * depth)  # no activation (original)
        self.deconv1 = Deconv1x1(32 * depth, 4 * depth, 5)
        self.net = nn.Sequential(
            nn.ReLU(inplace=True),
            BiasAfterConvTranspose2d(4 * depth, 2 * depth, 5, stride=2),
            nn.ReLU(inplace=True),
            BiasAfterConvTranspose2d(2 * depth, depth, 6, stride=2),
            nn.ReLU(inplace=True),
            SubPixelConvTranspose2d(depth, 3, 6),
        )
        glorot_(self)

    def forward(self, features: Tensor) -> Tensor:
        lead = features.shape[:-1]
        assert features.shape[-1] == self.feature_size, features.shape
        x = self.deconv1(self.dense(features.reshape(-1, self.feature_size)))  # [N, 4d, 5, 5]
        x = self.net(x.contiguous(memory_format=self.memory_format))  # [N, 3, 64, 64]
        assert tuple(x.shape[1:]) == IMAGE_SHAPE, x.shape
        return x.reshape(*lead, *IMAGE_SHAPE)
