"""Convolutional image encoder of the original (networks/conv_ha.py:encoder), written plainly.

    [N, 3, 64, 64] -conv k4 s2, d-> 31 -conv 2d-> 14 -conv 4d-> 6 -conv 8d-> 2x2 -> flatten 32·d

Valid padding, ReLU after every conv, and no dense layer after the flatten: for d = 32 the
embedding is the 1024 values of the last feature map. Weights glorot-uniform, biases zero (TF1's
defaults, which the original never overrides).

This is the reference a student reads. Training runs :class:`~planet_torch.models.fast.FastEncoder`
(``model.fast_kernels``, on by default): the same parameters and function, tested equal, computed
in a faster memory layout with one faster kernel.
"""

from __future__ import annotations

from typing import ClassVar

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


class Encoder(nn.Module):
    """float [..., 3, 64, 64] (preprocessed) -> embedding [..., 32·depth]."""

    conv_types: ClassVar[tuple[type[nn.Conv2d], ...]] = (nn.Conv2d,) * 4
    """The class of each conv (the fast encoder swaps in kernels with the same function)."""

    def __init__(self, depth: int = 32) -> None:
        super().__init__()
        self.embed_size = 32 * depth
        channels = (3, depth, 2 * depth, 4 * depth, 8 * depth)
        layers: list[nn.Module] = []
        for i, conv in enumerate(self.conv_types):
            layers += [conv(channels[i], channels[i + 1], 4, stride=2), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        glorot_(self)

    def forward(self, image: Tensor) -> Tensor:
        lead = image.shape[:-3]
        assert tuple(image.shape[-3:]) == IMAGE_SHAPE, image.shape
        x = self.net(image.reshape(-1, *IMAGE_SHAPE))  # [N, 8d, 2, 2]
        # Flatten in TF's (h, w, c) order, as the original's reshape of an NHWC map.
        return x.permute(0, 2, 3, 1).reshape(*lead, self.embed_size)
