"""The world-model update as one CUDA graph (``optim.cuda_graph``), and the Adam step it needs.

On a GPU the paper-size update is launch-bound: about 50 filter steps of small kernels, forward
and backward, each a launch the host has to issue (12 % of an H200's matmul ceiling). Captured
once and replayed, the whole update -- preprocessing, filter, decoder, losses, backward, global
clip, Adam -- is one launch: 2.7× faster on an H200 (``benchmarks/bench_update_graph.py``,
BENCHMARKS.md). The algorithm is the eager update's (:class:`WorldModelTrainer.update`); what
changes is how the numbers that move from update to update reach a graph that cannot see
Python:

* the batch is copied into fixed input buffers, the loss terms read from fixed outputs;
* the noise (dequantisation, the RSSM's samples) comes from one generator registered with the
  graph, set to the state of the caller's generator before each replay and copied back after,
  so a graphed update draws exactly the noise an eager one would, and the caller's generator
  ends where eager leaves it (Dreamer's behaviour update goes on drawing from it);
* Adam is written in the original's (TF's) own form, ``θ ← θ − lr_t · m / (√v + ε)`` with
  ``lr_t = lr · √(1 − β2^t) / (1 − β1^t)``, whose only per-update number, ``lr_t``, is a tensor
  filled before each replay; ε is a constant there. Torch's Adam needs a per-update ε for the
  same update (:class:`WorldModelTrainer`), which a graph would freeze. The moments and step
  count are the torch optimiser's own state tensors, so checkpoints are the same and eager and
  graphed updates can follow each other; the two forms differ in float rounding only.

The first ``WARMUP`` updates run the same body eagerly (on a side stream, as CUDA asks before a
capture: allocator, cuBLAS workspaces, Adam's state); the next is captured and then replayed,
and every later one is replayed. Without CUDA (``capture=False``) the body just runs each time:
the tests check it equal to the eager update on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.graph import increment_version

from planet_torch.models.latent import State

Loss = Callable[[Mapping[str, Tensor], torch.Generator], tuple[Tensor, dict[str, Tensor], State]]
"""``(batch, generator) -> (total, terms, posterior)``: the world model's objective."""

WARMUP = 2
"""Eager runs of the body before the capture (PyTorch's CUDA-graph notes ask for a few)."""


def adam_bias_corrected_lr(lr: float, betas: tuple[float, float], step: int) -> float:
    """``lr_t = lr · √(1 − β2^t) / (1 − β1^t)``: Adam's bias corrections folded into the step
    size, TF's form (``step`` is t, counted from 1)."""
    beta1, beta2 = betas
    return lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)


@torch.no_grad()
def tf_adam_step(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    lr_t: Tensor,
    betas: tuple[float, float],
    eps: float,
) -> None:
    """One Adam update in place, TF's form: ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
    ``θ ← θ − lr_t · m / (√v + ε)``, ``t ← t + 1``. ``lr_t`` is a 0-d tensor (no host value a
    CUDA graph would freeze); the rest are constants."""
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, eps)
    step = torch._foreach_div(exp_avgs, denom)
    torch._foreach_mul_(step, lr_t)
    torch._foreach_sub_(params, step)
    torch._foreach_add_(steps, 1.0)


def adam_state(optimizer: torch.optim.Adam, params: list[Tensor]) -> list[dict[str, Tensor]]:
    """The optimiser's state of each of ``params``, created as torch's fused Adam creates it
    where a parameter has none yet (zero moments, a float32 step count on its device)."""
    states = []
    for p in params:
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states.append(state)
    return states


