"""One batch of training or evaluation, the way EpochRunner runs every batch: eager, or a CUDA graph.

A step takes a (batch, seq) input, its (batch, seq) targets (shifted by one token) and the model's
state (ptblm.models.interface: a tensor, a tuple of them, or None), and returns the mean cross-entropy
as a 0-dim tensor on the device plus the next state, detached. Never a Python float: the loop does
not wait for the GPU between batches. A training step also runs backward, clips the gradient norm to
GRAD_CLIP and updates the weights. The step calls only the models' uniform interface (lm_forward).

- `EagerStep` runs the ops one by one (CPU and CUDA).
- `CompilingStep` runs either of them over the compiled model (`--compile model|cell`), and the
  uncompiled step if the compiler fails.
- `GraphedStep` (CUDA only) captures the whole step once, forward to optimizer update, and replays
  it for each batch: one launch instead of hundreds, which is where small recurrent models lose
  their time. It copies each batch into static buffers, runs the first steps eagerly on its own
  stream as PyTorch's CUDA-graph docs require before a capture, and keeps the learning rates in
  device tensors so that SGD_LR_SCHEDULE changes them without a new capture (ptblm.graph_safe). Dropout inside the
  graph draws new masks at every replay (PyTorch registers its generator with the graph).

PTB batches of a split all have the same shape, so one graph per (training or not, shape) is enough.
fp16 trains with loss scaling (ptblm.loss_scaling): scale, unscale, clip, skip-or-update and the scale's
update all run on the device, so the graph holds them too.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .compiling import compile_error_summary, compile_for_step, uncompile
from .config import GRAD_CLIP
from .graph_safe import DeviceLearningRates, use_graph_safe_updates
from .loss_scaling import LossScaling
from .models.interface import State, map_state, state_tensors

# (x (batch, seq), y (batch, seq), state) -> (loss (), next state)
Step = Callable[[Tensor, Tensor, State], "tuple[Tensor, State]"]

GRAPH_WARMUP_STEPS = 3  # eager steps on the side stream before the capture, as in PyTorch's examples


def use_matmul_precision(precision: str) -> None:
    """The process-wide float32 matmul mode a precision means (config.PRECISIONS): fp32 is strict float32
    (TF32 off, in cuDNN too), as the scaffold computed (2020 GPUs had no TF32); tf32 lets CUDA matmuls use
    TF32 tensor cores (10-bit mantissa inputs); bf16 and fp16 autocast the step (see `autocast`), ops outside
    it strict."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """bf16 or fp16 autocast (fp32 master weights), or nothing. The region lies inside the step, so a graph
    capture holds the whole of it, weight-cast cache included."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def forward_loss(model: nn.Module, x: Tensor, y: Tensor, state: State,
                 precision: str = "fp32") -> tuple[Tensor, State]:
    """Mean cross-entropy of one batch and the model's next state (model.lm_forward)."""
    with autocast(x.device, precision):
        logits, state = model.lm_forward(x, state)  # (batch, seq, vocab)
        loss = F.cross_entropy(*tokens_in_memory_order(logits.float(), y))
    return loss, state


