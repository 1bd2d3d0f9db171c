"""The submitit path to Slurm: arrays of TrainTask/TrainGroup through submitit's SlurmExecutor, submitted held and
released once their run folders are ready (pipeline.mark_accepted)."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
import time
from pathlib import Path

from ..clusters import ClusterProfile, split_array
from ..container import ContainerSpec, requeue_lines, submitit_python
from ..errors import ToolFailed
from .setup import setup_script, unless_setup_failed
from ..wording import count
from .slurm import one_line, release


def submit_arrays(jobs: list, profile: ClusterProfile, parameters: dict, *, logs_dir: Path, array_size: int,
                  spec: ContainerSpec | None, accepted, echo, python: str = sys.executable) -> list[str]:
    """submitit arrays of `jobs` (split at `array_size`), submitted held: `accepted(job, task_job_id,
    submitted_at)` prepares each job's folders, then the array is released. Returns the array job ids. The
    profile's setup lines run as launch.setup says; with a container, the task starts on the host's `python`
    when they failed, to record it."""
    import submitit

    setup = setup_script(parameters["setup"], profile.name)
    task_python = submitit_python(spec) if spec else None
    if spec and setup:
        setup.append(unless_setup_failed("ptblm_python", task_python, shlex.quote(python)))
        task_python = '"${ptblm_python[@]}"'
    executor = submitit.SlurmExecutor(folder=logs_dir, max_num_timeout=profile.max_timeouts, python=task_python)
    parameters = {**parameters, "setup": setup}
    if spec:  # submitit asks the image's scontrol to requeue; the host does it after the container exits
        parameters["teardown"] = requeue_lines(logs_dir)
    executor.update_parameters(**parameters)
    array_ids = []
    for chunk in split_array(len(jobs), array_size):
        chunk_jobs = [jobs[i] for i in chunk]
        submitted_at = time.time()  # before sbatch: a task that starts at once updates its status later
        before = set(submitit_files(logs_dir))
        try:  # submitit prints sbatch's complaint before raising it: the error below says it once, in one line
            with contextlib.redirect_stderr(io.StringIO()), executor.batch():
                handles = [executor.submit(job) for job in chunk_jobs]
        except Exception as error:  # submitit's FailedJobError holds sbatch's stderr
            for path in set(submitit_files(logs_dir)) - before:  # its script and pickles, of no job
                path.unlink(missing_ok=True)
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


# What submitit writes into its folder before sbatch answers, under a fresh uuid4 name each: the job script and
# each task's pickle (moved to <job>_<task>_submitted.pkl once sbatch accepted them).
SUBMITIT_PENDING_FILE = re.compile(r"(\.submission_file_[0-9a-f]{32}\.sh|[0-9a-f]{32}\.pkl)")


def submitit_files(logs_dir: Path) -> list[Path]:
    """The files of SUBMITIT_PENDING_FILE in `logs_dir`."""
    if not Path(logs_dir).is_dir():
        return []
    return [path for path in Path(logs_dir).iterdir() if SUBMITIT_PENDING_FILE.fullmatch(path.name)]
