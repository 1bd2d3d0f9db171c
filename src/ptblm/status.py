"""`ptblm status EXP`: one table per experiment, built from its run folders alone.

config.json (or, before the task started, submitted.json) says which setting a folder holds, so the
table needs no jobs file. The scheduler's view is one squeue poll, taken when the table is made: a run
that its folder calls pending, running or requeued but whose job squeue no longer lists is shown
`lost` (or as sacct says, e.g. `cancelled`, where accounting answers), with its job id and log.
Without squeue (a laptop after rsync-ing results back) the folders' states are shown as they are.
A run outside Slurm (`ptblm train`, a local submit) that says running but whose .lock nobody holds is
shown `stopped`, resumable from its last epoch. A folder with a file that cannot be read is one row
`damaged`, with the file and the reason below the table; every other run is shown as usual.

A queued job is the folder's only under the name it was queued as (launch.slurm.jobs_of_run: a job id reused
by another job is not the run's). A pending setting shows squeue's reason; a running one the epoch in progress,
its training time so far and the time left (ptblm.timeleft); a cancelled, stopped, lost or failed one the
command that resumes it. Each table ends with one `summary EXP: ...` line (the settings by state, and when the
last running one should end) for a job-end e-mail or a cron job to carry.
"""
from __future__ import annotations

import functools
import shlex
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from . import layout
from . import runfolder as rf
from .errors import SettingCannotRun
from .formatting import format_ppl, format_seconds
from .invocation import Locations
from .runfolder.remedy import resubmission
from .jobs import Experiment
from .launch.slurm import QueuedJob, Scheduler, jobs_of_run
from .naming import each_once
from .timeleft import clock, run_timing

__all__ = ["FolderView", "Locations", "read_folder", "status_rows", "status_table", "status_report", "summary_line",
           "format_ppl", "format_seconds"]
SUMMARY_ORDER = ("done", "diverged", "running", "requeued", "pending", "stopped", "cancelled", "lost", "failed",
                 "damaged")  # then any other state sacct reports (timeout, ...), then "not submitted"
NOT_SUBMITTED = "not submitted"  # a setting of the jobs file without a run folder


@dataclass(frozen=True)
class Shown:
    """A run's state as status shows it, the note below the table (or None), and whether it trains right now."""

    state: str
    note: str | None = None
    training: bool = False


@dataclass
class FolderView:
    """One run folder as status sees it (one row): built from its RunRecord alone, plus its lock when the
    record says a writer works there."""

    folder: Path
    record: rf.RunRecord
    index: int | None
    num_epochs: int | None
    state: str  # what the folder says (pending, running, done, ..., damaged)
    job_id: str | None
    executor: str | None
    error: str | None

    @property
    def slurm_job(self) -> bool:
        return self.record.under_scheduler


def read_folder(folder: Path) -> FolderView | None:
    """None for a folder that holds no run (none of its files)."""
    run = rf.RunFolder(folder)
    if not run.holds_run():
        return None
    record = run.read()
    submission = record.submission
    planned = (submission.config or {}) if submission else {}
    num_epochs = record.config.get("num_epochs") or planned.get("num_epochs")
    return FolderView(folder, record, record.setting_index, num_epochs, record.state, record.job_id,
                      submission.executor if submission else None,
                      record.status.error if record.status_written else None)


