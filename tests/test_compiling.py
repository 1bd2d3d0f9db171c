"""`--compile model|cell`: the compiled model (or time step) equals the plain one, a compiler failure falls
back, and the artefacts written by one process are loaded by the next through the cache folder.

These compile for real (Inductor, with the machine's C++ compiler), at tiny sizes: tens of seconds each.
"""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_config
from ptblm.compiling import COMPILE_CACHE_ENV, cache_counts, compile_cache_dir, use_compile_cache
from ptblm.config import RunConfig, load_yaml
from ptblm.step import CompilingStep, EagerStep, GraphedStep, make_step
from ptblm.optimizers import make_optimizer
from test_step import (assert_close, batches, first_hidden, graph_and_eager_pair, model_and_optimizer, needs_cuda,
                       setting, without_dropout)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch: dynamo's in-process caches would otherwise carry over (and
    past its recompile limit it silently runs eagerly, which would make these tests unable to fail)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled_count() -> int:
    counts = cache_counts()
    return counts["hits"] + counts["misses"]


@pytest.mark.parametrize("model_name, mode", [("GRU", "model"), ("TRANSFORMER", "model"), ("RNN", "cell"),
                                              ("GRU", "cell"), ("LSTM", "cell")])
def test_compiled_training_step_equals_the_eager_one(model_name, mode):
    """Three SGD steps: losses, states, gradients and weights as eager, to float rounding (Inductor fuses
    ops). SGD, not Adam: Adam's first steps are lr * sign(g), which rounding flips where g is near 0.
    The whole model compiled draws its own random numbers, so dropout is off there; the time step
    draws none, so with `cell` the same seed gives the same dropout masks."""
    config = setting(model_name, optimizer="SGD", initial_lr=0.5, dp_keep_prob=1.0 if mode == "model" else 0.8,
                     num_layers=1 if mode == "model" else 2)
    model, optimizer = model_and_optimizer(config)
    twin = copy.deepcopy(model)
    if mode == "model":
        without_dropout(model), without_dropout(twin)
    compiled_before = compiled_count()
    compiled = make_step(model, optimizer, compile_mode=mode)
    eager = EagerStep(twin, make_optimizer(twin, config))
    model.train(), twin.train()
    hidden = twin_hidden = first_hidden(model, config)
    for index, (x, y) in enumerate(batches(config, 3)):
        torch.manual_seed(100 + index)
        loss, hidden = compiled(x, y, hidden)
        torch.manual_seed(100 + index)
        twin_loss, twin_hidden = eager(x, y, twin_hidden)
        assert_close(loss, twin_loss)
        if hidden is not None:
            assert_close(hidden, twin_hidden)
    assert isinstance(compiled, CompilingStep) and compiled.compile_error is None
    assert compiled.first_call_seconds > 0 and compiled_count() > compiled_before  # Inductor did compile
    if mode == "cell":
        assert model.time_step is not model.plain_time_step and twin.time_step is twin.plain_time_step
    for parameter, twin_parameter in zip(model.parameters(), twin.parameters()):
        assert_close(parameter.grad, twin_parameter.grad)
        assert_close(parameter, twin_parameter)


@pytest.mark.parametrize("mode", ["model", "cell"])
def test_a_compiler_failure_warns_and_the_step_runs_uncompiled(mode):
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler on this node")

    config = setting("GRU", optimizer="SGD", initial_lr=0.5, dp_keep_prob=0.8)
    model, optimizer = model_and_optimizer(config)
    twin = copy.deepcopy(model)
    step = CompilingStep(model, optimizer, mode=mode, backend=failing_backend)
    eager = EagerStep(twin, make_optimizer(twin, config))
    model.train(), twin.train()
    (x, y), = batches(config, 1)
    torch.manual_seed(7)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C.. compiler on this node.*running this step "
                                            "uncompiled"):
        loss, hidden = step(x, y, first_hidden(model, config))
    torch.manual_seed(7)
    twin_loss, twin_hidden = eager(x, y, first_hidden(twin, config))
    assert "no C++ compiler on this node" in str(step.compile_error)
    assert model.time_step is model.plain_time_step  # a cell-compiled model is plain again
    assert torch.equal(loss, twin_loss) and torch.equal(hidden, twin_hidden)  # the same dropout masks too
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_the_cache_folder_is_the_users_variable_else_beside_the_results(tmp_path):
    assert compile_cache_dir(tmp_path / "results", environ={}) == tmp_path / "results" / ".compile-cache"
    assert compile_cache_dir(tmp_path / "results", environ={COMPILE_CACHE_ENV: "/scratch/c"}) == \
        type(tmp_path)("/scratch/c")
    environ = {}
    folder = use_compile_cache(tmp_path / "relative" / "cache", environ)
    assert folder.is_dir() and folder.is_absolute() and environ == {COMPILE_CACHE_ENV: str(folder)}


