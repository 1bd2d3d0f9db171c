"""The model registry and the one interface: every architecture is built from its setting and used the same way,
nothing outside the models package branches on a model's name, and PTB runs are what they were before the
registry (losses and run names computed on main's code, commit 3dbba05, before the refactor)."""
from pathlib import Path

import pytest
import torch

from conftest import stopped_and_unbroken_curves, tiny_config
from ptblm import runfolder as rf
from ptblm.config import MODELS, RunConfig
from ptblm.models import ARCHITECTURES, architecture, build_baseline, build_model
from ptblm.models.interface import map_state, state_tensors
from ptblm.step import EagerStep, make_step
from ptblm.optimizers import make_optimizer
from ptblm.train import train_run

SRC = Path(__file__).resolve().parents[1] / "src" / "ptblm"
VOCAB = 30


def setting(model: str, **changes) -> RunConfig:
    return tiny_config(model=model, batch_size=3, seq_len=5, hidden_size=8, emb_size=6, **changes)


def shapes(state):
    return map_state(lambda tensor: tuple(tensor.shape), state)


def test_config_models_are_the_registry_s_entries_in_order():
    assert tuple(ARCHITECTURES) == MODELS
    assert [name for name in MODELS if name in ("RNN", "GRU", "LSTM", "TRANSFORMER")] == [
        "RNN", "GRU", "LSTM", "TRANSFORMER"]  # a new entry may go anywhere
    assert all(architecture(name).name == name for name in MODELS)
    with pytest.raises(ValueError, match="model = 'TCN' is not an architecture ptblm knows; valid: RNN, GRU"):
        architecture("TCN")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_takes_batch_major_tokens_and_a_state_and_returns_logits_and_the_next_state(model):
    config = setting(model)
    torch.manual_seed(0)
    lm = build_model(config, VOCAB).eval()
    state = lm.initial_state(4)  # another batch than the setting's: the state follows the batch asked for
    assert (state is None) == (not architecture(model).recurrent)
    assert all(not tensor.any() for tensor in state_tensors(state))
    tokens = torch.randint(VOCAB, (4, 7), generator=torch.Generator().manual_seed(1))  # (batch, seq)
    logits, next_state = lm.lm_forward(tokens, state)
    assert logits.shape == (4, 7, VOCAB) and shapes(next_state) == shapes(state)
    # logits, not log-probabilities: the step applies the softmax (the Transformer's forward still returns log-probs)
    assert not torch.allclose(torch.logsumexp(logits, dim=-1), torch.zeros(4, 7))
    # carrying the state over two halves is one pass over the whole (a recurrent model's promise)
    if state is not None:
        first, middle = lm.lm_forward(tokens[:, :3], state)
        second, last = lm.lm_forward(tokens[:, 3:], middle)
        torch.testing.assert_close(torch.cat([first, second], dim=1), logits)
        for got, want in zip(state_tensors(last), state_tensors(next_state)):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("model", MODELS)
def test_the_step_trains_every_model_and_its_builtin_baseline_through_the_interface(model):
    """The baseline where the registry names one (it is optional)."""
    config = setting(model, dp_keep_prob=1.0)  # no dropout: the same batch again must cost less
    tokens = torch.randint(VOCAB, (3, 11), generator=torch.Generator().manual_seed(2))
    x, y = tokens[:, :-1], tokens[:, 1:]  # (batch, seq) each
    for build in (build_model, *([build_baseline] if architecture(model).baseline else [])):
        torch.manual_seed(0)
        lm = build(config, VOCAB).train()
        before = [p.detach().clone() for p in lm.parameters()]
        step = make_step(lm, make_optimizer(lm, config))
        assert isinstance(step, EagerStep)
        state = lm.initial_state(config.batch_size)
        loss, next_state = step(x, y, state)
        assert loss.dim() == 0 and 0 < loss.item() < 10 and shapes(next_state) == shapes(state)
        assert all(tensor.grad_fn is None for tensor in state_tensors(next_state))  # detached
        assert all(not torch.equal(b, p) for b, p in zip(before, lm.parameters())), build.__name__
        assert step(x, y, state)[0].item() < loss.item()  # the same batch again: learnt something


def test_no_code_outside_the_models_package_branches_on_a_model_s_name():
    """The trainer, the step, the bench and the analyses read the registry and the interface; only data
    (the jobs files, report/trained.py's table of the runs analysed by default) names a model."""
    users = ["step.py", "epochs.py", "bench/cases.py", "bench/timing.py", "bench/command.py", "compiling.py",
             "train.py", "optimizers.py", "devices.py", "resuming.py", "report/samples.py", "report/gradients.py"]
    for path in users:
        text = (SRC / path).read_text()
        for name in MODELS:
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path} names {name}"


