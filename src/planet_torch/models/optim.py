"""The optimiser every network here trains with: Adam, as one fused kernel per step
(:class:`FusedAdam`).

torch's default CPU Adam walks the parameters one tensor at a time, about ten elementwise
passes each; ``fused=True`` does the same arithmetic (Kingma & Ba's update, the same
``lr``/``eps`` read from the param groups at every step) in one pass per tensor. The step alone,
world model's 42 tensors, one thread beside other runs: ``cpu`` preset 10.5-14.2 → 3.3-7.3 ms,
``paper`` 62-63 → 24-27 ms; a whole ``cpu``-preset update, quiet, two threads (2-core Xeon with
AMX, ``bench_train_step.py --variants bf16 bf16+loop_adam``): 117.7 → 115.9 ms in bf16, level
in fp32 (BENCHMARKS.md, session 22). The results differ from the per-tensor loop's in the last
bit of some values (float rounding order), not in the algorithm.

A checkpoint keeps its optimiser's ``fused`` flag: a run started before this change resumes
with the per-tensor loop it started with, so resume stays bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.autograd.graph import increment_version


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` with ``fused=True``, whose step also bumps every updated
    parameter's version counter, as any other in-place change does: torch's fused kernel
    (2.13) writes the parameters without it, and what keys on versions — autograd's check of
    saved tensors, ``WorldModel``'s cast encoder — would not see the update."""

    def __init__(self, params: Iterable[Any], **kwargs: Any) -> None:
        super().__init__(params, fused=True, **kwargs)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = super().step(closure)
        for group in self.param_groups:
            increment_version([p for p in group["params"] if p.grad is not None])
        return loss
