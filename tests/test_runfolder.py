"""The run folder as a truthful record: one writer, its corpus, no orphans, readable by the group."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from ptblm import runfolder as rf
from ptblm.runfolder import LOCK_FILE, RunFolderBusy, hold_run_folder, read_holder
from ptblm.tensorboard_events import TB_FOLDER
from ptblm.train import train_run
from runtree import write_status

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ptblm.runfolder import hold_run_folder
    with hold_run_folder(Path(sys.argv[1]), slurm_job_id="77_3"):
        print("holding", flush=True)
        time.sleep(300)
""")


def ptblm_train(out: Path, data: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptblm.cli", "train", "--model", "GRU", "--optimizer", "ADAM",
                           "--initial_lr", "0.01", "--batch_size", "8", "--seq_len", "12", "--hidden_size", "16",
                           "--emb_size", "12", "--num_layers", "2", "--dp_keep_prob", "0.8", "--num_epochs", "1",
                           "--device", "cpu", "--data", str(data), "--out", str(out), *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding tmp_path/run's lock as a training run would (Slurm job 77_3)."""
    folder = tmp_path / "run"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    yield folder, process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(lock_holder, synthetic_dir):
    folder, holder = lock_holder
    with pytest.raises(RunFolderBusy, match=rf"{folder} is being written by another ptblm run "
                                            rf"\(host {socket.gethostname()}, pid {holder.pid}, Slurm job 77_3, "):
        train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, environ={})
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing written beside the holder
    result = ptblm_train(folder, synthetic_dir)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"ptblm train: error: {folder} is being written by another ptblm run (host ") and f"pid {holder.pid}" \
        in result.stderr


def test_the_lock_of_a_killed_holder_blocks_nobody(lock_holder, synthetic_dir):
    folder, holder = lock_holder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert read_holder(folder).pid == holder.pid  # the stale file is still there, naming the dead holder
    status = train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, slurm_job_id="8_1", environ={})
    assert status.state == rf.DONE and status.slurm_job_id == "8_1"
    assert (read_holder(folder).pid, read_holder(folder).slurm_job_id) == (os.getpid(), "8_1")


def test_two_runs_at_once_in_one_process_are_refused_and_a_later_one_resumes(tmp_path, synthetic_dir):
    folder = tmp_path / "run"
    folder.mkdir()
    with hold_run_folder(folder), pytest.raises(RunFolderBusy, match=rf"pid {os.getpid()}"):
        train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, environ={})
    assert train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, environ={}).state == rf.DONE
    assert train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False,
                     environ={}).state == rf.DONE  # returns at once


def other_corpus(tmp_path: Path) -> Path:
    """Same vocabulary size and shape as the session's synthetic corpus, other words."""
    from ptblm.data import write_synthetic_corpus

    return write_synthetic_corpus(tmp_path / "other", seed=4, vocab_size=60, tokens=(4000, 1200, 1200))


def test_the_corpus_fingerprint_is_its_content_cached_by_path_size_and_mtime(tmp_path, synthetic_dir):
    import hashlib
    import shutil

    from ptblm.data import corpus_fingerprint

    copy = Path(shutil.copytree(synthetic_dir, tmp_path / "copy"))
    cache = tmp_path / "cache.json"
    fingerprint = corpus_fingerprint(copy, cache)
    assert fingerprint == corpus_fingerprint(synthetic_dir) != corpus_fingerprint(other_corpus(tmp_path))
    entries = rf.read_json(cache)
    train = str((copy / "ptb.train.txt").resolve())
    assert entries[train]["sha256"] == hashlib.sha256((copy / "ptb.train.txt").read_bytes()).hexdigest()
    entries[train]["sha256"] = "0" * 64  # the cache is what is read while size and mtime match
    cache.write_text(__import__("json").dumps(entries))
    cached = corpus_fingerprint(copy, cache)
    assert cached != fingerprint
    (copy / "ptb.train.txt").write_text((copy / "ptb.train.txt").read_text() + " w1 \n")  # a new mtime
    assert corpus_fingerprint(copy, cache) not in (cached, fingerprint)


