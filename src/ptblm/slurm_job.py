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


def threads_per_run(runs: int, environ=os.environ) -> int:
    """CPU threads for each of `runs` runs sharing this allocation ($SLURM_CPUS_PER_TASK, else every core)."""
    cpus = int(environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    return max(1, cpus // runs)


@dataclass(frozen=True)
class TrainTask:
    setting: Setting
    data_dir: str
    results_dir: str
    threads: int | None = None  # torch CPU threads; default: threads_per_run(1)

    @property
    def run_dir(self) -> Path:
        return self.setting.run_dir(Path(self.results_dir))

    def __call__(self) -> str:
        import torch

        from .compiling import compile_cache_dir
        from .data import fingerprint_cache_file
        from .provenance import slurm_task_id
        from .train import train_run

        torch.set_num_threads(self.threads or threads_per_run(1))  # runs sharing a node must not oversubscribe it
        status = train_run(self.setting.config, Path(self.data_dir), self.run_dir,
                           experiment=self.setting.experiment, setting_index=self.setting.index,
                           command_line=sys.argv, interactive=False,
                           scratch_dir=os.environ.get("SLURM_TMPDIR"),
                           compile_cache=compile_cache_dir(Path(self.results_dir)),
                           slurm_job_id=slurm_task_id(os.environ),
                           fingerprint_cache=fingerprint_cache_file(Path(self.results_dir)))
        return status.state

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on USR2: the same task again, which resumes from last.pt."""
        from submitit.helpers import DelayedSubmission

        mark_requeued(self.run_dir, self.setting.config.num_epochs)
        return DelayedSubmission(self)


@dataclass(frozen=True)
class TrainGroup:
    """Several settings at once on one allocation (profile `runs_per_gpu`): one process each.

    These models use a fraction of a modern GPU, so packing K runs on it multiplies throughput.
    On USR2 Slurm signals every process of the step: the children stop, and `checkpoint()`
    requeues the group, whose runs each resume from their own last.pt.
    """

    tasks: tuple[TrainTask, ...]

    def __call__(self) -> list[str]:
        import multiprocessing

        threads = threads_per_run(len(self.tasks))
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no CUDA state is forked
        processes = [context.Process(target=dataclasses.replace(task, threads=task.threads or threads),
                                     name=task.setting.run_name) for task in self.tasks]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        states = [(rf.read_status(task.run_dir) or rf.RunStatus(rf.FAILED, 0, 0)).state for task in self.tasks]
        failed = [task.setting.run_name for task, p in zip(self.tasks, processes) if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(self.tasks)} runs failed: {', '.join(failed)} "
                               f"(see their log.txt)")
        return states

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        for task in self.tasks:
            mark_requeued(task.run_dir, task.setting.config.num_epochs)
        return DelayedSubmission(self)  # finished members return at once, the others resume


def mark_requeued(run_dir: Path, num_epochs: int) -> None:
    """Say so in status.json, unless the run already finished (done and diverged stay final)."""
    previous = rf.read_status(run_dir)
    if previous and previous.state in rf.FINISHED_STATES:
        return
    rf.write_status(run_dir, rf.RunStatus(
        state=rf.REQUEUED, epochs_done=previous.epochs_done if previous else 0, num_epochs=num_epochs,
        updated_at=time.time(), slurm_job_id=previous.slurm_job_id if previous else None,
        host=previous.host if previous else None))


def run_setting(experiment: str, index: int, jobs_dir: Path, data_dir: Path, results_dir: Path) -> str:
    """The plain-sbatch path (slurm/array.sbatch): setting `index` of an experiment, same code and layout."""
    setting, = select_settings(load_experiment(experiment, jobs_dir), [index])
    return TrainTask(setting, str(Path(data_dir).resolve()), str(Path(results_dir).resolve()))()
