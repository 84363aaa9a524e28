"""The paper's upper bound "CEM + true simulator": the same CEM, scored by the real physics.

At every policy step the agent reads the environment's full MuJoCo state, lets CEM score its
candidate action sequences by rolling each out on that physics (no rendering; the state is
restored afterwards, :meth:`DmcEnv.simulate_returns`), and executes the first action of the
final mean — MPC exactly as :class:`PlanetAgent`, with perfect knowledge instead of a model.
It ignores the image it is given. dm_control tasks only.

Cost: candidates × iterations × horizon × action_repeat physics steps per action, each with a
Python reward call; the paper's 1000 × 10 × 12 is ≈ 1M env steps per action on cartpole, so on
a CPU run it with fewer candidates (BENCHMARKS.md lists the settings and returns measured).
"""

from __future__ import annotations

import numpy as np
import torch

from planet_torch.config import PlannerConfig
from planet_torch.envs.base import Env, Observation
from planet_torch.envs.dmc import DmcEnv
from planet_torch.envs.vector import VectorEnv
from planet_torch.errors import UserError
from planet_torch.planning.cem import cross_entropy_method


class TrueSimulatorAgent:
    def __init__(
        self,
        env: Env,
        planner: PlannerConfig,
        *,
        generator: torch.Generator,
        pool: VectorEnv | None = None,
    ) -> None:
        """``pool``: copies of the same task (e.g. ``VectorEnv(cfg, seeds, workers=2)``) that
        score the candidates in parallel from the env's current physics state."""
        if not isinstance(env, DmcEnv):
            raise UserError(
                f"the true-simulator planner needs a dm_control task, not {type(env).__name__}"
            )
        self.env = env
        self.planner = planner
        self.generator = generator
        self.pool = pool

    def reset(self) -> None:
        pass

    def plan(self) -> torch.Tensor:
        """CEM from the environment's current state; the plan's mean [H, 1, A]."""
        p = self.planner

        def objective(actions: torch.Tensor) -> torch.Tensor:  # [H, J, A] -> [J]
            if self.pool is not None:
                returns = self.pool.simulate(self.env.get_physics_state(), actions.numpy())
            else:
                returns = self.env.simulate_returns(actions.numpy())
            return torch.from_numpy(returns).float()

        return cross_entropy_method(
            objective,
            horizon=p.horizon,
            action_size=self.env.action_size,
            candidates=p.candidates,
            top_k=p.top_k,
            iterations=p.iterations,
            generator=self.generator,
        )

    def act(self, observation: Observation) -> np.ndarray:
        action = self.plan()[0, 0]
        return action.clamp(-1.0, 1.0).numpy().astype(np.float32)
