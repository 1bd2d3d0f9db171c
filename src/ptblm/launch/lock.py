"""One `ptblm submit` (or `ptblm sbatch`) per experiment at a time: an flock on results/<exp>/.submit.lock.

The kernel drops the lock when its holder exits, however it exits, so a stale lock blocks nobody.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path


class SubmissionLocked(RuntimeError):
    """Another submission of the same experiment is planning or submitting now."""


@contextlib.contextmanager
def submission_lock(path: Path, experiment: str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise SubmissionLocked(f"{path}: experiment {experiment} is being submitted by another `ptblm submit` "
                                   f"({holder}); wait for it to finish, then submit again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
