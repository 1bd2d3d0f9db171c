"""Run folders stay true outside the happy path: a dead writer, --force beside a live one, the --evaluate test
pass, a full disk, links, Ctrl-C in a library call, one damaged run among healthy ones, and folders as the
format before issue 20 wrote them. (The exhaustive suites are test_damage.py and test_kill.py.)"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import tiny_config
from runtree import cli, snapshot, write_status
from ptblm import runfolder as rf
from ptblm.jobs import load_experiment
from ptblm.launch.plan import Action, plan_experiment
from ptblm.train import train_run

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ptblm.runfolder import hold_run_folder
    with hold_run_folder(Path(sys.argv[1])):
        print("holding", flush=True)
        time.sleep(300)
""")


@pytest.fixture
def holder():
    """Another process holding a folder's lock, as a `ptblm train` writing it would."""
    processes = []

    def hold(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "holding"
        processes.append(process)
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def rows(copy, experiment="3.1") -> dict[str, dict]:
    from ptblm.status import status_rows

    return {row["run"]: row for row in status_rows(copy.results, experiment)}


def shown_by_the_results_readers(copy, run: str, experiment="3.1") -> tuple[str, str]:
    """The state runs.csv (export) gives the run, and its epochs as the tables and figures label them."""
    from ptblm.report.summary import summarize
    from ptblm.results import runs_frame

    frame = runs_frame(copy.results, [experiment]).set_index("run")
    (summary,) = [s for s in summarize(rf.find_runs(copy.results, experiment)) if s.run.name == run]
    return frame.loc[run, "state"], summary.epochs_label()


# --- a writer that died ----------------------------------------------------------------------------------

def test_a_run_that_says_running_but_whose_lock_is_free_is_stopped_and_resumed(copy, holder):
    """A killed `ptblm train` (or a closed terminal) leaves `running`: its lock tells that nobody writes it."""
    status = rf.read_status(copy.target)
    write_status(copy.target, rf.RunStatus(rf.RUNNING, status.epochs_done, status.num_epochs,
                                              updated_at=status.updated_at, host=status.host))
    assert rows(copy)[copy.target.name]["state"] == "stopped"
    assert shown_by_the_results_readers(copy, copy.target.name) == ("stopped", "1/2 stopped")  # as status says
    code, output = cli("status", "3.1", "--results", copy.results, "--jobs", copy.jobs)
    assert code == 0 and "setting 0: stopped after epoch 1/2: it says running, but no process holds its .lock" in output
    assert plan_experiment(load_experiment("3.1", copy.jobs), copy.results, False, {})[0].reason == (
        "from last.pt after epoch 1 (stopped: nobody writes it)")

    process = holder(copy.target)  # now someone does: it is running, and the plan leaves it alone
    assert rows(copy)[copy.target.name]["state"] == rf.RUNNING
    assert shown_by_the_results_readers(copy, copy.target.name) == ("running", "1/2 running")
    task = plan_experiment(load_experiment("3.1", copy.jobs), copy.results, True, {})[0]
    assert task.action is Action.SKIP and re.fullmatch(
        rf"being written now \(host \S+, pid {process.pid}, since .*\); --force never empties a folder another "
        rf"process writes: stop it first", task.reason)


def test_a_forced_submission_never_empties_a_folder_another_process_writes(copy, holder, monkeypatch):
    from ptblm.clusters import ClusterProfile
    from ptblm.launch import pipeline

    experiment = load_experiment("3.2", copy.jobs)
    busy, free = (s.run_dir(copy.results) for s in experiment.settings)
    process = holder(busy)
    before = snapshot(busy)
    calls = []

    def sbatch(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "Submitted batch job 41\n" if argv[0] == "sbatch" else "", "")

    submit = dict(results_dir=copy.results, data_dir=copy.data, script="slurm/array.sbatch", force=True,
                  runner=sbatch, echo=lambda line: None)
    outcome = pipeline.submit_sbatch(experiment, ClusterProfile(name="t"), **submit)
    assert [task.action for task in outcome.plan] == [Action.SKIP, Action.SUBMIT]
    (queued,) = [argv for argv in calls if argv[0] == "sbatch"]
    assert f"pid {process.pid}" in outcome.plan[0].reason and any(word.startswith("--array=1%") for word in queued)
    assert snapshot(busy) == before  # config.json, best.pt, ... all there
    assert sorted(p.name for p in free.iterdir()) == [rf.LOCK_FILE, rf.SUBMISSION_FILE]

    # taken between the plan and the submission: the whole submission is refused, nothing queued or emptied
    planned, late = pipeline.plan_experiment, []

    def plan_then_taken(*args):
        plan = planned(*args)
        late.append(holder(free))  # another writer starts right after the plan
        return plan

    monkeypatch.setattr(pipeline, "plan_experiment", plan_then_taken)
    before, calls[:] = snapshot(free), []
    with pytest.raises(rf.RunFolderBusy, match=rf"^{free} is being written by another ptblm run \(host \S+, pid "
                                               rf"{late[0].pid if late else '[0-9]+'}, .*; nothing was submitted$"):
        pipeline.submit_sbatch(experiment, ClusterProfile(name="t"), **submit)
    assert not [argv for argv in calls if argv[0] == "sbatch"] and snapshot(free) == before


# --- promises, full disks, links, Ctrl-C ---------------------------------------------------------------------

def test_an_evaluated_run_is_done_only_once_its_test_perplexity_is_written(synthetic_dir, tmp_path):
    """The process dies in the test pass (SystemExit: nothing recorded on the way out, as after a SIGKILL)."""
    config, out = tiny_config(num_epochs=2, evaluate=True, max_batches=3), tmp_path / "run"

    def killed_in_the_test_pass() -> bool:
        if len(rf.read_curves(out).epochs) == 2:
            raise SystemExit(137)
        return False

    with pytest.raises(SystemExit):
        train_run(config, synthetic_dir, out, echo=False, should_stop=killed_in_the_test_pass, environ={})
    status = rf.read_status(out)
    assert (status.state, status.epochs_done, rf.read_curves(out).test_ppl) == (rf.RUNNING, 2, None)
    status = train_run(config, synthetic_dir, out, echo=False, environ={})  # the rerun finishes the test pass
    assert status.state == rf.DONE and rf.read_curves(out).test_ppl is not None
    assert len(rf.read_curves(out).epochs) == 2 and "test ppl" in (out / rf.LOG_FILE).read_text()


@pytest.mark.parametrize("failing", ["one write", "every write from then on"])
def test_a_full_disk_ends_the_run_with_one_line_and_never_running(copy, monkeypatch, failing):
    replace, count = os.replace, []

    def full(tmp, path):  # the disk fills up at last.pt of epoch 2 (for one write, or for good)
        count.extend([path] if count or os.path.basename(path) == rf.LAST_CHECKPOINT else [])
        if len(count) == 1 or (failing != "one write" and count):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(tmp, path)

    monkeypatch.setattr(os, "replace", full)
    code, output = cli(*copy.train_argv())
    assert code == 1 and output.splitlines()[-1] == (
        f"ptblm train: error: {copy.target / rf.LAST_CHECKPOINT}: cannot write it (No space left on device); the "
        f"disk or quota is full: free some space, then rerun (a run resumes from its last.pt, if it has one)")
    assert "Traceback" not in output and not list(copy.target.glob(".*.tmp"))
    monkeypatch.setattr(os, "replace", replace)
    if failing == "one write":
        status = rf.read_status(copy.target)
        assert status.state == rf.FAILED and "No space left on device" in status.error
    else:  # status.json could not be written either: it still says running, and its free lock says stopped
        assert rf.read_status(copy.target).state == rf.RUNNING
        assert rows(copy)[copy.target.name]["state"] == "stopped"
    assert cli(*copy.train_argv())[0] == 0 and rf.read_status(copy.target).state == rf.DONE


@pytest.mark.parametrize("name", [rf.LOCK_FILE, rf.LOG_FILE])
def test_a_lock_or_log_that_is_a_link_is_never_followed(copy, name):
    precious = copy.root / "precious.txt"
    precious.write_text("my thesis\n")
    (copy.target / name).unlink()
    (copy.target / name).symlink_to(precious)
    code, output = cli(*copy.train_argv())
    remedy = ("delete it: the next run makes the lock anew (--force needs the lock too)" if name == rf.LOCK_FILE
              else f"`make submit EXP=3.1 EXECUTOR=local ONLY=0 FORCE=1 RESULTS={copy.results}` (or `ptblm submit "
                   f"3.1 --executor local --only 0 --force --results {copy.results}`) reruns only this run from "
                   f"scratch (or move the folder away)")  # the tree's runs were submitted --executor local
    assert code == 1 and output.strip() == (
        f"ptblm train: error: {copy.target / name}: is a symbolic link (to {precious}): ptblm never follows links "
        f"in a run folder; replace it with the file itself; {remedy}")
    assert precious.read_text() == "my thesis\n"
    if name == rf.LOCK_FILE:  # nor by anything else that would write through them
        with pytest.raises(rf.Damaged, match="is a symbolic link"), rf.RunFolder(copy.target).hold():
            pass
    else:  # a damaged run's lock is not even taken; --force's writer (which empties it) never writes through it
        with pytest.raises(rf.Damaged, match="is a symbolic link"), rf.RunFolder(copy.target).hold():
            pass
        with rf.RunFolder(copy.target).hold(force=True) as writer, pytest.raises(rf.FileWriteError,
                                                                                 match="is a symbolic link"):
            writer.log("a line")
    assert precious.read_text() == "my thesis\n"


def test_ctrl_c_in_a_library_call_ends_the_run_cancelled_not_failed(synthetic_dir, tmp_path):
    """Without the command line's handlers, Ctrl-C is a KeyboardInterrupt: the run says cancelled, resumable."""
    out, asked = tmp_path / "run", []

    def interrupted() -> bool:
        asked.append(1)
        if len(rf.read_curves(out).epochs) == 1:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_config(num_epochs=2, max_batches=3), synthetic_dir, out, echo=False, should_stop=interrupted,
                  environ={})
    status = rf.read_status(out)
    assert (status.state, status.epochs_done, status.error) == (rf.CANCELLED, 1, None)


