"""Exclusive flock files naming their holder: one writer per run folder (`<run>/.lock`, see RunFolder.hold),
and one submission per experiment (ptblm.launch.lock) on the same mechanism.

The kernel drops the lock when the holding process dies (SIGKILL, out of memory, a node that reboots), so a
lock file left behind blocks nobody: the file only names its last holder (host, pid, Slurm job), for the one
line a second writer gets. A later process, a requeued Slurm attempt, or the same process once its first
run has returned takes the lock again; two runs at once in one folder never hold it together, even within
one process (each acquisition opens the file anew, and flock locks belong to the open file).
A lock file that is a symbolic link is refused (O_NOFOLLOW): its target is never truncated nor written.
`probe` tells a reader whether a lock is held without taking it from anyone.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # flock refused by the file system, not by a holder
BUSY_RETRIES = 5  # a reader's probe (a shared lock for microseconds) is no holder: try again before refusing
HELD, FREE, UNKNOWN = "held", "free", "unknown"


class LockBusy(Exception):
    """Another process (or another acquisition in this one) holds the lock."""

    def __init__(self, path: Path, holder: LockHolder | None):
        super().__init__(f"{path}: held by {holder.describe() if holder else 'a holder unknown'}")
        self.path, self.holder = path, holder


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    slurm_job_id: str | None
    since: float
    enforced: bool = True  # False where the file system has no flock: a second writer would not be refused

    def describe(self) -> str:
        job = f", Slurm job {self.slurm_job_id}" if self.slurm_job_id else ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"host {self.host}, pid {self.pid}{job}, since {since}"


def read_lock_holder(path: Path) -> LockHolder | None:
    """Who holds (or last held) the lock file; None when it is absent, empty, a link or unreadable."""
    from .runfolder.files import open_regular

    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            return LockHolder(**json.loads(handle.read(4096)))
    except (OSError, ValueError, TypeError):
        return None


def _flock_exclusive(fd: int) -> None:
    for attempt in range(BUSY_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def probe(path: Path) -> str:
    """HELD, FREE or UNKNOWN (a file system without flock), taking a shared lock for an instant only.
    An absent lock file is free (nobody ever held it); OSError for a lock file that is a link (LinkRefused)
    or no regular file (NotRegular: a FIFO, a folder)."""
    from .runfolder.files import open_regular

    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return FREE
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return HELD
    except OSError as error:
        if error.errno in UNSUPPORTED:
            return UNKNOWN
        raise
    finally:
        os.close(fd)  # releases the shared lock at once
    return FREE


@contextmanager
def exclusive_lock(path: Path, slurm_job_id: str | None = None) -> Iterator[LockHolder]:
    """Hold an exclusive flock on `path` (created with the umask's mode), recording the holder in it.

    Raises LockBusy naming the holder before anything is yielded, OSError when the file cannot be opened or
    locked (LinkRefused, NotRegular: a link, a FIFO or a folder in its place, never followed nor waited on).
    On a file system without flock the holder is yielded with `enforced` False (the caller says so).
    The file stays when the lock is released: removing it would race with the next holder.
    """
    from .runfolder.files import open_regular

    fd = open_regular(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            _flock_exclusive(fd)
            enforced = True
        except BlockingIOError:
            raise LockBusy(Path(path), read_lock_holder(path)) from None
        except OSError as error:
            if error.errno not in UNSUPPORTED:
                raise
            enforced = False  # e.g. Lustre mounted without `flock`: go on, and the caller says so
        holder = LockHolder(socket.gethostname(), os.getpid(), slurm_job_id, time.time(), enforced)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
        yield holder
    finally:
        os.close(fd)  # releases the lock

