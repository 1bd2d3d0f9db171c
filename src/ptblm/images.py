"""Building the ptblm image: docker or podman build of docker/Dockerfile, apptainer build of docker/ptblm.def
(image_agreement.py checks that those files agree with pyproject.toml)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .container import PODMAN_GLOBAL_OPTIONS, PODMAN_ULIMITS, Runner
from .errors import ToolFailed, UserError

IMAGE_TAG = "ptblm:latest"  # what `make image` builds and docker/ptblm.def bootstraps from

DOCKER_HELP = (
    "Install Docker Engine (https://docs.docker.com/engine/install/), or build on a machine that has "
    "it: `docker build -f docker/Dockerfile -t ptblm:latest .` then `docker save ptblm:latest -o ptblm.tar`, "
    "and turn the tar into a .sif where Apptainer is: `make sif FROM_TAR=ptblm.tar`.")
PODMAN_HELP = (
    "Install podman (Debian/Ubuntu: `apt-get install podman runc uidmap`), or build with Docker: `make image`.")
APPTAINER_HELP = (
    "Install Apptainer (https://apptainer.org/docs/admin/main/installation.html; on a cluster try "
    "`module load apptainer`), or run `make sif` on a machine that has it and copy ptblm.sif to the "
    "cluster, then set `container: /path/to/ptblm.sif` in its profile.")


def build_image(tag: str, dockerfile: str | Path, context: str | Path, runner: Runner = subprocess.run,
                engine: str = "docker", base: str | None = None, build_args: Mapping[str, str] | None = None,
                pip_config: str | None = None) -> None:
    """docker build, or podman build (base: an image in place of the Dockerfile's FROM; pip_config:
    `pip config list` output, this machine's by default, whose files are bound read-only into the
    build); fails first, with what to do, when the tool or its engine is missing."""
    if engine == "podman":
        podman = _require_tool("podman", "`ptblm image --engine podman`", PODMAN_HELP)
        if pip_config is None:
            pip_config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                        text=True).stdout
        with tempfile.TemporaryDirectory(prefix="ptblm-pip-") as scratch:
            _build(runner, podman_build_argv(podman, tag, dockerfile, context, base=base, build_args=build_args or {},
                                             volumes=pip_build_volumes(pip_config, Path(scratch))))
        return
    docker = _require_tool("docker", "`ptblm image`", DOCKER_HELP)
    info = runner([docker, "info"], capture_output=True, text=True)
    if info.returncode != 0:
        said = (info.stderr or info.stdout or "").strip().splitlines()
        reason = said[-1] if said else f"exit status {info.returncode}"
        raise ToolFailed(f"`ptblm image`: {docker} is installed but no Docker engine answers "
                           f"(`docker info`: {reason}). Start the engine (e.g. `sudo systemctl start docker`) "
                           f"or use a machine that has one. {DOCKER_HELP}")
    _build(runner, [docker, "build", "-f", str(dockerfile), "-t", tag, str(context)])


def _build(runner: Runner, argv: list[str]) -> None:
    """A build whose own output (shown as it runs) says what went wrong: a failure is one line after it."""
    returncode = runner(argv).returncode
    if returncode != 0:
        raise ToolFailed(f"`{Path(argv[0]).name} build` failed (exit status {returncode}); its output above says "
                         f"why")


def podman_build_argv(podman: str, tag: str, dockerfile: str | Path, context: str | Path, *, base: str | None,
                      build_args: Mapping[str, str], volumes: Sequence[str]) -> list[str]:
    """podman build with the host's network (the package index) and read-only volumes (pip's
    configuration and the files it names), which RUN steps see and the image does not keep."""
    return [podman, *PODMAN_GLOBAL_OPTIONS, "build", "--network", "host", *PODMAN_ULIMITS,
            *(["--from", base] if base else []),
            *(word for key, value in build_args.items() for word in ("--build-arg", f"{key}={value}")),
            *(word for volume in volumes for word in ("--volume", volume)),
            "-f", str(dockerfile), "-t", tag, str(context)]


def pip_build_volumes(pip_config: str, scratch: Path) -> list[str]:
    """`pip config list` output (`global.find-links='/opt/wheels'`, `:env:.cert='...'`) -> podman
    volumes: a pip.conf with the same settings at /etc/pip.conf, and every local file or folder
    they name (for a file:// index .../simple, its parent, where the wheels lie), all read-only."""
    settings: dict[str, str] = {}
    for line in pip_config.splitlines():
        match = re.fullmatch(r"([^=]*)\.([a-z-]+)=(.*)", line.strip())
        if not match:
            continue
        value = match.group(3).strip()
        value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value
        if match.group(1) != ":env:" and match.group(2) in settings:
            continue  # the environment's value wins, as it does for pip
        settings[match.group(2)] = value
    if not settings:
        return []
    paths = []
    for value in settings.values():
        for word in value.split():
            path = word[len("file://"):] if word.startswith("file://") else word
            if os.path.isabs(path) and os.path.exists(path):
                paths.append(str(Path(path).parent) if path.rstrip("/").endswith("/simple") else path)
    conf = scratch / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    return [f"{conf}:/etc/pip.conf:ro", *(f"{path}:{path}:ro" for path in dict.fromkeys(paths))]


def build_sif(sif_path: str | Path, source: str | Path, definition: str | Path,
              runner: Runner = subprocess.run) -> None:
    """apptainer build from the .def, so its %test, %help and %environment always apply; source is
    the Docker image tag (read from the daemon) or a `docker save` tar built elsewhere."""
    apptainer = _require_tool("apptainer", "`ptblm sif`", APPTAINER_HELP)
    text = render_definition(Path(definition).read_text(), source)
    Path(sif_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptblm-def-") as scratch:
        rendered = Path(scratch) / "ptblm.def"
        rendered.write_text(text)
        _build(runner, [apptainer, "build", "--force", str(sif_path), str(rendered)])


class MissingArchive(UserError, FileNotFoundError):
    """`ptblm sif --from-tar` names a file that is not there."""


def render_definition(text: str, source: str | Path) -> str:
    """The .def with its Bootstrap/From header pointing at source: a .tar -> docker-archive, else a
    tag in the Docker daemon."""
    if str(source).endswith(".tar"):
        archive = Path(source).resolve()
        if not archive.is_file():
            raise MissingArchive(f"{source}: no such image archive; make one with "
                                    f"`docker save {IMAGE_TAG} -o {source}` where the image was built")
        header = {"Bootstrap": "docker-archive", "From": str(archive)}
    else:
        header = {"Bootstrap": "docker-daemon", "From": str(source)}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("%"):
            break
        key = line.partition(":")[0].strip()
        if key in header:
            lines[index] = f"{key}: {header.pop(key)}"
    if header:
        raise ValueError(f"definition has no {' or '.join(header)} header line before its first section")
    return "\n".join(lines) + "\n"


def _require_tool(name: str, command: str, help_text: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolFailed(f"{command} needs {name}, which is not on PATH. {help_text}")
    return path
