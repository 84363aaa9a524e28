"""Dreamer (Hafner et al. 2020): a latent actor-critic learnt inside PlaNet's world model.

Where PlaNet searches with CEM at every decision, Dreamer amortises the search into an actor
trained on imagined trajectories (original: danijar/dreamer, ``dreamer.py:_train``)::

    start      s_0 = every posterior state of the training batch (T·B of them, no gradient)
    imagine    a_k ~ actor(features(s_k))       (the actor reads detached features)
               s_{k+1} ~ p(s | s_k, a_k)        (the world model's prior; its weights frozen)
    predict    r_k = reward_head(f_k),  v_k = value(f_k)           for k = 1 .. H
    λ-return   R_k = r_k + γ ((1 - λ) v_{k+1} + λ R_{k+1}),  R_H = v_H
    actor      maximise Σ_k γ^(k-1) R_k: gradients flow back through the imagined dynamics
               (reparameterised actions and states) into the actor only
    value      regress v(f_k) on R_k (targets and features detached)

The actor's distribution is a tanh-transformed Gaussian (``models.py:ActionDecoder``): mean
``5·tanh(x/5)``, std ``softplus(y + softplus⁻¹(5)) + 1e-4``; acting samples it when collecting
(plus Gaussian noise 0.3, clipped) and takes its mode when testing (the likeliest of 100
samples, ``tools.py:SampleDist``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.agents.base import FilteringAgent
from planet_torch.config import DreamerConfig
from planet_torch.models import State, WorldModel
from planet_torch.models.encoder import glorot_
from planet_torch.models.optim import FusedAdam
from planet_torch.models.precision import choose_behaviour_dtype, configured_reason


def _elu_mlp(in_size: int, out_size: int, layers: int, units: int) -> nn.Sequential:
    """``layers`` × (dense ``units`` + ELU), then a linear dense; glorot-uniform, as Keras."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(in_size if i == 0 else units, units), nn.ELU()]
    modules.append(nn.Linear(units if layers else in_size, out_size))
    net = nn.Sequential(*modules)
    glorot_(net)
    return net


