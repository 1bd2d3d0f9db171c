"""Exclusive flock files naming their holder: one writer per run folder (`<run>/.lock`, held by a training run
for its whole life), and one submission per experiment (ptblm.launch.lock) on the same mechanism.

The kernel drops the lock when the holding process dies (SIGKILL, out of memory, a node that reboots), so a
lock file left behind blocks nobody: the file only names its last holder (host, pid, Slurm job), for the one
line a second writer gets. A later process, a requeued Slurm attempt, or the same process once its first
run has returned takes the lock again; two runs at once in one folder never hold it together, even within
one process (each acquisition opens the file anew, and flock locks belong to the open file).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .runfolder import LOCK_FILE, RunFolderError

UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # flock refused by the file system, not by a holder


class RunFolderBusy(RunFolderError):
    """Another process (or another run of this one) is writing the run folder."""


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
    """Who holds (or last held) the lock file; None when it is absent, empty or unreadable."""
    try:
        return LockHolder(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_holder(folder: Path) -> LockHolder | None:
    """Who holds (or last held) a run folder's lock."""
    return read_lock_holder(Path(folder) / LOCK_FILE)


@contextmanager
def exclusive_lock(path: Path, slurm_job_id: str | None = None) -> Iterator[LockHolder]:
    """Hold an exclusive flock on `path` (created with the umask's mode), recording the holder in it.

    Raises LockBusy naming the holder before anything is yielded, OSError when the file cannot be opened or
    locked. On a file system without flock the holder is yielded with `enforced` False (the caller says so).
    The file stays when the lock is released: removing it would race with the next holder.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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


@contextmanager
def hold_run_folder(folder: Path, slurm_job_id: str | None = None) -> Iterator[LockHolder]:
    """Hold the folder's lock, or raise RunFolderBusy naming the holder. `folder` must exist."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    with ExitStack() as held:
        try:
            holder = held.enter_context(exclusive_lock(path, slurm_job_id))
        except LockBusy as busy:
            raise RunFolderBusy(f"{folder} is being written by another ptblm run "
                                f"({busy.holder.describe() if busy.holder else 'holder unknown'}); wait for it to "
                                f"end or stop it, or choose another --out") from None
        except OSError as error:
            raise RunFolderError(f"{path}: cannot create or lock the run folder's lock ({error.strerror}); "
                                 f"choose a writable --out") from None
        yield holder
