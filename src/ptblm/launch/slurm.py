"""Slurm: probes (sinfo, squeue, sacct, scontrol), the profile as scheduler parameters, submitit's executor."""
from __future__ import annotations

import contextlib
import getpass
import io
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..clusters import DEFAULT_MAX_ARRAY_SIZE, ClusterProfile, split_array
from ..container import ContainerSpec, requeue_lines, submitit_python
from ..errors import ToolFailed

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


def squeue_states(runner: Runner = subprocess.run) -> dict[str, str] | None:
    """Job id ("123", "123_4") -> Slurm state ("PENDING", "RUNNING", ...) of this user's jobs;
    None when squeue is missing or does not answer (then nobody knows what still runs)."""
    out = _answer(["squeue", "-u", getpass.getuser(), "-h", "-r", "-o", "%i %T"], runner)
    if out is None:
        return None
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)


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
    if profile.mem_gb:
        parameters["mem"] = f"{int(profile.mem_gb * 1024)}MB"
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
        echo(f"submitted array job {array_ids[-1]} with {len(handles)} tasks: " + ", ".join(
            f"settings {'+'.join(str(i) for i in job.setting_indices)} -> {handle.job_id}"
            for job, handle in zip(chunk_jobs, handles)))
    return array_ids
