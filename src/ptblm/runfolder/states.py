"""The states a run moves through, and the ones a reader derives from what it sees.

status.json stores one of STORED_STATES, written only by RunFolder's transitions (folder.py). Readers add
three that are never stored: `pending` (a submission newer than the last status: the task has not
started), `stopped` (the folder says running or requeued, but nobody holds its .lock, and no scheduler
job of its is queued: the writer died; resumable from its last epoch) and `damaged` (a file of the
folder cannot be read; see RunRecord.damage).
"""
from __future__ import annotations

RUNNING, DONE, DIVERGED, FAILED, REQUEUED, CANCELLED = (
    "running", "done", "diverged", "failed", "requeued", "cancelled")  # cancelled: stopped on request
PENDING, STOPPED, DAMAGED = "pending", "stopped", "damaged"  # derived by readers, never in status.json

STORED_STATES = (RUNNING, DONE, DIVERGED, FAILED, REQUEUED, CANCELLED)
FINISHED_STATES = (DONE, DIVERGED)  # resubmission skips these unless forced
ACTIVE_STATES = (PENDING, RUNNING, REQUEUED)  # a task may still be working in the folder
WRITING_STATES = (RUNNING, REQUEUED)  # a writer said it works in the folder: its .lock tells whether it still does


def current_state(status, submission) -> str:
    """A submission newer than the last status update means the task has not started yet."""
    if submission and (status is None or submission.submitted_at > (status.updated_at or 0)):
        return PENDING
    return status.state if status else PENDING


def current_job_id(status, submission) -> str | None:
    """The scheduler job the run last ran as, or the one it is queued as since its newer submission."""
    running_as = status.slurm_job_id if status and current_state(status, submission) != PENDING else None
    return running_as or (submission.job_id if submission else None)
