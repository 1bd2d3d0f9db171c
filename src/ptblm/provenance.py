"""Where and with what a run was made: recorded in config.json and benchmark files.

Each attempt of a run (its first start, every resume) records where it ran: code, Python, torch, CUDA and
cuDNN, the NVIDIA driver, the GPU (name, memory) or the CPU model, the Slurm node list, the container image
(path and digest), the installed packages (`packages.txt` in the run folder, its SHA-256 here) and whether it ran
deterministic algorithms (with CUBLAS_WORKSPACE_CONFIG). config.json holds the latest at its top level and every
attempt's in `attempts` (read, like every file of the run folder, through its record: RunSettings.attempts); a
resume on another environment, or with --deterministic turned on or off, says what changed in the run's log
(`record_attempt`). Every function takes the environment it reads (environ,
the /proc files) from its caller, so tests pass fakes.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from . import runfolder as rf
from .container import IMAGE_DIGEST_ENV, IMAGE_ENV
from .determinism import CUBLAS_VARIABLE

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST",
                   "SLURM_RESTART_COUNT", "SLURM_JOB_PARTITION",
                   "SLURM_JOB_NAME")  # the name tells this run's job from another that reuses its id (status)


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


def slurm_ids(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in SLURM_VARIABLES if name in environ}


def slurm_task_id(environ: Mapping[str, str]) -> str | None:
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


def cpu_fallback_note(device, environ: Mapping[str, str]) -> str | None:
    """Said in the run log when Slurm handed the job GPUs (CUDA_VISIBLE_DEVICES) that torch cannot use,
    e.g. the dev cluster's stand-in GPUs or a CPU-only torch: the run goes on, on the CPU."""
    import torch

    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    if device.type != "cpu" or not visible or torch.cuda.is_available():
        return None
    return f"GPUs {visible} allocated (CUDA_VISIBLE_DEVICES) but torch sees no CUDA device: running on the CPU"


CPUINFO = Path("/proc/cpuinfo")
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")  # the kernel module's; visible inside apptainer --nv too
PODMAN_CONTAINER_FILE = Path("/run/.containerenv")  # podman writes it into every container it runs
APPTAINER_IMAGE_VARIABLES = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")  # set inside by apptainer
# What makes two attempts' environments differ (host, Slurm ids and times differ on every requeue).
ENVIRONMENT_KEYS = ("code_version", "python_version", "torch_version", "cuda_version", "cudnn_version",
                    "driver_version", "gpu", "cpu", "image", "packages_sha256", "deterministic_algorithms",
                    CUBLAS_VARIABLE)


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's 'model name' from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver_version(version_file: Path = NVIDIA_DRIVER_FILE) -> str | None:
    """'550.54.15' from the driver's /proc file ('NVRM version: NVIDIA UNIX ... Kernel Module  550.54.15 ...')."""
    try:
        text = Path(version_file).read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s", text + " ")
    return found.group(1) if found else None


def gpu_record(device, get_properties: Callable | None = None) -> dict | None:
    """{'name', 'memory_bytes'} of a CUDA device; None on the CPU."""
    if device.type != "cuda":
        return None
    if get_properties is None:
        import torch

        get_properties = torch.cuda.get_device_properties
    properties = get_properties(device)
    return {"name": properties.name, "memory_bytes": int(properties.total_memory)}


def image_record(environ: Mapping[str, str], podman_file: Path = PODMAN_CONTAINER_FILE) -> dict | None:
    """{'path', 'digest'} of the container image this process runs in; None outside one.

    ptblm's jobs are told by their submission (container.image_identity: the .sif's SHA-256, podman's image
    id); a container started by hand is known by the path apptainer sets, or by podman's /run/.containerenv.
    """
    if environ.get(IMAGE_ENV):
        return {"path": environ[IMAGE_ENV], "digest": environ.get(IMAGE_DIGEST_ENV) or None}
    for name in APPTAINER_IMAGE_VARIABLES:
        if environ.get(name):
            return {"path": environ[name], "digest": None}
    try:
        fields = dict(re.findall(r'^(\w+)="(.*)"$', Path(podman_file).read_text(errors="replace"), re.M))
    except OSError:
        return None
    image_id = fields.get("imageid")
    return {"path": fields.get("image") or "podman", "digest": f"sha256:{image_id}" if image_id else None}


