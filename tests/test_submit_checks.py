"""Submission says what will happen and stops before anything is written when it cannot go well: no Slurm here, a
setting that needs a GPU the profile does not ask for, and a profile setup line that fails in the job."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, queued
from ptblm import runfolder as rf
from ptblm.clusters import ClusterProfile
from ptblm.config import ConfigError
from ptblm.errors import ToolFailed
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.launch.pipeline import submit_experiment, submit_sbatch
from ptblm.launch.plan import Action, plan_experiment
from ptblm.launch.sbatch import write_pinned_tasks
from ptblm.launch.setup import setup_script
from ptblm.launch.slurm import release
from test_launch import FakeSlurm, tiny_jobs

SLURM_PROGRAMS = ("sbatch", "srun", "scontrol", "squeue", "sinfo", "sacct")


# ----------------------------------------------------------------------------- no Slurm on this machine

@pytest.mark.parametrize("command, named", [(["sbatch"], "sbatch, scontrol, squeue"),
                                            (["submit", "--executor", "slurm"], "sbatch, srun, scontrol, squeue")])
@pytest.mark.parametrize("cluster", [[], ["--cluster", "local"]])
def test_without_slurm_a_submission_to_it_is_one_line_naming_the_programs_and_writes_nothing(tmp_path, synthetic_dir,
                                                                                             command, named, cluster):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    jobs, results = tmp_path / "jobs", tmp_path / "results"
    tiny_jobs(jobs)
    result = subprocess.run([sys.executable, "-m", "ptblm.cli", *command, "tiny", *cluster, "--jobs", str(jobs),
                             "--results", str(results), "--data", str(synthetic_dir)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PATH": str(empty)}, timeout=120)
    head, path = ("sbatch", "ptblm sbatch") if command == ["sbatch"] else ("submit", "ptblm submit (to Slurm)")
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"ptblm {head}: error: {path} "
                             f"needs {named}, which are not on PATH: Slurm is not installed on this machine; valid: "
                             f"run it on the cluster's login node (where `sinfo` answers), or `ptblm submit --executor "
                             f"local` (make submit EXECUTOR=local) to run the tasks as processes of this machine\n")
    assert not results.exists()


def test_a_dry_run_without_slurm_says_so_in_place_of_the_profile_warning(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    lines = []
    submit_sbatch(experiment, ClusterProfile(name="local", partition="debug"), results_dir=tmp_path / "results",
                  data_dir=synthetic_dir, script=Path("slurm/array.sbatch"), dry_run=True, profile_chosen=False,
                  environ={"PATH": str(tmp_path)}, echo=lines.append)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == ["warning: ptblm sbatch needs sbatch, scontrol, squeue, which are not on PATH: Slurm is not "
                        "installed on this machine; valid: run it on the cluster's login node (where `sinfo` "
                        "answers), or `ptblm submit --executor local` (make submit EXECUTOR=local) to run the tasks "
                        "as processes of this machine"]
    assert not (tmp_path / "results").exists()


def test_a_slurm_program_that_cannot_start_is_one_line_naming_it():
    def gone(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    with pytest.raises(ToolFailed, match=r"^`scontrol` cannot be run here \(No such file or directory\): job 41 is "
                                         r"queued but held: run `scontrol release 41` where Slurm is installed, or "
                                         r"scancel 41$"):
        release(["41"], gone)


# ----------------------------------------------------------------------------- a GPU the profile asks for

@pytest.mark.parametrize("texts, named", [(["device=cuda"], "device = 'cuda'"),
                                          (["cuda_graph=on"], "cuda_graph = 'on'"),
                                          (["device=cuda", "cuda_graph=on"], "device = 'cuda' and cuda_graph = 'on'")])
def test_a_setting_that_needs_a_gpu_is_refused_on_a_profile_without_one(tmp_path, synthetic_dir, texts, named):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs", parse_overrides(texts))
    setting = experiment.settings[0]
    for submit, how in ((submit_experiment, {"executor": "slurm"}),
                        (submit_sbatch, {"script": Path("slurm/array.sbatch")})):
        for dry_run in (True, False):
            runner = FakeSlurm(experiment, tmp_path / "results")
            with pytest.raises(ConfigError) as error:
                submit(experiment, ClusterProfile(name="cpu-only"), results_dir=tmp_path / "results",
                       data_dir=synthetic_dir, dry_run=dry_run, runner=runner, echo=lambda line: None, **how)
            assert str(error.value) == (
                f"{experiment.where}, setting 0 ({setting.run_name}): {named} needs a GPU, but cluster profile "
                f"cpu-only asks Slurm for none (no gpus_per_node or gres), so its task would fail on the node; "
                f"valid: a profile with GPUs (--cluster), or device auto or cpu (--set device=auto) and cuda_graph "
                f"auto or off; nothing was submitted")
            assert runner.calls == [] and not (tmp_path / "results").exists()
    for profile in (ClusterProfile(name="gpu", gpus_per_node=1), ClusterProfile(name="gres", gres="gpu:a100:1")):
        lines = []
        submit_sbatch(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir, dry_run=True,
                      script=Path("slurm/array.sbatch"), runner=FakeSlurm(experiment, tmp_path / "results"),
                      echo=lines.append)
        assert lines[-1] == "dry run: nothing submitted"


# ----------------------------------------------------------------------------- the plan says what runs

def test_the_plan_names_every_array_the_profiles_max_array_size_makes(tmp_path, synthetic_dir, monkeypatch):
    monkeypatch.setattr("ptblm.launch.pipeline.submit_arrays", lambda jobs, profile, parameters, **kw: (
        calls.append(kw["array_size"]) or ["1", "2"]))
    calls = []
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", hidden_sizes=(8, 10, 12, 14)), tmp_path / "jobs")
    profile = ClusterProfile(name="small", partition="debug", array_parallelism=2, max_array_size=2)
    printed = {}
    for dry_run in (True, False):
        printed[dry_run] = lines = []
        submit_experiment(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir,
                          executor="slurm", dry_run=dry_run, runner=FakeSlurm(experiment, tmp_path / "results"),
                          echo=lines.append)
        assert lines[1] == ("profile small: 2 Slurm arrays (submitit; at most 2 tasks each: the profile's (small) "
                            "max_array_size) on Slurm cluster ptblm-dev, partition debug")
    assert calls == [2]  # the size the plan said
    assert any(line.startswith("slurm options: ") and line.endswith("at most 2 tasks at once in each of the 2 arrays")
               for line in printed[True])


def test_the_sbatch_dry_run_prints_the_command_that_runs(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    profile = ClusterProfile(name="t", partition="debug", sbatch_extra={"constraint": "x"})
    printed = {}
    for dry_run in (True, False):
        lines = []
        submit_sbatch(experiment, profile, results_dir=results, data_dir=synthetic_dir, dry_run=dry_run,
                      script=Path("slurm/array.sbatch"), runner=FakeSlurm(experiment, results), echo=lines.append)
        printed[dry_run] = next(line for line in lines if line.startswith("sbatch "))
    real = printed[False].split()
    assert "--hold" in real
    assert real[-1] == sys.executable and real[-2].endswith(".json")  # the pinned file, written at submission
    assert printed[True] == " ".join(real[:-2]) + f" <pinned file, written at submission> {sys.executable}"


# ----------------------------------------------------------------------------- a failing setup line

def run_in_bash(lines: list[str], after: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", "\n".join([*lines, after])], capture_output=True, text=True, timeout=30,
                          env={key: value for key, value in os.environ.items() if not key.startswith("PTBLM_")})


def test_setup_lines_run_in_the_jobs_shell_and_the_first_failing_command_is_exported():
    ok = run_in_bash(setup_script(["export SITE=1", "if true; then", "  MORE=2", "fi", "echo loaded"], "rvc"),
                     'echo "$SITE$MORE ${PTBLM_SETUP_FAILED-none}"')
    assert ok.returncode == 0 and ok.stdout == "loaded\n12 none\n"
    failed = run_in_bash(setup_script(["echo first", "module load nosuchmodule", "false"], "rvc"),
                         'echo ---; printf "%s|%s|%s|%s" "$PTBLM_SETUP_FAILED" "$PTBLM_SETUP_STATUS" '
                         '"$PTBLM_SETUP_PROFILE" "$PTBLM_SETUP_OUTPUT"')
    command_not_found = "module: command not found"
    log, exported = failed.stdout.split("\n---\n")
    assert failed.returncode == 0 and log.startswith("first\n") and command_not_found in log
    command, status, profile, output = exported.split("|", 3)
    assert (command, status, profile) == ("module load nosuchmodule", "127", "rvc")
    assert output.startswith("first\n") and output.endswith(command_not_found)


def submitted_pinned_task(tmp_path, synthetic_dir, setup, command=None):
    """A pinned file of setting 0 with `setup` and `command`, its run folder as submission leaves it."""
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", hidden_sizes=(8,)), tmp_path / "jobs")
    setting, results = experiment.settings[0], tmp_path / "results"
    pinned = write_pinned_tasks([setting], experiment="tiny", results_dir=results, data_dirs={"ptb": synthetic_dir},
                                setup=setup, command=command, profile="rvc")
    rf.write_submission(setting.run_dir(results), rf.Submission("7_0", "sbatch", 1.0, 0, setting.config.to_dict()))
    return pinned, setting.run_dir(results)


def run_setting_task(pinned: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("PTB", "SLURM"))}
    return subprocess.run([sys.executable, "-m", "ptblm.cli", "run-setting", str(pinned), "0"], cwd=tmp_path,
                          env={**clean, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("container", [False, True])
def test_a_failing_setup_line_stops_the_sbatch_task_before_training_and_its_run_folder_says_so(tmp_path,
                                                                                              synthetic_dir,
                                                                                              container):
    """With a container, the runtime the failed line was to load is not there: the host's Python records it."""
    runtime = tmp_path / "apptainer-after-module-load"
    command = f"{runtime} exec image.sif ptblm" if container else None
    pinned, run_dir = submitted_pinned_task(tmp_path, synthetic_dir, ("module load nosuchmodule",), command)
    task = run_setting_task(pinned, tmp_path)
    assert task.returncode == 1, task.stdout + task.stderr
    assert "module: command not found" in task.stdout  # the job's log
    status = rf.read_status(run_dir)
    assert status.state == rf.FAILED and status.epochs_done == 0, status
    assert status.error.startswith("SetupFailed: the setup line `module load nosuchmodule` of cluster profile rvc "
                                   "failed (exit 127): ")
    assert "module: command not found; the task stopped before training: fix or remove the line " \
           "(slurm/clusters/rvc.yaml, setup:) and submit again" in status.error
    assert task.stderr.splitlines()[-1] == f"ptblm run-setting: error: {status.error.removeprefix('SetupFailed: ')}"
    assert not rf.read_curves(run_dir).epochs


