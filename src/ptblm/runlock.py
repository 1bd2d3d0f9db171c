"""One writer per run folder: a training run holds an exclusive flock on `<run>/.lock` for its whole life.

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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .runfolder import LOCK_FILE, RunFolderError

UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # flock refused by the file system, not by a holder


class RunFolderBusy(RunFolderError):
    """Another process (or another run of this one) is writing the run folder."""


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


def read_holder(folder: Path) -> LockHolder | None:
    """Who holds (or last held) the folder's lock; None when the file is absent, empty or unreadable."""
    try:
        return LockHolder(**json.loads((Path(folder) / LOCK_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def hold_run_folder(folder: Path, slurm_job_id: str | None = None) -> Iterator[LockHolder]:
    """Hold the folder's lock, or raise RunFolderBusy naming the holder. `folder` must exist. On a file system
    without flock the holder is yielded with `enforced` False (the caller says so) rather than no run at all."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the mode follows the umask, as every run file does
    except OSError as error:
        raise RunFolderError(f"{path}: cannot create the run folder's lock ({error.strerror}); "
                             f"choose a writable --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(folder)
            raise RunFolderBusy(f"{folder} is being written by another ptblm run "
                                f"({holder.describe() if holder else 'holder unknown'}); wait for it to end or "
                                f"stop it, or choose another --out") from None
        except OSError as error:
            if error.errno not in UNSUPPORTED:
                raise RunFolderError(f"{path}: cannot lock the run folder ({error.strerror})") from None
            enforced = False  # e.g. Lustre mounted without `flock`: train anyway, and say so in the log
        else:
            enforced = True
        holder = LockHolder(socket.gethostname(), os.getpid(), slurm_job_id, time.time(), enforced)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
        yield holder
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with the next holder)
