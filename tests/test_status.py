"""`ptblm status` while runs train: the epoch in progress, time left, squeue's reasons, the commands that resume a
run, the summary line; a job id reused by another job; a finished setting that asks its test pass."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import queued, tiny_config
from ptblm import runfolder as rf
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.launch.plan import Action, plan_experiment
from ptblm.launch.slurm import QueuedJob, jobs_of_run, squeue_jobs
from ptblm.status import Locations, status_report, status_rows
from ptblm.timeleft import run_timing
from ptblm.train import train_run
from runtree import write_config, write_curves, write_status

NOW = 1_700_000_000.0


def tiny_jobs(jobs_dir: Path, num_epochs: int = 3, evaluate: bool = False) -> str:
    jobs_dir.mkdir(exist_ok=True)
    common = {k: v for k, v in tiny_config(num_epochs=num_epochs, evaluate=evaluate).to_dict().items()
              if k != "hidden_size"}
    (jobs_dir / "tiny.yaml").write_text(f"description: tiny\ncommon: {json.dumps(common)}\nsettings:\n"
                                        f"  - {{hidden_size: 8}}\n  - {{hidden_size: 10}}\n")
    return "tiny"


def submitted(results: Path, setting, job_id: str, executor: str = "slurm", **more) -> Path:
    folder = setting.run_dir(results)
    rf.write_submission(folder, rf.Submission(job_id, executor, NOW - 100, setting.index, setting.config.to_dict(),
                                              **more))
    return folder


def write_running(folder: Path, epoch_seconds: list[float], progress: rf.EpochProgress | None, num_epochs: int,
                  updated_at: float, job_id: str | None = "5_0") -> None:
    """A run that finished `epoch_seconds` epochs and records `progress` in the next, as the trainer writes it."""
    wall = [sum(epoch_seconds[:i + 1]) for i in range(len(epoch_seconds))]
    write_config(folder, tiny_config(num_epochs=num_epochs).to_dict(), {"experiment": "tiny"})
    write_curves(folder, rf.Curves([rf.EpochRecord(i + 1, 50.0, 40.0, s, w, 0.01)
                                       for i, (s, w) in enumerate(zip(epoch_seconds, wall))]))
    write_status(folder, rf.RunStatus(rf.RUNNING, len(epoch_seconds), num_epochs, updated_at=updated_at,
                                         slurm_job_id=job_id, progress=progress))


@pytest.fixture
def experiment(tmp_path):
    return load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")


# --- the trainer records where it is -------------------------------------------------------------------------

def test_the_trainer_records_its_step_in_status_json_and_its_log_says_the_time_left(tmp_path, synthetic_dir):
    folder, seen = tmp_path / "run", []

    def look() -> bool:  # asked between batches: what a status call would read then
        seen.append(rf.read_status(folder))
        return False

    train_run(tiny_config(num_epochs=2, max_batches=20), synthetic_dir, folder, echo=False, should_stop=look,
              environ={})
    progress = list(dict.fromkeys((s.epochs_done, s.progress.epoch, s.progress.step, s.progress.steps)
                                  for s in seen if s and s.progress))
    assert progress[:3] == [(0, 1, 2, 20), (0, 1, 4, 20), (0, 1, 6, 20)]  # every 10% of the training pass
    assert (1, 2, 20, 20) in progress and all(s.progress.seconds > 0 for s in seen if s and s.progress)
    final = rf.read_status(folder)
    assert final.state == rf.DONE and final.progress is None  # a change of state ends the progress record
    lines = [line for line in (folder / rf.LOG_FILE).read_text().splitlines() if "epoch 1 train step 10/20" in line]
    assert len(lines) == 1 and re.search(r"words/s, \d+:\d\d:\d\d left in this epoch$", lines[0]), lines


def test_a_progress_line_says_the_time_left_in_the_epoch_validation_pass_included():
    """10 s for 5 of 10 training batches: 10 s more of them, then 4 validation batches at the last validation pass's
    pace (0.5 s), or at the training pace (2 s) before there was one."""
    import time

    import torch

    from ptblm.epochs import EpochRunner

    lines = []
    runner = EpochRunner(torch.nn.Linear(1, 1), tiny_config(), torch.device("cpu"), lines.append, interactive=False)
    report = dict(label="epoch 1 train", done=5, steps=10, total=torch.tensor(10.0), progress=None, then=4)
    runner._report(started=time.perf_counter() - 10, **report)
    runner._eval_pace = 0.5
    runner._report(started=time.perf_counter() - 10, **report)
    runner._report(started=time.perf_counter() - 10, **{**report, "label": "test", "then": 0})
    assert [line.split("words/s, ")[1] for line in lines] == [
        "0:00:18 left in this epoch", "0:00:12 left in this epoch", "0:00:10 left in this pass"]


def test_a_status_json_without_progress_reads_as_before_and_a_progress_is_written(tmp_path):
    path = tmp_path / rf.STATUS_FILE
    path.write_text(json.dumps({"state": "running", "epochs_done": 1, "num_epochs": 3}))  # as format 1 wrote it
    assert rf.read_status(tmp_path).progress is None
    with rf.RunFolder(tmp_path).hold("9_1") as writer:
        writer.record_progress(2, 4, 10, 3.5)
    obj = json.loads(path.read_text())
    assert obj["format_version"] == rf.FORMAT_VERSION == 2
    assert obj["progress"] == {"epoch": 2, "step": 4, "steps": 10, "seconds": 3.5} and obj["epochs_done"] == 1
    assert rf.read_status(tmp_path).progress == rf.EpochProgress(2, 4, 10, 3.5)


# --- time left --------------------------------------------------------------------------------------------

def test_time_left_is_the_rest_of_the_epoch_then_the_mean_epoch_times_the_epochs_after_it(tmp_path):
    folder = tmp_path / "run"
    # epochs of 10 and 14 s; epoch 3 of 5 at step 5/10 after 4 s, recorded 1 s ago
    write_running(folder, [10.0, 14.0], rf.EpochProgress(3, 5, 10, 4.0), 5, updated_at=NOW - 1)
    timing = run_timing(rf.RunFolder(folder).read(), True, NOW)
    # 5 s into the epoch; its pace says 8 s in all, the mean epoch 12 s: 7 s left in it, then 2 x 12 s
    assert (timing.elapsed, timing.left) == (24.0 + 5.0, 7.0 + 24.0)
    assert run_timing(rf.RunFolder(folder).read(), False, NOW).left is None  # nobody trains it now
    write_running(folder, [], rf.EpochProgress(1, 2, 10, 3.0), 3, updated_at=NOW)  # first epoch: its own pace
    assert run_timing(rf.RunFolder(folder).read(), True, NOW).left == pytest.approx(12.0 + 2 * 15.0)


def test_status_shows_the_epoch_in_progress_elapsed_left_and_a_summary_with_the_eta(tmp_path, experiment):
    results = tmp_path / "results"
    running = submitted(results, experiment.settings[0], "5_0")
    write_running(running, [10.0], rf.EpochProgress(2, 9, 10, 9.0), 3, updated_at=NOW)
    submitted(results, experiment.settings[1], "5_1")
    scheduler = {"5_0": queued("tiny"), "5_1": queued("tiny", "PENDING", "Resources")}
    rows = status_rows(results, "tiny", experiment, scheduler=scheduler, now=NOW)
    assert [(r["state"], r["epoch"], r["elapsed"], r["left"]) for r in rows] == [
        ("running", "1/3 (epoch 2: 90%)", "0:00:19", "0:00:11"), ("pending (Resources)", "0/3", "-", "-")]
    report = status_report(results, tmp_path / "jobs", ["tiny"], scheduler=lambda: scheduler,
                           accounting=lambda ids: {}, now=NOW)
    ends = time.strftime("%H:%M", time.localtime(NOW + 11))
    assert report.splitlines()[-1] == f"summary tiny: 1 running, 1 pending; last running ends ~{ends} (in 0:00:11)"


def test_a_pending_job_shows_squeues_reason_and_a_requeued_one_its_wait(tmp_path, experiment):
    results = tmp_path / "results"
    submitted(results, experiment.settings[0], "6_0")
    folder = submitted(results, experiment.settings[1], "6_1")
    write_status(folder, rf.RunStatus(rf.REQUEUED, 1, 3, updated_at=NOW, slurm_job_id="6_1"))
    rows = status_rows(results, "tiny", experiment, now=NOW, scheduler={
        "6_0": queued("tiny", "PENDING", "JobArrayTaskLimit"), "6_1": queued("tiny", "PENDING", "BeginTime")})
    assert [r["state"] for r in rows] == ["pending (JobArrayTaskLimit)", "requeued (pending: BeginTime)"]


# --- how to resume --------------------------------------------------------------------------------------------

def test_cancelled_lost_and_stopped_runs_name_the_command_that_resumes_them(tmp_path, synthetic_dir):
    jobs = tmp_path / "jobs"
    overrides = parse_overrides(["num_epochs=4", "seed=1,2"])
    experiment = load_experiment(tiny_jobs(jobs), jobs, overrides)
    results = tmp_path / "results"
    cancelled = submitted(results, experiment.settings[1], "7_1", overrides=["num_epochs=4", "seed=1,2"],
                          profile="mila")
    write_status(cancelled, rf.RunStatus(rf.CANCELLED, 1, 4, updated_at=NOW, slurm_job_id="7_1"))
    submitted(results, experiment.settings[2], "7_2", executor="sbatch")  # never started; its job is gone
    manual = results / "tiny" / "by-hand"
    train_run(tiny_config(num_epochs=2), synthetic_dir, manual, echo=False, command_line=[
        "/somewhere/ptblm", "train", "--model", "GRU", "--out", str(manual)], environ={})
    write_status(manual, rf.RunStatus(rf.RUNNING, 1, 2, updated_at=NOW))  # a killed `ptblm train`: lock free
    where = Locations(".venv/bin/ptblm", results_dir=results)
    report = status_report(results, jobs, ["tiny"], scheduler=lambda: {}, accounting=lambda ids: None,
                           overrides=overrides, where=where, now=NOW)
    assert (f"setting 1: cancelled after epoch 0/4; `make submit EXP=tiny SET='num_epochs=4 seed=1,2' ONLY=1 "
            f"CLUSTER=mila RESULTS={results}` (or `.venv/bin/ptblm submit tiny --set num_epochs=4 --set seed=1,2 "
            f"--only 1 --cluster mila --results {results}`) resumes it") in report
    assert (f"setting 2: job 7_2 is no longer queued or running, but its run folder says pending; the task never "
            f"started (it wrote no log); `make sbatch EXP=tiny ONLY=2 RESULTS={results}` (or `.venv/bin/ptblm "
            f"sbatch tiny --only 2 --results {results}`) resumes it") in report  # scancel before it started
    assert "7_2.out" not in report
    assert (f"no process holds its .lock (killed, or its terminal closed); `.venv/bin/ptblm train --model GRU --out "
            f"{manual}` resumes it") in report
    assert report.splitlines()[-1] == "summary tiny: 1 stopped, 1 cancelled, 1 lost, 2 not submitted"


# --- a job id is the run's only under its name --------------------------------------------------------------

def test_squeue_is_polled_once_for_state_reason_name_and_this_users_jobs_only(monkeypatch):
    calls = []
    monkeypatch.setattr("ptblm.launch.slurm.shutil.which", lambda name, path=None: f"/usr/bin/{name}")

    def fake_squeue(argv, **kwargs):
        calls.append(argv)
        rows = [("12_3", "PENDING", "Resources", "me", "/r|s/3.1/logs/%A_%a.out", "ptblm-3.1"),
                ("13", "RUNNING", "None", "me", "", "ptblm-a|b"), ("14", "RUNNING", "None", "you", "/x", "ptblm-3.1")]
        return subprocess.CompletedProcess(argv, 0, "".join("\x1f".join(row) + "\n" for row in rows), "")

    jobs = squeue_jobs(fake_squeue, user="me")  # fields apart by a character no path or name holds ("|" may be)
    assert jobs == {"12_3": QueuedJob("PENDING", "Resources", "ptblm-3.1", "me", "/r|s/3.1/logs/%A_%a.out"),
                    "13": QueuedJob("RUNNING", "None", "ptblm-a|b", "me")}
    assert len(calls) == 1 and calls[0][:3] == ["squeue", "-u", "me"]


def test_a_job_id_reused_by_another_job_is_not_the_runs_in_status_nor_in_the_plan(tmp_path, experiment):
    results = tmp_path / "results"
    folder = submitted(results, experiment.settings[0], "10_3", job_name="ptblm-tiny")
    write_status(folder, rf.RunStatus(rf.RUNNING, 1, 3, updated_at=NOW, slurm_job_id="10_3"))
    older = submitted(results, experiment.settings[1], "10_4")  # written before submitted.json had job_name
    theirs = {"10_3": QueuedJob("RUNNING", "None", "ptblm-3.1", "me"), "10_4": queued("other")}
    assert [r["state"] for r in status_rows(results, "tiny", experiment, scheduler=theirs, now=NOW)] == ["lost"] * 2
    plan = plan_experiment(experiment, results, False, theirs)
    assert [t.action for t in plan] == [Action.RESUME, Action.SUBMIT]
    ours = {"10_3": queued("tiny"), "10_4": queued("tiny", "PENDING")}
    assert [r["state"] for r in status_rows(results, "tiny", experiment, scheduler=ours, now=NOW)] == [
        "running", "pending"]
    assert [t.reason for t in plan_experiment(experiment, results, False, ours)] == [
        "Slurm job 10_3 still queued or running", "Slurm job 10_4 still queued or running"]
    assert jobs_of_run(rf.RunFolder(older).read(), ours) == {"10_4": ours["10_4"]}


def test_a_trainer_inside_another_slurm_job_is_matched_by_the_name_it_recorded(tmp_path, synthetic_dir):
    folder = tmp_path / "manual" / "run"
    train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, slurm_job_id="20", environ={})
    config = json.loads((folder / rf.CONFIG_FILE).read_text())
    assert "SLURM_JOB_NAME" not in config["slurm"]  # not inside Slurm here: matched by id alone
    record = rf.RunFolder(folder).read()
    assert jobs_of_run(record, {"20": QueuedJob("RUNNING", "None", "interactive", "me")})
    config["slurm"]["SLURM_JOB_NAME"] = "my-sweep"
    (folder / rf.CONFIG_FILE).write_text(json.dumps(config))
    record = rf.RunFolder(folder).read()
    assert not jobs_of_run(record, {"20": QueuedJob("RUNNING", "None", "interactive", "me")})
    assert jobs_of_run(record, {"20": QueuedJob("RUNNING", "None", "my-sweep", "me")})


# --- a finished setting that asks its test pass ----------------------------------------------------------------

def test_evaluate_on_a_finished_setting_runs_its_test_pass_and_then_reads_done(tmp_path, synthetic_dir):
    from ptblm.launch.pipeline import mark_accepted
    from ptblm.launch.tasks import TrainTask

    jobs, results = tmp_path / "jobs", tmp_path / "results"
    trained = load_experiment(tiny_jobs(jobs, num_epochs=1), jobs)
    setting = trained.settings[0]
    train_run(setting.config, synthetic_dir, setting.run_dir(results), experiment="tiny", setting_index=0, echo=False,
              environ={})
    asked = load_experiment(tiny_jobs(jobs, num_epochs=1, evaluate=True), jobs)
    plan = plan_experiment(asked, results, False, {})
    assert (plan[0].action, plan[0].reason) == (Action.RESUME, "test pass only: done (1/1 epochs), evaluate asked, "
                                                               "no test ppl yet")
    mark_accepted(plan, results, "local")(TrainTask(asked.settings[0], str(synthetic_dir), str(results)), None,
                                          time.time())
    assert rf.RunFolder(setting.run_dir(results)).read().state == rf.PENDING
    TrainTask(asked.settings[0], str(synthetic_dir), str(results))()
    record = rf.RunFolder(setting.run_dir(results)).read()
    assert record.curves.test_ppl is not None and record.state == rf.DONE  # not pending forever
    assert plan_experiment(asked, results, False, {})[0].action is Action.SKIP


def test_a_failed_run_without_a_setting_number_is_named_by_its_folder_and_its_error_is_one_line(tmp_path):
    """A manual run has no setting number (its note once read `setting None`), and torch's C++ errors carry
    kilobytes of stack frames: status.json keeps the first line, the note names the folder."""
    folder = tmp_path / "results" / "manual" / "rnn_x"
    folder.mkdir(parents=True)
    write_config(folder, tiny_config(num_epochs=3).to_dict(), {"experiment": "manual"})
    first = "TypeError: empty(): argument 'size' failed to unpack the object at pos 1 (Overflow when unpacking long)"
    with rf.RunFolder(folder).hold() as writer:
        writer.mark_failed(first + "\nException raised from THPUtils_unpackLong\n" + "frame #0: c10::Error\n" * 40,
                           0, 3)
    assert rf.read_status(folder).error == first
    table = status_report(tmp_path / "results", tmp_path / "jobs", ["manual"])
    assert "setting None" not in table and f"\n  run rnn_x: failed: {first}" in table, table
    with rf.RunFolder(folder).hold() as writer:
        writer.mark_failed("x" * 1000)
    assert rf.read_status(folder).error == "x" * 297 + "..."


def test_the_notes_below_a_table_follow_its_rows_by_setting(tmp_path):
    """Were in folder-name order (setting 1, 2, 0, 3): a reader matches a note to its row by the setting."""
    jobs, results = tmp_path / "jobs", tmp_path / "results"
    overrides = parse_overrides(["seed=1,2"])
    experiment = load_experiment(tiny_jobs(jobs), jobs, overrides)
    for setting in experiment.settings:
        folder = submitted(results, setting, f"9_{setting.index}")
        write_status(folder, rf.RunStatus(rf.CANCELLED, 0, 3, updated_at=NOW, slurm_job_id=f"9_{setting.index}"))
    by_name = [s.index for s in sorted(experiment.settings, key=lambda s: s.run_name)]
    assert by_name != sorted(by_name)  # the folders' order is not the settings'
    report = status_report(results, jobs, ["tiny"], scheduler=lambda: {}, accounting=lambda ids: None,
                           overrides=overrides, now=NOW)
    notes = [line.strip() for line in report.splitlines() if line.startswith("  setting ")]
    assert [note.split(":")[0] for note in notes] == [f"setting {index}" for index in range(4)]


def test_a_link_in_place_of_a_folder_is_to_be_replaced_with_the_folder_and_one_of_a_file_with_the_file(tmp_path):
    """Said "replace it with the file itself" for a linked run folder or tb/ too, both folders."""
    from conftest import write_run

    results = tmp_path / "results"
    linked_run, linked_board, linked_log, dangling = (write_run(results, "3.1", [300.0], seed=seed)
                                                      for seed in (1, 2, 3, 4))
    moved = linked_run.rename(tmp_path / "moved-run")
    linked_run.symlink_to(moved)
    (tmp_path / "boards").mkdir()
    (linked_board / rf.TB_FOLDER).symlink_to(tmp_path / "boards")
    (tmp_path / "log.txt").write_text("a log\n")
    (linked_log / rf.LOG_FILE).symlink_to(tmp_path / "log.txt")
    (dangling / rf.LOG_FILE).symlink_to(tmp_path / "nowhere.txt")
    report = status_report(results, tmp_path / "jobs", ["3.1"], scheduler=lambda: None)
    said = "is a symbolic link (to {}): ptblm never follows links in a run folder; {};"
    assert said.format(moved, "replace it with the folder itself") in report, report
    assert said.format(tmp_path / "boards", "replace it with the folder itself") in report
    assert said.format(tmp_path / "log.txt", "replace it with the file itself") in report
    assert said.format(tmp_path / "nowhere.txt", "it points to nothing: remove it") in report
    assert report.count("damaged:") == 4


def test_an_experiment_named_twice_has_one_table(tmp_path, experiment):
    results = tmp_path / "results"
    submitted(results, experiment.settings[0], "6_0")
    report = status_report(results, tmp_path / "jobs", ["tiny", "tiny"], scheduler=lambda: None, now=NOW)
    assert report.count("summary tiny:") == 1 and report == status_report(results, tmp_path / "jobs", ["tiny"],
                                                                         scheduler=lambda: None, now=NOW)


@pytest.mark.parametrize("squeue_fails", [True, False])
def test_a_squeue_that_fails_is_one_warning_and_the_states_are_the_folders(tmp_path, monkeypatch, squeue_fails):
    """A squeue on PATH that exits 1 (a controller down) left `pending` unqualified, though the plan warned;
    without squeue at all (results copied to a laptop) the folders' word is all there is, as documented."""
    jobs = tmp_path / "jobs"
    setting = load_experiment(tiny_jobs(jobs), jobs).settings[0]
    submitted(tmp_path / "results", setting, "41_0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if squeue_fails:
        (bin_dir / "squeue").write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
        (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # no other squeue (the dev cluster's) is found
    report = status_report(tmp_path / "results", jobs, ["tiny"], accounting=lambda ids: {})
    lines = report.splitlines()
    warning = ("warning: squeue is installed but did not answer, so the states below are what the run folders last "
               "said: a pending or running run may have ended since (`squeue -u $USER` shows why)")
    assert (lines[0] == warning) is squeue_fails and report.count("warning") == int(squeue_fails), report
    row = next(line for line in lines if setting.run_name in line)
    assert row.split()[2] == rf.PENDING and "41_0" in row, report


# --- a number out of its range is damage, never a crash nor a wrong time --------------------------------------

def progress_field(key: str, value):
    return rf.STATUS_FILE, lambda obj: obj["progress"].update({key: value})


def epoch_field(key: str, value, index: int = 0):
    return rf.CURVES_FILE, lambda obj: obj["epochs"][index].update({key: value})


OUT_OF_RANGE = {  # name -> (file, change of its JSON, how the damage names the field and the value)
    "progress.seconds inf": (*progress_field("seconds", "inf"), "'progress.seconds' is 'inf'"),
    "progress.seconds nan": (*progress_field("seconds", "nan"), "'progress.seconds' is 'nan'"),
    "progress.seconds 1e308": (*progress_field("seconds", 1e308), "'progress.seconds' is 1e+308"),
    "progress.seconds negative": (*progress_field("seconds", -7200.0), "'progress.seconds' is -7200.0"),
    "progress.seconds 10**400": (*progress_field("seconds", 10**400), "'progress.seconds' is 1000000000000"),
    "progress.step 50 of 10": (*progress_field("step", 50), "'progress.step' is 50, out of range: expected an "
                                                            "integer from 0 to 10 (of its 10 steps)"),
    "progress.step -5": (*progress_field("step", -5), "'progress.step' is -5"),
    "progress.steps 0": (*progress_field("steps", 0), "'progress.steps' is 0"),
    "progress.epoch not the next": (*progress_field("epoch", 5), "'progress.epoch' is 5, out of range: expected 3"),
    "updated_at inf": (rf.STATUS_FILE, lambda obj: obj.update(updated_at="inf"), "'updated_at' is 'inf'"),
    "epochs_done past num_epochs": (rf.STATUS_FILE, lambda obj: obj.update(epochs_done=9), "'epochs_done' is 9"),
    "epoch_seconds inf": (*epoch_field("epoch_seconds", "inf"), "'epochs[0].epoch_seconds' is 'inf'"),
    "epoch_seconds nan": (*epoch_field("epoch_seconds", "nan"), "'epochs[0].epoch_seconds' is 'nan'"),
    "epoch_seconds 1e308": (*epoch_field("epoch_seconds", 1e308), "'epochs[0].epoch_seconds' is 1e+308"),
    "epoch_seconds negative": (*epoch_field("epoch_seconds", -1.0), "'epochs[0].epoch_seconds' is -1.0"),
    "wall_clock_seconds going back": (*epoch_field("wall_clock_seconds", 5.0, 1), "'epochs[1].wall_clock_seconds' "
                                                                                  "is 5.0, less than epoch 1's 10.0"),
    "lr nan": (*epoch_field("lr", "nan"), "'epochs[0].lr' is 'nan'"),
    "an epoch listed twice": (*epoch_field("epoch", 2), "'epochs[0].epoch' is 2, out of range: expected 1"),
}


@pytest.mark.parametrize("damage", OUT_OF_RANGE)
def test_a_number_out_of_its_range_is_damage_naming_the_field_and_every_other_run_shows(tmp_path, experiment, damage):
    """Seconds that are inf, nan, huge or negative, a step past its epoch's steps crashed status for every
    experiment (a clock time of inf) or showed -1:59:58 and 250%: the record refuses them where it reads them."""
    name, change, reason = OUT_OF_RANGE[damage]
    results = tmp_path / "results"
    damaged, other = (submitted(results, setting, f"5_{setting.index}") for setting in experiment.settings)
    write_running(damaged, [10.0, 14.0], rf.EpochProgress(3, 5, 10, 4.0), 3, updated_at=NOW - 1, job_id="5_0")
    write_running(other, [10.0], rf.EpochProgress(2, 9, 10, 9.0), 3, updated_at=NOW, job_id="5_1")
    path = damaged / name
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))
    before = path.read_bytes()
    scheduler = {"5_0": queued("tiny"), "5_1": queued("tiny")}
    report = status_report(results, tmp_path / "jobs", ["tiny"], scheduler=lambda: scheduler,
                           accounting=lambda ids: {}, now=NOW)
    rows = {row["run"]: row for row in status_rows(results, "tiny", experiment, scheduler=scheduler, now=NOW)}
    assert rows[damaged.name]["state"] == rf.DAMAGED and rows[damaged.name]["left"] == "-"
    assert f"setting 0: damaged: {path}: {reason}" in report, report
    assert (rows[other.name]["state"], rows[other.name]["epoch"], rows[other.name]["elapsed"],
            rows[other.name]["left"]) == ("running", "1/3 (epoch 2: 90%)", "0:00:19", "0:00:11")
    ends = time.strftime("%H:%M", time.localtime(NOW + 11))
    assert report.splitlines()[-1] == f"summary tiny: 1 running, 1 damaged; last running ends ~{ends} (in 0:00:11)"
    assert path.read_bytes() == before


def test_an_estimate_past_the_calendar_is_said_without_a_clock_time(tmp_path, experiment):
    """Every number in range, a century per epoch and a billion epochs: the end is no date, and status says so."""
    from ptblm.timeleft import clock

    assert clock(float("inf"), NOW) is None and clock(1e300, NOW) is None and clock(float("nan"), NOW) is None
    results = tmp_path / "results"
    folder = submitted(results, experiment.settings[0], "5_0")
    write_running(folder, [3e9], rf.EpochProgress(2, 5, 10, 4.0), 10**9, updated_at=NOW)
    report = status_report(results, tmp_path / "jobs", ["tiny"], scheduler=lambda: {"5_0": queued("tiny")},
                           accounting=lambda ids: {}, now=NOW)
    # 3e9 s - 4 s left in epoch 2, then 999999998 epochs of 3e9 s: 833333332500000 hours, no date
    assert report.splitlines()[-1] == ("summary tiny: 1 running, 1 not submitted; last running ends (in "
                                       "833333332500000:00:00)")
