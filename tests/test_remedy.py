"""The one remedy for one damaged run, said alike by every reader, reruns exactly that run; evaluate goes on past a
damaged run and says in its exit status that it did not do all it was asked; tables names runs it leaves out."""
from __future__ import annotations

import sys
from pathlib import Path

from runtree import cli, write_status

from ptblm import runfolder as rf
from ptblm.evaluation import evaluate_targets

FORCED = "--force reruns from scratch, emptying their run folders (finished epochs too): "


def damage_status(folder: Path) -> Path:
    path = folder / rf.STATUS_FILE
    path.write_text("[]\n")
    return path


def test_a_submitted_run_is_rerun_alone_by_its_own_submission_with_only_and_force(tmp_path):
    folder = tmp_path / "results" / "3.1" / "run"
    folder.mkdir(parents=True)
    rf.atomic_write_json(folder / rf.SUBMISSION_FILE, rf.Submission(
        "5_2", "slurm", 1.0, 2, None, ["num_epochs=4"], "ptblm-3.1", "mila").to_json())
    damage_status(folder)
    damage = rf.RunFolder(folder).read().damage
    results = tmp_path / "results"
    assert damage.hint() == (
        f"`make submit EXP=3.1 SET=num_epochs=4 ONLY=2 FORCE=1 CLUSTER=mila RESULTS={results}` (or `ptblm submit "
        f"3.1 --set num_epochs=4 --only 2 --force --cluster mila --results {results}`) reruns only this run from "
        f"scratch (or move the folder away)")


def test_status_and_the_plan_say_the_remedy_and_it_reruns_that_setting_alone(copy):
    damage_status(copy.target)
    other = copy.folder("3.1", 1)
    finished = (other / rf.CURVES_FILE).read_bytes()
    where = ["--jobs", copy.jobs, "--results", copy.results]
    remedy = (f" submit 3.1 --executor local --only 0 --force --results {copy.results} --jobs {copy.jobs}` reruns "
              f"only this run from scratch")
    code, output = cli("status", "3.1", *where)
    assert f"setting 0: damaged: {copy.target / rf.STATUS_FILE}: " in output and remedy in output, output
    where = [*where, "--data", copy.data]
    code, output = cli("submit", "3.1", "--dry-run", "--executor", "local", *where)
    assert code == 0 and FORCED not in output and "reruns only this run from scratch" in output, output
    code, output = cli("submit", "3.1", "--only", "0", "--force", "--dry-run", "--executor", "local", *where)
    assert code == 0 and f"{FORCED}setting 0 ({copy.target.name})\n" in output, output
    code, output = cli("submit", "3.1", "--force", "--dry-run", "--executor", "local", *where)
    assert f"{FORCED}settings 0 ({copy.target.name}), 1 ({other.name})\n" in output, output
    code, output = cli("submit", "3.1", "--only", "0", "--force", "--executor", "local", *where)
    assert code == 0, output
    assert rf.read_status(copy.target).state == rf.DONE and (other / rf.CURVES_FILE).read_bytes() == finished


def test_a_manual_run_is_told_its_own_train_command_and_that_command_repairs_it(copy, monkeypatch):
    manual = copy.results / "manual" / "mine"
    argv = [arg if arg != str(copy.target) else str(manual) for arg in copy.train_argv()]
    monkeypatch.setattr(sys, "argv", ["ptblm", *argv])  # what config.json records as the command line
    assert cli(*argv)[0] == 0
    damage_status(manual)
    code, output = cli("status", "manual", "--jobs", copy.jobs, "--results", copy.results)
    shown = [line.strip() for line in output.splitlines() if line.strip().startswith("run mine: damaged")]
    assert len(shown) == 1 and "no experiment" not in output and "submit" not in shown[0], output
    command = shown[0].split("`")[1]
    assert command.startswith("ptblm train ") and command.endswith(f" --out {manual} --force"), command
    code, output = cli(*command.split()[1:])
    assert code == 0, output
    assert rf.read_status(manual).state == rf.DONE


def test_evaluate_goes_on_past_a_damaged_run_and_exits_1_naming_it(copy):
    damage_status(copy.folder("3.1", 1))
    code, output = cli("evaluate", "3.1", "3.2", "--device", "cpu", "--data", copy.data, "--results", copy.results)
    lines = output.splitlines()
    assert code == 1, output
    damaged = [line for line in lines if str(copy.folder("3.1", 1) / rf.STATUS_FILE) in line]
    assert len(damaged) == 1 and damaged[0].startswith("skip: ") and "reruns only this run" in damaged[0], output
    for done in (copy.folder("3.2", 0), copy.folder("3.2", 1)):
        assert rf.read_curves(done).test_ppl is not None
        assert f"{done}: test ppl " in output
    assert lines[-1] == "2 of the runs asked for not evaluated (see the skip lines above); 2 evaluated", output
    code, output = cli("evaluate", "3.2", "--device", "cpu", "--data", copy.data, "--results", copy.results)
    assert code == 0 and output.count("already") == 2, output  # evaluated before: not a failure


