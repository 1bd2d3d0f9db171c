"""After training: `ptblm evaluate` (ptblm.evaluation), `train --evaluate` on a finished run, `ptblm generate`."""
from __future__ import annotations

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
    with pytest.raises(UnusableRun, match="has no best.pt"):
        evaluate_run(running)
    assert rf.read_curves(running).test_ppl is None


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
