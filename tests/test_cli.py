"""The command line: the scaffold's flags verbatim, dry runs, and one clear error line per mistake."""
import subprocess
import sys

import pytest

from conftest import REPO
from ptblm import runfolder as rf


def ptblm(*args: str, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptblm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("model", ["RNN", "GRU", "TRANSFORMER"])
def test_dry_run_smoke_path_for_every_model(model, tmp_path):
    result = ptblm("train", f"--model={model}", "--hidden_size=32", "--n_heads=4", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stdout and "finished: done" in result.stdout
    assert not (tmp_path / "results").exists()  # a dry run leaves nothing behind


def test_course_command_line_runs_verbatim(tmp_path, synthetic_dir):
    out = tmp_path / "run"
    result = ptblm("train", "--model=GRU", "--optimizer=SGD_LR_SCHEDULE", "--initial_lr=10", "--batch_size=8",
                   "--seq_len=12", "--hidden_size=16", "--num_layers=2", "--dp_keep_prob=0.35", "--num_epochs=1",
                   "--emb_size=8", "--seed=1111", "--save_best", "--evaluate", "--debug",
                   "--data", str(synthetic_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    run = rf.read_run(out)
    assert run.config["optimizer"] == "SGD_LR_SCHEDULE" and run.config["save_best"] and run.config["debug"]
    assert run.curves.test_ppl is not None
    assert "train step 2/" in result.stdout  # --debug logs every step


@pytest.mark.parametrize("args, message", [
    (["train", "--model=LSTM"],
     "ptblm train: error: command line: model = 'LSTM' is invalid; valid: one of RNN, GRU, TRANSFORMER"),
    (["train", "--batch_size=many"], "ptblm train: error: argument --batch_size: invalid int value: 'many'"),
    (["train", "--dp_keep_prob=1.5"],
     "ptblm train: error: command line: dp_keep_prob = 1.5 is invalid; valid: a keep probability in (0, 1]"),
    (["train", "--bogus"], "ptblm: error: unrecognized arguments: --bogus"),
    (["train", "--seed=1180591620717411303424"],
     "ptblm train: error: command line: seed = 1180591620717411303424 is invalid; valid: an integer from 0 to "),
    (["train", "--initial_lr=1e400"],
     "ptblm train: error: command line: initial_lr = inf is invalid; valid: a finite number > 0"),
    (["train", "--data", "/nonexistent"], "ptblm train: error: /nonexistent/ptb.train.txt is missing: run `make data`"),
    (["train", "--dry-run", "--device=cpu", "--cuda_graph=on"],
     "ptblm train: error: cuda_graph = 'on' needs a CUDA device, but this run is on cpu (device 'cpu', torch sees "),
    (["submit", "3.9"], "ptblm submit: error: no experiment '3.9': jobs/3.9.yaml does not exist"),
    (["submit", "3.1", "--cluster", "nowhere", "--dry-run"], "ptblm submit: error: no cluster profile 'nowhere'"),
])
def test_mistakes_give_one_clear_error_line(tmp_path, args, message):
    result = ptblm(*args, cwd=REPO)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_corrupt_data_is_one_line_naming_the_file(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(" a b c \n")
    (tmp_path / "ptb.train.txt").write_bytes(b"\xff\xfe\x00 not text")
    result = ptblm("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ptblm train: error: {tmp_path}/ptb.train.txt is not UTF-8 text (byte 0): "
                                     f"corrupt or not a PTB file")
    assert rf.read_status(tmp_path / "run").state == rf.FAILED  # and the run folder says why
