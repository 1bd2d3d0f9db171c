"""`ptblm status EXP`: one table per experiment, built from its run folders alone.

config.json (or, before the task started, submitted.json) says which setting a folder holds, so the
table needs no jobs file. The scheduler's view is one squeue poll, taken when the table is made: a run
that its folder calls pending, running or requeued but whose job squeue no longer lists is shown
`lost` (or as sacct says, e.g. `cancelled`, where accounting answers), with its job id and log.
Without squeue (a laptop after rsync-ing results back) the folders' states are shown as they are.
A run outside Slurm (`ptblm train`, a local submit) that says running but whose .lock nobody holds is
shown `stopped`, resumable from its last epoch. A folder with a file that cannot be read is one row
`damaged`, with the file and the reason below the table; every other run is shown as usual.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from . import layout
from . import runfolder as rf
from .formatting import format_ppl, format_seconds
from .jobs import Experiment

__all__ = ["FolderView", "read_folder", "status_rows", "status_table", "status_report", "format_ppl",
           "format_seconds"]


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
        """Submitted to Slurm (submitit or sbatch), or training inside a Slurm job: squeue knows about it."""
        status = self.record.status if self.record.status_written else None
        return bool(self.job_id) and (self.executor in ("slurm", "sbatch") or bool(status and status.slurm_job_id))

    def writer_gone(self) -> bool:
        """It says running or requeued, but nobody holds its lock (a killed `ptblm train`, a closed terminal)."""
        try:
            return rf.RunFolder(self.folder).writer_gone(self.record)
        except rf.Damaged:
            return False


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


def scheduler_state(view: FolderView, scheduler: dict[str, str] | None, accounting: dict[str, str] | None,
                    results_dir: Path, experiment: str) -> tuple[str, str | None]:
    """The state to show and, for a damaged, lost or stopped run, a note saying why and what to do."""
    if view.record.damage:
        return rf.DAMAGED, (f"damaged: {view.record.damage.describe()}; rerun it from scratch with "
                            f"`ptblm submit {experiment} --force` (or `ptblm train ... --force`)")
    if view.state not in rf.ACTIVE_STATES:
        return view.state, None
    if view.slurm_job:
        if scheduler is None:  # no squeue here (results copied to a laptop): the folder's word is all there is
            return view.state, None
        queued_as = scheduler.get(view.job_id, "").lower()
        if queued_as:
            return (view.state if queued_as == view.state else f"{view.state} ({queued_as})"), None
        final = (accounting or {}).get(view.job_id, "").lower()
        shown = final if final and final not in ("pending", "running", "requeued") else "lost"
        log = layout.task_log_path(results_dir, experiment, view.executor or "slurm", view.job_id)
        return shown, (f"job {view.job_id} is no longer queued or running, but its run folder says {view.state}; "
                       f"log: {log}; `ptblm submit {experiment}` resumes it")
    if view.writer_gone():
        epochs = len(view.record.curves.epochs)
        return rf.STOPPED, (f"stopped after epoch {epochs}/{view.num_epochs or '?'}: it says {view.state}, but no "
                            f"process holds its {rf.LOCK_FILE} (killed, or its terminal closed); rerunning "
                            f"`ptblm train` with the same flags, or `ptblm submit {experiment}`, resumes it")
    return view.state, None


def lost_job_ids(results_dir: Path, experiment: str, scheduler: dict[str, str] | None) -> list[str]:
    """Jobs that the run folders say may still run but squeue does not list: the ones to ask sacct about."""
    if scheduler is None:
        return []
    views = [read_folder(folder) for folder in layout.run_folders(results_dir, experiment)]
    return sorted(v.job_id for v in views if v and v.slurm_job and v.state in rf.ACTIVE_STATES
                  and v.job_id not in scheduler)


def status_rows(results_dir: Path, experiment: str, planned: Experiment | None = None,
                scheduler: dict[str, str] | None = None, accounting: dict[str, str] | None = None,
                notes: list[str] | None = None) -> list[dict]:
    """One row per run folder of `experiment`, then the settings of `planned` (its jobs file, when there is
    one) that have no folder yet. `scheduler`: squeue's view, None when it does not answer."""
    rows, seen = [], set()
    notes = [] if notes is None else notes
    planned_index = {s.run_name: s.index for s in planned.settings} if planned else {}  # folders from before
    # submitted.json recorded the setting (and manual runs) have no index of their own
    for folder in layout.run_folders(results_dir, experiment):
        view = read_folder(folder)
        if view is None:
            continue
        seen.add(folder.name)
        if view.index is None:
            view.index = planned_index.get(folder.name)
        state, note = scheduler_state(view, scheduler, accounting, results_dir, experiment)
        if note:
            notes.append(f"{view.index}: {note}")
        elif view.state == rf.FAILED and view.error:
            notes.append(f"{view.index}: failed: {view.error}")
        curves = view.record.curves
        last, best = curves.last_epoch(), curves.best_epoch()
        rows.append({"#": "-" if view.index is None else view.index, "run": folder.name, "state": state,
                     "epoch": f"{len(curves.epochs)}/{view.num_epochs or '?'}",
                     "last valid ppl": format_ppl(last.valid_ppl if last else None),
                     "best valid ppl": format_ppl(best.valid_ppl if best else None),
                     "elapsed": format_seconds(last.wall_clock_seconds if last else None),
                     "slurm job": view.job_id or "-"})
    for setting in (planned.settings if planned else ()):
        if setting.run_name not in seen:
            rows.append({"#": setting.index, "run": setting.run_name, "state": "not submitted",
                         "epoch": f"0/{setting.config.num_epochs}", "last valid ppl": "-", "best valid ppl": "-",
                         "elapsed": "-", "slurm job": "-"})
    return sorted(rows, key=lambda row: (row["#"] == "-", row["#"] if row["#"] != "-" else 0, row["run"]))


