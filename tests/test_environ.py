"""No function reads or writes os.environ behind its caller's back: the entry points (the CLI commands, the job's
task callables) read the process's environment once and pass it down; every other function takes `environ`."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import torch

from conftest import tiny_config
from ptblm import runfolder as rf
from ptblm.clusters import ClusterProfile
from ptblm.container import RUNTIME_ENV
from ptblm.determinism import CUBLAS_VARIABLE
from ptblm.launch.pipeline import container_spec
from ptblm.threads import threads_per_run
from ptblm.train import train_run

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ptblm"
ENTRY_POINTS = {  # module (relative to src/ptblm): the functions in it that may read os.environ (None: every one)
    "cli": None,  # the command-line layer: each command hands os.environ to the function it calls
    "launch/tasks.py": {"TrainTask.__call__", "TrainGroup.__call__"},  # submitit calls these in the job
}
IMAGE_VARIABLE = "APPTAINER_CONTAINER"  # set by apptainer inside a container: the image a run ran in
PROCESS_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name of the enclosing function, line) of each os.environ / os.getenv / ... in `tree`."""
    found = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, f"{scope}.{child.name}" if scope else child.name)
                continue
            if (isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) and child.value.id == "os"
                    and child.attr in PROCESS_ENVIRONMENT):
                found.append((scope, child.lineno))
            if isinstance(child, ast.ImportFrom) and child.module == "os" and \
                    any(alias.name in PROCESS_ENVIRONMENT for alias in child.names):
                found.append((scope, child.lineno))
            visit(child, scope)

    visit(tree, "")
    return found


def allowed(module: str, scope: str) -> bool:
    for entry, functions in ENTRY_POINTS.items():
        if module == entry or module.startswith(entry + "/"):
            return functions is None or scope in functions
    return False


def test_only_the_entry_points_touch_the_process_environment():
    behind_the_back = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for scope, line in environment_uses(ast.parse(path.read_text(), str(path))):
            if not allowed(module, scope):
                behind_the_back.append(f"{module}:{line} ({scope or 'module level'})")
    assert behind_the_back == []


def test_the_scan_sees_a_read_a_default_and_an_import():
    tree = ast.parse("import os\nfrom os import getenv\n"
                     "def f(environ=os.environ):\n    return environ\n"
                     "class T:\n    def __call__(self):\n        return os.environ.get('X')\n")
    assert environment_uses(tree) == [("", 2), ("f", 3), ("T.__call__", 7)]
    assert allowed("launch/tasks.py", "TrainTask.__call__") and not allowed("launch/tasks.py", "TrainTask.run")
    assert allowed("cli/training.py", "cmd_train") and not allowed("train.py", "train_run")


def test_a_run_records_and_sets_only_the_environment_it_is_given(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(CUBLAS_VARIABLE, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "999")  # the process's: not what this run was given
    before = torch.are_deterministic_algorithms_enabled()
    environ = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "cn-a001", IMAGE_VARIABLE: "/images/given.sif"}
    try:
        train_run(tiny_config(num_epochs=1, max_batches=2, deterministic=True), synthetic_dir, tmp_path,
                  echo=False, environ=environ)
    finally:
        torch.use_deterministic_algorithms(before)
    recorded = rf.read_run(tmp_path).provenance
    assert recorded["slurm"] == {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "cn-a001"}
    assert recorded["node_list"] == "cn-a001" and recorded["image"]["path"] == "/images/given.sif"
    assert environ[CUBLAS_VARIABLE] == ":4096:8" and CUBLAS_VARIABLE not in os.environ


def test_threads_and_the_container_runtime_come_from_the_given_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    monkeypatch.setenv(RUNTIME_ENV, "from-the-process")
    assert threads_per_run(4, {"SLURM_CPUS_PER_TASK": "8"}) == 2
    assert threads_per_run(16, {"SLURM_CPUS_PER_TASK": "8"}) == 1  # never none
    image = tmp_path / "ptblm.sif"
    image.write_text("not a real image\n")
    profile = ClusterProfile(name="t", container=str(image))
    spec = container_spec(profile, tmp_path / "results", [tmp_path / "data"], requeue_dir=tmp_path / "logs",
                          jobs_dir=tmp_path / "jobs", environ={RUNTIME_ENV: "singularity"})
    assert spec.runtime == "singularity"