class Actor(nn.Module):
    """features [..., F] -> a tanh-transformed Gaussian over actions in (-1, 1)^A."""

    def __init__(self, feature_size: int, action_size: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.net = _elu_mlp(feature_size, 2 * action_size, cfg.actor_layers, cfg.units)
        self.mean_scale, self.min_std = cfg.mean_scale, cfg.min_std
        self.raw_init_std = math.log(math.expm1(cfg.init_std))  # softplus⁻¹(init_std)
        self.mode_samples = cfg.mode_samples

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian before the tanh: (mean, std), each [..., A]."""
        mean, std = self.net(features).float().chunk(2, -1)  # float32 under autocast too
        mean = self.mean_scale * torch.tanh(mean / self.mean_scale)
        return mean, F.softplus(std + self.raw_init_std) + self.min_std

    def _draw(
        self, features: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterised pre-tanh sample mean + std·ε [..., A], with mean and std."""
        mean, std = self(features)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * eps, mean, std

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterised sample tanh(mean + std·ε): gradients reach the actor through it."""
        return torch.tanh(self._draw(features, generator)[0])

    def sample_with_log_prob(
        self, features: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised sample [..., A] and its log density [...], both differentiable."""
        pre_tanh, mean, std = self._draw(features, generator)
        return torch.tanh(pre_tanh), self.log_prob(pre_tanh, mean, std)

    def log_prob(self, pre_tanh: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """log density of tanh(pre_tanh) [..., A] -> [...]: the Gaussian's, minus the log
        Jacobian of tanh, 2·(log 2 − x − softplus(−2x)) (as TFP's TanhBijector)."""
        gaussian = -0.5 * ((pre_tanh - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
        jacobian = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return (gaussian - jacobian).sum(-1)

    @torch.no_grad()
    def mode(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The likeliest of ``mode_samples`` samples per row [..., A] (original SampleDist)."""
        mean, std = self(features)
        n = self.mode_samples
        eps = torch.randn((n, *mean.shape), generator=generator, device=mean.device)
        pre_tanh = mean + std * eps.to(mean.dtype)  # [n, ..., A]
        best = self.log_prob(pre_tanh, mean, std).argmax(0)  # [...]
        index = best[None, ..., None].expand(1, *mean.shape)
        return torch.tanh(pre_tanh.gather(0, index)[0])

    @torch.no_grad()
    def diagnostics(
        self, features: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """What the actor does at ``features`` [..., F], from one sample a = tanh(x) per row:

        * ``actor_entropy``: −log p(a), averaged (a one-sample estimate of the entropy);
        * ``actor_saturated``: the share of action dims with |a| > 0.99 (bang-bang);
        * ``actor_tanh_slope``: the mean of tanh′(x) = 1 − a², the factor every gradient into
          the actor passes through: about 0.16 at the init (std 5), near 0 once the actor sits
          at ±1 and can no longer learn (the saturation seen on cartpole-swingup, docs/dreamer.md).
        """
        pre_tanh, mean, std = self._draw(features, generator)
        action = torch.tanh(pre_tanh)
        return {
            "actor_entropy": -self.log_prob(pre_tanh, mean, std).mean(),
            "actor_saturated": (action.abs() > 0.99).float().mean(),
            "actor_tanh_slope": (1 - action.square()).mean(),
        }


class Value(nn.Module):
    """features [..., F] -> value [...], the mean of a unit-variance Normal (original: 3 × 400)."""

    def __init__(self, feature_size: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.net = _elu_mlp(feature_size, 1, cfg.value_layers, cfg.units)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1).float()  # float32 under autocast too


def lambda_return(
    reward: Tensor, value: Tensor, discount: float, bootstrap: Tensor, lambda_: float
) -> Tensor:
    """λ-returns along time (dim 0) of reward, value [K, N] with the value after the last step
    ``bootstrap`` [N] (original ``tools.py:lambda_return``)::

        R_k = r_k + γ ((1 − λ) v_{k+1} + λ R_{k+1}),    R_K = bootstrap,  v_K = bootstrap

    λ = 1 is the discounted Monte-Carlo return, λ = 0 the one-step TD target.
    """
    next_values = torch.cat([value[1:], bootstrap[None]], 0)
    inputs = reward + discount * next_values * (1 - lambda_)
    returns, last = [], bootstrap
    for k in reversed(range(reward.shape[0])):
        last = inputs[k] + discount * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1])


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No gradient into these modules' parameters (it still flows through their outputs)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def resolve_behaviour_dtype(cfg: DreamerConfig, model: WorldModel) -> tuple[torch.dtype, str]:
    """The behaviour update's dtype for ``cfg.compute_dtype`` and why, in words. ``auto``:
    bfloat16 on a CPU where an actor-sized MLP measured ≥ 1.3× faster in it, once per machine
    (:func:`~planet_torch.models.precision.choose_behaviour_dtype`), else float32."""
    if cfg.compute_dtype != "auto":
        dtype = getattr(torch, cfg.compute_dtype)
        return dtype, f"{cfg.compute_dtype}, {configured_reason(dtype, model.device)}"
    data = model.cfg.data
    return choose_behaviour_dtype(
        model.device, data.batch_size * data.chunk_length, model.feature_size, cfg.units
    )


class DreamerLearner:
    """The actor and the value, their optimisers, and one behaviour update from a batch's
    posterior states (the world model is updated before, by its own optimiser)."""

    def __init__(self, model: WorldModel, cfg: DreamerConfig) -> None:
        self.model, self.cfg = model, cfg
        device = model.device
        self.compute_dtype, self.compute_dtype_reason = resolve_behaviour_dtype(cfg, model)
        self.actor = Actor(model.feature_size, model.action_size, cfg).to(device)
        self.value = Value(model.feature_size, cfg).to(device)
        self.actor_optimizer = FusedAdam(self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps)
        self.value_optimizer = FusedAdam(self.value.parameters(), lr=cfg.value_lr, eps=cfg.adam_eps)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        """bfloat16 autocast where :attr:`compute_dtype` is bfloat16, else nothing."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.model.device.type, dtype=self.compute_dtype)

    def imagine(self, start: State, generator: torch.Generator | None) -> Tensor:
        """Features [H, N, F] of H imagined steps from ``start`` [N, ...], actions from the
        actor (on detached features), states from the world model's prior."""
        return self.imagine_with_log_prob(start, generator)[0]

    def imagine_with_log_prob(
        self, start: State, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`imagine`'s features [H, N, F] and the log densities [H, N] of the actions
        taken: row k is log π(a_k | s_k), the action that led to features[k]."""
        rssm, states, log_probs = self.model.rssm, [], []
        state = start
        for _ in range(self.cfg.horizon):
            action, log_prob = self.actor.sample_with_log_prob(
                rssm.features(state).detach(), generator
            )
            state = rssm.img_step(state, action, generator)
            states.append(state)
            log_probs.append(log_prob)
        return rssm.features(State.stack(states)), torch.stack(log_probs)

    def update(self, posterior: State, generator: torch.Generator | None) -> dict[str, float]:
        """One actor and one value step from posterior states [T, B, ...] (detached here)."""
        cfg = self.cfg
        start = posterior.detach().map(
            lambda x: x.flatten(0, -2)
        )  # [T·B, ...] (SSM: belief [T·B, 0])
        self.actor.train()
        with frozen(self.model, self.value):  # the actor's loss trains the actor alone
            with self._autocast():
                features, log_prob = self.imagine_with_log_prob(start, generator)  # [H, N, F]
                reward = self.model.reward_head(features).float()  # [H, N]
                value = self.value(features)  # [H, N]
            # Soft returns (entropy_scale > 0): each reward minus η·log π(a_k | s_k).
            soft = reward - cfg.entropy_scale * log_prob if cfg.entropy_scale else reward
            returns = lambda_return(soft[:-1], value[:-1], cfg.discount, value[-1], cfg.lambda_)
            weight = cfg.discount ** torch.arange(returns.shape[0], device=returns.device)
            actor_loss = -(weight[:, None] * returns).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip_norm)
        self.actor_optimizer.step()

        with self._autocast():
            value_pred = self.value(features.detach()[:-1])  # [H - 1, N]
        value_loss = (weight[:, None] * 0.5 * (value_pred - returns.detach()) ** 2).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        value_norm = nn.utils.clip_grad_norm_(self.value.parameters(), cfg.grad_clip_norm)
        self.value_optimizer.step()
        metrics = {
            "actor_loss": actor_loss.detach(),
            "value_loss": value_loss.detach(),
            "imagined_return": returns.detach()[0].mean(),
            "imagined_reward": reward.detach().mean(),
            "value": value.detach().mean(),
            "actor_grad_norm": actor_norm,
            "value_grad_norm": value_norm,
            **self.actor.diagnostics(features[0].detach().float(), generator),
        }
        values = torch.stack([v.float() for v in metrics.values()]).tolist()
        return dict(zip(metrics, values, strict=True))

    def state_dict(self) -> dict[str, object]:
        return {
            "actor": self.actor.state_dict(),
            "value": self.value.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Weights and optimisers; under ``compute_dtype auto`` also the dtype the run started
        with (exact resume, even where this machine's kept measurement now says otherwise)."""
        started = state.get("compute_dtype")
        if self.cfg.compute_dtype == "auto" and isinstance(started, str):
            dtype = getattr(torch, started)
            if dtype != self.compute_dtype:
                self.compute_dtype_reason = f"auto: {started}, as when this run started"
            self.compute_dtype = dtype
        self.actor.load_state_dict(state["actor"])  # type: ignore[arg-type]
        self.value.load_state_dict(state["value"])  # type: ignore[arg-type]
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])  # type: ignore[arg-type]
        self.value_optimizer.load_state_dict(state["value_optimizer"])  # type: ignore[arg-type]


class DreamerAgent(FilteringAgent):
    """Chooses with the actor, one network call per decision: a sample when collecting (the
    trainer adds N(0, 0.3²)), the actor's mode when testing."""

    def __init__(
        self,
        model: WorldModel,
        actor: Actor,
        *,
        noise: float,
        generator: torch.Generator,
        batch: int = 1,
        test: bool = False,
    ) -> None:
        super().__init__(model, noise=noise, generator=generator, batch=batch)
        self.actor, self.test = actor, test
        self.reset()

    def choose(self) -> Tensor:
        features = self.model.rssm.features(self.belief)
        if self.test:
            return self.actor.mode(features, self.generator)
        return self.actor.sample(features, self.generator)
