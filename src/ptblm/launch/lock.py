"""One `ptblm submit` (or `ptblm sbatch`) per experiment at a time: an flock on results/<exp>/.submit.lock,
on the same mechanism as the run folders' one-writer lock (ptblm.runlock).

The kernel drops the lock when its holder exits, however it exits, so a stale lock blocks nobody.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import UserError
from ..runfolder.files import LinkRefused, NotRegular
from ..runlock import LockBusy, exclusive_lock


class SubmissionLocked(UserError, RuntimeError):
    """Another submission of the same experiment is planning or submitting now."""


@contextlib.contextmanager
def submission_lock(path: Path, experiment: str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(path))
        except LockBusy as busy:
            holder = busy.holder.describe() if busy.holder else "holder unknown"
            raise SubmissionLocked(f"{path}: experiment {experiment} is being submitted by another `ptblm submit` "
                                   f"({holder}); wait for it to finish, then submit again") from None
        except (LinkRefused, NotRegular) as error:
            raise SubmissionLocked(f"{path} {error.strerror} (it is the submission lock of experiment {experiment}, "
                                   f"made anew by the next submit)") from None
        except OSError as error:
            raise SubmissionLocked(f"{path}: cannot create or lock the submission lock of experiment {experiment} "
                                   f"({error.strerror}); make {path.parent} writable") from None
        yield
