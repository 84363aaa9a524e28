"""The cross-entropy method over action sequences, batched over environments and candidates.

The planner sees only an objective ``returns = f(actions)``: ``actions`` [H, N, A] -> ``returns``
[N]. For PlaNet f imagines rewards with the world model; for the "CEM + true simulator" upper
bound, f steps copies of the real physics. Per decision (original planning.py):

    mean, std = 0, 1                         (per horizon step and action dim; no warm start)
    repeat I times:
        a ~ N(mean, std), clipped to [low, high]          J candidates
        R = f(a)                                           one batched call for all of them
        elite = top-K candidates by R                      NaN/inf returns rank last
        mean, std = mean(elite), sqrt(var(elite) + 1e-6)   population variance
    return mean                                            the agent executes mean[0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Objective = Callable[[Tensor], Tensor]  # actions [H, N, A] -> returns [N]


@dataclass(frozen=True)
class CEMIteration:
    """What one iteration saw, for `planet inspect` (only built when a callback asks for it)."""

    iteration: int
    returns: Tensor  # [B, J] returns of all candidates (non-finite replaced by -inf)
    mean: Tensor  # [H, B, A] refit mean
    std: Tensor  # [H, B, A] refit std


def cross_entropy_method(
    objective: Objective,
    *,
    horizon: int,
    action_size: int,
    batch: int = 1,
    candidates: int = 1000,
    top_k: int = 100,
    iterations: int = 10,
    low: float | Tensor = -1.0,
    high: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
    init_mean: Tensor | None = None,
    init_std: Tensor | None = None,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[CEMIteration], None] | None = None,
) -> Tensor:
    """Plan for ``batch`` independent problems at once; returns the final mean [H, B, A].

    The objective receives all ``batch × candidates`` sequences in one call, problem-major: the
    candidates of problem b are columns ``b*candidates … (b+1)*candidates-1``. With
    ``iterations = 0`` the initial mean is returned unchanged (the random-collection ablation).
    """
    if not 1 <= top_k <= candidates:
        raise ValueError(f"top_k={top_k} must be in 1..candidates={candidates}")
    shape = (horizon, batch, action_size)
    mean = torch.zeros(shape, device=device) if init_mean is None else init_mean.clone()
    std = torch.ones(shape, device=device) if init_std is None else init_std.clone()
    assert mean.shape == shape and std.shape == shape, (mean.shape, std.shape, shape)
    # torch.full, not as_tensor, for scalars: a fill kernel, no host-to-device copy (CUDA graphs)
    low_t, high_t = (
        b.to(mean)
        if isinstance(b, Tensor)
        else torch.full((), b, dtype=mean.dtype, device=mean.device)
        for b in (low, high)
    )
    for iteration in range(iterations):
        noise = torch.randn(
            (horizon, batch, candidates, action_size), generator=generator, device=mean.device
        )
        actions = noise.mul_(std.unsqueeze(2)).add_(mean.unsqueeze(2))  # [H, B, J, A]
        actions = torch.maximum(torch.minimum(actions, high_t), low_t)
        returns = objective(actions.reshape(horizon, batch * candidates, action_size))
        returns = returns.reshape(batch, candidates).float()
        # A diverging model must never win: NaN and ±inf rank below every finite return.
        returns = torch.where(
            torch.isfinite(returns), returns, torch.full_like(returns, -torch.inf)
        )
        elite_index = returns.topk(top_k, dim=1).indices  # [B, K]
        gather_index = elite_index[None, :, :, None].expand(horizon, batch, top_k, action_size)
        elite = actions.gather(2, gather_index)  # [H, B, K, A]
        mean = elite.mean(dim=2)
        std = (elite.var(dim=2, unbiased=False) + 1e-6).sqrt()
        if on_iteration is not None:
            on_iteration(CEMIteration(iteration, returns, mean, std))
    return mean
