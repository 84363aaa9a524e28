"""DDPG (Lillicrap et al. 2016): the model-free baseline PlaNet is compared with.

A transition is a chunk of two consecutive episode rows (the alignment of replay/episodes.py)::

    row │ state / image   │ action      │ reward  │ discount
    ────┼─────────────────┼─────────────┼─────────┼──────────────────────────────────────
     0  │ s  = o_{t-1}    │ (a_{t-2})   │ (r_t-1) │ (unused)
     1  │ s' = o_t        │ a = a_{t-1} │ r = r_t │ d = 0 if o_t is terminal (time limit: 1)

    critic   y = r + γ·d·Q'(s', μ'(s'))     Q', μ' are target copies; no gradient flows into them
             loss (Q(s, a) − y)²
    actor    loss −Q(s, μ(s)).mean(), its gradient reaches μ's parameters only
    targets  soft: θ' ← τ·θ + (1 − τ)·θ' after every update; hard: θ' ← θ every N-th update

From pixels, a conv encoder (the world model's, :class:`~planet_torch.models.Encoder`) turns
frames into features for both networks. Only the critic's loss trains it; the actor reads its
features detached, as common pixel actor-critics do (SAC-AE, DrQ). Frames keep all 8 bits: the
world model's 5-bit reduction serves its image likelihood, which DDPG does not have.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.config import DDPGConfig, check_bounds
from planet_torch.envs.base import Observation
from planet_torch.errors import UserError
from planet_torch.models import MLP, Encoder, FastEncoder, preprocess
from planet_torch.models.optim import FusedAdam

IMAGE_BITS = 8
"""Bit depth of the frames pixel DDPG sees (full depth; see the module docstring)."""
_FINAL_INIT = 3e-3
"""Output layers start uniform in ±3e-3 (the DDPG paper), so μ and Q start near zero."""


def validate_ddpg(cfg: DDPGConfig) -> DDPGConfig:
    """Check the DDPG values a user can get wrong (config.BOUNDS); raise :class:`UserError`
    with what to do."""
    check_bounds(cfg, "ddpg")
    return cfg


def _small_output_(mlp: MLP) -> MLP:
    last = mlp.net[-1]
    assert isinstance(last, nn.Linear)
    nn.init.uniform_(last.weight, -_FINAL_INIT, _FINAL_INIT)
    nn.init.uniform_(last.bias, -_FINAL_INIT, _FINAL_INIT)
    return mlp


class Actor(nn.Module):
    """μ: features [N, F] -> action [N, A] in [-1, 1] (tanh)."""

    def __init__(self, feature_size: int, action_size: int, cfg: DDPGConfig) -> None:
        super().__init__()
        self.mlp = _small_output_(
            MLP(feature_size, action_size, cfg.hidden_layers, cfg.hidden_units)
        )

    def forward(self, features: Tensor) -> Tensor:
        return torch.tanh(self.mlp(features))


class Critic(nn.Module):
    """Q: features [N, F], action [N, A] -> value [N]."""

    def __init__(self, feature_size: int, action_size: int, cfg: DDPGConfig) -> None:
        super().__init__()
        self.mlp = _small_output_(
            MLP(feature_size + action_size, 1, cfg.hidden_layers, cfg.hidden_units)
        )

    def forward(self, features: Tensor, action: Tensor) -> Tensor:
        assert features.shape[:-1] == action.shape[:-1], (features.shape, action.shape)
        return self.mlp(torch.cat([features, action], dim=-1)).squeeze(-1)


class DDPGNetworks(nn.Module):
    """Encoder (pixels only), actor and critic: the unit a target copies and a checkpoint saves."""

    encoder: Encoder | None

    def __init__(self, cfg: DDPGConfig, action_size: int, state_size: int) -> None:
        super().__init__()
        self.obs = cfg.obs
        if cfg.obs == "pixels":
            self.encoder = FastEncoder(cfg.cnn_depth)
            feature_size = self.encoder.embed_size
        else:
            if state_size < 1:
                raise UserError(
                    "this task has no state vector for --ddpg.obs state; use --ddpg.obs pixels"
                )
            self.encoder = None
            feature_size = state_size
        self.actor = Actor(feature_size, action_size, cfg)
        self.critic = Critic(feature_size, action_size, cfg)
        self.action_size = action_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def observation_key(self) -> str:
        """The batch field the networks read: ``state`` or ``image``."""
        return "image" if self.encoder is not None else "state"

    def features(self, observation: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """state float [N, S] or image uint8 [N, 64, 64, 3] -> features [N, F].

        ``generator`` draws the dequantisation noise of :func:`preprocess` (pixels only).
        """
        if self.encoder is None:
            assert observation.dim() == 2, observation.shape
            return observation.float()
        assert observation.dim() == 4, observation.shape
        return self.encoder(preprocess(observation, IMAGE_BITS, generator))

    def observe(self, observation: Observation) -> Tensor:
        """One env observation as a batch of one on the networks' device: [1, S] or [1, H, W, 3]."""
        array = observation.image if self.encoder is not None else observation.state
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)[None]


