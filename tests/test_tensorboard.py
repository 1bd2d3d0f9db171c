"""TensorBoard event files (ptblm.tensorboard_events) and `ptblm tensorboard` (ptblm.tensorboard_server)."""
from __future__ import annotations

import json
import os
import math
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, child_pids, process_gone, tiny_config, write_run
from ptblm import runfolder as rf
from ptblm.tensorboard_events import (CONVERTED_SUFFIX, EPOCH_TAGS, STEP_TAG, RunBoard, board_dir, epoch_scalars,
                                      event_files, needs_conversion, recorded_points, write_from_curves)
from ptblm.tensorboard_server import (VIEW_PREFIX, TensorBoardError, held, reachable_name, remove_stale_views, serve,
                                      shown_experiments, start_tensorboard, tunnel_line)
from ptblm.train import train_run
from runtree import write_curves

EVERYTHING = 10**9  # recorded_points' limits, to see every point a folder holds


def points(run_dir: Path) -> dict[tuple[str, int], float]:
    """(tag, step) -> value of every scalar in the run's event files (a later file wins)."""
    return {key: value for key, (_, value) in
            recorded_points(event_files(board_dir(run_dir)), EVERYTHING, EVERYTHING).items()}


def all_events(run_dir: Path) -> list[tuple[str, int]]:
    """(tag, step) of every scalar event in every file, duplicates included."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return [(value.tag, event.step) for path in event_files(board_dir(run_dir))
            for event in LegacyEventFileLoader(str(path)).Load() if event.HasField("summary")
            for value in event.summary.value if value.HasField("simple_value")]


def expected_epochs(run_dir: Path) -> dict[tuple[str, int], float]:
    return {(tag, record.epoch): value for record in rf.read_curves(run_dir).epochs
            for tag, value in epoch_scalars(record).items()}


def assert_same(actual: dict, expected: dict) -> None:
    """Event values are float32."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-6, abs=1e-12) or (math.isinf(value) and
                                                                         actual[key] == value), key


def stop_after(calls: int):
    """A should_stop that says yes at its `calls`-th question (asked as each epoch starts, and before every batch,
    train and valid)."""
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= calls

    return should_stop


# --- the trainer's events --------------------------------------------------------------------------

def test_a_run_writes_its_curves_and_step_losses_as_events(synthetic_dir, tmp_path):
    config = tiny_config(num_epochs=2, max_batches=4, log_steps=True)
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    found = points(tmp_path)
    assert_same({key: value for key, value in found.items() if key[0] != STEP_TAG}, expected_epochs(tmp_path))
    assert sorted(step for tag, step in found if tag == STEP_TAG) == list(range(1, 9))  # 4 batches x 2 epochs
    assert all(0 < found[(STEP_TAG, step)] < 10 for step in range(1, 9))  # ln 60 ~ 4.1 on this corpus
    assert len(event_files(board_dir(tmp_path))) == 1


def test_without_log_steps_there_are_no_step_losses(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=1, max_batches=3), synthetic_dir, tmp_path, echo=False, environ={})
    assert {tag for tag, _ in points(tmp_path)} == set(EPOCH_TAGS)


def test_a_resumed_run_has_each_point_once_and_none_from_the_abandoned_epoch(synthetic_dir, tmp_path):
    """Cancelled after 3 batches of epoch 3 (its step losses are on disk), then resumed: one file, every
    step once, the steps of epoch 3 those of the second attempt."""
    config = tiny_config(num_epochs=3, max_batches=4, log_steps=True)
    status = train_run(config, synthetic_dir, tmp_path, echo=False, should_stop=stop_after(2 * (1 + 8) + 1 + 4),
                       environ={})
    assert (status.state, status.epochs_done) == (rf.CANCELLED, 2)
    before = points(tmp_path)
    assert {step for tag, step in before if tag == STEP_TAG} == set(range(1, 12))  # 8 + 3 of the abandoned epoch

    assert train_run(config, synthetic_dir, tmp_path, echo=False, environ={}).state == rf.DONE
    events = all_events(tmp_path)
    assert len(events) == len(set(events))  # no (tag, step) twice
    after = points(tmp_path)
    assert_same({key: value for key, value in after.items() if key[0] != STEP_TAG}, expected_epochs(tmp_path))
    assert sorted(step for tag, step in after if tag == STEP_TAG) == list(range(1, 13))
    assert all(after[(STEP_TAG, step)] == before[(STEP_TAG, step)] for step in range(1, 9))  # history kept
    assert len(event_files(board_dir(tmp_path))) == 1


