"""Slurm: probes (sinfo, squeue, sacct, scontrol), the profile as scheduler parameters, releasing held jobs.

Every Slurm program ptblm runs is missing on a machine without Slurm: a probe (squeue, sacct, sinfo, `scontrol
show config`) then answers None ("nobody knows"); a submission names the programs it needs before anything is
written (missing_programs), and one that cannot start later is a ToolFailed naming it (run_program).
"""
from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..clusters import DEFAULT_MAX_ARRAY_SIZE, ClusterProfile, slurm_mem
from ..errors import ToolFailed
from ..runfolder import RunRecord

Runner = Callable[..., subprocess.CompletedProcess]


def slurm_answers(runner: Runner = subprocess.run) -> bool:
    """sbatch is installed and a controller answers (a client without a cluster is no Slurm)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return runner(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# The Slurm programs each submit path runs here: sbatch submits, scontrol releases the held array, squeue tells
# what still runs; submitit's job script starts its task with srun, and submitit looks for it here first.
SUBMIT_PROGRAMS = {"sbatch": ("sbatch", "scontrol", "squeue"), "slurm": ("sbatch", "srun", "scontrol", "squeue")}
SUBMIT_COMMANDS = {"sbatch": "ptblm sbatch", "slurm": "ptblm submit (to Slurm)"}


def missing_programs(executor: str, environ: Mapping[str, str]) -> list[str]:
    """The programs of SUBMIT_PROGRAMS[executor] that the PATH of `environ` does not find."""
    return [name for name in SUBMIT_PROGRAMS.get(executor, ()) if shutil.which(name, path=environ.get("PATH")) is None]


def no_slurm_here(missing: list[str], executor: str) -> str:
    """Why a submission to Slurm cannot go on from this machine, and what to do instead."""
    return (f"{SUBMIT_COMMANDS[executor]} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not on PATH: Slurm is not installed on this machine; valid: run it on the cluster's login node (where "
            f"`sinfo` answers), or `ptblm submit --executor local` (make submit EXECUTOR=local) to run the tasks as "
            f"processes of this machine")


def run_program(argv: list[str], runner: Runner, what: str) -> subprocess.CompletedProcess:
    """A Slurm program a submission runs; ToolFailed naming it, and `what` that means, when it cannot start."""
    try:
        return runner(argv, capture_output=True, text=True, check=False)
    except OSError as error:
        raise ToolFailed(f"`{argv[0]}` cannot be run here ({error.strerror or error}): {what}") from None


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
    stdout: str = ""  # its --output: results/<exp>/logs/%A_%a.out for ptblm's jobs; "" when not known


Scheduler = Mapping[str, QueuedJob]  # job id ("123", "123_4") -> the job squeue lists under it
SQUEUE_FIELDS = ("JobArrayID", "State", "Reason", "UserName", "STDOUT", "Name")  # squeue --Format's names
SQUEUE_SEPARATOR = "\x1f"  # no path or job name holds it (a "|" may be in both)
SQUEUE_FORMAT = ",".join(f"{field}:{SQUEUE_SEPARATOR}" for field in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:"


def squeue_jobs(runner: Runner = subprocess.run, user: str | None = None) -> dict[str, QueuedJob] | None:
    """Job id ("123", "123_4") -> QueuedJob, for the jobs of `user` (default: this one) alone; None when
    squeue is missing or does not answer (then nobody knows what still runs). One poll serves a whole call."""
    user = user or getpass.getuser()
    out = _answer(["squeue", "-u", user, "-h", "-r", "-O", SQUEUE_FORMAT], runner)
    if out is None:
        return None
    jobs = {}
    for line in out.split("\n"):  # str.strip and splitlines would take the separator for white space
        fields = line.strip(" \r").split(SQUEUE_SEPARATOR, len(SQUEUE_FIELDS) - 1)
        if len(fields) == len(SQUEUE_FIELDS) and fields[3] == user:
            jobs[fields[0]] = QueuedJob(state=fields[1], reason=fields[2], name=fields[5], user=fields[3],
                                        stdout=fields[4])
    return jobs


@dataclass(frozen=True)
class ExpectedJob:
    """What a run folder knows of a job it recorded: the name it was queued under (None: not known, an older
    folder), and for a job ptblm submitted, the logs folder its output goes to (results/<exp>/logs)."""

    name: str | None
    logs_dir: Path | None = None


def expected_jobs(record: RunRecord) -> dict[str, ExpectedJob]:
    """The scheduler jobs a run folder recorded: a submission's is named ptblm-<experiment> (as submitted.json
    recorded it, or from the folder's experiment in folders written before it did) and writes to the logs folder
    beside the run folder; a trainer that ran inside another Slurm job recorded that job's name in
    config.json's `slurm` (None where it did not: an older folder, matched by id alone)."""
    status = record.status if record.status_written else None
    submission = record.submission
    jobs: dict[str, ExpectedJob] = {}
    if status and status.slurm_job_id:
        jobs[status.slurm_job_id] = ExpectedJob((record.provenance.get("slurm") or {}).get("SLURM_JOB_NAME"))
    if submission and submission.job_id and submission.executor in ("slurm", "sbatch"):
        experiment = record.folder.parent
        jobs[submission.job_id] = ExpectedJob(submission.job_name or job_name(experiment.name),
                                              layout.logs_dir(experiment.parent, experiment.name))
    return jobs


