"""The damage suite: every file of a run folder, every way it can be damaged, every reader of results.

For each file of the target run (runtree.py) and each damage (missing, empty, truncated at an offset,
the wrong JSON type, a field of the wrong type, a number out of its range, a newer format_version, a symbolic
link), hypothesis draws
the offset or value, and every reader must show every other run, name the damaged file, print no
traceback, exit 0 when it did its job on the rest, and leave the damaged run exactly as it was.

Some absences are no damage: a run killed before its first epoch's curves.json, a run never submitted,
a run without best.pt, log.txt or a lock yet; a torn log or lock record harms nobody. A missing last.pt harms
only resuming (results rsync-ed without their checkpoints are read as usual): `ptblm train` and the plan
name it. Those runs are shown as usual. What only loading a checkpoint tells (a foreign dict, a newer
format_version inside best.pt or last.pt) is named by the readers that load it: samples, gradients and
`export --format course` (best.pt), resuming `ptblm train` (last.pt).

`test_the_reader_layer_...` runs the readers' common layer (RunFolder.read, status rows, the plan) on many
drawn examples; the slow `test_every_reader_...` runs every command in-process on one drawn example per file
and damage (rendering to files is test_report.py's concern: save_figure only records here, to stay fast).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runtree import REPO, cli, snapshot
from ptblm import runfolder as rf
from ptblm.config import RunConfig

FILE_KINDS = {rf.CONFIG_FILE: "json", rf.CURVES_FILE: "json", rf.STATUS_FILE: "json", rf.SUBMISSION_FILE: "json",
              rf.BEST_CHECKPOINT: "checkpoint", rf.LAST_CHECKPOINT: "checkpoint", rf.BEST_PARAMS: "raw",
              rf.LOG_FILE: "text", rf.LOCK_FILE: "text"}
DAMAGES = ("missing", "empty", "truncated", "wrong type", "wrong field type", "out of range", "newer format_version",
           "symlink")
STRUCTURED = ("wrong type", "wrong field type", "out of range", "newer format_version")  # what raw or text files lack
COMBINATIONS = [(name, damage) for name, kind in FILE_KINDS.items() for damage in DAMAGES
                if kind in ("json", "checkpoint") or damage not in STRUCTURED]
HARMLESS = {(rf.CURVES_FILE, "missing"), (rf.SUBMISSION_FILE, "missing"), (rf.BEST_CHECKPOINT, "missing"),
            (rf.BEST_PARAMS, "missing"), (rf.LOG_FILE, "missing"), (rf.LOCK_FILE, "missing"),
            (rf.LOG_FILE, "empty"), (rf.LOG_FILE, "truncated"), (rf.LOCK_FILE, "empty"), (rf.LOCK_FILE, "truncated")}
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)  # a failing example is reported as drawn
READERS = ("status", "tables", "figures", "export", "course", "report", "dry-run", "samples", "gradients", "train")


def naming_readers(name: str, damage: str) -> set[str]:
    """The readers that must name the damaged file (the others show the run as usual)."""
    if (name, damage) in HARMLESS:
        return set()
    if damage in STRUCTURED and name == rf.BEST_CHECKPOINT:
        return {"samples", "gradients", "course"}
    if damage in STRUCTURED and name == rf.LAST_CHECKPOINT:
        return {"train"}
    if (name, damage) == (rf.LAST_CHECKPOINT, "missing"):  # results rsync-ed without checkpoints read as usual
        return {"train", "dry-run"}
    return set(READERS)


# --- the damages -----------------------------------------------------------------------------------------

SCALAR_WRONG = st.sampled_from([[1], {"a": 1}])  # wrong for every number, string or null field


def json_fields(name: str, obj: dict) -> list[tuple[tuple, st.SearchStrategy]]:
    """(path to a field the schema checks, values of the wrong type for it)."""
    if name == rf.CONFIG_FILE:
        return ([(("config", key), SCALAR_WRONG) for key in obj["config"]]
                + [((key,), SCALAR_WRONG) for key in rf.records.PROVENANCE_KINDS if key in obj]
                + [(("attempts",), st.sampled_from([[1, 2], {"a": 1}])), (("attempts", 0, "host"), SCALAR_WRONG)])
    if name == rf.CURVES_FILE:
        return ([(("epochs",), st.sampled_from(["x", {"a": 1}])), (("test_ppl",), SCALAR_WRONG),
                 (("peak_memory_bytes",), SCALAR_WRONG)]
                + [(("epochs", 0, key), SCALAR_WRONG) for key in obj["epochs"][0]])
    if name == rf.SUBMISSION_FILE:
        return [(("config",), st.sampled_from(["x", [1]])), (("overrides",), st.sampled_from(["x", [1]]))] + [
            ((key,), SCALAR_WRONG) for key in ("job_id", "executor", "submitted_at", "setting_index")]
    return [((key,), SCALAR_WRONG) for key in obj if key != "format_version"]  # status.json


SECONDS_WRONG = st.sampled_from(["inf", "nan", "-inf", 1e308, -1.0, 10**400])  # a time or duration no run has
COUNT_WRONG = st.sampled_from([-1, -(10**30)])


def json_ranges(name: str) -> list[tuple[tuple, st.SearchStrategy]]:
    """(path to a number the schema checks, values of its type out of its range) in the target's files."""
    return {rf.CONFIG_FILE: [(("vocab_size",), st.sampled_from([0, -3])), (("parameters",), st.just(0)),
                             (("setting_index",), COUNT_WRONG)],
            rf.CURVES_FILE: [(("epochs", 0, "epoch"), st.sampled_from([0, 2, -1])),
                             (("epochs", 0, "epoch_seconds"), SECONDS_WRONG),
                             (("epochs", 0, "wall_clock_seconds"), SECONDS_WRONG),
                             (("epochs", 0, "lr"), st.sampled_from(["inf", "nan", -0.5])),
                             (("epochs", 0, "train_ppl"), st.sampled_from([0, -1.0, "-inf"])),
                             (("peak_memory_bytes",), COUNT_WRONG)],
            rf.STATUS_FILE: [(("epochs_done",), st.sampled_from([-1, 3, 10**6])), (("num_epochs",), COUNT_WRONG),
                             (("updated_at",), SECONDS_WRONG)],
            rf.SUBMISSION_FILE: [(("submitted_at",), SECONDS_WRONG), (("setting_index",), COUNT_WRONG)]}[name]