def test_a_resume_drops_epochs_and_steps_past_the_checkpoint(synthetic_dir, tmp_path):
    """Events ahead of last.pt (e.g. a folder restored from an older copy): the resumed epoch is the limit."""
    config = tiny_config(num_epochs=2, max_batches=4, log_steps=True)
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    curves = rf.read_curves(tmp_path)
    curves.epochs = curves.epochs[:1]
    board = RunBoard.open(tmp_path, config.to_dict(), curves, 4, warn=pytest.fail)
    board.close()
    assert sorted(points(tmp_path)) == sorted([(tag, 1) for tag in EPOCH_TAGS] + [(STEP_TAG, s) for s in (1, 2, 3, 4)])


def test_force_starts_the_events_over(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=2, max_batches=2), synthetic_dir, tmp_path, echo=False, environ={})
    train_run(tiny_config(num_epochs=1, max_batches=2), synthetic_dir, tmp_path, echo=False, force=True, environ={})
    assert sorted(points(tmp_path)) == sorted((tag, 1) for tag in EPOCH_TAGS)


def test_an_event_file_that_cannot_be_written_is_one_warning_and_the_run_goes_on(synthetic_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rf.LOCK_FILE).touch()  # a run folder
    (run_dir / "tb").write_text("a file where the events folder would go")
    status = train_run(tiny_config(num_epochs=2, max_batches=2, log_steps=True), synthetic_dir, run_dir, echo=False,
                       environ={})
    assert status.state == rf.DONE
    warnings = [line for line in (run_dir / rf.LOG_FILE).read_text().splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and "warning: TensorBoard events are not written in this attempt" in warnings[0]


def test_an_error_while_writing_is_one_warning_and_nothing_more(tmp_path):
    class Broken:
        def add_scalar(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    said = []
    board = RunBoard(Broken(), 0, said.append)
    record = rf.EpochRecord(1, 100.0, 90.0, 1.0, 1.0, 0.1)
    board.step(1, 4, 2.5)
    board.epoch(record)
    board.close()
    assert len(said) == 1 and "No space left on device" in said[0]


# --- runs made before event files, and the server ----------------------------------------------------

def test_old_runs_get_events_from_curves_once_and_again_when_curves_change(tmp_path):
    folder = write_run(tmp_path, "3.1", valid=[300.0, 200.0, math.inf], num_epochs=4)  # room for a 4th epoch
    assert needs_conversion(folder)
    written = write_from_curves(folder)
    assert written.name.endswith(CONVERTED_SUFFIX) and not needs_conversion(folder)
    assert_same(points(folder), expected_epochs(folder))
    curves = rf.read_curves(folder)
    curves.epochs.append(rf.EpochRecord(4, 150.0, 140.0, 10.0, 40.0, 1.0))
    write_curves(folder, curves)
    os.utime(folder / rf.CURVES_FILE, (written.stat().st_mtime + 5,) * 2)
    assert needs_conversion(folder)
    write_from_curves(folder)
    assert_same(points(folder), expected_epochs(folder)) and len(event_files(board_dir(folder))) == 1


@pytest.mark.parametrize("damage", ["read-only", "full"])
def test_an_event_file_that_cannot_be_written_is_one_note_and_no_thread_traceback(tmp_path, monkeypatch, damage):
    """TensorBoard's writer thread fails first (a read-only results folder, a full disk): `ptblm tensorboard`
    says so in one note per run and shows the others; no traceback from the thread."""
    from tensorboard.summary.writer import record_writer

    from ptblm.tensorboard_server import convert_old_runs

    folder = write_run(tmp_path, "3.1", valid=[300.0, 200.0])
    error = OSError(30, "Read-only file system") if damage == "read-only" else OSError(28, "No space left on device")

    def refuse(self, data):
        raise error

    monkeypatch.setattr(record_writer.RecordWriter, "write", refuse)
    printed = []  # what Python's hook would print as "Exception in thread ...: Traceback ..."
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.exc_value))
    notes = []
    assert convert_old_runs(tmp_path, ["3.1"], notes.append) == 0
    assert notes == [f"note: {folder}: no TensorBoard events from its curves.json (OSError: {error})"]
    assert printed == []
    failing = threading.Thread(target=lambda: 1 / 0)  # any other thread's exception is still printed
    failing.start()
    failing.join()
    assert [type(error) for error in printed] == [ZeroDivisionError]


