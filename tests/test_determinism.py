"""--deterministic (ptblm.determinism): torch's deterministic algorithms, recorded, and one line for an op without."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, tiny_config
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.determinism import (CUBLAS_VARIABLE, NondeterministicOperation, nondeterministic_operation,
                               use_deterministic)
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.models import build_model
from ptblm.train import train_run


@pytest.fixture(autouse=True)
def restore_determinism(monkeypatch):
    """use_deterministic changes process-wide state (the trainer sets CUBLAS_WORKSPACE_CONFIG in the environ it
    is given, os.environ from the CLI): put it back after each test."""
    monkeypatch.delenv(CUBLAS_VARIABLE, raising=False)  # and monkeypatch restores it afterwards
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_it_turns_torchs_deterministic_algorithms_on_with_the_cublas_workspace():
    environ: dict[str, str] = {}
    recorded, note = use_deterministic(True, environ)
    assert torch.are_deterministic_algorithms_enabled() and environ == {CUBLAS_VARIABLE: ":4096:8"}
    assert recorded == {"deterministic_algorithms": True, CUBLAS_VARIABLE: ":4096:8"} and note is None
    kept = {CUBLAS_VARIABLE: ":16:8"}
    assert use_deterministic(True, kept)[0][CUBLAS_VARIABLE] == ":16:8"  # a person's own valid choice stays
    assert use_deterministic(False, environ)[0]["deterministic_algorithms"] is False
    assert not torch.are_deterministic_algorithms_enabled()


def test_it_is_an_execution_option_in_the_jobs_file_and_on_the_command_line(tmp_path):
    assert tiny_config(deterministic=True).run_name() == tiny_config().run_name()
    assert tiny_config(deterministic=True).identity() == tiny_config().identity()
    experiment = load_experiment("smoke", REPO / "jobs", parse_overrides(["deterministic=true"]))
    assert all(setting.config.deterministic for setting in experiment.settings)


def with_an_operation_without_a_deterministic_version(config, vocab_size):
    """The run's model, whose forward also calls put_ (accumulate=False): torch has no deterministic one."""
    model = build_model(config, vocab_size)
    forward = model.forward

    def forward_with_put(*args, **kwargs):
        torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))
        return forward(*args, **kwargs)

    model.forward = forward_with_put
    return model


def test_an_operation_without_a_deterministic_version_stops_the_run_with_one_line(synthetic_dir, tmp_path,
                                                                                 monkeypatch, capsys):
    monkeypatch.setattr("ptblm.train.build_model", with_an_operation_without_a_deterministic_version)
    config = tiny_config(num_epochs=1, max_batches=2)
    assert train_run(config, synthetic_dir, tmp_path / "free", echo=False,
                     environ={}).state == rf.DONE  # allowed without
    with pytest.raises(NondeterministicOperation, match=r"^--deterministic: put_ has no deterministic "
                                                        r"implementation in torch .*; run this setting without"):
        train_run(config.replace(deterministic=True), synthetic_dir, tmp_path / "strict", echo=False, environ={})
    status = rf.read_status(tmp_path / "strict")
    assert status.state == rf.FAILED and status.error.startswith("NondeterministicOperation: --deterministic: put_")
    assert "Traceback" not in (tmp_path / "strict" / rf.LOG_FILE).read_text()
    code = main(["train", "--model", "GRU", "--optimizer", "ADAM", "--initial_lr", "0.01", "--batch_size", "8",
                 "--hidden_size", "16", "--num_layers", "1", "--seq_len", "12", "--emb_size", "8", "--num_epochs",
                 "1", "--max_batches", "2", "--device", "cpu", "--deterministic", "--data", str(synthetic_dir),
                 "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("ptblm train: error: --deterministic: put_ has")


def test_a_deterministic_run_records_it(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=1, max_batches=2, deterministic=True), synthetic_dir, tmp_path, echo=False,
              environ={})
    run = rf.read_run(tmp_path)
    assert run.config["deterministic"] is True
    assert (run.provenance["deterministic_algorithms"], run.provenance[CUBLAS_VARIABLE]) == (True, ":4096:8")


def test_other_runtime_errors_pass_through():
    assert nondeterministic_operation(RuntimeError("CUDA out of memory")) is None
    assert nondeterministic_operation(RuntimeError("index_add_cuda_ does not have a deterministic "
                                                   "implementation, but you set ...")) == "index_add_cuda_"


def test_each_attempt_records_its_own_determinism_and_a_change_is_logged(synthetic_dir, tmp_path):
    """--deterministic on a resume rewrote config.json for the whole run (deterministic though epoch 1 was not),
    the attempts recorded nothing of it and the log said nothing; and the reverse."""
    config, run = tiny_config(num_epochs=3, max_batches=2), tmp_path / "run"

    def after(epochs: int):
        return lambda: len(rf.read_curves(run).epochs) >= epochs

    train_run(config, synthetic_dir, run, echo=False, should_stop=after(1), environ={})
    path = run / rf.CONFIG_FILE  # as a ptblm from before wrote it: its attempt's record without determinism
    written = json.loads(path.read_text())
    for key in ("deterministic_algorithms", CUBLAS_VARIABLE):
        del written["attempts"][0][key]
    path.write_text(json.dumps(written))
    train_run(config.replace(deterministic=True), synthetic_dir, run, echo=False, should_stop=after(2), environ={})
    train_run(config, synthetic_dir, run, echo=False, environ={})
    recorded = rf.read_run(run).provenance
    assert [(a["deterministic_algorithms"], a[CUBLAS_VARIABLE]) for a in recorded["attempts"]] == [
        (False, None), (True, ":4096:8"), (False, None)]
    assert (recorded["deterministic_algorithms"], recorded[CUBLAS_VARIABLE]) == (False, None)  # the latest attempt's
    changes = [line.split("): ", 1)[1] for line in (run / rf.LOG_FILE).read_text().splitlines()
               if "the environment changed since attempt" in line]
    assert changes == [f"deterministic_algorithms False -> True; {CUBLAS_VARIABLE} None -> :4096:8",
                       f"deterministic_algorithms True -> False; {CUBLAS_VARIABLE} :4096:8 -> None"]