@dataclass(frozen=True)
class Transitions:
    """B transitions (s, a, r, d, s') cut from a batch of 2-row chunks (module docstring)."""

    observation: Tensor
    """s: state float [B, S] or image uint8 [B, H, W, 3]."""
    action: Tensor
    """a float [B, A], taken in s."""
    reward: Tensor
    """r float [B], received on the step s -> s'."""
    discount: Tensor
    """d float [B]: 0 where s' is terminal, else 1."""
    next_observation: Tensor
    """s', as ``observation``."""

    @classmethod
    def from_batch(cls, batch: dict[str, Tensor], key: str) -> Transitions:
        """``batch``: time-major chunks of length 2 (``ChunkSampler.sample(B, 2, rng)``)."""
        if key not in batch:
            raise ValueError(f"the batch has no {key!r} field; fields: {sorted(batch)}")
        observation = batch[key]
        assert observation.shape[0] == 2, f"DDPG needs chunks of 2 rows, got {observation.shape}"
        return cls(
            observation=observation[0],
            action=batch["action"][1],
            reward=batch["reward"][1].float(),
            discount=batch["discount"][1].float(),
            next_observation=observation[1],
        )


class DDPG:
    """Online and target networks, their optimisers and the update counter."""

    def __init__(
        self, cfg: DDPGConfig, action_size: int, state_size: int, device: torch.device | str
    ) -> None:
        self.cfg = validate_ddpg(cfg)
        self.online = DDPGNetworks(cfg, action_size, state_size).to(device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.actor_optimizer = FusedAdam(self.online.actor.parameters(), lr=cfg.actor_lr)
        # The encoder learns from the critic's loss only (the actor reads it detached).
        self.critic_optimizer = FusedAdam(
            [p for name, p in self.online.named_parameters() if not name.startswith("actor.")],
            lr=cfg.critic_lr,
        )
        self.updates = 0

    @torch.no_grad()
    def target_value(self, batch: Transitions, generator: torch.Generator | None = None) -> Tensor:
        """y = r + γ·d·Q'(s', μ'(s')) [B], from the target networks, outside autograd."""
        features = self.target.features(batch.next_observation, generator)
        next_q = self.target.critic(features, self.target.actor(features))
        return batch.reward + self.cfg.discount * batch.discount * next_q

    def critic_step(
        self, batch: Transitions, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """One Adam step on (Q(s, a) − y)²; returns the features of s (detached) and metrics."""
        target_q = self.target_value(batch, generator)
        features = self.online.features(batch.observation, generator)
        q = self.online.critic(features, batch.action)
        loss = F.mse_loss(q, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        metrics = {
            "critic_loss": loss.item(),
            "q_mean": q.detach().mean().item(),
            "target_q_mean": target_q.mean().item(),
        }
        return features.detach(), metrics

    def actor_step(self, features: Tensor) -> dict[str, float]:
        """One Adam step on −Q(s, μ(s)).mean(); gradients reach the actor's parameters only."""
        actor = self.online.actor
        loss = -self.online.critic(features.detach(), actor(features.detach())).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        # inputs=: the critic's (and encoder's) .grad stay as the critic step left them.
        loss.backward(inputs=list(actor.parameters()))
        self.actor_optimizer.step()
        return {"actor_loss": loss.item()}

    @torch.no_grad()
    def update_targets(self) -> None:
        """Count the update, then replace the targets: softly now, or hard on every N-th update."""
        self.updates += 1
        if self.cfg.target_update == "soft":
            for target, online in zip(
                self.target.parameters(), self.online.parameters(), strict=True
            ):
                target.lerp_(online, self.cfg.tau)  # θ' + τ(θ − θ') = τθ + (1 − τ)θ'
        elif self.updates % self.cfg.hard_update_every == 0:
            self.target.load_state_dict(self.online.state_dict())

    def update(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Critic step, actor step, target replacement on one batch of 2-row chunks."""
        transitions = Transitions.from_batch(batch, self.online.observation_key())
        features, metrics = self.critic_step(transitions, generator)
        metrics |= self.actor_step(features)
        self.update_targets()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.updates = int(state["updates"])


class DDPGAgent:
    """Acts with μ(s) plus exploration noise, clipped to [-1, 1]; ``noise_std`` 0 = deterministic.

    Gaussian: a = μ(s) + σ·ε.  Ornstein-Uhlenbeck: x ← x − θ·x + σ·ε (x = 0 at reset), a = μ(s) + x.
    ε ~ N(0, I) comes from ``generator`` (on the networks' device), so an episode is a function of
    its seed and the weights.
    """

    def __init__(
        self,
        networks: DDPGNetworks,
        cfg: DDPGConfig,
        *,
        noise_std: float,
        generator: torch.Generator,
    ) -> None:
        self.networks = networks
        self.noise = cfg.noise
        self.noise_std = noise_std
        self.ou_theta = cfg.ou_theta
        self.generator = generator
        self.reset()

    def reset(self) -> None:
        self._ou = torch.zeros(self.networks.action_size, device=self.networks.device)

    @torch.inference_mode()
    def act(self, observation: Observation) -> np.ndarray:
        net = self.networks
        action = net.actor(net.features(net.observe(observation), self.generator))[0]  # [A]
        if self.noise_std > 0:
            eps = torch.randn(action.shape, generator=self.generator, device=action.device)
            if self.noise == "ou":
                self._ou = self._ou - self.ou_theta * self._ou + self.noise_std * eps
                action = action + self._ou
            else:
                action = action + self.noise_std * eps
        return action.clamp(-1.0, 1.0).float().cpu().numpy()