def test_a_trainers_events_are_never_replaced_from_curves(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=1, max_batches=2), synthetic_dir, tmp_path, echo=False, environ={})
    assert not needs_conversion(tmp_path)


def test_the_ssh_line_names_the_port_user_and_host():
    assert tunnel_line(40123, "alice", "login-2.example.org") == \
        "ssh -N -L 40123:127.0.0.1:40123 alice@login-2.example.org"
    assert tunnel_line(6006, None, "node") == "ssh -N -L 6006:127.0.0.1:6006 node"
    assert reachable_name("login-2", "login-2.example.org") == "login-2.example.org"
    assert reachable_name("vm", "localhost") == "vm"


def test_experiments_shown_must_have_results(tmp_path):
    write_run(tmp_path, "3.1", valid=[300.0])
    assert shown_experiments(tmp_path, []) == ["3.1"]
    with pytest.raises(TensorBoardError, match=r"no results of experiment '3.2'; experiments with results: 3.1"):
        shown_experiments(tmp_path, ["3.2"])
    with pytest.raises(TensorBoardError, match="no experiment has results yet"):
        shown_experiments(tmp_path / "empty", [])


def test_an_experiment_named_twice_is_shown_once_and_its_converted_runs_are_counted_in_words(tmp_path, monkeypatch):
    """`ptblm tensorboard smoke smoke` was a FileExistsError traceback from link_view, and one converted run
    was 'for 1 runs'. TensorBoard itself is replaced here (the slow test below starts a real one)."""
    import types

    from ptblm import tensorboard_server

    write_run(tmp_path, "3.1", valid=[300.0])
    write_run(tmp_path, "3.2", valid=[300.0, 200.0])
    views = []

    def start(logdir: Path, log: Path, **options) -> tensorboard_server.Server:
        views.append(sorted(path.name for path in logdir.iterdir()))
        return tensorboard_server.Server(types.SimpleNamespace(poll=lambda: 0), "http://127.0.0.1:6006/", 6006, log)

    monkeypatch.setattr(tensorboard_server, "start_tensorboard", start)
    said = []
    serve(tmp_path, ["3.2", "3.1", "3.2"], environ={}, hostname="h", notify=said.append, until=lambda server: None)
    assert views == [["3.1", "3.2"]] and shown_experiments(tmp_path, ["3.2", "3.1", "3.2"]) == ["3.2", "3.1"]
    assert said[0] == "wrote TensorBoard events from curves.json for 2 runs made before event files existed"
    assert said[1].startswith("TensorBoard at http://127.0.0.1:6006/ shows 3.2, 3.1 (under ")
    write_run(tmp_path, "3.3", valid=[300.0])
    serve(tmp_path, ["3.3", "3.3"], environ={}, hostname="h", notify=said.append, until=lambda server: None)
    assert said[3] == "wrote TensorBoard events from curves.json for 1 run made before event files existed"


