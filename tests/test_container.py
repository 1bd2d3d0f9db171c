"""The container command lines (apptainer and podman), the requeue forwarding, the image builds' commands
and failure messages, and the agreement of docker/Dockerfile, docker/ptblm.def and pyproject.toml. No
container engine is needed: commands are run through recording stand-ins; the real podman build and runs
are tests/test_image.py, the Docker and Apptainer ones docker/verify-images.sh."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from ptblm.config import ConfigError
from ptblm.container import (REQUEUE_DIR_ENV, RUNTIME_ENV, ContainerSpec, container_argv, container_shell_prefix,
                             default_runtime, job_binds, local_python, profile_spec, requeue_env, requeue_lines,
                             submitit_python)
from ptblm.image_agreement import check_image_agreement, read_lock, version_in_range
from ptblm.images import (APPTAINER_HELP, DOCKER_HELP, IMAGE_TAG, build_image, build_sif, pip_build_volumes,
                          render_definition)

REPO = Path(__file__).resolve().parents[1]
FAKE_APPTAINER = REPO / "tests" / "fixtures" / "fake-apptainer"
SCONTROL_SHIM = REPO / "docker" / "scontrol-shim"


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def image(tmp_path) -> Path:
    sif = tmp_path / "ptblm.sif"
    sif.write_bytes(b"not really an image")
    return sif


# --- command lines ---------------------------------------------------------------------------

def test_argv_binds_each_path_once_at_the_same_absolute_path(tmp_path, monkeypatch, image):
    monkeypatch.chdir(tmp_path)
    binds = job_binds("repo", tmp_path / "results", "/data/ptb", extra=[tmp_path / "repo", "results/"])
    spec = ContainerSpec(image="ptblm.sif", binds=binds, env={"PTB_DIR": "/data/ptb", "A": "two words"})
    argv = container_argv(spec, ["python", "-c", "print(1)"])
    repo, results = tmp_path / "repo", tmp_path / "results"
    assert argv == ["apptainer", "exec", "--nv",
                    "--bind", f"{repo}:{repo},{results}:{results},/data/ptb:/data/ptb",
                    "--env", "PTB_DIR=/data/ptb", "--env", "A=two words",
                    str(image), "python", "-c", "print(1)"]


def test_argv_without_gpu_binds_or_env_is_bare():
    assert container_argv(ContainerSpec(image="/x/ptblm.sif", nv=False), ["ptblm", "--help"]) == \
        ["apptainer", "exec", "/x/ptblm.sif", "ptblm", "--help"]


def test_argv_binds_slurm_tmpdir_only_when_the_job_has_one():
    spec = ContainerSpec(image="/x/ptblm.sif", binds=["/repo"])
    with_tmpdir = container_argv(spec, ["true"], environ={"SLURM_TMPDIR": "/local/job 7"})
    assert with_tmpdir[with_tmpdir.index("/x/ptblm.sif") - 2:] == ["--bind", "/local/job 7:/local/job 7",
                                                                   "/x/ptblm.sif", "true"]
    assert container_argv(spec, ["true"], environ={"HOME": "/home/u"}) == container_argv(spec, ["true"])
    assert container_argv(spec, ["true"]).count("--bind") == 1


@pytest.mark.parametrize("spec, message", [
    (ContainerSpec(image="i.sif", binds=["/a,b"]), "contains ,"),
    (ContainerSpec(image="i.sif", binds=["/runs/%j"]), "first parent without it"),
    (ContainerSpec(image="i.sif", env={"BAD-NAME": "1"}), "not a valid variable name"),
    (ContainerSpec(image="i.sif", env={"LIST": "a,b"}), "APPTAINERENV_LIST"),
])
def test_values_apptainer_would_misread_are_refused(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        container_argv(spec, ["true"])


def test_runtime_override_is_made_absolute_for_the_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_runtime({}) == "apptainer"
    assert default_runtime({RUNTIME_ENV: "singularity"}) == "singularity"
    assert default_runtime({RUNTIME_ENV: "tests/fixtures/fake-apptainer"}) == \
        str(tmp_path / "tests/fixtures/fake-apptainer")


def run_prefix(prefix: str, argv: list[str], environ: dict[str, str]) -> list[str]:
    """What the runtime receives when a job script runs `prefix argv...` under bash."""
    script = f"{prefix} {shlex.join(argv)}"
    env = {key: value for key, value in os.environ.items() if key != "SLURM_TMPDIR"} | environ
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


@pytest.mark.parametrize("kind", ["apptainer", "podman"])
@pytest.mark.parametrize("environ", [{}, {"SLURM_TMPDIR": "/local/scratch dir/job 7"}])
def test_shell_prefix_gives_the_runtime_the_same_argv(tmp_path, environ, kind):
    """The job-script form, expanded by bash, equals the subprocess form: quoting survives and
    $SLURM_TMPDIR is bound exactly when the job has one."""
    echo = write_script(tmp_path / "print-argv", 'printf "%s\\0" "$0" "$@"\n')
    spec = ContainerSpec(image=str(tmp_path / "my image.sif"), runtime=str(echo), kind=kind, workdir=str(tmp_path),
                         binds=[tmp_path / "it's here", "/data"], env={"MSG": "it's $HOME; `x`"})
    argv = ["python", "-c", "print('a b')"]
    assert run_prefix(container_shell_prefix(spec), argv, environ) == container_argv(spec, argv, environ)


def test_submitit_runs_its_worker_through_the_container(tmp_path):
    """submitit's own command string with slurm_python = submitit_python(...) runs
    `<runtime> exec ... IMAGE python -u -m submitit.core._submit FOLDER`."""
    from submitit.slurm.slurm import SlurmExecutor
    if shutil.which("srun") is None:
        pytest.skip("submitit's SlurmExecutor needs srun on PATH to be constructed")
    echo = write_script(tmp_path / "print-argv", 'printf "%s\\0" "$0" "$@"\n')
    folder = tmp_path / "logs dir"
    spec = ContainerSpec(image=str(tmp_path / "ptblm.sif"), runtime=str(echo), binds=[folder])
    executor = SlurmExecutor(folder, python=submitit_python(spec))
    received = run_prefix(executor._submitit_command_str, [], {})
    assert received == container_argv(spec, ["python", "-u", "-m", "submitit.core._submit", str(folder)])


def test_podman_argv_mounts_forwards_the_job_environment_and_keeps_the_working_directory(tmp_path):
    spec = ContainerSpec(image="localhost/ptblm:latest", runtime="podman", kind="podman", nv=False,
                         binds=[tmp_path, "/data,v2"], env={REQUEUE_DIR_ENV: "/r"}, workdir=str(tmp_path))
    argv = container_argv(spec, ["ptblm", "--help"], environ={"SLURM_TMPDIR": "/local/7"})
    assert argv == ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm", "--network=none",
                    "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                    "--volume", f"{tmp_path}:{tmp_path}", "--volume", "/data,v2:/data,v2",  # podman splits on ':' only
                    "--volume", "/local/7:/local/7",
                    "--env", "SLURM_*", "--env", "SUBMITIT_*", "--env", "PTBLM_*", "--env", "PTB_DIR",
                    "--env", "WIKITEXT2_DIR", "--env", "CUDA_VISIBLE_DEVICES", "--env", "OMP_NUM_THREADS",
                    "--env", "MKL_NUM_THREADS",
                    "--env", f"{REQUEUE_DIR_ENV}=/r", "--workdir", str(tmp_path), "--entrypoint=",
                    "localhost/ptblm:latest", "ptblm", "--help"]


@pytest.mark.parametrize("cdi", [False, True])
def test_podman_hands_gpus_in_where_the_node_has_a_cdi_spec(tmp_path, monkeypatch, cdi):
    """Decided where the task runs: a GPU node has /etc/cdi/nvidia.yaml, the login node may not."""
    spec_file = tmp_path / "nvidia.yaml"
    if cdi:
        spec_file.write_text("cdiVersion: 0.5.0\n")
    monkeypatch.setattr("ptblm.container.CDI_SPECS", (str(spec_file),))
    echo = write_script(tmp_path / "print-argv", 'printf "%s\\0" "$0" "$@"\n')
    spec = ContainerSpec(image="localhost/ptblm", runtime=str(echo), kind="podman")
    argv = container_argv(spec, ["true"])
    assert (argv[argv.index("--device") + 1] == "nvidia.com/gpu=all") if cdi else "--device" not in argv
    assert run_prefix(container_shell_prefix(spec), ["true"], {}) == argv


def test_local_python_has_no_shell_text_for_submitits_shlex_split(tmp_path):
    """submitit's LocalExecutor shlex-splits `python` and runs it without a shell: no ${SLURM_TMPDIR:+...}."""
    spec = ContainerSpec(image=str(tmp_path / "my image.sif"), binds=[tmp_path / "a b"], env={"K": "v w"})
    assert "$" in submitit_python(spec)  # the sbatch script's form, for a shell
    assert shlex.split(local_python(spec)) == container_argv(spec, ["python"])