def test_compile_is_an_execution_option_checked_against_the_model():
    config = tiny_config()
    assert config.compile == "off"
    cell = RunConfig.from_dict({**config.to_dict(), **load_yaml("{compile: cell, cuda_graph: on}", "x")})
    assert (cell.compile, cell.cuda_graph) == ("cell", "on")  # `on`, which YAML 1.1 reads as true, as written
    assert cell.identity() == config.identity() and cell.run_name() == config.run_name()
    assert RunConfig.from_dict({**config.to_dict(), **load_yaml("compile: off", "x")}).compile == "off"
    for written in ("true", "True", "yes"):  # quoted as written, never as 'on'
        with pytest.raises(ValueError, match=f"compile = '{written}' is invalid; valid: one of off, model, cell"):
            RunConfig.from_dict({**config.to_dict(), **load_yaml(f"compile: {written}", "x")})
    with pytest.raises(ValueError, match="compile = 'cell' is invalid; valid: off or model for TRANSFORMER"):
        tiny_config(model="TRANSFORMER", compile="cell")
    with pytest.raises(ValueError, match="compile = 'cell' is invalid; valid: off or model for GRU with impl "
                                         "'reference'"):
        tiny_config(impl="reference", compile="cell")


def train_in_subprocess(out, data_dir, results_dir) -> dict:
    """`ptblm train --compile cell` in a fresh interpreter: nothing compiled in memory, only the cache."""
    env = {**os.environ, "PTBLM_RESULTS": str(results_dir), "PYTHONPATH": str(REPO / "src")}
    env.pop(COMPILE_CACHE_ENV, None)
    subprocess.run([sys.executable, "-m", "ptblm.cli", "train", "--model", "GRU", "--optimizer", "ADAM",
                    "--initial_lr", "0.01", "--batch_size", "4", "--hidden_size", "16", "--num_layers", "1",
                    "--dp_keep_prob", "0.8", "--seq_len", "6", "--emb_size", "8", "--num_epochs", "1",
                    "--max_batches", "3", "--device", "cpu", "--compile", "cell", "--data", str(data_dir),
                    "--out", str(out)], check=True, env=env, capture_output=True, text=True, timeout=600)
    return json.loads((out / "curves.json").read_text())


def test_a_second_process_loads_the_compiled_graphs_from_the_results_cache(synthetic_dir, tmp_path):
    results = tmp_path / "results"
    first = train_in_subprocess(tmp_path / "first", synthetic_dir, results)
    second = train_in_subprocess(tmp_path / "second", synthetic_dir, results)
    first_log, second_log = ((tmp_path / name / "log.txt").read_text() for name in ("first", "second"))
    assert "compiled the training step" in first_log and ": 0 loaded, " in first_log
    assert "compiled the evaluation step" in first_log
    for line in [line for line in second_log.splitlines() if "compiled the " in line]:
        assert line.endswith(" compiled)") and " 0 compiled)" in line and ": 0 loaded" not in line, line
    assert any((results / ".compile-cache").rglob("*")), "nothing was written to <results>/.compile-cache"
    # The same kernels, the same seed: the same curves.
    assert [e["train_ppl"] for e in first["epochs"]] == [e["train_ppl"] for e in second["epochs"]]
    assert [e["valid_ppl"] for e in first["epochs"]] == [e["valid_ppl"] for e in second["epochs"]]


# ------------------------------------------------------------------------------------------ CUDA only

@needs_cuda
@pytest.mark.parametrize("model_name, mode", [("GRU", "model"), ("TRANSFORMER", "model"), ("GRU", "cell"),
                                              ("LSTM", "model"), ("LSTM", "cell")])
def test_compiled_graph_training_step_equals_eager(model_name, mode):
    """The compiled model inside the captured step: warm-up (which compiles), capture and replays."""
    config, (model, optimizer), (twin, twin_optimizer) = graph_and_eager_pair(model_name, "SGD", 0.5)
    compiled = make_step(model, optimizer, cuda_graph=True, compile_mode=mode)
    eager = EagerStep(twin, twin_optimizer)
    model.train(), twin.train()
    hidden = twin_hidden = first_hidden(model, config, "cuda")
    for x, y in batches(config, 8, "cuda"):
        loss, hidden = compiled(x, y, hidden)
        twin_loss, twin_hidden = eager(x, y, twin_hidden)
        assert_close(loss, twin_loss, 1e-4)
        if hidden is not None:
            assert_close(hidden, twin_hidden, 1e-4)
    assert compiled.compile_error is None and isinstance(compiled.step, GraphedStep)
    assert compiled.step.graph is not None and compiled.step.capture_error is None
    for parameter, twin_parameter in zip(model.parameters(), twin.parameters()):
        assert_close(parameter, twin_parameter, 1e-4)