def scheduler_state(view: FolderView, scheduler: Scheduler | None, accounting: dict[str, str] | None,
                    results_dir: Path, experiment: str, where: Locations = Locations()) -> Shown:
    """The state to show and, for a damaged, lost, stopped, cancelled or failed run, a note saying why and what
    to do; `training`: a live process trains it now (squeue runs its job, or its lock is held)."""
    if view.record.damage:
        return Shown(rf.DAMAGED, f"damaged: {view.record.damage.describe()}; {view.record.damage.hint(where)}")
    if view.state == rf.CANCELLED:
        return Shown(view.state, f"cancelled after epoch {len(view.record.curves.epochs)}/{view.num_epochs or '?'}; "
                                 f"{resume_hint(view, experiment, where)}")
    if view.state == rf.FAILED and reruns_fail_again(view.error):
        return Shown(view.state, f"failed: {view.error}; the setting itself cannot run, so rerunning it fails the "
                                 f"same way: change the setting (a changed one trains in a new run folder)")
    if view.state == rf.FAILED:
        return Shown(view.state, f"failed: {view.error or 'no error recorded'}; once that is fixed, "
                                 f"{resume_hint(view, experiment, where)}")
    if view.state not in rf.ACTIVE_STATES:
        return Shown(view.state)
    if view.slurm_job:
        if scheduler is None:  # no squeue here (results copied to a laptop): the folder's word is all there is
            return Shown(view.state)
        job: QueuedJob | None = jobs_of_run(view.record, scheduler).get(view.job_id)
        if job is not None:
            queued_as = job.state.lower()
            waits = f": {job.reason}" if job.reason and job.reason != "None" else ""
            if queued_as == view.state:
                return Shown(view.state + (f" ({job.reason})" if waits else ""), training=queued_as == rf.RUNNING)
            return Shown(f"{view.state} ({queued_as}{waits if queued_as == rf.PENDING else ''})")
        final = (accounting or {}).get(view.job_id, "").lower()
        shown = final if final and final not in ("pending", "running", "requeued") else "lost"
        return Shown(shown, f"job {view.job_id} is no longer queued or running, but its run folder says "
                            f"{view.state}; {task_log_note(view, results_dir, experiment)}; "
                            f"{resume_hint(view, experiment, where)}")
    if view.record.writer_gone:
        epochs = len(view.record.curves.epochs)
        return Shown(rf.STOPPED, f"stopped after epoch {epochs}/{view.num_epochs or '?'}: it says {view.state}, but "
                                 f"no process holds its {rf.LOCK_FILE} (killed, or its terminal closed); "
                                 f"{resume_hint(view, experiment, where)}")
    return Shown(view.state, training=view.state == rf.RUNNING)


def task_log_note(view: FolderView, results_dir: Path, experiment: str) -> str:
    """'log: <its task's log>' when that log exists; a task cancelled (scancel) or refused before it started
    wrote none, and a path to no file would send the reader looking for it."""
    log = layout.task_log_path(results_dir, experiment, view.executor or "slurm", view.job_id)
    if log is not None and log.is_file():
        return f"log: {log}"
    if view.state == rf.PENDING:
        return "the task never started (it wrote no log)"
    return f"its task wrote no log{f' in {log.parent}' if log is not None else ''}"


# squeue installed but failing (a Slurm controller down, a timeout): the plan warns too (launch/plan.py)
SQUEUE_SILENT = ("warning: squeue is installed but did not answer, so the states below are what the run folders "
                 "last said: a pending or running run may have ended since (`squeue -u $USER` shows why)")


@functools.cache
def setting_error_names() -> frozenset[str]:
    """The class names of SettingCannotRun and its subclasses, found once."""
    from .data import batching  # noqa: F401  (its BatchesDoNotFit is one; the data package imports numpy)

    kinds, names = [SettingCannotRun], set()
    while kinds:
        kind = kinds.pop()
        names.add(kind.__name__)
        kinds += kind.__subclasses__()
    return frozenset(names)


def reruns_fail_again(error: str | None) -> bool:
    """Whether a failed run's recorded error ("<class>: <message>") is a SettingCannotRun's: the setting itself
    cannot run, and no rerun of it is a remedy."""
    kind = (error or "").partition(":")[0]
    # recorded before BatchesDoNotFit had a name of its own: as DataError (or ValueError) with the same words
    return kind in setting_error_names() or (kind in ("DataError", "ValueError")
                                             and " cannot fill one batch of batch_size " in error)


