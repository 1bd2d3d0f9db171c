"""Tasks as processes of this machine (asked for, or no Slurm here): submitit's local executor, at most
`local_parallelism` tasks at once; waits for them.

However this process ends (Ctrl-C, SIGTERM, SIGHUP, even SIGKILL) its tasks stop after their current batch
and end `cancelled`, resumable: each watches this process's pid (tasks.stop_when_gone) and stops on its own
signals. submitit's controllers start with Ctrl-C ignored, so that it prints no traceback of theirs.
"""
from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from .. import runfolder as rf
from ..clusters import ClusterProfile
from ..container import ContainerSpec, local_python
from ..stopping import StopSignal, sigint_ignored
from ..wording import count

OK_STATES = (rf.DONE, rf.DIVERGED, rf.CANCELLED)  # a run that ended as it may: not a failure of the task



def run_local(jobs: list, profile: ClusterProfile, *, logs_dir: Path, spec: ContainerSpec | None, accepted,
              echo, reason: str, status_command: str, poll_seconds: float = 1.0) -> tuple[list[str], list[str]]:
    """Start each job once a slot is free (`accepted(job, None, now)` prepares its folders just before).
    Returns the job ids and one line per setting that failed (`setting N (run): failed: <its error>`).
    reason: why local processes (pipeline.LOCAL_REASONS); status_command: what lists the resume commands."""
    import submitit

    executor = submitit.LocalExecutor(folder=logs_dir, python=local_python(spec) if spec else None)
    executor.update_parameters(timeout_min=profile.local_timeout_min)
    echo(f"running {count(len(jobs), 'task')} on this machine ({reason}) with submitit's local executor, at most "
         f"{profile.local_parallelism} at once, timeout {profile.local_timeout_min} min each; logs in {logs_dir}")
    pending, running, job_ids, failures = list(jobs), [], [], []
    try:
        while pending or running:
            while pending and len(running) < profile.local_parallelism:
                job = pending.pop(0)
                accepted(job, None, time.time())
                with sigint_ignored():
                    handle = executor.submit(job)
                running.append((job, handle))
                job_ids.append(handle.job_id)
            time.sleep(poll_seconds)
            failures += finished(running, echo)
    except (KeyboardInterrupt, StopSignal):  # Ctrl-C, SIGTERM or SIGHUP (cli.main raises them)
        if running:
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                echo(f"stopping: the {len(running)} running tasks end `cancelled` after their current batch, "
                     f"resumable ({status_command} names the command)")
        raise
    return job_ids, failures


def finished(running: list, echo) -> list[str]:
    """The jobs of `running` that ended, taken out of it and each member's outcome said; the failures' lines."""
    failures = []
    for job, handle in [(j, h) for j, h in running if h.done()]:
        running.remove((job, handle))
        try:
            handle.result()
            error = None
        except Exception as raised:  # the task's own error, reported per setting below
            error = raised
        for member in job.members:
            outcome = member_outcome(member, error)
            line = f"setting {member.setting.index} ({member.setting.run_name}): {outcome}"
            echo(line)
            if outcome.startswith("failed:"):
                failures.append(line)
    return failures


def member_outcome(member, error: Exception | None) -> str:
    """`done`, `diverged`, ... or `failed: <error line>`: the run folder's recorded error, else the task's."""
    status = rf.read_status(member.run_dir)
    if status is not None and status.state in OK_STATES:
        return status.state
    if status is not None and status.state == rf.FAILED and status.error:
        return f"failed: {status.error.strip().splitlines()[0]}"
    if error is None:
        return f"failed: the task ended with the run {status.state if status else 'not started'}"
    return f"failed: {error_line(str(error))}"


def error_line(text: str) -> str:
    """The exception line of a task's traceback as submitit reports it (between its ---- rulers), not the
    paths of its logs that follow."""
    blocks = re.split(r"^-{5,}$", text, flags=re.M)
    trace = blocks[1] if len(blocks) >= 3 else text
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
