"""The plain-sbatch path (slurm/array.sbatch): no submitit; the pinned file is all a task needs.

`ptblm sbatch` writes results/<exp>/logs/pinned-*.json before sbatch: for each array task (task id = setting
number) its setting, and for all of them each corpus's data folder, the results folder and how to start ptblm on
the node (the profile's setup lines, the container). The job script passes only that file and its task id:
`ptblm run-setting PINNED TASK`, which applies the setup lines and the container (by running itself again
inside them) and trains. Editing the jobs file, the profile or $PTB_DIR while the array waits changes nothing.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from .. import corpora, layout
from .. import runfolder as rf
from ..clusters import ClusterProfile
from ..config import ConfigError, RunConfig
from ..container import ContainerSpec, container_shell_prefix
from ..errors import ToolFailed
from ..stopping import StopRequest
from ..jobs import Experiment, Setting
from .setup import setup_script, unless_setup_failed
from .slurm import one_line, release, run_program, sbatch_flags
from .tasks import TrainTask

PINNED_PLACEHOLDER = "<pinned file, written at submission>"  # in a dry run's sbatch command


def sbatch_job_command(spec: ContainerSpec | None) -> str | None:
    """How a task starts ptblm inside the profile's image (shell text: $SLURM_TMPDIR is bound when the job
    runs); None: with the interpreter of array.sbatch's second argument."""
    return f"{container_shell_prefix(spec)} ptblm" if spec else None


def sbatch_argv(experiment: str, indices: list[int], profile: ClusterProfile, parameters: dict, *,
                logs_dir: Path, script: Path, pinned: Path | str, python: str = sys.executable) -> list[str]:
    """The sbatch command line for `indices` (the profile's options, --hold among them: see
    scheduler_parameters), then slurm/array.sbatch PINNED PYTHON. --export=ALL: the job starts in the submitting
    shell's environment (modules, PATH), as with submitit. The dry run prints it as it will run."""
    return ["sbatch", f"--array={','.join(map(str, indices))}%{profile.array_parallelism}",
            f"--output={logs_dir}/%A_%a.out", *sbatch_flags(parameters), "--export=ALL", str(script), str(pinned),
            python]


def check_task_ids(experiment: Experiment, indices: list[int], limit: int, where: str) -> None:
    """Task ids are setting numbers here, and Slurm refuses one >= MaxArraySize: say which, and what to do."""
    beyond = [index for index in indices if index >= limit]
    if beyond:
        raise ConfigError(f"{experiment.path}: settings {', '.join(map(str, beyond[:5]))}"
                          f"{' ...' if len(beyond) > 5 else ''} cannot be task ids of one sbatch array ({where} "
                          f"max_array_size is {limit}; the sbatch path numbers tasks by setting): use `ptblm submit`, "
                          f"which splits arrays, or --only with settings below {limit}")


