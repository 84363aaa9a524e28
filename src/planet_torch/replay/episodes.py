"""Episodes in RAM and on disk: THE time alignment of observations, actions and rewards.

One episode of T policy steps is stored as T + 1 rows (the original PlaNet's convention,
``wrappers.py:CollectGymDataset``)::

    env:     reset        step(a_0)       step(a_1)              step(a_{T-1})
              o_0  ──a_0──▶  o_1  ──a_1──▶  o_2  ···  ──a_{T-1}──▶  o_T
                             r_1            r_2                     r_T

    row t │ image │ action  │ reward │ discount
    ──────┼───────┼─────────┼────────┼──────────────────────────────
      0   │ o_0   │ 0       │ 0      │ 1
      1   │ o_1   │ a_0     │ r_1    │ 1
      2   │ o_2   │ a_1     │ r_2    │ 1
      ⋮   │  ⋮    │  ⋮      │  ⋮     │ ⋮
      T   │ o_T   │ a_{T-1} │ r_T    │ 0 if o_T is terminal, else 1 (a time limit keeps 1)

Row t holds o_t, the action that *produced* o_t and the reward of that step (summed over the
action repeat by the env wrapper). So a model reads ``action[t]`` as the previous action of the
transition into o_t and predicts ``reward[t]`` from its posterior at t; no index shifting anywhere
else. :class:`EpisodeBuilder` is the only place that turns an env loop into rows.
"""

from __future__ import annotations

import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast, overload

import numpy as np

from planet_torch.fileio import atomic_write

_REQUIRED_KEYS = ("image", "action", "reward", "discount")
# 000012-len125.npz: index 12 (12 episodes were saved before it), 125 policy steps = 126 rows.
_NAME = re.compile(r"^(\d+)-len(\d+)\.npz$")


class ReplayWarning(UserWarning):
    """An episode file was skipped (leftover temp file, truncated, corrupt or of another format)."""


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode of T policy steps as T + 1 aligned rows (see the module docstring).

    Arrays are taken as they are, never cast or copied; wrong dtypes or lengths raise ValueError.
    """

    image: np.ndarray
    """uint8 [T+1, H, W, C]; row t is o_t."""
    action: np.ndarray
    """float32 [T+1, A]; row t is a_{t-1}, the action that produced o_t (row 0: zeros)."""
    reward: np.ndarray
    """float32 [T+1]; row t is r_t, the reward of the step into o_t (row 0: 0)."""
    discount: np.ndarray
    """float32 [T+1]; 0.0 on a true terminal row, else 1.0."""
    state: np.ndarray | None = None
    """Optional float32 [T+1, S] low-dimensional state (diagnostics and state-based baselines)."""

    def __post_init__(self) -> None:
        rows = _check(self.image, "image", np.uint8, 4).shape[0]
        if rows < 1:
            raise ValueError("an episode needs at least its reset row")
        _check(self.action, "action", np.float32, 2, rows)
        _check(self.reward, "reward", np.float32, 1, rows)
        _check(self.discount, "discount", np.float32, 1, rows)
        if self.state is not None:
            _check(self.state, "state", np.float32, 2, rows)
        # Cheap guard against an off-by-one alignment from code that bypasses EpisodeBuilder.
        if np.any(self.action[0] != 0) or self.reward[0] != 0:
            raise ValueError("row 0 of an episode must have zero action and zero reward")

    @property
    def num_rows(self) -> int:
        """T + 1."""
        return int(self.image.shape[0])

    @property
    def policy_steps(self) -> int:
        """T, the number of actions taken."""
        return self.num_rows - 1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored fields by name (``state`` only when present)."""
        out = {k: getattr(self, k) for k in _REQUIRED_KEYS}
        if self.state is not None:
            out["state"] = self.state
        return out


def _check(array: object, name: str, dtype: type, ndim: int, rows: int | None = None) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
        got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array)
        raise ValueError(f"episode {name} must be a {ndim}-d {np.dtype(dtype)} array, got {got}")
    if rows is not None and array.shape[0] != rows:
        raise ValueError(f"episode {name} has {array.shape[0]} rows, image has {rows}")
    return array