def is_expected(job: QueuedJob, expected: ExpectedJob) -> bool:
    """Whether the job squeue lists under a recorded id is the one recorded: the same name, and for a job ptblm
    submitted, output into this results folder's logs (a job of the same experiment submitted with another
    --results, or by hand with `sbatch -J ptblm-3.1`, is not this folder's)."""
    if expected.name is not None and job.name != expected.name:
        return False
    if expected.logs_dir is None or not job.stdout:
        return True
    return _same_folder(Path(job.stdout).parent, expected.logs_dir)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def jobs_of_run(record: RunRecord, scheduler: Scheduler | None) -> dict[str, QueuedJob]:
    """The queued or running jobs that are this run folder's: squeue lists a job id the folder recorded, and
    the job is the one recorded (is_expected; and of this user: `scheduler` holds no one else's). A job id
    reused by another job (a dev-cluster restart, another experiment's `10_3`, the same experiment in another
    results folder) is not the run's. Status and the plan both ask this."""
    found = {}
    for job_id, expected in expected_jobs(record).items():
        job = (scheduler or {}).get(job_id)
        if job is not None and is_expected(job, expected):
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


@dataclass(frozen=True)
class ArraySize:
    """How many tasks one array may hold (the profile's max_array_size, else the cluster's MaxArraySize), and
    whose limit that is, for the messages."""

    tasks: int
    source: str  # "the profile's (mila)", "the cluster's"

    @classmethod
    def of(cls, profile: ClusterProfile, runner: Runner = subprocess.run) -> ArraySize:
        if profile.max_array_size:
            return cls(profile.max_array_size, f"the profile's ({profile.name})")
        return cls(max_array_size(runner), "the cluster's")


def one_line(text: str) -> str:
    """A scheduler's multi-line complaint as one line."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "no message"


def release(job_ids: list[str], runner: Runner = subprocess.run) -> None:
    """Let held jobs start (they were submitted with --hold so that their folders are ready first)."""
    for job_id in job_ids:
        result = run_program(["scontrol", "release", job_id], runner, f"job {job_id} is queued but held: run "
                             f"`scontrol release {job_id}` where Slurm is installed, or scancel {job_id}")
        if result.returncode != 0:
            raise ToolFailed(f"job {job_id} is queued but held, and `scontrol release {job_id}` failed "
                             f"({one_line(result.stderr)}): run it by hand, or scancel {job_id}")


def scheduler_parameters(profile: ClusterProfile, job_name: str) -> dict:
    """The profile as submitit SlurmExecutor parameters, for both submit paths (`sbatch_flags` spells the
    sbatch options of the same dict). A false boolean in sbatch_extra means "leave the option out". Every
    array is submitted held (--hold) and released once its run folders are ready (pipeline.mark_accepted)."""
    parameters = {"job_name": job_name, "time": profile.time_min, "cpus_per_task": profile.cpus_per_task,
                  "array_parallelism": profile.array_parallelism, "setup": list(profile.setup),
                  "additional_parameters": {"hold": True,
                                            **{k: v for k, v in profile.sbatch_extra.items() if v is not False}}}
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
