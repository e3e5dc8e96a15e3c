"""Tick a box: one byte, ` ` → `x`, and nothing else in the file changes.

The file must still hold exactly the bytes that were parsed (gates can run for minutes and
someone may edit the queue meanwhile); the new content goes to a temporary file in the same
directory, which `os.replace` then moves over the original in one step, so a reader sees
either the old file or the new one, never half of each.

A file whose mode says read-only is never ticked (replacing it would get round the mode),
and any OSError while writing becomes a QueueUnwritable: one line, exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

from queue_runner.model import Queue, QueueError, Step


class QueueChanged(QueueError):
    """The queue file changed after it was read; nothing was written."""


class QueueUnwritable(QueueError):
    """The queue file may not or cannot be written; nothing was written."""


def check_writable(path: Path) -> None:
    """Raise QueueUnwritable unless ticking `path` can work: the file's mode allows writing and
    its folder takes the new copy. `run` asks before any gate runs."""
    path = path.resolve()
    _check_mode(path)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise QueueUnwritable(f"cannot write in {path.parent}: ticking writes a new copy of {path.name} "
                              "there and renames it over the old one; make the folder writable")


def ticked(data: bytes, step: Step) -> bytes:
    """`data` with `step`'s box ticked. Pure: the caller decides where the bytes go."""
    offset = step.box_offset
    if offset is None or data[offset:offset + 1] != b" ":
        raise QueueError(f"STEP {step.id} has no empty box at the recorded position")
    return data[:offset] + b"x" + data[offset + 1:]


def _check_mode(path: Path) -> None:
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise QueueUnwritable(f"cannot read {path}: {exc.strerror or exc}") from None
    if not mode & 0o222 or not os.access(path, os.W_OK):
        raise QueueUnwritable(f"{path} is read-only (mode {stat.S_IMODE(mode):04o}): queue-runner does not "
                              "tick a file its mode protects; make it writable (chmod u+w) to tick it")


def tick(queue: Queue, step: Step) -> bytes:
    """Tick `step` in the file `queue` was read from; returns the bytes now on disk."""
    path = queue.path.resolve()  # replace the file a symlink points to, not the link
    new = ticked(queue.data, step)
    try:
        current = path.read_bytes()
    except OSError as exc:
        raise QueueError(f"cannot read {path} again: {exc.strerror or exc}") from None
    if current != queue.data:
        raise QueueChanged(f"{path.name} changed while STEP {step.id}'s gates ran; its box was not "
                           "ticked (run it again)")
    _check_mode(path)  # again: it may have changed while the gates ran
    try:
        _replace(path, new)
    except OSError as exc:
        raise QueueUnwritable(f"cannot write {path}: {exc.strerror or exc}; STEP {step.id} was not "
                              "ticked") from None
    return new


def _replace(path: Path, data: bytes) -> None:
    import tempfile

    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
