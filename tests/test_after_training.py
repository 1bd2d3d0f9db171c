"""After training: `ptblm evaluate` (ptblm.evaluation), `train --evaluate` on a finished run, `ptblm generate`."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from conftest import tiny_config
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.data import UNK, DataError, write_synthetic_corpus
from ptblm.evaluation import (UnusableRun, evaluate_run, evaluate_targets, needs_test_pass, run_folder_named,
                              run_folders_named)
from ptblm.report.samples import Decoding, continue_prompt, continue_run
from ptblm.report.trained import load_trained
from ptblm.runfolder import hold_run_folder
from ptblm.train import train_run
from runtree import write_status


@pytest.fixture(scope="module")
def finished(synthetic_dir, tmp_path_factory):
    """results/unit/<two finished GRU runs of one setting>: `plain` without a test pass, `tested` with one."""
    results = tmp_path_factory.mktemp("results")
    config = tiny_config(num_epochs=2, max_batches=6)
    plain, tested = results / "unit" / "plain", results / "unit" / "tested"
    train_run(config, synthetic_dir, plain, echo=False, environ={})
    train_run(config.replace(evaluate=True), synthetic_dir, tested, echo=False, environ={})
    return results, plain, tested


def test_evaluate_fills_the_test_perplexity_the_trainer_would_have(finished, tmp_path):
    results, plain, tested = finished
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (rf.CONFIG_FILE, rf.CURVES_FILE, rf.STATUS_FILE, rf.BEST_CHECKPOINT):
        (copy / name).write_bytes((plain / name).read_bytes())
    assert needs_test_pass(copy)
    done = evaluate_targets([str(copy)], results, None, "cpu", notify=lambda line: None).evaluated
    expected = rf.read_curves(tested).test_ppl
    assert [(d.folder, d.epoch) for d in done] == [(copy, rf.read_curves(copy).best_epoch().epoch)]
    assert rf.read_curves(copy).test_ppl == pytest.approx(expected, rel=1e-9) and not needs_test_pass(copy)
    assert rf.read_curves(copy).epochs == rf.read_curves(plain).epochs  # nothing else changed
    assert "test ppl" in (copy / rf.LOG_FILE).read_text()


def test_train_evaluate_on_a_finished_run_does_the_test_pass(finished, synthetic_dir, tmp_path, capsys):
    _, plain, tested = finished
    config = tiny_config(num_epochs=2, max_batches=6)
    run = tmp_path / "run"
    train_run(config, synthetic_dir, run, echo=False, environ={})
    status = train_run(config.replace(evaluate=True), synthetic_dir, run, environ={})
    assert status.state == rf.DONE and "already" not in capsys.readouterr().out
    assert rf.read_curves(run).test_ppl == pytest.approx(rf.read_curves(tested).test_ppl, rel=1e-9)
    train_run(config.replace(evaluate=True), synthetic_dir, run, environ={})  # evaluated: now it is "already done"
    assert "already done" in capsys.readouterr().out


def test_unfinished_busy_or_weightless_runs_are_skipped_with_the_reason(finished, tmp_path):
    results, plain, _ = finished
    said = []
    running = tmp_path / "running"
    running.mkdir()
    for name in (rf.CONFIG_FILE, rf.CURVES_FILE, rf.BEST_CHECKPOINT):
        (running / name).write_bytes((plain / name).read_bytes())
    write_status(running, rf.RunStatus(state=rf.RUNNING, epochs_done=1, num_epochs=2))
    assert evaluate_targets([str(running)], results, None, "cpu", notify=said.append).evaluated == []
    assert said == [f"skip: {running} is running, not finished: its best weights may still change; evaluate it "
                    f"once it is done (or train it with --evaluate)"]
    write_status(running, rf.RunStatus(state=rf.DONE, epochs_done=2, num_epochs=2))
    with hold_run_folder(running):
        evaluate_targets([str(running)], results, None, "cpu", notify=said.append)
    assert said[-1].startswith(f"skip: {running} is being written by another ptblm run (host ")
    (running / rf.BEST_CHECKPOINT).unlink()
    best = rf.read_curves(running).best_epoch()
    with pytest.raises(rf.NoBestWeights, match=re.escape(
            f"{running} has no best.pt: epoch {best.epoch} had the best validation perplexity "
            f"({best.valid_ppl:.2f}), but its weights are gone (deleted, or the results copied without their "
            f"checkpoints): copy best.pt back from where the run trained, or `ptblm train <its flags> --out "
            f"{running} --force` reruns only this run from scratch")):
        evaluate_run(running)
    assert rf.read_curves(running).test_ppl is None


def test_a_missing_best_pt_is_said_alike_by_every_reader_of_weights_with_the_reason_its_curves_give(
        finished, synthetic_dir, tmp_path):
    """evaluate said "no epoch had a finite validation perplexity" of a run whose best.pt was only not copied,
    generate "missing; --force reruns it" of a diverged run (a rerun diverges the same way)."""
    from runtree import cli

    results, plain, _ = finished
    copied = tmp_path / "results" / "unit" / "copied"  # rsync-ed without its checkpoints
    shutil.copytree(plain, copied)
    (copied / rf.BEST_CHECKPOINT).unlink()
    diverged = tmp_path / "results" / "unit" / "diverged"
    train_run(tiny_config(model="RNN", optimizer="SGD", initial_lr=1e30, num_epochs=2, max_batches=3), synthetic_dir,
              diverged, echo=False, environ={})
    best = rf.read_curves(copied).best_epoch()
    reasons = {copied: f"{copied} has no best.pt: epoch {best.epoch} had the best validation perplexity "
                       f"({best.valid_ppl:.2f}), but its weights are gone (deleted, or the results copied without "
                       f"their checkpoints): copy best.pt back from where the run trained",
               diverged: f"{diverged} has no best.pt: none of its 2 epochs had a finite validation perplexity (it "
                         f"diverged), so it has no weights to use; rerunning it would diverge the same way: train "
                         f"the setting with a lower initial_lr"}
    for folder, reason in reasons.items():
        before = sorted((path.name, path.stat().st_mtime_ns) for path in folder.iterdir())
        code, output = cli("evaluate", folder, "--again", "--data", synthetic_dir)
        assert code == 1 and output.startswith(f"skip: {reason}"), output
        code, output = cli("generate", folder, "--prompt", "w1", "--data", synthetic_dir)
        assert code == 1 and output.startswith(f"ptblm generate: error: {reason}"), output
        for command in ("samples", "gradients"):
            code, output = cli(command, "--rnn", folder, "--data", synthetic_dir, "--results", tmp_path / "results")
            assert code == 1 and f"no trained RNN named with --rnn: {reason}" in output, output
        assert "no epoch had a finite" not in output and "Traceback" not in output
        assert sorted((path.name, path.stat().st_mtime_ns) for path in folder.iterdir()) == before
    assert "--force` reruns" not in cli("generate", diverged, "--prompt", "w1", "--data", synthetic_dir)[1]


def test_another_corpus_is_refused(finished, tmp_path):
    _, plain, _ = finished
    other = write_synthetic_corpus(tmp_path / "other", seed=3, vocab_size=60, tokens=(4000, 1200, 1300))
    with pytest.raises(DataError, match=f"{other} is not the corpus {plain} was trained on"):
        evaluate_run(plain, data_dir=other, device_name="cpu")


def test_runs_are_named_by_path_exp_run_or_experiment(finished):
    results, plain, tested = finished
    assert run_folders_named(["unit"], results) == [plain, tested]
    assert run_folders_named(["unit/plain", str(tested)], results) == [plain, tested]
    # named twice, or as an experiment and as one of its runs: each folder once (was evaluated twice)
    assert run_folders_named(["unit/tested", "unit", str(plain), "unit/tested"], results) == [tested, plain]
    assert run_folder_named("unit/tested", results) == tested
    with pytest.raises(UnusableRun, match="unit names 2 runs"):
        run_folder_named("unit", results)
    with pytest.raises(UnusableRun, match="3.9: neither a run folder .* valid: a run folder's path, EXP/RUN or EXP"):
        run_folders_named(["3.9"], results)


def test_greedy_continuation_agrees_with_itself_and_reads_unknown_words_as_unk(finished):
    _, plain, _ = finished
    result = continue_run(plain, "w1 W2 nonsense w3", 6, Decoding())
    assert result.prompt == ["w1", "w2", UNK, "w3"] and result.unknown == ["nonsense"]
    assert len(result.words) == 6
    trained = load_trained(plain, None, batch_size=1)
    with torch.no_grad():  # the first word is the argmax after the whole prompt
        ids = torch.tensor([trained.corpus.word_to_id[w] for w in result.prompt]).unsqueeze(1)  # (4, 1)
        logits, _ = trained.model(ids, trained.model.init_hidden())  # (4, 1, vocab)
    assert trained.corpus.id_to_word[int(logits[-1, 0].argmax())] == result.words[0]
    # greedy decoding is the same whether a generated word came from the model or from the prompt
    assert continue_prompt(trained, result.prompt + result.words[:2], 4, Decoding()) == result.words[2:]


def test_sampling_follows_its_seed_and_no_unk_never_picks_unk(finished):
    _, plain, _ = finished
    sampled = [continue_run(plain, "w1", 40, Decoding(temperature=1.5, seed=seed, no_unk=True)).words
               for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]
    assert UNK not in sampled[0] + sampled[2]


def test_the_commands(finished, tmp_path, capsys, monkeypatch):
    results, plain, _ = finished
    monkeypatch.delenv("PTB_DIR", raising=False)  # the vocabulary of the data each run recorded
    assert main(["generate", "unit/plain", "--results", str(results), "--prompt", "w1 zzz", "--length", "3"]) == 0
    note, line = capsys.readouterr().out.splitlines()
    assert note == f"note: not in the vocabulary of {plain}, read as <unk>: zzz"
    assert line.startswith(f"[w1 {UNK}] ") and len(line.split("] ")[1].split()) == 3
    assert main(["evaluate", "unit", "--results", str(results), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{results}/unit/plain: test ppl ") and "already" in out[1]
    assert main(["generate", "unit", "--results", str(results), "--prompt", "w1"]) == 1
    assert "unit names 2 runs" in capsys.readouterr().err


def test_a_damaged_run_is_refused_before_its_lock_is_taken(finished, tmp_path):
    """evaluate took the lock of a run it then skipped as damaged: the lock's content and mtime changed, though
    nothing of a damaged run may. Every taker of a lock (RunFolder.hold) now reads the run first."""
    from runtree import cli

    _, plain, _ = finished
    folder = tmp_path / "results" / "unit" / "damaged"
    shutil.copytree(plain, folder)
    path = folder / rf.SUBMISSION_FILE
    path.write_text(json.dumps({"format_version": rf.FORMAT_VERSION + 1, "executor": "local", "submitted_at": 1.0}))
    lock = folder / rf.LOCK_FILE

    def files() -> dict:
        return {entry.name: (entry.read_bytes(), entry.stat().st_mtime_ns) for entry in folder.iterdir()
                if entry.is_file()}

    before = files()
    assert lock.name in before
    code, output = cli("evaluate", folder, "--again")
    assert code == 1 and output.startswith(f"skip: {path}: format_version {rf.FORMAT_VERSION + 1} is newer"), output
    assert files() == before
    rf.RunFolder(folder).mark_failed_before_start(2, RuntimeError("no data on the node"))  # the launch layer's
    assert files() == before
    with pytest.raises(rf.Damaged, match=re.escape(f"{path}: format_version")), rf.RunFolder(folder).hold():
        pass
    assert files() == before
    with rf.RunFolder(folder).hold(force=True) as writer:  # --force takes it: it empties the folder
        assert writer.holder is not None
