"""Deconvolutional image decoder of the original (networks/conv_ha.py:decoder), written plainly.

    features -dense 32·d, linear-> [N, 32·d, 1, 1]
             -deconv k5 s2, 4d, ReLU-> 5x5 -deconv k5 s2, 2d, ReLU-> 13x13
             -deconv k6 s2, d, ReLU-> 30x30 -deconv k6 s2, 3, linear-> 64x64   (mean of N(x; mean, 1))

For d = 32 these are the original's 1024, 128, 64, 32, 3 channels.

This is the reference a student reads. Training runs :class:`~planet_torch.models.fast.FastDecoder`
(``model.fast_kernels``, on by default): the same parameters and function, tested equal, with
three of the four transposed convs computed by faster kernels.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from planet_torch.models.encoder import IMAGE_SHAPE, glorot_


class Decoder(nn.Module):
    """features [..., F] -> image mean [..., 3, 64, 64] (float32)."""

    deconv_types: ClassVar[tuple[type[nn.ConvTranspose2d], ...]] = (nn.ConvTranspose2d,) * 4
    """The class of each transposed conv (the fast decoder swaps in kernels with the same function)."""

    def __init__(self, feature_size: int, depth: int = 32) -> None:
        super().__init__()
        self.feature_size, self.depth = feature_size, depth
        self.dense = nn.Linear(feature_size, 32 * depth)  # no activation (original)
        channels = (32 * depth, 4 * depth, 2 * depth, depth, 3)
        kernels = (5, 5, 6, 6)
        layers: list[nn.Module] = []
        for i, deconv in enumerate(self.deconv_types):
            layers.append(deconv(channels[i], channels[i + 1], kernels[i], stride=2))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        glorot_(self)

    def forward(self, features: Tensor) -> Tensor:
        lead = features.shape[:-1]
        assert features.shape[-1] == self.feature_size, features.shape
        x = self.dense(features.reshape(-1, self.feature_size))  # [N, 32d]
        x = self.net(x.view(-1, 32 * self.depth, 1, 1))  # [N, 3, 64, 64]
        assert tuple(x.shape[1:]) == IMAGE_SHAPE, x.shape
        return x.reshape(*lead, *IMAGE_SHAPE)
