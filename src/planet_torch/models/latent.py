"""What every latent dynamics model shares (the RSSM of rssm.py and the SSM ablation of ssm.py):
the State tuple, Gaussian heads, KL divergences, the noise of a reparameterised sample, and the
LatentModel interface the world model, the planner's objective and the agent use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class State(NamedTuple):
    """A latent state (prior or posterior); every field has the same leading dims [...]."""

    mean: Tensor  # [..., S]
    std: Tensor  # [..., S]
    sample: Tensor  # [..., S]
    belief: Tensor  # [..., H] deterministic state h_t ([..., 0] for the SSM)
    rnn_state: Tensor  # [..., H] what the cell carries besides h: GRU: h itself; LSTM: cell c

    def map(self, fn: Callable[[Tensor], Tensor]) -> State:
        """Apply ``fn`` to every field, e.g. ``state.map(lambda x: x[t])``."""
        return State(*(fn(x) for x in self))

    def detach(self) -> State:
        return self.map(Tensor.detach)

    @staticmethod
    def stack(states: Sequence[State], dim: int = 0) -> State:
        return State(*(torch.stack(list(xs), dim) for xs in zip(*states, strict=True)))


def kl_normal_per_dim(q: State, p: State) -> Tensor:
    """KL(q ‖ p) of diagonal Gaussians per latent dim: [..., S]; float32."""
    q_mean, q_std, p_mean, p_std = (x.float() for x in (q.mean, q.std, p.mean, p.std))
    var_ratio = (q_std / p_std).square()
    mahalanobis = ((q_mean - p_mean) / p_std).square()
    return 0.5 * (var_ratio + mahalanobis - 1.0 - var_ratio.log())


def kl_normal(q: State, p: State) -> Tensor:
    """KL(q ‖ p) of diagonal Gaussians, summed over the latent dims: [...]; float32."""
    return kl_normal_per_dim(q, p).sum(-1)


def kl_standard_normal(q: State) -> Tensor:
    """KL(q ‖ N(0, I)) summed over the latent dims: [...]; float32."""
    mean, std = q.mean.float(), q.std.float()
    var = std.square()
    return 0.5 * (var + mean.square() - 1.0 - var.log()).sum(-1)


# ---------------------------------------------------------------------------------------------
# Recurrent cells
# ---------------------------------------------------------------------------------------------


class GaussianHead(nn.Module):
    """hidden -> (mean, softplus(·) + min_std) with two separate dense layers, as the original.

    ``fused()`` concatenates the two kernels for one matmul inside loops (same function).
    """

    def __init__(self, hidden_size: int, state_size: int, min_std: float) -> None:
        super().__init__()
        self.mean = nn.Linear(hidden_size, state_size)
        self.std = nn.Linear(hidden_size, state_size)
        self.min_std = min_std

    def fused(self) -> tuple[Tensor, Tensor]:
        """(W [hidden, 2S], b [2S])."""
        weight = torch.cat([self.mean.weight, self.std.weight], 0).t()
        return weight, torch.cat([self.mean.bias, self.std.bias])

    def split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """The fused product [B, 2S] -> (mean, std)."""
        mean, raw_std = out.chunk(2, -1)
        # contiguous first: on CPU softplus of the strided half took 28 µs, of a copy 4 µs
        return mean, F.softplus(raw_std.contiguous()) + self.min_std

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(hidden), F.softplus(self.std(hidden)) + self.min_std


def draw_noise(
    shape: Sequence[int], like: Tensor, generator: torch.Generator | None, mean_only: bool
) -> Tensor | None:
    if mean_only:
        return None
    return torch.randn(tuple(shape), generator=generator, device=like.device, dtype=like.dtype)


def reparameterised(mean: Tensor, std: Tensor, eps: Tensor | None) -> Tensor:
    return mean if eps is None else torch.addcmul(mean, std, eps)


class LatentModel(nn.Module):
    """What the world model, the planner and the agent use of a latent dynamics model."""

    action_size: int
    embed_size: int
    state_size: int
    belief_size: int
    feature_size: int
    mean_only: bool

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros [B, ...] (the original's start of every chunk and episode)."""
        device = device if device is not None else next(self.parameters()).device
        s = torch.zeros(batch_size, self.state_size, device=device)
        h = torch.zeros(batch_size, self.belief_size, device=device)
        return State(s, s, s, h, h)  # a zero std is never read: no KL at the initial state

    def features(self, state: State) -> Tensor:
        """Input of the decoder and the heads: [..., feature_size]."""
        raise NotImplementedError

    def kl(self, posterior: State, prior: State) -> Tensor:
        """KL(posterior ‖ prior) summed over latent dims: [...], float32."""
        return kl_normal(posterior, prior)

    def img_step(
        self,
        state: State,
        action: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> State:
        """One open-loop step: state [B, ...], action [B, A] -> prior [B, ...]. ``noise`` is the
        ε of the sample (drawn from ``generator`` when None)."""
        raise NotImplementedError

    def obs_step(
        self,
        state: State,
        action: Tensor,
        embed: Tensor,
        generator: torch.Generator | None = None,
        noise: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[State, State]:
        """One filtering step: state, action [B, A], embed [B, E] -> (posterior, prior).
        ``noise``: the (posterior, prior) ε (drawn from ``generator`` when None)."""
        raise NotImplementedError

    def observe(
        self,
        embed: Tensor,
        action: Tensor,
        init_state: State | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[State, State]:
        """Filter a sequence: embed [T, B, E], action [T, B, A] -> (posterior, prior) [T, B, ...].

        ``action[t]`` is the action that led to the observation embedded in ``embed[t]``. All
        noise is drawn here, once, so every way of computing the loop uses the same.
        """
        check_sequence(embed, action, self.embed_size, self.action_size)
        T, B = action.shape[:2]
        state = init_state if init_state is not None else self.initial_state(B, embed.device)
        eps = draw_noise((2, T, B, self.state_size), action, generator, self.mean_only)
        return self._filter(embed, action, state, eps)

    def _filter(
        self, embed: Tensor, action: Tensor, state: State, eps: Tensor | None
    ) -> tuple[State, State]:
        """The loop of :meth:`observe`: ``obs_step`` after ``obs_step``; ``eps`` [2, T, B, S]
        holds the posterior's and the prior's ε (None: the means)."""
        posteriors, priors = [], []
        for t in range(action.shape[0]):
            noise = None if eps is None else (eps[0, t], eps[1, t])
            state, prior = self.obs_step(state, action[t], embed[t], noise=noise)
            posteriors.append(state)
            priors.append(prior)
        return State.stack(posteriors), State.stack(priors)

    def imagine(
        self,
        action: Tensor,
        state: State,
        generator: torch.Generator | None = None,
        sample: bool = True,
    ) -> State:
        """Open-loop priors: action [T, B, A] from ``state`` [B, ...] -> State [T, B, ...];
        ``sample=False`` follows the prior means instead of drawing from the priors.

        Row t is the prior after applying ``action[t]``; with ``state`` the posterior at time k
        and ``action[t]`` = a_{k+t}, row t is the state at time k+t+1 (whose reward is r_{k+t+1}).
        """
        T, B = action.shape[:2]
        assert action.shape[-1] == self.action_size, action.shape
        shape = (T, B, self.state_size)
        if sample:
            eps = draw_noise(shape, action, generator, self.mean_only)
        else:  # ε = 0: the means
            eps = torch.zeros(shape, dtype=action.dtype, device=action.device)
        return self._rollout(action, state, eps)

    def _rollout(self, action: Tensor, state: State, eps: Tensor | None) -> State:
        """The loop of :meth:`imagine`: ``img_step`` after ``img_step`` with ε ``eps`` [T, B, S]."""
        states = []
        for t in range(action.shape[0]):
            state = self.img_step(state, action[t], noise=None if eps is None else eps[t])
            states.append(state)
        return State.stack(states)


def check_sequence(embed: Tensor, action: Tensor, embed_size: int, action_size: int) -> None:
    assert embed.dim() == 3 and embed.shape[-1] == embed_size, embed.shape
    assert action.dim() == 3 and action.shape[-1] == action_size, action.shape
    assert embed.shape[:2] == action.shape[:2], (embed.shape, action.shape)
