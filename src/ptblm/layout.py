"""The results tree, spelled out in one place (the files inside a run folder are ptblm.runfolder's):

    results/<exp>/                 one experiment
      <run>/                       one run folder per setting (see ptblm.runfolder)
      logs/                        scheduler logs: submitit's <job>_<task>_0_log.out, sbatch's <job>_<task>.out,
                                   and pinned-*.json, what each task of an sbatch array runs
      .submit.lock                 held by the `ptblm submit`/`ptblm sbatch` planning and submitting now
    results/manual/<run>/          `ptblm train` without --out (an experiment, which the report leaves out unless named)
    results/report/                tables, figures, gradients, samples, report.tex
    results/bench/                 `ptblm bench`'s JSON files
    results/demo/                  `ptblm demo`: a results tree of its own (demo/smoke/<run>/)
    results/.compile-cache/        Inductor's cache (ptblm.compiling)
    results/.corpus-fingerprints.json  file digests by path, size and mtime: the corpus files'
                                       (ptblm.data.corpus_fingerprint) and the container image's
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

def user_path(text: str | os.PathLike) -> Path:
    """A folder or file as a person wrote it, `~` and `~user` expanded: make, a quoted value or a variable
    (RESULTS='~/x', PTBLM_RESULTS) pass the tilde on literally, and a folder named `~` is never meant. A
    `~user` of no user here is a UserError."""
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:  # no such user, or no home
        raise UserError(f"{text}: {path.parts[0]} names no user of this machine (so no home folder to put in its "
                        f"place); valid: ~/..., ~<existing user>/..., or a path without ~") from None


LOGS_FOLDER = "logs"
SUBMIT_LOCK_FILE = ".submit.lock"
NOT_RUN_FOLDERS = (LOGS_FOLDER,)  # folders of an experiment that are not settings
MANUAL_EXPERIMENT = "manual"
REPORT_FOLDER = "report"
DEMO_FOLDER = "demo"
COMPILE_CACHE_FOLDER = ".compile-cache"
BENCH_FOLDER = "bench"  # ptblm bench's JSON files, read back by the dry run's cost projection
FINGERPRINT_CACHE_FILE = ".corpus-fingerprints.json"
NOT_EXPERIMENT_FOLDERS = (REPORT_FOLDER, BENCH_FOLDER, DEMO_FOLDER)  # what ptblm writes beside the experiments
RESERVED_NAMES = (MANUAL_EXPERIMENT, *NOT_EXPERIMENT_FOLDERS)  # no jobs file may name its experiment so


class OutputFolderError(UserError):
    """A folder a command must write into is a file, or cannot be made or written."""


def output_dir(path: Path, flag: str) -> Path:
    """The folder a command writes into, made if missing. A file in the way or a place this user cannot write
    is one line naming the path and `flag`, the option that chooses another (not an OSError traceback)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in (path, *path.parents) if p.exists() and not p.is_dir())
        if blocking == path:
            raise OutputFolderError(f"{path} is a file, not a folder: move it away, or choose another folder with "
                                    f"{flag}") from None
        raise OutputFolderError(f"{blocking} is a file, not a folder, so {path} cannot be written: choose a folder "
                                f"with {flag}") from None
    except OSError as error:
        raise OutputFolderError(f"{path}: cannot create it ({error.strerror}): choose a writable folder with "
                                f"{flag}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{path} is not writable: choose a writable folder with {flag}")
    return path


def logs_folder(results_dir: Path, experiment: str) -> Path:
    """logs_dir, made if missing; one line naming it when a link, a FIFO or a file is in its place (submitit and
    sbatch would write through a link, or fail with a traceback)."""
    path = logs_dir(results_dir, experiment)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = "a symbolic link" if path.is_symlink() else "not a folder"
        raise OutputFolderError(f"{path} is {kind}: ptblm writes experiment {experiment}'s Slurm and task logs "
                                f"there; remove it or move it away, then submit again")
    return output_dir(path, "--results (RESULTS= for make)")


def manual_run_dir(results_dir: Path, run_name: str) -> Path:
    return run_dir(results_dir, MANUAL_EXPERIMENT, run_name)


def report_dir(results_dir: Path) -> Path:
    return Path(results_dir) / REPORT_FOLDER


def demo_results_dir(results_dir: Path) -> Path:
    return Path(results_dir) / DEMO_FOLDER


def bench_dir(results_dir: Path) -> Path:
    return Path(results_dir) / BENCH_FOLDER


def compile_cache_dir(results_dir: Path) -> Path:
    return Path(results_dir) / COMPILE_CACHE_FOLDER


def fingerprint_cache_file(results_dir: Path) -> Path:
    return Path(results_dir) / FINGERPRINT_CACHE_FILE


def experiment_dir(results_dir: Path, experiment: str) -> Path:
    return Path(results_dir) / experiment


def run_dir(results_dir: Path, experiment: str, run_name: str) -> Path:
    return experiment_dir(results_dir, experiment) / run_name


def logs_dir(results_dir: Path, experiment: str) -> Path:
    """Where an experiment's Slurm and submitit logs go."""
    return experiment_dir(results_dir, experiment) / LOGS_FOLDER


def submit_lock_path(results_dir: Path, experiment: str) -> Path:
    return experiment_dir(results_dir, experiment) / SUBMIT_LOCK_FILE


def pinned_tasks_path(results_dir: Path, experiment: str, stamp: str) -> Path:
    """The task id -> run config mapping of one sbatch array, written before sbatch."""
    return logs_dir(results_dir, experiment) / f"pinned-{stamp}.json"


def task_log_path(results_dir: Path, experiment: str, executor: str, job_id: str | None) -> Path | None:
    """The log of a submitted task: submitit's `<job>_<task>_0_log.out`, sbatch's `<job>_<task>.out`."""
    if not job_id:
        return None
    folder = logs_dir(results_dir, experiment)
    return folder / (f"{job_id}.out" if executor == "sbatch" else f"{job_id}_0_log.out")


def run_folders(results_dir: Path, experiment: str) -> list[Path]:
    """Every setting's folder of an experiment (hidden folders and logs/ are not settings)."""
    folder = experiment_dir(results_dir, experiment)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_RUN_FOLDERS)


def experiment_folder_names(results_dir: Path) -> list[str]:
    """The folders of results/ that may hold an experiment: not hidden ones (.compile-cache) nor those ptblm
    writes beside the experiments (report/, bench/, demo/). Which of them hold runs is
    runfolder.experiments', the one list of experiments every command uses."""
    folders = Path(results_dir).iterdir() if Path(results_dir).is_dir() else []
    return sorted(p.name for p in folders if p.is_dir() and not p.name.startswith(".")
                  and p.name not in NOT_EXPERIMENT_FOLDERS)


def is_experiment_name(name: str) -> bool:
    """Whether results/<name> can be an experiment's folder (see experiment_folder_names)."""
    return name not in NOT_EXPERIMENT_FOLDERS and not name.startswith(".")
