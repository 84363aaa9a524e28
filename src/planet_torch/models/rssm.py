"""The recurrent state-space model (RSSM) of PlaNet, as the original builds it (models/rssm.py).

One step, with the data alignment of the replay (row t = o_t, the action a_{t-1} that produced
it, the reward r_t received on arriving at o_t)::

    s_{t-1}, h_{t-1} ──┐        action[t] = a_{t-1}
                       x_t = relu(W [s_{t-1}, a_{t-1}] + b)            (shared by prior and posterior)
                       h_t = GRU(x_t, h_{t-1})                         deterministic belief
    prior     p(s_t | h_t):      y = relu(W h_t + b),        mean, std = W_m y, softplus(W_s y) + 0.1
    posterior q(s_t | h_t, e_t): z = relu(W [h_t, e_t] + b), mean, std = (same form, own weights)
    s_t = mean + std · ε                                      features_t = [s_t, h_t] -> heads

The posterior sees s_{t-1} only through h_t. With ``future_rnn=False`` the prior reads x_t
instead of h_t. ``mean_only`` (deterministic ablation) sets every sample to its mean.

This is the reference a student reads: one step is :meth:`RSSM.img_step` (prior) and
:meth:`RSSM.obs_step` (posterior); ``observe`` and ``imagine`` (models/latent.py) loop over them. Training runs
:class:`~planet_torch.models.fast_rssm.FastRSSM` (``model.fast_kernels``, on by default): the same
parameters and function, tested equal, with the sequence loops rewritten for speed.
"""

from __future__ import annotations

from typing import Literal

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


class GRUBlockCell(nn.Module):
    """TF's ``GRUBlockCell``, the original's cell (not the same function as ``nn.GRUCell``)::

        [r, u] = sigmoid(W_ru [x, h] + b_ru)           b_ru initialised to 1.0
        c      = tanh(W_c [x, r ∘ h] + b_c)            reset gate applied to h *before* the matmul
        h'     = (1 - u) ∘ c + u ∘ h

    Each kernel is one glorot-uniform matrix over [x, h], as TF initialises it.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.gates = nn.Linear(input_size + hidden_size, 2 * hidden_size)  # -> [r, u]
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)  # -> c
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.gates, self.candidate):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.ones_(self.gates.bias)
        nn.init.zeros_(self.candidate.bias)

    def forward(self, x: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, in], h [B, H] -> (h', h'): a GRU carries nothing besides h (``c`` unused)."""
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], -1))).chunk(2, -1)
        candidate = torch.tanh(self.candidate(torch.cat([x, r * h], -1)))
        h = (1 - u) * candidate + u * h
        return h, h


class LSTMBlockCell(nn.Module):
    """An LSTM in TF's style (kernel over [x, h] glorot, zero bias, forget bias +1.0)::

        [i, j, f, o] = W [x, h] + b
        c' = sigmoid(f + 1) ∘ c + sigmoid(i) ∘ tanh(j);    h' = sigmoid(o) ∘ tanh(c')

    Not in the original (an option here); the state is (belief h, rnn_state c).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.linear = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert c is not None, "the LSTM needs its cell state"
        i, j, f, o = self.linear(torch.cat([x, h], -1)).chunk(4, -1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        return torch.sigmoid(o) * torch.tanh(c), c


class RSSM(LatentModel):
    """PlaNet's RSSM (original defaults: state 30, belief 200, hidden 200, min_std 0.1, ReLU)."""

    def __init__(
        self,
        action_size: int,
        embed_size: int,
        state_size: int = 30,
        belief_size: int = 200,
        hidden_size: int = 200,
        min_std: float = 0.1,
        cell: Literal["gru", "lstm"] = "gru",
        future_rnn: bool = True,
        mean_only: bool = False,
    ) -> None:
        super().__init__()
        self.action_size, self.embed_size = action_size, embed_size
        self.state_size, self.belief_size, self.hidden_size = state_size, belief_size, hidden_size
        self.feature_size = state_size + belief_size
        self.future_rnn, self.mean_only = future_rnn, mean_only
        self.transition_in = nn.Linear(state_size + action_size, hidden_size)  # [s, a] -> x
        self.cell: GRUBlockCell | LSTMBlockCell
        if cell == "gru":
            self.cell = GRUBlockCell(hidden_size, belief_size)
        elif cell == "lstm":
            self.cell = LSTMBlockCell(hidden_size, belief_size)
        else:
            raise ValueError(f"unknown cell {cell!r}")
        self.prior_hidden = nn.Linear(belief_size if future_rnn else hidden_size, hidden_size)
        self.prior_out = GaussianHead(hidden_size, state_size, min_std)
        self.posterior_hidden = nn.Linear(belief_size + embed_size, hidden_size)  # [h, e] -> z
        self.posterior_out = GaussianHead(hidden_size, state_size, min_std)
        glorot_(self)
        self.cell.reset_parameters()  # TF's gate bias 1.0, which glorot_ just zeroed

    def features(self, state: State) -> Tensor:
        return torch.cat([state.sample, state.belief], -1)

    def img_step(
        self,
        state: State,
        action: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> State:
        """Prior p(s_t | h_t): state [B, ...] at t-1, action [B, A] = a_{t-1} -> [B, ...].

        ``noise`` is the ε of the sample (drawn from ``generator`` when None)."""
        x = F.relu(self.transition_in(torch.cat([state.sample, action], -1)))  # [B, hidden]
        h, c = self.cell(x, state.belief, state.rnn_state)  # [B, H]
        mean, std = self.prior_out(F.relu(self.prior_hidden(h if self.future_rnn else x)))
        if noise is None:
            noise = draw_noise(mean.shape, mean, generator, self.mean_only)
        return State(mean, std, reparameterised(mean, std, noise), h, c)

    def obs_step(
        self,
        state: State,
        action: Tensor,
        embed: Tensor,
        generator: torch.Generator | None = None,
        noise: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[State, State]:
        """(posterior q(s_t | h_t, e_t), prior p(s_t | h_t)) from the state at t-1, action
        a_{t-1} [B, A] and the embedding e_t [B, E] of o_t. ``noise``: the (posterior, prior) ε
        (drawn from ``generator``, the prior's first, when None)."""
        post_noise, prior_noise = (None, None) if noise is None else noise
        prior = self.img_step(state, action, generator, prior_noise)
        z = F.relu(self.posterior_hidden(torch.cat([prior.belief, embed], -1)))
        mean, std = self.posterior_out(z)
        if post_noise is None:
            post_noise = draw_noise(mean.shape, mean, generator, self.mean_only)
        sample = reparameterised(mean, std, post_noise)
        return State(mean, std, sample, prior.belief, prior.rnn_state), prior
