"""File I/O for run folders (and the few other files ptblm writes): atomic, never through a symbolic link.

A write goes to a temporary file beside the target (created O_EXCL | O_NOFOLLOW with the umask's mode, as
log.txt is: mkstemp's 0600 would keep results from a lab's shared project space), is fsync-ed, then renamed
over the target; a rename replaces a link itself, never its target. Reads and appends open with O_NOFOLLOW,
so a run file that is a link is refused, named, and its target never read nor written; and with O_NONBLOCK,
checked to be a regular file before a byte moves, so a FIFO, a folder or a device where a run file belongs is
refused by name, never waited on (`open_regular`, the one opening of every run file). A read is capped at
MAX_READ_BYTES (`read_bytes`): the largest file ptblm writes as JSON or text, curves.json of a 1000-epoch run,
is about 200 kB, so a larger one is damage, never read whole. JSON is parsed by `parse_json` alone: a key twice
in one object, nesting too deep for the parser, or anything else that is not plain JSON is a ValueError saying why.
A write that fails (a full disk, a quota, a read-only place) is one FileWriteError naming the file.
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
MAX_READ_BYTES = 4 * 2 ** 20  # 4 MiB: 20 times curves.json of a 1000-epoch run (see the module docstring)
NOT_REGULAR = (errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.ENOTDIR)  # what opening a FIFO or a folder says


class FileWriteError(UserError, OSError, RuntimeError):
    """A file could not be written (the disk or quota is full, the place is read-only): one line naming it.
    An OSError still, for callers to whom a failed write is no error (a cache)."""

    def __init__(self, path: Path, error: OSError):
        if error.errno == errno.ELOOP:
            message = f"{path} {link_reason(path)}"
        elif isinstance(error, NotRegular):
            message = f"{path} {error.strerror}"
        elif error.errno in (errno.EISDIR, errno.ENOTEMPTY):  # the rename met a folder in the file's place
            message = f"{path} is a folder where ptblm writes a file: move it away"
        else:
            hint = ("the disk or quota is full: free some space, then rerun (a run resumes from its "
                    "last.pt, if it has one)"
                    if error.errno in FULL else f"make {Path(path).parent} writable")  # no flag is known here
            message = f"{path}: cannot write it ({error.strerror or error}); {hint}"
        super().__init__(message)
        self.errno, self.strerror, self.filename = error.errno, error.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class LinkRefused(OSError):
    """A run file that is a symbolic link: never followed."""


class NotRegular(OSError):
    """A FIFO, a folder, a socket or a device where a run file belongs: never opened for reading or writing."""


class TooLarge(OSError):
    """A run file larger than MAX_READ_BYTES: damage, never read whole."""


KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFLNK: "a symbolic link"}


def kind_of(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def not_regular_reason(kind: str) -> str:
    return f"is {kind}, not a regular file: ptblm reads and writes only regular files in a run folder; remove it"


def entry_problem(path: Path, folder: bool = False) -> str | None:
    """Why `path`, an entry of a run folder, is not what ptblm puts there (a regular file, or a real folder
    when `folder`): a link, a FIFO, a socket, a device, a folder where a file belongs; None when it is right or
    absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be examined ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return link_reason(path)
    if stat.S_ISREG(info.st_mode) or (folder and stat.S_ISDIR(info.st_mode)):
        return None  # a file where tb/ belongs harms nothing: the trainer warns that it writes no events
    return not_regular_reason(kind_of(info.st_mode))


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """The one opening of a run file: never through a link (LinkRefused), never blocking, and only a regular
    file (NotRegular names what is there instead); other OSErrors as os.open raises them."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise LinkRefused(errno.ELOOP, link_reason(path), str(path)) from None
        if error.errno in NOT_REGULAR:
            try:
                kind = kind_of(os.lstat(path).st_mode)
            except OSError:
                kind = "not a regular file"
            raise NotRegular(error.errno, not_regular_reason(kind), str(path)) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegular(errno.EINVAL, not_regular_reason(kind_of(info.st_mode)), str(path))
    return fd


def link_reason(path: Path) -> str:
    """Why a link is refused, and what to put in its place: the folder or the file it stands for, as its target
    is (the run folder, tb/: a folder); a link to nothing is removed."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    kind = "folder" if os.path.isdir(path) else "file" if os.path.exists(path) else None
    remedy = f"replace it with the {kind} itself" if kind else "it points to nothing: remove it"
    return f"is a symbolic link (to {target}): ptblm never follows links in a run folder; {remedy}"


def read_bytes(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (open_regular): FileNotFoundError, LinkRefused,
    NotRegular, TooLarge or another OSError."""
    with os.fdopen(open_regular(path), "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(limit + 1) if size <= limit else b""
        if size > limit or len(data) > limit:
            raise TooLarge(errno.EFBIG, f"is {max(size, len(data)):,} bytes, more than ptblm ever writes there "
                                        f"({limit:,} at most): not read", str(path))
        return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        twice = next(key for index, (key, _) in enumerate(pairs) if key in dict(pairs[:index]))
        raise ValueError(f"the key {twice!r} appears more than once in one object")
    return obj


def parse_json(data: bytes) -> Any:
    """The one JSON parser of run files: ValueError saying why `data` is not plain JSON as ptblm writes it
    (not UTF-8, not JSON, a key twice in one object, nested too deeply for Python's parser)."""
    try:
        return json.loads(data.decode(), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply to parse (ptblm's files nest 3 deep)") from None
    except MemoryError:
        raise ValueError("too large to parse in memory") from None


def read_json(path: Path) -> Any:
    """A JSON file, through read_bytes; ValueError names a file that is not JSON."""
    data = read_bytes(Path(path))
    try:
        return parse_json(data)
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object: anything else is named, not half-read."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object (ptblm's {Path(path).name}), got a JSON "
                         f"{type(obj).__name__}")
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
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError as error:
        raise FileWriteError(path, error) from None
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    except OSError as error:
        raise FileWriteError(path, error) from None
    finally:
        os.close(fd)
