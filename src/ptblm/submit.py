"""`ptblm submit EXP`: one Slurm array per experiment through submitit, or local processes without Slurm.

Idempotent like DomainBed sweeps: finished settings (done/diverged) are skipped, interrupted ones
resume from last.pt, settings whose Slurm job is still queued or running are left alone, and
--force reruns everything. Slurm submission is fire-and-forget; the local fallback waits.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from . import runfolder as rf
from .clusters import DEFAULT_MAX_ARRAY_SIZE, ClusterProfile, split_array
from .config import ConfigError
from .container import ContainerSpec, container_shell_prefix, default_runtime, job_binds, requeue_env, \
    requeue_lines, submitit_python
from .data import DataError, corpus_fingerprint, fingerprint_cache_file
from .jobs import Experiment, Setting
from .slurm_job import TrainGroup, TrainTask, threads_per_run
from .status import squeue_states

SUBMIT, RESUME, SKIP = "submit", "resume", "skip"
FORCED = "forced rerun"


@dataclass(frozen=True)
class PlannedTask:
    setting: Setting
    action: str  # submit | resume | skip
    reason: str


def slurm_answers(runner=subprocess.run) -> bool:
    """sbatch is installed and a controller answers (a client without a cluster is no Slurm)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return runner(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def plan_experiment(experiment: Experiment, results_dir: Path, force: bool,
                    scheduler: dict[str, str] | None, corpus: str | None = None) -> list[PlannedTask]:
    """What submitting does with each setting. `scheduler` is squeue's view ({} without Slurm, None when
    squeue does not answer: then settings that may still run are left alone). `corpus` is the fingerprint
    of the data the tasks will read: a run folder of another corpus is neither reused nor resumed."""
    plan = []
    for setting in experiment.settings:
        recorded = rf.recorded_corpus(setting.run_dir(results_dir)) if corpus else None
        status = rf.read_status(setting.run_dir(results_dir))
        submission = rf.read_submission(setting.run_dir(results_dir))
        job_ids = {status.slurm_job_id if status else None, submission.job_id if submission else None} - {None}
        active = sorted(job_ids & set(scheduler or {}))
        state = rf.current_state(status, submission) if (status or submission) else None
        if active:
            plan.append(PlannedTask(setting, SKIP, f"Slurm job {active[0]} still queued or running"
                                    + ("; scancel it to force a rerun" if force else "")))
        elif force:
            plan.append(PlannedTask(setting, SUBMIT, FORCED))
        elif recorded and recorded != corpus:
            plan.append(PlannedTask(setting, SKIP, f"trained on another corpus ({recorded}, not {corpus}): "
                                    f"--force reruns it on this one, or choose another --results"))
        elif scheduler is None and job_ids and state in (rf.PENDING, rf.RUNNING, rf.REQUEUED):
            plan.append(PlannedTask(setting, SKIP, f"{state}, and squeue does not answer: job "
                                    f"{sorted(job_ids)[0]} may still run (--force reruns it)"))
        elif state is None:
            plan.append(PlannedTask(setting, SUBMIT, "new"))
        elif status is not None and status.state in rf.FINISHED_STATES:
            plan.append(PlannedTask(setting, SKIP, f"{status.state} ({status.epochs_done}/{status.num_epochs} epochs)"))
        elif status is None:
            plan.append(PlannedTask(setting, SUBMIT, "submitted before, never started"))
        elif status.epochs_done:
            plan.append(PlannedTask(setting, RESUME, f"from last.pt after epoch {status.epochs_done}"))
        else:
            plan.append(PlannedTask(setting, SUBMIT, f"was {status.state}"))
    return plan


def corpus_if_present(data_dir: Path, results_dir: Path) -> str | None:
    """The fingerprint of the corpus the tasks will read; None when it is not there (the tasks say so)."""
    try:
        return corpus_fingerprint(data_dir, fingerprint_cache_file(results_dir))
    except DataError:
        return None


def clear_forced(plan: list[PlannedTask], results_dir: Path) -> None:
    """--force empties the run folders at submission, never in the task: a task that Slurm requeues
    (preemption, node failure, `scontrol requeue`) must resume, not start over."""
    for task in plan:
        if task.reason == FORCED:
            rf.clear_run_folder(task.setting.run_dir(results_dir))


def plan_table(plan: list[PlannedTask]) -> str:
    """The settings with every hyper-parameter that defines them, and what submit does with each."""
    columns = ("model", "optimizer", "initial_lr", "batch_size", "hidden_size", "num_layers", "dp_keep_prob",
               "seq_len", "emb_size", "num_epochs", "seed")
    rows = [(task.setting.index, task.setting.run_name,
             *(getattr(task.setting.config, key) for key in columns), f"{task.action}: {task.reason}")
            for task in plan]
    return tabulate(rows, headers=["#", "run", "model", "optimizer", "lr", "batch", "hidden", "layers", "keep",
                                   "seq", "emb", "epochs", "seed", "action"], floatfmt="g")


def max_array_size(runner=subprocess.run) -> int:
    """Tasks one array may hold: the cluster's MaxArraySize (task ids run 0..MaxArraySize-1)."""
    if shutil.which("scontrol"):
        result = runner(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
        for line in result.stdout.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "MaxArraySize" and value.strip().isdigit():
                return int(value.strip())
    return DEFAULT_MAX_ARRAY_SIZE


def slurm_parameters(profile: ClusterProfile, job_name: str) -> dict:
    """The profile as submitit SlurmExecutor parameters; `sbatch_flags` spells the same ones for sbatch."""
    parameters = {"job_name": job_name, "time": profile.time_min, "cpus_per_task": profile.cpus_per_task,
                  "array_parallelism": profile.array_parallelism, "setup": list(profile.setup),
                  "additional_parameters": dict(profile.sbatch_extra)}
    for key in ("partition", "account", "qos", "gres", "gpus_per_node"):
        if getattr(profile, key):
            parameters[key] = getattr(profile, key)
    if profile.mem_gb:
        parameters["mem"] = f"{int(profile.mem_gb * 1024)}MB"
    return parameters


def sbatch_flags(parameters: dict) -> list[str]:
    """`--time=90`, `--gpus-per-node=1`, ... for the parameters that are plain sbatch options."""
    plain = {key: value for key, value in parameters.items()
             if key not in ("setup", "array_parallelism", "additional_parameters")}
    flags = {**plain, **parameters["additional_parameters"]}
    return [f"--{key.replace('_', '-')}={value}" for key, value in flags.items()]


def container_spec(profile: ClusterProfile, results_dir: Path, data_dir: Path,
                   requeue_dir: Path) -> ContainerSpec | None:
    """The profile's image with the repository, results, data (and $SLURM_TMPDIR) bound at their own paths."""
    if not profile.container:
        return None
    image = Path(profile.container).expanduser().resolve()
    if not image.is_file():
        raise ConfigError(f"cluster profile {profile.name}: container = {profile.container!r} is not a file; "
                          f"build it with `make sif` (see README, Containers) or remove the key")
    return ContainerSpec(image=str(image), runtime=default_runtime(),
                         binds=job_binds(Path.cwd(), results_dir, data_dir, profile.container_binds),
                         env=requeue_env(requeue_dir))


def sbatch_job_command(spec: ContainerSpec | None) -> str:
    """How slurm/array.sbatch runs ptblm: inside the image, or with this interpreter."""
    return f"{container_shell_prefix(spec)} ptblm" if spec else f"{shlex.quote(sys.executable)} -m ptblm.cli"


@dataclass
class SubmitOutcome:
    plan: list[PlannedTask]
    executor: str  # "slurm", "local" or "none" (dry run / nothing to do)
    job_ids: list[str]
    logs_dir: Path


def logs_dir_of(results_dir: Path, experiment: Experiment) -> Path:
    """Where an experiment's Slurm and submitit logs go: results/<exp>/logs."""
    return Path(results_dir) / experiment.name / "logs"


def submit_experiment(experiment: Experiment, profile: ClusterProfile, *, results_dir: Path, data_dir: Path,
                      dry_run: bool = False, force: bool = False, executor: str = "auto",
                      echo=print) -> SubmitOutcome:
    """Plan, print, and (unless dry_run) submit the settings that still need to run."""
    results_dir, data_dir = Path(results_dir).resolve(), Path(data_dir).resolve()
    logs_dir = logs_dir_of(results_dir, experiment)
    use_slurm = executor == "slurm" or (executor == "auto" and slurm_answers())
    plan = plan_experiment(experiment, results_dir, force, squeue_states() if use_slurm else {},
                           corpus=corpus_if_present(data_dir, results_dir))
    echo(f"experiment {experiment.name} ({experiment.path}): {experiment.description}")
    echo(plan_table(plan))
    todo = [task for task in plan if task.action != SKIP]
    if dry_run or not todo:
        echo("dry run: nothing submitted" if dry_run else "nothing to submit: every setting is finished or queued")
        return SubmitOutcome(plan, "none", [], logs_dir)
    # Before anything is cleared: a profile whose image is missing stops here with the forced runs intact.
    spec = container_spec(profile, results_dir, data_dir, requeue_dir=logs_dir)
    if spec:
        echo(f"tasks run inside {spec.image} ({spec.runtime} exec --nv)")
    clear_forced(plan, results_dir)
    # local runs share this machine's cores; on Slurm each task reads $SLURM_CPUS_PER_TASK
    threads = None if use_slurm else threads_per_run(profile.local_parallelism * profile.runs_per_gpu)
    tasks = group_tasks([TrainTask(task.setting, str(data_dir), str(results_dir), threads) for task in todo],
                        profile.runs_per_gpu)
    if use_slurm:
        job_ids = _submit_slurm(tasks, profile, logs_dir, f"ptblm-{experiment.name}", spec, echo)
    else:
        job_ids = _run_local(tasks, profile, logs_dir, spec, echo)
    return SubmitOutcome(plan, "slurm" if use_slurm else "local", job_ids, logs_dir)


def group_tasks(tasks: list[TrainTask], runs_per_gpu: int) -> list[TrainTask | TrainGroup]:
    """One array task per setting, or per `runs_per_gpu` settings sharing one allocation."""
    if runs_per_gpu <= 1:
        return list(tasks)
    return [TrainGroup(tuple(tasks[i:i + runs_per_gpu])) for i in range(0, len(tasks), runs_per_gpu)]


def members(job: TrainTask | TrainGroup) -> tuple[TrainTask, ...]:
    return job.tasks if isinstance(job, TrainGroup) else (job,)


def _submit_slurm(tasks: list[TrainTask | TrainGroup], profile: ClusterProfile, logs_dir: Path, job_name: str,
                  spec: ContainerSpec | None, echo) -> list[str]:
    import submitit

    executor = submitit.SlurmExecutor(folder=logs_dir, max_num_timeout=profile.max_timeouts,
                                      python=submitit_python(spec) if spec else None)
    parameters = slurm_parameters(profile, job_name)
    if spec:  # submitit asks the image's scontrol to requeue; the host does it after the container exits
        parameters["teardown"] = requeue_lines(logs_dir)
    executor.update_parameters(**parameters)
    chunk_size = profile.max_array_size or max_array_size()
    job_ids = []
    for chunk in split_array(len(tasks), chunk_size):
        chunk_tasks = [tasks[i] for i in chunk]
        submitted_at = time.time()  # before sbatch: a task that starts at once updates its status later
        with executor.batch():
            jobs = [executor.submit(task) for task in chunk_tasks]
        for task, job in zip(chunk_tasks, jobs):
            for member in members(task):
                rf.write_submission(member.run_dir, rf.Submission(job.job_id, "slurm", submitted_at))
        job_ids.append(jobs[0].job_id.split("_")[0])
        echo(f"submitted array job {job_ids[-1]} with {len(jobs)} tasks: " + ", ".join(
            f"settings {'+'.join(str(m.setting.index) for m in members(t))} -> {j.job_id}"
            for t, j in zip(chunk_tasks, jobs)))
    experiment = members(tasks[0])[0].setting.experiment
    echo(f"logs: {logs_dir}/<job>_<task>_0_log.out and .err; follow with `ptblm status {experiment}`")
    return job_ids


def _run_local(tasks: list[TrainTask | TrainGroup], profile: ClusterProfile, logs_dir: Path, spec: ContainerSpec | None,
               echo) -> list[str]:
    """No Slurm here: submitit's local executor, at most `local_parallelism` tasks at once; waits."""
    import submitit

    executor = submitit.LocalExecutor(folder=logs_dir, python=submitit_python(spec) if spec else None)
    executor.update_parameters(timeout_min=profile.local_timeout_min)
    echo(f"no Slurm cluster answers here (sbatch/sinfo): running {len(tasks)} tasks on this machine with submitit's "
         f"local executor, at most {profile.local_parallelism} at once, timeout {profile.local_timeout_min} min "
         f"each; logs in {logs_dir}")
    pending, running, job_ids = list(tasks), [], []
    while pending or running:
        while pending and len(running) < profile.local_parallelism:
            task = pending.pop(0)
            for member in members(task):
                rf.write_submission(member.run_dir, rf.Submission(None, "local", time.time()))
            job = executor.submit(task)
            running.append((task, job))
            job_ids.append(job.job_id)
        time.sleep(1.0)
        for task, job in [(t, j) for t, j in running if j.done()]:
            running.remove((task, job))
            try:
                outcome = job.result()
            except Exception as error:  # the run folder has the traceback too
                outcome = f"failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error}"
            echo(f"{', '.join(f'setting {m.setting.index} ({m.setting.run_name})' for m in members(task))}: "
                 f"{outcome}")
    return job_ids


def sbatch_argv(experiment: Experiment, indices: list[int], profile: ClusterProfile, *, results_dir: Path,
                data_dir: Path, command: str, script: Path) -> tuple[list[str], dict[str, str]]:
    """The sbatch command line for `indices` (the profile's options, then slurm/array.sbatch EXP) and the
    environment it exports to the job (--export=ALL: values with commas or spaces travel intact)."""
    logs_dir = logs_dir_of(results_dir, experiment)
    options = [f"--array={','.join(map(str, indices))}%{profile.array_parallelism}",
               f"--output={logs_dir}/%A_%a.out",
               *sbatch_flags(slurm_parameters(profile, f"ptblm-{experiment.name}"))]
    environment = {"PTBLM_COMMAND": command, "PTBLM_SETUP": "; ".join(profile.setup), "PTB_DIR": str(data_dir),
                   "PTBLM_RESULTS": str(results_dir), "PTBLM_JOBS": str(experiment.path.parent.resolve())}
    options.append("--export=ALL")
    return ["sbatch", *options, str(script), experiment.name], environment


def submit_sbatch(experiment: Experiment, profile: ClusterProfile, *, results_dir: Path, data_dir: Path,
                  script: Path, dry_run: bool = False, force: bool = False,
                  runner=subprocess.run, echo=print) -> list[int]:
    """`ptblm sbatch`: one sbatch array of the settings that still need to run; returns their indices.

    No submitit here, so no USR2 handling: a preempted task is requeued by Slurm (--requeue in the
    script) and resumes from last.pt; a timed-out one resumes when submitted again.
    """
    results_dir, data_dir = Path(results_dir).resolve(), Path(data_dir).resolve()
    logs_dir = logs_dir_of(results_dir, experiment)
    command = sbatch_job_command(container_spec(profile, results_dir, data_dir, requeue_dir=logs_dir))
    plan = plan_experiment(experiment, results_dir, force, squeue_states(),
                           corpus=corpus_if_present(data_dir, results_dir))
    echo(plan_table(plan))
    indices = [task.setting.index for task in plan if task.action != SKIP]
    if not indices:
        echo("nothing to submit: every setting is finished or queued")
        return []
    argv, environment = sbatch_argv(experiment, indices, profile, results_dir=results_dir, data_dir=data_dir,
                                    command=command, script=script)
    echo(" ".join(argv))
    if dry_run:
        echo("dry run: nothing submitted")
        return indices
    logs_dir.mkdir(parents=True, exist_ok=True)
    clear_forced(plan, results_dir)
    submitted_at = time.time()
    result = runner(argv, capture_output=True, text=True, env={**os.environ, **environment}, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
    job_id = result.stdout.strip().split()[-1]  # "Submitted batch job 123"
    for index in indices:
        rf.write_submission(experiment.settings[index].run_dir(results_dir),
                            rf.Submission(f"{job_id}_{index}", "sbatch", submitted_at))
    echo(f"submitted array job {job_id} (tasks {','.join(map(str, indices))}); logs: "
         f"{logs_dir}/{job_id}_<task>.out")
    return indices
