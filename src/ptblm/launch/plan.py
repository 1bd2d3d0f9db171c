"""What submitting does with each setting: a pure function of its run folder (its record and its lock) and the
scheduler's view."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from .. import runfolder as rf
from ..config import exact_number
from ..jobs import Experiment, Setting
from ..runfolder import ACTIVE_STATES  # noqa: F401  (its home before ptblm.runfolder.states)
from ..runlock import FREE, HELD, UNKNOWN
from .slurm import Scheduler, jobs_of_run


class Action(enum.Enum):
    SUBMIT = "submit"  # from scratch
    RESUME = "resume"  # from last.pt
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PlannedTask:
    setting: Setting
    action: Action
    reason: str  # for people only: control flow reads `action` and `forced`
    forced: bool = False  # --force: the folder is emptied once the scheduler accepted the task

    @property
    def runs(self) -> bool:
        return self.action is not Action.SKIP


@dataclass(frozen=True)
class FolderState:
    """A setting's run folder as the plan sees it: its record (None: no run there yet) and its lock."""

    record: rf.RunRecord | None
    lock: str = FREE  # runlock.HELD, FREE or UNKNOWN (a file system without flock)
    holder: str | None = None  # who holds the lock, in words
    unresumable: rf.Damage | None = None  # why the run, not finished, cannot resume (RunFolder.unresumable)
    best_weights: bool = False  # best.pt is there (a finished run's test pass reads it)

    @classmethod
    def read(cls, folder: Path) -> FolderState:
        run = rf.RunFolder(folder)
        if not run.path.is_dir():
            return cls(None)
        try:
            lock = run.lock_state()
        except rf.Damaged:
            lock = UNKNOWN  # a .lock that is a link: the record says the folder is damaged
        holder = run.holder() if lock == HELD else None
        record = run.read() if run.holds_run() else None
        return cls(record, lock, holder.describe() if holder else ("holder unknown" if lock == HELD else None),
                   run.unresumable(record) if record else None, run.file(rf.BEST_CHECKPOINT).is_file())


def plan_setting(setting: Setting, folder: FolderState, force: bool, scheduler: Scheduler | None,
                 corpus: str | None = None) -> PlannedTask:
    """`scheduler` is squeue's view ({} without Slurm, None when squeue does not answer: then settings that
    may still run are left alone); a queued job is the folder's only under the name it was queued as
    (launch.slurm.jobs_of_run). `corpus` is the fingerprint of the data the tasks will read: a folder
    trained on another corpus is neither reused nor resumed. A folder another process holds is left alone,
    forced or not; a damaged one is skipped, with its file and reason, unless forced."""
    record = folder.record
    status = record.status if record and record.status_written else None
    submission = record.submission if record else None
    job_ids = {status.slurm_job_id if status else None, submission.job_id if submission else None} - {None}
    active = sorted(jobs_of_run(record, scheduler)) if record else []
    if active:
        return PlannedTask(setting, Action.SKIP, f"Slurm job {active[0]} still queued or running"
                           + ("; scancel it to force a rerun" if force else ""))
    if folder.lock == HELD:
        return PlannedTask(setting, Action.SKIP, f"being written now ({folder.holder})"
                           + ("; --force never empties a folder another process writes: stop it first" if force
                              else "; submit again once it ends"))
    if force:
        return PlannedTask(setting, Action.SUBMIT, "forced rerun", forced=True)
    if record is None:
        return PlannedTask(setting, Action.SUBMIT, "new")
    if record.damage or folder.unresumable:
        damage = record.damage or folder.unresumable
        return PlannedTask(setting, Action.SKIP, f"damaged: {damage.describe()}; {damage.hint()}")
    recorded_corpus = record.provenance.get(rf.CORPUS_KEY)
    if corpus and recorded_corpus and recorded_corpus != corpus:
        return PlannedTask(setting, Action.SKIP, f"trained on another corpus ({recorded_corpus}, not {corpus}): "
                           f"--only {setting.index} --force reruns it alone on this one, or choose another --results")
    state = record.state
    if scheduler is None and job_ids and state in rf.ACTIVE_STATES:
        return PlannedTask(setting, Action.SKIP, f"{state}, and squeue does not answer: job "
                           f"{sorted(job_ids)[0]} may still run (--only {setting.index} --force reruns it alone)")
    if status is not None and status.state in rf.FINISHED_STATES:
        finished = f"{status.state} ({status.epochs_done}/{status.num_epochs} epochs)"
        if setting.config.evaluate and folder.best_weights and record.curves.test_ppl is None:
            # the trainer does only the test pass of best.pt then (train.py, needs_test_pass)
            return PlannedTask(setting, Action.RESUME, f"test pass only: {finished}, evaluate asked, no test ppl yet")
        return PlannedTask(setting, Action.SKIP, finished)
    if status is None:
        return PlannedTask(setting, Action.SUBMIT, "submitted before, never started" if not record.config
                           else "stopped before its first epoch")
    stopped = " (stopped: nobody writes it)" if state in rf.WRITING_STATES and folder.lock == FREE else ""
    if status.epochs_done:
        return PlannedTask(setting, Action.RESUME, f"from last.pt after epoch {status.epochs_done}{stopped}")
    return PlannedTask(setting, Action.SUBMIT, f"was {state}{stopped}")


def plan_experiment(experiment: Experiment, results_dir: Path, force: bool, scheduler: Scheduler | None,
                    fingerprints: Mapping[str, str] | None = None) -> list[PlannedTask]:
    """One PlannedTask per setting, read from the run folders only. `fingerprints` maps a corpus name to the
    fingerprint of the files its settings will read (see plan_setting's `corpus`)."""
    return [plan_setting(setting, FolderState.read(setting.run_dir(results_dir)), force, scheduler,
                         (fingerprints or {}).get(setting.config.corpus))
            for setting in experiment.settings]


def plan_table(plan: list[PlannedTask]) -> str:
    """The settings with every hyper-parameter that defines them, and what submit does with each."""
    columns = ("model", "optimizer", "initial_lr", "batch_size", "hidden_size", "num_layers", "dp_keep_prob",
               "seq_len", "emb_size", "num_epochs", "seed")
    rows = [(task.setting.index, task.setting.run_name,
             *(shown(getattr(task.setting.config, key)) for key in columns), f"{task.action}: {task.reason}")
            for task in plan]
    return tabulate(rows, headers=["#", "run", "model", "optimizer", "lr", "batch", "hidden", "layers", "keep",
                                   "seq", "emb", "epochs", "seed", "action"], disable_numparse=True)


def forced_line(plan: list[PlannedTask]) -> str | None:
    """Which settings --force reruns from scratch (their folders emptied, finished epochs and all); None when
    none. --only limits --force to the settings it picks."""
    forced = [task.setting for task in plan if task.forced]
    if not forced:
        return None
    names = ", ".join(f"{setting.index} ({setting.run_name})" for setting in forced)
    return (f"--force reruns from scratch, emptying their run folders (finished epochs too): "
            f"{'setting' if len(forced) == 1 else 'settings'} {names}")


def shown(value) -> str:
    """Each value as the run name spells it: two settings that differ never look alike."""
    return exact_number(value) if isinstance(value, float) else str(value)
