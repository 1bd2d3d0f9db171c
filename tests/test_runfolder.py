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
from ptblm.runlock import LOCK_FILE, RunFolderBusy, hold_run_folder, read_holder
from ptblm.train import train_run

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ptblm.runlock import hold_run_folder
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
        train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing written beside the holder
    result = ptblm_train(folder, synthetic_dir)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"ptblm train: error: {folder} is being written by another ptblm run (host ") and f"pid {holder.pid}" \
        in result.stderr


def test_the_lock_of_a_killed_holder_blocks_nobody(lock_holder, synthetic_dir):
    folder, holder = lock_holder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert read_holder(folder).pid == holder.pid  # the stale file is still there, naming the dead holder
    status = train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False, slurm_job_id="8_1")
    assert status.state == rf.DONE and status.slurm_job_id == "8_1"
    assert (read_holder(folder).pid, read_holder(folder).slurm_job_id) == (os.getpid(), "8_1")


def test_two_runs_at_once_in_one_process_are_refused_and_a_later_one_resumes(tmp_path, synthetic_dir):
    folder = tmp_path / "run"
    folder.mkdir()
    with hold_run_folder(folder), pytest.raises(RunFolderBusy, match=rf"pid {os.getpid()}"):
        train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False)
    assert train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False).state == rf.DONE
    assert train_run(tiny_config(num_epochs=1), synthetic_dir, folder, echo=False).state == rf.DONE  # returns at once