def installed_packages(distributions: Iterable | None = None) -> list[str]:
    """'name==version' of every installed distribution, as `pip freeze` lists them (sorted, no duplicates)."""
    found = {f"{dist.metadata['Name']}=={dist.version}"
             for dist in (importlib.metadata.distributions() if distributions is None else distributions)
             if dist.metadata["Name"]}
    return sorted(found, key=str.lower)


def packages_text(packages: list[str]) -> str:
    return "".join(f"{line}\n" for line in packages)


def accelerator_record(device, environ: Mapping[str, str], driver_file: Path = NVIDIA_DRIVER_FILE,
                       cpuinfo: Path = CPUINFO, podman_file: Path = PODMAN_CONTAINER_FILE) -> dict:
    """CUDA, cuDNN, driver, GPU or CPU, node list and container image of this process."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"cuda_version": torch.version.cuda, "cudnn_version": cudnn,
            "driver_version": nvidia_driver_version(driver_file), "gpu": gpu_record(device),
            "cpu": cpu_model(cpuinfo), "node_list": environ.get("SLURM_JOB_NODELIST"),
            "image": image_record(environ, podman_file)}


def provenance(device, command_line: list[str] | None, environ: Mapping[str, str],
               packages: list[str] | None = None) -> dict:
    """Everything config.json (and a bench file) records about where this process runs."""
    import torch

    packages = installed_packages() if packages is None else packages
    return {"code_version": code_version(), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "device": device_description(device),
            "host": socket.gethostname(), "command_line": command_line, "slurm": slurm_ids(environ),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **accelerator_record(device, environ),
            "packages_sha256": hashlib.sha256(packages_text(packages).encode()).hexdigest()}


ATTEMPT_KEYS = tuple(rf.ATTEMPT_KINDS)  # what each attempt records (its schema is the run folder's)


def environment_changes(before: dict, now: dict, packages_before: list[str], packages_now: list[str]) -> list[str]:
    """'key old -> new' per ENVIRONMENT_KEYS entry that differs (a key one of them lacks is not a change:
    folders from before it was recorded), the packages by name."""
    changes = []
    for key in ENVIRONMENT_KEYS:
        if key in before and key in now and before[key] != now[key]:
            if key == "packages_sha256" and packages_before:
                old, new = set(packages_before) - set(packages_now), set(packages_now) - set(packages_before)
                changes.append("packages " + ", ".join([*(f"-{p}" for p in sorted(old)),
                                                         *(f"+{p}" for p in sorted(new))]))
            else:
                changes.append(f"{key} {before[key]} -> {now[key]}")
    return changes


def record_attempt(run_dir: Path, now: dict, packages: list[str]) -> tuple[list[dict], str | None]:
    """Before config.json is rewritten for a new attempt: every attempt's record (the earlier ones as the run
    folder's reader checked them: RunSettings.attempts) with this one's last, packages.txt written, and a line
    for the log when the environment (or --deterministic) changed since the previous attempt. `now`: this
    attempt's provenance and determinism records."""
    run = rf.RunFolder(run_dir)
    previous = run.read_settings()  # Damaged when config.json does not hold what ptblm writes there
    attempts = previous.attempts if previous else []
    packages_before = run.read_packages()
    rf.atomic_write_bytes(run.file(rf.PACKAGES_FILE), packages_text(packages).encode())
    current = {key: now[key] for key in ATTEMPT_KEYS if key in now}
    changes = environment_changes(attempts[-1], current, packages_before, packages) if attempts else []
    note = (f"the environment changed since attempt {len(attempts)} (on {attempts[-1].get('host')}, started "
            f"{attempts[-1].get('started_at')}): {'; '.join(changes)}") if changes else None
    return [*attempts, current], note
