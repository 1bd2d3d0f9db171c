"""Slurm: probes (sinfo, squeue, sacct, scontrol), the profile as scheduler parameters, submitit's executor."""
from __future__ import annotations

import contextlib
import getpass
import io
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..clusters import DEFAULT_MAX_ARRAY_SIZE, ClusterProfile, slurm_mem, split_array
from ..container import ContainerSpec, requeue_lines, submitit_python
from ..errors import ToolFailed
from ..runfolder import RunRecord
from ..wording import count

Runner = Callable[..., subprocess.CompletedProcess]


def slurm_answers(runner: Runner = subprocess.run) -> bool:
    """sbatch is installed and a controller answers (a client without a cluster is no Slurm)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return runner(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _answer(command: list[str], runner: Runner) -> str | None:
    """stdout of a Slurm client, or None when it is missing, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = runner(command, capture_output=True, text=True, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return result.stdout if result.returncode == 0 else None


JOB_NAME_PREFIX = "ptblm-"  # both submit paths name every job ptblm-<experiment> (scheduler_parameters)


def job_name(experiment: str) -> str:
    """The Slurm job name of an experiment's tasks: what tells its jobs from another's that reuse an id."""
    return f"{JOB_NAME_PREFIX}{experiment}"


@dataclass(frozen=True)
class QueuedJob:
    """One job as squeue lists it."""

    state: str  # "PENDING", "RUNNING", ...
    reason: str  # why it waits: "Resources", "Priority", "JobArrayTaskLimit"; "None" once it runs
    name: str  # "ptblm-3.1"
    user: str


Scheduler = Mapping[str, QueuedJob]  # job id ("123", "123_4") -> the job squeue lists under it
SQUEUE_FORMAT = "%i|%T|%r|%u|%j"  # the name last: it is the one field that may hold a "|"


def squeue_jobs(runner: Runner = subprocess.run, user: str | None = None) -> dict[str, QueuedJob] | None:
    """Job id ("123", "123_4") -> QueuedJob, for the jobs of `user` (default: this one) alone; None when
    squeue is missing or does not answer (then nobody knows what still runs). One poll serves a whole call."""
    user = user or getpass.getuser()
    out = _answer(["squeue", "-u", user, "-h", "-r", "-o", SQUEUE_FORMAT], runner)
    if out is None:
        return None
    jobs = {}
    for line in out.splitlines():
        fields = line.strip().split("|", 4)
        if len(fields) == 5 and fields[3] == user:
            jobs[fields[0]] = QueuedJob(state=fields[1], reason=fields[2], name=fields[4], user=fields[3])
    return jobs


def expected_job_names(record: RunRecord) -> dict[str, str | None]:
    """The scheduler jobs a run folder recorded, each with the name it was queued under: a submission's is
    ptblm-<experiment> (as submitted.json recorded it, or from the folder's experiment in folders written
    before it did); a trainer that ran inside another Slurm job recorded that job's name in config.json's
    `slurm` (None where it did not: an older folder, matched by id alone)."""
    status = record.status if record.status_written else None
    submission = record.submission
    names: dict[str, str | None] = {}
    if status and status.slurm_job_id:
        recorded = (record.provenance.get("slurm") or {}).get("SLURM_JOB_NAME")
        names[status.slurm_job_id] = recorded
    if submission and submission.job_id and submission.executor in ("slurm", "sbatch"):
        names[submission.job_id] = submission.job_name or job_name(record.folder.parent.name)
    return names


def jobs_of_run(record: RunRecord, scheduler: Scheduler | None) -> dict[str, QueuedJob]:
    """The queued or running jobs that are this run folder's: squeue lists a job id the folder recorded, under
    the name the folder's job was queued as (and of this user: `scheduler` holds no one else's). A job id
    reused by another job (a dev-cluster restart, another experiment's `10_3`) is not the run's. Status and
    the plan both ask this."""
    found = {}
    for job_id, name in expected_job_names(record).items():
        job = (scheduler or {}).get(job_id)
        if job is not None and (name is None or job.name == name):
            found[job_id] = job
    return found


def sacct_states(job_ids: list[str], runner: Runner = subprocess.run) -> dict[str, str] | None:
    """Job id -> final Slurm state ("CANCELLED", "FAILED", "TIMEOUT", ...) from accounting; None when
    sacct does not answer (a cluster without accounting, like the dev cluster)."""
    if not job_ids:
        return {}
    out = _answer(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(sorted(set(job_ids)))], runner)
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        if job and state:
            states[job.strip()] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return states


DEV_CLUSTER_NAME = "ptblm-dev"  # slurm/dev-cluster/slurm.conf.in: the one cluster the `local` profile is made for


