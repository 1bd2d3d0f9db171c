"""The one remedy for one damaged run: the command that reruns exactly that run from scratch, and nothing else.

Every reader that meets a damaged run (status, the submit plan, tables' notes, samples, gradients, evaluate,
generate) says this, through Damage.hint. A run submitted from a jobs file gets its submission again
(invocation.resubmit_command) with `--only <setting> --force`: --force reruns only the settings --only picks,
so the other runs of the experiment, finished or not, are left as they are. A run trained by hand (`ptblm
train`, results/manual/...) has no experiment to submit: its own `ptblm train` command with `--out <folder>
--force`. What the remedy needs is read from the folder's readable files; the damaged one is never trusted.
"""
from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

from ..invocation import Locations, resubmit_command
from .damage import RunFolderError
from .records import LOCK_FILE, OWN_FILES, TB_FOLDER, Submission


def run_folder_of(damaged: Path) -> Path:
    """The run folder a damaged entry belongs to: the folder of one of its files, or the folder itself."""
    damaged = Path(damaged)
    return damaged.parent if damaged.name in (*OWN_FILES, LOCK_FILE, TB_FOLDER) else damaged


def rerun_command(folder: Path, where: Locations | None = None) -> str:
    """The command (in backquotes, make's spelling first where make can say it) that reruns the one run in
    `folder` from scratch. `where`: how ptblm is run and the folders named; None: `ptblm`, the results folder
    the run is in, the default jobs folder."""
    from .folder import RunFolder

    run = RunFolder(folder)
    submission = settings = None
    with contextlib.suppress(RunFolderError, OSError):
        submission = run.read_submission()
    with contextlib.suppress(RunFolderError, OSError):
        settings = run.read_settings()
    provenance = settings.provenance if settings else {}
    where = where or Locations(results_dir=None if run.path.parent.parent == Path("results")
                               else run.path.parent.parent)
    setting = submission.setting_index if submission and submission.setting_index is not None \
        else provenance.get("setting_index")
    if setting is not None:
        experiment = provenance.get("experiment") or run.path.parent.name
        return resubmission(experiment, submission, setting, where, force=True)
    return f"`{' '.join([where.ptblm, *train_arguments(provenance.get('command_line'), run.path)])}`"


def resubmission(experiment: str, submission: Submission | None, setting: int | None, where: Locations,
                 force: bool = False) -> str:
    """The run's own submission again (its executor, --set texts, profile and jobs folder) for `setting`: what
    resumes it, or with `force` reruns it from scratch (invocation.resubmit_command)."""
    return resubmit_command(experiment, executor=submission.executor if submission else None,
                            overrides=(submission.overrides or ()) if submission else (), setting=setting,
                            profile=submission.profile if submission else None, results_dir=where.results_dir,
                            jobs_dir=jobs_folder(submission, where), ptblm=where.ptblm, force=force)


def jobs_folder(submission: Submission | None, where: Locations) -> Path | None:
    """The jobs folder a suggested submit command names: the one named now (--jobs), else the one the run was
    submitted from when that was not the default; None: the default jobs/."""
    if where.jobs_dir is not None:
        return where.jobs_dir
    return Path(submission.jobs_dir) if submission and submission.jobs_dir else None


def train_arguments(command_line: list[str] | None, folder: Path) -> list[str]:
    """`train ... --out FOLDER --force`: the recorded `ptblm train` command (without the program), its --out
    set to `folder` and --force added; `train <its flags>` when the command was not recorded."""
    arguments = list(command_line[1:]) if command_line and "train" in command_line[1:2] else None
    if arguments is None:
        return ["train", "<its", "flags>", "--out", shlex.quote(str(folder)), "--force"]
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--out":
            skip = True
        elif argument != "--force" and not argument.startswith("--out="):
            kept.append(argument)
    return [*map(shlex.quote, kept), "--out", shlex.quote(str(folder)), "--force"]
