"""The RSSM's sequence loops rewritten for speed: same parameters, same function, tested equal.

``model.fast_kernels`` (on by default) builds :class:`FastRSSM` instead of the plain
:class:`~planet_torch.models.rssm.RSSM`. Its :meth:`FastRSSM.observe` equals a loop of the plain
``obs_step`` with the same noise, and :meth:`FastRSSM.imagine` a loop of ``img_step``
(tests/test_fast_kernels.py). What changes is only where the work is done: what does not depend
on the recurrence is computed for all T at once outside the loop (the action part of the first
dense layer, the embedding part of the posterior's dense layer, all noise, and the whole prior of
``observe``, which nothing in the loop reads), and the cell's input-side matmuls are fused into
one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from planet_torch.models.latent import State, reparameterised
from planet_torch.models.rssm import RSSM, GRUBlockCell, LSTMBlockCell


def cell_input_weights(cell: GRUBlockCell | LSTMBlockCell) -> tuple[Tensor, Tensor]:
    """(W_x [in, G·H], b [G·H]): ``gx = x @ W_x + b`` is every input-side product of a step in
    one matmul (GRU: [r, u, c], LSTM: [i, j, f, o]); take once per sequence."""
    n = cell.input_size
    # Contiguous [in, out] copies (once per sequence): the loops' small-batch matmuls ran ~45 %
    # slower on transposed views of torch's [out, in] weights (paper size, Zen 4).
    if isinstance(cell, GRUBlockCell):
        weight = torch.cat([cell.gates.weight[:, :n], cell.candidate.weight[:, :n]], 0)
        return weight.t().contiguous(), torch.cat([cell.gates.bias, cell.candidate.bias])
    return cell.linear.weight[:, :n].t().contiguous(), cell.linear.bias


def cell_hidden_weights(cell: GRUBlockCell | LSTMBlockCell) -> tuple[Tensor, Tensor]:
    """The hidden-side kernels as [H, out] views (GRU: W_ru, W_c; LSTM: W, unused)."""
    n = cell.input_size
    if isinstance(cell, GRUBlockCell):
        hidden = cell.gates.weight[:, n:], cell.candidate.weight[:, n:]
        return hidden[0].t().contiguous(), hidden[1].t().contiguous()
    return cell.linear.weight[:, n:].t().contiguous(), cell.linear.weight[:0]


def cell_step(
    cell: GRUBlockCell | LSTMBlockCell,
    gx: Tensor,
    h: Tensor,
    c: Tensor,
    hidden_weights: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor]:
    """The cell's forward from its input-side product gx [B, G·H]: -> (h', c')."""
    if isinstance(cell, GRUBlockCell):
        w_ru, w_c = hidden_weights
        size = cell.hidden_size
        r, u = torch.sigmoid(torch.addmm(gx[:, : 2 * size], h, w_ru)).chunk(2, 1)
        candidate = torch.tanh(torch.addmm(gx[:, 2 * size :], r * h, w_c))
        h = torch.lerp(candidate, h, u)  # (1 - u) c + u h
        return h, h
    i, j, f, o = torch.addmm(gx, h, hidden_weights[0]).chunk(4, 1)
    c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
    return torch.sigmoid(o) * torch.tanh(c), c


class _Weights(NamedTuple):
    s: Tensor  # [S, hidden]: the state part of the first dense layer, transposed
    x: Tensor  # [hidden, G·H]: the cell's input-side kernel
    bx: Tensor  # [G·H]
    h: tuple[Tensor, Tensor]  # the cell's hidden-side kernels


class FastRSSM(RSSM):
    """:class:`RSSM` whose ``observe`` and ``imagine`` loops do the least work per step (the
    noise is drawn by the caller, models/latent.py, the same for both)."""

    def _loop_weights(self, action: Tensor) -> tuple[Tensor, _Weights]:
        """The action part (+ bias) of the first dense layer [..., hidden], and the weights a
        step needs, sliced and fused once per call rather than once per step."""
        weight = self.transition_in.weight
        pre_a = F.linear(action, weight[:, self.state_size :], self.transition_in.bias)
        w_x, b_x = cell_input_weights(self.cell)
        return pre_a, _Weights(
            weight[:, : self.state_size].t(), w_x, b_x, cell_hidden_weights(self.cell)
        )

    def _prior(self, hidden: Tensor, eps: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        mean, std = self.prior_out(F.relu(self.prior_hidden(hidden)))
        return mean, std, reparameterised(mean, std, eps)

    def _rollout(self, action: Tensor, state: State, eps: Tensor | None) -> State:
        pre_a, w = self._loop_weights(action)  # pre_a [T, B, hidden], once for all T
        states = []
        for t in range(action.shape[0]):
            x = F.relu(torch.addmm(pre_a[t], state.sample, w.s))  # [B, hidden]
            gx = torch.addmm(w.bx, x, w.x)
            h, c = cell_step(self.cell, gx, state.belief, state.rnn_state, w.h)
            noise = None if eps is None else eps[t]
            mean, std, sample = self._prior(h if self.future_rnn else x, noise)
            state = State(mean, std, sample, h, c)
            states.append(state)
        return State.stack(states)

    def _filter(
        self, embed: Tensor, action: Tensor, state: State, eps: Tensor | None
    ) -> tuple[State, State]:
        H = self.belief_size
        # Everything that does not depend on the recurrence, for all T at once.
        pre_a, w = self._loop_weights(action)  # pre_a [T, B, hidden]
        post_w = self.posterior_hidden.weight
        w_h = post_w[:, :H].t()  # [H, hid]
        pre_e = F.linear(embed, post_w[:, H:], self.posterior_hidden.bias)  # [T, B, hid]
        w_out, b_out = self.posterior_out.fused()

        s, h, c = state.sample, state.belief, state.rnn_state
        xs, hs, cs, means, stds, samples = [], [], [], [], [], []
        for t in range(action.shape[0]):
            x = F.relu(torch.addmm(pre_a[t], s, w.s))  # [B, hidden]
            h, c = cell_step(self.cell, torch.addmm(w.bx, x, w.x), h, c, w.h)  # [B, H]
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
