"""fp16: float16 autocast with dynamic loss scaling (ptblm.loss_scaling), tested on CPU, where autocast computes
in float16 too; the CUDA-graph tests skip without a GPU (bench/gpu-check.sh runs them on one)."""
import copy
import io
import shutil

import pytest
import torch

from conftest import stopped_and_unbroken_curves, tiny_config
from ptblm import loss_scaling
from ptblm import runfolder as rf
from ptblm.config import GRAD_CLIP, MODELS
from ptblm.loss_scaling import LossScaling, loss_scaling_for
from ptblm.models import build_model
from ptblm.step import CompilingStep, EagerStep, GraphedStep, forward_loss, make_step
from ptblm.optimizers import make_optimizer
from ptblm.train import train_run
from test_step import assert_close, batches, first_hidden, needs_cuda, without_dropout

VOCAB = 50
CPU = torch.device("cpu")


def setting(model: str, **changes):
    return tiny_config(**{"model": model, "batch_size": 4, "seq_len": 6, "hidden_size": 16, "emb_size": 8,
                          "precision": "fp16", **changes})


def fp16_model(config, device="cpu", seed=0):
    """A model, its (fused) optimizer and its loss scaling, as train_run makes them."""
    torch.manual_seed(seed)
    model = build_model(config, VOCAB).to(device)
    return model, make_optimizer(model, config), loss_scaling_for(config.precision, torch.device(device))


def scaler_state(scale: float, tracker: int = 0) -> dict:
    return {"scale": scale, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
            "_growth_tracker": tracker}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("optimizer_name, lr", [("ADAM", 0.01), ("SGD", 1.0)])
def test_fp16_trains_every_model_a_few_batches_on_cpu(model_name, optimizer_name, lr):
    """float16 computes (the loss is not float32's, but close to it), the weights learn, no step overflows."""
    config = setting(model_name, optimizer=optimizer_name, initial_lr=lr, dp_keep_prob=1.0)
    model, optimizer, scaling = fp16_model(config)
    twin = copy.deepcopy(model)
    step = EagerStep(model, optimizer, "fp16", scaling)
    (x, y), = batches(config, 1)
    state = first_hidden(model, config)
    with torch.no_grad():
        fp32_loss, _ = make_step(twin.train(), None)(x, y, state)
    model.train()
    losses = [step(x, y, state)[0].item() for _ in range(4)]  # the same batch: each step must lower its loss
    assert losses[0] != fp32_loss.item() and losses[0] == pytest.approx(fp32_loss.item(), rel=1e-2)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.05
    assert scaling.state_dict() == scaler_state(2.0**16, tracker=4)
    assert scaling.epoch_report() == "fp16: 0 steps skipped (overflow), scale 65536"


def test_only_fp16_builds_fused_optimizers_and_its_steps_need_the_loss_scaling():
    """fp32, tf32 and bf16 keep torch's default kernels (their results stay bit for bit what they were)."""
    for precision in ("fp32", "tf32", "bf16"):
        model, optimizer, scaling = fp16_model(setting("GRU", precision=precision))
        assert optimizer.defaults["fused"] is None and scaling is None
    config = setting("GRU", optimizer="SGD")
    model, optimizer, scaling = fp16_model(config)
    assert optimizer.defaults["fused"] is True and isinstance(scaling, LossScaling)
    assert config.run_name().endswith("_fp16")
    with pytest.raises(ValueError, match="an fp16 training step needs its run's LossScaling"):
        make_step(model, optimizer, "fp16")
    plain = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="fp16 steps need an optimizer built with fused=True .* not this SGD"):
        make_step(model, plain, "fp16", scaling=scaling)
    assert make_step(model, None, "fp16").scaling is None  # evaluation: autocast only