def test_profile_spec_checks_the_image_the_runtime_names(tmp_path, monkeypatch, image):
    monkeypatch.setenv("PATH", path_with(tmp_path, "podman"))
    monkeypatch.chdir(tmp_path)
    missing = Recorder(info_returncode=1)
    with pytest.raises(ConfigError, match=r"^cluster profile p: container = 'ptblm:nope' is not an image .*podman "
                                          r"has; build it with `make image ENGINE=podman`"):
        profile_spec("ptblm:nope", "podman", [], {}, "cluster profile p", environ={}, runner=missing)
    assert missing.calls == [["podman", "image", "exists", "ptblm:nope"]]
    spec = profile_spec("ptblm:yes", "podman", ["/data"], {}, "p", environ={}, runner=Recorder())
    assert (spec.kind, spec.runtime, spec.image, spec.workdir) == ("podman", "podman", "ptblm:yes", str(tmp_path))
    apptainer = profile_spec(str(image), "apptainer", [], {}, "p", environ={})
    assert (apptainer.kind, apptainer.runtime, apptainer.image) == ("apptainer", "apptainer", str(image))


# --- requeue forwarding ----------------------------------------------------------------------

def test_requeue_inside_is_recorded_and_run_outside(tmp_path, image):
    """Inside: the image's scontrol records the request; outside: requeue_lines run the real one."""
    inside_bin, host_bin, requeue_dir = tmp_path / "inside", tmp_path / "host", tmp_path / "results"
    for folder in (inside_bin, host_bin, requeue_dir):
        folder.mkdir()
    (inside_bin / "scontrol").symlink_to(SCONTROL_SHIM)
    write_script(host_bin / "scontrol", f'echo "$@" >> {tmp_path}/host-scontrol.log\n')
    spec = ContainerSpec(image=str(image), runtime=str(FAKE_APPTAINER), binds=[requeue_dir],
                         env=requeue_env(requeue_dir))
    env = {**os.environ, "SLURM_JOB_ID": "4242", "FAKE_APPTAINER_LOG": str(tmp_path / "calls.log")}

    inside = subprocess.run(container_argv(spec, ["scontrol", "requeue", "4242_3"]), capture_output=True,
                            text=True, env={**env, "PATH": f"{inside_bin}:{env['PATH']}"})
    assert inside.returncode == 0, inside.stderr
    assert (requeue_dir / "requeue.4242").read_text() == "4242_3\n"

    outside = subprocess.run(["bash", "-c", "\n".join(requeue_lines(requeue_dir))], capture_output=True,
                             text=True, env={**env, "PATH": f"{host_bin}:{env['PATH']}"})
    assert outside.returncode == 0, outside.stderr
    assert (tmp_path / "host-scontrol.log").read_text() == "requeue 4242_3\n"
    assert not (requeue_dir / "requeue.4242").exists()
    assert requeue_env(requeue_dir) == {REQUEUE_DIR_ENV: str(requeue_dir)}


