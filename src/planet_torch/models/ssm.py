"""The purely stochastic state-space model, PlaNet's SSM ablation (original models/ssm.py).

    prior     p(s_t | s_{t-1}, a_{t-1}): y = relu(W [s_{t-1}, a_{t-1}] + b) -> mean, softplus + 0.1
    posterior q(s_t | prior_t, e_t):     z = relu(W [prior mean, prior std, e_t] + b) -> mean, std

No deterministic path: the features are the sample alone, and ``belief`` / ``rnn_state`` are
empty [..., 0] tensors so the :class:`State` interface stays the same as the RSSM's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.models.encoder import glorot_
from planet_torch.models.latent import (
    GaussianHead,
    LatentModel,
    State,
    draw_noise,
    reparameterised,
)


class SSM(LatentModel):
    """Original call: ``SSM(state 30, hidden 200, relu, min_stddev=0.1)``."""

    def __init__(
        self,
        action_size: int,
        embed_size: int,
        state_size: int = 30,
        hidden_size: int = 200,
        min_std: float = 0.1,
        mean_only: bool = False,
    ) -> None:
        super().__init__()
        self.action_size, self.embed_size = action_size, embed_size
        self.state_size, self.belief_size, self.hidden_size = state_size, 0, hidden_size
        self.feature_size = state_size
        self.mean_only = mean_only
        self.prior_hidden = nn.Linear(state_size + action_size, hidden_size)
        self.prior_out = GaussianHead(hidden_size, state_size, min_std)
        self.posterior_hidden = nn.Linear(2 * state_size + embed_size, hidden_size)
        self.posterior_out = GaussianHead(hidden_size, state_size, min_std)
        glorot_(self)

    def features(self, state: State) -> Tensor:
        return state.sample

    def _empty(self, like: Tensor) -> Tensor:
        return like.new_zeros(*like.shape[:-1], 0)

    def _prior_step(self, s: Tensor, pre_a: Tensor, w_s: Tensor, eps: Tensor | None) -> State:
        mean, std = self.prior_out(F.relu(torch.addmm(pre_a, s, w_s)))
        empty = self._empty(mean)
        return State(mean, std, reparameterised(mean, std, eps), empty, empty)

    def _split_prior_in(self, action: Tensor) -> tuple[Tensor, Tensor]:
        weight = self.prior_hidden.weight
        pre_a = F.linear(action, weight[:, self.state_size :], self.prior_hidden.bias)
        return weight[:, : self.state_size].t(), pre_a

    def img_step(
        self,
        state: State,
        action: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> State:
        w_s, pre_a = self._split_prior_in(action)
        if noise is None:
            noise = draw_noise(state.sample.shape, state.sample, generator, self.mean_only)
        return self._prior_step(state.sample, pre_a, w_s, noise)

    def _rollout(self, action: Tensor, state: State, eps: Tensor | None) -> State:
        w_s, pre_a = self._split_prior_in(action)  # [T, B, hidden] once for all T
        states = []
        for t in range(action.shape[0]):
            state = self._prior_step(state.sample, pre_a[t], w_s, None if eps is None else eps[t])
            states.append(state)
        return State.stack(states)

    def _posterior(self, prior: State, embed: Tensor, eps: Tensor | None) -> State:
        z = F.relu(self.posterior_hidden(torch.cat([prior.mean, prior.std, embed], -1)))
        mean, std = self.posterior_out(z)
        return State(mean, std, reparameterised(mean, std, eps), prior.belief, prior.rnn_state)

    def obs_step(
        self,
        state: State,
        action: Tensor,
        embed: Tensor,
        generator: torch.Generator | None = None,
        noise: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[State, State]:
        post_noise, prior_noise = (None, None) if noise is None else noise
        prior = self.img_step(state, action, generator, prior_noise)
        if post_noise is None:
            post_noise = draw_noise(prior.mean.shape, prior.mean, generator, self.mean_only)
        return self._posterior(prior, embed, post_noise), prior

    def _filter(
        self, embed: Tensor, action: Tensor, state: State, eps: Tensor | None
    ) -> tuple[State, State]:
        """The loop of ``observe`` written for speed (the same function as ``obs_step`` after
        ``obs_step``, tested)."""
        S = self.state_size
        w_s, pre_a = self._split_prior_in(action)  # [T, B, hidden]
        post_w = self.posterior_hidden.weight
        w_pm, w_ps = post_w[:, :S].t(), post_w[:, S : 2 * S].t()
        pre_e = F.linear(embed, post_w[:, 2 * S :], self.posterior_hidden.bias)  # [T, B, hidden]
        w_prior, b_prior = self.prior_out.fused()
        w_post, b_post = self.posterior_out.fused()
        s = state.sample
        priors: list[tuple[Tensor, Tensor]] = []
        posts: list[tuple[Tensor, Tensor, Tensor]] = []
        for t in range(action.shape[0]):
            y = F.relu(torch.addmm(pre_a[t], s, w_s))
            p_mean, p_std = self.prior_out.split(torch.addmm(b_prior, y, w_prior))
            z = F.relu(torch.addmm(torch.addmm(pre_e[t], p_mean, w_pm), p_std, w_ps))
            mean, std = self.posterior_out.split(torch.addmm(b_post, z, w_post))
            s = reparameterised(mean, std, None if eps is None else eps[0, t])
            priors.append((p_mean, p_std))
            posts.append((mean, std, s))
        p_mean, p_std = (torch.stack(x) for x in zip(*priors, strict=True))
        mean, std, sample = (torch.stack(x) for x in zip(*posts, strict=True))
        empty = self._empty(mean)
        prior = State(
            p_mean,
            p_std,
            reparameterised(p_mean, p_std, None if eps is None else eps[1]),
            empty,
            empty,
        )
        return State(mean, std, sample, empty, empty), prior