class UpdateGraph:
    """One world-model update, captured as a CUDA graph after :data:`WARMUP` eager runs
    (``capture=True``; needs CUDA) or run eagerly each time (``capture=False``).

    ``loss(batch, generator) -> (total, terms, posterior)`` is the model's objective;
    ``clipped`` the parameter groups clipped to ``clip_norm`` each (the first one's norm is
    reported as ``grad_norm``). ``batch`` of the first call fixes the shapes; :meth:`accepts`
    tells whether another batch fits them."""

    def __init__(
        self,
        loss: Loss,
        optimizer: torch.optim.Adam,
        clipped: Sequence[Sequence[Tensor]],
        clip_norm: float,
        eps: float,
        capture: bool,
    ) -> None:
        self.loss, self.optimizer, self.capture = loss, optimizer, capture
        self.clipped = [list(group) for group in clipped if group]
        self.clip_norm, self.eps = clip_norm, eps
        self.betas: tuple[float, float] = optimizer.defaults["betas"]
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.calls = 0
        self.replays = 0
        self.names: list[str] = []
        self.static: dict[str, Tensor] = {}
        self.generator: torch.Generator | None = None
        self.lr_t = torch.zeros(())
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out = torch.empty(0)  # [terms] float32, the last update's loss terms
        self.posterior: State | None = None

    def accepts(self, batch: Mapping[str, Tensor]) -> bool:
        """Whether ``batch`` has the keys, shapes and dtypes of the first one."""
        if not self.static:
            return True
        return batch.keys() == self.static.keys() and all(
            (x.shape, x.dtype) == (self.static[k].shape, self.static[k].dtype)
            for k, x in batch.items()
        )

    def __call__(
        self, batch: Mapping[str, Tensor], generator: torch.Generator, lr_t: float
    ) -> tuple[dict[str, Tensor], State]:
        """One update from ``batch`` with the noise of ``generator`` (whose state advances as
        an eager update's would) and the bias-corrected step size ``lr_t``; returns the loss
        terms (plus ``grad_norm``) as tensors, and the batch's posterior states (detached)."""
        device = self.params[0].device
        if not self.static:
            self.static = {k: torch.empty_like(x, device=device) for k, x in batch.items()}
            self.generator = torch.Generator(device=device)
            self.lr_t = torch.zeros((), dtype=torch.float32, device=device)
        assert self.generator is not None and self.accepts(batch)
        for key, value in batch.items():
            self.static[key].copy_(value, non_blocking=True)
        self.lr_t.fill_(lr_t)
        self.generator.set_state(generator.get_state())
        if not self.capture:
            self._run()
        elif self.graph is not None:
            self._replay(self.graph)
        elif self.calls < WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._run()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self.graph = self._capture()
            # A capture records draws without making them; set again all the same, so the
            # replay starts exactly where the eager update would.
            self.generator.set_state(generator.get_state())
            self._replay(self.graph)
        self.calls += 1
        generator.set_state(self.generator.get_state())
        assert self.posterior is not None
        terms = dict(zip(self.names, self.out.unbind(), strict=True))
        return terms, self.posterior.map(torch.clone)

    def _body(self) -> tuple[Tensor, State]:
        """Loss, backward, clip, Adam: the update every path runs (and the graph records)."""
        assert self.generator is not None
        total, terms, posterior = self.loss(self.static, self.generator)
        total.backward()
        norms = [nn.utils.clip_grad_norm_(group, self.clip_norm) for group in self.clipped]
        terms["grad_norm"] = norms[0]
        with_grad = [p for p in self.params if p.grad is not None]  # as torch's Adam skips
        states = adam_state(self.optimizer, with_grad)
        tf_adam_step(
            with_grad,
            [p.grad for p in with_grad if p.grad is not None],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
            self.lr_t,
            self.betas,
            self.eps,
        )
        self.names = list(terms)
        return torch.stack([v.detach().float() for v in terms.values()]), posterior.detach()

    def _run(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.out, self.posterior = self._body()

    def _replay(self, graph: torch.cuda.CUDAGraph) -> None:
        graph.replay()
        self.replays += 1
        # A replay changes the weights in place without Python seeing it: bump their version
        # counters, as any in-place change does, for what keys on them (autograd's check of
        # saved tensors, WorldModel's cast encoder).
        increment_version(self.params)

    def _capture(self) -> torch.cuda.CUDAGraph:
        assert self.generator is not None
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward owns the gradients
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            self.out, self.posterior = self._body()
        return graph