def fetch(url: str, posted: dict | None = None):
    request = urllib.request.Request(url, data=None if posted is None else json.dumps(posted).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def served_scalars(url: str, run: str) -> dict[tuple[str, int], list[float]]:
    """(tag, step) -> every value TensorBoard serves for it (two means a duplicate point)."""
    found: dict[tuple[str, int], list[float]] = {}
    for tag in fetch(f"{url}data/plugin/scalars/tags")[run]:
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        for _, step, value in fetch(f"{url}data/plugin/scalars/scalars?{query}"):
            found.setdefault((tag, step), []).append(value)
    return found


@pytest.mark.slow
def test_tensorboard_serves_the_curves_of_a_resumed_run_and_of_an_old_one(synthetic_dir, tmp_path):
    """Through a real TensorBoard on loopback, with both of its loaders: the scalars equal curves.json, each
    step once (a resumed run's abandoned epoch included), and a run from before event files is shown too."""
    results = tmp_path / "results"
    resumed = results / "unit" / "resumed"
    config = tiny_config(num_epochs=3, max_batches=4, log_steps=True)
    train_run(config, synthetic_dir, resumed, echo=False, should_stop=stop_after(2 * (1 + 8) + 1 + 4), environ={})
    train_run(config, synthetic_dir, resumed, echo=False, environ={})
    old = write_run(results, "3.1", valid=[300.0, 200.0])
    said = []

    def check(server) -> None:
        assert server.url.startswith("http://127.0.0.1:")
        assert set(fetch(f"{server.url}data/runs")) == {"unit/resumed/tb", f"3.1/{old.name}/tb"}
        for run_dir, run in ((resumed, "unit/resumed/tb"), (old, f"3.1/{old.name}/tb")):
            served = served_scalars(server.url, run)
            assert all(len(values) == 1 for values in served.values()), run
            epochs = {key: values[0] for key, values in served.items() if key[0] != STEP_TAG}
            assert_same(epochs, expected_epochs(run_dir))
        assert sorted(step for tag, step in served_scalars(server.url, "unit/resumed/tb") if tag == STEP_TAG) == \
            list(range(1, 13))
        groups = fetch(f"{server.url}data/plugin/hparams/session_groups",
                       {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"], "colParams": [],
                        "startIndex": 0, "sliceSize": 10})["sessionGroups"]
        hparams = {group["name"]: group["hparams"] for group in groups}["unit/resumed/tb"]
        assert (hparams["model"], hparams["hidden_size"], hparams["log_steps"]) == ("GRU", 16, "true")
        legacy = start_tensorboard(server.log.parent / "view", server.log.parent / "legacy.log",
                                   extra_args=("--load_fast", "false"))
        try:
            assert served_scalars(legacy.url, "unit/resumed/tb") == served_scalars(server.url, "unit/resumed/tb")
        finally:
            legacy.stop()

    serve(results, [], environ={"USER": "alice"}, hostname="login-1.example.org", notify=said.append, until=check)
    assert said[0] == "wrote TensorBoard events from curves.json for 1 run made before event files existed"
    port = said[-1].split(":127.0.0.1:")[1].split()[0]
    assert said[-1] == (f"from a laptop: ssh -N -L {port}:127.0.0.1:{port} alice@login-1.example.org"
                        f"   then open http://localhost:{port}/")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_however_ptblm_tensorboard_ends_tensorboard_and_its_temporary_folder_go(tmp_path, signum):
    """A real `ptblm tensorboard` and its TensorBoard child: SIGTERM and SIGHUP unwind it (exit 128 + N, one
    line); SIGKILL runs nothing, yet the child ends too (it asked the kernel to) and the next start removes the
    folder left."""
    write_run(tmp_path / "results", "3.1", valid=[300.0])
    argv = [sys.executable, "-m", "ptblm.cli", "tensorboard", "--results", str(tmp_path / "results")]
    command = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        said = []
        for line in command.stdout:
            said.append(line)
            if line.startswith("from a laptop:"):
                break
        assert said and said[-1].startswith("from a laptop:"), "".join(said) + command.stderr.read()
        [child] = child_pids(command.pid)
        [folder] = tmp_path.glob(f"{VIEW_PREFIX}*")
        assert f"{folder}/view" in Path(f"/proc/{child}/cmdline").read_text().split("\0")
        os.kill(command.pid, signum)
        returncode = command.wait(timeout=60)
    finally:
        command.kill()
    assert process_gone(child)
    if signum == signal.SIGKILL:
        assert returncode == -signum and folder.is_dir()
        assert remove_stale_views(tmp_path) == [folder]
    else:
        assert returncode == 128 + signum
        assert command.stderr.read() == f"ptblm tensorboard: stopped by {signal.Signals(signum).name}\n"
    assert not folder.exists()


def test_only_the_temporary_folders_nobody_holds_are_stale(tmp_path):
    left, in_use, older = (tmp_path / f"{VIEW_PREFIX}{name}" for name in ("left", "in_use", "older"))
    for folder in (left, in_use, older):
        (folder / "view").mkdir(parents=True)
    with held(left):
        pass
    (older / "tensorboard.log").write_text("an older ptblm's folder, without a held file")
    with held(in_use):
        assert remove_stale_views(tmp_path) == [left]
    assert not left.exists() and in_use.is_dir() and older.is_dir()
