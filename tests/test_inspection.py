"""`planet inspect`'s open loop on a chosen part of an episode, and its whole-episode error.

(The report end to end, on real runs: test_training's one-writer test, test_any_env's gymnasium
run, test_dreamer's values figure; its user errors: test_cli's USER_ERRORS.)"""

from __future__ import annotations

import numpy as np
import torch
from model_helpers import (  # noqa: F401 (one_thread: a fixture)
    blob_batch,
    gen,
    make,
    one_thread,
    tiny,
)

from planet_torch.models import postprocess
from planet_torch.replay.episodes import Episode
from planet_torch.training.inspection import (
    CONTEXT,
    DRIFT_STRIDE,
    Report,
    _filter,
    _open_loop,
    _reconstruction_mse,
    _reward_drift,
)


def _episode(rows: int, seed: int) -> Episode:
    batch = blob_batch(T=rows, B=1, seed=seed)
    return Episode(
        image=batch["image"][:, 0].numpy(),
        action=batch["action"][:, 0].numpy(),
        reward=np.concatenate([[0.0], batch["reward"][1:, 0].numpy()]).astype(np.float32),
        discount=batch["discount"][:, 0].numpy(),
    )


def test_open_loop_start_selects_the_rows(tmp_path):
    """The open loop from row k of an episode is the open loop of the episode that starts at its
    row k: the same frames and actions (a shift of one, in either, changes the error)."""
    model = make().eval()
    tail = _episode(12, seed=1)
    head = _episode(3, seed=2)
    longer = Episode(  # 3 other rows, then the same 12
        image=np.concatenate([head.image, tail.image]),
        action=np.concatenate([head.action, tail.action]),
        reward=np.zeros(15, np.float32),
        discount=np.ones(15, np.float32),
    )
    numbers = []
    for episode, start in ((tail, 0), (longer, 3)):
        report = Report("t")
        (tmp_path / str(start)).mkdir()
        with torch.inference_mode():
            _open_loop(
                model, episode, start, 6, np.zeros(episode.num_rows), tmp_path / str(start),
                report, gen(7),
            )  # fmt: skip
        numbers.append(report.numbers)
    assert numbers[1]["open_loop_start"] == 3
    for key in ("open_loop_mse_context", "open_loop_mse_imagined"):
        assert numbers[0][key] == numbers[1][key], key
    # ... and a start one row later is a different open loop
    report = Report("t")
    with torch.inference_mode():
        _open_loop(model, longer, 4, 6, np.zeros(15), tmp_path / "3", report, gen(7))
    assert report.numbers["open_loop_mse_imagined"] != numbers[1]["open_loop_mse_imagined"]


def test_whole_episode_reconstruction_error_in_chunks():
    """The filtered reconstruction error of a 250-row episode (decoded 100 rows at a time) is
    the error of each row's own decoded frame."""
    model = make().eval()
    episode = _episode(250, seed=3)
    with torch.inference_mode():
        posterior, _ = _filter(model, episode, gen(5))
        per_step = _reconstruction_mse(model, episode, posterior)
        features = model.rssm.features(posterior)
        for t in (0, 99, 100, 249):
            frame = postprocess(model.decode(features[t : t + 1]), model.cfg.model.image_bits)
            error = (frame[0, 0].numpy().astype(np.float32) - episode.image[t]) / 255.0
            assert np.isclose(per_step[t], (error**2).mean(), rtol=1e-5), t
    assert per_step.shape == (250,) and CONTEXT < 250


def test_reward_drift_imagines_the_rows_after_each_start(tmp_path):
    """The drift curve's error k decisions ahead is the mean, over starts every DRIFT_STRIDE
    rows, of one rollout per start from its filtered state with the episode's next actions
    (a deterministic model, so each rollout can be replayed alone)."""
    model = make(tiny(model={"mean_only": True})).eval()
    episode = _episode(40, seed=4)
    H = 6
    report = Report("t")
    with torch.inference_mode():
        posterior, _ = _filter(model, episode, gen(5))
        _reward_drift(model, episode, posterior, H, 4, 0.1, tmp_path, report, gen(6))
        errors = []
        for start in range(CONTEXT - 1, episode.num_rows - H, DRIFT_STRIDE):
            action = torch.from_numpy(episode.action[start + 1 : start + 1 + H, None])
            prior = model.rssm.imagine(action, posterior.map(lambda x, s=start: x[s]), gen(9))
            reward = model.reward_head(model.rssm.features(prior))[:, 0].numpy()
            errors.append(np.abs(reward - episode.reward[start + 1 : start + 1 + H]))
    expected = np.mean(errors, axis=0)
    assert len(errors) == 6  # starts 4, 9, .., 29: the last one imagines rows 30-35 of 0-39
    np.testing.assert_allclose(report.numbers["reward_drift_mae"], expected, rtol=1e-5)
    constant = report.numbers["reward_mae_constant"]
    worse = [k for k in range(H) if expected[k] >= constant]
    assert report.numbers["reward_trusted_decisions"] == (worse[0] if worse else H)
    assert (tmp_path / "reward_drift.png").exists()
