"""Where and with what a run was made: recorded in config.json and benchmark files."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST",
                   "SLURM_RESTART_COUNT", "SLURM_JOB_PARTITION")


def code_version(repo_dir: Path | None = None) -> str:
    """`git describe` of the checkout holding this package, or the package version outside git."""
    from . import __version__

    repo_dir = repo_dir or Path(__file__).resolve().parents[2]
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=repo_dir,
                                   capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    return described.stdout.strip() if described.returncode == 0 else __version__


def slurm_ids(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in SLURM_VARIABLES if name in environ}


def slurm_task_id(environ: dict[str, str] | None = None) -> str | None:
    """"123_4" for task 4 of array 123, "123" for a plain job, None outside Slurm (squeue's spelling)."""
    ids = slurm_ids(environ)
    if "SLURM_ARRAY_JOB_ID" in ids:
        return f"{ids['SLURM_ARRAY_JOB_ID']}_{ids.get('SLURM_ARRAY_TASK_ID', '')}"
    return ids.get("SLURM_JOB_ID")


def device_description(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def cpu_fallback_note(device, environ: dict[str, str] | None = None) -> str | None:
    """Said in the run log when Slurm handed the job GPUs (CUDA_VISIBLE_DEVICES) that torch cannot use,
    e.g. the dev cluster's stand-in GPUs or a CPU-only torch: the run goes on, on the CPU."""
    import torch

    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    if device.type != "cpu" or not visible or torch.cuda.is_available():
        return None
    return f"GPUs {visible} allocated (CUDA_VISIBLE_DEVICES) but torch sees no CUDA device: running on the CPU"


def provenance(device, command_line: list[str] | None) -> dict:
    import torch

    return {"code_version": code_version(), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "device": device_description(device),
            "host": socket.gethostname(), "command_line": command_line, "slurm": slurm_ids(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
