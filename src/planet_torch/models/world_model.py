"""The world model (encoder, latent dynamics, decoder, reward head), its loss and its optimiser.

Batch layout (replay/sampler.py), time-major, row t of a chunk::

    image[t]   o_t                       uint8   [L, B, 64, 64, 3]
    action[t]  a_{t-1}, which led to o_t  float32 [L, B, A]   (row 0 of an episode: zeros)
    reward[t]  r_t, received with o_t    float32 [L, B]
    state[t]   env state at o_t          float32 [L, B, S]   (only for state diagnostics)

    s_{t-1} --action[t]--> prior p(s_t) --image[t]--> posterior q(s_t) --> reward[t], image[t]

The state before row 0 is zeros (every chunk), and the KL at t = 0 counts. Loss, per
docs/original.md, "Losses" (all terms are means over (t, b)):

    image   -log N(o_t; dec(f_t), 1) summed over the 64·64·3 values          × image_scale  (1)
    reward  -log N(r_t; rew(f_t), 1)                                       × reward_scale (10)
    kl      max(0, KL(q_t ‖ p_t) - free_nats), KL summed over latent dims  × kl_scale     (1)
            (free_nats_over = "batch": max(0, mean_{t,b} KL - free_nats), Dreamer's clamp)
    overshooting (off in the paper): the same clamped KL between the posterior q_t (no
            gradient) and the prior rolled open loop d = first..D steps from the posterior at
            t-d (from the zero state for t < d; first = 2 as the original at HEAD), mean over
            all valid (d, t, b)                                   × overshooting_kl_scale;
            optionally the reward NLL of those priors            × overshooting_reward_scale
    global  KL(q_t ‖ N(0, I))                                     × global_kl_scale (0: skipped)
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from planet_torch.config import Config, OptimConfig
from planet_torch.models.decoder import Decoder
from planet_torch.models.encoder import IMAGE_SHAPE, Encoder
from planet_torch.models.fast import FastDecoder, FastEncoder
from planet_torch.models.fast_rssm import FastRSSM
from planet_torch.models.heads import RewardHead, StateProbe
from planet_torch.models.latent import LatentModel, State, kl_standard_normal
from planet_torch.models.legacy import Rearrange, upgrade_model_state, upgrade_optimizer_state
from planet_torch.models.optim import FusedAdam
from planet_torch.models.precision import choose_model_dtype, configured_reason
from planet_torch.models.preprocess import postprocess, preprocess
from planet_torch.models.rssm import RSSM
from planet_torch.models.ssm import SSM
from planet_torch.models.update_graph import UpdateGraph, adam_bias_corrected_lr

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_PIXELS = math.prod(IMAGE_SHAPE)


def _memory_order(x: Tensor) -> Tensor:
    """A 1-D view of a dense tensor in the order its elements lie in memory (any layout)."""
    strides = x.stride()
    dims = sorted(range(x.dim()), key=lambda d: -strides[d])
    return x.permute(dims).view(-1)


class _HalfSquaredError(torch.autograd.Function):
    """0.5 · Σ (mean - target)² over all elements, in two passes forward and one backward.

    ``F.mse_loss(reduction="sum")`` would do more: its backward allocates a zeroed gradient in
    contiguous NCHW layout, which then has to be copied back to the decoder's channels-last
    layout (measured ≈ 0.35 s per paper-size update on the 2-core CPU).

    ``mean`` may be bfloat16 (the decoder under autocast) and ``target`` float32: the
    difference is then taken in float32 and the gradient rounded to ``mean``'s dtype — bit for
    bit what ``mean.float()`` before the loss gives, without keeping that float32 copy of the
    frames beside the difference (paper size, 2-core Xeon: peak memory 1 919 → 1 731 MB per
    update; BENCHMARKS.md, session 22). Each step is a same-dtype pass plus a cast: torch's
    mixed-dtype elementwise kernels were 2-3× slower here (the ``cpu`` preset's loss forward and
    backward 41-46 → 23-25 ms on one thread of a loaded AMX Xeon; with the one-pass
    preprocessing, the whole bf16 update 118-119 → 108 ms quiet on two threads; session 23).
    """

    @staticmethod
    def forward(ctx: Any, mean: Tensor, target: Tensor) -> Tensor:
        if mean.dtype != torch.float32 and target.dtype == torch.float32:
            diff = mean.float().sub_(target)  # a cast, then a float32 pass
        else:
            diff = mean - target  # layout of ``mean``
        ctx.save_for_backward(diff)
        ctx.dtypes = mean.dtype, target.dtype
        flat = _memory_order(diff)
        return 0.5 * torch.dot(flat, flat)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        (diff,) = ctx.saved_tensors
        mean_dtype, target_dtype = ctx.dtypes
        grad_mean = torch.mul(diff, grad).to(mean_dtype)  # layout of ``mean``
        if not ctx.needs_input_grad[1]:
            return grad_mean, None
        return grad_mean, torch.mul(diff, -grad).to(target_dtype)


def _unit_normal_nll(target: Tensor, mean: Tensor) -> Tensor:
    """-log N(target; mean, 1), elementwise, float32."""
    return 0.5 * (target.float() - mean.float()).square() + _HALF_LOG_2PI


def free_nats_mean(kl: Tensor, free_nats: float, over: str = "element") -> Tensor:
    """The KL term's value from per-element KLs ``kl`` [T, B]: ``mean(max(0, kl - free_nats))``
    (``over="element"``, PlaNet's) or ``max(0, mean(kl) - free_nats)`` (``"batch"``, Dreamer's).
    """
    if over == "batch":
        return (kl.mean() - free_nats).clamp(min=0.0)
    return (kl - free_nats).clamp(min=0.0).mean()


def retain_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    A paper-size update allocates and frees ~2 GB of activations and gradients. glibc serves
    blocks over 32 MB with fresh ``mmap`` s, so every update page-faults all of them in again
    (about a quarter of the update time on the 2-core CPU; benchmarks/bench_train_step.py). This
    turns ``mmap`` off for ``malloc`` and never trims the heap: after a few updates there are no
    page faults at all. The price is that the process keeps its peak heap (a little more than
    the peak without it; ≈2.8 GB at paper size). Process-wide: call it once, early, in a
    process that trains. Returns False (and does nothing) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or not hasattr(os, "confstr"):
        return False
    try:
        if "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""):
            return False
        libc = ctypes.CDLL(name)
    except (OSError, ValueError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def make_latent_model(
    kind: Literal["rssm", "ssm"],
    action_size: int,
    embed_size: int,
    *,
    state_size: int,
    belief_size: int,
    hidden_size: int,
    min_std: float,
    cell: Literal["gru", "lstm"] = "gru",
    future_rnn: bool = True,
    mean_only: bool = False,
    fast: bool = True,
) -> LatentModel:
    """Build the latent model named by ``ModelConfig.kind`` (``fast``: the RSSM's fast loops)."""
    if kind == "rssm":
        return (FastRSSM if fast else RSSM)(
            action_size,
            embed_size,
            state_size,
            belief_size,
            hidden_size,
            min_std,
            cell,
            future_rnn,
            mean_only,
        )
    if kind == "ssm":
        return SSM(action_size, embed_size, state_size, hidden_size, min_std, mean_only)
    raise ValueError(f"unknown latent model {kind!r}")


class WorldModel(nn.Module):
    """Everything PlaNet learns. ``state_size`` > 0 with ``model.state_diagnostics`` adds a probe.

    ``model.compute_dtype = "bfloat16"`` runs the encoder and decoder under CPU/CUDA autocast
    (the latent model, heads, log-probs and KL stay float32). Default float32, as the original;
    ``auto`` decides on first use, on the device the model is on then
    (:func:`~planet_torch.models.precision.choose_model_dtype`).
    """

    def __init__(self, cfg: Config, action_size: int, state_size: int = 0) -> None:
        super().__init__()
        m = cfg.model
        if m.state_diagnostics and state_size <= 0:
            raise ValueError("model.state_diagnostics needs the environment's state_size > 0")
        if m.compute_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(
                f"model.compute_dtype must be auto, float32 or bfloat16, not {m.compute_dtype}"
            )
        self.cfg = cfg
        self.action_size = action_size
        self.compute_dtype: torch.dtype | None = (
            None if m.compute_dtype == "auto" else getattr(torch, m.compute_dtype)
        )
        self._auto_dtype_reason = ""  # what auto measured, once resolved (compute_dtype_reason)
        self.encoder = (FastEncoder if m.fast_kernels else Encoder)(m.cnn_depth)
        self.rssm: LatentModel = make_latent_model(
            m.kind,
            action_size,
            self.encoder.embed_size,
            state_size=m.state_size,
            belief_size=m.belief_size,
            hidden_size=m.hidden_size,
            min_std=m.min_stddev,
            cell=m.cell,
            future_rnn=m.future_rnn,
            mean_only=m.mean_only,
            fast=m.fast_kernels,
        )
        self.feature_size = self.rssm.feature_size
        decoder = FastDecoder if m.fast_kernels else Decoder
        self.decoder = decoder(self.feature_size, m.cnn_depth)
        self.reward_head = RewardHead(self.feature_size, m.reward_layers, m.reward_units)
        self.state_probe: StateProbe | None = None
        if m.state_diagnostics:
            self.state_probe = StateProbe(
                self.feature_size, state_size, m.reward_layers, m.reward_units
            )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also reads a checkpoint of the older weight layouts (models/legacy.py)."""
        return super().load_state_dict(upgrade_model_state(state_dict)[0], strict, assign)

    # -- parameters --------------------------------------------------------------------------

    def model_parameters(self) -> Iterator[nn.Parameter]:
        """Everything the main loss trains (not the detached state probe)."""
        for name, p in self.named_parameters():
            if not name.startswith("state_probe."):
                yield p

    def probe_parameters(self) -> Iterator[nn.Parameter]:
        return iter(self.state_probe.parameters()) if self.state_probe is not None else iter(())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def compute_dtype_reason(self) -> str:
        """Why the encoder/decoder run in their dtype, in words: what ``auto`` measured, or
        "as configured" and, for a bf16 the model's device emulates, what that costs."""
        if self.cfg.model.compute_dtype == "auto":
            return self._auto_dtype_reason
        assert self.compute_dtype is not None
        return configured_reason(self.compute_dtype, self.device)

    @compute_dtype_reason.setter
    def compute_dtype_reason(self, reason: str) -> None:  # auto's choice (measured, or resumed)
        self._auto_dtype_reason = reason

    def resolve_compute_dtype(self) -> torch.dtype:
        """The encoder/decoder's dtype, measured once for ``auto`` (see the class docstring)."""
        if self.compute_dtype is None:
            m = self.cfg.model
            self.compute_dtype, self.compute_dtype_reason = choose_model_dtype(
                self.device, m.cnn_depth, self.feature_size
            )
        return self.compute_dtype

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        dtype = self.resolve_compute_dtype()
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # -- pieces the agent and planner use ----------------------------------------------------

    def preprocess(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 [..., 64, 64, 3] -> float [..., 3, 64, 64] (bit reduction + noise)."""
        return preprocess(image.to(self.device), self.cfg.model.image_bits, generator)

    def embed(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 [..., 64, 64, 3] -> embedding [..., E] (fresh dequantisation noise each call).

        In bfloat16 without autograd (acting, test and eval phases) the encoder runs on a copy
        of its weights already cast (:meth:`_cast_encoder`), bit for bit what autocast
        computes: autocast casts every weight on every call, ≈ 0.3 ms of a 1.2-1.8 ms decision
        on one frame (one thread of an AMX Xeon, under load, 2026-12-03)."""
        x = self.preprocess(image, generator)
        dtype = self.resolve_compute_dtype()
        if dtype != torch.float32 and not torch.is_grad_enabled():
            return self._cast_encoder(dtype)(x.to(dtype)).float()
        with self._autocast():
            return self.encoder(x).float()

    def _cast_encoder(self, dtype: torch.dtype) -> nn.Module:
        """A copy of the encoder in ``dtype``, made again whenever a weight changed (an update,
        a load, a move: each bumps a tensor's version or moves its storage). Kept outside the
        module tree, so it is in no state dict and no optimiser sees it."""
        key = (dtype, *((p.data_ptr(), p._version) for p in self.encoder.parameters()))
        cached = self.__dict__.get("_encoder_cast")
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                cast = copy.deepcopy(self.encoder).to(dtype).requires_grad_(False)
            cached = self.__dict__["_encoder_cast"] = (key, cast)
        return cached[1]

    def decode(self, features: Tensor) -> Tensor:
        """features [..., F] -> image mean [..., 3, 64, 64], float32."""
        with self._autocast():
            return self.decoder(features).float()

    def initial_state(self, batch_size: int) -> State:
        """Zeros [B, ...]: the state before the first frame of an episode or chunk."""
        return self.rssm.initial_state(batch_size, self.device)

    def filter(
        self,
        state: State,
        prev_action: Tensor,
        image: Tensor,
        generator: torch.Generator | None = None,
    ) -> State:
        """One filtering step for acting: state [B, ...], the action executed last [B, A]
        (zeros at the episode start) and the new frame uint8 [B, 64, 64, 3] -> posterior."""
        embed = self.embed(image, generator)
        posterior, _ = self.rssm.obs_step(state, prev_action.to(self.device), embed, generator)
        return posterior

    def observe(
        self, image: Tensor, action: Tensor, generator: torch.Generator | None = None
    ) -> tuple[State, State]:
        """:meth:`filter` along whole sequences from the zero state: frames uint8
        [T, N, 64, 64, 3] and the actions [T, N, A] (row t holds the action executed *before*
        frame t, the replay's convention) -> posterior and prior states [T, N, ...]."""
        embed = self.embed(image, generator)  # [T, N, E], all frames in one batched call
        return self.rssm.observe(embed, action.to(self.device), generator=generator)

    def imagine_return(
        self,
        state: State,
        actions: Tensor,
        generator: torch.Generator | None = None,
        sample: bool = True,
    ) -> Tensor:
        """Planning objective: state [N, ...], actions [H, N, A] -> [N], the undiscounted sum of
        the predicted reward means along one sampled open-loop trajectory (original HEAD), or
        along the prior means with ``sample=False`` (``planner.imagination = "mean"``)."""
        prior = self.rssm.imagine(actions, state, generator, sample)  # [H, N, ...]
        return self.reward_head(self.rssm.features(prior)).sum(0)

    # -- training ----------------------------------------------------------------------------

    def loss(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The scaled total loss (a scalar with gradient) and every term as a float."""
        total, terms = self.loss_terms(batch, generator)
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()  # one sync
        return total, dict(zip(terms, values, strict=True))

    def loss_terms(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """As :meth:`loss`, with the terms as 0-d tensors (no host sync)."""
        total, terms, _ = self.loss_terms_and_posterior(batch, generator)
        return total, terms

    def loss_terms_and_posterior(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor], State]:
        """:meth:`loss_terms` and the posterior states [T, B, ...] of the batch (Dreamer
        imagines from them)."""
        lc = self.cfg.loss
        device = self.device
        image = batch["image"].to(device, non_blocking=True)
        action = batch["action"].to(device, non_blocking=True)
        reward = batch["reward"].to(device, non_blocking=True)
        T, B = action.shape[:2]
        assert image.shape == (T, B, 64, 64, 3) and image.dtype == torch.uint8, image.shape
        assert action.shape == (T, B, self.action_size), action.shape
        assert reward.shape == (T, B), reward.shape

        x = self.preprocess(image, generator)  # [T, B, 3, 64, 64], input and target
        with self._autocast():
            embed = self.encoder(x).float()  # [T, B, E], all frames in one batched call
        posterior, prior = self.rssm.observe(embed, action, generator=generator)
        features = self.rssm.features(posterior)  # [T, B, F]
        with self._autocast():
            image_mean = self.decoder(features)  # [T, B, 3, 64, 64], bf16 under autocast

        # Σ_pixels 0.5 (x - mean)² + const, mean over (t, b), in float32.
        half_sse = _HalfSquaredError.apply(image_mean, x)
        image_nll = half_sse / (T * B) + _PIXELS * _HALF_LOG_2PI
        reward_nll = _unit_normal_nll(reward, self.reward_head(features)).mean()
        kl = self.rssm.kl(posterior, prior)  # [T, B]
        kl_loss = free_nats_mean(kl, lc.free_nats, lc.free_nats_over)
        # The objective: named losses and their scales, summed once below.
        losses: dict[str, Tensor] = {
            "image_nll": image_nll,
            "reward_nll": reward_nll,
            "kl_loss": kl_loss,
        }
        scales = {
            "image_nll": lc.image_scale,
            "reward_nll": lc.reward_scale,
            "kl_loss": lc.kl_scale,
        }
        if lc.overshooting_distance > 0 and (
            lc.overshooting_kl_scale > 0 or lc.overshooting_reward_scale > 0
        ):
            os_kl, os_reward = self.overshooting(
                posterior,
                action,
                reward,
                lc.overshooting_distance,
                generator,
                first=lc.overshooting_first_distance,
            )
            losses["overshooting_kl"], scales["overshooting_kl"] = os_kl, lc.overshooting_kl_scale
            if os_reward is not None:
                losses["overshooting_reward_nll"] = os_reward
                scales["overshooting_reward_nll"] = lc.overshooting_reward_scale
        if lc.global_kl_scale > 0:
            losses["global_kl"] = kl_standard_normal(posterior).mean()
            scales["global_kl"] = lc.global_kl_scale
        if self.state_probe is not None:
            if "state" not in batch:
                raise ValueError("model.state_diagnostics needs batches with a 'state' entry")
            target = batch["state"].to(device, non_blocking=True)  # [T, B, S]
            # Detached: the probe learns to read the features, the model never bends towards it.
            state_nll = _unit_normal_nll(target, self.state_probe(features.detach())).sum(-1)
            losses["state_nll"], scales["state_nll"] = state_nll.mean(), 1.0
        total = sum(scales[name] * value for name, value in losses.items())
        assert isinstance(total, Tensor)
        terms: dict[str, Tensor] = {**losses, "kl": kl.mean()}
        terms["posterior_std"] = posterior.std.mean()
        terms["prior_std"] = prior.std.mean()
        terms["total"] = total
        return total, terms, posterior

    def overshooting(
        self,
        posterior: State,
        action: Tensor,
        reward: Tensor,
        distance: int,
        generator: torch.Generator | None = None,
        first: int = 1,
    ) -> tuple[Tensor, Tensor | None]:
        """Latent overshooting over distances first..D: (mean clamped KL, mean reward NLL or
        None).

        Open-loop priors start from [zero state, q_0, ..., q_{T-2}] (the state before each row);
        after d steps the prior started before row j is compared with the posterior at row
        j + d - 1, which gets no gradient (original ``os_stop_posterior_grad``). Distance 1 is
        exactly the ordinary prior, so first = D = 1 gives the plain KL term; the original at
        HEAD uses distances 2..D. Rollouts that would run past the chunk end are dropped (the
        starting batch shrinks by one row per step) and the mean is over the valid (d, t, b)
        entries (the original's unapplied mask left padded entries in its mean).
        """
        lc = self.cfg.loss
        T, B = action.shape[:2]
        init = self.rssm.initial_state(B, action.device)
        state = State(
            *(torch.cat([z[None], p[:-1]]) for z, p in zip(init, posterior, strict=True))
        )  # [T, B, ...]
        target = posterior.detach()
        kls: list[Tensor] = []  # per-element KLs [n·B] of every valid distance
        reward_sum = action.new_zeros(()) if lc.overshooting_reward_scale > 0 else None
        count = 0
        for k in range(min(distance, T)):
            n = T - k  # starts whose k-th step still lies inside the chunk
            flat = State(*(x[:n].reshape(n * B, x.shape[-1]) for x in state))
            step_action = action[k : k + n].reshape(n * B, -1)
            prior = self.rssm.img_step(flat, step_action, generator)
            prior = State(*(x.view(n, B, x.shape[-1]) for x in prior))  # rows k .. T-1
            state = prior
            if k + 1 < first:  # distance k + 1 is only a step towards the longer ones
                continue
            kl = self.rssm.kl(State(*(x[k:] for x in target)), prior)  # [n, B]
            kls.append(kl.flatten())
            if reward_sum is not None:
                predicted = self.reward_head(self.rssm.features(prior))
                reward_sum = reward_sum + _unit_normal_nll(reward[k:], predicted).sum()
            count += n * B
        kl_loss = free_nats_mean(torch.cat(kls), lc.free_nats, lc.free_nats_over)  # over (d, t, b)
        return kl_loss, None if reward_sum is None else reward_sum / count

    # -- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def open_loop(
        self,
        images: Tensor,
        actions: Tensor,
        context: int = 5,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """images uint8 [T, B, 64, 64, 3], actions [T, B, A] -> predicted frames uint8, same shape.

        Frames 0..context-1 are reconstructions from the posterior; the rest are imagined open
        loop from the last posterior with the given actions (original "open-loop" summaries).
        """
        T = images.shape[0]
        assert 1 <= context <= T, (context, T)
        actions = actions.to(self.device)
        posterior, _ = self.observe(images[:context], actions[:context], generator)
        features = [self.rssm.features(posterior)]
        if context < T:
            last = posterior.map(lambda x: x[-1])
            prior = self.rssm.imagine(actions[context:], last, generator)
            features.append(self.rssm.features(prior))
        return postprocess(self.decode(torch.cat(features)), self.cfg.model.image_bits)


class WorldModelTrainer:
    """Adam as the original's TF optimiser, linear warm-up, global grad-norm clipping.

    TF's Adam adds its epsilon to sqrt(v) *before* bias correction ("ε-hat"). Torch adds it
    after, so each update sets torch's eps to ``adam_eps / sqrt(1 - β2^t)``, which makes the
    two updates identical. The norm is clipped over the model's gradients; the state probe has
    its own Adam parameter group and is clipped on its own (the original at HEAD trains its
    per-component state heads inside the one objective, behind a stop-gradient, under the same
    global clip; the camera-ready code gave them their own optimiser).

    With ``optim.cuda_graph`` on a GPU the same update runs as one captured CUDA graph
    (models/update_graph.py), whose Adam is written in TF's form directly.
    """

    def __init__(self, model: WorldModel, cfg: OptimConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg if cfg is not None else model.cfg.optim
        self.model_params = list(model.model_parameters())
        self.probe_params = list(model.probe_parameters())
        names = [name for name, _ in model.named_parameters()]
        probe = [n for n in names if n.startswith("state_probe.")]
        self.param_names = [n for n in names if n not in probe] + probe  # the optimiser's order
        groups = [{"params": self.model_params}]
        if self.probe_params:
            groups.append({"params": self.probe_params})
        self.optimizer = FusedAdam(groups, lr=self.cfg.learning_rate, eps=self.cfg.adam_eps)
        self.updates = 0
        # optim.cuda_graph on a GPU: the update as one CUDA graph (models/update_graph.py);
        # made at the first update, dropped where a batch does not fit it or state is loaded.
        self.graph: UpdateGraph | None = None
        self._graph_failed = False

    def learning_rate(self) -> float:
        """The step size of the next update (linear warm-up over ``warmup_updates``)."""
        warmup = self.cfg.warmup_updates
        scale = min(1.0, (self.updates + 1) / warmup) if warmup > 0 else 1.0
        return self.cfg.learning_rate * scale

    def update(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """One gradient update; returns every loss term plus ``grad_norm`` (before clipping)
        and ``lr``."""
        return self.update_and_posterior(batch, generator)[0]

    def update_and_posterior(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[dict[str, float], State]:
        """:meth:`update`, and the batch's posterior states (detached)."""
        self.model.train()
        lr = self.learning_rate()
        graph = self._graph_for(batch, generator)
        if graph is not None and generator is not None:
            try:
                betas = self.optimizer.defaults["betas"]
                terms, posterior = graph(
                    batch, generator, adam_bias_corrected_lr(lr, betas, self.updates + 1)
                )
                return self._finish(terms, lr), posterior
            except RuntimeError as error:  # CUDA or PyTorch without support: eager from now
                if graph.replays > 0:
                    raise  # it worked before: a real error, not a missing feature
                warnings.warn(f"updating without a CUDA graph ({error})", stacklevel=2)
                self.graph, self._graph_failed = None, True
        beta2 = self.optimizer.defaults["betas"][1]
        eps = self.cfg.adam_eps / math.sqrt(1.0 - beta2 ** (self.updates + 1))
        for group in self.optimizer.param_groups:
            group["lr"], group["eps"] = lr, eps
        total, terms, posterior = self.model.loss_terms_and_posterior(batch, generator)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip = self.cfg.grad_clip_norm
        grad_norm = nn.utils.clip_grad_norm_(self.model_params, clip)
        if self.probe_params:
            nn.utils.clip_grad_norm_(self.probe_params, clip)
        self.optimizer.step()
        terms["grad_norm"] = grad_norm
        return self._finish(terms, lr), posterior.detach()

    def _finish(self, terms: dict[str, Tensor], lr: float) -> dict[str, float]:
        """Count the update; its terms as floats (one device sync) and its step size."""
        self.updates += 1
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
        metrics = dict(zip(terms, values, strict=True))
        metrics["lr"] = lr
        return metrics

    def _graph_for(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None
    ) -> UpdateGraph | None:
        """The CUDA graph this update replays, or None for an eager update."""
        if self.graph is None and not (
            self.cfg.cuda_graph
            and self.model.device.type == "cuda"
            and not self._graph_failed
            and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
        ):
            return None
        if generator is None:
            return None  # the graph draws its noise from the caller's generator
        if self.graph is not None and not self.graph.accepts(batch):
            self.graph = None  # its gradients and buffers are the old shape's: start afresh
            return None
        if self.graph is None:
            self.graph = self.new_update_graph(capture=True)
        return self.graph

    def new_update_graph(self, capture: bool) -> UpdateGraph:
        """An :class:`UpdateGraph` of this trainer's update (``capture=False``: run eagerly
        each time, the same arithmetic; what the tests check on machines without CUDA)."""
        return UpdateGraph(
            self.model.loss_terms_and_posterior,
            self.optimizer,
            [self.model_params, self.probe_params],
            self.cfg.grad_clip_norm,
            self.cfg.adam_eps,
            capture,
        )

    def state_dict(self) -> dict[str, object]:
        return {"optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(
        self, state: Mapping[str, Any], moved: Mapping[str, Rearrange] | None = None
    ) -> None:
        """``moved``: the parameters :func:`upgrade_model_state` rearranged from an older
        checkpoint; Adam's moments of each are rearranged the same way."""
        optimizer = upgrade_optimizer_state(state["optimizer"], self.param_names, moved or {})
        self.optimizer.load_state_dict(optimizer)
        self.updates = int(state["updates"])
        if self.graph is not None:  # it updates the replaced state tensors: capture anew
            self.graph = self.new_update_graph(self.graph.capture)