def test_the_clip_sees_the_unscaled_gradients_and_the_update_uses_them(monkeypatch):
    """A stub in place of clip_grad_norm_ records the gradients it is given: they are the loss's gradients
    (as a plain float16-autocast backward computes them), not 65536 times those; SGD then steps by them, clipped."""
    config = setting("GRU", optimizer="SGD", initial_lr=2.0, dp_keep_prob=1.0, batch_size=1, seq_len=2)
    model, optimizer, scaling = fp16_model(config)  # few tokens: a gradient norm above the clip's 0.25
    twin = copy.deepcopy(model).train()
    (x, y), = batches(config, 1)
    loss, _ = forward_loss(twin, x, y, first_hidden(twin, config), "fp16")  # float16 autocast, unscaled
    loss.backward()
    expected = [p.grad for p in twin.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in expected]))
    assert norm > GRAD_CLIP  # so the clip changes the update

    seen, real_clip = [], torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm):
        parameters = list(parameters)
        seen.append([p.grad.clone() for p in parameters])
        return real_clip(parameters, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    before = [p.detach().clone() for p in model.parameters()]
    EagerStep(model.train(), optimizer, "fp16", scaling)(x, y, first_hidden(model, config))
    assert len(seen) == 1
    for got, want in zip(seen[0], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)
    for old, new, grad in zip(before, model.parameters(), expected):
        torch.testing.assert_close(new.detach(), old - 2.0 * grad * (GRAD_CLIP / norm), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("optimizer_name", ["ADAM", "SGD"])
def test_an_overflowing_step_is_skipped_counted_and_halves_the_scale(optimizer_name):
    """At scale 2^100 the float16 gradients overflow: the weights and Adam's state stay, the step is counted;
    at 2^16 the next step updates."""
    config = setting("LSTM", optimizer=optimizer_name, initial_lr=0.5, dp_keep_prob=1.0)
    model, optimizer, scaling = fp16_model(config)
    step = EagerStep(model.train(), optimizer, "fp16", scaling)
    x, y = batches(config, 1)[0]
    state = first_hidden(model, config)
    step(x, y, state)  # a normal step first: Adam has moments to keep
    kept = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    scaling.load_state_dict(scaler_state(2.0**100, tracker=7))
    loss, _ = step(x, y, state)
    assert torch.isfinite(loss)  # the loss is fine: only the scaled gradients overflowed
    assert all(torch.equal(value, kept[0][name]) for name, value in model.state_dict().items())
    for index, moments in optimizer.state_dict()["state"].items():
        assert all(torch.equal(value, kept[1]["state"][index][key]) for key, value in moments.items())
    assert scaling.state_dict() == scaler_state(2.0**99, tracker=0)
    assert scaling.epoch_report() == f"fp16: 1 step skipped (overflow), scale {2.0**99:g}"
    scaling.load_state_dict(scaler_state(2.0**16))
    step(x, y, state)
    assert not torch.equal(next(model.parameters()), kept[0][next(iter(kept[0]))])
    assert scaling.epoch_report() == "fp16: 0 steps skipped (overflow), scale 65536"  # the count restarted


def test_a_compiler_failure_in_an_fp16_step_runs_it_uncompiled_with_the_same_scaling():
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler on this node")

    torch._dynamo.reset()
    config = setting("GRU", optimizer="ADAM", dp_keep_prob=1.0)
    model, optimizer, scaling = fp16_model(config)
    twin = copy.deepcopy(model)
    twin_optimizer, twin_scaling = make_optimizer(twin, config), loss_scaling_for("fp16", CPU)
    step = CompilingStep(model.train(), optimizer, "fp16", mode="cell", backend=failing_backend, scaling=scaling)
    (x, y), = batches(config, 1)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        loss, _ = step(x, y, first_hidden(model, config))
    twin_loss, _ = EagerStep(twin.train(), twin_optimizer, "fp16", twin_scaling)(x, y, first_hidden(twin, config))
    assert step.step.scaling is scaling and torch.equal(loss, twin_loss)
    assert scaling.state_dict() == twin_scaling.state_dict() == scaler_state(2.0**16, tracker=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    torch._dynamo.reset()


def test_the_scaler_state_round_trips_through_last_pt_and_older_files_have_none(synthetic_dir, tmp_path):
    config = tiny_config(precision="fp16", num_epochs=1, max_batches=3)
    train_run(config, synthetic_dir, tmp_path / "fp16", echo=False, interactive=False, environ={})
    folder = rf.RunFolder(tmp_path / "fp16")
    checkpoint = torch.load(folder.file(rf.LAST_CHECKPOINT), weights_only=True)
    assert checkpoint["format_version"] == rf.FORMAT_VERSION == 2
    assert folder.resume_point().grad_scaler == checkpoint["grad_scaler"] == scaler_state(2.0**16, tracker=3)
    scaling = loss_scaling_for("fp16", CPU)
    scaling.load_state_dict(checkpoint["grad_scaler"])
    assert scaling.state_dict() == checkpoint["grad_scaler"]

    train_run(tiny_config(num_epochs=1, max_batches=3), synthetic_dir, tmp_path / "fp32", echo=False, environ={})
    assert rf.RunFolder(tmp_path / "fp32").resume_point().grad_scaler is None
    older = torch.load(tmp_path / "fp32" / rf.LAST_CHECKPOINT, weights_only=True)  # as format_version 1 wrote it
    del older["grad_scaler"]
    del older["format_version"]
    buffer = io.BytesIO()
    torch.save(older, buffer)
    (tmp_path / "fp32" / rf.LAST_CHECKPOINT).write_bytes(buffer.getvalue())
    resume = rf.RunFolder(tmp_path / "fp32").resume_point()
    assert resume.grad_scaler is None and resume.epoch == 1


def test_an_fp16_run_stopped_after_an_epoch_resumes_to_the_unbroken_curves_and_scale(synthetic_dir, tmp_path,
                                                                                      monkeypatch):
    """From scale 2^23 the first steps overflow (skipped, scale halved): the scale and its growth tracker at the
    end, and every curve, equal an unbroken run's only if last.pt carried the scaler's state across the stop."""
    monkeypatch.setattr(loss_scaling, "INITIAL_SCALE", 2.0**23)
    config = tiny_config(model="GRU", precision="fp16", num_epochs=3, max_batches=4)
    stopped_curves, unbroken_curves = stopped_and_unbroken_curves(config, synthetic_dir, tmp_path)
    assert stopped_curves == unbroken_curves and len(unbroken_curves) == 3
    unbroken, stopped = tmp_path / "unbroken", tmp_path / "stopped"
    final = rf.RunFolder(unbroken).resume_point().grad_scaler
    assert rf.RunFolder(stopped).resume_point().grad_scaler == final
    assert final["scale"] < 2.0**23 and final["_growth_tracker"] > 0
    log = (unbroken / rf.LOG_FILE).read_text()
    assert "eager steps on cpu (CPU autocast to float16)" in log
    skipped = [int(line.split("train, fp16: ")[1].split()[0]) for line in log.splitlines() if "train, fp16: " in line]
    assert len(skipped) == 3 and skipped[0] > 0
    assert 2.0**23 / 2 ** sum(skipped) == final["scale"]  # each skip halved the scale, nothing grew it


@pytest.fixture(scope="module")
def stopped_fp16(synthetic_dir, tmp_path_factory):
    """An fp16 run stopped after its first epoch (cancelled, resumable from last.pt), and its `ptblm train` flags."""
    config = tiny_config(precision="fp16", num_epochs=2, max_batches=3)
    folder = tmp_path_factory.mktemp("fp16") / "run"
    train_run(config, synthetic_dir, folder, echo=False, interactive=False, environ={},
              should_stop=lambda: (folder / rf.LAST_CHECKPOINT).exists())
    flags = [f"--{key}" if value is True else f"--{key}={value}" for key, value in config.to_dict().items()
             if value is not False]
    return folder, ["train", *flags, "--data", str(synthetic_dir)]


SCALER_DAMAGES = {  # name -> (change of last.pt's grad_scaler, or None for none; what the damage says)
    "scale a string": (lambda s: s.update(scale="x"), "grad_scaler.'scale' is a string ('x'), expected a number"),
    "empty": (lambda s: s.clear(), "no grad_scaler.'scale'"),
    "scale nan": (lambda s: s.update(scale=float("nan")), "'grad_scaler.scale' is nan, out of range"),
    "scale 0": (lambda s: s.update(scale=0.0), "'grad_scaler.scale' is 0.0, out of range"),
    "scale past float32": (lambda s: s.update(scale=1e39), "'grad_scaler.scale' is 1e+39, out of range"),
    "growth_factor 1": (lambda s: s.update(growth_factor=1.0), "'grad_scaler.growth_factor' is 1.0, out of range"),
    "backoff_factor 1.5": (lambda s: s.update(backoff_factor=1.5), "'grad_scaler.backoff_factor' is 1.5, out of "
                                                                    "range: expected a finite number between 0 and 1"),
    "growth_interval 0": (lambda s: s.update(growth_interval=0), "'grad_scaler.growth_interval' is 0"),
    "tracker past its interval": (lambda s: s.update(_growth_tracker=2000), "'grad_scaler._growth_tracker' is 2000, "
                                                                            "out of range: expected an integer from 0 "
                                                                            "to 1999"),
    "none on an fp16 run": (None, "it has no 'grad_scaler' (fp16's loss-scaling state), which the last.pt of every "
                                  "fp16 run holds: resuming would restart the loss scale"),
}


@pytest.mark.parametrize("damage", SCALER_DAMAGES)
def test_a_damaged_loss_scale_in_last_pt_is_one_line_naming_it_and_the_run_is_not_changed(stopped_fp16, tmp_path,
                                                                                         damage):
    """It was checked only for being an object: 'x' and {} gave tracebacks and a failed run, nan a run marked
    done while every step was skipped, None a scale restarted from 2^16 (no longer the unbroken run)."""
    from runtree import cli, snapshot

    source, argv = stopped_fp16
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    change, reason = SCALER_DAMAGES[damage]
    path = folder / rf.LAST_CHECKPOINT
    checkpoint = torch.load(path, weights_only=True)
    if change is None:
        checkpoint["grad_scaler"] = None
    else:
        change(checkpoint["grad_scaler"])
    torch.save(checkpoint, path)
    before = snapshot(folder)
    code, output = cli(*argv, "--out", folder)
    assert code == 1 and output.count("\n") == 1 and "Traceback" not in output, output
    assert output.startswith(f"ptblm train: error: {path}: ") and reason in output, output
    assert snapshot(folder) == before and rf.read_status(folder).state == rf.CANCELLED
    code, output = cli(*argv, "--out", folder, "--force")  # the remedy: start over
    assert code == 0 and rf.read_status(folder).state == rf.DONE, output


# ------------------------------------------------------------------------------------------ CUDA only

def graph_and_eager_fp16(model_name, optimizer_name, lr):
    config = setting(model_name, optimizer=optimizer_name, initial_lr=lr, dp_keep_prob=1.0, device="cuda")
    model, optimizer, scaling = fp16_model(config, "cuda")
    twin = copy.deepcopy(model)
    without_dropout(model), without_dropout(twin)
    twin_scaling = loss_scaling_for("fp16", torch.device("cuda"))
    return config, (model, optimizer, scaling), (twin, make_optimizer(twin, config), twin_scaling)


@needs_cuda
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("optimizer_name, lr", [("ADAM", 0.01), ("SGD", 0.5)])
def test_fp16_graph_step_equals_the_eager_one_with_its_loss_scaling(model_name, optimizer_name, lr):
    """Warm-up, capture and replays: losses, weights and the scaler's state as the eager fp16 step's; an
    overflow forced after the capture is skipped and counted inside the graph."""
    config, (model, optimizer, scaling), (twin, twin_optimizer, twin_scaling) = graph_and_eager_fp16(
        model_name, optimizer_name, lr)
    graphed = GraphedStep(model.train(), optimizer, "fp16", scaling=scaling)
    eager = EagerStep(twin.train(), twin_optimizer, "fp16", twin_scaling)
    hidden = twin_hidden = first_hidden(model, config, "cuda")
    for index, (x, y) in enumerate(batches(config, 9, "cuda")):
        if index == 6:  # after the capture (call 4): the scaler's state must reach the graph
            for each in (scaling, twin_scaling):
                each.load_state_dict(scaler_state(2.0**100))
        loss, hidden = graphed(x, y, hidden)
        twin_loss, twin_hidden = eager(x, y, twin_hidden)
        assert_close(loss, twin_loss, tolerance=1e-3)
    assert graphed.graph is not None and graphed.capture_error is None
    assert scaling.state_dict() == twin_scaling.state_dict() == scaler_state(2.0**97, tracker=0)
    report = f"fp16: 3 steps skipped (overflow), scale {2.0**97:g}"
    assert scaling.epoch_report() == twin_scaling.epoch_report() == report
    for parameter, twin_parameter in zip(model.parameters(), twin.parameters()):
        assert_close(parameter, twin_parameter, tolerance=1e-3)


@needs_cuda
def test_fp16_graph_replays_never_wait_for_the_gpu():
    config, (model, optimizer, scaling), _ = graph_and_eager_fp16("GRU", "ADAM", 0.01)
    graphed = GraphedStep(model.train(), optimizer, "fp16", scaling=scaling)
    data = batches(config, 8, "cuda")
    hidden = first_hidden(model, config, "cuda")
    for x, y in data[:5]:  # warm-up and capture
        hidden = graphed(x, y, hidden)[1]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in data[5:]:
            hidden = graphed(x, y, hidden)[1]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert graphed.graph is not None


@needs_cuda
def test_an_interrupted_fp16_cuda_run_resumes_to_the_unbroken_curves_and_scale(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loss_scaling, "INITIAL_SCALE", 2.0**23)
    config = tiny_config(model="GRU", precision="fp16", dp_keep_prob=1.0, num_epochs=3, device="cuda")
    unbroken, stopped = tmp_path / "unbroken", tmp_path / "stopped"
    train_run(config, synthetic_dir, unbroken, echo=False, environ={})
    train_run(config, synthetic_dir, stopped, echo=False, should_stop=lambda: (stopped / rf.LAST_CHECKPOINT).exists(),
              environ={})
    assert train_run(config, synthetic_dir, stopped, echo=False, environ={}).state == rf.DONE
    assert "captured in one CUDA graph" in (unbroken / rf.LOG_FILE).read_text()
    expected, resumed = rf.read_curves(unbroken).epochs, rf.read_curves(stopped).epochs
    for a, b in zip(expected, resumed, strict=True):
        assert (b.train_ppl, b.valid_ppl) == pytest.approx((a.train_ppl, a.valid_ppl), rel=1e-4)
    assert rf.RunFolder(stopped).resume_point().grad_scaler == rf.RunFolder(unbroken).resume_point().grad_scaler