def test_requeue_lines_do_nothing_without_a_request(tmp_path):
    host_bin = tmp_path / "host"
    host_bin.mkdir()
    write_script(host_bin / "scontrol", f'echo "$@" >> {tmp_path}/host-scontrol.log\n')
    subprocess.run(["bash", "-c", "\n".join(requeue_lines(tmp_path))], check=True,
                   env={**os.environ, "SLURM_JOB_ID": "5", "PATH": f"{host_bin}:{os.environ['PATH']}"})
    assert not (tmp_path / "host-scontrol.log").exists()


@pytest.mark.parametrize("args, env", [(["show", "job", "5"], {REQUEUE_DIR_ENV: "."}),
                                       (["requeue", "5"], {})])
def test_image_scontrol_refuses_what_it_cannot_forward(tmp_path, args, env):
    done = subprocess.run([str(SCONTROL_SHIM), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "SLURM_JOB_ID": "5", **env})
    assert done.returncode == 1
    assert "no Slurm client in this container" in done.stderr and " ".join(args) in done.stderr
    assert list(tmp_path.iterdir()) == []


# --- the pass-through stand-in ---------------------------------------------------------------

def test_fake_apptainer_records_argv_and_runs_the_command_after_the_image(tmp_path, image):
    log = tmp_path / "calls.log"
    spec = ContainerSpec(image=str(image), runtime=str(FAKE_APPTAINER), binds=[tmp_path], env={"GREETING": "hi there"})
    argv = container_argv(spec, ["sh", "-c", 'echo "$GREETING from $(pwd)"; exit 3'])
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "FAKE_APPTAINER_LOG": str(log)})
    assert done.returncode == 3
    assert done.stdout == f"hi there from {tmp_path}\n"
    assert log.read_text() == "\n".join(argv[1:]) + "\n\n"


