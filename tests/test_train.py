import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from ptblm import runfolder as rf
from ptblm.data import corpus_fingerprint
from ptblm.epochs import perplexity
from ptblm.runfolder import load_checkpoint
from ptblm.optimizers import scheduled_lr
from ptblm.resuming import RunFolderMismatch
from ptblm.train import train_run
from runtree import write_curves, write_status


def curves_of(folder: Path) -> list[tuple[float, float]]:
    return [(r.train_ppl, r.valid_ppl) for r in rf.read_curves(folder).epochs]


def test_sgd_lr_schedule_is_the_scaffolds_compounding_rule():
    lr, rates = 1.0, []
    for epoch in range(20):
        lr = scheduled_lr(lr, "SGD_LR_SCHEDULE", epoch)
        rates.append(lr)
    assert rates[:15] == [1.0] * 15
    assert rates[15] == pytest.approx(1 / 1.15)  # epoch 15: factor (1/1.15)^1
    assert rates[16] == pytest.approx((1 / 1.15) ** 3)  # then ^2 on top: it compounds
    assert scheduled_lr(1.0, "SGD", 19) == scheduled_lr(1.0, "ADAM", 19) == 1.0


def test_perplexity_handles_overflow_and_nan():
    assert perplexity(math.log(123.0)) == pytest.approx(123.0)
    assert perplexity(1e4) == math.inf
    assert math.isnan(perplexity(float("nan")))


@pytest.mark.parametrize("model", ["RNN", "GRU", "TRANSFORMER"])
def test_a_run_writes_the_whole_run_folder_and_learns(model, synthetic_dir, tmp_path):
    config = tiny_config(model=model, num_epochs=3, evaluate=True)
    status = train_run(config, synthetic_dir, tmp_path, experiment="unit", setting_index=4, echo=False, environ={})
    assert status.state == rf.DONE and status.epochs_done == 3
    run = rf.read_run(tmp_path)
    assert run.config == config.to_dict() and run.provenance["setting_index"] == 4
    assert run.provenance["torch_version"] == torch.__version__ and run.provenance["device"].startswith("cpu")
    valid, train = run.curves.column("valid_ppl"), run.curves.column("train_ppl")
    assert train[-1] < train[0] and max(valid) < 40  # learns: a uniform guess over ~60 words scores 60
    assert [r.epoch for r in run.curves.epochs] == [1, 2, 3]
    assert run.curves.epochs[-1].wall_clock_seconds == pytest.approx(sum(run.curves.column("epoch_seconds")))
    best = load_checkpoint(tmp_path / rf.BEST_CHECKPOINT)
    assert best["epoch"] == run.curves.best_epoch().epoch and best["valid_ppl"] == min(valid)
    assert run.curves.test_ppl is not None and math.isfinite(run.curves.test_ppl)
    assert "finished: done" in (tmp_path / rf.LOG_FILE).read_text()


def test_finished_run_is_not_redone_unless_forced(synthetic_dir, tmp_path):
    config = tiny_config(num_epochs=1)
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    before = (tmp_path / rf.CURVES_FILE).read_text()
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    assert (tmp_path / rf.CURVES_FILE).read_text() == before
    assert (tmp_path / rf.LOG_FILE).read_text().count("finished: done") == 1
    train_run(config, synthetic_dir, tmp_path, echo=False, force=True, environ={})
    assert (tmp_path / rf.LOG_FILE).read_text().count("finished: done") == 1  # log started over
    assert curves_of(tmp_path) == [tuple(json.loads(before)["epochs"][0][k] for k in ("train_ppl", "valid_ppl"))]


def test_another_setting_in_the_same_folder_is_refused_and_left_alone(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=2), synthetic_dir, tmp_path, echo=False, environ={})  # a finished run
    with pytest.raises(RunFolderMismatch, match=r"holds another setting \(hidden_size 16 -> 20\)"):
        train_run(tiny_config(num_epochs=2, hidden_size=20), synthetic_dir, tmp_path, echo=False, environ={})
    write_status(tmp_path, rf.RunStatus(state=rf.FAILED, epochs_done=1, num_epochs=2))  # an interrupted one
    before = (tmp_path / rf.STATUS_FILE).read_text()
    with pytest.raises(RunFolderMismatch, match=r"initial_lr 0.01 -> 0.02"):
        train_run(tiny_config(num_epochs=2, initial_lr=0.02), synthetic_dir, tmp_path, echo=False, environ={})
    assert (tmp_path / rf.STATUS_FILE).read_text() == before  # the other run's status is untouched


