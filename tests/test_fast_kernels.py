"""The fast kernels (models/fast.py, models/fast_rssm.py) against the plain reference modules:
same parameters, same function and gradients, in float32 and under bfloat16 autocast; and a
checkpoint of the older weight layouts loading into today's models (models/legacy.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from planet_torch.config import DEBUG, override
from planet_torch.machine import onednn_has_bf16
from planet_torch.models import (
    RSSM,
    Decoder,
    Encoder,
    FastDecoder,
    FastEncoder,
    FastRSSM,
    State,
    WorldModel,
    WorldModelTrainer,
)
from planet_torch.models import fast as fast_module
from planet_torch.models.fast import (
    BiasAfterConvTranspose2d,
    Deconv1x1,
    Im2colConv2d,
    ReLUConv2d,
    ReLUConvTranspose2d,
    SubPixelConvTranspose2d,
    conv_relu,
)
from planet_torch.models.legacy import upgrade_model_state

sys.path.insert(0, str(Path(__file__).parent / "data"))
from legacy_inputs import legacy_batch, legacy_config

LEGACY = Path(__file__).parent / "data" / "legacy_checkpoint.pt"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_grads_close(fast: nn.Module, plain: nn.Module, rtol: float, atol: float) -> None:
    named = dict(plain.named_parameters())
    for name, p in fast.named_parameters():
        assert p.grad is not None and named[name].grad is not None, name
        torch.testing.assert_close(p.grad, named[name].grad, rtol=rtol, atol=atol, msg=name)


def grads(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_bf16_grads_as_accurate(
    fast: dict[str, Tensor], plain: dict[str, Tensor], exact: dict[str, Tensor]
) -> None:
    """bf16 gradients of the fast kernels are as close to float32's (``exact``) as torch's own
    bf16 ones (``plain``): per tensor, relative L2 error at most 1.5 × plain's + 0.05.

    Why not fast == plain within a tolerance: on CPUs without bf16 instructions (AVX2-only EPYC)
    torch emulates bf16 and each path rounds its partial sums its own way, so the two bf16
    results are up to 9 % (L2) apart while each is 0.2-18 % from float32 (fast / plain error
    ratio ≤ 1.2 where the error exceeds 5 %, 1.76 on the smallest ones; Zen 3, 2026-12-02). A
    wrongly cast or placed term is off by ~100 %; the float32 comparisons above check the
    arithmetic itself to 1e-4."""
    assert fast.keys() == plain.keys() == exact.keys()
    for name, reference in exact.items():
        scale = reference.norm().clamp_min(1e-12)  # some gradients are zero here
        fast_error = ((fast[name] - reference).norm() / scale).item()
        plain_error = ((plain[name] - reference).norm() / scale).item()
        assert fast_error <= 1.5 * plain_error + 0.05, (name, fast_error, plain_error)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class ConvThenReLU(nn.Conv2d):
    """The reference of :class:`ReLUConv2d`: torch's conv, then torch's ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(super().forward(x))


class ConvTransposeThenReLU(nn.ConvTranspose2d):
    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        return torch.relu(super().forward(x, output_size))


def channels_last_weight(layer: nn.Conv2d) -> nn.Conv2d:
    layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)
    return layer