# --- a PTB run is what it was: values computed on main's code (3dbba05) before the registry ----------------

BEFORE_THE_REGISTRY = {  # model: (run name, train ppl per epoch, valid ppl per epoch)
    "RNN": ("rnn_sgd_lr1_bs8_h16_l2_keep0.8_seq12_emb12_ep2_maxb3",
            [56.06271969303213, 44.13026960132024], [48.11540089623903, 35.842926030388945]),
    "GRU": ("gru_adam_lr0.01_bs8_h16_l2_keep0.8_seq12_emb12_ep2_maxb3",
            [58.25075357170854, 50.71081068089615], [53.59959725413298, 42.37579566804183]),
    "TRANSFORMER": ("transformer_adam_lr0.001_bs8_h16_l2_keep0.8_seq12_emb12_ep2_heads2_maxb3",
                    [68.06153717020435, 47.991380875849046], [45.380423047683536, 39.60264034322363]),
}
OPTIMIZERS = {"RNN": dict(optimizer="SGD", initial_lr=1.0), "GRU": dict(optimizer="ADAM", initial_lr=0.01),
              "TRANSFORMER": dict(optimizer="ADAM", initial_lr=0.001, n_heads=2)}


@pytest.mark.parametrize("model", list(BEFORE_THE_REGISTRY))
def test_a_ptb_run_has_the_name_and_curves_it_had_before_the_registry(model, synthetic_dir, tmp_path):
    """Two epochs of three batches with dropout on the session's synthetic corpus (seed 3). Bit for bit on the
    machine they were computed on; the tolerance only absorbs another CPU's float32 kernels, far below what
    a change in dropout masks, initialisation, batch order or loss would move."""
    config = RunConfig.from_dict(dict(model=model, batch_size=8, hidden_size=16, num_layers=2, dp_keep_prob=0.8,
                                      seq_len=12, emb_size=12, num_epochs=2, max_batches=3, device="cpu",
                                      **OPTIMIZERS[model]))
    name, train_ppl, valid_ppl = BEFORE_THE_REGISTRY[model]
    assert config.run_name() == name
    train_run(config, synthetic_dir, tmp_path / name, echo=False, interactive=False, environ={})
    run = rf.read_run(tmp_path / name)
    assert run.provenance["run_name"] == name
    assert [e.train_ppl for e in run.curves.epochs] == pytest.approx(train_ppl, rel=1e-5, abs=0)
    assert [e.valid_ppl for e in run.curves.epochs] == pytest.approx(valid_ppl, rel=1e-5, abs=0)


# --- a new model is one file and one registry entry, as the README's "Extending ptblm" says ----------------------

TOY_FILE = '''"""A leaky RNN, written as the README says: the course's constructor and one time step, nothing else.

    h_t = (h_{t-1} + tanh(layers[l](cat([x_t, h_{t-1}])))) / 2
"""
import torch
from torch import nn

from ._recurrent import RecurrentLM, stacked_linears


class Toy(RecurrentLM):
    def __init__(self, emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers, dp_keep_prob,
                 impl="fast"):
        super().__init__(emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers, dp_keep_prob, impl)
        self.word_embeddings = nn.Embedding(vocab_size, emb_size)
        self.layers = stacked_linears(emb_size, hidden_size, num_layers)
        self.dropout = nn.Dropout(1 - dp_keep_prob)
        self.out_layer = nn.Linear(hidden_size, vocab_size)

    def _cell(self, layer, x, h):
        return (h + torch.tanh(self.layers[layer](torch.cat([x, h], dim=-1)))) / 2
'''


