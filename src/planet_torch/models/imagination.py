"""The latent planning objective, written for speed: imagine with the RSSM prior, sum rewards.

It lives with the models, not in ``planning/``: the planner (``planning/cem.py``) knows no model
and receives this objective as a plain function of action sequences.

Same function as ``WorldModel.imagine_return`` (the reference, tested equal in float32), minus
what planning does not need: no autograd, no stacked State of means/stds, no per-step feature
concatenation (each step writes its sample and belief straight into one features buffer), the
action half of the first dense layer for all H steps in one matmul, the reward head once over
all H·N features. Per imagined step::

    x  = relu(s @ W_s + pre_a[t])                 pre_a = a @ W_a + b, all t at once
    gx = x @ W_x + b_x                            the GRU's input side, [N, 3B]
    r, u = sigmoid(gx[:, :2B] + h @ W_ru)
    c  = tanh(gx[:, 2B:] + (r ∘ h) @ W_c)         tanh as 2·sigmoid(2z) − 1 (4× faster on CPU)
    h  = lerp(c, h, u)
    mean, std = prior(relu(h @ W_p + b_p))        std = softplus(·) + min_std
    s  = mean + std ∘ ε

``dtype=torch.bfloat16`` runs every product in bfloat16 (fp32 accumulate inside the kernels,
returns summed in float32). On CPUs with avx512_bf16 that halves the matmul time (measured
2.35× on Zen 4, BENCHMARKS.md); on CPUs without it, it is slower — :func:`choose_dtype`
measures instead of guessing.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.models import State, WorldModel
from planet_torch.models.fast_rssm import cell_hidden_weights, cell_input_weights
from planet_torch.models.precision import (
    AUTO_PLAN_MIN_SPEEDUP,
    bf16_speedup,
    remembered_speedup,
)
from planet_torch.models.rssm import RSSM, GRUBlockCell

PlanDtype = Literal["auto", "float32", "bfloat16"]


def supports_fast_objective(model: WorldModel) -> bool:
    """The fast path covers the paper's RSSM with a GRU; other variants use the reference."""
    rssm = model.rssm
    return (
        isinstance(rssm, RSSM)
        and isinstance(rssm.cell, GRUBlockCell)
        and rssm.future_rnn
        and all(isinstance(m, (nn.Linear, nn.ReLU)) for m in model.reward_head.net)
    )


def _bf16_speedup(device_type: str, rows: int, inner: int, cols: int) -> float:
    """fp32 time / bf16 time of one addmm of the planner's largest shape on this machine."""
    a, w, b = torch.randn(rows, inner), torch.randn(inner, cols), torch.randn(cols)
    args = {d: [t.to(device_type, d) for t in (b, a, w)] for d in (torch.float32, torch.bfloat16)}

    def step(dtype: torch.dtype) -> None:
        torch.addmm(*args[dtype])

    return bf16_speedup(step, repeats=5)