@pytest.mark.parametrize("options, message", [
    (["--bind", "/no/such/dir:/no/such/dir"], "bind source /no/such/dir does not exist"),
    (["--bind", "/tmp:/elsewhere"], "binds paths at the same place"),
    (["--containall"], "unknown option --containall"),
])
def test_fake_apptainer_refuses_what_ptblm_never_composes(tmp_path, image, options, message):
    done = subprocess.run([str(FAKE_APPTAINER), "exec", *options, str(image), "true"], capture_output=True,
                          text=True, env={**os.environ, "FAKE_APPTAINER_LOG": str(tmp_path / "calls.log")})
    assert done.returncode == 255
    assert message in done.stderr


# --- image builds ------------------------------------------------------------------------------

class Recorder:
    """A subprocess.run stand-in: records argv (and a file's text, read during the call)."""

    def __init__(self, info_returncode: int = 0, info_stderr: str = ""):
        self.calls: list[list[str]] = []
        self.definitions: list[str] = []
        self.info = (info_returncode, info_stderr)

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        if argv[1] == "build" and argv[-1].endswith(".def"):
            self.definitions.append(Path(argv[-1]).read_text())
        returncode, stderr = self.info if argv[1] in ("info", "image") else (0, "")
        return subprocess.CompletedProcess(argv, returncode, stdout="", stderr=stderr)


def path_with(tmp_path: Path, *tools: str) -> str:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        write_script(folder / tool, "exit 0\n")
    return str(folder)


def test_build_image_without_docker_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path))
    with pytest.raises(RuntimeError) as error:
        build_image(IMAGE_TAG, "docker/Dockerfile", ".", runner=Recorder())
    assert "needs docker, which is not on PATH" in str(error.value) and DOCKER_HELP in str(error.value)


def test_build_image_with_a_client_but_no_engine_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "docker"))
    runner = Recorder(info_returncode=1,
                      info_stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
    with pytest.raises(RuntimeError, match="no Docker engine answers .*Cannot connect to the Docker daemon"):
        build_image(IMAGE_TAG, "docker/Dockerfile", ".", runner=runner)
    assert [call[1] for call in runner.calls] == ["info"]


def test_build_image_runs_docker_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "docker"))
    runner = Recorder()
    build_image("ptblm:test", REPO / "docker/Dockerfile", REPO, runner=runner)
    docker = str(tmp_path / "bin" / "docker")
    assert runner.calls == [[docker, "info"], [docker, "build", "-f", str(REPO / "docker/Dockerfile"),
                                               "-t", "ptblm:test", str(REPO)]]


def test_build_image_with_podman_binds_pips_configuration_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "podman"))
    wheels, index, cert = tmp_path / "wheels", tmp_path / "pypi" / "simple", tmp_path / "ca.crt"
    wheels.mkdir()
    index.mkdir(parents=True)
    cert.write_text("cert\n")
    pip_config = (f"global.cert='{cert}'\nglobal.find-links='/no/such/dir'\n"
                  f"global.extra-index-url='file://{index} https://example.org/simple'\n"
                  f":env:.find-links='{wheels}'\n:env:.default-timeout='180'\n")
    runner = Recorder()
    build_image("ptblm:test", "docker/Dockerfile", ".", runner=runner, engine="podman", base="stand-in:1",
                build_args={"BASE_TORCH": "2.13.0"}, pip_config=pip_config)
    [argv] = runner.calls
    volumes = [argv[i + 1] for i, word in enumerate(argv) if word == "--volume"]
    assert argv[:argv.index("--volume")] == [
        str(tmp_path / "bin" / "podman"), "--runtime", "runc", "--cgroup-manager", "cgroupfs", "build",
        "--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--from", "stand-in:1",
        "--build-arg", "BASE_TORCH=2.13.0"]
    assert argv[-5:] == ["-f", "docker/Dockerfile", "-t", "ptblm:test", "."]
    assert volumes[0].endswith("/pip.conf:/etc/pip.conf:ro")
    # the wheel folder the environment names (not the missing one of the file), the index's parent, the CA bundle
    assert sorted(volumes[1:]) == [f"{cert}:{cert}:ro", f"{index.parent}:{index.parent}:ro", f"{wheels}:{wheels}:ro"]


