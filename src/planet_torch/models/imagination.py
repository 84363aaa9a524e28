"""The latent planning objective, written for speed: imagine with the RSSM prior, sum rewards.

It lives with the models, not in ``planning/``: the planner (``planning/cem.py``) knows no model
and receives this objective as a plain function of action sequences.

Same function as ``WorldModel.imagine_return`` (the reference, tested equal in float32), minus
what planning does not need: no autograd, no stacked State of means/stds, no per-step feature
concatenation (each step writes its sample and belief straight into one features buffer), and
the reward head once over all H·N features. Each dense layer is one call with its bias and
activation fused (:func:`fused_linear`); the GRU's two products read their [x, h] input from one
buffer, as the cell defines them (rssm.py, ``GRUBlockCell``). Per imagined step::

    x      = relu([s, a_t] @ W_in + b_in)
    [r, u] = sigmoid([x, h] @ W_ru + b_ru)
    c      = tanh([x, r ∘ h] @ W_c + b_c)
    h      = lerp(c, h, u)                        (1 - u) ∘ c + u ∘ h
    mean, std = prior(relu(h @ W_p + b_p))        std = softplus(·) + min_std
    s      = mean + std ∘ ε

``dtype=torch.bfloat16`` runs every product in bfloat16 (fp32 accumulate inside the kernels,
returns summed in float32). On CPUs with avx512_bf16 that halves the matmul time (measured
2.35× on Zen 4, BENCHMARKS.md); on CPUs without it, it is slower — :func:`choose_dtype`
measures instead of guessing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from planet_torch.machine import onednn_has_bf16
from planet_torch.models import State, WorldModel
from planet_torch.models.precision import (
    AUTO_PLAN_MIN_SPEEDUP,
    bf16_speedup,
    configured_reason,
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


def plan_dtype_choice(
    hidden_size: int, belief_size: int, candidates: int
) -> tuple[torch.dtype, str]:
    """What ``planner.compute_dtype = "auto"`` means on this CPU for an RSSM of these sizes
    planning ``candidates`` sequences, and why, in words: bfloat16 where a bf16 matmul of the
    planner's largest shape (the GRU gates') measured ≥ AUTO_PLAN_MIN_SPEEDUP faster, once per
    machine and shape (kept, as the model's ``auto``)."""
    rows, inner, cols = max(candidates, 64), hidden_size + belief_size, 3 * belief_size
    speedup, source = remembered_speedup(
        f"planner addmm {rows}x{inner}x{cols}", lambda: _bf16_speedup("cpu", rows, inner, cols)
    )
    dtype = torch.bfloat16 if speedup >= AUTO_PLAN_MIN_SPEEDUP else torch.float32
    shape = f"[{rows}, {inner}] · [{inner}, {cols}]"
    return dtype, f"auto: a bf16 {shape} matmul ran {speedup:.2f}× fp32's speed; {source}"


def resolve_plan_dtype(
    choice: PlanDtype, model: WorldModel, candidates: int
) -> tuple[torch.dtype, str]:
    """The planner's dtype for ``choice`` and why, in words. ``auto``: bfloat16 on a CPU where
    it measured ≥ AUTO_PLAN_MIN_SPEEDUP (1.3×) faster at the planner's shapes
    (:func:`plan_dtype_choice`), else float32 (always float32 on CUDA, where planning is
    latency-bound, not FLOP-bound)."""
    if choice != "auto":
        dtype = getattr(torch, choice)
        return dtype, f"{choice}, {configured_reason(dtype, model.device)}"
    if model.device.type != "cpu":
        return torch.float32, "auto: float32 off the CPU (not measured there)"
    if not supports_fast_objective(model):
        return torch.float32, "auto: float32 (this model plans with the reference rollout)"
    rssm = model.rssm
    assert isinstance(rssm, RSSM)
    return plan_dtype_choice(rssm.hidden_size, rssm.belief_size, candidates)


def choose_dtype(choice: PlanDtype, model: WorldModel, candidates: int) -> torch.dtype:
    """:func:`resolve_plan_dtype`'s dtype."""
    return resolve_plan_dtype(choice, model, candidates)[0]


Activation = Literal["none", "relu", "sigmoid", "tanh"]


def onednn_linear_available(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether :func:`fused_linear` can call oneDNN's matmul with its bias and activation fused
    in ``dtype`` (an x86/ARM CPU build of torch with mkldnn, and for bfloat16 a CPU oneDNN
    builds bf16 kernels on; on CUDA the objective is captured in a graph)."""
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and (dtype != torch.bfloat16 or onednn_has_bf16())
    )


_ACTIVATIONS = {
    "none": lambda y: y,
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
    "tanh": torch.tanh_,
}


def fused_linear(x: Tensor, weight: Tensor, bias: Tensor, act: Activation, onednn: bool) -> Tensor:
    """``act(x @ weight.T + bias)``, weight in torch's [out, in] layout for oneDNN (``onednn``)
    and as its [in, out] transpose for ``torch.addmm`` (contiguous either way).

    oneDNN's ``_linear_pointwise`` (the op torch's inductor emits for CPU linears) applies the
    bias and the activation to each output tile while it is still in cache. In bfloat16 that
    matters: ``addmm`` first copies the broadcast bias into the whole output (half the time of
    a [12000, 300] · [300, 300] product on a 2-core AMX Xeon) and the activation is another
    pass over memory; measured 1.63 → 0.99 ms for that reward-head layer with ReLU, 0.26 →
    0.23 ms for the GRU gates' [1000, 400] · [400, 400] with sigmoid (BENCHMARKS.md, session 19).
    """
    if onednn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, act, [], "")
    return _ACTIVATIONS[act](torch.addmm(bias, x, weight))


ONEDNN_MIN_ROWS_FP32 = 500
"""Below this many rows (candidates × environments) float32 products go through ``addmm``: at
the ``cpu`` preset's 100 candidates oneDNN's per-call overhead outweighed the fusion (float32
objective 8.9 vs 6.1 ms), at 500 they were level and at 1000 oneDNN was 4-6 % faster; in
bfloat16 it was level or faster at every size (2-core AMX Xeon, BENCHMARKS.md, session 19)."""

Kernel = Literal["auto", "onednn", "addmm"]


class LatentObjective:
    """returns = f(state [N, ...], actions [H, N, A]) for CEM; call :meth:`refresh` after the
    model's weights change (the agent does it once per decision).

    ``kernel``: ``onednn`` runs each dense layer as one oneDNN call with its bias and activation
    fused (:func:`fused_linear`), ``addmm`` the same steps with ``torch.addmm``, ``auto`` oneDNN
    where available for bfloat16 and for float32 from ``ONEDNN_MIN_ROWS_FP32`` rows, else
    addmm. Both are tested equal to ``WorldModel.imagine_return``.
    """

    def __init__(
        self, model: WorldModel, dtype: torch.dtype = torch.float32, kernel: Kernel = "auto"
    ) -> None:
        if not supports_fast_objective(model):
            raise ValueError("LatentObjective needs an RSSM with a GRU cell and future_rnn")
        self.model = model
        self.dtype = dtype
        self.kernel = kernel
        if kernel == "onednn" and not onednn_linear_available(model.device, dtype):
            raise ValueError(f"oneDNN has no {dtype} linear on this machine: use kernel='addmm'")
        self.onednn = kernel == "onednn" or (
            kernel == "auto" and onednn_linear_available(model.device, dtype)
        )
        self._buffers: dict[str, Tensor] = {}
        self.refresh()

    def uses_onednn(self, rows: int) -> bool:
        """Whether a call with ``rows`` candidates runs on oneDNN (see ``kernel``)."""
        if self.kernel != "auto":
            return self.kernel == "onednn"
        return self.onednn and (self.dtype == torch.bfloat16 or rows >= ONEDNN_MIN_ROWS_FP32)

    @torch.no_grad()
    def refresh(self) -> None:
        """Snapshot the model's current weights into this objective's own buffers, in place:
        the buffers keep their memory, so a CUDA graph that captured :meth:`__call__` (and this
        method) reads the new weights on its next replay."""
        rssm = self.model.rssm
        assert isinstance(rssm, RSSM) and isinstance(rssm.cell, GRUBlockCell)
        w_po, b_po = rssm.prior_out.fused()  # [hidden, 2S]
        layers = {  # name: (weight [out, in], bias [out])
            "in": (rssm.transition_in.weight, rssm.transition_in.bias),  # [s, a] -> x
            "ru": (rssm.cell.gates.weight, rssm.cell.gates.bias),  # [x, h] -> [r, u]
            "c": (rssm.cell.candidate.weight, rssm.cell.candidate.bias),  # [x, r ∘ h] -> c
            "p": (rssm.prior_hidden.weight, rssm.prior_hidden.bias),  # h -> prior hidden
            "po": (w_po.t(), b_po),  # prior hidden -> [mean, raw std]
        }
        linears = [m for m in self.model.reward_head.net if isinstance(m, nn.Linear)]
        for i, m in enumerate(linears):
            layers[f"reward{i}"] = (m.weight, m.bias)
        weights = {}
        for name, (weight, bias) in layers.items():
            weights[f"b_{name}"] = bias
            weights[f"wt_{name}"] = weight.t()  # [in, out], contiguous in the buffer: addmm's
            if self.onednn:
                weights[f"w_{name}"] = weight  # [out, in]: oneDNN's
        if not self._buffers:
            self._buffers = {
                k: torch.empty(v.shape, dtype=self.dtype, device=v.device)
                for k, v in weights.items()
            }
        for name, value in weights.items():
            self._buffers[name].copy_(value)
        b = self._buffers
        self.layers = {n: (b.get(f"w_{n}"), b[f"wt_{n}"], b[f"b_{n}"]) for n in layers}
        self.reward_layers = len(linears)
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
        assert isinstance(rssm, RSSM)
        d, S, B, X = self.dtype, rssm.state_size, rssm.belief_size, rssm.hidden_size
        H, N, A = actions.shape
        onednn = self.uses_onednn(N)

        def linear(x: Tensor, name: str, act: Activation = "none") -> Tensor:
            weight, weight_t, bias = self.layers[name]
            chosen = weight if onednn else weight_t  # the layout this kernel reads
            assert chosen is not None
            return fused_linear(x, chosen, bias, act, onednn)

        eps = None
        if sample and not rssm.mean_only:  # the same draw as the reference imagine()
            eps = torch.randn((H, N, S), generator=generator, device=actions.device).to(d)
        features = torch.empty(H, N, S + B, dtype=d, device=actions.device)  # [s, h] per step
        sa = torch.empty(N, S + A, dtype=d, device=actions.device)  # [s, a]: the step's input
        xh = torch.empty(N, X + B, dtype=d, device=actions.device)  # [x, h], then [x, r ∘ h]
        s, h = state.sample.to(d), state.belief.to(d)
        for t in range(H):
            sa[:, :S], sa[:, S:] = s, actions[t]
            x = linear(sa, "in", "relu")
            xh[:, :X], xh[:, X:] = x, h
            r, u = linear(xh, "ru", "sigmoid").chunk(2, 1)
            torch.mul(r, h, out=xh[:, X:])
            c = linear(xh, "c", "tanh")
            h = torch.lerp(c, h, u, out=features[t, :, S:])
            out = linear(linear(h, "p", "relu"), "po")
            if eps is None:
                s = features[t, :, :S].copy_(out[:, :S])
            else:
                mean, std = self.prior_head.split(out)
                s = torch.addcmul(mean, std, eps[t], out=features[t, :, :S])
        x = features.view(H * N, S + B)
        for i in range(self.reward_layers):
            x = linear(x, f"reward{i}", "relu" if i < self.reward_layers - 1 else "none")
        return x.view(H, N).float().sum(0)
