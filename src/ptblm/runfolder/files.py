"""File I/O for run folders (and the few other files ptblm writes): atomic, never through a symbolic link.

A write goes to a temporary file beside the target (created O_EXCL | O_NOFOLLOW with the umask's mode, as
log.txt is: mkstemp's 0600 would keep results from a lab's shared project space), is fsync-ed, then renamed
over the target; a rename replaces a link itself, never its target. Reads and appends open with O_NOFOLLOW,
so a run file that is a link is refused, named, and its target never read nor written. A write that fails
(a full disk, a quota, a read-only place) is one FileWriteError naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from ..errors import UserError

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # O_NONBLOCK: a FIFO in the folder cannot hang a reader
FULL = (errno.ENOSPC, errno.EDQUOT)


class FileWriteError(UserError, OSError, RuntimeError):
    """A file could not be written (the disk or quota is full, the place is read-only): one line naming it.
    An OSError still, for callers to whom a failed write is no error (a cache)."""

    def __init__(self, path: Path, error: OSError):
        if error.errno == errno.ELOOP:
            message = f"{path} {link_reason(path)}"
        else:
            hint = ("the disk or quota is full: free some space, then rerun (a run resumes from its last.pt)"
                    if error.errno in FULL else "make the folder writable, or choose another")
            message = f"{path}: cannot write it ({error.strerror or error}); {hint}"
        super().__init__(message)
        self.errno, self.strerror, self.filename = error.errno, error.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class LinkRefused(OSError):
    """A run file that is a symbolic link: never followed."""


def link_reason(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return (f"is a symbolic link (to {target}): ptblm never follows links in a run folder; replace it with the "
            f"file itself")


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file, not following a link: FileNotFoundError, LinkRefused or another OSError."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise LinkRefused(errno.ELOOP, link_reason(path), str(path)) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return handle.read()


def read_json(path: Path) -> Any:
    """A JSON file, not following a link; ValueError names a file that is not JSON."""
    data = read_bytes(Path(path))
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object: anything else is named, not half-read."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object (ptblm's {Path(path).name}), got a JSON "
                         f"{type(obj).__name__}; delete the file or rerun with --force")
    return obj


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new `.<name>.<random>.tmp` beside `path`, with the umask's mode."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666), tmp
        except FileExistsError:
            continue


def publish(tmp: Path, path: Path) -> None:
    """The one instant a write becomes visible: the rename. (The kill tests stop a run here.)"""
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(error, OSError) and not isinstance(error, FileWriteError):
            raise FileWriteError(path, error) from None
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def append_line(path: Path, line: str) -> None:
    """Append one line (the human log is append-only; a torn last line is harmless), never through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as error:
        raise FileWriteError(path, error) from None
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    except OSError as error:
        raise FileWriteError(path, error) from None
    finally:
        os.close(fd)