def write_pinned_tasks(settings: list[Setting], *, experiment: str, results_dir: Path, data_dirs: Mapping[str, Path],
                       setup: tuple[str, ...] = (), command: str | None = None, profile: str = "") -> Path:
    """What each array task (id = setting number) runs, fixed now; see read_pinned_task. `data_dirs`: the
    folder of each corpus the settings read (corpus name -> folder)."""
    path = layout.pinned_tasks_path(results_dir, experiment, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    description = settings[0].description if settings else ""
    rf.atomic_write_json(path, {
        "experiment": experiment, "description": description,
        "data_dirs": {name: str(Path(folder).resolve()) for name, folder in data_dirs.items()},
        "results_dir": str(Path(results_dir).resolve()), "setup": list(setup), "command": command,
        "profile": profile,
        "tasks": {str(s.index): {"run_name": s.run_name, "config": s.config.to_dict()} for s in settings}})
    return path


@dataclass(frozen=True)
class PinnedTask:
    """One array task as `ptblm sbatch` pinned it."""

    setting: Setting
    data_dir: Path
    results_dir: Path
    setup: tuple[str, ...] = ()  # the profile's lines, run before ptblm
    command: str | None = None  # how to start ptblm (the container); None: this interpreter, as it is
    profile: str = ""  # the cluster profile's name, which a failing setup line names


def read_pinned_task(path: Path, task: int, environ: Mapping[str, str]) -> PinnedTask:
    """Task `task` of a pinned file. A file from before data and results were pinned (an array an older ptblm
    queued) takes them from its corpus's variable ($PTB_DIR) and $PTBLM_RESULTS, which that ptblm exported to
    its job."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such pinned file; valid: one `ptblm sbatch` wrote, "
                          f"results/<exp>/logs/pinned-*.json")
    try:
        pinned = rf.read_json_object(Path(path))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{error}; submit the experiment again (`ptblm sbatch EXP`) to write a new pinned "
                          f"file") from None
    entry = pinned.get("tasks", {}).get(str(task))
    if entry is None:
        raise ConfigError(f"{path}: no task {task}; pinned tasks: {', '.join(pinned.get('tasks', {})) or 'none'}")
    setting = Setting(pinned["experiment"], task, RunConfig.from_dict(entry["config"], where=f"{path}, task {task}"),
                      str(pinned.get("description", "")))
    folder = (pinned.get("data_dirs") or {}).get(setting.config.corpus)
    data_dir = Path(folder) if folder else corpora.resolve_data_dir(corpora.get(setting.config.corpus), None, environ)
    return PinnedTask(setting, data_dir,
                      Path(pinned.get("results_dir") or environ.get("PTBLM_RESULTS") or "results"),
                      tuple(pinned.get("setup") or ()), pinned.get("command"), str(pinned.get("profile") or ""))


def submit_array(jobs: list[TrainTask], profile: ClusterProfile, parameters: dict, experiment: Experiment, *,
                 results_dir: Path, data_dirs: Mapping[str, Path], command: str | None, script: Path, accepted,
                 runner=subprocess.run, echo=print) -> list[str]:
    """One held sbatch array of `jobs`; `accepted(job, task_job_id, submitted_at)` prepares each folder,
    then the array is released. Returns the array job id."""
    indices = [job.setting.index for job in jobs]  # task ids: checked by the pipeline (check_task_ids)
    pinned = write_pinned_tasks([job.setting for job in jobs], experiment=experiment.name, results_dir=results_dir,
                                data_dirs=data_dirs, setup=profile.setup, command=command, profile=profile.name)
    logs_dir = layout.logs_dir(results_dir, experiment.name)
    argv = sbatch_argv(experiment.name, indices, profile, parameters, logs_dir=logs_dir, script=script, pinned=pinned)
    echo(" ".join(argv))
    submitted_at = time.time()
    try:
        result = run_program(argv, runner, "nothing was submitted and no run folder was changed")
    except ToolFailed:
        pinned.unlink(missing_ok=True)
        raise
    if result.returncode != 0:
        pinned.unlink(missing_ok=True)
        raise ToolFailed(f"sbatch failed ({result.returncode}): {one_line(result.stderr)}; nothing was submitted "
                         f"and no run folder was changed")
    job_id = result.stdout.strip().split()[-1]  # "Submitted batch job 123"
    for job in jobs:
        accepted(job, f"{job_id}_{job.setting.index}", submitted_at)
    release([job_id], runner)
    echo(f"submitted array job {job_id} (tasks {','.join(map(str, indices))} = setting numbers); logs: "
         f"{logs_dir}/{job_id}_<task>.out")
    return [job_id]


def launch_script(pinned: Path, task: int, entry: PinnedTask, python: str) -> str:
    """The shell text that applies the pinned setup lines (launch.setup: a failing one is recorded by the task,
    which stops before training) and container, then runs this task there."""
    host = f"{shlex.quote(python)} -m ptblm.cli"
    ptblm = unless_setup_failed("ptblm", entry.command, host) if entry.command else f"ptblm=({host})"
    return "\n".join([*setup_script(entry.setup, entry.profile), ptblm,
                      f'exec "${{ptblm[@]}}" run-setting {shlex.quote(str(pinned))} {task} --here'])


def run_setting(pinned: Path, task: int, environ: MutableMapping[str, str], here: bool = False,
                execv=os.execv, python: str = sys.executable, stop: StopRequest | None = None) -> str:
    """Array task `task` of the pinned file: through its setup lines and container first (this process is
    replaced by `bash -c launch_script`, which runs `run-setting ... --here`), then trained here; `stop` is set
    by the signals that stop it (TrainTask.run)."""
    entry = read_pinned_task(pinned, task, environ)
    if not here and (entry.setup or entry.command):
        execv("/bin/bash", ["bash", "-c", launch_script(Path(pinned).resolve(), task, entry, python)])
    return TrainTask(entry.setting, str(entry.data_dir.resolve()), str(entry.results_dir.resolve())).run(environ, stop)
