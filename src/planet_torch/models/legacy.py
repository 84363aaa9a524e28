"""Checkpoints written before every weight took torch's own layout (planet-torch before
2026-12-02) load into today's models: ``planet eval``, ``inspect`` and ``--resume`` keep working
on an older run folder.

What moved (old name -> new name, with the tensor rearranged the same way in Adam's moments):

* the GRU's TF-layout kernels ``cell.weight_ru`` [in + H, 2H] and ``cell.weight_c`` [in + H, H]
  became the ``nn.Linear`` layers ``cell.gates`` and ``cell.candidate`` (weights transposed);
  the LSTM's ``cell.weight`` became ``cell.linear``;
* the decoder's first transposed conv ``decoder.deconv1`` stored its kernel flat as
  [c_in, k·k·c_out]; it is now ``decoder.net.0``, an ``nn.ConvTranspose2d`` weight
  [c_in, c_out, k, k], and the later layers ``decoder.net.1/3/5`` are ``decoder.net.2/4/6``.

Parameters keep their order, so the optimiser's per-index state lines up once rearranged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

Rearrange = Callable[[Tensor], Tensor]


def _transpose(x: Tensor) -> Tensor:
    return x.t().contiguous()


def _flat_deconv(c_out: int) -> Rearrange:
    def rearrange(x: Tensor) -> Tensor:  # [c_in, k·k·c_out] pixel-major -> [c_in, c_out, k, k]
        c_in, cols = x.shape
        k = math.isqrt(cols // c_out)
        return x.view(c_in, k, k, c_out).permute(0, 3, 1, 2).contiguous()

    return rearrange


def _keep(x: Tensor) -> Tensor:
    return x


def upgrade_model_state(
    state: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Rearrange]]:
    """A model state dict in today's names and layouts, and the rearrangement applied to each
    new name whose tensor changed (empty when ``state`` is already current)."""
    renames: dict[str, tuple[str, Rearrange]] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        if prefix.endswith("cell") and name in ("weight_ru", "weight_c", "weight"):
            layer = {"weight_ru": "gates", "weight_c": "candidate", "weight": "linear"}[name]
            renames[key] = (f"{prefix}.{layer}.weight", _transpose)
        elif prefix.endswith("cell") and name in ("bias_ru", "bias_c", "bias"):
            layer = {"bias_ru": "gates", "bias_c": "candidate", "bias": "linear"}[name]
            renames[key] = (f"{prefix}.{layer}.bias", _keep)
        elif prefix.endswith("decoder.deconv1") or prefix == "deconv1":
            base = prefix.removesuffix("deconv1")
            if name == "weight" and value.dim() == 2:
                c_out = state[f"{prefix}.bias"].shape[0]
                renames[key] = (f"{base}net.0.weight", _flat_deconv(c_out))
            else:
                renames[key] = (f"{base}net.0.{name}", _keep)
        elif (old := re.fullmatch(r"(.*decoder\.|)net\.([135])", prefix)) and (
            any(k.endswith("deconv1.bias") for k in state)
        ):
            renames[key] = (f"{old[1]}net.{int(old[2]) + 1}.{name}", _keep)
    if not renames:
        return dict(state), {}
    upgraded: dict[str, Any] = {}
    changed: dict[str, Rearrange] = {}
    for key, value in state.items():
        if key in renames:
            new, rearrange = renames[key]
            upgraded[new] = rearrange(value)
            if rearrange is not _keep:
                changed[new] = rearrange
        else:
            upgraded[key] = value
    return upgraded, changed


def upgrade_optimizer_state(
    state: Mapping[str, Any], param_names: list[str], changed: Mapping[str, Rearrange]
) -> dict[str, Any]:
    """A torch optimiser's state dict with every per-parameter tensor of the same shape as its
    parameter rearranged as :func:`upgrade_model_state` rearranged that parameter
    (``param_names``: the optimiser's parameters in order)."""
    if not changed:
        return dict(state)
    per_param = dict(state["state"])
    for index, name in enumerate(param_names):
        if name in changed and index in per_param:
            moments = dict(per_param[index])
            for key, value in moments.items():
                if isinstance(value, Tensor) and value.dim() >= 2:
                    moments[key] = changed[name](value)
            per_param[index] = moments
    return {**state, "state": per_param}
