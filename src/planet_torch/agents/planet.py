"""PlaNet's agent: filter the belief, plan with CEM in latent space, act, replan every step (MPC).

Per policy step, for B environments at once (original control/mpc_agent.py)::

    belief_t = q(s_t | h_t, e_t)      filter: previous belief, the action executed last, new frame
    plan     = CEM over a[t:t+H]      objective: Σ predicted rewards along one imagined trajectory
    a_t      = clip(plan[0] + N(0, noise²), -1, 1)      noise 0.3 when collecting, 0 when testing

The action fed to the filter is the one actually executed (after noise and clip), and zeros at
an episode start — exactly how training chunks pair ``action[t]`` with ``image[t]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from planet_torch.agents.base import FilteringAgent
from planet_torch.config import PlannerConfig
from planet_torch.models import State, WorldModel
from planet_torch.models.imagination import LatentObjective, choose_dtype, supports_fast_objective
from planet_torch.planning.cem import CEMIteration, cross_entropy_method


class PlanetAgent(FilteringAgent):
    """Chooses by CEM over the world model's imagined returns (:meth:`plan`)."""

    def __init__(
        self,
        model: WorldModel,
        planner: PlannerConfig,
        *,
        noise: float,
        generator: torch.Generator,
        batch: int = 1,
        on_iteration: Callable[[CEMIteration], None] | None = None,
        test: bool = False,
    ) -> None:
        """``test``: plan as for test episodes (``planner.test_imagination``)."""
        super().__init__(model, noise=noise, generator=generator, batch=batch)
        self.planner = planner
        self.sample = (planner.test_imagination if test else planner.imagination) == "sample"
        self.on_iteration = on_iteration
        # The fast objective (models/imagination.py) where the model allows, in the arithmetic the
        # config asks for; the world model's reference imagine_return otherwise.
        self.compute_dtype = choose_dtype(planner.compute_dtype, model, planner.candidates)
        self.objective: LatentObjective | None = None
        if supports_fast_objective(model):
            self.objective = LatentObjective(model, self.compute_dtype)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_failed = False
        self._static_belief: State | None = None
        self._static_plan = torch.empty(0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.prev_plan: Tensor | None = None

    @torch.inference_mode()
    def plan(self) -> Tensor:
        """CEM from the current belief; returns the plan's mean [H, B, A]."""
        p = self.planner
        init_mean = None
        if p.warm_start and self.prev_plan is not None:
            # The previous plan shifted by one step, the new last step from the prior N(0, 1).
            init_mean = torch.cat([self.prev_plan[1:], torch.zeros_like(self.prev_plan[:1])])
        graphed = self._graph_allowed()
        plan = self._plan_graphed() if graphed else self._plan(self.belief, init_mean)
        self.prev_plan = plan
        return plan

    def _plan(self, belief: State, init_mean: Tensor | None) -> Tensor:
        p = self.planner
        # Problem-major tiling: candidates of env b are rows b*J .. (b+1)*J-1 (cem.py's layout).
        B, J = self.batch, p.candidates  # expand + reshape: no host sync (CUDA graphs)
        start = belief.map(
            lambda x: x[:, None].expand(B, J, *x.shape[1:]).reshape(B * J, *x.shape[1:])
        )
        fast = self.objective
        if fast is not None:
            fast.refresh()  # the weights may have changed since the last decision

        sample = self.sample

        def objective(actions: Tensor) -> Tensor:  # [H, B*J, A] -> [B*J]
            if fast is not None:
                return fast(start, actions, self.generator, sample)
            return self.model.imagine_return(start, actions, self.generator, sample)

        return cross_entropy_method(
            objective,
            horizon=p.horizon,
            action_size=self.action_size,
            batch=self.batch,
            candidates=p.candidates,
            top_k=p.top_k,
            iterations=p.iterations,
            generator=self.generator,
            init_mean=init_mean,
            device=self.model.device,
            on_iteration=self.on_iteration,
        )

    # -- one CUDA graph per decision -----------------------------------------------------------
    # On a GPU a decision is ~2 000 small kernels (10 iterations × 12 steps × ~15 ops), so launch
    # latency, not arithmetic, sets its time. Captured once and replayed, the whole decision --
    # weight snapshot, sampling, imagination, top-k, refit -- is one launch. The generator is
    # registered with the graph, so every replay draws fresh noise.

    def _graph_allowed(self) -> bool:
        return (
            self.planner.cuda_graph
            and self.model.device.type == "cuda"
            and self.objective is not None
            and self.on_iteration is None
            and not self.planner.warm_start
            and not self._graph_failed
            and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
        )

    def _plan_graphed(self) -> Tensor:
        if self._graph is None:
            try:
                self._static_belief = self.belief.map(torch.clone)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm-up outside the graph (allocator, kernels)
                    for _ in range(2):
                        self._plan(self._static_belief, None)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                graph.register_generator_state(self.generator)
                with torch.cuda.graph(graph):
                    self._static_plan = self._plan(self._static_belief, None)
                self._graph = graph
            except Exception as error:  # a driver or PyTorch without support: plan eagerly
                warnings.warn(f"planning without a CUDA graph ({error})", stacklevel=2)
                self._graph_failed = True
                return self._plan(self.belief, None)
        assert self._static_belief is not None
        for static, current in zip(self._static_belief, self.belief, strict=True):
            static.copy_(current)
        self._graph.replay()
        return self._static_plan.clone()

    def choose(self) -> Tensor:
        return self.plan()[0]  # the plan's first action [B, A]