def test_evaluate_writes_through_the_writer_of_the_lock(copy):
    """No write of a run folder bypasses the lock: the module-level writers are gone, evaluate holds the lock."""
    assert not any(hasattr(rf, name) for name in ("write_config", "write_curves", "write_status"))
    done = copy.folder("3.2", 0)
    with rf.RunFolder(done).hold():
        outcome = evaluate_targets([str(done)], copy.results, copy.data, "cpu", notify=lambda line: None)
    assert outcome.evaluated == [] and "being written by another ptblm run" in outcome.failed[0]
    assert rf.read_curves(done).test_ppl is None


def test_generate_on_a_damaged_run_names_the_command_that_reruns_it(copy):
    (copy.target / rf.BEST_CHECKPOINT).write_bytes(b"")
    code, output = cli("generate", copy.target, "--prompt", "the", "--data", copy.data)
    assert code == 1 and "rerun with --force" not in output, output
    assert (f"(or `ptblm submit 3.1 --executor local --only 0 --force --results {copy.results}`) reruns only this "
            f"run") in output, output  # the tree's runs were submitted --executor local


def test_tables_with_only_manual_runs_says_so_and_how_to_include_them(copy, tmp_path):
    results = tmp_path / "only-manual"
    (results / "manual").mkdir(parents=True)
    for run in copy.others()[:1]:
        (results / "manual" / run.name).mkdir()
        for name in (rf.CONFIG_FILE, rf.CURVES_FILE, rf.STATUS_FILE):
            (results / "manual" / run.name / name).write_bytes((run / name).read_bytes())
    code, output = cli("tables", "--results", results)
    assert code == 1 and "train something first" not in output, output
    assert f"only runs of `ptblm train` under {results} (1 in {results / 'manual'})" in output
    assert "`ptblm tables manual`" in output
    code, output = cli("tables", "manual", "--results", results, "--out", tmp_path / "report")
    assert code == 0, output



def test_a_run_submitted_from_another_jobs_folder_is_told_that_folder_by_every_reader(copy, tmp_path):
    """The remedy and the resume command name the jobs folder the run was submitted from, even to a reader
    given no --jobs (they named none: the default jobs/ holds another experiment of that name, or none)."""
    where = ["--jobs", copy.jobs, "--results", copy.results, "--data", copy.data]
    code, output = cli("submit", "3.2", "--only", "0,1", "--force", "--executor", "local", *where)
    assert code == 0, output
    assert rf.RunFolder(copy.folder("3.2", 0)).read_submission().jobs_dir == str(copy.jobs.resolve())
    damage_status(copy.folder("3.2", 0))
    last = rf.read_status(copy.folder("3.2", 1))
    write_status(copy.folder("3.2", 1), rf.RunStatus(rf.CANCELLED, 1, last.num_epochs, updated_at=last.updated_at))
    named = f"--results {copy.results} --jobs {copy.jobs}`"
    rerun = f"submit 3.2 --executor local --only 0 --force {named} reruns only this run from scratch"
    code, output = cli("tables", "3.2", "--results", copy.results, "--out", tmp_path / "report")
    assert code == 0 and rerun in output, output
    code, output = cli("status", "3.2", "--results", copy.results)
    assert code == 0 and rerun in output, output
    assert f"submit 3.2 --executor local --only 1 {named} resumes it" in output, output
    code, output = cli("status", "3.2", "--results", copy.results, "--jobs", copy.jobs)  # as named now
    assert f"submit 3.2 --executor local --only 1 {named} resumes it" in output, output


def test_the_status_command_suggested_names_the_folders_that_are_not_the_default():
    from ptblm.invocation import Locations, status_command

    assert status_command("3.1", Locations()) == "`make status EXP=3.1` (or `ptblm status 3.1`)"
    assert status_command("3.1", Locations(".venv/bin/ptblm", Path("/r s"))) == (
        "`make status EXP=3.1 RESULTS='/r s'` (or `.venv/bin/ptblm status 3.1 --results '/r s'`)")
    assert status_command("3.1", Locations("ptblm", None, Path("my jobs"))) == "`ptblm status 3.1 --jobs 'my jobs'`"
    assert status_command("3.1", Locations(results_dir=Path("r")), ("num_epochs=1", "initial_lr=1,2")) == (
        "`make status EXP=3.1 SET='num_epochs=1 initial_lr=1,2' RESULTS=r` (or `ptblm status 3.1 --set num_epochs=1 "
        "--set initial_lr=1,2 --results r`)")
    assert status_command("3.1", Locations(jobs_dir=Path("j")), ("seeds=1 2",)) == (
        "`ptblm status 3.1 --set 'seeds=1 2' --jobs j`")
