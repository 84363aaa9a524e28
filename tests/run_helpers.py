"""What the run tests share: the CLI in a subprocess (or in this process), a run's schedule
without its timings, and "same run" (interrupted and resumed vs uninterrupted: the same metrics
and episode files, bit for bit)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

TIMING = ("seconds", "cost/", "per_second", "machine/")  # wall-clock or machine load: differ


def planet(
    *args: str, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``planet ARGS`` in a fresh process, as a user types it (``env``: variables set on top
    of this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "planet_torch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )


def planet_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``planet ARGS`` through the same ``main`` in this process: its exit code, stdout and
    stderr as a subprocess would give them, without a fresh interpreter's seconds of imports.
    An exception ``main`` lets through (a user's traceback) fails the calling test; warnings
    are filtered as a fresh interpreter filters them and appended to stderr as it prints them
    (pytest would otherwise swallow them, and a warning is one more line a user sees)."""
    from planet_torch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.resetwarnings()  # Python's default filters, last inserted wins:
        for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        code = main(list(args))
    shown = "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught
    )
    return subprocess.CompletedProcess(
        ["planet", *args], code, out.getvalue(), err.getvalue() + shown
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake as the CLI must answer it: exit 2, no traceback, one line on stderr that
    starts with "planet: error:" and says each of ``needles``."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("planet: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "planet_torch.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def metrics(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # Cost lines are measured by every process (a resumed one too): not part of the schedule.
    return [
        {k: v for k, v in r.items() if not any(t in k for t in TIMING)}
        for r in records
        if not any(k.startswith("cost/") for k in r)
    ]


def episodes(run: Path, split: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted((run / split).glob("*.npz")):
        with np.load(path) as data:
            out[path.name] = {k: data[k] for k in data.files}
    return out


def assert_same_episodes(a: Path, b: Path, split: str) -> None:
    """The same episode files in ``split`` of runs ``a`` and ``b``, array for array."""
    ea, eb = episodes(a, split), episodes(b, split)
    assert ea.keys() == eb.keys(), split
    for name in ea:
        for key in ea[name]:
            assert np.array_equal(ea[name][key], eb[name][key]), (split, name, key)


def assert_same_run(a: Path, b: Path) -> None:
    assert metrics(a) == metrics(b)
    for split in ("train_episodes", "test_episodes"):
        assert_same_episodes(a, b, split)
    assert not list(b.rglob(".*.tmp")), "a temp file was left behind"


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError


def kill_once_written(args: list[str], run: Path, episode: str) -> None:
    """Start ``planet train`` into ``run``; kill -9 it once train_episodes/``episode`` exists."""
    process = start(*args, "--run-dir", str(run))
    died_early = not wait_for(lambda: (run / "train_episodes" / episode).exists(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not died_early, process.stderr.read() if process.stderr else ""


def trained(tmp_path_factory, name: str, args: list[str]) -> Path:
    """A finished run of ``planet ARGS`` in a fresh folder ``name`` (through ``main`` in this
    process: the runs it is compared with are killed in processes of their own)."""
    run = tmp_path_factory.mktemp("runs") / name
    result = planet_here(*args, "--run-dir", str(run))
    assert result.returncode == 0, result.stderr
    return run