def test_execution_options_may_change_when_a_run_resumes(synthetic_dir, tmp_path):
    """--save_best, --evaluate, --debug, the impl or the device are how a setting runs, not which one."""
    train_run(tiny_config(num_epochs=2), synthetic_dir, tmp_path, echo=False, environ={})
    write_status(tmp_path, rf.RunStatus(state=rf.FAILED, epochs_done=2, num_epochs=2))
    status = train_run(tiny_config(num_epochs=2, evaluate=True, save_best=True, impl="reference"),
                       synthetic_dir, tmp_path, echo=False, environ={})
    assert status.state == rf.DONE and rf.read_curves(tmp_path).test_ppl is not None


def test_resume_rewrites_curves_left_behind_by_a_kill_between_writes(synthetic_dir, tmp_path):
    """last.pt is written before curves.json: a kill in between leaves curves one epoch short."""
    config = tiny_config(num_epochs=2)
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    full = curves_of(tmp_path)
    curves = rf.read_curves(tmp_path)
    curves.epochs = curves.epochs[:1]
    write_curves(tmp_path, curves)
    write_status(tmp_path, rf.RunStatus(state=rf.RUNNING, epochs_done=1, num_epochs=2))
    assert train_run(config, synthetic_dir, tmp_path, echo=False, environ={}).state == rf.DONE
    assert curves_of(tmp_path) == full


def test_evaluate_reports_test_perplexity_of_the_best_weights(synthetic_dir, tmp_path):
    from ptblm.data import load_corpus
    from ptblm.models import build_model
    from ptblm.epochs import EpochRunner

    config = tiny_config(num_epochs=3, evaluate=True, initial_lr=0.05)
    train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    corpus = load_corpus(synthetic_dir)
    model = build_model(config, corpus.vocab_size)
    model.load_state_dict(load_checkpoint(tmp_path / rf.BEST_CHECKPOINT)["model"])
    runner = EpochRunner(model, config, torch.device("cpu"), lambda line: None, interactive=False)
    assert rf.read_curves(tmp_path).test_ppl == pytest.approx(perplexity(runner.run(corpus.test, label="test")))


def test_huge_but_finite_losses_keep_training_and_record_inf(synthetic_dir, tmp_path):
    """Loss above ~709 nats: perplexity overflows to inf, the weights are still numbers, training goes on;
    a run where no epoch was finite has no best.pt and ends diverged, not done."""
    status = train_run(tiny_config(model="RNN", optimizer="SGD", initial_lr=1e30, num_epochs=2),
                       synthetic_dir, tmp_path, echo=False, environ={})
    assert (status.state, status.epochs_done) == (rf.DIVERGED, 2)
    assert curves_of(tmp_path) == [(math.inf, math.inf)] * 2
    assert '"valid_ppl": "inf"' in (tmp_path / rf.CURVES_FILE).read_text()
    assert not (tmp_path / rf.BEST_CHECKPOINT).exists()
    assert "diverged: no epoch of 2 had a finite validation perplexity" in (tmp_path / rf.LOG_FILE).read_text()


def test_non_finite_loss_ends_the_run_diverged_with_standard_json(synthetic_dir, tmp_path):
    config = tiny_config(model="GRU", optimizer="SGD", initial_lr=1e38, num_epochs=4)
    status = train_run(config, synthetic_dir, tmp_path, echo=False, environ={})
    assert status.state == rf.DIVERGED and status.epochs_done == 1
    text = (tmp_path / rf.CURVES_FILE).read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    last = rf.read_curves(tmp_path).epochs[-1]
    assert not (math.isfinite(last.train_ppl) and math.isfinite(last.valid_ppl))
    assert "diverged: non-finite loss" in (tmp_path / rf.LOG_FILE).read_text()
    again = train_run(config, synthetic_dir, tmp_path, echo=False, environ={})  # a finished state: not redone
    assert again.state == rf.DIVERGED and again.epochs_done == 1


def train_command(data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "ptblm.cli", "train", "--model", "GRU", "--optimizer", "ADAM",
            "--initial_lr", "0.01", "--batch_size", "8", "--seq_len", "12", "--hidden_size", "32",
            "--emb_size", "16", "--num_layers", "2", "--dp_keep_prob", "0.8", "--num_epochs", str(epochs),
            "--device", "cpu", "--data", str(data), "--out", str(out)]