def choose_dtype(choice: PlanDtype, model: WorldModel, candidates: int) -> torch.dtype:
    """``auto``: bfloat16 on a CPU where it measured ≥ AUTO_PLAN_MIN_SPEEDUP (1.3×) faster at the
    planner's shapes (measured once per machine and kept, as the model's ``auto``), else
    float32 (always float32 on CUDA, where planning is latency-bound, not FLOP-bound)."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    if model.device.type != "cpu" or not supports_fast_objective(model):
        return torch.float32
    rssm = model.rssm
    assert isinstance(rssm, RSSM)
    inner = rssm.hidden_size + rssm.belief_size
    rows, cols = max(candidates, 64), 3 * rssm.belief_size
    speedup, _ = remembered_speedup(
        f"planner addmm {rows}x{inner}x{cols}", lambda: _bf16_speedup("cpu", rows, inner, cols)
    )
    return torch.bfloat16 if speedup >= AUTO_PLAN_MIN_SPEEDUP else torch.float32


def _tanh_(x: Tensor) -> Tensor:
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class LatentObjective:
    """returns = f(state [N, ...], actions [H, N, A]) for CEM; call :meth:`refresh` after the
    model's weights change (the agent does it once per decision)."""

    def __init__(self, model: WorldModel, dtype: torch.dtype = torch.float32) -> None:
        if not supports_fast_objective(model):
            raise ValueError("LatentObjective needs an RSSM with a GRU cell and future_rnn")
        self.model = model
        self.dtype = dtype
        self._buffers: dict[str, Tensor] = {}
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Snapshot the model's current weights into this objective's own buffers, in place:
        the buffers keep their memory, so a CUDA graph that captured :meth:`__call__` (and this
        method) reads the new weights on its next replay."""
        rssm = self.model.rssm
        assert isinstance(rssm, RSSM) and isinstance(rssm.cell, GRUBlockCell)
        S = rssm.state_size
        w_in = rssm.transition_in.weight  # [hidden, S + A]
        w_x, b_x = cell_input_weights(rssm.cell)
        w_ru, w_c = cell_hidden_weights(rssm.cell)
        w_po, b_po = rssm.prior_out.fused()
        weights = {
            "w_s": w_in[:, :S].t(),
            "w_a": w_in[:, S:].t(),
            "b_in": rssm.transition_in.bias,
            "w_x": w_x,
            "b_x": b_x,
            "w_ru": w_ru,
            "w_c": w_c,
            "w_p": rssm.prior_hidden.weight.t(),
            "b_p": rssm.prior_hidden.bias,
            "w_po": w_po,
            "b_po": b_po,
        }
        linears = [m for m in self.model.reward_head.net if isinstance(m, nn.Linear)]
        for i, m in enumerate(linears):
            weights[f"reward_w{i}"], weights[f"reward_b{i}"] = m.weight, m.bias
        if not self._buffers:
            self._buffers = {
                k: torch.empty(v.shape, dtype=self.dtype, device=v.device)
                for k, v in weights.items()
            }
        for name, value in weights.items():
            self._buffers[name].copy_(value)
        b = self._buffers
        self.w_s, self.w_a, self.b_in = b["w_s"], b["w_a"], b["b_in"]
        self.w_x, self.b_x, self.w_ru, self.w_c = b["w_x"], b["b_x"], b["w_ru"], b["w_c"]
        self.w_p, self.b_p, self.w_po, self.b_po = b["w_p"], b["b_p"], b["w_po"], b["b_po"]
        self.reward = [(b[f"reward_w{i}"], b[f"reward_b{i}"]) for i in range(len(linears))]
        self.prior_head = rssm.prior_out  # its split(): mean, softplus(·) + min_std

    @torch.inference_mode()
    def __call__(
        self,
        state: State,
        actions: Tensor,
        generator: torch.Generator | None = None,
        sample: bool = True,
    ) -> Tensor:
        rssm = self.model.rssm
        d, S, B = self.dtype, rssm.state_size, rssm.belief_size
        H, N, A = actions.shape
        pre_a = torch.addmm(self.b_in, actions.reshape(H * N, A).to(d), self.w_a).view(H, N, -1)
        eps = None
        if sample and not rssm.mean_only:  # the same draw as the reference imagine()
            eps = torch.randn((H, N, S), generator=generator, device=actions.device).to(d)
        features = torch.empty(H, N, S + B, dtype=d, device=actions.device)  # [s, h] per step
        s, h = state.sample.to(d), state.belief.to(d)
        for t in range(H):
            x = torch.addmm(pre_a[t], s, self.w_s).relu_()
            gx = torch.addmm(self.b_x, x, self.w_x)  # [N, 3B]
            ru = torch.addmm(gx[:, : 2 * B], h, self.w_ru).sigmoid_()
            r, u = ru[:, :B], ru[:, B:]
            c = _tanh_(torch.addmm(gx[:, 2 * B :], r * h, self.w_c))
            h = torch.lerp(c, h, u, out=features[t, :, S:])
            hidden = torch.addmm(self.b_p, h, self.w_p).relu_()
            out = torch.addmm(self.b_po, hidden, self.w_po)
            if eps is None:
                s = features[t, :, :S].copy_(out[:, :S])
            else:
                mean, std = self.prior_head.split(out)
                s = torch.addcmul(mean, std, eps[t], out=features[t, :, :S])
        x = features.view(H * N, S + B)
        for i, (weight, bias) in enumerate(self.reward):
            x = F.linear(x, weight, bias)
            if i < len(self.reward) - 1:
                x = x.relu_()
        return x.view(H, N).float().sum(0)
