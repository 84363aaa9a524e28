"""Faster CPU kernels for the encoder and decoder: same parameters, same function, tested equal.

``model.fast_kernels`` (on by default) builds :class:`FastEncoder` and :class:`FastDecoder`
instead of the plain :class:`~planet_torch.models.encoder.Encoder` and
:class:`~planet_torch.models.decoder.Decoder`. Their parameters have the same names, shapes and
torch layouts, so a checkpoint loads into either; every layer here is tested equal to the torch
layer it replaces (float32 and bfloat16, forward and gradients: tests/test_fast_kernels.py).
What each buys was measured with benchmarks/bench_train_step.py (BENCHMARKS.md):

* activations in channels-last memory: oneDNN's convs are about 2× faster so;
* in-place ReLUs: a conv's output is not needed by its backward, so this saves a full-size
  activation per layer (the encoder's largest is 300 MB at paper size);
* the encoder's last conv runs its forward pass and its weight gradient as one matrix product
  each (:class:`Im2colConv2d`);
* the decoder's first transposed conv, on a 1×1 map, is a matrix product (:class:`Deconv1x1`);
* its last, 3 output channels, runs its forward pass as a stride-1 conv with 4·3 channels and a
  pixel shuffle (:class:`SubPixelConvTranspose2d`): oneDNN's transposed-conv forward is slow for
  so few channels, its backward is fine and is kept;
* the other transposed convs add their bias after the convolution
  (:class:`BiasAfterConvTranspose2d`): with the bias inside, oneDNN's transposed conv was up to 4×
  slower in bf16 forward on Zen 4 and its backward spent more on the bias gradient than a plain
  sum takes;
* on CPUs with AMX, in bfloat16, the convs followed by a ReLU (the encoder's first three, the
  decoder's middle two) run as one oneDNN call with the bias and the ReLU fused
  (:class:`ReLUConv2d`, :class:`ReLUConvTranspose2d`): bf16 ReLU and bias passes over memory cost
  more there than the convs themselves (the encoder's first conv: 57 → 20 ms at paper size).

On other devices every layer runs as its torch parent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.machine import cpu_has_amx
from planet_torch.models.decoder import Decoder
from planet_torch.models.encoder import IMAGE_SHAPE, Encoder


def autocast_args(*tensors: Tensor | None) -> list[Tensor | None]:
    """Cast a custom autograd function's inputs as CPU autocast would cast a conv's (to its
    dtype while autocast is on), for a function then run with autocast off."""
    if not torch.is_autocast_enabled("cpu"):
        return list(tensors)
    dtype = torch.get_autocast_dtype("cpu")
    return [None if t is None else t.to(dtype) for t in tensors]


def fuse_conv_relu(x: Tensor) -> bool:
    """Whether a conv + ReLU on ``x`` runs as one oneDNN call (:class:`_ConvReLU`): in bfloat16
    (autocast or a bf16 input) on a CPU with AMX.

    Measured at paper size on a 2-core AMX Xeon (BENCHMARKS.md, session 19): bf16 encoder convs
    + ReLU 57 / 37 / 25 ms → 20 / 20 / 20 ms, decoder transposed convs + bias + ReLU 71 / 129 →
    55 / 52 ms; in float32 the same fusion gained nothing or lost (128 → 64 transposed: 146 →
    657 ms), and on Zen 4 oneDNN's bf16 transposed conv with its bias inside was 4× slower
    (above), so everywhere else the layers run as before. On Zen 4 the encoder's fused convs
    gained ≈ 15 ms of a 2.4 s paper-size bf16 update (forward 40 / 99 / 63 → 33 / 94 / 61 ms,
    backward level; BENCHMARKS.md, session 27): within run-to-run spread, so not used there.
    """
    return x.device.type == "cpu" and cpu_has_amx() and in_bf16(x)


def in_bf16(x: Tensor) -> bool:
    """Whether a CPU conv on ``x`` computes in bfloat16: under bf16 autocast, or a bf16 input."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    return x.dtype == torch.bfloat16


