"""RunWriter: the one process writing a run folder, while it holds the folder's lock (RunFolder.hold).

Every write of a run goes through it, atomically (files.py), and so does every change of state: `start`,
`record_progress` (where the running epoch is), `finish_epoch`, `mark_done`, `mark_diverged`, `mark_cancelled`,
`mark_failed`; status.json is never built by hand elsewhere. `clear` is --force: it empties the folder, which
only the lock's holder may do.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import time
from pathlib import Path

from ..runlock import LockHolder
from .checkpoints import BestWeights, ResumePoint
from .damage import Damaged
from .files import append_line, atomic_torch_save, atomic_write_json, entry_problem
from .records import (BEST_CHECKPOINT, BEST_PARAMS, CONFIG_FILE, CURVES_FILE, LAST_CHECKPOINT, LOG_FILE, OWN_FILES,
                      STATUS_FILE, SUBMISSION_FILE, TB_FOLDER, TRAINER_FILES, Curves, EpochProgress, RunSettings,
                      RunStatus, Submission)
from .states import CANCELLED, DIVERGED, DONE, FAILED, RUNNING


class RunWriter:
    """The one process writing a run folder, while it holds the lock: every write, and every state change."""

    def __init__(self, folder, holder: LockHolder, status: RunStatus | None, slurm_job_id: str | None):
        """`folder`: the RunFolder whose lock `holder` holds; `status`: its status.json as the lock was taken."""
        self.folder, self.holder, self.status, self.slurm_job_id = folder, holder, status, slurm_job_id
        self.host = socket.gethostname()

    @property
    def path(self) -> Path:
        return self.folder.path

    def clear(self) -> None:
        """--force: remove what an earlier run wrote (the folder's own files and their orphans; a link, a FIFO
        is removed itself, never its target; a folder where a file belongs is refused, never emptied)."""
        for name in OWN_FILES:
            path = self.folder.file(name)
            if path.is_dir() and not path.is_symlink():
                raise Damaged(path, f"{entry_problem(path)}; --force removes only ptblm's own files")
            path.unlink(missing_ok=True)
        tensorboard = self.folder.file(TB_FOLDER)
        if tensorboard.is_dir() and not tensorboard.is_symlink():
            shutil.rmtree(tensorboard, ignore_errors=True)  # rmtree removes links inside, never their targets
        else:
            tensorboard.unlink(missing_ok=True)
        self.remove_orphans(OWN_FILES)
        self.status = None

    def remove_orphans(self, names: tuple[str, ...] = TRAINER_FILES) -> tuple[int, int]:
        """Delete the temporary files (`.<name>.*.tmp`) that a kill during a write of `names` left behind;
        returns how many and their bytes."""
        return remove_orphans(self.path, names)

    def write_settings(self, config: dict, provenance: dict) -> None:
        atomic_write_json(self.folder.file(CONFIG_FILE), RunSettings(config, provenance).to_json())

    def write_curves(self, curves: Curves) -> None:
        atomic_write_json(self.folder.file(CURVES_FILE), curves.to_json())

    def write_submission(self, submission: Submission) -> None:
        atomic_write_json(self.folder.file(SUBMISSION_FILE), submission.to_json())

    def save_best(self, weights: BestWeights, raw_params: bool = False) -> None:
        atomic_torch_save(weights.to_checkpoint(), self.folder.file(BEST_CHECKPOINT))
        if raw_params:  # the scaffold's file, for the course's own loading code
            atomic_torch_save(weights.model, self.folder.file(BEST_PARAMS))

    def save_last(self, point: ResumePoint) -> None:
        atomic_torch_save(point.to_checkpoint(), self.folder.file(LAST_CHECKPOINT))

    def log(self, line: str) -> None:
        append_line(self.folder.file(LOG_FILE), line)

    def _write_status(self, state: str, epochs_done: int | None = None, num_epochs: int | None = None,
                      error: str | None = None, progress: EpochProgress | None = None) -> RunStatus:
        """Every change of state ends the progress record of the epoch in progress (unless it is the change)."""
        previous = self.status
        self.status = RunStatus(
            state=state, epochs_done=previous.epochs_done if epochs_done is None and previous else epochs_done or 0,
            num_epochs=num_epochs if num_epochs is not None else (previous.num_epochs if previous else 0),
            error=error, updated_at=time.time(), slurm_job_id=self.slurm_job_id, host=self.host, progress=progress)
        atomic_write_json(self.folder.file(STATUS_FILE), self.status.to_json())
        return self.status

    def start(self, num_epochs: int, epochs_done: int) -> RunStatus:
        return self._write_status(RUNNING, epochs_done, num_epochs)

    def record_progress(self, epoch: int, step: int, steps: int, seconds: float) -> RunStatus:
        """Where the running epoch is: `step` of `steps` batches of its training pass, `seconds` into it (the
        trainer calls it about every 10% of an epoch); status reads it for the step and the time left."""
        return self._write_status(RUNNING, progress=EpochProgress(epoch, step, steps, seconds))

    def finish_epoch(self, epochs_done: int) -> RunStatus:
        return self._write_status(RUNNING, epochs_done)

    def mark_done(self, epochs_done: int) -> RunStatus:
        return self._write_status(DONE, epochs_done)

    def mark_diverged(self, epochs_done: int) -> RunStatus:
        return self._write_status(DIVERGED, epochs_done)

    def mark_cancelled(self, num_epochs: int | None = None) -> RunStatus:
        """Stopped on request (a signal, scancel, Ctrl-C): resumable from last.pt."""
        return self._write_status(CANCELLED, num_epochs=num_epochs)

    def mark_failed(self, error: str, epochs_done: int | None = None, num_epochs: int | None = None) -> RunStatus:
        """`error` kept as one readable line (a C++ error from torch is kilobytes of stack frames; the run's
        log has all of it): what status, the plan and submit's summary show."""
        return self._write_status(FAILED, epochs_done, num_epochs, error=error_line(error))


def remove_orphans(folder: Path, names: tuple[str, ...]) -> tuple[int, int]:
    """The temporaries (`.<name>.*.tmp`) of `names` a kill left; only their writer (the lock's holder) calls it."""
    count = size = 0
    for path in Path(folder).glob(".*.tmp"):
        if any(path.name.startswith(f".{name}.") for name in names):
            with contextlib.suppress(FileNotFoundError):
                size += path.lstat().st_size
                path.unlink()
                count += 1
    return count, size


MAX_ERROR_CHARS = 300


def error_line(text: str) -> str:
    """The first non-empty line of `text`, cut at MAX_ERROR_CHARS."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "no message")
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 3] + "..."
