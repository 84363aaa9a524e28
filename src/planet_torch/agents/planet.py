"""PlaNet's agent: filter the belief, plan with CEM in latent space, act, replan every step (MPC).

Per policy step, for B environments at once (original control/mpc_agent.py)::

    belief_t = q(s_t | h_t, e_t)      filter: previous belief, the action executed last, new frame
    plan     = CEM over a[t:t+H]      objective: Σ predicted rewards along one imagined trajectory
    a_t      = clip(plan[0] + N(0, noise²), -1, 1)      noise 0.3 when collecting, 0 when testing

The action fed to the filter is the one actually executed (after noise and clip), and zeros at
an episode start — exactly how training chunks pair ``action[t]`` with ``image[t]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from planet_torch.config import PlannerConfig
from planet_torch.envs.base import Observation
from planet_torch.models import State, WorldModel
from planet_torch.planning.cem import CEMIteration, cross_entropy_method
from planet_torch.planning.latent import LatentObjective, choose_dtype, supports_fast_objective


class PlanetAgent:
    def __init__(
        self,
        model: WorldModel,
        planner: PlannerConfig,
        *,
        noise: float,
        generator: torch.Generator,
        batch: int = 1,
        on_iteration: Callable[[CEMIteration], None] | None = None,
    ) -> None:
        self.model = model
        self.planner = planner
        self.noise = noise
        self.generator = generator
        self.batch = batch
        self.on_iteration = on_iteration
        self.action_size = model.action_size
        # The fast objective (planning/latent.py) where the model allows, in the arithmetic the
        # config asks for; the world model's reference imagine_return otherwise.
        self.compute_dtype = choose_dtype(planner.compute_dtype, model, planner.candidates)
        self.objective: LatentObjective | None = None
        if supports_fast_objective(model):
            self.objective = LatentObjective(model, self.compute_dtype)
        self.reset()

    def reset(self) -> None:
        self.belief: State = self.model.initial_state(self.batch)
        self.prev_action = torch.zeros(self.batch, self.action_size, device=self.model.device)
        self.prev_plan: Tensor | None = None

    @torch.inference_mode()
    def plan(self) -> Tensor:
        """CEM from the current belief; returns the plan's mean [H, B, A]."""
        p = self.planner
        # Problem-major tiling: candidates of env b are rows b*J .. (b+1)*J-1 (cem.py's layout).
        start = self.belief.map(lambda x: x.repeat_interleave(p.candidates, dim=0))

        fast = self.objective
        if fast is not None:
            fast.refresh()  # the weights may have changed since the last decision

        def objective(actions: Tensor) -> Tensor:  # [H, B*J, A] -> [B*J]
            if fast is not None:
                return fast(start, actions, self.generator)
            return self.model.imagine_return(start, actions, self.generator)

        init_mean = None
        if p.warm_start and self.prev_plan is not None:
            # The previous plan shifted by one step, the new last step from the prior N(0, 1).
            init_mean = torch.cat([self.prev_plan[1:], torch.zeros_like(self.prev_plan[:1])])
        plan = cross_entropy_method(
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
        self.prev_plan = plan
        return plan

    @torch.inference_mode()
    def act_batch(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [B, 64, 64, 3] (the newest frame of each env) -> actions float32 [B, A]."""
        assert images.shape[0] == self.batch, (images.shape, self.batch)
        frames = torch.from_numpy(np.ascontiguousarray(images))
        self.belief = self.model.filter(self.belief, self.prev_action, frames, self.generator)
        action = self.plan()[0]  # [B, A]
        if self.noise > 0:
            noise = torch.randn(action.shape, generator=self.generator, device=action.device)
            action = action + self.noise * noise
        action = action.clamp(-1.0, 1.0)
        self.prev_action = action
        return action.float().cpu().numpy()

    def act(self, observation: Observation) -> np.ndarray:
        return self.act_batch(observation.image[None])[0]