class _ConvReLU(torch.autograd.Function):
    """relu(conv(x, W) + b), or of the transposed conv, in one oneDNN call; the backward masks
    the gradient by the saved output, then runs oneDNN's conv backward."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: list[int],
        padding: list[int],
        transposed: bool,
    ) -> Tensor:
        mkldnn = torch.ops.mkldnn
        x = x.contiguous(memory_format=torch.channels_last)
        if transposed:  # (x, W, b, padding, output_padding, stride, dilation, groups, ...)
            y = mkldnn._convolution_transpose_pointwise(
                x, weight, bias, padding, [0, 0], stride, [1, 1], 1, "relu", [None], ""
            )
        else:  # (x, W, b, padding, stride, dilation, groups, ...)
            y = mkldnn._convolution_pointwise(
                x, weight, bias, padding, stride, [1, 1], 1, "relu", [None], ""
            )
        ctx.save_for_backward(x, weight, y)
        ctx.conv = (stride, padding, transposed)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        stride, padding, transposed = ctx.conv
        needs = ctx.needs_input_grad
        grad = torch.ops.aten.threshold_backward(
            grad.contiguous(memory_format=torch.channels_last), y, 0
        )  # the ReLU's backward: 0 where the output is 0
        # oneDNN's own bias gradient for the conv; a plain sum for the transposed conv, where
        # oneDNN's was slow (BiasAfterConvTranspose2d)
        inner_bias = ctx.has_bias and needs[2] and not transposed
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if inner_bias else None, stride, padding, [1, 1],
            transposed, [0, 0], 1, [needs[0], needs[1], inner_bias],
        )  # fmt: skip
        if ctx.has_bias and needs[2] and transposed:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


def conv_relu(x: Tensor, layer: nn.Conv2d | nn.ConvTranspose2d, transposed: bool) -> Tensor:
    """``relu(layer(x))`` through :class:`_ConvReLU` (autocast applied as for the conv)."""
    x_, weight, bias = autocast_args(x, layer.weight, layer.bias)
    assert isinstance(layer.padding, tuple)
    with torch.autocast("cpu", enabled=False):
        out = _ConvReLU.apply(x_, weight, bias, list(layer.stride), list(layer.padding), transposed)
    assert isinstance(out, Tensor)
    return out


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------


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


class _Im2colConv(torch.autograd.Function):
    """A valid k×k conv of a channels-last map as one matrix product each way: the forward
    ``patches · Wᵀ`` and the weight gradient ``gradᵀ · patches``; the input gradient is oneDNN's."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        c_out, _, k, _ = weight.shape
        x = x.contiguous(memory_format=torch.channels_last)
        n, _, h, w = x.shape
        out_h, out_w = (h - k) // stride + 1, (w - k) // stride + 1
        # [c_out, k·k·c_in] in the patches' (kh, kw, c) order: a free view of a channels-last W
        matrix = weight.permute(0, 2, 3, 1).reshape(c_out, -1)
        patches = patch_matrix(x, k, stride, out_h, out_w)  # [N·out_h·out_w, k·k·c_in]
        # The product lands in a channels-last output (not a view of one: the ReLU after this
        # layer works in place, which autograd forbids on a custom function's view output).
        y = torch.empty(
            (n, c_out, out_h, out_w),
            dtype=x.dtype,
            device=x.device,
            memory_format=torch.channels_last,
        )
        rows = y.permute(0, 2, 3, 1).view(-1, c_out)  # [N·out_h·out_w, c_out], a view of y
        if bias is None:
            torch.mm(patches, matrix.t(), out=rows)
        else:
            torch.addmm(bias, patches, matrix.t(), out=rows)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return y

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
            if weight.is_contiguous():  # else W is channels-last, as this view already is
                grad_w = grad_w.contiguous()
        if ctx.has_bias and needs[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class Im2colConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose CPU forward and weight gradient are each one im2col matmul (valid,
    undilated, ungrouped, square stride; any other conv runs as the parent). Keep the weight
    channels-last in memory (:class:`FastEncoder` does): its matrix is then a free view.

    For the encoder's last conv (128 → 256 channels, 6×6 → 2×2) oneDNN's weight-gradient kernel
    ran at 88-126 GFLOP/s on 2 cores of a Zen 4, the matmul at 170 (fp32) and 350 (bf16):
    98 → 63 ms and 83 → 30 ms at paper size. Its forward on one frame, as every decision
    filters one (one thread of an AMX Xeon, under load, 2026-12-03): 549 → 89 µs in fp32, 421 →
    78 µs in bf16 — oneDNN reorders the weight on every call; 2-5× faster up to 256 frames.
    For the larger maps of the other convs oneDNN was as fast or faster, so they stay convs.
    """

    def forward(self, x: Tensor) -> Tensor:
        plain = self.padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1
        if x.device.type != "cpu" or not plain or self.stride[0] != self.stride[1]:
            return super().forward(x)
        x_, weight, bias = autocast_args(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            out = _Im2colConv.apply(x_, weight, bias, self.stride[0])
        assert isinstance(out, Tensor)
        return out


def fuse_relus(net: nn.Sequential) -> None:
    """Each ReLU after a layer that applies its own (:class:`ReLUConv2d`,
    :class:`ReLUConvTranspose2d`) becomes an identity (same indices, so the same parameter names
    as the plain network); the other ReLUs work in place, except after :class:`Deconv1x1`, whose
    output is a permuted view: autograd's backward of an in-place op on a view copied the
    gradient to the base's layout, and the ReLU's backward then mixed layouts (20 ms instead of
    2 at paper size in bf16)."""
    for i, layer in enumerate(net):
        if isinstance(layer, nn.ReLU):
            if isinstance(net[i - 1], ReLUConv2d | ReLUConvTranspose2d):
                net[i] = nn.Identity()
            else:
                layer.inplace = not isinstance(net[i - 1], Deconv1x1)


class ReLUConv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by its ReLU (the layer after it is an identity): one fused oneDNN
    call where :func:`fuse_conv_relu` says so, else the conv and an in-place ReLU."""

    relu_inplace = True

    def forward(self, x: Tensor) -> Tensor:
        plain = self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
        if plain and fuse_conv_relu(x) and not isinstance(self.padding, str):
            return conv_relu(x, self, transposed=False)
        return F.relu(super().forward(x), inplace=self.relu_inplace)


class FastEncoder(Encoder):
    """:class:`Encoder` in channels-last memory with in-place ReLUs (fused into the convs in
    bf16 on AMX CPUs) and the last conv as matmuls (:class:`Im2colConv2d`)."""

    conv_types = (ReLUConv2d, ReLUConv2d, ReLUConv2d, Im2colConv2d)
    memory_format = torch.channels_last
    """Activation layout of the convs: channels-last is about 2× faster on CPU (oneDNN)."""

    def __init__(self, depth: int = 32) -> None:
        super().__init__(depth)
        fuse_relus(self.net)
        # Weights channels-last, after the init (as FastDecoder's first layer): the same values
        # as the plain encoder's from the same seed. The last conv's [c_out, k·k·c_in] matrix is
        # then a free view, and oneDNN's per-call weight reorder is cheaper for the others (one
        # frame, one thread of an AMX Xeon, under load: conv2 167 → 131 µs, conv3 218 → 134).
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, image: Tensor) -> Tensor:
        lead = image.shape[:-3]
        assert tuple(image.shape[-3:]) == IMAGE_SHAPE, image.shape
        x = image.reshape(-1, *IMAGE_SHAPE).contiguous(memory_format=self.memory_format)
        x = self.net(x)  # [N, 8d, 2, 2]
        # For a channels-last map the (h, w, c) flatten is a free view.
        return x.permute(0, 2, 3, 1).reshape(*lead, self.embed_size)


