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

The loops are written for speed: what does not depend on the recurrence is computed for all T at
once outside it (the action part of the first dense layer, the embedding part of the posterior's
dense layer, all noise, and the whole prior of :meth:`RSSM.observe`, which nothing in the loop
reads), and the GRU's input-side matmuls are fused into one.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_torch.models.encoder import glorot_
from planet_torch.models.latent import (
    GaussianHead,
    LatentModel,
    State,
    check_sequence,
    draw_noise,
    reparameterised,
)


class GRUBlockCell(nn.Module):
    """TF's ``GRUBlockCell``, the original's cell (not the same function as ``nn.GRUCell``)::

        [r, u] = sigmoid([x, h] @ W_ru + b_ru)         b_ru initialised to 1.0
        c      = tanh([x, r ∘ h] @ W_c + b_c)          reset gate applied to h *before* the matmul
        h'     = (1 - u) ∘ c + u ∘ h

    Kernels are stored in TF's [in + H, out] layout and glorot-uniform initialised as one
    matrix each. ``step`` takes the input-side product ``gx = x @ [W_ru_x | W_c_x] + b``
    ([B, 3H], one matmul) and does the rest.
    """

    gates = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ru = nn.Parameter(torch.empty(input_size + hidden_size, 2 * hidden_size))
        self.bias_ru = nn.Parameter(torch.ones(2 * hidden_size))
        self.weight_c = nn.Parameter(torch.empty(input_size + hidden_size, hidden_size))
        self.bias_c = nn.Parameter(torch.zeros(hidden_size))
        nn.init.xavier_uniform_(self.weight_ru)
        nn.init.xavier_uniform_(self.weight_c)

    def input_weights(self) -> tuple[Tensor, Tensor]:
        """(W_x [in, 3H], b [3H]) for ``gx = x @ W_x + b``; take once per sequence."""
        n = self.input_size
        weight = torch.cat([self.weight_ru[:n], self.weight_c[:n]], 1)
        return weight, torch.cat([self.bias_ru, self.bias_c])

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        """(W_ru_h [H, 2H], W_c_h [H, H]) views; take once per sequence."""
        n = self.input_size
        return self.weight_ru[n:], self.weight_c[n:]

    def step(
        self, gx: Tensor, h: Tensor, c: Tensor, hidden_weights: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """gx [B, 3H], h [B, H] -> (h', h'); ``c`` is unused (the GRU has no cell)."""
        w_ru, w_c = hidden_weights
        size = self.hidden_size
        r, u = torch.sigmoid(torch.addmm(gx[:, : 2 * size], h, w_ru)).chunk(2, 1)
        candidate = torch.tanh(torch.addmm(gx[:, 2 * size :], r * h, w_c))
        h = torch.lerp(candidate, h, u)  # (1 - u) c + u h
        return h, h

    def forward(self, x: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w_x, b = self.input_weights()
        return self.step(torch.addmm(b, x, w_x), h, h, self.hidden_weights())


class LSTMBlockCell(nn.Module):
    """An LSTM in TF's style (kernel [in + H, 4H] glorot, zero bias, forget bias +1.0)::

        [i, j, f, o] = [x, h] @ W + b
        c' = sigmoid(f + 1) ∘ c + sigmoid(i) ∘ tanh(j);    h' = sigmoid(o) ∘ tanh(c')

    Not in the original (an option here); the state is (belief h, rnn_state c).
    """

    gates = 4

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight = nn.Parameter(torch.empty(input_size + hidden_size, 4 * hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        nn.init.xavier_uniform_(self.weight)

    def input_weights(self) -> tuple[Tensor, Tensor]:
        return self.weight[: self.input_size], self.bias

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        return self.weight[self.input_size :], self.weight[:0]  # second entry unused

    def step(
        self, gx: Tensor, h: Tensor, c: Tensor, hidden_weights: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        i, j, f, o = torch.addmm(gx, h, hidden_weights[0]).chunk(4, 1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert c is not None, "the LSTM needs its cell state"
        w_x, b = self.input_weights()
        return self.step(torch.addmm(b, x, w_x), h, c, self.hidden_weights())


# ---------------------------------------------------------------------------------------------
# Shared parts of the latent models
# ---------------------------------------------------------------------------------------------


class _Weights(NamedTuple):
    s: Tensor  # [S, hidden]: the state part of the first dense layer, transposed
    x: Tensor  # [hidden, G·H]: the cell's input-side kernel
    bx: Tensor  # [G·H]
    h: tuple[Tensor, Tensor]  # the cell's hidden-side kernels


# ---------------------------------------------------------------------------------------------
# RSSM
# ---------------------------------------------------------------------------------------------


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
        glorot_(self)  # the cell initialises itself (gate bias 1.0)

    def features(self, state: State) -> Tensor:
        return torch.cat([state.sample, state.belief], -1)

    # -- pieces -----------------------------------------------------------------------------

    def _loop_weights(self, action: Tensor) -> tuple[Tensor, _Weights]:
        """The action part (+ bias) of the first dense layer [..., hidden], and the weights a
        step needs, sliced and fused once per call rather than once per step."""
        weight = self.transition_in.weight
        pre_a = F.linear(action, weight[:, self.state_size :], self.transition_in.bias)
        w_x, b_x = self.cell.input_weights()
        return pre_a, _Weights(
            weight[:, : self.state_size].t(), w_x, b_x, self.cell.hidden_weights()
        )

    def _prior(self, hidden: Tensor, eps: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        mean, std = self.prior_out(F.relu(self.prior_hidden(hidden)))
        return mean, std, reparameterised(mean, std, eps)

    def _transition(self, state: State, pre_a: Tensor, eps: Tensor | None, w: _Weights) -> State:
        x = F.relu(torch.addmm(pre_a, state.sample, w.s))  # [B, hidden]
        h, c = self.cell.step(torch.addmm(w.bx, x, w.x), state.belief, state.rnn_state, w.h)
        mean, std, sample = self._prior(h if self.future_rnn else x, eps)
        return State(mean, std, sample, h, c)

    # -- public API --------------------------------------------------------------------------

    def img_step(
        self, state: State, action: Tensor, generator: torch.Generator | None = None
    ) -> State:
        pre_a, w = self._loop_weights(action)
        eps = draw_noise(state.sample.shape, state.sample, generator, self.mean_only)
        return self._transition(state, pre_a, eps, w)

    def imagine(
        self,
        action: Tensor,
        state: State,
        generator: torch.Generator | None = None,
        sample: bool = True,
    ) -> State:
        T, B = action.shape[:2]
        assert action.shape[-1] == self.action_size, action.shape
        pre_a, w = self._loop_weights(action)  # pre_a [T, B, hidden], once for all T
        eps = draw_noise((T, B, self.state_size), pre_a, generator, self.mean_only or not sample)
        states = []
        for t in range(T):
            state = self._transition(state, pre_a[t], None if eps is None else eps[t], w)
            states.append(state)
        return State.stack(states)

    def obs_step(
        self,
        state: State,
        action: Tensor,
        embed: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[State, State]:
        prior = self.img_step(state, action, generator)
        z = F.relu(self.posterior_hidden(torch.cat([prior.belief, embed], -1)))
        mean, std = self.posterior_out(z)
        eps = draw_noise(mean.shape, mean, generator, self.mean_only)
        posterior = State(mean, std, reparameterised(mean, std, eps), prior.belief, prior.rnn_state)
        return posterior, prior

    def observe(
        self,
        embed: Tensor,
        action: Tensor,
        init_state: State | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[State, State]:
        check_sequence(embed, action, self.embed_size, self.action_size)
        T, B = action.shape[:2]
        state = init_state if init_state is not None else self.initial_state(B, embed.device)
        S, H = self.state_size, self.belief_size
        # Everything that does not depend on the recurrence, for all T at once.
        pre_a, w = self._loop_weights(action)  # pre_a [T, B, hidden]
        post_w = self.posterior_hidden.weight
        w_h = post_w[:, :H].t()  # [H, hid]
        pre_e = F.linear(embed, post_w[:, H:], self.posterior_hidden.bias)  # [T, B, hid]
        w_out, b_out = self.posterior_out.fused()
        eps = draw_noise((2, T, B, S), pre_a, generator, self.mean_only)  # posterior, prior noise

        s, h, c = state.sample, state.belief, state.rnn_state
        xs, hs, cs, means, stds, samples = [], [], [], [], [], []
        for t in range(T):
            x = F.relu(torch.addmm(pre_a[t], s, w.s))  # [B, hidden]
            h, c = self.cell.step(torch.addmm(w.bx, x, w.x), h, c, w.h)  # [B, H]
            z = F.relu(torch.addmm(pre_e[t], h, w_h))
            mean, std = self.posterior_out.split(torch.addmm(b_out, z, w_out))  # [B, S]
            s = reparameterised(mean, std, None if eps is None else eps[0, t])
            xs.append(x)
            hs.append(h)
            cs.append(c)
            means.append(mean)
            stds.append(std)
            samples.append(s)
        belief = torch.stack(hs)  # [T, B, H]
        rnn_state = belief if isinstance(self.cell, GRUBlockCell) else torch.stack(cs)
        posterior = State(
            torch.stack(means), torch.stack(stds), torch.stack(samples), belief, rnn_state
        )
        # The prior at every t reads only h_t (or x_t): one batched pass after the loop.
        prior_in = belief if self.future_rnn else torch.stack(xs)
        mean, std, sample = self._prior(prior_in, None if eps is None else eps[1])
        return posterior, State(mean, std, sample, belief, rnn_state)
