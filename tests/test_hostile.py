"""Hostile run folders (review A): what is not a regular file where a run file belongs, JSON that would
exhaust a parser, checkpoints that contradict their run, a run folder that is a link. Each is one line
naming the file, the damaged run shown as damaged beside every other, nothing outside the folder touched,
the run itself left as it was; never a hang, a traceback, nor a wrong state.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from runtree import cli, snapshot
from ptblm import runfolder as rf


@contextlib.contextmanager
def deadline(seconds: int = 60):
    """A hang (a FIFO opened for reading or writing) fails the test instead of stopping the suite."""
    def expired(*_):
        raise TimeoutError(f"no answer within {seconds} s: hanging")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def damaged_runs(results: Path) -> dict[Path, rf.Damage | None]:
    return {run.folder: run.damage for run in rf.find_runs(results)}


def check_named_and_others_shown(copy, path: Path) -> None:
    runs = damaged_runs(copy.results)
    assert all(runs[folder] is None for folder in copy.others()) and len(runs) == 4
    assert runs[copy.target] is not None and runs[copy.target].file == path, runs[copy.target]
    code, output = cli("status", "--jobs", copy.jobs, "--results", copy.results)
    assert code == 0 and "Traceback" not in output and str(path) in output
    assert all(folder.name in output for folder in copy.others())


# --- 1, 2: links and what is no regular file, anywhere in a run folder -------------------------------------

def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def tb_link(path: Path) -> None:
    """tb/ a link to a folder of someone's files that a trainer's clean-up would delete."""
    victim = path.parents[3] / "victim"  # beside results/
    victim.mkdir()
    (victim / "events.out.tfevents.1.someone").write_text("keep")
    for event in path.iterdir():
        event.unlink()
    path.rmdir()
    path.symlink_to(victim)


def event_file(folder: Path) -> Path:
    return next((folder / rf.TB_FOLDER).iterdir())


def link_to_copy(path: Path) -> None:
    elsewhere = path.parent.parent / f"elsewhere-{path.name}"
    elsewhere.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(elsewhere)


ENTRIES = {  # name -> (the damaged path in the target, how)
    "tb a link": (lambda f: f / rf.TB_FOLDER, tb_link),
    "log.txt a FIFO": (lambda f: f / rf.LOG_FILE, fifo),
    "an event file a FIFO": (event_file, fifo),
    "status.json a FIFO": (lambda f: f / rf.STATUS_FILE, fifo),
    "packages.txt a link": (lambda f: f / rf.PACKAGES_FILE, link_to_copy),
    "packages.txt a FIFO": (lambda f: f / rf.PACKAGES_FILE, fifo),
    "config.json a folder": (lambda f: f / rf.CONFIG_FILE, lambda p: (p.unlink(), p.mkdir())),
    "packages.txt larger than the cap": (lambda f: f / rf.PACKAGES_FILE,
                                         lambda p: p.write_bytes(b"x==1\n" * (rf.files.MAX_READ_BYTES // 5 + 1))),
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_an_entry_that_is_no_regular_file_is_damage_never_followed_nor_waited_on(tree, tmp_path, entry):
    copy = tree.copy(tmp_path / "tree")
    locate, damage = ENTRIES[entry]
    path = locate(copy.target)
    damage(path)
    before = snapshot(copy.target)
    outside = {p: p.read_bytes() for p in copy.root.rglob("*")  # rglob follows no link
               if p.is_file() and not p.is_symlink() and copy.target not in p.parents}
    with deadline():
        check_named_and_others_shown(copy, path)
        code, output = cli(*copy.train_argv())  # resuming: refused before anything is written
    assert code == 1 and output.count("\n") == 1 and f"error: {path}: " in output, output
    assert snapshot(copy.target) == before
    assert {p: p.read_bytes() for p in outside} == outside and len(outside) > 10  # nothing outside touched


def test_force_removes_a_tb_link_itself_never_the_files_it_points_to(tree, tmp_path):
    copy = tree.copy(tmp_path / "tree")
    tb_link(copy.target / rf.TB_FOLDER)
    with deadline():
        code, output = cli(*copy.train_argv(), "--force")
    assert code == 0, output
    assert (copy.root / "victim" / "events.out.tfevents.1.someone").read_text() == "keep"
    assert not (copy.target / rf.TB_FOLDER).is_symlink() and rf.read_status(copy.target).state == rf.DONE


def test_a_run_folder_that_is_a_link_is_damaged_and_never_cleared(tree, tmp_path):
    copy = tree.copy(tmp_path / "tree")
    victim = copy.root / "victim-run"
    copy.target.rename(victim)
    copy.target.symlink_to(victim)
    before = snapshot(victim)
    check_named_and_others_shown(copy, copy.target)
    for argv in (copy.train_argv(), [*copy.train_argv(), "--force"]):
        code, output = cli(*argv)
        assert code == 1 and output.count("\n") == 1 and f"error: {copy.target}: is a symbolic link" in output
    code, output = cli("submit", "3.1", "--force", "--executor", "local", "--jobs", copy.jobs, "--data", copy.data,
                       "--results", copy.results)
    assert "Traceback" not in output and f"{copy.target}: is a symbolic link" in output, output
    assert snapshot(victim) == before


# --- 3: JSON that would exhaust or fool a parser -----------------------------------------------------------

def deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def twice(path: Path) -> None:  # the later key would win silently
    path.write_text(path.read_text().replace('"state": "cancelled"', '"state": "cancelled", "state": "done"'))


def huge(path: Path) -> None:  # valid JSON, padded past the cap
    path.write_text(path.read_text() + " " * (rf.files.MAX_READ_BYTES + 1))


def epoch_field(key: str, value):
    def change(path: Path) -> None:
        obj = json.loads(path.read_text())
        obj["epochs"][0][key] = value
        path.write_text(json.dumps(obj))
    return change


def top_field(key: str, value):
    def change(path: Path) -> None:
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    return change


def more_epochs(count: int):
    """`count` more epochs after the last, each as the trainer writes one."""
    def change(path: Path) -> None:
        obj = json.loads(path.read_text())
        last = obj["epochs"][-1]
        for _ in range(count):
            last = {**last, "epoch": last["epoch"] + 1, "wall_clock_seconds": last["wall_clock_seconds"] + 1}
            obj["epochs"].append(last)
        path.write_text(json.dumps(obj))
    return change


JSON_DAMAGES = {  # name -> (file, damage, what the reason says)
    "status.json nested 100k deep": (rf.STATUS_FILE, deep, "nested too deeply"),
    "config.json nested 100k deep": (rf.CONFIG_FILE, deep, "nested too deeply"),
    "status.json a key twice": (rf.STATUS_FILE, twice, "'state' appears more than once"),
    "curves.json larger than the cap": (rf.CURVES_FILE, huge, "more than ptblm ever writes there"),
    "curves.json a negative valid_ppl": (rf.CURVES_FILE, epoch_field("valid_ppl", -3.0), "valid_ppl' is -3.0"),
    "curves.json a zero train_ppl": (rf.CURVES_FILE, epoch_field("train_ppl", 0), "train_ppl' is 0"),
    "curves.json a valid_ppl of -inf": (rf.CURVES_FILE, epoch_field("valid_ppl", "-inf"), "valid_ppl' is -inf"),
    # numbers of the right type out of their range (issue 20, review B): never computed with
    "curves.json epoch_seconds 1e308": (rf.CURVES_FILE, epoch_field("epoch_seconds", 1e308),
                                        "'epochs[0].epoch_seconds' is 1e+308, out of range: expected seconds"),
    "curves.json wall_clock_seconds nan": (rf.CURVES_FILE, epoch_field("wall_clock_seconds", "nan"),
                                           "'epochs[0].wall_clock_seconds' is 'nan', out of range"),
    "curves.json more epochs than the run has": (rf.CURVES_FILE, more_epochs(2),
                                                 "lists 3 epochs, but config.json's num_epochs is 2"),
    "status.json epochs_done -1": (rf.STATUS_FILE, top_field("epochs_done", -1), "'epochs_done' is -1, out of range"),
    "status.json updated_at 1e308": (rf.STATUS_FILE, top_field("updated_at", 1e308), "'updated_at' is 1e+308"),
    "submitted.json submitted_at -inf": (rf.SUBMISSION_FILE, top_field("submitted_at", "-inf"),
                                         "'submitted_at' is '-inf', out of range: expected a time"),
    "config.json vocab_size 0": (rf.CONFIG_FILE, top_field("vocab_size", 0), "'vocab_size' is 0, out of range"),
    # attempts in the wrong shape: read by RunFolder alone (provenance once read config.json itself)
    "config.json attempts [1, 2]": (rf.CONFIG_FILE, top_field("attempts", [1, 2]),
                                    "'attempts[0]' is an integer (1), expected an object"),
    "config.json attempts an object": (rf.CONFIG_FILE, top_field("attempts", {"a": 1}),
                                       "'attempts' is an object ({'a': 1}), expected a list"),
    "config.json attempts empty": (rf.CONFIG_FILE, top_field("attempts", []), "'attempts' is an empty list"),
    "config.json an attempt's host a number": (rf.CONFIG_FILE, lambda p: top_field("attempts", [
        {**json.loads(p.read_text())["attempts"][0], "host": 3}])(p), "attempts[0].'host' is an integer (3)"),
}


@pytest.mark.parametrize("damage", JSON_DAMAGES)
def test_json_that_would_exhaust_or_fool_the_parser_is_damage_naming_the_file(tree, tmp_path, damage):
    copy = tree.copy(tmp_path / "tree")
    name, change, reason = JSON_DAMAGES[damage]
    change(copy.target / name)
    before = snapshot(copy.target)
    check_named_and_others_shown(copy, copy.target / name)
    assert reason in damaged_runs(copy.results)[copy.target].reason
    code, output = cli(*copy.train_argv())
    assert code == 1 and output.count("\n") == 1 and reason in output and str(copy.target / name) in output
    assert snapshot(copy.target) == before


# --- 4, 5: checkpoints that contradict their run -------------------------------------------------------------

def first_weight(checkpoint: dict) -> str:
    return next(iter(checkpoint["model"]))


CHECKPOINT_DAMAGES = {  # name -> (file, change of the loaded dict, what the reason says)
    "best.pt of another hidden_size": (rf.BEST_CHECKPOINT, lambda c: c["config"].update(hidden_size=12),
                                       "hidden_size 12 (config.json: 16)"),
    "best.pt of another vocabulary": (rf.BEST_CHECKPOINT, lambda c: c.update(vocab_size=61),
                                      "vocabulary is 61 words, config.json's 60"),
    "best.pt without weights": (rf.BEST_CHECKPOINT, lambda c: c.update(model={}), "holds no weights"),
    "best.pt a weight of the wrong shape": (rf.BEST_CHECKPOINT,
                                            lambda c: c["model"].update({first_weight(c): torch.zeros(3, 3)}),
                                            "has shape (3, 3)"),
    "last.pt without weights": (rf.LAST_CHECKPOINT, lambda c: c.update(model={}), "holds no weights"),
    "last.pt a weight of the wrong shape": (rf.LAST_CHECKPOINT,
                                            lambda c: c["model"].update({first_weight(c): torch.zeros(3, 3)}),
                                            "has shape (3, 3)"),
    "last.pt a wrong optimizer state": (rf.LAST_CHECKPOINT,
                                        lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(2)),
                                        "optimizer state 'exp_avg' of parameter 0 has shape (2,)"),
    "last.pt no optimizer groups": (rf.LAST_CHECKPOINT, lambda c: c["optimizer"].update(param_groups=[]),
                                    "optimizer state is for 0 parameters"),
    "last.pt a wrong RNG state": (rf.LAST_CHECKPOINT, lambda c: c["rng"].update(torch=torch.zeros(3)),
                                  "RNG state 'torch'"),
    "last.pt at epoch 7 of 2": (rf.LAST_CHECKPOINT, lambda c: c.update(epoch=7), "epoch 7 of a 2-epoch run"),
    # numbers out of their range, and fp16's loss scale where the run is not fp16 (issue 20, review B)
    "last.pt wall_clock_seconds inf": (rf.LAST_CHECKPOINT, lambda c: c.update(wall_clock_seconds=float("inf")),
                                       "'wall_clock_seconds' is inf, out of range"),
    "last.pt lr nan": (rf.LAST_CHECKPOINT, lambda c: c.update(lr=float("nan")), "'lr' is nan, out of range"),
    "last.pt negative seconds in its curves": (rf.LAST_CHECKPOINT,
                                               lambda c: c["curves"]["epochs"][0].update(epoch_seconds=-5.0),
                                               "'epochs[0].epoch_seconds' is -5.0, out of range"),
    "last.pt a loss scale on an fp32 run": (rf.LAST_CHECKPOINT, lambda c: c.update(grad_scaler={
        "scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}),
        "it holds a 'grad_scaler' (fp16's loss-scaling state), but the run's precision is fp32"),
    "best.pt valid_ppl inf": (rf.BEST_CHECKPOINT, lambda c: c.update(valid_ppl=float("inf")),
                              "'valid_ppl' is inf, out of range: expected a finite perplexity"),
    "best.pt epoch 0": (rf.BEST_CHECKPOINT, lambda c: c.update(epoch=0), "'epoch' is 0, out of range"),
}


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGES)
def test_a_checkpoint_that_contradicts_its_run_is_damage_naming_what_differs(tree, tmp_path, damage):
    copy = tree.copy(tmp_path / "tree")
    name, change, reason = CHECKPOINT_DAMAGES[damage]
    path = copy.target / name
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    before = snapshot(copy.target)
    with pytest.raises(rf.Damaged, match=re.escape(reason)) as raised:
        rf.RunFolder(copy.target).best_weights() if name == rf.BEST_CHECKPOINT else rf.RunFolder(
            copy.target).resume_point()
    assert raised.value.damage.file == path
    if name == rf.BEST_CHECKPOINT:  # every reader of weights comes through best_weights: samples for all
        code, output = cli("samples", "--data", copy.data, "--results", copy.results)
        assert code == 0 and "Traceback" not in output and f"{path}: {raised.value.damage.reason}" in output
        assert f"loaded RNN {copy.folder('3.1', 1)} " in output  # the other RNN stands in
    else:
        code, output = cli(*copy.train_argv())
        assert code == 1 and output.count("\n") == 1 and f"error: {path}: {raised.value.damage.reason}" in output
    assert snapshot(copy.target) == before


# --- 6: an experiment's submission lock and logs folder ------------------------------------------------------

def experiment_entry(name: str, how: str):
    def damage(copy) -> Path:
        path = copy.results / "3.1" / name
        if path.is_dir():
            for entry in path.iterdir():
                entry.unlink()
            path.rmdir()
        path.unlink(missing_ok=True)
        if how == "a folder":
            path.mkdir()
        elif how == "a FIFO":
            os.mkfifo(path)
        else:
            path.symlink_to(copy.root / "victim")
        return path
    return damage


@pytest.mark.parametrize("name, how", [(".submit.lock", "a folder"), (".submit.lock", "a FIFO"),
                                       (".submit.lock", "a link"), ("logs", "a FIFO"), ("logs", "a link")])
def test_a_submission_lock_or_logs_folder_in_the_wrong_shape_is_one_line_naming_it(tree, tmp_path, name, how):
    copy = tree.copy(tmp_path / "tree")
    path = experiment_entry(name, how)(copy)
    before = snapshot(copy.target)
    with deadline():
        code, output = cli("submit", "3.1", "--executor", "local", "--jobs", copy.jobs, "--data", copy.data,
                           "--results", copy.results)
    assert code == 1 and output.count("\n") == 1 and output.startswith(f"ptblm submit: error: {path} is "), output
    assert not (copy.root / "victim").exists() and snapshot(copy.target) == before
    code, output = cli("status", "--jobs", copy.jobs, "--results", copy.results)
    assert code == 0 and "Traceback" not in output and copy.target.name in output


# --- 10: hints that fit -------------------------------------------------------------------------------------

def test_a_newer_format_version_is_never_told_to_force(tree, tmp_path):
    copy = tree.copy(tmp_path / "tree")
    path = copy.target / rf.STATUS_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": rf.FORMAT_VERSION + 1}))
    for argv in (["status", "--jobs", copy.jobs, "--results", copy.results], ["tables", "--results", copy.results],
                 copy.train_argv()):
        code, output = cli(*argv)
        assert f"{path}: format_version {rf.FORMAT_VERSION + 1} is newer than this ptblm's" in output, output
        assert "--force would delete what this ptblm cannot read: update ptblm instead" in output
        assert "--force`" not in output and "rerun with --force" not in output


def test_a_run_stopped_before_its_first_last_pt_is_not_said_to_resume_from_it(tmp_path, synthetic_dir):
    from conftest import tiny_config
    from ptblm.train import train_run

    status = train_run(tiny_config(num_epochs=1), synthetic_dir, tmp_path / "run", echo=False,
                       should_stop=lambda: True, environ={})
    assert status.state == rf.CANCELLED and not (tmp_path / "run" / rf.LAST_CHECKPOINT).exists()
    assert (tmp_path / "run" / rf.LOG_FILE).read_text().splitlines()[-1].endswith(
        "stopped on request: cancelled after 0/1 epochs; rerunning starts it over (no last.pt yet)")


# --- 9: a folder where an experiment is named --------------------------------------------------------------------

def test_a_folder_named_as_an_experiment_is_one_line_saying_what_to_name(tree, tmp_path):
    outside = tmp_path / "t0"
    (outside / "3.1").mkdir(parents=True)
    for argv in (["status", outside / "3.1"], ["status", tree.target], ["submit", outside]):
        code, output = cli(*argv, "--jobs", tree.jobs, "--results", tree.results)
        assert code == 1 and output.strip() == (
            f"ptblm {argv[0]}: error: {argv[1]} is a folder, not an experiment: name experiments as in {tree.jobs} "
            f"(e.g. 3.1); their runs are read under --results, so for runs elsewhere pass the folder that holds "
            f"<experiment>/<run>/ as --results"), output