def _split_observation(observation: object) -> tuple[np.ndarray, np.ndarray | None]:
    """(image, state) from an image array, a mapping or an object with ``image``/``state``."""
    if isinstance(observation, np.ndarray):
        return observation, None
    if isinstance(observation, Mapping):
        return observation["image"], observation.get("state")
    return observation.image, getattr(observation, "state", None)  # type: ignore[attr-defined]


class EpisodeBuilder:
    """Turns an env loop into aligned rows, so no loop has to get the alignment right itself::

        builder.start(env.reset())
        while not done:
            builder.add(action, observation, reward, terminated)
        episode = builder.finish()

    An observation is an image array, or a mapping / object with ``image`` and optional ``state``.
    Each input is copied once (env wrappers may reuse their buffers); ``finish`` stacks the rows.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._images: list[np.ndarray] = []
        self._states: list[np.ndarray] | None = None
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._terminated = False

    def start(self, observation: object) -> None:
        """Begin an episode with the reset observation (row 0); drops any unfinished one."""
        self._reset()
        image, state = _split_observation(observation)
        self._images.append(self._image(image))
        self._states = None if state is None else [self._state(state)]

    def add(self, action: np.ndarray, observation: object, reward: float, terminated: bool) -> None:
        """Record one policy step: ``action`` was taken and produced ``observation`` and ``reward``."""
        if not self._images:
            raise RuntimeError("EpisodeBuilder.add() before start()")
        if self._terminated:
            raise RuntimeError("EpisodeBuilder.add() after a terminal step")
        action = np.array(action, dtype=np.float32).reshape(-1)
        if self._actions and action.shape != self._actions[0].shape:
            raise ValueError(f"action shape {action.shape} != earlier {self._actions[0].shape}")
        image, state = _split_observation(observation)
        if (state is None) != (self._states is None):
            raise ValueError("observations must all have a state or all have none")
        self._images.append(self._image(image))
        if self._states is not None and state is not None:
            self._states.append(self._state(state))
        self._actions.append(action)
        self._rewards.append(float(reward))
        self._terminated = bool(terminated)

    def finish(self) -> Episode:
        """The episode so far as an :class:`Episode`; the builder is empty afterwards."""
        if not self._images:
            raise RuntimeError("EpisodeBuilder.finish() before start()")
        if not self._actions:
            raise ValueError("an episode needs at least one step (its action size is unknown)")
        action_size = self._actions[0].shape[0]
        rows = len(self._images)
        discount = np.ones(rows, np.float32)
        if self._terminated:
            discount[-1] = 0.0
        episode = Episode(
            image=np.stack(self._images),
            action=np.concatenate([np.zeros((1, action_size), np.float32), self._actions]),
            reward=np.array([0.0, *self._rewards], np.float32),
            discount=discount,
            state=None if self._states is None else np.stack(self._states),
        )
        self._reset()
        return episode

    def _image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(
                f"observation image must be uint8 [H, W, C], got {image.dtype} {image.shape}"
            )
        if self._images and image.shape != self._images[0].shape:
            raise ValueError(f"image shape {image.shape} != earlier {self._images[0].shape}")
        return image.copy()

    def _state(self, state: np.ndarray) -> np.ndarray:
        return np.array(state, dtype=np.float32).reshape(-1)


class EpisodeDir:
    """A folder of episodes (``train_episodes/``, ``test_episodes/``): one ``.npz`` per episode.

    Files are named ``{index:06d}-len{T}.npz`` where index = episodes saved before it and T =
    policy steps, so counts and step totals come from names alone. Saving is atomic (temp file,
    fsync, rename); loading skips leftover temp files and unreadable files with one
    :class:`ReplayWarning` each and keeps the rest.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._warned: set[str] = set()

    def paths(self) -> list[Path]:
        """Final episode files sorted by index (not opened); warns once about leftover temp files."""
        if self.path.is_dir():
            for path in self.path.glob(".*.tmp"):
                why = "an unfinished save (interrupted, or a live run writing it now)"
                self._warn(path, f"ignoring {path}, {why}")
        return [p for _, _, p in self._scan()]

    def __len__(self) -> int:
        return len(self._scan())

    @property
    def num_policy_steps(self) -> int:
        """Sum of T over the files (env steps = this × action repeat)."""
        return sum(steps for _, steps, _ in self._scan())

    def save(self, episode: Episode) -> Path:
        """Write ``episode`` as the next index; a full disk raises UserError and leaves no file."""
        self.path.mkdir(parents=True, exist_ok=True)
        index = max((i for i, _, _ in self._scan()), default=-1) + 1
        final = self.path / f"{index:06d}-len{episode.policy_steps}.npz"

        def write(f: IO[bytes]) -> None:
            # cast: numpy's stub would match an array against its allow_pickle flag.
            np.savez_compressed(f, **cast(dict[str, Any], episode.arrays()))

        return atomic_write(final, write)

    def load(self, path: Path) -> Episode | None:
        """The episode in ``path``, or None (with one warning) when the file cannot be used."""
        try:
            # Own the file handle: np.load leaks it when the zip is corrupt.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
                missing = [k for k in _REQUIRED_KEYS if k not in data.files]
                if missing:
                    raise ValueError(f"missing keys {missing}")
                fields = {k: data[k] for k in (*_REQUIRED_KEYS, "state") if k in data.files}
            episode = Episode(**fields)
            match = _NAME.match(path.name)
            if match and int(match[2]) != episode.policy_steps:
                raise ValueError(f"holds {episode.policy_steps} steps, the name says {match[2]}")
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            self._warn(path, f"skipping unreadable episode file {path}: {error}")
            return None
        return episode

    def __iter__(self) -> Iterator[Episode]:
        """Load the episodes one at a time in index order, skipping unreadable files."""
        for path in self.paths():
            episode = self.load(path)
            if episode is not None:
                yield episode

    def load_all(self) -> list[Episode]:
        return list(self)

    def _scan(self) -> list[tuple[int, int, Path]]:
        """(index, policy steps, path) of the final files, by index."""
        if not self.path.is_dir():
            return []
        found = []
        for path in self.path.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append((int(match[1]), int(match[2]), path))
        return sorted(found)

    def _warn(self, path: Path, message: str) -> None:
        if path.name not in self._warned:
            self._warned.add(path.name)
            warnings.warn(message, ReplayWarning, stacklevel=3)