CHECKPOINT_RANGES = {rf.BEST_CHECKPOINT: {"epoch": [0, -1], "valid_ppl": [math.inf, math.nan, 0.0], "vocab_size": [0]},
                     rf.LAST_CHECKPOINT: {"epoch": [-1], "lr": [math.inf, math.nan, -1.0],
                                          "wall_clock_seconds": [math.inf, math.nan, -1.0, 1e308]}}
CHECKPOINT_KEYS = {rf.BEST_CHECKPOINT: ["model", "config", "epoch", "valid_ppl", "vocab_size"],
                   rf.LAST_CHECKPOINT: ["model", "optimizer", "config", "epoch", "lr", "wall_clock_seconds", "rng",
                                        "curves", "ended", "grad_scaler"]}
DICT_ENTRIES = ("model", "optimizer", "config", "rng", "curves", "grad_scaler")


def set_path(obj, path: tuple, value) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def damage(path: Path, how: str, draw) -> None:
    """Damage `path` (a file of a run folder) as `how` says, drawing offsets and values with `draw`."""
    kind, data = FILE_KINDS[path.name], path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":  # JSON: before its closing brace (a cut newline leaves valid JSON)
        path.write_bytes(data[:draw(st.integers(1, len(data) - (2 if kind == "json" else 1)))])
    elif how == "symlink":  # to an intact copy: even that is never followed
        elsewhere = path.parent.parent / f"elsewhere-{path.parent.name}-{path.name}"
        elsewhere.write_bytes(data)
        path.unlink()
        path.symlink_to(elsewhere)
    elif kind == "json":
        obj = json.loads(data)
        if how == "wrong type":
            obj = draw(st.sampled_from([[], [obj], "text", 3, 2.5, None, True]))
        elif how == "wrong field type":
            field, values = draw(st.sampled_from(json_fields(path.name, obj)))
            set_path(obj, field, draw(values))
        elif how == "out of range":
            field, values = draw(st.sampled_from(json_ranges(path.name)))
            set_path(obj, field, draw(values))
        else:
            obj["format_version"] = draw(st.integers(rf.FORMAT_VERSION + 1, 10 ** 6))
        path.write_text(json.dumps(obj))
    else:
        checkpoint = torch.load(path, weights_only=True)
        if how == "wrong type":
            checkpoint = draw(st.sampled_from([[1, 2], "text", 3, [checkpoint]]))
        elif how == "wrong field type":
            key = draw(st.sampled_from(CHECKPOINT_KEYS[path.name]))
            checkpoint[key] = "x" if key in DICT_ENTRIES else draw(SCALAR_WRONG)
        elif how == "out of range":
            key = draw(st.sampled_from(sorted(CHECKPOINT_RANGES[path.name])))
            checkpoint[key] = draw(st.sampled_from(CHECKPOINT_RANGES[path.name][key]))
        else:
            checkpoint["format_version"] = draw(st.integers(rf.FORMAT_VERSION + 1, 10 ** 6))
        torch.save(checkpoint, path)


