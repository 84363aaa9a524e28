"""The run folder: everything a run writes lives under one directory.

runs/<name>/
  config.json        the full Config of the run (written once, checked on resume)
  train_episodes/    one .npz per episode the model trains on (seed + collected)
  test_episodes/     one .npz per episode only used for test losses and scores
  checkpoints/       model, optimiser, RNG states and counters
  videos/            MP4s of episodes and open-loop predictions
  plots/             learning curves
  metrics.jsonl      every logged scalar with env_steps, updates and wall time
  machines.json      the machine of every process that trained the run (and from which update)
  scores.json        the final model's noise-free eval episodes (planet eval): the run's score
  .writer.lock       held (flock) by the one process that writes the run: train, resume, collect
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, ClassVar

from planet_torch.config import Config
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text, remove_dead_temp_files
from planet_torch.machine import machine_info

# Fields that may change between a run and its resume without changing what the run computes.
RESUMABLE_CHANGES = frozenset(
    {
        "device",
        "env.workers",
        "schedule.total_updates",
        "schedule.max_hours",
        "schedule.checkpoint_every_minutes",
        "schedule.max_env_steps",
        "schedule.final_eval_episodes",
    }
)

CHECKPOINT_NAME = "latest.pt"
"""The checkpoint a run resumes from and eval, inspect, load_run read."""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class WriterLock:
    """One writing process per run folder: an OS lock (``flock``) on ``<run>/.writer.lock``.

    Two processes writing one folder (a ``--resume`` typed in a second terminal while the first
    still runs, a requeued cluster job beside the old one) would interleave two diverging runs
    in one replay, metrics file and checkpoint, and both would exit 0. The second one refuses
    instead, naming the holder. The OS drops the lock when its process dies, kill -9 included,
    so there is never a stale lock to delete. Re-entrant within a process (a trainer and the
    final eval of the same run, or tests building several trainers one after another); readers
    (eval, plot, inspect, results) take no lock and work on a live run.
    """

    _held: ClassVar[
        dict[str, tuple[IO[str] | None, int]]
    ] = {}  # resolved folder -> (open lock file, holders)

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".writer.lock"
        self._key = str(Path(folder).resolve())
        self._holding = False

    def acquire(self) -> WriterLock:
        if self._holding:
            return self
        held = self._held.get(self._key)
        if held is not None:
            self._held[self._key] = (held[0], held[1] + 1)
            self._holding = True
            return self
        try:
            handle = open(self.path, "a+")  # noqa: SIM115 -- held for the life of the run
        except OSError as error:
            raise UserError(
                f"cannot write {self.path} ({error.strerror}); choose another --run-dir"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):  # no locks on this file system
                handle.close()
                self._held[self._key] = (None, 1)  # run unlocked
                self._holding = True
                return self
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"{self.path.parent} is being written by {holder}; wait for it to end (or stop "
                "it), then --resume; or choose another --run-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        by_cli = sys.argv[0].endswith(("planet", "cli.py"))  # not a sweep worker or a test
        command = " ".join(["planet", *sys.argv[1:]]) if by_cli else ""
        since = datetime.datetime.now().isoformat(timespec="seconds")
        handle.write(f"PID {os.getpid()} on {socket.gethostname()} since {since}")
        handle.write(f" ({command})" if command else "")
        handle.flush()
        self._held[self._key] = (handle, 1)
        self._holding = True
        # The writer that died before this one (a kill -9 mid-save) may have left a temp file.
        remove_dead_temp_files(self.path.parent)
        return self

    def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        handle, count = self._held.pop(self._key)
        if count > 1:
            self._held[self._key] = (handle, count - 1)
        elif handle is not None:
            handle.close()  # closing the file drops the flock

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def config_differences(a: Config, b: Config) -> list[str]:
    """Dotted names of the fields where two configs differ, ignoring RESUMABLE_CHANGES."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return sorted(
        k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in RESUMABLE_CHANGES
    )


