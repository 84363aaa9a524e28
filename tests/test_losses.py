"""Loss terms as the original's, overshooting, gradients, training, determinism, variants."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from model_helpers import HALF_LOG_2PI, PIXEL_CONST, blob_batch, gen, make, one_thread, tiny  # noqa: F401 (a fixture)

from planet_torch.config import DEBUG, PAPER
from planet_torch.errors import UserError
from planet_torch.models import WorldModel, WorldModelTrainer, preprocess

# ---------------------------------------------------------------------------------------------
# Loss terms
# ---------------------------------------------------------------------------------------------


def _manual_kl(model: WorldModel, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    """Per-(t, b) KL with the same random draws as ``model.loss`` (preprocess, then observe)."""
    g = gen(seed)
    x = preprocess(batch["image"], model.cfg.model.image_bits, g)
    post, prior = model.rssm.observe(model.encoder(x), batch["action"], generator=g)
    return model.rssm.kl(post, prior)


def test_free_nats_clamp_each_time_and_batch_element() -> None:
    batch = blob_batch()
    model = make()
    kl = _manual_kl(model, batch, seed=3).detach()
    free = float(kl.median())  # some elements above, some below
    model.cfg = tiny(loss={"free_nats": free})
    _, terms = model.loss(batch, gen(3))
    assert terms["kl"] == pytest.approx(float(kl.mean()), rel=1e-5)
    expected = float((kl - free).clamp(min=0).mean())
    assert terms["kl_loss"] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(max(0.0, float(kl.mean()) - free))  # not the clamped mean


def test_free_nats_over_the_batch_clamp_the_mean_once() -> None:
    """``loss.free_nats_over = "batch"`` (Dreamer's): max(0, mean KL - free nats); below the
    threshold the KL term sends no gradient at all, above it every element's KL is pushed down.
    Overshooting at distance 1 equals that term, and an unknown mode is a user error."""
    batch = blob_batch()
    model = make()
    kl = _manual_kl(model, batch, seed=3).detach()
    above = 0.5 * float(kl.mean() + kl.max())  # above the mean, below the largest element
    for free in (float(kl.median()), above, 0.5 * float(kl.mean())):
        model.cfg = tiny(loss={"free_nats": free, "free_nats_over": "batch"})
        _, terms = model.loss(batch, gen(3))
        expected = max(0.0, float(kl.mean()) - free)
        assert terms["kl_loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # Above the mean: no gradient from the KL term; per element, some elements still pull.
    for over, has_gradient in (("batch", False), ("element", True)):
        model.zero_grad()
        model.cfg = tiny(loss={"free_nats": above, "free_nats_over": over})
        _, tensors = model.loss_terms(batch, gen(3))
        tensors["kl_loss"].backward()
        grads = [p.grad for p in model.rssm.parameters() if p.grad is not None]
        assert any(bool(g.abs().sum() > 0) for g in grads) == has_gradient, over
    one = {"overshooting_distance": 1, "overshooting_first_distance": 1}
    cfg = tiny(
        loss={**one, "overshooting_kl_scale": 1.0, "free_nats": 0.05, "free_nats_over": "batch"}
    )
    _, terms = make(cfg).loss(batch, gen(2))
    assert terms["kl_loss"] > 0  # above the free nats: a value that could differ
    assert terms["overshooting_kl"] == pytest.approx(terms["kl_loss"], rel=1e-5)
    with pytest.raises(UserError, match="free-nats-over"):
        tiny(loss={"free_nats_over": "time"}).validate()


def test_loss_values_are_the_originals() -> None:
    """image: Σ_pixels -log N(x; μ, 1); reward ×10; free nats; all means over (t, b)."""
    batch = blob_batch()
    model = make(tiny(loss={"free_nats": 0.0}))
    total, terms = model.loss(batch, gen(5))
    with torch.no_grad():
        g = gen(5)
        x = preprocess(batch["image"], 5, g)
        post, prior = model.rssm.observe(model.encoder(x), batch["action"], generator=g)
        features = model.rssm.features(post)
        mean = model.decoder(features)
        image_nll = (0.5 * (x - mean) ** 2 + HALF_LOG_2PI).sum((2, 3, 4)).mean().item()
        reward_mean = model.reward_head(features)
        reward_nll = (0.5 * (batch["reward"] - reward_mean) ** 2 + HALF_LOG_2PI).mean().item()
        kl = model.rssm.kl(post, prior).mean().item()
    assert terms["image_nll"] == pytest.approx(image_nll, rel=1e-5)
    assert terms["reward_nll"] == pytest.approx(reward_nll, rel=1e-5)
    assert total.item() == pytest.approx(image_nll + 10 * reward_nll + kl, rel=1e-5)


def test_overshooting_distance_one_is_the_plain_kl() -> None:
    batch = blob_batch()
    one = {"overshooting_distance": 1, "overshooting_first_distance": 1}
    cfg = tiny(loss={**one, "overshooting_kl_scale": 1.0, "free_nats": 0.2})
    _, terms = make(cfg).loss(batch, gen(2))
    assert terms["overshooting_kl"] == pytest.approx(terms["kl_loss"], rel=1e-5)
    cfg3 = tiny(
        loss={
            "overshooting_distance": 3,
            "overshooting_kl_scale": 1.0,
            "free_nats": 0.2,
            "overshooting_reward_scale": 1.0,
        }
    )
    total, terms3 = make(cfg3).loss(batch, gen(2))
    assert math.isfinite(terms3["overshooting_kl"]) and math.isfinite(total.item())
    assert terms3["overshooting_kl"] != pytest.approx(terms3["kl_loss"])
    assert "overshooting_reward_nll" in terms3
    with pytest.raises(UserError, match="first-distance"):
        tiny(loss={"overshooting_distance": 1}).validate()  # 2..1: no distance at all


@pytest.mark.parametrize("first", [1, 2])
def test_overshooting_equals_a_hand_written_loop(first: int) -> None:
    """Distances first..3 against one open-loop rollout per start row, written out: the prior
    started before row j (zero state for j = 0, else q_{j-1}) and stepped d times with the
    actions of rows j..j+d-1 is compared with q_{j+d-1}; clamped KL, mean over valid entries.
    The reward term likewise: the reward head on each such prior against the reward of row
    j + d - 1, -log N(r; r̂, 1) written out. Means only (``mean_only``), so both sides draw no
    noise and must agree exactly."""
    D, free = 3, 0.1
    loss = {"free_nats": free, "overshooting_reward_scale": 1.0}
    cfg = tiny(model={"mean_only": True}, loss=loss)
    model = make(cfg)
    batch = blob_batch()
    g = gen(0)
    embed = model.encoder(preprocess(batch["image"], 5, g))
    post, _ = model.rssm.observe(embed, batch["action"], generator=g)
    kl, reward_nll = model.overshooting(post, batch["action"], batch["reward"], D, first=first)
    T, B = batch["action"].shape[:2]
    kl_terms, reward_terms = [], []
    for j in range(T):
        zero = model.rssm.initial_state(B, batch["action"].device)
        state = zero if j == 0 else post.map(lambda x, j=j: x[j - 1])
        for d in range(1, D + 1):
            t = j + d - 1  # the row this rollout reaches after d steps
            if t >= T:
                break
            state = model.rssm.img_step(state, batch["action"][t])
            if d >= first:
                target = post.map(lambda x, t=t: x[t])
                kl_terms.append((model.rssm.kl(target, state) - free).clamp(min=0.0))
                predicted = model.reward_head(model.rssm.features(state))
                error = batch["reward"][t] - predicted
                reward_terms.append(0.5 * error**2 + 0.5 * math.log(2 * math.pi))
    assert kl.item() == pytest.approx(torch.cat(kl_terms).mean().item(), rel=1e-5)
    assert reward_nll is not None
    assert reward_nll.item() == pytest.approx(torch.cat(reward_terms).mean().item(), rel=1e-5)


def test_overshooting_rolls_prior_samples_as_the_original() -> None:
    """The open-loop rollouts step on sampled states, one draw per step (the original's
    ``sample`` of each prior): the same generator gives the same loss, another draws another.
    A rollout on means would give the same value for every generator."""
    cfg = tiny(loss={"free_nats": 0.0})
    model = make(cfg)
    batch = blob_batch()
    embed = model.encoder(preprocess(batch["image"], 5, gen(0)))
    post, _ = model.rssm.observe(embed, batch["action"], generator=gen(0))

    def kl(seed: int) -> float:
        return model.overshooting(post, batch["action"], batch["reward"], 3, gen(seed))[0].item()

    assert kl(1) == kl(1)
    assert kl(1) != kl(2)


def test_overshooting_targets_get_no_gradient() -> None:
    """Only the open-loop priors are pulled towards the posterior targets (the original)."""
    batch = blob_batch()
    cfg = tiny(loss={"free_nats": 0.0})
    model = make(cfg)
    g = gen(0)
    x = preprocess(batch["image"], 5, g)
    embed = model.encoder(x).detach().requires_grad_()
    post, _ = model.rssm.observe(embed, batch["action"], generator=g)
    # Distance 1 from the *fixed* zero state only at t = 0: the target at t=0 is q_0.
    kl, _ = model.overshooting(post, batch["action"], batch["reward"], 1)
    (grad,) = torch.autograd.grad(kl, embed)
    assert grad[-1].abs().sum() == 0  # q_{T-1} is only a target: no gradient through it
    assert grad[0].abs().sum() > 0  # q_0 also starts a rollout: gradient through the prior


def test_global_kl_term() -> None:
    batch = blob_batch()
    assert "global_kl" not in make().loss(batch, gen(0))[1]  # scale 0: skipped
    totals = {}
    for scale in (0.1, 10.1):  # same weights, same noise: only the global term's weight differs
        total, terms = make(tiny(loss={"global_kl_scale": scale})).loss(batch, gen(0))
        totals[scale] = total.item()
    assert terms["global_kl"] > 0.1  # the posterior is far from N(0, I) on these blobs
    # total ≈ 11 000 (the image NLL): float32 resolves it to ≈ 0.001, so weigh the term 10×
    assert totals[10.1] - totals[0.1] == pytest.approx(10 * terms["global_kl"], rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Gradients, training, determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("free_nats", [PAPER.loss.free_nats, 0.0])
def test_gradients_reach_every_parameter(free_nats: float) -> None:
    cfg = dataclasses.replace(DEBUG, loss=dataclasses.replace(PAPER.loss, free_nats=free_nats))
    model = make(cfg)
    total, _ = model.loss(blob_batch(), gen(0))
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        if free_nats == 0.0:  # with free nats the KL may sit below the clamp: zero, not absent
            assert p.grad.abs().sum() > 0, name


def test_state_probe_never_shapes_the_model() -> None:
    cfg = tiny(model={"state_diagnostics": True})
    model = make(cfg, state_size=2)
    assert model.state_probe is not None
    _, terms = model.loss_terms(blob_batch(), gen(0))
    terms["state_nll"].backward()
    for name, p in model.named_parameters():
        if name.startswith("state_probe."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # and the trainer's model grad norm does not include it
    trainer = WorldModelTrainer(model)
    assert len(trainer.model_params) + len(trainer.probe_params) == len(list(model.parameters()))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_overfits_one_small_batch(dtype: str) -> None:
    batch = blob_batch()
    model = make(
        tiny(model={"cnn_depth": 4, "compute_dtype": dtype}, optim={"learning_rate": 3e-3})
    )
    trainer = WorldModelTrainer(model)
    first = trainer.update(batch, gen(0))
    for i in range(1, 100):
        last = trainer.update(batch, gen(i))
    # 0.5·SSE per frame: 1440 at the start; predicting only the background would leave 150.
    # Measured after 100 updates (Zen 1, session 39): 92.3 float32 / 96.9 bfloat16, 0.064 /
    # 0.067 of the start (after 150: 75.3 / 80.9; after 250: 60.4 / 63.6 on Zen 3, 60.3 / 65.2
    # on Zen 4). Bounds: 0.12 of the start (1.8x), and below the background-only 150 (1.55x:
    # what "learned" means here). 100 updates, not 250: emulated bf16 (no avx512_bf16) takes
    # 17 s for 100 on Zen 1, 34 s for 250 on Zen 3.
    assert last["image_nll"] - PIXEL_CONST < 0.12 * (first["image_nll"] - PIXEL_CONST)
    assert last["image_nll"] - PIXEL_CONST < 150
    assert last["reward_nll"] < first["reward_nll"]


def test_same_seed_same_losses() -> None:
    runs = []
    for _ in range(2):
        model = make(seed=7)
        trainer = WorldModelTrainer(model)
        runs.append([trainer.update(blob_batch(), gen(i)) for i in range(3)])
    assert runs[0] == runs[1]
    other = WorldModelTrainer(make(seed=8)).update(blob_batch(), gen(0))
    assert other != runs[0][0]


def test_learning_rate_warmup_and_tf_adam_epsilon() -> None:
    model = make(tiny(optim={"warmup_updates": 4}))
    trainer = WorldModelTrainer(model)
    lrs = []
    for i in range(5):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        metrics = trainer.update(blob_batch(), gen(i))
        lrs.append(metrics["lr"])
        if i == 0:  # TF Adam, first step: Δ = -lr·sqrt(1-β2)/(1-β1) · m / (sqrt(v) + ε_hat)
            p = model.reward_head.net[-1].weight
            g = p.grad
            m, v = 0.1 * g, 0.001 * g**2
            step = metrics["lr"] * math.sqrt(1 - 0.999) / (1 - 0.9) * m / (v.sqrt() + 1e-4)
            name = "reward_head.net.2.weight"
            torch.testing.assert_close(p.detach(), before[name] - step, rtol=1e-4, atol=1e-7)
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize(
    "model_cfg,loss_cfg",
    [
        ({"kind": "rssm", "cell": "gru"}, {}),
        ({"kind": "rssm", "cell": "lstm"}, {}),
        ({"kind": "rssm", "future_rnn": False}, {}),
        ({"kind": "ssm"}, {}),
        ({"kind": "rssm", "mean_only": True}, {"kl_scale": 0.0}),
        ({"kind": "rssm", "compute_dtype": "bfloat16"}, {}),
    ],
)
def test_each_variant_trains_a_step(model_cfg: dict, loss_cfg: dict) -> None:
    model = make(tiny(model=model_cfg, loss=loss_cfg))
    trainer = WorldModelTrainer(model)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = trainer.update(blob_batch(), gen(0))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if model_cfg.get("mean_only"):
        post, _ = model.rssm.observe(torch.randn(3, 2, 128), torch.randn(3, 2, 1))
        assert torch.equal(post.sample, post.mean)
    if model_cfg["kind"] == "ssm":
        assert model.feature_size == DEBUG.model.state_size  # the sample alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_half_squared_error_takes_a_bf16_mean_as_its_float32_cast(dtype):
    """The image loss on the decoder's own dtype equals the loss on its float32 cast, bit for
    bit: the same value, and the same gradient once rounded to the decoder's dtype (what the
    cast's backward did); channels-last layouts as the decoder writes them."""
    from planet_torch.models.world_model import _HalfSquaredError

    g = torch.Generator().manual_seed(0)
    shape = (4, 3, 3, 16, 16)  # [T, B, 3, H, W]
    frames = torch.randn(12, 16, 16, 3, generator=g).movedim(-1, -3)  # channels-last
    base = frames.to(dtype).reshape(shape)
    target = (torch.rand(4, 3, 16, 16, 3, generator=g) - 0.5).movedim(-1, -3)
    grads = {}
    for name in ("direct", "cast"):
        mean = base.detach().clone().requires_grad_(True)
        arg = mean if name == "direct" else mean.float()
        loss = _HalfSquaredError.apply(arg, target)
        (loss * 1.7).backward()
        grads[name] = (loss.detach(), mean.grad)
        assert mean.grad.dtype == dtype
    assert torch.equal(grads["direct"][0], grads["cast"][0])
    assert torch.equal(grads["direct"][1], grads["cast"][1])
    assert grads["direct"][0].dtype == torch.float32