def command_helps_of(command: str) -> str:
    import contextlib
    import io

    from ptblm.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([command, "--help"])
    return out.getvalue()


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """TOY_FILE as src/ptblm/models/toy.py (a folder on the package's path) and its one registry entry (config's
    MODELS and model choices are computed from the registry at import: patched here, as importing would)."""
    import sys

    import ptblm.models
    from ptblm import config as config_module
    from ptblm.models import Architecture

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_FILE)
    monkeypatch.setattr(ptblm.models, "__path__", [*ptblm.models.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "ptblm.models.toy", raising=False)
    monkeypatch.setitem(ARCHITECTURES, "TOY", Architecture("TOY", build="toy:Toy.from_config", recurrent=True))
    monkeypatch.setattr(config_module, "MODELS", (*MODELS, "TOY"))
    monkeypatch.setitem(config_module.CHOICES, "model", (*MODELS, "TOY"))
    yield "TOY"
    sys.modules.pop("ptblm.models.toy", None)


def test_a_model_file_with_a_constructor_and_a_cell_is_all_a_new_model_takes(toy, synthetic_dir, tmp_path):
    """It validates, passes the registry's own tests (without a builtin baseline), trains into its own run folder,
    resumes to the unbroken curves, is benched on each path, runs both impls and --compile cell alike, and
    continues a prompt: nothing else in ptblm had to learn its name."""
    from ptblm.bench.cases import BenchCase, paths_for
    from ptblm.bench.timing import bench_path
    from ptblm.report.gradients import write_gradients
    from ptblm.report.samples import Decoding, continue_run, write_samples
    from ptblm.report.trained import analysed_runs, load_trained

    test_every_model_takes_batch_major_tokens_and_a_state_and_returns_logits_and_the_next_state(toy)
    test_the_step_trains_every_model_and_its_builtin_baseline_through_the_interface(toy)
    config = tiny_config(model=toy, num_epochs=2, max_batches=3)
    assert config.run_name().startswith("toy_adam_lr0.01_bs8")
    unbroken, stopped = tmp_path / "unbroken", tmp_path / "stopped"
    assert train_run(config, synthetic_dir, unbroken, echo=False, interactive=False, environ={}).state == rf.DONE
    status = train_run(config, synthetic_dir, stopped, echo=False, interactive=False,
                       should_stop=lambda: (stopped / rf.LAST_CHECKPOINT).exists(), environ={})
    assert (status.state, status.epochs_done) == (rf.CANCELLED, 1)
    assert train_run(config, synthetic_dir, stopped, echo=False, interactive=False, environ={}).state == rf.DONE
    assert [(e.train_ppl, e.valid_ppl) for e in rf.read_curves(stopped).epochs] == [
        (e.train_ppl, e.valid_ppl) for e in rf.read_curves(unbroken).epochs]
    assert len(continue_run(unbroken, "w1 w2", 4, Decoding(temperature=1.0)).words) == 4
    analysed = {run.model: run for run in analysed_runs()}[toy]  # samples and gradients take it: --toy DIR
    assert (analysed.flag, analysed.experiment, analysed.required) == ("--toy", "example-toy", False)
    assert "--toy DIR" in command_helps_of("samples") and "--toy DIR" in command_helps_of("gradients")
    trained = load_trained(unbroken, toy, synthetic_dir, batch_size=4)
    written = write_gradients([trained], tmp_path / "report") + write_samples([trained], tmp_path / "report")
    assert {path.name for path in written} >= {"gradients.json", "samples.json", "toy-len35.txt"}

    case = BenchCase(toy, 8, 2, 4, 0.8, vocab_size=VOCAB)
    assert paths_for(case, torch.device("cpu")) == ["default", "reference"]  # no builtin: the registry names none
    for path in paths_for(case, torch.device("cpu")):
        result = bench_path(case, path, torch.device("cpu"), "fp32", warmup=0, repeats=1)
        assert "error" not in result and result["train_ms"] > 0, result
    with pytest.raises(ValueError, match="TOY has no builtin baseline"):
        build_baseline(config, VOCAB)

    torch.manual_seed(0)
    fast = build_model(setting(toy), VOCAB).double().eval()
    reference = build_model(setting(toy, impl="reference"), VOCAB).double().eval()
    reference.load_state_dict(fast.state_dict())
    tokens = torch.randint(VOCAB, (3, 6), generator=torch.Generator().manual_seed(4))  # (batch, seq)
    want, _ = reference.lm_forward(tokens, reference.initial_state(3))
    torch.testing.assert_close(fast.lm_forward(tokens, fast.initial_state(3))[0], want)
    fast.compile_time_step(backend="eager")  # what --compile cell does, without Inductor's C++ compiler
    assert fast.time_step != fast._cell
    torch.testing.assert_close(fast.lm_forward(tokens, fast.initial_state(3))[0], want)
    fast.use_plain_time_step()
    assert fast.time_step == fast._cell


def test_a_time_step_without_its_own_fast_layer_is_refused_by_name():
    from ptblm.models import RNN

    class Half(RNN):
        _fast_layer = RNN.__mro__[1]._fast_layer  # RecurrentLM's, which calls _cell

    with pytest.raises(TypeError, match="Half: plain_time_step is called by a model's own _fast_layer"):
        Half(4, 4, 3, 2, VOCAB, 1, 1.0)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_stopped_after_an_epoch_resumes_to_the_unbroken_curves(model, synthetic_dir, tmp_path):
    """Its state (the LSTM's (h, c) too) restarts at zeros each epoch; weights, optimizer and RNG resume."""
    config = tiny_config(model=model, num_epochs=3, max_batches=3)
    stopped_curves, unbroken_curves = stopped_and_unbroken_curves(config, synthetic_dir, tmp_path)
    assert stopped_curves == unbroken_curves and len(unbroken_curves) == 3