# --- one damaged run among healthy ones ----------------------------------------------------------------------

def test_one_damaged_run_is_named_and_every_other_run_shown(copy):
    curves = copy.target / rf.CURVES_FILE
    curves.write_bytes(curves.read_bytes()[:40])
    for argv in (["status", "--jobs", copy.jobs], ["tables"], ["export"]):
        code, output = cli(*argv, "--results", copy.results)
        assert code == 0 and f"{curves}: not valid JSON, truncated or overwritten" in output, output
        assert "Traceback" not in output
    code, output = cli("status", "--jobs", copy.jobs, "--results", copy.results)
    assert all(f"{folder.name}  done" in output for folder in copy.others())
    assert re.search(rf"{copy.target.name} +damaged ", output)


# --- folders as the format before issue 20 wrote them ----------------------------------------------------------

def as_format_1(folder):
    """Rewrite a run folder as ptblm wrote it before format_version 2: no version in config.json, status.json
    and submitted.json, curves.json of version 1, checkpoints without version nor `ended`."""
    for name in (rf.CONFIG_FILE, rf.STATUS_FILE, rf.SUBMISSION_FILE, rf.CURVES_FILE):
        obj = json.loads((folder / name).read_text())
        del obj["format_version"]
        if name == rf.CURVES_FILE:
            obj = {"format_version": 1, **obj}
        (folder / name).write_text(json.dumps(obj, indent=2) + "\n")
    for name in (rf.BEST_CHECKPOINT, rf.LAST_CHECKPOINT):
        checkpoint = torch.load(folder / name, weights_only=True)
        checkpoint.pop("format_version")
        checkpoint.pop("ended", None)
        torch.save(checkpoint, folder / name)


def test_a_folder_of_format_1_is_read_resumed_and_migrated(copy):
    as_format_1(copy.target)
    record = rf.RunFolder(copy.target).read()
    assert not record.damaged and record.state == rf.CANCELLED and len(record.curves.epochs) == 1
    assert rows(copy)[copy.target.name]["epoch"] == "1/2"
    code, output = cli("tables", "3.1", "--results", copy.results)
    assert code == 0 and "1/2 cancelled" in output
    assert plan_experiment(load_experiment("3.1", copy.jobs), copy.results, False, {})[0].action is Action.RESUME
    assert cli(*copy.train_argv())[0] == 0
    assert rf.read_status(copy.target).state == rf.DONE and len(rf.read_curves(copy.target).epochs) == 2
    for name in (rf.CONFIG_FILE, rf.STATUS_FILE, rf.CURVES_FILE):  # written back in the current format
        assert json.loads((copy.target / name).read_text())["format_version"] == rf.FORMAT_VERSION