def tokens_in_memory_order(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(batch, seq, vocab), (batch, seq) -> (tokens, vocab), (tokens,), tokens in the order the logits lie in
    memory: a view, never a copy of the large logits. The recurrent models compute them time-major (as
    run_exp.py sums its loss), the Transformer batch-major; each keeps the summation order it always had."""
    if logits.stride(0) < logits.stride(1):  # time-major in memory: (seq, batch, vocab) seen transposed
        logits, targets = logits.transpose(0, 1), targets.t()
    return logits.reshape(-1, logits.size(-1)), targets.reshape(-1)


def detached(state: State) -> State:
    return map_state(Tensor.detach, state)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               state: State, precision: str = "fp32", scaling: LossScaling | None = None) -> tuple[Tensor, State]:
    """Forward, backward, clip the gradient norm to GRAD_CLIP, update; (loss, next state), detached.
    With `scaling` (fp16) backward runs on the scaled loss, the clip on the unscaled gradients, and the
    update is skipped when a gradient overflowed."""
    optimizer.zero_grad(set_to_none=True)  # None, not zeros: backward then writes fresh gradients
    with torch.enable_grad():
        loss, state = forward_loss(model, x, y, state, precision)
        if scaling is None:
            loss.backward()
        else:
            scaling.backward(loss)
    if scaling is not None:
        scaling.unscale_(optimizer)  # the clip's threshold is for the true gradients
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)  # on device: no .item()
    if scaling is None:
        optimizer.step()
    else:
        scaling.step(optimizer)
    return loss.detach(), detached(state)


@torch.no_grad()
def eval_step(model: nn.Module, x: Tensor, y: Tensor, state: State,
              precision: str = "fp32") -> tuple[Tensor, State]:
    """Forward and loss only."""
    return forward_loss(model, x, y, state, precision)


def run_step(model: nn.Module, optimizer: torch.optim.Optimizer | None, x: Tensor, y: Tensor,
             state: State, precision: str, scaling: LossScaling | None = None) -> tuple[Tensor, State]:
    """A training step when there is an optimizer, an evaluation step otherwise."""
    if optimizer is None:
        return eval_step(model, x, y, state, precision)
    return train_step(model, optimizer, x, y, state, precision, scaling)


def training_scaling(optimizer: torch.optim.Optimizer | None, precision: str,
                     scaling: LossScaling | None) -> LossScaling | None:
    """The loss scaling a step uses: fp16's for a training step (refused when missing, or when the optimizer
    cannot skip on the device), none for evaluation and the other precisions."""
    if optimizer is None or precision != "fp16":
        return None
    if scaling is None:
        raise ValueError("an fp16 training step needs its run's LossScaling (ptblm.loss_scaling.loss_scaling_for): "
                         "the scale is the run's state, saved in last.pt")
    scaling.check_optimizer(optimizer)
    return scaling


def rng_state(device: torch.device) -> dict:
    """The random generators a step draws from (dropout): the CPU one, and the device's on CUDA."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class EagerStep:
    """The step as plain PyTorch ops; trains when given an optimizer, else evaluates."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, precision: str = "fp32",
                 scaling: LossScaling | None = None):
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.scaling = training_scaling(optimizer, precision, scaling)
        if optimizer is not None:
            use_graph_safe_updates(optimizer, False)

    def __call__(self, x: Tensor, y: Tensor, state: State) -> tuple[Tensor, State]:
        return run_step(self.model, self.optimizer, x, y, state, self.precision, self.scaling)


class GraphedStep:
    """The step captured in one CUDA graph at its first call after `warmup_steps`, then replayed.

    The graph reads the batch and the state from static input buffers and writes the loss and next
    state to static outputs; both are private, and the returned tensors are copies, safe to keep. The
    model's train/eval mode is baked into the graph, so a call in the other mode is refused.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, precision: str = "fp32",
                 warmup_steps: int = GRAPH_WARMUP_STEPS, scaling: LossScaling | None = None):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"GraphedStep: CUDA graphs need the model on a CUDA device, not {device}; "
                             f"use EagerStep (cuda_graph=False)")
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.scaling = training_scaling(optimizer, precision, scaling)
        self.training = optimizer is not None
        self.warmup_steps = warmup_steps
        self.stream = torch.cuda.Stream(device)  # warm-up and capture run here, off the default stream
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_error: RuntimeError | None = None  # set when capture failed: the step stays eager
        self.calls = 0
        self.inputs: tuple[Tensor, Tensor, State] | None = None  # what the graph reads
        self.outputs: tuple[Tensor, State] | None = None  # what the graph writes
        self.learning_rates = None
        if optimizer is not None:
            use_graph_safe_updates(optimizer, True)
            self.learning_rates = DeviceLearningRates(optimizer, device)

    def __call__(self, x: Tensor, y: Tensor, state: State) -> tuple[Tensor, State]:
        if self.model.training != self.training:
            raise RuntimeError(f"GraphedStep for {'training' if self.training else 'evaluation'} called "
                               f"with the model in {'train' if self.model.training else 'eval'} mode")
        self._load(x, y, state)
        if self.learning_rates is not None:
            self.learning_rates.sync()
        if self.graph is None and self.calls < self.warmup_steps:
            self.calls += 1
            return self._copies(*self._run_on_side_stream())
        if self.graph is None and self.capture_error is None:
            try:
                self._capture()
            except RuntimeError as error:  # e.g. an op that syncs: finish the run eagerly rather than lose it
                self.graph, self.capture_error = None, error
                if self.scaling is not None:
                    self.scaling.abandon_step()
                warnings.warn(f"CUDA graph capture failed ({error}); running this step eagerly "
                              f"(--cuda_graph off skips the attempt)", RuntimeWarning, stacklevel=2)
        if self.graph is None:
            return self._copies(*self._run_on_side_stream())
        self.graph.replay()
        return self._copies(*self.outputs)

    def _run(self) -> tuple[Tensor, State]:
        return run_step(self.model, self.optimizer, *self.inputs, self.precision, self.scaling)

    def _run_on_side_stream(self) -> tuple[Tensor, State]:
        """One eager step on the capture stream, ordered after and before the caller's work."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            outputs = self._run()
        torch.cuda.current_stream().wait_stream(self.stream)
        return outputs

    def _capture(self) -> None:
        """Record the step; nothing runs until the replay. Gradients are set to None inside the
        step, so backward allocates them from the graph's private memory pool."""
        self.graph = torch.cuda.CUDAGraph()
        rates = self.learning_rates.installed() if self.learning_rates else contextlib.nullcontext()
        with rates, torch.cuda.graph(self.graph, stream=self.stream):
            self.outputs = self._run()

    def _load(self, x: Tensor, y: Tensor, state: State) -> None:
        """Copy the batch and the state into the graph's input buffers (made at the first call)."""
        batch = (x, y, state)
        if self.inputs is None:
            self.inputs = map_state(lambda t: t.clone(memory_format=torch.contiguous_format), batch)
            return
        for name, static, new in zip(("x", "y", "state"), self.inputs, batch):
            if shapes(static) != shapes(new):
                raise ValueError(f"GraphedStep: {name} has shape {shapes(new)}; the graph was captured for "
                                 f"{shapes(static)} (make one step per shape)")
            for static_tensor, new_tensor in zip(state_tensors(static), state_tensors(new)):
                static_tensor.copy_(new_tensor)

    @staticmethod
    def _copies(loss: Tensor, state: State) -> tuple[Tensor, State]:
        return map_state(Tensor.clone, (loss, state))


