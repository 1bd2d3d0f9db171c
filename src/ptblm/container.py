"""Jobs inside the ptblm image: the command lines that run a task in it (building the image is
ptblm.images).

Clusters run Apptainer (or podman); the image is built with Docker or podman (docker/Dockerfile)
and converted to a .sif (docker/ptblm.def). A job runs as

    apptainer exec --nv --bind R:R,S:S,D:D [--bind $SLURM_TMPDIR:$SLURM_TMPDIR] --env K=V ptblm.sif CMD...
    podman ... run --rm --volume R:R ... --env 'SLURM_*' ... --workdir CWD --entrypoint= IMAGE CMD...

Every host path is bound at the *same* path inside, so each path a job is handed (run folder,
data folder, submitit's log folder) names the same file on both sides and nothing is rewritten.

Requeue is done outside the container. submitit requeues from inside the job process, with
`scontrol requeue JOBID` on USR2. Binding the host's Slurm client in (scontrol, libslurm, its
plugins, libmunge, /etc/slurm, the munge socket) would tie the image to one cluster's Slurm build
and glibc, and need the network to slurmctld from inside. Instead the image's `scontrol`
(docker/scontrol-shim) only writes the job id to $PTBLM_REQUEUE_DIR/requeue.$SLURM_JOB_ID, and
the job script, on the host after the container exits, runs the real `scontrol requeue`
(`requeue_lines`). submitit exits right after asking, well inside the USR2 grace period.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .corpora import CORPORA

RUNTIME_ENV = "PTBLM_CONTAINER_RUNTIME"  # overrides the runtime, e.g. with tests/fixtures/fake-apptainer
REQUEUE_DIR_ENV = "PTBLM_REQUEUE_DIR"  # where docker/scontrol-shim records a requeue request
IMAGE_ENV, IMAGE_DIGEST_ENV = "PTBLM_IMAGE", "PTBLM_IMAGE_DIGEST"  # told to each job; in its config.json
RUNTIME_BIND_VARS = ("SLURM_TMPDIR",)  # folders known only once the job runs: bound when set
RUNTIMES = ("apptainer", "podman")  # the profile's container_runtime
# Podman's global options that work without systemd cgroups and with runc (crun refuses hybrid
# cgroups), and explicit ulimits (its defaults need CAP_SYS_RESOURCE, which sandboxes lack).
PODMAN_GLOBAL_OPTIONS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
PODMAN_ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
# Apptainer passes the whole host environment in; podman only what is named. A job needs these
# (submitit's and Slurm's job identity, ptblm's paths, the GPUs Slurm gave it, thread counts).
PODMAN_FORWARDED_ENV = ("SLURM_*", "SUBMITIT_*", "PTBLM_*", *(corpus.env_var for corpus in CORPORA.values()),
                        "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# With one of these CDI specs (nvidia-ctk cdi generate) podman can hand the GPUs in: --device nvidia.com/gpu=all.
CDI_SPECS = ("/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml")
PODMAN_GPU_DEVICE = "nvidia.com/gpu=all"

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class ContainerSpec:
    """How to wrap a command: which image, which runtime, what the container sees."""

    image: str  # path to the .sif (apptainer) or an image name in podman's storage (podman)
    runtime: str = "apptainer"  # the command
    nv: bool = True  # apptainer --nv (only a warning on a node without GPUs); podman: the GPUs where CDI has them
    binds: Sequence[str] = ()  # host paths, bound at the same path inside
    env: Mapping[str, str] = field(default_factory=dict)  # passed as --env K=V
    kind: str = "apptainer"  # apptainer | podman: which command line to compose
    workdir: str | None = None  # podman: the working directory inside (apptainer keeps the caller's)


def default_runtime(environ: Mapping[str, str], kind: str = "apptainer") -> str:
    """The command of runtime `kind`, unless PTBLM_CONTAINER_RUNTIME names another command (a path
    is made absolute, since the job runs in another directory)."""
    override = environ.get(RUNTIME_ENV, "")
    if not override:
        return kind
    return os.path.abspath(override) if os.sep in override else override


def profile_spec(image: str, kind: str, binds: Sequence[str], env: Mapping[str, str], where: str,
                 environ: Mapping[str, str], runner: Runner = subprocess.run,
                 digest_cache: Path | None = None) -> ContainerSpec:
    """The spec for a profile's `container:` and `container_runtime:`; a missing image stops here,
    before anything is submitted, naming the profile and how to build it. The jobs are told which image
    they run in and its digest (image_identity), for their config.json."""
    runtime = default_runtime(environ, kind)
    if kind == "podman":
        found = shutil.which(runtime) and runner([runtime, "image", "exists", image],
                                                 capture_output=True).returncode == 0
        if not found:
            raise ConfigError(f"{where}: container = {image!r} is not an image {runtime} has; build it with "
                              f"`make image ENGINE=podman` (see README, Containers) or remove the key")
        return ContainerSpec(image=image, runtime=runtime, binds=binds, kind=kind, workdir=os.getcwd(),
                             env={**env, **image_identity(image, kind, runtime, runner, digest_cache)})
    path = Path(image).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: container = {image!r} is not a file; build it with `make sif` "
                          f"(see README, Containers) or remove the key")
    return ContainerSpec(image=str(path), runtime=runtime, binds=binds,
                         env={**env, **image_identity(str(path), kind, runtime, runner, digest_cache)})


def image_identity(image: str, kind: str, runtime: str, runner: Runner = subprocess.run,
                   digest_cache: Path | None = None) -> dict[str, str]:
    """{PTBLM_IMAGE: path or name, PTBLM_IMAGE_DIGEST: sha256:...}: the .sif's SHA-256 (cached by path, size
    and mtime in `digest_cache`: hashing gigabytes once per image), podman's image id. Found at submission,
    where the image is (a job may not see the .sif's folder); a digest podman does not give is left out."""
    if kind == "podman":
        done = runner([runtime, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True)
        output = done.stdout.decode() if isinstance(done.stdout, bytes) else (done.stdout or "")
        image_id = output.strip().removeprefix("sha256:") if done.returncode == 0 else ""
        return {IMAGE_ENV: image, **({IMAGE_DIGEST_ENV: f"sha256:{image_id}"} if image_id else {})}
    from .data import digest_cache as cached_digests, file_digest

    with cached_digests(digest_cache) as cache:
        return {IMAGE_ENV: image, IMAGE_DIGEST_ENV: f"sha256:{file_digest(Path(image), cache)}"}


def job_binds(repo_dir: str | Path, results_dir: str | Path, data_dir: str | Path,
              extra: Sequence[str | Path] = ()) -> list[str]:
    """The host paths a job needs, absolute and deduplicated in this order. $SLURM_TMPDIR is not
    here: it exists only once the job runs (see RUNTIME_BIND_VARS)."""
    return _unique_absolute([repo_dir, results_dir, data_dir, *extra])


def requeue_env(requeue_dir: str | Path) -> dict[str, str]:
    """The --env that lets the image's scontrol record a requeue request in requeue_dir."""
    return {REQUEUE_DIR_ENV: os.path.abspath(requeue_dir)}


def requeue_lines(requeue_dir: str | Path) -> list[str]:
    """Shell lines for the job script, after the container command: run the requeue it asked for.
    For submitit, pass them as the `slurm_teardown` parameter."""
    marker = shlex.quote(os.path.abspath(requeue_dir)) + '/requeue."$SLURM_JOB_ID"'
    return [
        "# requeue requested inside the container (docker/scontrol-shim), done here where scontrol is",
        f'if [ -f {marker} ]; then ptblm_requeue_id=$(cat {marker}); rm -f {marker}; '
        'scontrol requeue "$ptblm_requeue_id"; fi',
    ]


def container_argv(spec: ContainerSpec, argv: Sequence[str],
                   environ: Mapping[str, str] | None = None) -> list[str]:
    """[runtime, exec, options..., image, *argv] for subprocess; environ supplies the run-time
    binds (RUNTIME_BIND_VARS) when this runs inside the job."""
    runtime_paths = _unique_absolute(environ.get(name, "") for name in RUNTIME_BIND_VARS) if environ else []
    bind = "--volume" if spec.kind == "podman" else "--bind"
    runtime_binds = [word for path in runtime_paths for word in (bind, f"{path}:{path}")]
    head, tail = _runtime_words(spec)
    gpus = ["--device", PODMAN_GPU_DEVICE] if _podman_gpus(spec) and any(map(os.path.exists, CDI_SPECS)) else []
    return [*head, *gpus, *runtime_binds, *tail, *argv]


def container_shell_prefix(spec: ContainerSpec) -> str:
    """The same command for a job script, where $SLURM_TMPDIR is bound if set when the job runs;
    append the (quoted) command to it."""
    bind = "--volume" if spec.kind == "podman" else "--bind"
    runtime_binds = [f'${{{name}:+{bind} "${name}:${name}"}}' for name in RUNTIME_BIND_VARS]
    head, tail = _runtime_words(spec)
    # the GPU nodes, not the login node, know whether podman can hand GPUs in: decided when the job runs
    specs = " -o ".join(f"-e {shlex.quote(path)}" for path in CDI_SPECS)
    gpus = [f"$(test {specs} && echo --device {PODMAN_GPU_DEVICE})"] if _podman_gpus(spec) else []
    return " ".join([*map(shlex.quote, head), *gpus, *runtime_binds, *map(shlex.quote, tail)])


def submitit_python(spec: ContainerSpec, python: str = "python") -> str:
    """submitit's `slurm_python` (AutoExecutor(folder, slurm_python=...)): submitit writes
    `srun ... <this> -u -m submitit.core._submit FOLDER` into the sbatch script, unquoted."""
    return f"{container_shell_prefix(spec)} {shlex.quote(python)}"


def local_python(spec: ContainerSpec, python: str = "python") -> str:
    """submitit's LocalExecutor `python`: it shlex-splits the string and runs it without a shell, so
    no shell text here (no $SLURM_TMPDIR outside Slurm anyway)."""
    return shlex.join(container_argv(spec, [python]))


def _runtime_words(spec: ContainerSpec) -> tuple[list[str], list[str]]:
    """The words before the run-time binds, and those after them up to the command."""
    if spec.kind == "podman":
        binds = [word for path in _unique_absolute(spec.binds, podman=True) for word in ("--volume", f"{path}:{path}")]
        head = [spec.runtime, *PODMAN_GLOBAL_OPTIONS, "run", "--rm", "--network=none", *PODMAN_ULIMITS, *binds]
        forwarded = [word for name in PODMAN_FORWARDED_ENV for word in ("--env", name)]
        workdir = ["--workdir", os.path.abspath(spec.workdir)] if spec.workdir else []
        return head, [*forwarded, *_env_options(spec), *workdir, "--entrypoint=", spec.image]
    return [spec.runtime, "exec", *_gpu_and_binds(spec)], [*_env_options(spec), os.path.abspath(spec.image)]


def _podman_gpus(spec: ContainerSpec) -> bool:
    return spec.kind == "podman" and spec.nv


def _gpu_and_binds(spec: ContainerSpec) -> list[str]:
    options = ["--nv"] if spec.nv else []
    binds = _unique_absolute(spec.binds)
    return options + (["--bind", ",".join(f"{path}:{path}" for path in binds)] if binds else [])


def _env_options(spec: ContainerSpec) -> list[str]:
    options = []
    for key, value in spec.env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"container env: {key!r} is not a valid variable name (letters, digits, _)")
        if "," in value:
            raise ConfigError(f"container env: {key}={value!r} contains ',', which apptainer's --env "
                              f"splits on; export APPTAINERENV_{key} in the job instead")
        options += ["--env", f"{key}={value}"]
    return options


def _unique_absolute(paths: Iterable[str | Path], podman: bool = False) -> list[str]:
    """Absolute (not symlink-resolved, as submitit's folders are), first occurrence kept; empty
    entries dropped. Apptainer's --bind splits on ',' and ':' (podman's --volume on ':'), so such
    paths are refused."""
    unique: list[str] = []
    for path in paths:
        if not str(path):
            continue
        absolute = os.path.abspath(os.path.expanduser(str(path)))
        bad = sorted((set(":%") if podman else set(",:%")) & set(absolute))
        if bad:
            option = "podman's --volume" if podman else "apptainer's --bind"
            raise ConfigError(f"container bind {absolute!r} contains {' '.join(bad)}: {option} cannot "
                              "take it (for a submitit folder with %j, bind its first parent without it)")
        if absolute not in unique:
            unique.append(absolute)
    return unique