# --- the reader layer, many examples ----------------------------------------------------------------------

@pytest.mark.parametrize("name, how", COMBINATIONS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_reader_layer_marks_the_damaged_run_and_reads_every_other(tree, name, how, data):
    from ptblm.launch.plan import Action, plan_experiment
    from ptblm.jobs import load_experiment
    from ptblm.status import status_rows

    with tempfile.TemporaryDirectory() as scratch:
        copy = tree.copy(Path(scratch) / "tree")
        path = copy.target / name
        damage(path, how, data.draw)
        before = snapshot(copy.target)
        named = "status" in naming_readers(name, how)

        runs = {run.folder: run for run in rf.find_runs(copy.results)}
        assert all(not runs[folder].damaged and runs[folder].config for folder in copy.others())
        target = runs.get(copy.target)
        if named:
            assert target is not None and target.damage.file == path and target.damage.reason
            assert target.state == rf.DAMAGED
        else:
            assert target is not None and not target.damaged
        rows = {row["run"]: row for row in status_rows(copy.results, "3.1") + status_rows(copy.results, "3.2")}
        assert len(rows) == 4 and all(rows[folder.name]["state"] == rf.DONE for folder in copy.others())
        assert (rows[copy.target.name]["state"] == rf.DAMAGED) == named
        plan = plan_experiment(load_experiment("3.1", copy.jobs), copy.results, False, {})
        if "dry-run" in naming_readers(name, how):
            assert plan[0].action is Action.SKIP and plan[0].reason.startswith(f"damaged: {path}: ")
        else:
            assert plan[0].action is Action.RESUME
        assert plan[1].action is Action.SKIP  # the other RNN: done
        assert snapshot(copy.target) == before


# --- every command, one example per file and damage -------------------------------------------------------

@pytest.fixture
def rendered(monkeypatch):
    """save_figure records each figure's run labels instead of rendering it."""
    from ptblm.report import figures as figures_module
    from ptblm.report import gradients

    figures: dict[str, set[str]] = {}

    def save_figure(figure, stem: Path) -> list[Path]:
        figures[stem.name] = {line.get_label() for axis in figure.axes for line in axis.get_lines()
                              if not line.get_label().startswith("_")}
        return [stem.with_suffix(".pdf"), stem.with_suffix(".png")]

    for module in (figures_module, gradients):
        monkeypatch.setattr(module, "save_figure", save_figure)
    return figures


def table_rows(text: str) -> int:
    """Data rows of the first Markdown table in `text` (they start with their row number)."""
    return len(re.findall(r"^\| +\d+ +\|", text.split("\n\n")[0] if text.startswith("|") else text, re.M))


def reader_argv(copy, reader: str) -> list[str]:
    results = ["--results", str(copy.results)]
    return {"status": ["status", "--jobs", copy.jobs, *results],
            "tables": ["tables", *results], "figures": ["figures", *results], "export": ["export", *results],
            "course": ["export", "--format", "course", *results], "report": ["report", "--no-pdf", *results],
            "dry-run": ["submit", "3.1", "3.2", "--dry-run", "--executor", "local", "--jobs", copy.jobs,
                        "--clusters", REPO / "slurm" / "clusters", "--data", copy.data, *results],
            "samples": ["samples", "--data", copy.data, *results],
            "gradients": ["gradients", "--data", copy.data, *results],
            "train": copy.train_argv()}[reader]


def check_shows_every_other_run(copy, reader: str, output: str, shown: bool, rendered: dict) -> None:
    """The runs but the target are shown as usual by `reader`; the target too when `shown`."""
    runs = 3 + shown
    report = copy.results / "report"
    if reader in ("status", "dry-run"):
        assert all(folder.name in output for folder in copy.others())
    elif reader == "tables":
        assert table_rows(output) == runs
    elif reader in ("figures", "report"):
        assert sum(len(labels) for stem, labels in rendered.items() if stem.startswith("exp-")) == runs
        if reader == "report":
            assert table_rows((report / "tables" / "summary.md").read_text()) == runs
    elif reader == "export":
        import pandas as pd
        frame = pd.read_csv(report / "data" / "runs.csv")
        assert len(frame) == 4 and set(frame.loc[frame["folder"] != str(copy.target), "state"]) == {rf.DONE}
        assert (frame.loc[frame["folder"] == str(copy.target), "state"].item() == rf.DAMAGED) == (not shown)
    elif reader == "course":
        exported = {path.parent.name for path in (report / "course").glob("*/*/exp_config.txt")}
        assert exported == {folder.name for folder in copy.others()} | ({copy.target.name} if shown else set())
    elif reader in ("samples", "gradients"):
        loadable = shown and (copy.target / rf.BEST_CHECKPOINT).exists()  # without best.pt: a stand-in, with a note
        rnn = copy.target if loadable else copy.folder("3.1", 1)
        assert f"loaded RNN {rnn} " in output and f"loaded GRU {copy.folder('3.2', 0)} " in output


@pytest.mark.slow
@pytest.mark.parametrize("name, how", COMBINATIONS)
@settings(max_examples=1, deadline=None, phases=NO_SHRINKING,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_reader_shows_every_other_run_and_names_the_damaged_file(tree, rendered, name, how, data):
    with tempfile.TemporaryDirectory() as scratch:
        copy = tree.copy(Path(scratch) / "tree")
        path = copy.target / name
        damage(path, how, data.draw)
        before = snapshot(copy.target)
        naming = naming_readers(name, how)
        for reader in READERS:  # train last: it resumes the target when it is not damaged
            rendered.clear()
            code, output = cli(*reader_argv(copy, reader))
            context = f"{reader} on {name} {how}:\n{output}"
            assert "Traceback" not in output, context
            named = reader in naming
            if named:
                assert str(path) in output, context
            if reader == "train":
                assert code == (1 if named else 0), context
                if named:
                    assert len(output.strip().splitlines()) == 1, context
            else:
                assert code == 0, context
                check_shows_every_other_run(copy, reader, output, not named, rendered)
            if reader != "train" or named:  # a resumable run (no damage train cares about) is resumed
                assert snapshot(copy.target) == before, context


def test_a_newer_format_version_is_one_line_naming_the_file_and_both_versions(tree, tmp_path):
    copy = tree.copy(tmp_path / "tree")
    path = copy.target / rf.CURVES_FILE
    obj = json.loads(path.read_text())
    obj.update(format_version=rf.FORMAT_VERSION + 1, future_field=[1, 2])
    path.write_text(json.dumps(obj))
    before = snapshot(copy.target)
    code, output = cli(*copy.train_argv())
    assert code == 1 and output.strip() == (
        f"ptblm train: error: {path}: format_version {rf.FORMAT_VERSION + 1} is newer than this ptblm's "
        f"({rf.FORMAT_VERSION}): update ptblm (git pull, make setup) to read it; --force would delete what this "
        f"ptblm cannot read: update ptblm instead")
    assert snapshot(copy.target) == before  # never rewritten as an older version, its new field dropped


def test_every_record_round_trips_and_the_config_section_is_what_runconfig_checks(tree):
    run = rf.RunFolder(tree.target).read()
    assert not run.damaged and RunConfig.from_dict(run.config).to_dict() == run.config
    for record in (run.curves, run.status, run.submission):
        assert type(record).from_json(record.to_json()) == record
