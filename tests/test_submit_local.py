"""The submit path without Slurm: submitit's local executor, idempotent resubmission, packed runs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_config
from ptblm import runfolder as rf
from ptblm.clusters import ClusterProfile
from ptblm.jobs import load_experiment
from ptblm.launch.pipeline import submit_experiment
from ptblm.launch.plan import Action
from runtree import write_status


def tiny_experiment(jobs_dir: Path, hidden_sizes=(8, 10, 12)) -> str:
    jobs_dir.mkdir(exist_ok=True)
    common = {k: v for k, v in tiny_config(num_epochs=2, model="RNN").to_dict().items() if k != "hidden_size"}
    settings = "".join(f"  - {{hidden_size: {h}}}\n" for h in hidden_sizes)
    (jobs_dir / "tiny.yaml").write_text(f"description: tiny\ncommon: {common}\nsettings:\n{settings}")
    return "tiny"


@pytest.mark.parametrize("runs_per_gpu", [1, 2])
def test_local_executor_runs_everything_then_resubmission_is_a_no_op(tmp_path, synthetic_dir, runs_per_gpu):
    experiment = load_experiment(tiny_experiment(tmp_path / "jobs"), tmp_path / "jobs")
    profile = ClusterProfile(name="t", local_parallelism=2, local_timeout_min=10, runs_per_gpu=runs_per_gpu)
    lines = []
    outcome = submit_experiment(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir,
                                executor="local", echo=lines.append)
    assert outcome.executor == "local"
    assert len(outcome.job_ids) == (3 if runs_per_gpu == 1 else 2)  # 2 packed tasks: settings 0+1, then 2
    assert any(line.startswith(f"running {len(outcome.job_ids)} tasks on this machine (the local executor was asked "
                               f"for) with submitit's local executor, at most 2 at once, timeout 10 min")
               for line in lines)
    for setting in experiment.settings:
        status = rf.read_status(setting.run_dir(tmp_path / "results"))
        assert status.state == rf.DONE and status.epochs_done == 2
        assert rf.read_submission(setting.run_dir(tmp_path / "results")).executor == "local"
    again = submit_experiment(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir,
                              executor="local", echo=lines.append)
    assert again.executor == "none" and again.job_ids == []
    assert {task.action for task in again.plan} == {Action.SKIP}


def test_dry_run_submits_nothing_and_writes_nothing(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_experiment(tmp_path / "jobs"), tmp_path / "jobs")
    lines = []
    outcome = submit_experiment(experiment, ClusterProfile(name="t"), results_dir=tmp_path / "results",
                                data_dir=synthetic_dir, dry_run=True, executor="slurm", echo=lines.append)
    assert outcome.executor == "none" and not (tmp_path / "results").exists()
    assert "rnn_adam_lr0.01_bs8_h12_l2_keep0.8_seq12_emb12_ep2" in "\n".join(lines)
    assert lines[-1] == "dry run: nothing submitted"


def test_a_missing_container_image_stops_a_forced_submission_before_any_run_is_cleared(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_experiment(tmp_path / "jobs", hidden_sizes=(8,)), tmp_path / "jobs")
    results = tmp_path / "results"
    submit_experiment(experiment, ClusterProfile(name="t", local_timeout_min=10), results_dir=results,
                      data_dir=synthetic_dir, executor="local", echo=lambda line: None)
    run_dir = experiment.settings[0].run_dir(results)
    before = sorted(path.name for path in run_dir.iterdir())
    assert rf.read_status(run_dir).state == rf.DONE and "last.pt" in before
    profile = ClusterProfile(name="t", container=str(tmp_path / "missing.sif"))
    with pytest.raises(ValueError, match="cluster profile t: container = .*missing.sif.* is not a file"):
        submit_experiment(experiment, profile, results_dir=results, data_dir=synthetic_dir, force=True,
                          executor="local", echo=lambda line: None)
    assert sorted(path.name for path in run_dir.iterdir()) == before  # the finished run is still there
    assert rf.read_status(run_dir).state == rf.DONE


def test_a_container_profile_runs_every_local_task_inside_the_container(tmp_path, synthetic_dir, monkeypatch):
    """submitit's local executor shlex-splits its `python` and runs it without a shell: the container command
    must hold no shell text (it once held ${SLURM_TMPDIR:+--bind ...}, and every task failed)."""
    experiment = load_experiment(tiny_experiment(tmp_path / "jobs", hidden_sizes=(8, 10)), tmp_path / "jobs")
    image = tmp_path / "ptblm.sif"
    image.write_text("not a real image: the pass-through only checks it exists\n")
    log = tmp_path / "apptainer.log"
    monkeypatch.setenv("PTBLM_CONTAINER_RUNTIME", str(REPO / "tests" / "fixtures" / "fake-apptainer"))
    monkeypatch.setenv("FAKE_APPTAINER_LOG", str(log))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    profile = ClusterProfile(name="t", local_parallelism=2, local_timeout_min=10, container=str(image))
    lines = []
    submit_experiment(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir,
                      executor="local", echo=lines.append, environ=os.environ)
    for setting in experiment.settings:
        assert rf.read_status(setting.run_dir(tmp_path / "results")).state == rf.DONE, lines
    calls = log.read_text().split("\n\n")[:-1]
    assert len(calls) == 2 and all(f"\n{image}\npython\n-u\n-m\nsubmitit.core._submit\n" in call for call in calls)


def ptblm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptblm.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the failing setting asks for a CUDA device this machine has")
def test_a_failed_local_task_exits_1_with_its_error_line_not_a_log_path(tmp_path, synthetic_dir):
    jobs = tmp_path / "jobs"
    tiny_experiment(jobs, hidden_sizes=(8,))
    with (jobs / "tiny.yaml").open("a") as handle:
        handle.write("  - {hidden_size: 10, device: cuda}\n")  # fails in the task, on this CPU-only machine
    result = ptblm("submit", "tiny", "--executor", "local", "--jobs", str(jobs), "--results", str(tmp_path / "r"),
                   "--data", str(synthetic_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = ("setting 1 (rnn_adam_lr0.01_bs8_h10_l2_keep0.8_seq12_emb12_ep2): failed: ConfigError: device = 'cuda' "
              "was asked for but torch sees no CUDA device; use --device cpu or auto")
    assert failed in result.stdout.splitlines() and "_log.out" not in result.stdout.split("local executor")[1]
    assert "setting 0 (rnn_adam_lr0.01_bs8_h8_l2_keep0.8_seq12_emb12_ep2): done" in result.stdout.splitlines()
    assert result.stderr == f"ptblm submit: error: 1 of 2 settings failed:\n  tiny {failed}\n"


@pytest.mark.parametrize("folder", ["jbos", "empty"])
def test_all_in_a_missing_or_empty_jobs_folder_is_one_error_line(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    result = ptblm("submit", "all", "--jobs", str(tmp_path / folder), "--dry-run")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"ptblm submit: error: all: the experiments folder {tmp_path / folder} ")
    assert result.stderr.count("\n") == 1 and "valid: --jobs naming a folder of jobs files" in result.stderr


def test_the_command_that_resumes_a_local_run_names_the_local_executor(tmp_path):
    """submitted.json records the executor: a run that local processes ran resumes with --executor local (plain
    `submit` would go to Slurm wherever a cluster answers)."""
    from ptblm.invocation import Locations
    from ptblm.status import status_report

    jobs, results = tmp_path / "jobs", tmp_path / "results"
    experiment = load_experiment(tiny_experiment(jobs, hidden_sizes=(8,)), jobs)
    setting = experiment.settings[0]
    rf.write_submission(setting.run_dir(results), rf.Submission(None, "local", 1.0, 0, setting.config.to_dict()))
    write_status(setting.run_dir(results), rf.RunStatus(rf.CANCELLED, 1, 2, updated_at=2.0))
    report = status_report(results, jobs, ["tiny"], scheduler=lambda: {}, accounting=lambda ids: None,
                           where=Locations("ptblm", results_dir=results, jobs_dir=None))
    assert (f"`make submit EXP=tiny EXECUTOR=local ONLY=0 RESULTS={results}` (or `ptblm submit tiny --executor local "
            f"--only 0 --results {results}`) resumes it") in report