def test_setup_lines_that_succeed_start_the_task_through_its_container(tmp_path, synthetic_dir):
    marker = tmp_path / "through-the-container"
    wrapper = f"bash -c 'touch {marker}; exec \"$@\"' container {sys.executable} -m ptblm.cli"
    pinned, run_dir = submitted_pinned_task(tmp_path, synthetic_dir, ("export SITE_LOADED=1",), wrapper)
    task = run_setting_task(pinned, tmp_path)
    assert task.returncode == 0, task.stdout + task.stderr
    assert marker.exists() and rf.read_status(run_dir).state == rf.DONE


# ----------------------------------------------------------------------------- whose job a queued id is

def test_a_queued_job_of_the_same_name_writing_to_another_results_folder_is_not_the_runs(tmp_path):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", hidden_sizes=(8,)), tmp_path / "jobs")
    setting, results = experiment.settings[0], tmp_path / "results"
    rf.write_submission(setting.run_dir(results), rf.Submission("9_0", "slurm", 1.0, 0, setting.config.to_dict(),
                                                                job_name="ptblm-tiny"))
    job = queued("tiny", "PENDING", "Priority")
    for stdout, ours in ((f"{tmp_path}/other/tiny/logs/%A_%a_0_log.out", False),
                         (f"{results}/tiny/logs/%A_%a_0_log.out", True), ("", True)):  # "": an older squeue's view
        scheduler = {"9_0": job.__class__(job.state, job.reason, job.name, job.user, stdout)}
        action = plan_experiment(experiment, results, force=False, scheduler=scheduler)[0].action
        assert (action is Action.SKIP) is ours, stdout