class EpisodeStore(Sequence[Episode]):
    """Episodes held in RAM, optionally mirrored to an :class:`EpisodeDir`; grows, never shrinks.

    This is what the sampler reads during training: :meth:`add` saves a new episode to disk first
    (so RAM never holds one the disk lacks) and then appends it; :meth:`refresh` picks up files
    that other processes wrote into the folder.
    """

    def __init__(self, folder: EpisodeDir | None = None, episodes: Iterable[Episode] = ()) -> None:
        self.folder = folder
        self._episodes: list[Episode] = list(episodes)
        self._seen: set[str] = set()
        if folder is not None:
            self.refresh()

    def refresh(self) -> int:
        """Load files of the folder not loaded yet, in index order; returns how many were added."""
        if self.folder is None:
            return 0
        added = 0
        for path in self.folder.paths():
            if path.name in self._seen:
                continue
            self._seen.add(path.name)  # also for unreadable files: warn about them once
            episode = self.folder.load(path)
            if episode is not None:
                self._episodes.append(episode)
                added += 1
        return added

    def add(self, episode: Episode) -> Path | None:
        """Append ``episode``, saving it first when there is a folder; returns its file."""
        path = None
        if self.folder is not None:
            path = self.folder.save(episode)
            self._seen.add(path.name)
        self._episodes.append(episode)
        return path

    @property
    def num_policy_steps(self) -> int:
        return sum(e.policy_steps for e in self._episodes)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._episodes)

    def __len__(self) -> int:
        return len(self._episodes)

    @overload
    def __getitem__(self, index: int) -> Episode: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Episode]: ...
    def __getitem__(self, index: int | slice) -> Episode | Sequence[Episode]:
        return self._episodes[index]