def test_pip_build_volumes_write_the_settings_pip_reads_inside(tmp_path):
    volumes = pip_build_volumes("global.index-url='https://mirror/simple'\n:env:.no-cache-dir='1'\n", tmp_path)
    assert volumes == [f"{tmp_path}/pip.conf:/etc/pip.conf:ro"]
    assert (tmp_path / "pip.conf").read_text() == "[global]\nindex-url = https://mirror/simple\nno-cache-dir = 1\n"
    assert pip_build_volumes("", tmp_path) == []


def test_build_sif_without_apptainer_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "docker"))
    with pytest.raises(RuntimeError) as error:
        build_sif(tmp_path / "ptblm.sif", IMAGE_TAG, REPO / "docker/ptblm.def", runner=Recorder())
    assert "needs apptainer, which is not on PATH" in str(error.value) and APPTAINER_HELP in str(error.value)


def test_build_sif_from_a_saved_tar_uses_docker_archive_and_keeps_the_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "apptainer"))
    archive = tmp_path / "ptblm.tar"
    archive.write_bytes(b"tar")
    runner = Recorder()
    build_sif(tmp_path / "out" / "ptblm.sif", archive, REPO / "docker/ptblm.def", runner=runner)
    assert runner.calls[0][:4] == [str(tmp_path / "bin" / "apptainer"), "build", "--force",
                                   str(tmp_path / "out" / "ptblm.sif")]
    original, rendered = (REPO / "docker/ptblm.def").read_text().splitlines(), runner.definitions[0].splitlines()
    assert rendered[:2] == ["Bootstrap: docker-archive", f"From: {archive}"]
    assert rendered[2:] == original[2:]
    assert (tmp_path / "out").is_dir()


def test_build_sif_from_a_missing_tar_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, "apptainer"))
    with pytest.raises(FileNotFoundError, match=f"docker save {IMAGE_TAG} -o"):
        build_sif(tmp_path / "ptblm.sif", tmp_path / "missing.tar", REPO / "docker/ptblm.def", runner=Recorder())


def test_render_definition_points_the_daemon_bootstrap_at_a_tag():
    text = (REPO / "docker/ptblm.def").read_text()
    assert render_definition(text, IMAGE_TAG) == text
    assert render_definition(text, "ptblm:v2").splitlines()[:2] == ["Bootstrap: docker-daemon", "From: ptblm:v2"]
    with pytest.raises(ValueError, match="no Bootstrap or From header"):
        render_definition("%runscript\n    exec ptblm\n", IMAGE_TAG)


# --- agreement of the image files with the project -------------------------------------------

AGREEMENT_FILES = ("pyproject.toml", "docker/Dockerfile", "docker/ptblm.def", "docker/constraints.txt",
                   ".dockerignore")


def test_image_files_agree_with_pyproject():
    assert check_image_agreement(REPO) == []


