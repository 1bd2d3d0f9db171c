"""The training/evaluation step: eager equals the plain code on CPU; the CUDA graph equals eager on GPU.

The CUDA tests skip here without a GPU; bench/gpu-check.sh runs them on one.
"""
import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_config
from ptblm import runfolder as rf
from ptblm.config import GRAD_CLIP
from ptblm.models import build_model, causal_mask
from ptblm.models.interface import map_state, state_tensors
from ptblm.graph_safe import DeviceLearningRates, use_graph_safe_updates
from ptblm.step import EagerStep, GraphedStep, eval_step, make_step
from ptblm.epochs import EpochRunner
from ptblm.optimizers import make_optimizer
from ptblm.train import train_run

VOCAB = 50
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the CUDA-graph path runs in bench/gpu-check.sh on a GPU")


def setting(model: str, **changes):
    return tiny_config(model=model, batch_size=4, seq_len=6, hidden_size=16, emb_size=8, **changes)


def model_and_optimizer(config, device="cpu", seed=0):
    torch.manual_seed(seed)
    model = build_model(config, VOCAB).to(device)
    return model, make_optimizer(model, config)


def batches(config, count: int, device="cpu", seed=1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` (x, y) pairs of (batch, seq) tokens, y shifted by one, as EpochRunner slices them."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(VOCAB, (config.batch_size, count * config.seq_len + 1), generator=generator).to(device)
    seq = config.seq_len
    return [(data[:, i * seq:(i + 1) * seq], data[:, i * seq + 1:(i + 1) * seq + 1]) for i in range(count)]


def first_hidden(model, config, device="cpu"):
    """The state before the first batch: zeros on the model's device, (h, c) for the LSTM, None for the Transformer."""
    return model.initial_state(config.batch_size)


def plain_forward(model, x, y, hidden):
    """The loss as EpochRunner computed it before the step abstraction, spelled out."""
    if hidden is not None:
        logits, hidden = model(x.t(), hidden)  # (seq, batch, vocab)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.t().reshape(-1)), hidden
    log_probs = model(x, causal_mask(x.size(1)).expand(x.size(0), -1, -1))  # (batch, seq, vocab)
    return F.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), y.reshape(-1)), None


def plain_training_step(model, optimizer, x, y, hidden):
    """The loop body as written before the step abstraction."""
    loss, hidden = plain_forward(model, x, y, hidden)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    return loss.detach(), map_state(torch.Tensor.detach, hidden)


def states_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(state_tensors(a), state_tensors(b), strict=True))


def without_dropout(model: nn.Module) -> nn.Module:
    """p = 0 everywhere, the Transformer's fixed attention dropout too: equal results need equal masks."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize("model_name", ["RNN", "GRU", "LSTM", "TRANSFORMER"])
def test_eager_training_step_equals_the_plain_code(model_name):
    """Loss, next hidden, gradients and weights after three steps, bit for bit, dropout included."""
    config = setting(model_name, optimizer="ADAM", dp_keep_prob=0.8)
    model, optimizer = model_and_optimizer(config)
    twin = copy.deepcopy(model)
    twin_optimizer, initial = make_optimizer(twin, config), copy.deepcopy(model.state_dict())
    step = EagerStep(model, optimizer)
    hidden = twin_hidden = first_hidden(model, config)
    for index, (x, y) in enumerate(batches(config, 3)):
        torch.manual_seed(100 + index)  # the same dropout masks for both
        loss, hidden = step(x, y, hidden)
        torch.manual_seed(100 + index)
        twin_loss, twin_hidden = plain_training_step(twin, twin_optimizer, x, y, twin_hidden)
        assert loss.dim() == 0 and not loss.requires_grad and math.isfinite(loss.item())
        assert torch.equal(loss, twin_loss)
        if hidden is not None:
            assert all(h.grad_fn is None for h in state_tensors(hidden)) and states_equal(hidden, twin_hidden)
    for (name, parameter), twin_parameter in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(parameter.grad, twin_parameter.grad), name
        assert torch.equal(parameter, twin_parameter), name
        assert not torch.equal(parameter, initial[name]), f"{name} was not trained"


@pytest.mark.parametrize("model_name", ["GRU", "TRANSFORMER"])
def test_evaluation_step_changes_nothing_and_equals_the_forward_pass(model_name):
    config = setting(model_name)
    model, _ = model_and_optimizer(config)
    model.eval()
    before = copy.deepcopy(model.state_dict())
    (x, y), = batches(config, 1)
    loss, hidden = make_step(model, None)(x, y, first_hidden(model, config))
    with torch.no_grad():
        expected, _ = plain_forward(model, x, y, first_hidden(model, config))
    assert torch.equal(loss, expected) and not loss.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (hidden is None) == (model_name == "TRANSFORMER")


def test_epoch_runner_mean_loss_is_the_mean_of_the_plain_loop(synthetic_dir):
    """run() slices the split into batches, carries the hidden state and averages the per-batch losses."""
    from ptblm.data import load_corpus

    corpus = load_corpus(synthetic_dir)
    config = tiny_config(model="GRU", optimizer="SGD", initial_lr=0.5, dp_keep_prob=1.0, max_batches=5)
    torch.manual_seed(0)
    model = build_model(config, corpus.vocab_size)
    twin = copy.deepcopy(model)
    optimizer, twin_optimizer = make_optimizer(model, config), make_optimizer(twin, config)
    runner = EpochRunner(model, config, torch.device("cpu"), log=lambda message: None, interactive=False)
    mean_loss = runner.run(corpus.train, optimizer, label="train")

    data = torch.as_tensor(corpus.train[: len(corpus.train) // 8 * 8]).view(8, -1)  # (batch, batch_len)
    hidden, losses = twin.init_hidden(), []
    twin.train()
    for index in range(5):
        x = data[:, index * 12:(index + 1) * 12]
        y = data[:, index * 12 + 1:(index + 1) * 12 + 1]
        loss, hidden = plain_training_step(twin, twin_optimizer, x, y, hidden)
        losses.append(loss.double())
    assert mean_loss == pytest.approx(torch.stack(losses).mean().item(), rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    kept = runner.step_for(optimizer, (8, 12))  # one step per (optimizer, shape), kept across epochs
    laid_out = runner.on_device(corpus.train)  # each split laid out once, kept across epochs
    assert torch.equal(laid_out[:, :60], data[:, :60])
    runner.run(corpus.valid)
    runner.run(corpus.train, optimizer)
    assert runner.step_for(optimizer, (8, 12)) is kept and runner.step_for(None, (8, 12)) is not kept
    assert runner.on_device(corpus.train) is laid_out and runner.on_device(corpus.valid) is not laid_out


def test_make_step_is_eager_on_cpu_and_refuses_a_graph_there():
    config = setting("RNN")
    model, optimizer = model_and_optimizer(config)
    assert isinstance(make_step(model, optimizer), EagerStep)
    with pytest.raises(ValueError, match="CUDA graphs need the model on a CUDA device, not cpu"):
        make_step(model, optimizer, cuda_graph=True)


def test_adam_state_from_a_graph_run_resumes_eagerly_on_cpu():
    """A checkpoint saved in graph mode says capturable=True, which Adam refuses on CPU; EagerStep undoes it."""
    config = setting("GRU", optimizer="ADAM", dp_keep_prob=1.0)
    model, optimizer = model_and_optimizer(config)
    step = EagerStep(model, optimizer)
    hidden = first_hidden(model, config)
    (x1, y1), (x2, y2) = batches(config, 2)
    step(x1, y1, hidden)
    use_graph_safe_updates(optimizer, True)  # what GraphedStep does on CUDA
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=True)
    assert all(group["capturable"] for group in checkpoint["optimizer"]["param_groups"])

    resumed, resumed_optimizer = model_and_optimizer(config, seed=7)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_loss, _ = EagerStep(resumed, resumed_optimizer)(x2, y2, hidden)
    loss, _ = EagerStep(model, optimizer)(x2, y2, hidden)
    assert torch.equal(resumed_loss, loss)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), model.parameters()))
    assert not any(group["capturable"] for group in resumed_optimizer.param_groups)


def test_graph_safe_sgd_reads_its_rate_from_the_device_tensor():
    """The captured SGD update reads the tensor; a schedule changes the float, `sync` carries it over."""
    weight = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    use_graph_safe_updates(optimizer, True)
    rates = DeviceLearningRates(optimizer, weight.device)
    optimizer.param_groups[0]["lr"] = 0.25  # what the trainer does at an epoch boundary
    rates.sync()
    weight.grad = torch.ones(3)
    with rates.installed():
        assert optimizer.param_groups[0]["lr"] is rates.tensors[0]
        optimizer.step()
    assert optimizer.param_groups[0]["lr"] == 0.25  # a float again, as checkpoints save it
    assert torch.equal(weight.detach(), torch.full((3,), -0.25))
    use_graph_safe_updates(optimizer, False)
    assert optimizer.param_groups[0]["fused"] is None


# ------------------------------------------------------------------------------------------ CUDA only

def graph_and_eager_pair(model_name, optimizer_name, lr, precision="fp32"):
    config = setting(model_name, optimizer=optimizer_name, initial_lr=lr, dp_keep_prob=1.0, device="cuda",
                     precision=precision)
    model, optimizer = model_and_optimizer(config, "cuda")
    twin = copy.deepcopy(model)
    without_dropout(model), without_dropout(twin)
    return config, (model, optimizer), (twin, make_optimizer(twin, config))


def assert_close(a, b, tolerance=1e-5):
    """Tensors, or states (tuples of tensors), equal to `tolerance`."""
    for x, y in zip(state_tensors(a), state_tensors(b), strict=True):
        assert torch.allclose(x, y, rtol=tolerance, atol=tolerance), (x - y).abs().max().item()


@needs_cuda
@pytest.mark.parametrize("model_name", ["RNN", "GRU", "LSTM", "TRANSFORMER"])
@pytest.mark.parametrize("optimizer_name, lr", [("ADAM", 0.01), ("SGD", 0.5)])
def test_graph_training_step_equals_eager(model_name, optimizer_name, lr):
    """Warm-up steps, the capture and replays: the same losses, states and weights as eager, lr changes too."""
    config, (model, optimizer), (twin, twin_optimizer) = graph_and_eager_pair(model_name, optimizer_name, lr)
    graphed, eager = GraphedStep(model, optimizer), EagerStep(twin, twin_optimizer)
    model.train(), twin.train()
    hidden = twin_hidden = first_hidden(model, config, "cuda")
    for index, (x, y) in enumerate(batches(config, 8, "cuda")):
        if index == 5:  # after the capture (call 4): a schedule step must reach the graph
            for group in optimizer.param_groups + twin_optimizer.param_groups:
                group["lr"] = lr / 4
        loss, hidden = graphed(x, y, hidden)
        twin_loss, twin_hidden = eager(x, y, twin_hidden)
        assert_close(loss, twin_loss)
        if hidden is not None:
            assert_close(hidden, twin_hidden)
    assert graphed.graph is not None
    for parameter, twin_parameter in zip(model.parameters(), twin.parameters()):
        assert_close(parameter, twin_parameter)


@needs_cuda
@pytest.mark.parametrize("model_name", ["GRU", "LSTM", "TRANSFORMER"])
def test_graph_evaluation_step_equals_eager(model_name):
    config, (model, _), _ = graph_and_eager_pair(model_name, "ADAM", 0.01)
    model.eval()
    graphed = GraphedStep(model, None)
    hidden = eager_hidden = first_hidden(model, config, "cuda")
    for x, y in batches(config, 6, "cuda"):
        loss, hidden = graphed(x, y, hidden)
        expected, eager_hidden = eval_step(model, x, y, eager_hidden)
        assert_close(loss, expected)
    with pytest.raises(RuntimeError, match="called with the model in train mode"):
        model.train()
        graphed(x, y, hidden)


@needs_cuda
@pytest.mark.parametrize("compile_mode", ["off", "model", "cell"])
def test_graph_replays_draw_new_dropout_masks(compile_mode):
    """Same batch, same weights (SGD with lr 0): only the dropout masks can change the loss. Compiled,
    Inductor draws its own random numbers: they too must change at every replay."""
    torch._dynamo.reset()
    config = setting("GRU", optimizer="SGD", initial_lr=1.0, dp_keep_prob=0.5, device="cuda")
    model, optimizer = model_and_optimizer(config, "cuda")
    optimizer.param_groups[0]["lr"] = 0.0
    model.train()
    step = make_step(model, optimizer, cuda_graph=True, compile_mode=compile_mode)
    (x, y), = batches(config, 1, "cuda")
    hidden = first_hidden(model, config, "cuda")
    losses = [step(x, y, hidden)[0] for _ in range(6)]
    replayed = torch.stack(losses[4:])  # calls 5 and 6 are replays
    graphed = step if compile_mode == "off" else step.step
    assert graphed.graph is not None and replayed[0] != replayed[1]


@needs_cuda
def test_graph_steps_never_wait_for_the_gpu():
    config, (model, optimizer), (twin, twin_optimizer) = graph_and_eager_pair("GRU", "ADAM", 0.01)
    model.train(), twin.train()
    graphed, eager = GraphedStep(model, optimizer), EagerStep(twin, twin_optimizer)
    data = batches(config, 8, "cuda")
    hidden = twin_hidden = first_hidden(model, config, "cuda")
    for x, y in data[:5]:  # warm-up and capture
        hidden = graphed(x, y, hidden)[1]
        twin_hidden = eager(x, y, twin_hidden)[1]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in data[5:]:
            hidden = graphed(x, y, hidden)[1]
            twin_hidden = eager(x, y, twin_hidden)[1]
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_graph_optimizer_state_round_trips_through_a_checkpoint():
    """Capturable Adam's state saved mid-run and loaded into a fresh model continues like the original."""
    config, (model, optimizer), _ = graph_and_eager_pair("GRU", "ADAM", 0.01)
    model.train()
    step, hidden = GraphedStep(model, optimizer), first_hidden(model, config, "cuda")
    data = batches(config, 9, "cuda")
    for x, y in data[:6]:
        step(x, y, hidden)
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, map_location="cuda", weights_only=True)
    resumed, resumed_optimizer = model_and_optimizer(config, "cuda", seed=5)
    without_dropout(resumed).train()
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_step = GraphedStep(resumed, resumed_optimizer)
    for x, y in data[6:]:
        assert_close(resumed_step(x, y, hidden)[0], step(x, y, hidden)[0])
    for parameter, resumed_parameter in zip(model.parameters(), resumed.parameters()):
        assert_close(parameter, resumed_parameter)


@needs_cuda
def test_bf16_graph_step_runs_and_tracks_eager():
    config, (model, optimizer), (twin, twin_optimizer) = graph_and_eager_pair("GRU", "ADAM", 0.01, "bf16")
    model.train(), twin.train()
    graphed, eager = GraphedStep(model, optimizer, "bf16"), EagerStep(twin, twin_optimizer, "bf16")
    hidden = twin_hidden = first_hidden(model, config, "cuda")
    for x, y in batches(config, 6, "cuda"):
        loss, hidden = graphed(x, y, hidden)
        twin_loss, twin_hidden = eager(x, y, twin_hidden)
        assert_close(loss, twin_loss, tolerance=2e-2)


@needs_cuda
@pytest.mark.parametrize("optimizer_name, lr", [("SGD_LR_SCHEDULE", 1.0), ("ADAM", 0.01)])
def test_an_interrupted_cuda_run_resumes_to_the_unbroken_curves(optimizer_name, lr, synthetic_dir, tmp_path,
                                                                 monkeypatch):
    """Graphs, checkpoints of graph-mode optimizers, and a resume that captures anew (no dropout)."""
    config = tiny_config(model="GRU", optimizer=optimizer_name, initial_lr=lr, dp_keep_prob=1.0,
                         num_epochs=3, device="cuda")
    unbroken, interrupted = tmp_path / "unbroken", tmp_path / "interrupted"
    assert train_run(config, synthetic_dir, unbroken, echo=False, environ={}).state == rf.DONE
    passes, run_pass = [], EpochRunner.run

    def stop_at_the_third_pass(self, *args, **kwargs):  # epoch 2's training pass
        passes.append(args)
        if len(passes) == 3:
            raise KeyboardInterrupt
        return run_pass(self, *args, **kwargs)

    monkeypatch.setattr(EpochRunner, "run", stop_at_the_third_pass)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, synthetic_dir, interrupted, echo=False, environ={})
    monkeypatch.undo()
    assert rf.read_status(interrupted).epochs_done == 1
    assert train_run(config, synthetic_dir, interrupted, echo=False, environ={}).state == rf.DONE
    expected, resumed = rf.read_curves(unbroken).epochs, rf.read_curves(interrupted).epochs
    assert max(r.valid_ppl for r in expected) < 60  # learns: below a uniform guess over ~60 words
    for a, b in zip(expected, resumed):
        assert (b.train_ppl, b.valid_ppl) == pytest.approx((a.train_ppl, a.valid_ppl), rel=1e-4)


def test_graph_input_buffers_take_a_state_of_any_structure():
    """GraphedStep's buffers (the CPU-testable part of the graph): made at the first call, then written in place,
    for a state that is a tensor, the LSTM's (h, c) or None; a state of another shape is refused by name."""
    generator = torch.Generator().manual_seed(0)

    def batch(state_shapes):
        x, y = (torch.randint(9, (4, 6), generator=generator) for _ in range(2))
        state = tuple(torch.randn(shape, generator=generator) for shape in state_shapes)
        return x, y, state

    for structure in (lambda s: s, lambda s: s[0], lambda s: None):
        step = object.__new__(GraphedStep)  # no CUDA here: only the buffer logic, not the graph
        step.inputs = None
        first = batch([(2, 4, 8), (2, 4, 8)])
        step._load(*first[:2], structure(first[2]))
        buffers = step.inputs
        assert all(b is not f for b, f in zip(state_tensors(buffers), state_tensors((*first[:2], structure(first[2])))))
        second = batch([(2, 4, 8), (2, 4, 8)])
        step._load(*second[:2], structure(second[2]))
        assert step.inputs is buffers and states_equal(buffers, (*second[:2], structure(second[2])))
        copies = step._copies(torch.tensor(1.0), buffers[2])
        assert states_equal(copies[1], buffers[2]) and not set(map(id, state_tensors(copies))) & set(
            map(id, state_tensors(buffers)))
    with pytest.raises(ValueError, match=r"GraphedStep: state has shape \(\(2, 4, 8\),\); the graph was captured "
                                         r"for None"):
        step._load(*second[:2], second[2][:1])