def status_table(results_dir: Path, experiment: str, planned: Experiment | None = None,
                 scheduler: dict[str, str] | None = None, accounting: dict[str, str] | None = None) -> str:
    notes: list[str] = []
    rows = status_rows(results_dir, experiment, planned, scheduler, accounting, notes)
    title = f"{experiment}: {planned.description}" if planned and planned.description else experiment
    return f"{title}\n" + tabulate(rows, headers="keys") + "".join(f"\n  setting {note}" for note in notes)


def status_report(results_dir: Path, jobs_dir: Path, names: list[str] | None = None,
                  scheduler=None, accounting=None, overrides=None) -> str:
    """The tables of `names` (default: every experiment with results), one squeue poll for all of them.
    `scheduler` and `accounting` are functions (squeue_states, sacct_states), to be replaced in tests;
    `overrides` (jobs.Overrides, from --set) make the "not submitted" rows those of a submission with them."""
    from .jobs import load_experiment
    from .launch.slurm import sacct_states, squeue_states

    names = names or [name for name in layout.experiments_with_results(results_dir)
                      if any(read_folder(folder) for folder in layout.run_folders(results_dir, name))]
    if not names:
        return f"no results under {results_dir} yet; name an experiment, e.g. `ptblm status 3.1`"
    queued = (scheduler or squeue_states)()  # None when squeue does not answer
    tables = []
    for name in names:
        has_jobs_file = Path(name).suffix in (".yaml", ".yml") or (Path(jobs_dir) / f"{name}.yaml").is_file()
        planned = None  # the jobs file only adds "not submitted" rows
        if has_jobs_file or not layout.experiment_dir(results_dir, name).is_dir():
            planned = load_experiment(name, jobs_dir, overrides)  # the usual one line for an unknown experiment
        experiment = planned.name if planned else name
        final = (accounting or sacct_states)(lost_job_ids(results_dir, experiment, queued))
        tables.append(status_table(results_dir, experiment, planned, queued, final))
    return "\n\n".join(tables)
