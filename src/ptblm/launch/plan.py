"""What submitting does with each setting: a pure function of its run folder and the scheduler's view."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from .. import runfolder as rf
from ..config import exact_number
from ..jobs import Experiment, Setting


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


ACTIVE_STATES = (rf.PENDING, rf.RUNNING, rf.REQUEUED)  # a task may still be working in the folder


def plan_setting(setting: Setting, status: rf.RunStatus | None, submission: rf.Submission | None, force: bool,
                 scheduler: dict[str, str] | None, recorded_corpus: str | None = None,
                 corpus: str | None = None) -> PlannedTask:
    """`scheduler` is squeue's view ({} without Slurm, None when squeue does not answer: then settings that
    may still run are left alone). `corpus` is the fingerprint of the data the tasks will read and
    `recorded_corpus` the one the run folder was trained on: a folder of another corpus is neither reused
    nor resumed."""
    job_ids = {status.slurm_job_id if status else None, submission.job_id if submission else None} - {None}
    active = sorted(job_ids & set(scheduler or {}))
    state = rf.current_state(status, submission) if (status or submission) else None
    if active:
        return PlannedTask(setting, Action.SKIP, f"Slurm job {active[0]} still queued or running"
                           + ("; scancel it to force a rerun" if force else ""))
    if force:
        return PlannedTask(setting, Action.SUBMIT, "forced rerun", forced=True)
    if corpus and recorded_corpus and recorded_corpus != corpus:
        return PlannedTask(setting, Action.SKIP, f"trained on another corpus ({recorded_corpus}, not {corpus}): "
                           f"--force reruns it on this one, or choose another --results")
    if scheduler is None and job_ids and state in ACTIVE_STATES:
        return PlannedTask(setting, Action.SKIP, f"{state}, and squeue does not answer: job "
                           f"{sorted(job_ids)[0]} may still run (--force reruns it)")
    if state is None:
        return PlannedTask(setting, Action.SUBMIT, "new")
    if status is not None and status.state in rf.FINISHED_STATES:
        return PlannedTask(setting, Action.SKIP, f"{status.state} ({status.epochs_done}/{status.num_epochs} epochs)")
    if status is None:
        return PlannedTask(setting, Action.SUBMIT, "submitted before, never started")
    if status.epochs_done:
        return PlannedTask(setting, Action.RESUME, f"from last.pt after epoch {status.epochs_done}")
    return PlannedTask(setting, Action.SUBMIT, f"was {status.state}")


def plan_experiment(experiment: Experiment, results_dir: Path, force: bool, scheduler: dict[str, str] | None,
                    fingerprints: Mapping[str, str] | None = None) -> list[PlannedTask]:
    """One PlannedTask per setting, read from the run folders only. `fingerprints` maps a corpus name to the
    fingerprint of the files its settings will read (see plan_setting's `corpus`)."""
    plan = []
    for setting in experiment.settings:
        folder = setting.run_dir(results_dir)
        corpus = (fingerprints or {}).get(setting.config.corpus)
        plan.append(plan_setting(setting, rf.read_status(folder), rf.read_submission(folder), force, scheduler,
                                 rf.recorded_corpus(folder) if corpus else None, corpus))
    return plan


def plan_table(plan: list[PlannedTask]) -> str:
    """The settings with every hyper-parameter that defines them, and what submit does with each."""
    columns = ("model", "optimizer", "initial_lr", "batch_size", "hidden_size", "num_layers", "dp_keep_prob",
               "seq_len", "emb_size", "num_epochs", "seed")
    rows = [(task.setting.index, task.setting.run_name,
             *(shown(getattr(task.setting.config, key)) for key in columns), f"{task.action}: {task.reason}")
            for task in plan]
    return tabulate(rows, headers=["#", "run", "model", "optimizer", "lr", "batch", "hidden", "layers", "keep",
                                   "seq", "emb", "epochs", "seed", "action"], disable_numparse=True)


def shown(value) -> str:
    """Each value as the run name spells it: two settings that differ never look alike."""
    return exact_number(value) if isinstance(value, float) else str(value)
