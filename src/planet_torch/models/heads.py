"""Heads that read the latent features: the reward model, and optional state probes.

Both are the original's ``feed_forward`` (networks/basic.py): ``layers`` dense ReLU layers of
``units``, then a linear output, read as the mean of a unit-variance Normal.
"""

from __future__ import annotations

from torch import Tensor, nn

from planet_torch.models.encoder import glorot_


class MLP(nn.Module):
    """[..., in] -> [..., out]: ``layers`` × (dense ``units`` + ReLU), then a linear dense."""

    def __init__(self, in_size: int, out_size: int, layers: int, units: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [nn.Linear(in_size if i == 0 else units, units), nn.ReLU(inplace=True)]
        modules.append(nn.Linear(units if layers else in_size, out_size))
        self.net = nn.Sequential(*modules)
        self.in_size, self.out_size = in_size, out_size
        glorot_(self)

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[-1] == self.in_size, x.shape
        return self.net(x)


class RewardHead(MLP):
    """features [..., F] -> reward mean [...] of N(r; mean, 1) (original: 3 × 300 ReLU)."""

    def __init__(self, feature_size: int, layers: int = 3, units: int = 300) -> None:
        super().__init__(feature_size, 1, layers, units)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).squeeze(-1)


class StateProbe(MLP):
    """features [..., F] -> mean [..., state_size] of the flat environment state.

    A diagnostic: the world model calls it on *detached* features, so no gradient from it ever
    reaches the model (the original's ``state_diagnostics`` heads with ``stop_gradient``).
    """

    def __init__(self, feature_size: int, state_size: int, layers: int = 3, units: int = 300):
        super().__init__(feature_size, state_size, layers, units)
