"""`ptblm bench`: it runs, and what it writes is consistent. No timing assertions: CI machines vary."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO
from ptblm.bench.cases import BenchCase, epoch_seconds, paths_for, select_cases, suite_cases
from ptblm.bench.command import run_bench
from ptblm.cli import main
from ptblm.config import MODELS
from ptblm.models import build_baseline
from ptblm.step import EagerStep
from ptblm.optimizers import make_optimizer

TINY = dict(vocab_size=50, seq_len=5, emb_size=8)


def tiny_cases() -> list[BenchCase]:
    return [BenchCase("RNN", 8, 2, 4, 0.8, suite_settings=2, suite_epochs=40, **TINY),
            BenchCase("GRU", 8, 1, 4, 0.5, suite_settings=1, suite_epochs=20, **TINY),
            BenchCase("LSTM", 8, 2, 4, 0.5, suite_settings=1, suite_epochs=20, **TINY),
            BenchCase("TRANSFORMER", 16, 1, 4, 0.9, suite_settings=1, suite_epochs=20, **TINY)]


def test_bench_writes_every_path_of_every_case_with_consistent_figures(tmp_path):
    cases = tiny_cases()
    path = run_bench(cases, torch.device("cpu"), tmp_path, warmup=1, repeats=2, complete_suite=True,
                     echo=lambda line: None, environ={})
    assert path.parent == tmp_path and path.name.startswith("bench-") and path.suffix == ".json"
    report = json.loads(path.read_text())
    assert report["torch_version"] == torch.__version__ and report["device"].startswith("cpu")
    assert report["code_version"] and report["timed_steps"] == 2 and report["corpus_tokens"]["train"] == 929_589
    results = {(r["case"], r["path"]): r for r in report["results"]}
    assert sorted(results) == sorted((c.name, p) for c in cases for p in paths_for(c, torch.device("cpu")))
    assert [p for c, p in results if c.startswith("transformer")] == ["default", "builtin"]
    for case in cases:
        builtin = results[case.name, "builtin"]
        assert builtin["ratio_to_builtin"] == 1.0
        for path_name in paths_for(case, torch.device("cpu")):
            r = results[case.name, path_name]
            assert "error" not in r and r["train_ms"] > 0 and r["eval_ms"] > 0 and not r["cuda_graph"]
            assert r["tokens_per_second"] == pytest.approx(4 * 5 / r["train_ms"] * 1000)
            assert r["ratio_to_builtin"] == pytest.approx(r["train_ms"] / builtin["train_ms"])
            assert r["epoch_seconds"] == pytest.approx(epoch_seconds(case, r["train_ms"], r["eval_ms"]))
    suite = report["suite"]
    assert suite["settings"] == 5 and suite["epochs"] == 100
    assert set(suite["seconds"]) == {"default", "builtin"}  # `reference` is not timed for the CPU Transformer
    assert suite["seconds"]["default"] == pytest.approx(
        sum(c.suite_epochs * results[c.name, "default"]["epoch_seconds"] for c in cases))


def test_an_epoch_is_every_ptb_training_batch_then_every_validation_batch():
    case = BenchCase("GRU", 512, 2, 20, 0.5)
    # (929,589 // 20 - 1) // 35 = 1327 training and (73,760 // 20 - 1) // 35 = 105 validation batches
    assert epoch_seconds(case, train_ms=10.0, eval_ms=5.0) == pytest.approx(1327 * 0.010 + 105 * 0.005)


def test_full_cases_are_the_course_suites_eleven_shapes():
    cases = suite_cases(REPO / "jobs")
    assert [c.name for c in cases] == [
        "rnn-h512-l2-bs128", "rnn-h512-l2-bs20", "gru-h512-l2-bs128", "gru-h512-l2-bs20", "gru-h256-l2-bs128",
        "gru-h2048-l2-bs128", "gru-h512-l4-bs128", "transformer-h512-l6-bs128", "transformer-h512-l2-bs128",
        "transformer-h2048-l2-bs128", "transformer-h1024-l6-bs128"]
    assert sum(c.suite_settings for c in cases) == 15 and sum(c.suite_epochs for c in cases) == 300
    assert cases[0].suite_settings == 4 and cases[0].seq_len == 35 and cases[0].emb_size == 200
    assert [c.name for c in select_cases(cases, ["gru-h512-l2"])] == ["gru-h512-l2-bs128", "gru-h512-l2-bs20"]
    with pytest.raises(ValueError, match="--only lstm matches no case; cases: rnn-h512-l2-bs128"):
        select_cases(cases, ["lstm"])


@pytest.mark.parametrize("model, layer, state_tensors", [("GRU", nn.GRU, 1), ("RNN", nn.RNN, 1), ("LSTM", nn.LSTM, 2)])
def test_builtin_recurrent_lm_takes_the_course_models_inputs(model, layer, state_tensors):
    case = BenchCase(model, 8, 2, 4, 0.8, **TINY)
    config = case.config()
    lm = build_baseline(config, case.vocab_size)
    assert isinstance(lm.recurrent, layer) and lm.recurrent.num_layers == 2
    assert lm.recurrent.dropout == pytest.approx(0.2)
    inputs = torch.randint(case.vocab_size, (case.seq_len, case.batch_size))  # (seq, batch)
    logits, hidden = lm(inputs, lm.init_hidden())
    hidden = (hidden,) if state_tensors == 1 else hidden
    assert logits.shape == (5, 4, 50) and [h.shape for h in hidden] == [(2, 4, 8)] * state_tensors
    before = lm.out_layer.weight.detach().clone()
    loss, _ = EagerStep(lm, make_optimizer(lm, config))(inputs.t(), inputs.t(), lm.init_hidden())
    assert torch.isfinite(loss) and not torch.equal(before, lm.out_layer.weight)


def test_bench_command_writes_json_and_names_the_cases_when_none_match(tmp_path, capsys):
    assert main(["bench", "--only", "rnn", "--steps", "1", "--warmup", "0", "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    written = list(Path(tmp_path).glob("bench-*.json"))
    assert len(written) == 1
    results = json.loads(written[0].read_text())["results"]
    assert [(r["case"], r["path"]) for r in results] == [
        ("rnn-h128-l2-bs20", "default"), ("rnn-h128-l2-bs20", "reference"), ("rnn-h128-l2-bs20", "builtin")]
    assert "rnn-h128-l2-bs20" in capsys.readouterr().out
    assert main(["bench", "--only", "tcn", "--device", "cpu", "--out", str(tmp_path)]) == 1
    assert ("matches no case; cases: " + ", ".join(f"{model.lower()}-h128-l2-bs20" for model in MODELS)
            in capsys.readouterr().err)  # one small case per registered model


def test_the_compiled_path_reports_its_compile_time_and_the_suite_pays_it_once_per_setting(tmp_path):
    case = BenchCase("GRU", 8, 1, 4, 1.0, suite_settings=3, suite_epochs=60, **TINY)
    path = run_bench([case], torch.device("cpu"), tmp_path, warmup=1, repeats=2, complete_suite=True,
                     compiled=True, echo=lambda line: None, environ={})
    torch._dynamo.reset()
    report = json.loads(path.read_text())
    results = {r["path"]: r for r in report["results"]}
    assert list(results) == ["default", "reference", "builtin", "compiled-model", "compiled-cell"]
    for name in ("compiled-model", "compiled-cell"):
        compiled = results[name]
        assert "error" not in compiled and compiled["train_ms"] > 0 and compiled["eval_ms"] > 0
        assert compiled["compile_seconds"] > 0 and compiled["cache_loaded"] + compiled["cache_compiled"] >= 2
        assert report["suite"]["seconds"][name] == pytest.approx(
            60 * compiled["epoch_seconds"] + 3 * compiled["compile_seconds"])
    assert all("compile_seconds" not in results[name] for name in ("default", "reference", "builtin"))
    assert report["suite"]["seconds"]["default"] == pytest.approx(60 * results["default"]["epoch_seconds"])


def test_packed_runs_are_timed_together_and_their_tokens_per_second_summed(tmp_path, capsys):
    case = BenchCase("GRU", 8, 1, 4, 0.8, **TINY)
    lines = []
    path = run_bench([case], torch.device("cpu"), tmp_path, warmup=1, repeats=2, runs_per_gpu=2, echo=lines.append,
                     environ={})
    report = json.loads(path.read_text())
    single = next(r for r in report["results"] if r["path"] == "default")
    packed, = report["packing"]
    assert packed["case"] == case.name and packed["runs"] == 2 and len(packed["per_run"]) == 2
    assert all("error" not in r and r["path"] == "default" and r["train_ms"] > 0 for r in packed["per_run"])
    assert packed["tokens_per_second"] == pytest.approx(sum(r["tokens_per_second"] for r in packed["per_run"]))
    assert packed["gain"] == pytest.approx(packed["tokens_per_second"] / single["tokens_per_second"])
    assert packed["slowdown_per_run"] == pytest.approx(packed["train_ms"] / single["train_ms"])
    assert any(line.startswith(f"{case.name}: 2 runs at once: ") and "the tokens/s of one run alone" in line
               for line in lines)
    with pytest.raises(SystemExit) as usage:  # a usage error, refused by the flag's type
        main(["bench", "--runs-per-gpu", "0", "--device", "cpu", "--out", str(tmp_path)])
    assert usage.value.code == 2
    assert "argument --runs-per-gpu: '0' is not a positive integer; valid: 1 or more" in capsys.readouterr().err


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("tf32", True)])
def test_bench_sets_the_matmul_precision_it_records(precision, tf32, tmp_path, torch_tf32_flags):
    torch.backends.cuda.matmul.allow_tf32 = not tf32
    path = run_bench(tiny_cases()[1:2], torch.device("cpu"), tmp_path, precision=precision, warmup=1, repeats=1,
                     echo=lambda *_: None, environ={})
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    assert json.loads(path.read_text())["precision"] == precision


def test_bench_times_every_path_in_fp16_with_its_loss_scaling(tmp_path):
    """fp16 trains through the run's loss scaling and a fused optimizer: every ptblm path times. Of the yardsticks
    only nn.LSTM may fail on a CPU: under float16 autocast it goes to oneDNN, which has no float16 LSTM without
    AVX-512 FP16 (recorded as that path's error, as the bench records any)."""
    path = run_bench(tiny_cases(), torch.device("cpu"), tmp_path, precision="fp16", warmup=1, repeats=1,
                     echo=lambda *_: None, environ={})
    report = json.loads(path.read_text())
    assert report["precision"] == "fp16"
    errors = {(r["case"], r["path"]): r["error"] for r in report["results"] if "error" in r}
    assert set(errors) <= {("lstm-h8-l2-bs4", "builtin")}, errors
    timed = [r for r in report["results"] if "error" not in r]
    assert len(timed) >= len(report["results"]) - 1 and all(r["train_ms"] > 0 and r["eval_ms"] > 0 for r in timed)
