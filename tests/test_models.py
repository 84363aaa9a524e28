"""World model: faithfulness to the original, shapes, the SSM's loop, KL, persistence, devices."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from model_helpers import blob_batch, gen, make, one_thread  # noqa: F401 (a fixture)
from torch import nn

from planet_torch.config import DEBUG, PAPER, override
from planet_torch.models import (
    NOISE_BLOCK,
    RSSM,
    SSM,
    Decoder,
    Encoder,
    FusedAdam,
    GRUBlockCell,
    State,
    WorldModel,
    WorldModelTrainer,
    kl_normal,
    postprocess,
    preprocess,
    uniform_noise,
)

# ---------------------------------------------------------------------------------------------
# Faithfulness
# ---------------------------------------------------------------------------------------------


def test_paper_preset_is_the_original() -> None:
    m, loss, opt = PAPER.model, PAPER.loss, PAPER.optim
    table = {
        (m.kind, m.cell, m.mean_only, m.future_rnn): ("rssm", "gru", False, True),
        (m.belief_size, m.state_size, m.hidden_size, m.min_stddev): (200, 30, 200, 0.1),
        (m.cnn_depth, m.reward_layers, m.reward_units, m.image_bits): (32, 3, 300, 5),
        (m.compute_dtype, m.state_diagnostics): ("float32", False),
        (loss.image_scale, loss.reward_scale, loss.kl_scale, loss.free_nats): (1.0, 10.0, 1.0, 3.0),
        (loss.overshooting_distance, loss.global_kl_scale): (0, 0.0),
        (opt.learning_rate, opt.adam_eps, opt.grad_clip_norm, opt.warmup_updates): (
            1e-3,
            1e-4,
            1000.0,
            0,
        ),
        (PAPER.data.batch_size, PAPER.data.chunk_length): (50, 50),
    }
    for ours, original in table.items():
        assert ours == original
    model = WorldModel(PAPER, action_size=6)
    assert model.encoder.embed_size == 1024
    assert model.feature_size == 230
    assert isinstance(model.rssm, RSSM) and isinstance(model.rssm.cell, GRUBlockCell)
    hidden = [m.out_features for m in model.reward_head.net if isinstance(m, nn.Linear)]
    assert hidden == [300, 300, 300, 1]
    assert model.decoder.dense.out_features == 1024  # dense(1024), no activation, then deconvs
    deconvs = [m for m in model.decoder.net if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.out_channels, d.kernel_size[0], d.stride[0]) for d in deconvs] == [
        (128, 5, 2),
        (64, 5, 2),
        (32, 6, 2),
        (3, 6, 2),
    ]
    convs = [m for m in model.encoder.net if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 4, 2),
        (64, 4, 2),
        (128, 4, 2),
        (256, 4, 2),
    ]


def test_gru_cell_is_tf_gru_block_cell() -> None:
    """TF GRUBlockCell, written out: reset gate on h *before* the matmul; gate bias init 1."""
    torch.manual_seed(0)
    n_in, n_h, B = 5, 7, 3
    cell = GRUBlockCell(n_in, n_h)
    assert torch.all(cell.gates.bias == 1.0) and torch.all(cell.candidate.bias == 0.0)
    with torch.no_grad():  # non-trivial biases to check their placement too
        cell.gates.bias.uniform_(-1, 1)
        cell.candidate.bias.uniform_(-1, 1)
    x, h = torch.randn(B, n_in), torch.randn(B, n_h)
    w_ru, b_ru = cell.gates.weight.detach().numpy().T, cell.gates.bias.detach().numpy()
    w_c, b_c = cell.candidate.weight.detach().numpy().T, cell.candidate.bias.detach().numpy()
    xn, hn = x.numpy(), h.numpy()

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    ru = sigmoid(np.concatenate([xn, hn], 1) @ w_ru + b_ru)  # [r u] = σ([x, h] W_ru + b_ru)
    r, u = ru[:, :n_h], ru[:, n_h:]
    c = np.tanh(np.concatenate([xn, r * hn], 1) @ w_c + b_c)  # c = tanh([x, r∘h] W_c + b_c)
    expected = (1 - u) * c + u * hn  # h' = (1 - u)∘c + u∘h
    got, _ = cell(x, h)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # ... which is not torch's GRUCell (reset applied after the matmul)
    assert not isinstance(cell, nn.GRUCell)


def test_tf_default_init() -> None:
    model = make(PAPER)
    for name, p in model.named_parameters():
        if name.endswith("bias") and "cell" not in name:
            assert torch.all(p == 0), name
    w = model.rssm.prior_out.mean.weight  # glorot-uniform [200 -> 30]
    assert w.abs().max() <= math.sqrt(6 / (200 + 30))
    assert w.abs().max() > 0.9 * math.sqrt(6 / (200 + 30))


def test_preprocess_matches_original() -> None:
    image = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8, generator=gen(0))
    x = preprocess(image, 5, gen(1))
    assert x.shape == (2, 3, 3, 64, 64) and x.dtype == torch.float32
    assert x.reshape(6, 3, 64, 64).is_contiguous(memory_format=torch.channels_last)
    base = torch.floor(image.float() / 8) / 32 - 0.5  # floor(u8 / 2^3) / 32 - 0.5
    noise = x.movedim(-3, -1) - base
    assert noise.min() >= 0 and noise.max() < 1 / 32
    assert noise.std() > 0.25 / 32  # ~U[0, 1/32): std 0.29 / 32
    assert torch.equal(x, preprocess(image, 5, gen(1)))  # the generator decides the noise
    assert torch.equal(postprocess(x, 5), image & 0xF8)  # quantised value, back exactly
    assert postprocess(torch.full((3, 64, 64), 9.0)).max() == 255  # clipped


def test_a_large_noise_draw_is_uniform_and_the_generators_alone() -> None:
    """A training batch's noise (≥ NOISE_BLOCK elements, numpy streams per block, threaded):
    U[0, 1) in every block, blocks unlike each other, the same values for the same generator
    state at one thread or two, fresh values on the next draw."""
    shape = (3 * NOISE_BLOCK + 12345,)  # three full blocks and a part
    draws, previous = {}, torch.get_num_threads()  # (this module runs at one thread)
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            g = gen(7)
            draws[threads] = (uniform_noise(shape, g), uniform_noise(shape, g))
    finally:
        torch.set_num_threads(previous)
    first, second = draws[1]
    assert first.shape == shape and first.dtype == torch.float32
    assert torch.equal(first, draws[2][0]) and torch.equal(second, draws[2][1])
    assert not torch.equal(first, second)
    blocks = list(first.split(NOISE_BLOCK))
    for block in blocks:
        assert block.min() >= 0 and block.max() < 1
        assert abs(block.mean().item() - 0.5) < 0.01
        assert abs(block.var().item() - 1 / 12) < 0.002
    # neighbouring blocks are different streams: uncorrelated, not shifted copies
    a, b = blocks[0], blocks[1]
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.01
    assert not torch.isin(a[:1000], b).all()
    # a draw below one block is torch's own generator, as before
    assert torch.equal(uniform_noise((5, 7), gen(3)), torch.rand((5, 7), generator=gen(3)))


def test_a_training_batch_is_preprocessed_in_one_pass_bit_for_bit() -> None:
    """Above one noise block, :func:`preprocess` adds the levels, scales and shifts inside the
    noise's own blocks: the same bits as the plain torch expression on the same noise, at one
    thread or two, for 5 and 8 bits, and a view in the channels-last layout as before."""
    image = torch.randint(0, 256, (7, 31, 64, 64, 3), dtype=torch.uint8, generator=gen(0))
    assert image.numel() > 2 * NOISE_BLOCK  # blocks, and a part block at the end
    previous = torch.get_num_threads()
    try:
        for threads, bits in ((1, 5), (2, 5), (2, 8)):
            torch.set_num_threads(threads)
            x = preprocess(image, bits, gen(4))
            levels = image >> (8 - bits)
            plain = uniform_noise(image.shape, gen(4)).add_(levels).mul_(1 / 2**bits).sub_(0.5)
            assert x.dtype == torch.float32 and x.shape == (7, 31, 3, 64, 64)
            assert torch.equal(x, plain.movedim(-1, -3)), (threads, bits)
            assert x.reshape(-1, 3, 64, 64).is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------
# Shapes and layer equivalences
# ---------------------------------------------------------------------------------------------


def test_shapes_through_every_module() -> None:
    T, B, A, d = 3, 2, 4, 4
    enc, dec = Encoder(d), Decoder(20, d)
    x = preprocess(torch.zeros(T, B, 64, 64, 3, dtype=torch.uint8), 5)
    embed = enc(x)
    assert embed.shape == (T, B, 32 * d)
    assert dec(torch.randn(T, B, 20)).shape == (T, B, 3, 64, 64)
    for rssm in (
        RSSM(A, 32 * d, state_size=6, belief_size=14, hidden_size=9),
        RSSM(A, 32 * d, state_size=6, belief_size=14, hidden_size=9, cell="lstm"),
        SSM(A, 32 * d, state_size=6, hidden_size=9),
    ):
        action = torch.randn(T, B, A)
        post, prior = rssm.observe(embed, action)
        H = rssm.belief_size
        for s in (post, prior):
            assert [tuple(v.shape) for v in s] == [(T, B, 6)] * 3 + [(T, B, H)] * 2
        assert rssm.features(post).shape == (T, B, rssm.feature_size)
        assert rssm.kl(post, prior).shape == (T, B)
        last = post.map(lambda v: v[-1])
        assert rssm.imagine(torch.randn(5, B, A), last).sample.shape == (5, B, 6)
        assert rssm.img_step(last, action[0]).belief.shape == (B, H)
        post1, prior1 = rssm.obs_step(last, action[0], embed[0])
        assert post1.sample.shape == prior1.sample.shape == (B, 6)


@pytest.mark.parametrize("mean_only", [False, True])
def test_ssm_observe_loop_equals_single_steps(mean_only: bool) -> None:
    """The SSM's optimised sequence loops compute what stepping one step at a time computes,
    with sampling on (the same noise) and off (the RSSM's: tests/test_fast_kernels.py)."""
    torch.manual_seed(0)
    T, B, A, E, S = 4, 3, 2, 10, 5
    model = SSM(A, E, S, 8, mean_only=mean_only)
    embed, action = torch.randn(T, B, E), torch.randn(T, B, A)
    post, prior = model.observe(embed, action, generator=gen(3))
    eps = None if mean_only else torch.randn(2, T, B, S, generator=gen(3))  # the same draw
    state = model.initial_state(B)
    for t in range(T):
        noise = None if eps is None else (eps[0, t], eps[1, t])
        state, p = model.obs_step(state, action[t], embed[t], noise=noise)
        for a, b in zip((*state, *p), (*post, *prior), strict=True):
            torch.testing.assert_close(a, b[t], rtol=1e-5, atol=1e-6)
    start = post.map(lambda v: v[1])
    imagined = model.imagine(action[2:], start, gen(4))
    eps = None if mean_only else torch.randn(2, B, S, generator=gen(4))
    first = model.img_step(start, action[2], noise=None if eps is None else eps[0])
    step = model.img_step(first, action[3], noise=None if eps is None else eps[1])
    for a, b in zip(step, imagined.map(lambda v: v[1]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_kl_normal_matches_torch_distributions() -> None:
    g = gen(0)
    m1, m2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    s1, s2 = torch.rand(4, 6, generator=g) + 0.1, torch.rand(4, 6, generator=g) + 0.1
    empty = torch.zeros(4, 0)
    ours = kl_normal(State(m1, s1, m1, empty, empty), State(m2, s2, m2, empty, empty))
    q = torch.distributions.Normal(m1, s1)
    p = torch.distributions.Normal(m2, s2)
    torch.testing.assert_close(ours, torch.distributions.kl_divergence(q, p).sum(-1))


# ---------------------------------------------------------------------------------------------
# Persistence, devices, acting helpers
# ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_outputs() -> None:
    model = make(seed=1)
    WorldModelTrainer(model).update(blob_batch(), gen(0))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = make(seed=2)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    batch = blob_batch(seed=4)
    assert model.loss(batch, gen(9))[1] == clone.loss(batch, gen(9))[1]
    frames = batch["image"], batch["action"]
    assert torch.equal(
        model.open_loop(*frames, generator=gen(3)), clone.open_loop(*frames, generator=gen(3))
    )


def test_plain_modules_move_between_devices() -> None:
    model = make()
    assert model.to("cpu") is model and model.to(torch.device("cpu")).device.type == "cpu"
    for module in model.modules():
        assert not isinstance(module, torch.jit.ScriptModule | torch.jit.TracedModule), module


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_plain_modules_move_to_cuda_and_compute_the_same() -> None:
    """docs/troubleshooting.md: '.to("cuda") just works' -- every parameter moves, the loss is
    finite, and the decoder computes what it computes on the CPU (float32; the loose tolerance
    admits TF32 convolutions, which torch allows on GPUs by default: ~1e-3 relative)."""
    cfg = override(DEBUG, model={"compute_dtype": "float32"})
    model = make(cfg)
    features = torch.randn(5, model.feature_size, generator=gen(3))
    with torch.inference_mode():
        on_cpu = model.decode(features)
    cuda = model.to("cuda")
    assert cuda.device.type == "cuda" and all(p.is_cuda for p in cuda.parameters())
    batch = {k: v.cuda() for k, v in blob_batch().items()}
    _, terms = cuda.loss(batch, torch.Generator("cuda").manual_seed(0))
    assert math.isfinite(terms["total"])
    with torch.inference_mode():
        on_gpu = cuda.decode(features.cuda()).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-2, rtol=1e-2)


def test_acting_helpers() -> None:
    model = make()
    batch = blob_batch()
    B = batch["action"].shape[1]
    predicted = model.open_loop(batch["image"], batch["action"], context=3, generator=gen(0))
    assert predicted.shape == batch["image"].shape and predicted.dtype == torch.uint8
    with torch.inference_mode():
        state = model.initial_state(B)
        for t in range(3):
            state = model.filter(state, batch["action"][t], batch["image"][t], gen(t))
        assert state.sample.shape == (B, DEBUG.model.state_size)
        start = state.map(lambda v: v.repeat_interleave(5, 0))  # 5 candidates per env
        returns = model.imagine_return(start, torch.randn(4, B * 5, 1), gen(0))
    assert returns.shape == (B * 5,) and torch.isfinite(returns).all()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_bf16_embedding_without_autograd_is_autocasts(fast: bool) -> None:
    """Acting embeds frames on a copy of the encoder cast to bf16 once: bit for bit what
    autocast gives (with the same noise), again after an update has changed the weights, and
    the copy is in no state dict."""
    cfg = override(DEBUG, model={"compute_dtype": "bfloat16", "fast_kernels": fast})
    model, batch = make(cfg), blob_batch()
    keys = set(model.state_dict())
    trainer = WorldModelTrainer(model)
    for update in range(2):
        with torch.no_grad():
            cached = model.embed(batch["image"], gen(4))
        with torch.enable_grad():
            autocast = model.embed(batch["image"], gen(4))
        assert autocast.requires_grad and not cached.requires_grad
        assert torch.equal(cached, autocast.detach()), update
        trainer.update(batch, gen(update))
    assert set(model.state_dict()) == keys


def test_fused_adam_is_torch_adam_and_bumps_versions():
    """FusedAdam takes the steps of torch's per-tensor Adam (to float rounding), with the
    step-dependent eps the trainer sets, and every updated parameter's version moves (the cast
    encoder and autograd key on it; torch's fused kernel alone leaves it)."""
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(30, 20, generator=g), torch.randn(20, generator=g)]
    runs = {}
    for name, make_opt in (
        ("loop", lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-4, foreach=False)),
        ("fused", lambda ps: FusedAdam(ps, lr=1e-2, eps=1e-4)),
    ):
        params = [nn.Parameter(p.clone()) for p in start]
        opt, grads = make_opt(params), torch.Generator().manual_seed(1)
        for step in range(40):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            for group in opt.param_groups:
                group["eps"] = 1e-4 / math.sqrt(1 - 0.999 ** (step + 1))
            versions = [p._version for p in params]
            opt.step()
            assert all(p._version > v for p, v in zip(params, versions, strict=True))
        runs[name] = params
    assert runs["fused"][0].sub(start[0]).abs().mean() > 0.03  # it moved (40 steps of ~1e-2)
    for a, b in zip(runs["loop"], runs["fused"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