def _read_json(path: Path, kind: type, fix: str) -> Any:
    """The JSON value in ``path``, of type ``kind``, or a one-line :class:`UserError` ending in
    ``fix`` (a file damaged by hand or by another tool, never by planet: it writes atomically)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is unreadable ({error}); {fix}") from None
    if not isinstance(value, kind):
        raise UserError(f"{path} holds a {type(value).__name__}, not a {kind.__name__}; {fix}")
    return value


RUN_ENTRIES = frozenset(
    {
        "train_episodes",
        "test_episodes",
        "checkpoints",
        "videos",
        "plots",
        "tensorboard",
        "metrics.jsonl",
        "scores.json",
        "machines.json",
    }
)
"""What a run folder holds besides config.json (hidden lock and temp files aside)."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def train_episodes(self) -> Path:
        return self.path / "train_episodes"

    @property
    def test_episodes(self) -> Path:
        return self.path / "test_episodes"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def latest_checkpoint(self) -> Path:
        """checkpoints/latest.pt; a user error when the run has none yet."""
        path = self.checkpoints / CHECKPOINT_NAME
        if not path.exists():
            raise UserError(f"{self.path} has no checkpoint yet ({path}); train first")
        return path

    @property
    def videos(self) -> Path:
        return self.path / "videos"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.json"

    def scores(self) -> dict[str, Any] | None:
        """scores.json (``planet eval``, the end of a run), or None before the run is scored."""
        if not self.scores_path.exists():
            return None
        fix = f"delete it: planet eval --run-dir {self.path} writes it again"
        scores: dict[str, Any] = _read_json(self.scores_path, dict, fix)
        return scores

    @property
    def machines_path(self) -> Path:
        return self.path / "machines.json"

    def machines(self) -> list[dict[str, Any]]:
        """One entry per process that trained this run: ``from_updates`` and ``machine``."""
        if not self.machines_path.exists():
            return []
        fix = "delete it (it only records which machines trained this run)"
        entries: list[dict[str, Any]] = _read_json(self.machines_path, list, fix)
        if not all(isinstance(e, dict) and "from_updates" in e for e in entries):
            raise UserError(f"{self.machines_path} holds no list of machine entries; {fix}")
        return entries

    def record_machine(self, from_updates: int, **notes: Any) -> None:
        """Note the machine of a (re)started training process (and ``notes``, e.g. the precision
        it trains in); a resume at the same update replaces the note of the process it continues."""
        entries = [e for e in self.machines() if e["from_updates"] < from_updates]
        entries.append({"from_updates": from_updates, "machine": machine_info(), **notes})
        atomic_write_text(self.machines_path, json.dumps(entries, indent=1) + "\n")

    def exists(self) -> bool:
        return self.config_path.exists()

    def writer_lock(self) -> WriterLock:
        """This folder's :class:`WriterLock` (not yet acquired; the folder must exist)."""
        return WriterLock(self.path)

    def open_for_writing(self, cfg: Config, *, new_run: bool = False) -> WriterLock:
        """Lock the folder for this process, then :meth:`prepare` it; ``new_run`` refuses a
        folder that already holds a run. A live run's folder is reported before anything else."""
        writer = self.writer_lock()
        if self.exists():
            writer.acquire()
            if new_run:
                raise UserError(
                    f"{self.path} already holds a run; add --resume to continue it, "
                    "or choose another --run-dir"
                )
        self.prepare(cfg)
        return writer.acquire()  # a fresh folder: of two runs started at once, one refuses

    def load_config(self) -> Config:
        """config.json, checked as a command line is (types, then ranges): a hand-edited value
        a run could not use is one line naming it, before any command works with it."""
        if not self.config_path.exists():
            trials = sweep_trials(self.path)
            if trials:
                raise UserError(
                    f"{self.path} is a planet sweep folder; name one of its trials' run folders, "
                    f"e.g. {trials[0]}"
                )
            raise UserError(f"{self.path} is not a run folder (no config.json); check --run-dir")
        try:
            return Config.from_dict(json.loads(self.config_path.read_text())).validate()
        except (json.JSONDecodeError, TypeError) as error:
            raise UserError(
                f"{self.config_path} is unreadable ({error}); check --run-dir"
            ) from None
        except UserError as error:
            raise UserError(f"{self.config_path}: {error}") from None

    def prepare(self, cfg: Config) -> RunDir:
        """Create the folder layout and write config.json, or check it matches an existing run.
        A folder that holds no run but other files (``--run-dir .`` in a project, or an empty
        ``--run-dir ''``, which is the current folder) is refused: a run would scatter its
        files among them."""
        if self.path.is_dir() and not self.exists():
            foreign = sorted(
                p.name
                for p in self.path.iterdir()
                if p.name not in RUN_ENTRIES and not p.name.startswith(".")
            )
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise UserError(
                    f"{self.path.resolve()} holds other files and no run ({shown}); "
                    "choose a new or empty --run-dir"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for sub in (self.train_episodes, self.test_episodes, self.checkpoints, self.videos):
                sub.mkdir(exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create run folder {self.path} ({error.strerror}); choose another --run-dir"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise UserError(f"run folder {self.path} is not writable; choose another --run-dir")
        if self.exists():
            stored = self.load_config()
            diff = config_differences(stored, cfg)
            if diff:
                raise UserError(
                    f"run folder {self.path} holds a run with another config (differs in: "
                    f"{', '.join(diff)}); use another --run-dir or the same settings"
                )
        atomic_write_text(self.config_path, cfg.to_json() + "\n")
        return self


SWEEP_RECORD = "sweep.json"
"""What ``planet sweep`` writes first in its folder; the trials' run folders are in trials/."""


def sweep_trials(path: Path) -> list[Path] | None:
    """The trials' run folders of a ``planet sweep`` folder, sorted; None if ``path`` is none."""
    if (path / "config.json").exists() or not (path / SWEEP_RECORD).is_file():
        return None
    return sorted(p for p in (path / "trials").glob("*") if (p / "config.json").is_file())


def expand_sweeps(paths: Iterable[Path]) -> list[Path]:
    """``paths`` with each sweep folder replaced by its trials' run folders (commands that read
    several runs: plot, results); a sweep without trials yet is a :class:`UserError`."""
    runs: list[Path] = []
    for path in paths:
        trials = sweep_trials(path)
        if trials == []:
            raise UserError(f"sweep folder {path} holds no trials yet")
        runs.extend(trials if trials is not None else [path])
    return runs