def resume_hint(view: FolderView, experiment: str, where: Locations) -> str:
    """The exact command that resumes the run from its last epoch: its submission again (with the --set texts,
    the setting number and the profile submitted.json recorded), or the `ptblm train` command it ran with."""
    submission = view.record.submission
    if submission is None:
        command_line = view.record.provenance.get("command_line")
        if command_line:
            return f"`{' '.join([where.ptblm, *map(shlex.quote, command_line[1:])])}` resumes it"
        return "rerunning `ptblm train` with the same flags resumes it"
    return resubmission(experiment, submission, view.index, where) + " resumes it"


def lost_job_ids(results_dir: Path, experiment: str, scheduler: Scheduler | None) -> list[str]:
    """Jobs that the run folders say may still run but squeue does not list (as theirs): the ones to ask sacct
    about."""
    if scheduler is None:
        return []
    views = [read_folder(folder) for folder in rf.experiment_runs(results_dir, experiment)]
    return sorted(v.job_id for v in views if v and v.slurm_job and v.state in rf.ACTIVE_STATES
                  and v.job_id not in jobs_of_run(v.record, scheduler))


@dataclass
class StatusRow:
    cells: dict  # the table's row
    left: float | None = None  # seconds of training left, for a setting that trains now


def experiment_rows(results_dir: Path, experiment: str, planned: Experiment | None, scheduler: Scheduler | None,
                    accounting: dict[str, str] | None, where: Locations,
                    now: float) -> tuple[list[StatusRow], list[str]]:
    """One row per run folder of `experiment`, then the settings of `planned` (its jobs file, when there is
    one) that have no folder yet; and the notes below the table."""
    rows, notes, seen = [], [], set()  # notes: (the row's sort key, the note)
    planned_index = {s.run_name: s.index for s in planned.settings} if planned else {}  # folders from before
    # submitted.json recorded the setting (and manual runs) have no index of their own
    for folder in rf.experiment_runs(results_dir, experiment):
        view = read_folder(folder)
        if view is None:
            continue
        seen.add(folder.name)
        if view.index is None:
            view.index = planned_index.get(folder.name)
        shown = scheduler_state(view, scheduler, accounting, results_dir, experiment, where)
        if shown.note:
            label = f"setting {view.index}" if view.index is not None else f"run {folder.name}"  # a manual run
            notes.append((row_order(view.index, folder.name), f"{label}: {shown.note}"))
        curves = view.record.curves
        last, best = curves.last_epoch(), curves.best_epoch()
        timing = run_timing(view.record, shown.training, now)
        epoch = f"{len(curves.epochs)}/{view.num_epochs or '?'}"
        if timing.progress:
            epoch += f" (epoch {timing.progress.epoch}: {int(100 * timing.progress.fraction)}%)"
        rows.append(StatusRow({"#": "-" if view.index is None else view.index, "run": folder.name,
                               "state": shown.state, "epoch": epoch,
                               "last valid ppl": format_ppl(last.valid_ppl if last else None),
                               "best valid ppl": format_ppl(best.valid_ppl if best else None),
                               "elapsed": format_seconds(timing.elapsed), "left": format_seconds(timing.left),
                               "slurm job": view.job_id or "-"}, timing.left if shown.training else None))
    for setting in (planned.settings if planned else ()):
        if setting.run_name not in seen:
            rows.append(StatusRow({"#": setting.index, "run": setting.run_name, "state": NOT_SUBMITTED,
                                   "epoch": f"0/{setting.config.num_epochs}", "last valid ppl": "-",
                                   "best valid ppl": "-", "elapsed": "-", "left": "-", "slurm job": "-"}))
    rows.sort(key=lambda row: row_order(None if row.cells["#"] == "-" else row.cells["#"], row.cells["run"]))
    return rows, [note for _, note in sorted(notes, key=lambda pair: pair[0])]


def row_order(index: int | None, run: str) -> tuple:
    """Rows and the notes below them by setting, then the runs without a setting number (manual ones) by name."""
    return (index is None, index if index is not None else 0, run)