def shapes(state: State):
    """The shape of each tensor, in the state's structure: (4, 6), ((2, 4, 16), (2, 4, 16)) or None."""
    return map_state(lambda tensor: tuple(tensor.shape), state)


class CompilingStep:
    """The step (eager or graphed, as `make_step` picks) over the model compiled in `mode` ("model" or
    "cell", see ptblm.compiling).

    The compiler runs inside the first call, forward and backward, so that call is timed
    (`first_call_seconds`) and reported to `on_compiled`. A compiler error (no C++ compiler on the
    node, an op Inductor cannot lower) becomes a warning and the step runs the uncompiled model:
    the run goes on, only slower.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, precision: str = "fp32",
                 cuda_graph: bool | None = None, mode: str = "model", backend="inductor",
                 on_compiled: Callable[[CompilingStep], None] | None = None, scaling: LossScaling | None = None):
        self.model, self.optimizer, self.precision, self.cuda_graph = model, optimizer, precision, cuda_graph
        self.mode, self.on_compiled, self.scaling = mode, on_compiled, scaling
        self.step = make_step(compile_for_step(model, mode, backend), optimizer, precision, cuda_graph,
                              scaling=scaling)
        self.first_call_seconds: float | None = None
        self.compile_error: Exception | None = None  # set when compiling failed: the step runs uncompiled

    def __call__(self, x: Tensor, y: Tensor, state: State) -> tuple[Tensor, State]:
        if self.first_call_seconds is not None:
            return self.step(x, y, state)
        started = time.perf_counter()
        device = next(self.model.parameters()).device
        randomness = rng_state(device)  # a cell compile fails after the dropout masks are drawn
        try:
            outputs = self.step(x, y, state)
        except torch._dynamo.exc.TorchDynamoException as error:
            set_rng_state(randomness, device)  # the uncompiled step draws the masks this one would have
            self.compile_error = error
            warnings.warn(f"torch.compile failed ({compile_error_summary(error)}); running this step "
                          f"uncompiled (--compile off skips the attempt)", RuntimeWarning, stacklevel=2)
            self.step = make_step(uncompile(self.model, self.mode), self.optimizer, self.precision, self.cuda_graph,
                                  scaling=self.scaling)
            outputs = self.step(x, y, state)
        self.first_call_seconds = time.perf_counter() - started
        if self.on_compiled is not None:
            self.on_compiled(self)
        return outputs


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer | None, precision: str = "fp32",
              cuda_graph: bool | None = None, compile_mode: str = "off",
              on_compiled: Callable[[CompilingStep], None] | None = None,
              scaling: LossScaling | None = None) -> Step:
    """The step for a model on its device: a CUDA graph on CUDA, eager elsewhere (None = that choice);
    a `compile_mode` other than "off" runs it over the compiled model (see CompilingStep). An fp16
    training step takes the run's `scaling` (ptblm.loss_scaling.loss_scaling_for), graphed or not."""
    if compile_mode != "off":
        return CompilingStep(model, optimizer, precision, cuda_graph, compile_mode, on_compiled=on_compiled,
                             scaling=scaling)
    if graphs_on(next(model.parameters()).device, cuda_graph):
        return GraphedStep(model, optimizer, precision, scaling=scaling)
    return EagerStep(model, optimizer, precision, scaling)


def graphs_on(device: torch.device, cuda_graph: bool | None) -> bool:
    """Whether make_step captures the step in a CUDA graph: on CUDA unless told not to (None = by device)."""
    return device.type == "cuda" if cuda_graph is None else cuda_graph