def slurm_config(runner: Runner = subprocess.run) -> dict[str, str]:
    """`scontrol show config` as KEY -> value ({} when scontrol is missing or does not answer)."""
    out = _answer(["scontrol", "show", "config"], runner) or ""
    pairs = (line.partition("=") for line in out.splitlines())
    return {key.strip(): value.strip() for key, equals, value in pairs if equals and key.strip()}


def cluster_name(runner: Runner = subprocess.run) -> str | None:
    return slurm_config(runner).get("ClusterName")


def max_array_size(runner: Runner = subprocess.run) -> int:
    """Tasks one array may hold: the cluster's MaxArraySize (task ids run 0..MaxArraySize-1)."""
    value = slurm_config(runner).get("MaxArraySize", "")
    return int(value) if value.isdigit() else DEFAULT_MAX_ARRAY_SIZE


def one_line(text: str) -> str:
    """A scheduler's multi-line complaint as one line."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "no message"


def release(job_ids: list[str], runner: Runner = subprocess.run) -> None:
    """Let held jobs start (they were submitted with --hold so that their folders are ready first)."""
    for job_id in job_ids:
        result = runner(["scontrol", "release", job_id], capture_output=True, text=True)
        if result.returncode != 0:
            raise ToolFailed(f"job {job_id} is queued but held, and `scontrol release {job_id}` failed "
                             f"({one_line(result.stderr)}): run it by hand, or scancel {job_id}")


def scheduler_parameters(profile: ClusterProfile, job_name: str) -> dict:
    """The profile as submitit SlurmExecutor parameters, for both submit paths (`sbatch_flags` spells the
    sbatch options of the same dict). A false boolean in sbatch_extra means "leave the option out"."""
    parameters = {"job_name": job_name, "time": profile.time_min, "cpus_per_task": profile.cpus_per_task,
                  "array_parallelism": profile.array_parallelism, "setup": list(profile.setup),
                  "additional_parameters": {k: v for k, v in profile.sbatch_extra.items() if v is not False}}
    for key in ("partition", "account", "qos", "gres", "gpus_per_node"):
        if getattr(profile, key):
            parameters[key] = getattr(profile, key)
    if profile.mem_gb is not None:
        parameters["mem"] = slurm_mem(profile.mem_gb)
    return parameters


def sbatch_flags(parameters: dict) -> list[str]:
    """`--time=90`, `--gpus-per-node=1`, `--exclusive` ... for the parameters that are plain sbatch options."""
    plain = {key: value for key, value in parameters.items()
             if key not in ("setup", "array_parallelism", "additional_parameters")}
    flags = {**plain, **parameters["additional_parameters"]}
    return [f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}") for key, value in flags.items()]


def submit_arrays(jobs: list, parameters: dict, *, logs_dir: Path, max_timeouts: int, array_size: int | None,
                  spec: ContainerSpec | None, accepted, echo) -> list[str]:
    """submitit arrays of `jobs` (split at MaxArraySize), submitted held: `accepted(job, task_job_id,
    submitted_at)` prepares each job's folders, then the array is released. Returns the array job ids."""
    import submitit

    executor = submitit.SlurmExecutor(folder=logs_dir, max_num_timeout=max_timeouts,
                                      python=submitit_python(spec) if spec else None)
    parameters = {**parameters, "additional_parameters": {**parameters["additional_parameters"], "hold": True}}
    if spec:  # submitit asks the image's scontrol to requeue; the host does it after the container exits
        parameters["teardown"] = requeue_lines(logs_dir)
    executor.update_parameters(**parameters)
    array_ids = []
    for chunk in split_array(len(jobs), array_size or max_array_size()):
        chunk_jobs = [jobs[i] for i in chunk]
        submitted_at = time.time()  # before sbatch: a task that starts at once updates its status later
        try:  # submitit prints sbatch's complaint before raising it: the error below says it once, in one line
            with contextlib.redirect_stderr(io.StringIO()), executor.batch():
                handles = [executor.submit(job) for job in chunk_jobs]
        except Exception as error:  # submitit's FailedJobError holds sbatch's stderr
            raise ToolFailed(f"sbatch refused the array ({one_line(str(error))}); nothing more was submitted and "
                             f"no run folder of it was changed") from error
        for job, handle in zip(chunk_jobs, handles):
            accepted(job, handle.job_id, submitted_at)
        array_ids.append(handles[0].job_id.split("_")[0])
        release(array_ids[-1:])
        echo(f"submitted array job {array_ids[-1]} with {count(len(handles), 'task')}: " + ", ".join(
            f"settings {'+'.join(str(i) for i in job.setting_indices)} -> {handle.job_id}"
            for job, handle in zip(chunk_jobs, handles)))
    return array_ids
