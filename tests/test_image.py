"""The image built and run for real with podman, on a stand-in base (docker/stand-in-base.sh), and jobs inside
it through the real scheduler on a GPU-gres request.

Skipped with a reason where podman (as root) is missing; in CI (CI=true) that is a failure instead, since
.ci/run installs it. The stand-in base stays in podman's storage, so only the first run on a machine pays
for debootstrap (about 1.5 to 3 minutes on 2 cores); the image build is then layer-cached.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from ptblm import runfolder as rf
from ptblm.container import PODMAN_GLOBAL_OPTIONS, PODMAN_ULIMITS, ContainerSpec, container_argv, job_binds
from ptblm.jobs import load_experiment
from test_slurm import ptblm, require_slurm, submitted_job, wait_for_job, write_tiny_jobs

pytestmark = [pytest.mark.podman, pytest.mark.slow]
TAG = "localhost/ptblm:test"
PODMAN = ["podman", *PODMAN_GLOBAL_OPTIONS]


@pytest.fixture(scope="module", autouse=True)
def podman_here():
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    why = (f"{' and '.join(missing)} not on PATH" if missing else
           "podman needs root here (rootful storage and debootstrap)" if os.geteuid() != 0 else "")
    if why:
        why = f"building and running the image needs podman: {why} (apt-get install podman runc debootstrap uidmap)"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run should have installed it)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def stand_in_base() -> str:
    done = subprocess.run([str(REPO / "docker/stand-in-base.sh")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image(stand_in_base) -> str:
    """`make image ENGINE=podman BASE=... BASE_TORCH=2.13.0`, as a user would run it."""
    done = subprocess.run([sys.executable, "-m", "ptblm.cli", "image", "--engine", "podman", "--tag", TAG,
                           "--base", stand_in_base, "--build-arg", "BASE_TORCH=2.13.0"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return TAG


def run_image(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PODMAN, "run", "--rm", "--network=none", *PODMAN_ULIMITS, *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_the_image_builds_with_ptblm_as_its_entrypoint(image):
    assert subprocess.run([*PODMAN, "image", "exists", image]).returncode == 0
    done = run_image(image, "--help")
    assert done.returncode == 0 and "usage: ptblm" in done.stdout, done.stderr


def test_definition_test_section_passes_in_the_image(image):
    section = re.search(r"^%test\n(.*?)^%", (REPO / "docker/ptblm.def").read_text(), re.S | re.M).group(1)
    done = run_image("-i", "--entrypoint", "/bin/sh", image, "-s", stdin=section)
    assert done.returncode == 0, done.stderr
    assert "one-batch GRU forward on CPU ok, torch 2.13.0" in done.stdout


def test_the_image_holds_no_data_or_results(image):
    find = ('find / -xdev \\( -name "ptb.*.txt" -o -name best.pt -o -name last.pt -o -name curves.json '
            '-o -name status.json -o -name submission.json -o -path /tmp/ptblm-src \\) -print')
    done = run_image("--entrypoint", "/bin/sh", image, "-c", find)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
    listing = run_image("--entrypoint", "/bin/ls", image, "/opt/ptblm", "/opt/ptblm/bin")
    assert sorted(listing.stdout.split()) == sorted(["/opt/ptblm:", "bin", "constraints.txt", "torch-pin.txt",
                                                     "/opt/ptblm/bin:", "scontrol"])


def test_a_run_inside_the_image_on_bound_data_has_the_same_curves_as_outside(tmp_path, image, synthetic_dir):
    """One setting through `ptblm run-setting` (the sbatch path's command), inside with the job's own command
    line (container_argv: same-path volumes, forwarded environment) and outside with this venv."""
    from ptblm.launch.sbatch import write_pinned_tasks

    jobs_dir = tmp_path / "jobs"
    name = write_tiny_jobs(jobs_dir, num_epochs=2)
    setting = load_experiment(name, jobs_dir).settings[0]
    pinned = {where: write_pinned_tasks([setting], experiment=name, results_dir=tmp_path / where,
                                        data_dirs={"ptb": synthetic_dir}) for where in ("inside", "outside")}
    env = {**os.environ, "SLURM_CPUS_PER_TASK": "1"}  # tmp_path/inside, a volume's source, exists: pinned is in it
    spec = ContainerSpec(image=image, kind="podman", runtime="podman", nv=False, workdir=str(tmp_path),
                         binds=job_binds(tmp_path, tmp_path / "inside", synthetic_dir))
    inside = subprocess.run(container_argv(spec, ["ptblm", "run-setting", str(pinned["inside"]), "0"]),
                            env=env, capture_output=True, text=True, timeout=300)
    assert inside.returncode == 0, inside.stdout[-2000:] + inside.stderr[-2000:]
    ptblm("run-setting", str(pinned["outside"]), "0", env={"SLURM_CPUS_PER_TASK": "1"})
    runs = {where: rf.read_run(setting.run_dir(tmp_path / where)) for where in ("inside", "outside")}
    configs = {where: json.loads((setting.run_dir(tmp_path / where) / rf.CONFIG_FILE).read_text())
               for where in runs}
    assert configs["inside"]["host"] != configs["outside"]["host"]  # really ran in the container
    assert configs["inside"]["torch_version"] == "2.13.0+cpu"
    assert runs["inside"].status.state == runs["outside"].status.state == rf.DONE
    curves = {where: [(e.train_ppl, e.valid_ppl) for e in run.curves.epochs] for where, run in runs.items()}
    assert len(curves["inside"]) == 2 and curves["inside"] == curves["outside"]


def test_verify_images_uses_podman_and_names_what_it_cannot_check(image, stand_in_base, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BASE": stand_in_base, "BASE_TORCH": "2.13.0",
           "VERIFY_DIR": str(tmp_path / "verify"), "PATH": path_without("docker", "apptainer", "nvidia-smi")}
    done = subprocess.run([str(REPO / "docker/verify-images.sh")], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== podman build" in done.stdout and "== podman: the %test section" in done.stdout
    assert "== podman: the job command line" in done.stdout
    assert "not checked here: Apptainer (not on PATH)" in done.stdout
    assert "not checked here: CUDA (no working nvidia-smi)" in done.stdout


def path_without(*tools: str) -> str:
    """PATH minus the folders that hold any of these tools (so the script cannot find them)."""
    folders = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(f for f in folders if not any((Path(f) / tool).exists() for tool in tools))


# --- jobs inside the image through the real scheduler, on the dev cluster's stand-in GPUs -------------

@pytest.fixture(scope="module")
def slurm_cluster():
    require_slurm()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize("command", ["submit", "sbatch"])
def test_podman_smoke_array_on_a_gpu_request_runs_every_task_inside_the_image(tmp_path, image, synthetic_dir,
                                                                            command):
    """container_runtime: podman with gres gpu:1 and two settings per GPU: every task of both submit paths
    runs inside the image (python_version and host are the image's), gets a GPU from Slurm, and says it
    runs on the CPU."""
    jobs_dir, results, clusters = tmp_path / "jobs", tmp_path / "results", tmp_path / "clusters"
    name = write_tiny_jobs(jobs_dir, hidden_sizes=(8, 10, 12) if command == "submit" else (8, 10))
    clusters.mkdir()
    (clusters / "podman-gpu.yaml").write_text(
        f"partition: debug\ncpus_per_task: 1\nmem_gb: 2\ngres: 'gpu:1'\narray_parallelism: 2\n"
        f"runs_per_gpu: {2 if command == 'submit' else 1}\n"
        f"container: {image}\ncontainer_runtime: podman\n")
    output = ptblm(command, name, "--cluster", "podman-gpu", "--clusters", str(clusters), "--jobs", str(jobs_dir),
                   "--results", str(results), "--data", str(synthetic_dir)).stdout
    job = submitted_job(output)
    wait_for_job(job)
    host_python = subprocess.run([sys.executable, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True).stdout.strip()
    image_python = run_image("--entrypoint", "python", image, "-c",
                             "import platform; print(platform.python_version())").stdout.strip()
    assert image_python and image_python != host_python, "the test needs the image's Python to differ"
    for setting in load_experiment(name, jobs_dir).settings:
        run_dir = setting.run_dir(results)
        assert rf.read_status(run_dir).state == rf.DONE, run_dir
        config = json.loads((run_dir / rf.CONFIG_FILE).read_text())
        assert config["python_version"] == image_python and config["device"].startswith("cpu")
        assert re.search(r"GPUs \d allocated \(CUDA_VISIBLE_DEVICES\) but torch sees no CUDA device: running on "
                         r"the CPU", (run_dir / rf.LOG_FILE).read_text())
