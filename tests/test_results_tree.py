"""The experiments under a results folder: one definition (runfolder.experiments) that status, tensorboard,
export, evaluate and the report's selection all use, so report/, bench/ and demo/ are never experiments."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import write_run
from ptblm import runfolder as rf
from ptblm.config import ConfigError
from ptblm.evaluation import UnusableRun, run_folders_named
from ptblm.jobs import load_experiment
from ptblm.report.summary import load_summaries
from ptblm.results import load_runs
from ptblm.status import status_report
from ptblm.tensorboard_server import TensorBoardError, shown_experiments

EXPERIMENTS = ["3.1", "manual"]


@pytest.fixture
def results(tmp_path) -> Path:
    """A results tree as a season of use leaves it: two experiments with runs, and what else ptblm writes there."""
    results = tmp_path / "results"
    write_run(results, "3.1", valid=[300.0, 200.0])
    write_run(results, "manual", valid=[400.0], hidden_size=256)
    for folder, name, text in (("report/tables", "3.1.tex", "x"), ("report/data", "runs.csv", "a\n1\n"),
                               ("report/figures/3.1", "curves.pdf", "%PDF"), ("bench", "bench-1.json", "{}"),
                               (".compile-cache/x", "y", "z"), ("3.3/logs", "1_0_0_log.out", "queued"),
                               ("demo/data", "ptb.train.txt", "a b c\n")):
        (results / folder).mkdir(parents=True, exist_ok=True)
        (results / folder / name).write_text(text)
    write_run(results / "demo", "smoke", valid=[500.0])  # `ptblm demo`'s tree of its own
    write_run(results / "report" / "course", "3.1", valid=[300.0])  # a run folder copied in there
    (results / "3.4" / "some_run").mkdir(parents=True)  # a lock or nothing: no run yet
    (results / "3.4" / "some_run" / rf.LOCK_FILE).touch()
    return results


def test_the_experiments_are_the_folders_with_runs_and_nothing_ptblm_writes_beside_them(results):
    assert rf.experiments(results) == EXPERIMENTS
    assert rf.experiment_runs(results, "report") == [] and rf.experiment_runs(results, "3.4") == []
    assert sorted({run.experiment for run in rf.find_runs(results)}) == EXPERIMENTS


def test_every_command_lists_the_same_experiments(results, tmp_path):
    assert shown_experiments(results, []) == EXPERIMENTS  # tensorboard
    for name in ("report", "bench", "demo", "3.4"):
        with pytest.raises(TensorBoardError, match=f"experiments with results: {', '.join(EXPERIMENTS)}"):
            shown_experiments(results, [name])
    report = status_report(results, tmp_path / "jobs", scheduler=lambda: {}, accounting=lambda ids: {})
    assert re.findall(r"^summary (\S+):", report, re.M) == EXPERIMENTS
    assert sorted({run.experiment for run in load_runs(results)}) == EXPERIMENTS  # export
    assert {summary.experiment for summary in load_summaries(results, warn=pytest.fail)} == {"3.1"}  # the report
    assert [folder.parent.name for folder in run_folders_named(["3.1", "manual"], results)] == EXPERIMENTS  # evaluate
    for name in ("report", "demo"):
        with pytest.raises(UnusableRun, match=f"{name}: neither a run folder"):
            run_folders_named([name], results)


def test_a_jobs_file_cannot_take_the_name_of_a_folder_ptblm_keeps(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "report.yaml").write_text(json.dumps({"settings": [{"model": "RNN"}]}))
    with pytest.raises(ConfigError, match=r"report.yaml: experiment name 'report' \(the file's name\) is ptblm's own "
                                          r"folder results/report/"):
        load_experiment("report", jobs)