def test_killed_run_is_readable_and_resumes_to_the_uninterrupted_curves(synthetic_dir, tmp_path):
    """SIGKILL mid-run (no chance to clean up), then the same command: the curves equal an unbroken run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    subprocess.run(train_command(synthetic_dir, unbroken, 4), check=True, env=env, capture_output=True)

    process = subprocess.Popen(train_command(synthetic_dir, killed, 4), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(curves_of(killed)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # readable right after the kill: every JSON parses, last.pt loads with the safe loader
    run = rf.read_run(killed)
    assert run.status.state == rf.RUNNING and 2 <= len(run.curves.epochs) < 4
    assert load_checkpoint(killed / rf.LAST_CHECKPOINT)["epoch"] >= len(run.curves.epochs)
    # a kill during a write may leave its temporary file (never the file itself half-written): the next start
    # removes it

    subprocess.run(train_command(synthetic_dir, killed, 4), check=True, env=env, capture_output=True)
    assert rf.read_status(killed).state == rf.DONE and not list(killed.glob(".*.tmp"))
    assert curves_of(killed) == curves_of(unbroken)  # exactly: same seed, RNG state restored
    assert "resuming from" in (killed / rf.LOG_FILE).read_text()


def test_with_scratch_dir_the_run_reads_a_staged_copy(synthetic_dir, tmp_path):
    """On a Slurm node $SLURM_TMPDIR is the scratch dir: the shared file system is read once."""
    train_run(tiny_config(num_epochs=1), synthetic_dir, tmp_path / "run", echo=False, scratch_dir=tmp_path / "node",
              environ={})
    staged = tmp_path / "node" / "ptblm-data" / f"ptb-{corpus_fingerprint(synthetic_dir)}"
    assert rf.read_run(tmp_path / "run").provenance["data_dir"] == str(staged)
    assert (staged / "ptb.train.txt").read_bytes() == (synthetic_dir / "ptb.train.txt").read_bytes()


def test_sgd_step_is_p_minus_lr_g_after_clipping_the_norm_to_a_quarter(synthetic_dir):
    """The literal course rule, written out by hand: clip the global gradient norm to 0.25, then p - lr * g."""
    from ptblm.models import build_model
    from ptblm.step import train_step
    from ptblm.optimizers import make_optimizer

    config = tiny_config(model="RNN", optimizer="SGD", initial_lr=3.0, dp_keep_prob=1.0)
    torch.manual_seed(0)
    model = build_model(config, vocab_size=60)
    x, y = torch.randint(60, (1, 2)), torch.randint(60, (1, 2))  # few tokens: a gradient norm above 0.25
    hidden = torch.zeros(config.num_layers, 1, config.hidden_size)
    logits, _ = model(x.t(), hidden)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 60), y.t().reshape(-1)).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    assert norm > 0.25  # so the clip matters here
    expected = [p.detach() - 3.0 * g * (0.25 / norm) for p, g in zip(model.parameters(), grads)]
    train_step(model, make_optimizer(model, config), x, y, hidden)
    for parameter, want in zip(model.parameters(), expected):
        torch.testing.assert_close(parameter.detach(), want, rtol=1e-5, atol=1e-6)


def test_hidden_state_starts_from_zeros_every_epoch_and_in_validation(synthetic_dir, tmp_path):
    """Validation twice in a row gives the same loss only if each pass starts from a zero state; and it
    equals a hand loop that carries the state from batch to batch, starting at zeros."""
    from ptblm.data import batchify, load_corpus, num_batches
    from ptblm.models import build_model
    from ptblm.epochs import EpochRunner

    config = tiny_config(model="GRU")
    corpus = load_corpus(synthetic_dir)
    torch.manual_seed(0)
    model = build_model(config, corpus.vocab_size).eval()
    runner = EpochRunner(model, config, torch.device("cpu"), lambda line: None, interactive=False)
    first, second = runner.run(corpus.valid), runner.run(corpus.valid)
    data = torch.as_tensor(batchify(corpus.valid, config.batch_size))
    hidden, losses = model.init_hidden(), []
    with torch.no_grad():
        for i in range(num_batches(len(corpus.valid), config.batch_size, config.seq_len)):
            x = data[:, i * config.seq_len:(i + 1) * config.seq_len]
            y = data[:, i * config.seq_len + 1:(i + 1) * config.seq_len + 1]
            logits, hidden = model(x.t(), hidden)
            losses.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.t().reshape(-1)))
    assert first == second == pytest.approx(torch.stack(losses).mean().item(), rel=1e-6)


def test_non_interactive_runs_log_about_every_tenth_of_an_epoch(synthetic_dir, tmp_path):
    from ptblm.data import load_corpus, num_batches

    train_run(tiny_config(num_epochs=1, batch_size=4), synthetic_dir, tmp_path, echo=False, interactive=False,
              environ={})
    steps = num_batches(len(load_corpus(synthetic_dir).train), 4, 12)
    lines = [line for line in (tmp_path / rf.LOG_FILE).read_text().splitlines() if "epoch 1 train step" in line]
    assert 10 <= len(lines) <= 12 and lines[-1].split("train step ")[1].startswith(f"{steps}/{steps} (100%)")
    assert "words/s" in lines[0] and "ppl" in lines[0]


def test_find_runs_reads_experiment_folders_and_skips_hidden_ones(synthetic_dir, tmp_path):
    """results/.compile-cache holds Inductor's files: never an experiment, whatever names they have."""
    train_run(tiny_config(num_epochs=1, max_batches=2), synthetic_dir, tmp_path / "3.2" / "gru", echo=False,
              experiment="3.2", setting_index=0, environ={})
    junk = tmp_path / ".compile-cache" / "ab" / rf.CONFIG_FILE
    junk.parent.mkdir(parents=True)
    junk.write_text("not json")
    runs = rf.find_runs(tmp_path)
    assert [(run.experiment, run.folder) for run in runs] == [("3.2", tmp_path / "3.2" / "gru")]


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("tf32", True)])
def test_matmul_precision_is_an_explicit_recorded_choice(precision, tf32, synthetic_dir, tmp_path, torch_tf32_flags):
    """fp32 is strict float32 (TF32 off) whatever the process had set; tf32 only when asked; both recorded."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    train_run(tiny_config(num_epochs=1, max_batches=2, precision=precision), synthetic_dir, tmp_path, echo=False,
              environ={})
    assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    assert rf.read_run(tmp_path).config["precision"] == precision
    assert f"precision {precision}:" in (tmp_path / rf.LOG_FILE).read_text()


def test_a_batch_larger_than_a_split_is_refused_before_any_folder_and_no_rerun_is_offered(tmp_path, synthetic_dir):
    """`ptblm train --batch_size 100000` left results/manual/<run>/ failed, whose note said a rerun with the
    same flags resumes it; a submitted task's folder (which exists before it runs) says the setting must change."""
    from ptblm.data import DataError
    from ptblm.jobs import Setting
    from ptblm.launch.tasks import TrainTask
    from ptblm.status import status_rows

    config = tiny_config(batch_size=100000)
    with pytest.raises(DataError, match=r"^the train split, .*ptb\.train\.txt, has \d+ tokens: they cannot fill one "
                                        r"batch of batch_size 100000 x seq_len 12"):
        train_run(config, synthetic_dir, tmp_path / "manual" / "run", echo=False, environ={})
    assert not (tmp_path / "manual").exists()
    setting = Setting("tiny", 0, config)
    rf.write_submission(setting.run_dir(tmp_path), rf.Submission("local-1", "local", time.time(), 0,
                                                                  config.to_dict()))
    with pytest.raises(DataError):
        TrainTask(setting, str(synthetic_dir), str(tmp_path), threads=1).run({})
    notes = []
    assert status_rows(tmp_path, "tiny", notes=notes)[0]["state"] == rf.FAILED
    assert len(notes) == 1 and notes[0].startswith("setting 0: failed: BatchesDoNotFit: the train split, ")
    assert notes[0].endswith("or a larger train split; the setting itself cannot run, so rerunning it fails the same "
                             "way: change the setting (a changed one trains in a new run folder)") and "resume" not in (
        notes[0]), notes[0]


def test_a_failure_recorded_before_the_setting_errors_had_a_name_is_told_from_one_a_rerun_gets_past():
    from ptblm.status import reruns_fail_again

    assert reruns_fail_again("DataError: the train split, x, has 3 tokens: they cannot fill one batch of "
                             "batch_size 20 x seq_len 35 (needs at least 720 tokens); valid: more data")
    assert reruns_fail_again("BatchesDoNotFit: the valid split, ...")
    assert not reruns_fail_again("DataError: data/ptb/ptb.train.txt is missing: run `make data`")
    assert not reruns_fail_again("RuntimeError: CUDA out of memory") and not reruns_fail_again(None)
