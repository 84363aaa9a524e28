"""Atomic file writes: a crash or a full disk never leaves a half-written file under a final name."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from planet_torch.errors import UserError


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a hidden temp file beside ``path``, fsync it, then rename it to ``path``.

    The temp name starts with '.' and ends with '.tmp', so loaders that glob final names never see it.
    A full disk becomes a :class:`UserError`; the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"disk full while writing {path}; free some space and run again (or resume)"
            ) from None
        raise
    return path


def remove_dead_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files under ``folder`` that :func:`atomic_write` left when its process
    died mid-write (kill -9, power cut): their names carry the writer's PID, and only those
    whose process is gone (on this host) are touched, so a live writer's file is never
    pulled from under it. Returns what was deleted."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after os.replace could otherwise undo it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writable_file(path: Path, flag: str) -> Path:
    """``path``, checked to be a file this process can write (its folder made where missing)
    before any work whose result it is to hold; else a one-line :class:`UserError` naming
    ``flag`` (minutes of random-policy episodes had ended in a traceback at the write)."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create {path.parent} ({error.strerror}); choose another {flag}"
        ) from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path} (permission denied); choose another {flag}")
    return path


def writable_folder(path: Path, flag: str) -> Path:
    """``path`` as a folder this process can write in (made where missing), or a one-line
    :class:`UserError` naming ``flag``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {path} ({error.strerror}); choose another {flag}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write in {path} (permission denied); choose another {flag}")
    return path