def test_a_run_resumes_only_on_its_corpus(tmp_path, synthetic_dir):
    from ptblm.data import corpus_fingerprint
    from ptblm.resuming import RunFolderMismatch

    folder, other = tmp_path / "run", other_corpus(tmp_path)
    train_run(tiny_config(num_epochs=2), synthetic_dir, folder, echo=False, environ={})
    assert rf.recorded_corpus(folder) == corpus_fingerprint(synthetic_dir)
    message = (rf"{folder} was trained on another corpus \(fingerprint {corpus_fingerprint(synthetic_dir)}, data "
               rf"{synthetic_dir}\), not on {other} \(fingerprint {corpus_fingerprint(other)}\); pass --force")
    with pytest.raises(RunFolderMismatch, match=message):  # a finished run is not reported done on another corpus
        train_run(tiny_config(num_epochs=2), other, folder, echo=False, environ={})
    write_status(folder, rf.RunStatus(state=rf.FAILED, epochs_done=1, num_epochs=2))
    before = (folder / rf.CONFIG_FILE).read_text()
    with pytest.raises(RunFolderMismatch, match=message):  # nor resumed there
        train_run(tiny_config(num_epochs=2), other, folder, echo=False, environ={})
    assert (folder / rf.CONFIG_FILE).read_text() == before
    assert train_run(tiny_config(num_epochs=2), other, folder, echo=False, force=True, environ={}).state == rf.DONE
    assert rf.recorded_corpus(folder) == corpus_fingerprint(other)


def test_a_folder_from_before_fingerprints_resumes_and_records_its_corpus(tmp_path, synthetic_dir):
    import json

    from ptblm.data import corpus_fingerprint

    folder = tmp_path / "run"
    train_run(tiny_config(num_epochs=2), synthetic_dir, folder, echo=False, environ={})
    config = json.loads((folder / rf.CONFIG_FILE).read_text())
    del config[rf.CORPUS_KEY]
    (folder / rf.CONFIG_FILE).write_text(json.dumps(config))
    write_status(folder, rf.RunStatus(state=rf.FAILED, epochs_done=1, num_epochs=2))
    assert rf.recorded_corpus(folder) is None
    assert train_run(tiny_config(num_epochs=2), synthetic_dir, folder, echo=False, environ={}).state == rf.DONE
    assert rf.recorded_corpus(folder) == corpus_fingerprint(synthetic_dir)
    assert (f"this run folder predates corpus fingerprints: recording {corpus_fingerprint(synthetic_dir)}"
            in (folder / rf.LOG_FILE).read_text())


def test_the_plan_skips_as_done_only_on_the_same_corpus(tmp_path, synthetic_dir):
    from ptblm.data import corpus_fingerprint
    from ptblm.jobs import load_experiment
    from ptblm.launch.plan import Action, plan_experiment

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    tiny = {k: v for k, v in tiny_config(num_epochs=1).to_dict().items() if k != "hidden_size"}
    (jobs / "tiny.yaml").write_text(f"common: {tiny}\nsettings:\n  - {{hidden_size: 8}}\n")
    experiment = load_experiment("tiny", jobs)
    setting = experiment.settings[0]
    train_run(setting.config, synthetic_dir, setting.run_dir(tmp_path), echo=False, environ={})
    same, other = corpus_fingerprint(synthetic_dir), corpus_fingerprint(other_corpus(tmp_path))
    plan = lambda fingerprint, force=False: plan_experiment(  # noqa: E731
        experiment, tmp_path, force, {}, fingerprints={"ptb": fingerprint})
    assert [(t.action, t.reason) for t in plan(same)] == [(Action.SKIP, "done (1/1 epochs)")]
    assert [(t.action, t.reason) for t in plan(other)] == [
        (Action.SKIP, f"trained on another corpus ({same}, not {other}): --only 0 --force reruns it alone on this "
               f"one, or choose another --results")]
    assert [t.action for t in plan(other, force=True)] == [Action.SUBMIT]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_an_out_that_is_a_file_or_cannot_be_written_is_one_line(tmp_path, synthetic_dir):
    (tmp_path / "file").write_text("mine\n")
    assert one_error_line(ptblm_train(tmp_path / "file", synthetic_dir)) == (
        f"ptblm train: error: {tmp_path / 'file'} is a file, not a run folder; choose a folder for --out")
    assert (tmp_path / "file").read_text() == "mine\n"
    unwritable = Path("/sys/ptblm-run")  # a read-only place even for root (sysfs)
    assert one_error_line(ptblm_train(unwritable, synthetic_dir)).startswith(
        f"ptblm train: error: {unwritable}: cannot create the run folder (")


