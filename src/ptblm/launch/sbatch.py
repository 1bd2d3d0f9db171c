"""The plain-sbatch path (slurm/array.sbatch): no submitit; what each array task runs is pinned at submission.

`ptblm sbatch` writes the task id -> run config mapping to results/<exp>/logs/pinned-*.json before sbatch,
and the job reads it (`ptblm run-setting EXP TASK --pinned FILE`): editing the jobs file while the array
waits changes nothing. The array task id is the setting number. By hand, `sbatch --array=0-4
slurm/array.sbatch 3.1` reads setting $SLURM_ARRAY_TASK_ID of jobs/3.1.yaml when the task starts.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .. import layout
from .. import runfolder as rf
from ..clusters import ClusterProfile
from ..config import ConfigError, RunConfig
from ..container import ContainerSpec, container_shell_prefix
from ..jobs import Experiment, Setting, load_experiment, select_settings
from .slurm import one_line, release, sbatch_flags
from .tasks import TrainTask


def sbatch_job_command(spec: ContainerSpec | None) -> str:
    """How slurm/array.sbatch runs ptblm: inside the image, or with this interpreter."""
    return f"{container_shell_prefix(spec)} ptblm" if spec else f"{shlex.quote(sys.executable)} -m ptblm.cli"


def sbatch_argv(experiment: Experiment, indices: list[int], profile: ClusterProfile, parameters: dict, *,
                results_dir: Path, data_dir: Path, command: str, script: Path,
                pinned: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The sbatch command line for `indices` (the profile's options, then slurm/array.sbatch EXP) and the
    environment it exports to the job (--export=ALL: values with commas or spaces travel intact)."""
    logs_dir = layout.logs_dir(results_dir, experiment.name)
    options = [f"--array={','.join(map(str, indices))}%{profile.array_parallelism}",
               f"--output={logs_dir}/%A_%a.out", *sbatch_flags(parameters)]
    environment = {"PTBLM_COMMAND": command, "PTBLM_SETUP": "\n".join(profile.setup), "PTB_DIR": str(data_dir),
                   "PTBLM_RESULTS": str(results_dir), "PTBLM_JOBS": str(experiment.path.parent.resolve()),
                   "PTBLM_PINNED": str(pinned or "")}
    options.append("--export=ALL")
    return ["sbatch", *options, str(script), experiment.name], environment


def write_pinned_tasks(settings: list[Setting], results_dir: Path, experiment: str) -> Path:
    """What each array task (id = setting number) runs, fixed now."""
    path = layout.pinned_tasks_path(results_dir, experiment, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    description = settings[0].description if settings else ""
    rf.atomic_write_json(path, {"experiment": experiment, "description": description, "tasks": {
        str(s.index): {"run_name": s.run_name, "config": s.config.to_dict()} for s in settings}})
    return path


def pinned_setting(path: Path, task: int) -> Setting:
    """The setting that array task `task` was submitted to run."""
    pinned = rf.read_json(path)
    entry = pinned.get("tasks", {}).get(str(task))
    if entry is None:
        raise ConfigError(f"{path}: no task {task}; pinned tasks: {', '.join(pinned.get('tasks', {})) or 'none'}")
    return Setting(pinned["experiment"], task, RunConfig.from_dict(entry["config"], where=f"{path}, task {task}"),
                   str(pinned.get("description", "")))


def submit_array(jobs: list[TrainTask], profile: ClusterProfile, parameters: dict, experiment: Experiment, *,
                 results_dir: Path, data_dir: Path, command: str, script: Path, accepted, runner=subprocess.run,
                 echo=print) -> list[str]:
    """One held sbatch array of `jobs`; `accepted(job, task_job_id, submitted_at)` prepares each folder,
    then the array is released. Returns the array job id."""
    pinned = write_pinned_tasks([job.setting for job in jobs], results_dir, experiment.name)
    indices = [job.setting.index for job in jobs]
    argv, environment = sbatch_argv(experiment, indices, profile, parameters, results_dir=results_dir,
                                    data_dir=data_dir, command=command, script=script, pinned=pinned)
    argv.insert(1, "--hold")
    echo(" ".join(argv))
    submitted_at = time.time()
    result = runner(argv, capture_output=True, text=True, env={**os.environ, **environment}, check=False)
    if result.returncode != 0:
        pinned.unlink(missing_ok=True)
        raise RuntimeError(f"sbatch failed ({result.returncode}): {one_line(result.stderr)}; nothing was submitted "
                           f"and no run folder was changed")
    job_id = result.stdout.strip().split()[-1]  # "Submitted batch job 123"
    for job in jobs:
        accepted(job, f"{job_id}_{job.setting.index}", submitted_at)
    release([job_id], runner)
    echo(f"submitted array job {job_id} (tasks {','.join(map(str, indices))} = setting numbers); logs: "
         f"{layout.logs_dir(results_dir, experiment.name)}/{job_id}_<task>.out")
    return [job_id]


def run_setting(experiment: str, index: int, jobs_dir: Path, data_dir: Path, results_dir: Path,
                pinned: Path | None = None, force: bool = False) -> str:
    """Array task `index`: the pinned setting when `ptblm sbatch` submitted it, else setting `index` of the
    jobs file as it is now (`sbatch --array=... slurm/array.sbatch EXP` by hand). Same code and layout.
    force starts the run over, the trainer emptying its folder while holding its lock (array.sbatch passes it on
    a job's first attempt only)."""
    if pinned:
        setting = pinned_setting(pinned, index)
    else:
        setting, = select_settings(load_experiment(experiment, jobs_dir), [index])
    return TrainTask(setting, str(Path(data_dir).resolve()), str(Path(results_dir).resolve()), force=force)()
