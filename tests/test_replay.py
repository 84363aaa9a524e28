"""Replay: episode alignment, atomic files, tolerant loading, chunk sampling, memory."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from planet_torch.errors import UserError
from planet_torch.replay import (
    ChunkSampler,
    Episode,
    EpisodeBuilder,
    EpisodeDir,
    EpisodeStore,
    ReplayWarning,
    batch_to_torch,
)

SIZE = 8  # image side; the replay code does not care about 64


def image_of(episode_id: int, t: int, size: int = SIZE) -> np.ndarray:
    """An observation that encodes (episode, time) in its first pixel."""
    image = np.zeros((size, size, 3), np.uint8)
    image[0, 0] = (episode_id, t, 7)
    return image


def make_episode(
    episode_id: int, steps: int, terminated: bool = False, state: bool = False, size: int = SIZE
) -> Episode:
    """a_k = (k, id), r after step k = 10 k + id + 0.5; state after step k = (k,)."""
    builder = EpisodeBuilder()

    def obs(t: int) -> object:
        image = image_of(episode_id, t, size)
        return {"image": image, "state": np.array([t], np.float32)} if state else image

    builder.start(obs(0))
    for k in range(steps):
        last = k == steps - 1
        builder.add(
            np.array([k, episode_id]), obs(k + 1), 10 * k + episode_id + 0.5, terminated and last
        )
    return builder.finish()


# ---------------------------------------------------------------------------------------------
# Episode and EpisodeBuilder
# ---------------------------------------------------------------------------------------------


def test_builder_alignment() -> None:
    ep = make_episode(3, steps=5, state=True)
    assert ep.num_rows == 6 and ep.policy_steps == 5
    assert ep.image.dtype == np.uint8 and ep.image.shape == (6, SIZE, SIZE, 3)
    assert ep.action.dtype == ep.reward.dtype == ep.discount.dtype == np.float32
    # Row 0: reset observation, zero action, zero reward.
    assert ep.image[0, 0, 0, 1] == 0
    np.testing.assert_array_equal(ep.action[0], [0, 0])
    assert ep.reward[0] == 0
    # Row t: o_t, the action a_{t-1} that produced it, and the reward of that step.
    for t in range(1, 6):
        assert ep.image[t, 0, 0, 1] == t
        np.testing.assert_array_equal(ep.action[t], [t - 1, 3])
        assert ep.reward[t] == 10 * (t - 1) + 3.5
        assert ep.state is not None and ep.state[t, 0] == t
    np.testing.assert_array_equal(ep.discount, np.ones(6))


def test_builder_terminal_and_truncation() -> None:
    assert make_episode(0, 4, terminated=True).discount.tolist() == [1, 1, 1, 1, 0]
    assert make_episode(0, 4, terminated=False).discount.tolist() == [1] * 5  # time limit
    builder = EpisodeBuilder()
    builder.start(image_of(0, 0))
    builder.add(np.zeros(2), image_of(0, 1), 1.0, True)
    with pytest.raises(RuntimeError, match="terminal"):
        builder.add(np.zeros(2), image_of(0, 2), 1.0, False)


def test_builder_copies_reused_buffers() -> None:
    buffer = image_of(0, 0)
    builder = EpisodeBuilder()
    builder.start(buffer)
    buffer[0, 0, 1] = 1  # an env wrapper that renders into the same array
    builder.add(np.zeros(1), buffer, 0.0, False)
    assert builder.finish().image[:, 0, 0, 1].tolist() == [0, 1]


def test_builder_and_episode_validate() -> None:
    builder = EpisodeBuilder()
    with pytest.raises(ValueError, match="uint8"):
        builder.start(np.zeros((SIZE, SIZE, 3), np.float32))
    builder.start(image_of(0, 0))
    builder.add(np.zeros(2), image_of(0, 1), 0.0, False)
    with pytest.raises(ValueError, match="action shape"):
        builder.add(np.zeros(3), image_of(0, 2), 0.0, False)
    with pytest.raises(ValueError, match="image shape"):
        builder.add(np.zeros(2), image_of(0, 2, size=4), 0.0, False)
    ep = make_episode(0, 3)
    with pytest.raises(ValueError, match="rows"):
        Episode(ep.image, ep.action[:-1], ep.reward, ep.discount)
    with pytest.raises(ValueError, match="float32"):
        Episode(ep.image, ep.action.astype(np.float64), ep.reward, ep.discount)
    shifted = ep.reward.copy()
    shifted[0] = 1.0
    with pytest.raises(ValueError, match="row 0"):
        Episode(ep.image, ep.action, shifted, ep.discount)


# ---------------------------------------------------------------------------------------------
# EpisodeDir
# ---------------------------------------------------------------------------------------------


def assert_same(a: Episode, b: Episode) -> None:
    assert a.arrays().keys() == b.arrays().keys()
    for key, value in a.arrays().items():
        other = b.arrays()[key]
        assert value.dtype == other.dtype
        np.testing.assert_array_equal(value, other, strict=True)


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    folder = EpisodeDir(tmp_path / "train_episodes")
    episodes = [make_episode(0, 5, state=True), make_episode(1, 7, terminated=True)]
    episodes[0].action[1:] += np.float32(1e-7)  # values that need all float32 bits
    for ep in episodes:
        folder.save(ep)
    loaded = EpisodeDir(tmp_path / "train_episodes").load_all()
    assert len(loaded) == 2
    for ep, back in zip(episodes, loaded, strict=True):
        assert_same(ep, back)


def test_names_indices_and_counters(tmp_path: Path) -> None:
    folder = EpisodeDir(tmp_path)
    assert len(folder) == 0 and folder.num_policy_steps == 0 and folder.load_all() == []
    paths = [folder.save(make_episode(i, steps)) for i, steps in enumerate([5, 12, 3])]
    assert [p.name for p in paths] == ["000000-len5.npz", "000001-len12.npz", "000002-len3.npz"]
    # A new object on the same folder (a resumed run) reconstructs the counters from names.
    again = EpisodeDir(tmp_path)
    assert len(again) == 3 and again.num_policy_steps == 20
    assert again.save(make_episode(3, 4)).name == "000003-len4.npz"
    assert [int(ep.image[0, 0, 0, 0]) for ep in again] == [0, 1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == [p.name for p in again.paths()]  # no temp files left


def test_bad_files_are_skipped_with_one_warning_each(tmp_path: Path) -> None:
    folder = EpisodeDir(tmp_path)
    for i in range(3):
        folder.save(make_episode(i, 6))
    # A save killed before its rename, a file cut in half, a file of another format.
    half = folder.save(make_episode(3, 6))
    data = half.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    (tmp_path / ".000004-len6.npz.1234.tmp").write_bytes(b"partial")
    np.savez_compressed(tmp_path / "000005-len6.npz", frames=np.zeros(3))

    with pytest.warns(ReplayWarning) as record:
        loaded = folder.load_all()
    assert [int(ep.image[0, 0, 0, 0]) for ep in loaded] == [0, 1, 2]
    messages = [str(w.message) for w in record]
    assert len(messages) == 3, messages
    assert any(".tmp" in m for m in messages)
    assert any("000003-len6.npz" in m for m in messages)
    assert any("missing keys" in m for m in messages)
    # Warned once per file, not on every scan.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(folder.load_all()) == 3


@pytest.mark.parametrize("fail_in", ["savez", "replace"])
def test_disk_full_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    folder = EpisodeDir(tmp_path)
    folder.save(make_episode(0, 4))

    def no_space(*args: object, **kwargs: object) -> None:
        if fail_in == "savez":
            args[0].write(b"half an episode")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    target = np if fail_in == "savez" else os
    monkeypatch.setattr(target, "savez_compressed" if fail_in == "savez" else "replace", no_space)
    with pytest.raises(UserError, match="disk full"):
        folder.save(make_episode(1, 4))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["000000-len4.npz"]
    assert folder.save(make_episode(1, 4)).name == "000001-len4.npz"  # resume works


def test_store_grows_from_saves_and_other_writers(tmp_path: Path) -> None:
    EpisodeDir(tmp_path).save(make_episode(0, 5))
    store = EpisodeStore(EpisodeDir(tmp_path))
    assert len(store) == 1
    store.add(make_episode(1, 5))
    assert len(EpisodeDir(tmp_path)) == 2 and store.refresh() == 0
    EpisodeDir(tmp_path).save(make_episode(2, 5))  # e.g. an env worker process
    assert store.refresh() == 1
    assert [int(ep.image[0, 0, 0, 0]) for ep in store] == [0, 1, 2]
    assert store.num_policy_steps == 15


# ---------------------------------------------------------------------------------------------
# ChunkSampler
# ---------------------------------------------------------------------------------------------


def check_chunks(batch_image: np.ndarray, action: np.ndarray, reward: np.ndarray) -> list[int]:
    """Assert every chunk is consecutive aligned rows of one episode; return chunk start rows."""
    length, batch = batch_image.shape[:2]
    starts = []
    for b in range(batch):
        ids = batch_image[:, b, 0, 0, 0].astype(int)
        ts = batch_image[:, b, 0, 0, 1].astype(int)
        assert (ids == ids[0]).all(), "chunk crosses an episode boundary"
        np.testing.assert_array_equal(ts, np.arange(ts[0], ts[0] + length))
        for i, t in enumerate(ts):
            expected_action = [0, 0] if t == 0 else [t - 1, ids[0]]
            expected_reward = 0.0 if t == 0 else 10 * (t - 1) + ids[0] + 0.5
            np.testing.assert_array_equal(action[i, b], expected_action)
            assert reward[i, b] == expected_reward
        starts.append(int(ts[0]))
    return starts


def test_sampler_shapes_and_alignment() -> None:
    episodes = [make_episode(i, steps, state=True) for i, steps in enumerate([9, 20, 15, 30])]
    batch = ChunkSampler(episodes).sample(16, 10, np.random.default_rng(0))
    assert batch.image.shape == (10, 16, SIZE, SIZE, 3) and batch.image.dtype == np.uint8
    assert batch.action.shape == (10, 16, 2) and batch.action.dtype == np.float32
    assert batch.reward.shape == batch.discount.shape == (10, 16)
    assert batch.state is not None and batch.state.shape == (10, 16, 1)
    np.testing.assert_array_equal(batch.state[:, :, 0], batch.image[:, :, 0, 0, 1])
    check_chunks(batch.image, batch.action, batch.reward)


def test_sampler_covers_offsets_and_never_crosses_episodes() -> None:
    # Episode 0 has 10 rows = exactly one chunk; episode 1 has 13 rows = offsets 0..3.
    sampler = ChunkSampler([make_episode(0, 9), make_episode(1, 12)])
    rng = np.random.default_rng(1)
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for _ in range(20):
        batch = sampler.sample(8, 10, rng)
        starts = check_chunks(batch.image, batch.action, batch.reward)
        for b, start in enumerate(starts):
            seen[int(batch.image[0, b, 0, 0, 0])].add(start)
    assert seen == {0: {0}, 1: {0, 1, 2, 3}}


def test_sampler_is_reproducible() -> None:
    sampler = ChunkSampler([make_episode(i, 25) for i in range(6)])
    a, b = (sampler.sample(8, 5, np.random.default_rng(42)) for _ in range(2))
    c = sampler.sample(8, 5, np.random.default_rng(43))
    for key, value in a.arrays().items():
        np.testing.assert_array_equal(value, b.arrays()[key])
    assert not np.array_equal(a.image, c.image)


def test_sampler_skips_short_episodes_and_errors_if_all_short() -> None:
    sampler = ChunkSampler([make_episode(0, 3), make_episode(1, 20), make_episode(2, 4)])
    batch = sampler.sample(32, 8, np.random.default_rng(0))
    assert set(batch.image[0, :, 0, 0, 0].tolist()) == {1}
    with pytest.raises(UserError, match="chunk-length"):
        sampler.sample(4, 22, np.random.default_rng(0))
    with pytest.raises(UserError, match="collect"):
        ChunkSampler([]).sample(4, 2, np.random.default_rng(0))


def test_sampler_sees_episodes_added_to_a_store(tmp_path: Path) -> None:
    store = EpisodeStore(EpisodeDir(tmp_path), [])
    store.add(make_episode(0, 3))
    sampler = ChunkSampler(store)
    with pytest.raises(UserError):
        sampler.sample(2, 10, np.random.default_rng(0))
    store.add(make_episode(1, 12))
    assert set(sampler.sample(4, 10, np.random.default_rng(0)).image[0, :, 0, 0, 0]) == {1}


def test_batch_to_torch_keeps_uint8_images() -> None:
    batch = ChunkSampler([make_episode(0, 10, state=True)]).sample(3, 4, np.random.default_rng(0))
    tensors = batch_to_torch(batch, "cpu")
    assert set(tensors) == {"image", "action", "reward", "discount", "state"}
    assert tensors["image"].dtype == torch.uint8 and tensors["image"].shape == (4, 3, SIZE, SIZE, 3)
    assert tensors["action"].dtype == torch.float32
    np.testing.assert_array_equal(tensors["reward"].numpy(), batch.reward)


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


# Measured in a fresh process: in this one, memory freed by earlier tests would hide the growth.
_RSS_SCRIPT = """
import gc, os, sys
from planet_torch.replay import EpisodeDir, EpisodeStore

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

gc.collect()
before = rss()
store = EpisodeStore(EpisodeDir(sys.argv[1]))
gc.collect()
print(len(store), store.nbytes, sum(e.image.nbytes for e in store), rss() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_loaded_episodes_stay_close_to_raw_image_size(tmp_path: Path) -> None:
    folder = EpisodeDir(tmp_path)
    ramp = np.arange(64, dtype=np.uint8)[None, :, None, None]
    for i in range(20):  # 125 policy steps = 126 rows, a 64×64 cartpole episode at repeat 8
        ep = make_episode(i, 125, size=64)
        ep.image[...] = ramp * 3 + np.arange(126, dtype=np.uint8)[:, None, None, None] % 5
        folder.save(ep)
    raw = 20 * 126 * 64 * 64 * 3

    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    count, nbytes, image_nbytes, grown = map(int, out.split())

    assert count == 20 and image_nbytes == raw
    assert nbytes <= 1.05 * raw
    assert grown <= 1.05 * raw, f"RSS grew {grown / raw:.3f}× the raw image bytes"