def test_a_folder_that_is_not_a_run_folder_is_never_trained_into_nor_forced(tmp_path, synthetic_dir):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"latex": true}\n')
    (foreign / "notes.md").write_text("draft\n")
    for flags in ((), ("--force",)):
        assert one_error_line(ptblm_train(foreign, synthetic_dir, *flags)) == (
            f"ptblm train: error: {foreign} is not empty and not a ptblm run folder (it holds config.json, "
            f"notes.md); choose an empty or new folder for --out")
    assert sorted(p.name for p in foreign.iterdir()) == ["config.json", "notes.md"]
    assert (foreign / "config.json").read_text() == '{"latex": true}\n'


EVIL_PICKLE = textwrap.dedent("""
    import os, pickle, sys
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sys.argv[2]}",))
    if sys.argv[3] == "torch":
        import torch
        torch.save({"model": Evil()}, sys.argv[1])
    else:
        with open(sys.argv[1], "wb") as handle:
            pickle.dump({"model": Evil()}, handle)
""")


@pytest.mark.parametrize("damage, message", [
    ("empty last.pt", "{run}/last.pt: empty (0 bytes): not a checkpoint; `ptblm train --model GRU"),
    ("status list", "{run}/status.json: expected a JSON object (ptblm's status.json), got a list; "
                    "`ptblm train --model GRU"),
    ("curves list", "{run}/curves.json: expected a JSON object (ptblm's curves.json), got a list; "
                    "`ptblm train --model GRU"),
    ("malicious last.pt", "{run}/last.pt: not a checkpoint written by torch.save (no zip archive): ptblm did not "
                          "write it; `ptblm train --model GRU"),
    ("malicious torch last.pt", "{run}/last.pt: refused to load it: it holds Python objects other than tensors and "
                                "plain containers, so ptblm did not write it (nothing in it was run); `ptblm train"),
])
def test_a_damaged_run_folder_file_is_one_line_naming_it(tmp_path, synthetic_dir, damage, message):
    run = tmp_path / "run"
    assert ptblm_train(run, synthetic_dir, "--num_epochs", "2", "--max_batches", "2").returncode == 0
    write_status(run, rf.RunStatus(state=rf.FAILED, epochs_done=1, num_epochs=2))  # to be resumed
    marker = tmp_path / "pwned"
    if damage == "empty last.pt":
        (run / rf.LAST_CHECKPOINT).write_bytes(b"")
    elif damage == "status list":
        (run / rf.STATUS_FILE).write_text("[]\n")
    elif damage == "curves list":
        (run / rf.CURVES_FILE).write_text('[{"epoch": 1}]\n')
    else:
        subprocess.run([sys.executable, "-c", EVIL_PICKLE, str(run / rf.LAST_CHECKPOINT), str(marker),
                        "torch" if "torch" in damage else "pickle"], check=True)
    line = one_error_line(ptblm_train(run, synthetic_dir, "--num_epochs", "2", "--max_batches", "2"))
    assert line.startswith("ptblm train: error: " + message.format(run=run))
    assert not marker.exists()
    assert "weights_only" not in line and "weights_only" not in (run / rf.LOG_FILE).read_text()


