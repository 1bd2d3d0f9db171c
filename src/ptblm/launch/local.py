"""No Slurm here: submitit's local executor, at most `local_parallelism` tasks at once; waits for them."""
from __future__ import annotations

import time
from pathlib import Path

from ..clusters import ClusterProfile
from ..container import ContainerSpec, local_python


def run_local(jobs: list, profile: ClusterProfile, *, logs_dir: Path, spec: ContainerSpec | None, accepted,
              echo, poll_seconds: float = 1.0) -> list[str]:
    """Start each job once a slot is free (`accepted(job, None, now)` prepares its folders just before)."""
    import submitit

    executor = submitit.LocalExecutor(folder=logs_dir, python=local_python(spec) if spec else None)
    executor.update_parameters(timeout_min=profile.local_timeout_min)
    echo(f"no Slurm cluster answers here (sbatch/sinfo): running {len(jobs)} tasks on this machine with submitit's "
         f"local executor, at most {profile.local_parallelism} at once, timeout {profile.local_timeout_min} min "
         f"each; logs in {logs_dir}")
    pending, running, job_ids = list(jobs), [], []
    while pending or running:
        while pending and len(running) < profile.local_parallelism:
            job = pending.pop(0)
            accepted(job, None, time.time())
            handle = executor.submit(job)
            running.append((job, handle))
            job_ids.append(handle.job_id)
        time.sleep(poll_seconds)
        for job, handle in [(j, h) for j, h in running if h.done()]:
            running.remove((job, handle))
            try:
                outcome = handle.result()
            except Exception as error:  # the run folder has the traceback too
                outcome = f"failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error}"
            echo(f"{', '.join(f'setting {m.setting.index} ({m.setting.run_name})' for m in job.members)}: "
                 f"{outcome}")
    return job_ids
