"""The callable that a Slurm array task runs: one setting, resumable, requeued on preemption.

Like MAE's submitit wrapper: on USR2 (sent by Slurm before the time limit or on preemption, as
configured by submitit) submitit calls `checkpoint()`, which marks the run folder `requeued` and
returns the same task; submitit requeues it and the new attempt resumes from last.pt. The trainer
itself knows nothing about Slurm.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import runfolder as rf
from .jobs import Setting, load_experiment, select_settings


@dataclass(frozen=True)
class TrainTask:
    setting: Setting
    data_dir: str
    results_dir: str
    force: bool = False
    threads: int | None = None  # torch CPU threads; default: $SLURM_CPUS_PER_TASK, else torch's choice

    @property
    def run_dir(self) -> Path:
        return self.setting.run_dir(Path(self.results_dir))

    def __call__(self) -> str:
        import torch

        from .train import train_run

        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
        if threads:
            torch.set_num_threads(threads)  # several tasks on one node must not oversubscribe its cores
        status = train_run(self.setting.config, Path(self.data_dir), self.run_dir, force=self.force,
                           experiment=self.setting.experiment, setting_index=self.setting.index,
                           command_line=sys.argv, interactive=False,
                           scratch_dir=os.environ.get("SLURM_TMPDIR"))
        return status.state

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on USR2: the next attempt resumes from last.pt (never forced)."""
        from submitit.helpers import DelayedSubmission

        mark_requeued(self.run_dir, self.setting.config.num_epochs)
        return DelayedSubmission(dataclasses.replace(self, force=False))


def mark_requeued(run_dir: Path, num_epochs: int) -> None:
    previous = rf.read_status(run_dir)
    rf.write_status(run_dir, rf.RunStatus(
        state=rf.REQUEUED, epochs_done=previous.epochs_done if previous else 0, num_epochs=num_epochs,
        updated_at=time.time(), slurm_job_id=previous.slurm_job_id if previous else None,
        host=previous.host if previous else None))


def run_setting(experiment: str, index: int, jobs_dir: Path, data_dir: Path, results_dir: Path,
                force: bool = False) -> str:
    """The plain-sbatch path (slurm/array.sbatch): setting `index` of an experiment, same code and layout."""
    setting, = select_settings(load_experiment(experiment, jobs_dir), [index])
    return TrainTask(setting, str(Path(data_dir).resolve()), str(Path(results_dir).resolve()), force)()