@pytest.mark.parametrize("path, old, new, message", [
    ("docker/Dockerfile", "pytorch:2.5.1-", "pytorch:2.6.0-",
     "ARG BASE_TORCH='2.5.1' but the base tag pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime ships torch 2.6.0"),
    ("pyproject.toml", '"torch>=2.4,<2.15"', '"torch>=2.6,<2.15"', "ships torch 2.5.1, outside pyproject.toml's "
                                                                      "torch>=2.6,<2.15"),
    ("docker/Dockerfile", "BASE_PYTHON=3.11", "BASE_PYTHON=3.9", "BASE_PYTHON='3.9' does not satisfy"),
    ("docker/Dockerfile", 'ENTRYPOINT ["ptblm"]', 'ENTRYPOINT ["python"]', "expected the console script"),
    ("docker/Dockerfile", "PYTHONNOUSERSITE=1", "PYTHONNOUSERSITE=0", "ENV lacks PYTHONNOUSERSITE=1"),
    ("docker/Dockerfile", "/opt/ptblm/torch-pin.txt /tmp/ptblm-src", "/opt/ptblm/torch-pin.txt ptblm",
     "no `pip install /tmp/ptblm-src`"),
    ("docker/ptblm.def", "From: ptblm:latest", "From: ptblm:old",
     "expected Bootstrap: docker-daemon / From: ptblm:latest"),
    ("docker/ptblm.def", 'exec ptblm "$@"', "exec python", "%runscript is 'exec python'"),
    ("docker/ptblm.def", "%help", "%helpless", "missing sections %help"),
    ("docker/constraints.txt", "numpy==2.4.6", "numpy==1.21.0",
     "numpy==1.21.0 is outside pyproject.toml's numpy>=1.24"),
    ("docker/constraints.txt", "tqdm==4.70.1\n", "", "dependency tqdm of pyproject.toml is not pinned"),
    ("docker/constraints.txt", "tqdm==4.70.1\n", "tqdm==4.70.1\ntorch==2.5.1\n", "leave torch out"),
    (".dockerignore", "!docker/scontrol-shim\n", "", "COPY source docker/scontrol-shim is excluded"),
    (".dockerignore", "!src\n", "!src\n!results\n", "re-includes results/"),
])
def test_a_disagreement_is_named(tmp_path, path, old, new, message):
    for name in AGREEMENT_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    text = (tmp_path / path).read_text()
    assert old in text
    (tmp_path / path).write_text(text.replace(old, new))
    problems = check_image_agreement(tmp_path)
    assert len(problems) == 1 and message in problems[0], problems


def dependency_closure(requirements: list[str], stop: set[str]) -> set[str]:
    """Installed distributions these requirements need, transitively, with markers evaluated here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    needed, todo = set(), list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name in needed or name in stop or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        needed.add(name)
        todo += distribution(name).requires or []
    return needed


def test_lock_pins_the_whole_dependency_closure_without_torch():
    """What pyproject's dependencies need, torch and its own closure excepted, is exactly the lock."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml here needs Python >= 3.11")
    with open(REPO / "pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    try:
        closure = dependency_closure(dependencies, stop={"torch"})
    except PackageNotFoundError as error:
        pytest.fail(f"the dev venv lacks {error}: run `make setup`")
    assert set(read_lock(REPO / "docker/constraints.txt")) == closure


def test_version_ranges():
    assert version_in_range("2.5.1+cu124", ">=2.4,<2.15")
    assert version_in_range("3.11", ">=3.10")
    assert not version_in_range("2.15.0", ">=2.4,<2.15")
    assert not version_in_range("3.9", ">=3.10")
    assert version_in_range("2.5", "==2.5.0") and not version_in_range("2.5", "!=2.5.0")
    with pytest.raises(ValueError, match="'~=2.4' .* is not supported"):
        version_in_range("2.5", "~=2.4")


# --- the images' own test, and the real builds -------------------------------------------------

def test_definition_test_section_passes_on_this_cpu(tmp_path):
    """%test of docker/ptblm.def, run here against src/ (with `ptblm` and `python` on PATH as in the image)."""
    pytest.importorskip("ptblm.cli", reason="the %test runs `ptblm --help`, which needs ptblm.cli")
    section = re.search(r"^%test\n(.*?)^%", (REPO / "docker/ptblm.def").read_text(), re.S | re.M).group(1)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_script(bin_dir / "python", f'exec {shlex.quote(sys.executable)} "$@"\n')
    write_script(bin_dir / "ptblm",
                 'exec python -c "import sys; from ptblm.cli import main; sys.exit(main(sys.argv[1:]))" "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(["sh", "-c", section], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "one-batch GRU forward on CPU ok" in done.stdout


def test_verify_images_builds_and_runs_both_images():
    """docker/verify-images.sh where the tools exist; here it is skipped, saying what is missing."""
    missing = []
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        missing.append("a Docker engine (`docker info` fails)" if docker else "docker")
    if shutil.which("apptainer") is None:
        missing.append("apptainer")
    if missing:
        pytest.skip(f"building the images needs {' and '.join(missing)}; see docker/verify-images.sh")
    subprocess.run([str(REPO / "docker/verify-images.sh")], check=True, cwd=REPO,
                   env={**os.environ, "PYTHON": sys.executable})
