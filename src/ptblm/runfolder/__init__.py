"""The run folder: the one on-disk contract between training and everything that reads results.

    results/<exp>/<run>/
        config.json   every setting plus provenance (code version, torch, device, command line, Slurm ids)
        curves.json   one record per finished epoch (see EpochRecord), and test_ppl with --evaluate
        status.json   state: running | done | diverged | failed | requeued | cancelled, epochs finished, error;
                      while running, `progress`: the epoch in progress, its step and seconds (~every 10%)
        submitted.json  written by `ptblm submit`/`sbatch` only: job id, time, setting of the last submission
        log.txt       human log, appended
        best.pt       weights of the best validation epoch (at each finite improvement, --save_best or not)
        best_params.pt  with save_best only: the same weights as a raw state_dict, run_exp.py's file
        last.pt       everything needed to resume (model, optimizer, epoch, RNG states, curves)
        packages.txt  the installed packages of the latest attempt, `pip freeze` style (its hash in config.json)
        tb/           TensorBoard event files (see ptblm.tensorboard_events)
        .lock         flock'd by the one process writing the folder

One owner: `RunFolder` (folder.py) alone reads these files (`read`: one RunRecord, a damaged run marked,
never an exception that hides the other runs), holds the lock (`hold`), and writes, through the RunWriter
that `hold` yields, every file and every state change (`start`, `record_progress`, `finish_epoch`, `mark_done`,
`mark_diverged`, `mark_cancelled`, `mark_failed`; `mark_requeued` and `mark_failed_before_start` for the
launch layer). records.py is the schema (typed records, format_version checked and migrated), writer.py the
RunWriter, files.py the atomic, link-refusing I/O, checkpoints.py best.pt and last.pt, states.py the states.

Every write is atomic (temporary file in the same folder, created with the umask's mode, then rename),
so a run killed at any instant leaves readable files; the orphans of such a kill are removed by the next
run. No run file is opened through a symbolic link.

The module-level functions below are the API before RunFolder, kept for callers not yet moved to it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..runlock import LockHolder, read_lock_holder
from .checkpoints import BestWeights, ResumePoint, load_checkpoint
from .files import (FileWriteError, atomic_torch_save, atomic_write_bytes, atomic_write_json,
                    read_bytes, read_json, read_json_object)
from .folder import NoBestWeights, RunFolder, RunFolderBusy, RunRecord
from .tree import experiment_runs, experiments, find_runs
from .writer import RunWriter, remove_orphans
from .records import (BEST_CHECKPOINT, BEST_PARAMS, CHECKPOINTS, CONFIG_FILE, CORPUS_KEY, CURVES_FILE,
                      FORMAT_VERSION, JSON_FILES, LAST_CHECKPOINT, LOCK_FILE, LOG_FILE, OWN_FILES, PACKAGES_FILE,
                      STATUS_FILE, SUBMISSION_FILE, TB_FOLDER, TRAINER_FILES, ATTEMPT_KINDS, Curves, EpochProgress,
                      EpochRecord, RunSettings, RunStatus, Submission)
from .damage import Damage, Damaged, RunFolderError
from .fields import decode_float, encode_float
from .states import (ACTIVE_STATES, CANCELLED, DAMAGED, DIVERGED, DONE, FAILED, FINISHED_STATES, PENDING,
                     REQUEUED, RUNNING, STOPPED, STORED_STATES, WRITING_STATES, current_job_id, current_state)

__all__ = [
    "RunFolder", "RunRecord", "RunWriter", "RunFolderError", "RunFolderBusy", "NoBestWeights", "Damaged", "Damage",
    "FileWriteError",
    "RunSettings", "RunStatus", "Curves", "EpochRecord", "EpochProgress", "Submission", "BestWeights", "ResumePoint",
    "LockHolder",
    "experiments", "experiment_runs", "find_runs", "remove_orphans", "load_checkpoint", "current_state",
    "current_job_id", "encode_float", "decode_float",
    "atomic_write_bytes", "atomic_write_json", "atomic_torch_save", "read_bytes", "read_json", "read_json_object",
    "CONFIG_FILE", "CURVES_FILE", "STATUS_FILE", "LOG_FILE", "BEST_CHECKPOINT", "BEST_PARAMS", "LAST_CHECKPOINT",
    "SUBMISSION_FILE", "PACKAGES_FILE", "TB_FOLDER", "LOCK_FILE", "OWN_FILES", "TRAINER_FILES", "JSON_FILES",
    "CHECKPOINTS", "CORPUS_KEY", "ATTEMPT_KINDS",
    "FORMAT_VERSION", "RUNNING", "DONE", "DIVERGED", "FAILED", "REQUEUED", "CANCELLED", "PENDING", "STOPPED",
    "DAMAGED", "STORED_STATES", "FINISHED_STATES", "ACTIVE_STATES", "WRITING_STATES",
]


# --- the API before RunFolder (thin wrappers; new code uses RunFolder) -------------------------------------

def read_run(folder: Path) -> RunRecord:
    """One run folder, strictly: Damaged for a damaged one, ValueError for a folder without config.json."""
    record = RunFolder(folder).read()
    if record.damage:
        raise Damaged.of(record.damage)
    if not record.config:
        raise ValueError(f"{folder}: no {CONFIG_FILE}, not a run folder")
    return record


def read_status(folder: Path) -> RunStatus | None:
    return RunFolder(folder).read_status()


def read_curves(folder: Path) -> Curves:
    return RunFolder(folder).read_curves()


def read_submission(folder: Path) -> Submission | None:
    return RunFolder(folder).read_submission()


def recorded_corpus(folder: Path) -> str | None:
    return RunFolder(folder).recorded_corpus()


def write_submission(folder: Path, submission: Submission) -> None:
    atomic_write_json(Path(folder) / SUBMISSION_FILE, submission.to_json())


def is_run_folder(folder: Path) -> bool:
    return RunFolder(folder).is_run_folder()


@contextlib.contextmanager
def hold_run_folder(folder: Path, slurm_job_id: str | None = None) -> Iterator[LockHolder]:
    with RunFolder(folder).hold(slurm_job_id) as writer:
        yield writer.holder


def read_holder(folder: Path) -> LockHolder | None:
    return read_lock_holder(Path(folder) / LOCK_FILE)