@pytest.fixture(params=[False, True], ids=["no_amx", "amx"])
def amx(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test as on a CPU without and with AMX: with it, bf16 conv + ReLU layers take the
    fused oneDNN kernel (:func:`fuse_conv_relu`), which runs, slower, on any x86 CPU that
    oneDNN builds bf16 kernels for (AVX-512 or newer)."""
    if request.param and not onednn_has_bf16():
        pytest.skip("oneDNN builds no bf16 kernels on this CPU (AVX2 only): the AMX path can't run")
    monkeypatch.setattr(fast_module, "cpu_has_amx", lambda: request.param)
    return bool(request.param)


@pytest.mark.parametrize(
    "make_fast,make_ref,channels,size",
    [
        (lambda: Deconv1x1(8, 5, 5, 2), lambda: nn.ConvTranspose2d(8, 5, 5, 2), 8, 1),
        (lambda: SubPixelConvTranspose2d(6, 3, 6, 2), lambda: nn.ConvTranspose2d(6, 3, 6, 2), 6, 9),
        (
            lambda: BiasAfterConvTranspose2d(6, 4, 5, stride=2),
            lambda: nn.ConvTranspose2d(6, 4, 5, stride=2),
            6,
            7,
        ),
        # the encoder's last conv (6 → 2), and a map whose last row the stride leaves out
        (lambda: Im2colConv2d(5, 7, 4, stride=2), lambda: nn.Conv2d(5, 7, 4, stride=2), 5, 6),
        (lambda: Im2colConv2d(5, 7, 4, stride=2), lambda: nn.Conv2d(5, 7, 4, stride=2), 5, 9),
        # ... with its weight channels-last, as FastEncoder keeps it
        (
            lambda: channels_last_weight(Im2colConv2d(5, 7, 4, stride=2)),
            lambda: nn.Conv2d(5, 7, 4, stride=2),
            5,
            9,
        ),
        (lambda: ReLUConv2d(5, 7, 4, stride=2), lambda: ConvThenReLU(5, 7, 4, stride=2), 5, 9),
        (
            lambda: ReLUConvTranspose2d(6, 4, 5, stride=2),
            lambda: ConvTransposeThenReLU(6, 4, 5, stride=2),
            6,
            7,
        ),
    ],
    ids=[
        "deconv1x1",
        "subpixel",
        "bias_after",
        "im2col_6",
        "im2col_9",
        "im2col_9_cl",
        "relu_conv",
        "relu_deconv",
    ],
)
def test_fast_layer_is_the_torch_layer(
    make_fast: Callable[[], nn.Module],
    make_ref: Callable[[], nn.Module],
    channels: int,
    size: int,
    amx: bool,
) -> None:
    """Each faster layer: the torch layer's parameters (a state dict moves both ways), function
    and gradients, in float32 and under bfloat16 autocast (as on CPUs without and with AMX)."""
    torch.manual_seed(0)
    fast, ref = make_fast(), make_ref()
    with torch.no_grad():
        fast.bias.uniform_(-1, 1)  # zero at init: would hide a bias that is added wrongly
    ref.load_state_dict(fast.state_dict())
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, channels, size, size).contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fast(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y2)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    assert_grads_close(fast, ref, rtol=1e-4, atol=1e-4)
    exact = {"x": x2.grad, **grads(ref)}
    fast.zero_grad()
    ref.zero_grad()
    x1.grad = x2.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y1, y2 = fast(x1), ref(x2)
    assert y1.dtype == y2.dtype == torch.bfloat16
    # bf16 bounds: the worst element of each layer used at most 11 % (outputs) and 5 %
    # (gradients) of the earlier (0.02, 0.05) / (0.02, 0.1) on Zen 4 with avx512_bf16
    # (2026-12-02; im2col layers match exactly), so about 4x headroom at these:
    torch.testing.assert_close(y1.float(), y2.float(), rtol=0.01, atol=0.02)
    y1.float().backward(g)
    y2.float().backward(g)
    assert fast.weight.grad.dtype == torch.float32
    if isinstance(fast, ReLUConv2d | ReLUConvTranspose2d):
        # An output near 0 rounds to either side of it in bf16, and the ReLU then passes or
        # stops its whole gradient: elementwise closeness is no test here (7 % of the input
        # gradient's elements apart, torch's own layers beside each other, no fusion). Both
        # must be as close to float32's gradients as torch's bf16 ones.
        assert_bf16_grads_as_accurate(
            {"x": x1.grad, **grads(fast)}, {"x": x2.grad, **grads(ref)}, exact
        )
    else:
        torch.testing.assert_close(x1.grad, x2.grad, rtol=0.01, atol=0.02)
        assert_grads_close(fast, ref, rtol=0.01, atol=0.02)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "deconv"])
def test_fused_conv_relu_kernel_in_float32(transposed: bool) -> None:
    """The fused kernel's arithmetic at float32 precision (the layers call it only in bf16): the
    torch conv + ReLU's outputs and gradients to 1e-5, with some outputs at zero."""
    torch.manual_seed(0)
    ref = ConvTransposeThenReLU(6, 4, 5, stride=2) if transposed else ConvThenReLU(5, 7, 4, 2)
    with torch.no_grad():
        ref.bias.uniform_(-1, 1)
    x = torch.randn(3, ref.in_channels, 7, 7).contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = conv_relu(x1, ref, transposed), ref(x2)
    assert 0.2 < (y2 == 0).float().mean() < 0.8  # the ReLU's mask matters in the backward
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y2)
    fused = torch.autograd.grad(y1, [x1, ref.weight, ref.bias], g)
    plain = torch.autograd.grad(y2, [x2, ref.weight, ref.bias], g)
    for name, a, b in zip(("x", "weight", "bias"), fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


# ---------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fast_encoder_and_decoder_are_the_plain_ones(dtype: torch.dtype, amx: bool) -> None:
    """Built from the same seed they hold the same weights; same outputs and gradients (as on
    CPUs without and with AMX: in bf16 with it, the conv + ReLU layers run fused)."""
    depth, features = 4, 12
    pairs = []
    for make in ((Encoder, FastEncoder), (Decoder, FastDecoder)):
        built = []
        for cls in make:
            torch.manual_seed(0)
            built.append(cls(depth) if cls in (Encoder, FastEncoder) else cls(features, depth))
        plain, fast = built
        for (name, a), b in zip(
            plain.state_dict().items(), fast.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
        pairs.append((plain, fast))
    image = torch.rand(2, 3, 3, 64, 64, generator=gen(1)) - 0.5  # [T, B, 3, 64, 64]
    feature = torch.randn(2, 3, features, generator=gen(2))
    # bf16 outputs: the worst element used 7 % of the earlier (0.03, 0.1) on Zen 4 with
    # avx512_bf16 and 1 % of (0.01, 0.03) on Zen 3 without (2026-12-02): ≥ 4x headroom.
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 0.01, "atol": 0.03}
    for (plain, fast), x in zip(pairs, (image, feature), strict=True):
        y_exact = plain(x)  # float32
        g = torch.randn(y_exact.shape, generator=gen(3))
        y_exact.backward(g)
        exact = grads(plain)
        plain.zero_grad()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            y_plain, y_fast = plain(x), fast(x)
        torch.testing.assert_close(y_fast.float(), y_plain.float(), **tol)
        y_plain.float().backward(g)
        y_fast.float().backward(g)
        if dtype == torch.float32:
            assert_grads_close(fast, plain, **tol)
        else:
            assert_bf16_grads_as_accurate(grads(fast), grads(plain), exact)


# ---------------------------------------------------------------------------------------------
# RSSM
# ---------------------------------------------------------------------------------------------


def rssm_pair(kind: str) -> tuple[RSSM, FastRSSM]:
    args = dict(
        action_size=2,
        embed_size=10,
        state_size=5,
        belief_size=7,
        hidden_size=8,
        cell="lstm" if kind == "lstm" else "gru",
        future_rnn=kind != "past_rnn",
        mean_only=kind == "mean_only",
    )
    torch.manual_seed(0)
    plain = RSSM(**args)  # type: ignore[arg-type]
    torch.manual_seed(0)
    fast = FastRSSM(**args)  # type: ignore[arg-type]
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    return plain, fast


def assert_states_close(a: State, b: State) -> None:
    for field, x, y in zip(State._fields, a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5, msg=field)


@pytest.mark.parametrize("kind", ["gru", "lstm", "past_rnn", "mean_only"])
def test_fast_rssm_is_the_plain_one(kind: str) -> None:
    """FastRSSM.observe equals the plain observe, a loop of ``obs_step``, with sampling on (the
    same generator: the same noise), and so do ``imagine`` and every gradient."""
    plain, fast = rssm_pair(kind)
    T, B = 5, 3
    embed, action = torch.randn(T, B, 10, generator=gen(1)), torch.randn(T, B, 2, generator=gen(2))
    (post_p, prior_p), (post_f, prior_f) = (
        m.observe(embed, action, generator=gen(3)) for m in (plain, fast)
    )
    assert_states_close(post_f, post_p)
    assert_states_close(prior_f, prior_p)
    if kind != "mean_only":  # sampling is on: the samples are not the means
        assert not torch.allclose(post_p.sample, post_p.mean)
    # The plain observe is obs_step after obs_step (one ε pair per step, drawn up front).
    noise = torch.randn(2, T, B, 5, generator=gen(3))
    state = plain.initial_state(B)
    for t in range(T):
        eps = None if kind == "mean_only" else (noise[0, t], noise[1, t])
        state, prior = plain.obs_step(state, action[t], embed[t], noise=eps)
        assert_states_close(state, post_p.map(lambda v, t=t: v[t]))
        assert_states_close(prior, prior_p.map(lambda v, t=t: v[t]))
    start_p, start_f = post_p.map(lambda v: v[-1]), post_f.map(lambda v: v[-1])
    for sample in (True, False):
        imagined_p = plain.imagine(action, start_p, gen(4), sample)
        imagined_f = fast.imagine(action, start_f, gen(4), sample)
        assert_states_close(imagined_f, imagined_p)
        if not sample:
            assert torch.equal(imagined_p.sample, imagined_p.mean)
    loss = [
        m.kl(post, prior).sum() + m.features(img).square().sum()
        for m, post, prior, img in (
            (plain, post_p, prior_p, imagined_p),
            (fast, post_f, prior_f, imagined_f),
        )
    ]
    for value in loss:
        value.backward()
    assert_grads_close(fast, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fast_world_model_is_the_plain_one(dtype: torch.dtype) -> None:
    """The whole model with ``model.fast_kernels`` off and on: same weights from the same seed,
    same loss terms and gradients (bf16: autocast on the encoder and decoder, as trained)."""
    cfg = override(DEBUG, model={"compute_dtype": str(dtype).removeprefix("torch.")})
    models = []
    for fast in (False, True):
        torch.manual_seed(0)
        models.append(WorldModel(override(cfg, model={"fast_kernels": fast}), action_size=1))
    plain, fast_model = models
    assert type(plain.encoder) is Encoder and type(fast_model.encoder) is FastEncoder
    assert type(plain.rssm) is RSSM and type(fast_model.rssm) is FastRSSM
    for (name, a), b in zip(
        plain.state_dict().items(), fast_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    batch = legacy_batch()
    (total_p, terms_p), (total_f, terms_f) = (m.loss_terms(batch, gen(5)) for m in models)
    rel = 1e-5 if dtype == torch.float32 else 2e-3
    for name in terms_p:
        assert terms_f[name].item() == pytest.approx(terms_p[name].item(), rel=rel, abs=1e-5), name
    total_p.backward()
    total_f.backward()
    if dtype == torch.float32:
        assert_grads_close(fast_model, plain, rtol=1e-3, atol=1e-3)
    else:
        torch.manual_seed(0)  # the same weights again, in float32
        exact = WorldModel(override(DEBUG, model={"fast_kernels": False}), action_size=1)
        exact.loss_terms(batch, gen(5))[0].backward()
        assert_bf16_grads_as_accurate(grads(fast_model), grads(plain), grads(exact))


# ---------------------------------------------------------------------------------------------
# Checkpoints of the older layouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_checkpoint_of_the_older_layouts_loads(cell: str, fast: bool) -> None:
    """A tiny model saved by the code before the torch layouts (commit 713e0be) computes the
    same loss terms here; for the GRU its Adam moments are rearranged too: the next update
    gives the parameters the old code computed."""
    saved = torch.load(LEGACY, weights_only=True)[cell]
    assert "rssm.cell.gates.weight" not in saved["model"]  # really the older layout
    model = WorldModel(override(legacy_config(cell), model={"fast_kernels": fast}), action_size=1)
    state, moved = upgrade_model_state(saved["model"])
    assert set(state) == set(model.state_dict())
    model.load_state_dict(saved["model"])
    _, terms = model.loss_terms(legacy_batch(), gen(2))
    for name, value in saved["loss_terms"].items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name
    if cell == "gru":
        old_names, new_names = list(saved["model"]), list(state)  # the order is kept
        trainer = WorldModelTrainer(model)
        trainer.load_state_dict(saved["trainer"], moved)
        trainer.update(legacy_batch(), gen(2))
        for name, p in model.named_parameters():
            old = old_names[new_names.index(name)]
            expected = saved["after_second_update"][old]
            expected = moved[name](expected) if name in moved else expected
            torch.testing.assert_close(p.detach(), expected, msg=name)