# ---------------------------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------------------------


class Deconv1x1(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` applied to a [N, c_in, 1, 1] map as one matrix product: output
    pixel (i, j) is ``x @ W[:, :, i, j] + b``, and the product lands directly in channels-last
    order. With the weight channels-last in memory (:class:`FastDecoder` keeps it so) its
    [c_in, k·k·c_out] (pixel-major) matrix is a free view. Any other input runs as the parent."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        plain = (
            self.padding == (0, 0)
            and self.output_padding == (0, 0)
            and self.dilation == (1, 1)
            and self.groups == 1
        )
        if x.shape[-2:] != (1, 1) or output_size is not None or not plain or self.bias is None:
            return super().forward(x, output_size)
        c_in, c_out, k, _ = self.weight.shape
        matrix = self.weight.permute(0, 2, 3, 1).reshape(c_in, k * k * c_out)
        bias = self.bias.repeat(k * k)  # [k·k·c_out], pixel-major like the matrix
        y = torch.addmm(bias, x.reshape(-1, c_in), matrix)
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

    oneDNN's transposed conv with a bias was measured at paper size (2 500 maps, 2-core Zen 4):
    128→64 channels on 5×5, forward 87 → 374 ms in bf16 and 168 → 213 ms in fp32; backward 64→32
    on 13×13, 619 → 842 ms in fp32 for the bias gradient, which autograd's sum over (N, H, W)
    computes in ≈ 10 ms.
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


class ReLUConvTranspose2d(BiasAfterConvTranspose2d):
    """:class:`BiasAfterConvTranspose2d` followed by its ReLU (the layer after it is an
    identity): one fused oneDNN call where :func:`fuse_conv_relu` says so."""

    relu_inplace = True

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        plain = self.output_padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1
        if plain and output_size is None and fuse_conv_relu(x):
            return conv_relu(x, self, transposed=True)
        return F.relu(super().forward(x, output_size), inplace=self.relu_inplace)


class SubPixelConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(c_in, c_out, 2m, stride=2)`` whose CPU forward is a conv + shuffle."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        if kernel_size % 2 or stride != 2:
            raise ValueError("the sub-pixel form needs an even kernel and stride 2")
        super().__init__(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if x.device.type != "cpu" or output_size is not None:
            return super().forward(x, output_size)
        x_, weight, bias = autocast_args(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            out = _SubPixelConvTranspose.apply(x_, weight, bias)
        assert isinstance(out, Tensor)
        return out


class FastDecoder(Decoder):
    """:class:`Decoder` in channels-last memory with in-place ReLUs and faster transposed convs."""

    deconv_types = (
        Deconv1x1,
        ReLUConvTranspose2d,
        ReLUConvTranspose2d,
        SubPixelConvTranspose2d,
    )
    memory_format = torch.channels_last
    """Activation layout of the deconvs: channels-last is about 2× faster on CPU (oneDNN)."""

    def __init__(self, feature_size: int, depth: int = 32) -> None:
        super().__init__(feature_size, depth)
        fuse_relus(self.net)
        # After the init: an in-place random init fills memory in order, so a channels-last
        # weight would get other values than the plain decoder's from the same seed.
        first = self.net[0]
        assert isinstance(first, Deconv1x1)
        first.weight.data = first.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, features: Tensor) -> Tensor:
        lead = features.shape[:-1]
        assert features.shape[-1] == self.feature_size, features.shape
        x = self.dense(features.reshape(-1, self.feature_size))  # [N, 32d]
        x = self.net[0](x.view(-1, 32 * self.depth, 1, 1))  # [N, 4d, 5, 5], channels-last
        x = x.contiguous(memory_format=self.memory_format)
        for layer in list(self.net)[1:]:
            x = layer(x)  # -> [N, 3, 64, 64]
        assert tuple(x.shape[1:]) == IMAGE_SHAPE, x.shape
        return x.reshape(*lead, *IMAGE_SHAPE)