def test_orphan_temporaries_of_a_kill_are_removed_on_the_next_start_and_on_force(tmp_path, synthetic_dir):
    run = tmp_path / "run"
    train_run(tiny_config(num_epochs=2), synthetic_dir, run, echo=False, environ={})
    write_status(run, rf.RunStatus(state=rf.FAILED, epochs_done=1, num_epochs=2))
    (run / ".last.pt.k3j4l5.tmp").write_bytes(b"\0" * 2_000_000)  # what a SIGKILL inside a write leaves
    (run / ".curves.json.a1b2c3.tmp").write_text("{")
    (run / ".submitted.json.d4e5f6.tmp").write_text("{")  # ptblm submit's: it may be writing it right now
    (run / ".notes.tmp").write_text("not ours")
    assert train_run(tiny_config(num_epochs=2), synthetic_dir, run, echo=False, environ={}).state == rf.DONE
    hidden = sorted(p.name for p in run.glob(".*"))
    assert hidden == [".lock", ".notes.tmp", ".submitted.json.d4e5f6.tmp"]
    assert "removed 2 temporary files (2.0 MB) left by a run killed during a write" in (run / rf.LOG_FILE).read_text()
    train_run(tiny_config(num_epochs=2), synthetic_dir, run, echo=False, force=True, environ={})
    assert sorted(p.name for p in run.glob(".*")) == [".lock", ".notes.tmp"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_run_files_follow_the_umask(tmp_path, synthetic_dir, umask, mode):
    """A lab's shared project space: with umask 022 the group and others can read every result file."""
    previous = os.umask(umask)
    try:
        train_run(tiny_config(num_epochs=1, save_best=True), synthetic_dir, tmp_path / "run", echo=False, environ={})
        rf.write_submission(tmp_path / "run", rf.Submission(None, "local", 1.0))
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert set(modes) == {*rf.OWN_FILES, LOCK_FILE}
    assert modes == dict.fromkeys(modes, mode)
    events = list((tmp_path / "run" / TB_FOLDER).iterdir())  # TensorBoard's folder and files follow it too
    assert [p.stat().st_mode & 0o777 for p in events] == [mode] and \
        (tmp_path / "run" / TB_FOLDER).stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_file_system_without_flock_trains_and_says_so(tmp_path, synthetic_dir, monkeypatch):
    """Lustre mounted without `flock` answers ENOLCK: the run goes on, and its log says one writer is not enforced."""
    import errno

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr("ptblm.runlock.fcntl.flock", no_flock)
    assert train_run(tiny_config(num_epochs=1), synthetic_dir, tmp_path / "run", echo=False,
                     environ={}).state == rf.DONE
    assert "does not support flock: a second writer" in (tmp_path / "run" / rf.LOG_FILE).read_text()
    assert read_holder(tmp_path / "run").enforced is False


def test_a_run_folder_refused_names_the_flag_that_chose_it(tmp_path, synthetic_dir):
    """`train --save_dir FILE` said 'choose a writable --out', a flag the user never gave."""
    from runtree import cli

    flags = ["train", "--model", "GRU", "--batch_size", "8", "--hidden_size", "16", "--num_epochs", "1",
             "--device", "cpu", "--data", synthetic_dir]
    (tmp_path / "file").write_text("mine\n")
    code, output = cli(*flags, "--save_dir", tmp_path / "file")
    assert code == 1 and output.startswith(f"ptblm train: error: {tmp_path / 'file'} is a file, not a folder, so the "
                                           f"run folder {tmp_path / 'file'}/gru_") and output.endswith(
        " cannot be made there; choose a folder for --save_dir\n"), output
    code, output = cli(*flags, "--out", tmp_path / "file" / "run")
    assert code == 1 and output.endswith(f"run folder {tmp_path / 'file' / 'run'} cannot be made there; choose a "
                                         f"folder for --out\n"), output
    foreign = tmp_path / "saved" / "gru_sgd_lr_schedule_lr20_bs8_h16_l2_keep0.35_ep1"
    foreign.mkdir(parents=True)
    (foreign / "notes.md").write_text("draft\n")
    code, output = cli(*flags, "--save_dir", tmp_path / "saved")
    assert code == 1 and output == (f"ptblm train: error: {foreign} is not empty and not a ptblm run folder (it "
                                    f"holds notes.md); choose an empty or new folder for --save_dir\n"), output
    assert (tmp_path / "file").read_text() == "mine\n" and sorted(foreign.iterdir()) == [foreign / "notes.md"]


def test_a_folder_in_the_place_of_a_file_is_named_and_no_unnamed_choice_is_offered(tmp_path):
    """The writer knows no flag: it said 'cannot write it (Is a directory); make the folder writable, or choose
    another'."""
    (tmp_path / "status.json").mkdir()
    with pytest.raises(rf.FileWriteError) as error:
        rf.atomic_write_bytes(tmp_path / "status.json", b"{}")
    assert str(error.value) == f"{tmp_path / 'status.json'} is a folder where ptblm writes a file: move it away"
