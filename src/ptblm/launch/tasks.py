"""The callables a scheduled task runs: one setting (TrainTask) or several on one allocation (TrainGroup).

Like MAE's submitit wrapper: on USR2 (sent by Slurm before the time limit or on preemption, as
configured by submitit) submitit calls `checkpoint()`, which marks the run folder `requeued` and
returns the same task; submitit requeues it and the new attempt resumes from last.pt. On SIGTERM
(`scancel`), SIGHUP (the terminal of a local submit closed) or SIGINT, or once the local submit that
started it is gone, the task asks the trainer to stop: it ends `cancelled` after the current batch, its
last.pt resumable. The trainer itself knows nothing about Slurm or signals.
"""
from __future__ import annotations

import dataclasses
import os
import select
import sys
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from .. import corpora
from .. import runfolder as rf
from ..run_inputs import run_inputs
from ..jobs import Setting
from ..stopping import StopRequest, stop_on_signals
from ..threads import threads_per_run
from ..wording import count
from .setup import check_setup


def stop_when_gone(pid: int | None, stop: threading.Event) -> None:
    """Set `stop` once process `pid` has exited (the local `ptblm submit` that started this task, even
    after `kill -9`: submitit's local controller outlives it)."""
    if pid is None:
        return
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        stop.set()
        return

    def watch() -> None:
        select.select([handle], [], [])
        stop.set()

    threading.Thread(target=watch, name=f"stop-when-{pid}-exits", daemon=True).start()


def record_failure_before_start(run_dir: Path, num_epochs: int, error: BaseException) -> None:
    """A task that failed before the trainer wrote anything (data missing on the node, an import error)
    says so in its run folder, which would otherwise stay `pending` forever (RunFolder.mark_failed_before_start)."""
    rf.RunFolder(run_dir).mark_failed_before_start(num_epochs, error)


@dataclass(frozen=True)
class TrainTask:
    setting: Setting
    data_dir: str
    results_dir: str
    threads: int | None = None  # torch CPU threads; default: threads_per_run(1)
    watch_pid: int | None = None  # stop when this process exits (the local submit)
    force: bool = False  # start over: the trainer empties the folder, holding its lock (`run-setting --force`)

    @property
    def run_dir(self) -> Path:
        return self.setting.run_dir(Path(self.results_dir))

    @property
    def setting_indices(self) -> tuple[int, ...]:
        return (self.setting.index,)

    @property
    def members(self) -> tuple[TrainTask, ...]:
        return (self,)

    def __call__(self) -> str:
        """The job's entry point (submitit calls it in the job): this process's environment, read once here."""
        return self.run(os.environ)

    def run(self, environ: MutableMapping[str, str], stop: StopRequest | None = None) -> str:
        """Train the setting in this process, whose environment `environ` is (the trainer sets torch's
        variables in it: see train_run); `stop` (a StopRequest records which signal) is set to stop it."""
        stop = stop if stop is not None else StopRequest()
        stop_when_gone(self.watch_pid, stop)
        with stop_on_signals(stop):  # in place of submitit's SIGTERM handler, which only logs "Bypassing"
            try:
                check_setup(environ)  # the profile's setup lines failed in this job: stop before training
                import torch

                from ..train import train_run

                threads = self.threads or threads_per_run(1, environ)
                torch.set_num_threads(threads)  # runs sharing a node must not oversubscribe
                inputs = run_inputs(corpora.get(self.setting.config.corpus), self.data_dir, Path(self.results_dir),
                                    environ)
                status = train_run(self.setting.config, inputs.data_dir, self.run_dir, force=self.force,
                                   experiment=self.setting.experiment, setting_index=self.setting.index,
                                   description=self.setting.description, command_line=sys.argv, interactive=False,
                                   should_stop=stop.is_set, environ=environ, out_flag="--results",
                                   **inputs.train_kwargs())
            except Exception as error:
                record_failure_before_start(self.run_dir, self.setting.config.num_epochs, error)
                raise
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
    On USR2 or SIGTERM Slurm signals every process of the step: the children stop, and on USR2
    `checkpoint()` requeues the group, whose runs each resume from their own last.pt.
    """

    tasks: tuple[TrainTask, ...]

    @property
    def setting_indices(self) -> tuple[int, ...]:
        return tuple(task.setting.index for task in self.tasks)

    @property
    def members(self) -> tuple[TrainTask, ...]:
        return self.tasks

    def __call__(self) -> list[str]:
        import multiprocessing

        threads = threads_per_run(len(self.tasks), os.environ)  # the job's entry point (submitit calls it)
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no CUDA state is forked
        processes = [context.Process(target=dataclasses.replace(task, threads=task.threads or threads,
                                                                watch_pid=task.watch_pid or os.getpid()),
                                     name=task.setting.run_name) for task in self.tasks]
        stop = StopRequest()  # the children stop on their own signals; this one only waits for them
        with stop_on_signals(stop):
            for process in processes:
                process.start()
            for process in processes:
                process.join()
        states = [rf.RunFolder(task.run_dir).read().state for task in self.tasks]
        failed = [task.setting.run_name for task, p in zip(self.tasks, processes) if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of {count(len(self.tasks), 'run')} failed: {', '.join(failed)} "
                               f"(see their log.txt)")
        return states

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        for task in self.tasks:
            mark_requeued(task.run_dir, task.setting.config.num_epochs)
        return DelayedSubmission(self)  # finished members return at once, the others resume


def mark_requeued(run_dir: Path, num_epochs: int) -> None:
    """Say so in status.json, unless the run already finished (done and diverged stay final)."""
    rf.RunFolder(run_dir).mark_requeued(num_epochs)