def status_rows(results_dir: Path, experiment: str, planned: Experiment | None = None,
                scheduler: Scheduler | None = None, accounting: dict[str, str] | None = None,
                notes: list[str] | None = None, where: Locations = Locations(), now: float | None = None) -> list[dict]:
    """The table's rows (see experiment_rows); `scheduler`: squeue's view, None when it does not answer."""
    rows, found = experiment_rows(results_dir, experiment, planned, scheduler, accounting, where,
                                  time.time() if now is None else now)
    if notes is not None:
        notes.extend(found)
    return [row.cells for row in rows]


def summary_line(experiment: str, rows: list[StatusRow], now: float) -> str:
    """`summary 3.1: 3 done, 1 running, 1 pending; last running ends ~14:32 (in 1:20:00)`: one line to grep."""
    counts = Counter(row.cells["state"].split(" (")[0] for row in rows)
    order = [*SUMMARY_ORDER, *sorted(set(counts) - {*SUMMARY_ORDER, NOT_SUBMITTED}), NOT_SUBMITTED]
    line = f"summary {experiment}: " + (", ".join(f"{counts[state]} {state}" for state in order if counts[state])
                                        or "no settings")
    training = [row for row in rows if row.cells["state"] == rf.RUNNING]
    lefts = [row.left for row in training if row.left is not None]
    if lefts:
        ends = clock(now + max(lefts), now)
        line += f"; last running ends {f'~{ends} ' if ends else ''}(in {format_seconds(max(lefts))})"
        if len(lefts) < len(training):
            line += f", {len(training) - len(lefts)} running without an estimate yet"
    elif training:
        line += "; time left known once the first progress record or epoch is written"
    return line


def status_table(results_dir: Path, experiment: str, planned: Experiment | None = None,
                 scheduler: Scheduler | None = None, accounting: dict[str, str] | None = None,
                 where: Locations = Locations(), now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows, notes = experiment_rows(results_dir, experiment, planned, scheduler, accounting, where, now)
    title = f"{experiment}: {planned.description}" if planned and planned.description else experiment
    return (f"{title}\n" + tabulate([row.cells for row in rows], headers="keys")
            + "".join(f"\n  {note}" for note in notes) + "\n" + summary_line(experiment, rows, now))


def status_report(results_dir: Path, jobs_dir: Path, names: list[str] | None = None,
                  scheduler=None, accounting=None, overrides=None, where: Locations = Locations(),
                  now: float | None = None) -> str:
    """The tables of `names` (default: every experiment with results), one squeue poll for all of them.
    `scheduler` and `accounting` are functions (squeue_jobs, sacct_states), to be replaced in tests;
    `overrides` (jobs.Overrides, from --set) make the "not submitted" rows those of a submission with them;
    `where` spells the resume commands; `now` is the clock of the estimates."""
    from .jobs import load_experiment
    from .launch.slurm import sacct_states, squeue_jobs

    names = each_once(names or rf.experiments(results_dir))  # one table per experiment, however often named
    if not names:
        return f"no results under {results_dir} yet; name an experiment, e.g. `ptblm status 3.1`"
    queued = (scheduler or squeue_jobs)()  # None when squeue does not answer
    now = time.time() if now is None else now
    tables = [SQUEUE_SILENT] if queued is None and shutil.which("squeue") else []
    for name in names:
        has_jobs_file = Path(name).suffix in (".yaml", ".yml") or (Path(jobs_dir) / f"{name}.yaml").is_file()
        planned = None  # the jobs file only adds "not submitted" rows
        if has_jobs_file or not rf.experiment_runs(results_dir, name):
            planned = load_experiment(name, jobs_dir, overrides)  # the usual one line for an unknown experiment
        experiment = planned.name if planned else name
        final = (accounting or sacct_states)(lost_job_ids(results_dir, experiment, queued))
        tables.append(status_table(results_dir, experiment, planned, queued, final, where, now))
    return "\n\n".join(tables)
