"""The kill suite: SIGKILL, SIGTERM, SIGINT and SIGHUP at each write of `ptblm train --evaluate` (the test
pass included), then the same command again ends as an uninterrupted run does: the same curves, the same
best epoch and test perplexity, `done`, no temporary file left.

Right after the signal every file of the folder reads (RunFolder.read finds no damage); a run stopped by
SIGTERM, SIGINT or SIGHUP says `cancelled` (or `done`, when the signal came with its last write), never
`running` nor `failed`, and prints no traceback; a SIGKILL-ed one says what it last wrote, and `ptblm status`
shows it `stopped`, since nobody holds its lock. The children signal themselves at a write (killpoint.py).
"""
from __future__ import annotations

import json
import multiprocessing
import re
import signal
from pathlib import Path

import pytest

import killpoint
from runtree import cli
from ptblm import runfolder as rf

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGHUP": signal.SIGHUP}


@pytest.fixture(scope="module")
def children():
    """A forkserver that imported torch (and the parts of it the optimizer imports lazily) once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch._dynamo", "ptblm.cli", "ptblm.train", "killpoint"])
    return context


def train_argv(data: Path, out: Path) -> list[str]:
    return ["train", "--model", "GRU", "--optimizer", "ADAM", "--initial_lr", "0.01", "--batch_size", "8",
            "--seq_len", "12", "--emb_size", "12", "--hidden_size", "16", "--num_layers", "1", "--dp_keep_prob",
            "0.8", "--num_epochs", "2", "--max_batches", "3", "--device", "cpu", "--evaluate", "--data", str(data),
            "--out", str(out)]


def run_child(children, data: Path, out: Path, at: int = 0, signum: int = 0, repeat: bool = False) -> tuple[int, str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}-{at}-{signum}.log"
    process = children.Process(target=killpoint.train, args=(train_argv(data, out), at, signum, repeat, str(log)))
    process.start()
    process.join(120)
    assert process.exitcode is not None, "the child did not end"
    return process.exitcode, log.read_text()


def outcome(folder: Path) -> dict:
    """What must not depend on interruptions: every epoch's values, the best epoch, the test perplexity."""
    curves = rf.read_curves(folder)
    return {"epochs": [(r.epoch, r.train_ppl, r.valid_ppl, r.lr) for r in curves.epochs],
            "best": curves.best_epoch().epoch, "test_ppl": curves.test_ppl, "state": rf.read_status(folder).state}


@pytest.fixture(scope="module")
def uninterrupted(children, synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "unbroken"
    code, log = run_child(children, synthetic_dir, out)
    assert code == 0, log
    writes = json.loads(Path(out.parent / f"{out.name}-0-0.log.writes.json").read_text())
    result = outcome(out)
    assert result["state"] == rf.DONE and result["test_ppl"] is not None and len(result["epochs"]) == 2
    # packages, config, status, then per epoch best.pt (when better), last.pt, curves and status, then the test pass
    assert writes[:3] == [rf.PACKAGES_FILE, rf.CONFIG_FILE, rf.STATUS_FILE]
    assert writes[-2:] == [rf.CURVES_FILE, rf.STATUS_FILE]
    return result, writes


@pytest.mark.slow
@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_at_any_write_then_a_rerun_ends_as_an_uninterrupted_run(children, synthetic_dir, tmp_path,
                                                                         uninterrupted, name):
    expected, writes = uninterrupted
    for at in range(1, len(writes) + 1):
        out = tmp_path / "exp" / f"run-{at}"
        code, log = run_child(children, synthetic_dir, out, at, SIGNALS[name])
        where = f"{name} at write {at} ({writes[at - 1]}):\n{log}"
        record = rf.RunFolder(out).read()
        assert not record.damaged, where  # every file reads right after the signal
        if name == "SIGKILL":
            assert code == -signal.SIGKILL, where
            if record.state == rf.RUNNING:
                status = cli("status", "exp", "--results", tmp_path, "--jobs", tmp_path / "no-jobs")[1]
                assert re.search(rf"{out.name} +stopped ", status), f"{where}\n{status}"
        else:
            assert "Traceback" not in log, where
            assert record.state in (rf.CANCELLED, rf.DONE), where
            assert code == (0 if record.state == rf.DONE else 128 + SIGNALS[name]), where
        code, log = run_child(children, synthetic_dir, out)
        assert code == 0, f"rerun after {where}\n{log}"
        assert outcome(out) == expected, f"rerun after {where}"
        assert not list(out.glob(".*.tmp")), where


@pytest.mark.slow
def test_ctrl_c_again_and_again_while_the_run_stops_leaves_it_cancelled(children, synthetic_dir, tmp_path,
                                                                       uninterrupted):
    expected, writes = uninterrupted
    for at in (2, len(writes) - 2):  # before the first epoch; after the last epoch, before the test pass
        out = tmp_path / f"run-{at}"
        code, log = run_child(children, synthetic_dir, out, at, signal.SIGINT, repeat=True)
        assert "Traceback" not in log and code == 128 + signal.SIGINT, log
        assert rf.read_status(out).state == rf.CANCELLED, log
        assert run_child(children, synthetic_dir, out)[0] == 0
        assert outcome(out) == expected
