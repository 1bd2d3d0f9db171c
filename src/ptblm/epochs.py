"""One pass over a split: the same loop trains, validates and tests, one step per batch.

The trainer (ptblm.train) calls it once per split and epoch; it logs about every 10% of an epoch (with the
pass's time left at its pace so far), tells the caller's `on_progress` where a training pass is at the same
cadence, and stops between two batches when the caller's `should_stop` says so.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import runfolder as rf
from .compiling import cache_counts, compile_error_summary
from .config import RunConfig
from .data import batch_at, batchify, num_batches
from .formatting import format_seconds
from .loss_scaling import LossScaling
from .step import CompilingStep, Step, make_step


class StopRequested(Exception):
    """The caller's `should_stop` said yes between two batches."""


def perplexity(mean_loss: float) -> float:
    """exp(mean NLL); inf where that overflows or the loss is inf, nan stays nan."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


class RunLog:
    """Lines go to log.txt, through `writer` (the holder of the run's lock), and to stdout (the Slurm log)."""

    def __init__(self, writer: rf.RunWriter, echo: bool = True):
        self.writer, self.echo = writer, echo

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        self.writer.log(line)
        if self.echo:
            print(line, flush=True)


@dataclass
class EpochRunner:
    """Runs one pass over a split; the same code trains, validates and tests.

    Every batch goes through a step from `ptblm.step` (a CUDA graph on CUDA unless `cuda_graph` is
    False; over the compiled model when `config.compile` says so), made once per (optimizer, shape) and
    kept, so a graph is captured, and the model compiled, once per run and mode.
    """

    model: torch.nn.Module
    config: RunConfig
    device: torch.device
    log: RunLog
    interactive: bool
    cuda_graph: bool | None = None  # None: graphs on CUDA, eager on CPU
    should_stop: Callable[[], bool] = lambda: False  # asked between batches (StopRequested)
    on_step: Callable[[int, int, torch.Tensor], None] | None = None  # (done, steps, loss) after each training batch
    loss_scaling: LossScaling | None = None  # fp16's (ptblm.loss_scaling), for the training steps
    on_progress: Callable[[int, int, float], None] | None = None  # (done, steps, seconds) of a training pass, ~10%
    _steps: dict = field(default_factory=dict, init=False, repr=False)
    _splits: dict = field(default_factory=dict, init=False, repr=False)  # id(ids) -> (ids, batched on the device)
    _eval_pace: float | None = field(default=None, init=False, repr=False)  # seconds a batch, last evaluation pass

    def step_for(self, optimizer: torch.optim.Optimizer | None, shape: tuple[int, int]) -> Step:
        """The training (with an optimizer) or evaluation step for (batch, seq) batches."""
        key = (optimizer, shape)
        if key not in self._steps:
            self._steps[key] = make_step(self.model, optimizer, self.config.precision, self.cuda_graph,
                                         compile_mode=self.config.compile, on_compiled=self._log_compiled,
                                         scaling=self.loss_scaling)
        return self._steps[key]

    def _log_compiled(self, step: CompilingStep) -> None:
        """The compile time of a step, and how much of it came from the cache, or why it runs uncompiled."""
        kind = "evaluation" if step.optimizer is None else "training"
        if step.compile_error is not None:
            self.log(f"torch.compile failed for the {kind} step ({compile_error_summary(step.compile_error)}); "
                     f"running it uncompiled")
            return
        counts = cache_counts()
        self.log(f"compiled the {kind} step ({step.mode}) in {step.first_call_seconds:.1f} s (Inductor FX-graph cache, "
                 f"this process so far: {counts['hits']} loaded, {counts['misses']} compiled)")

    def on_device(self, ids: list[int]) -> torch.Tensor:
        """The split as (batch, batch_len) on the device, laid out at its first pass and kept: every
        epoch reads the same tensor (the full training split costs tens of ms to lay out)."""
        cached = self._splits.get(id(ids))
        if cached is None or cached[0] is not ids:  # holding `ids` keeps its id from being reused
            cached = self._splits[id(ids)] = (ids, torch.as_tensor(batchify(ids, self.config.batch_size),
                                                                  device=self.device))
        return cached[1]

    def batches(self, ids: list[int]) -> int:
        """The batches of one pass over the split (max_batches caps them)."""
        steps = num_batches(len(ids), self.config.batch_size, self.config.seq_len)
        return min(steps, self.config.max_batches) if self.config.max_batches else steps

    def run(self, ids: list[int], optimizer: torch.optim.Optimizer | None = None, label: str = "valid",
            then: int = 0) -> float:
        """Mean loss over the split's batches; trains when an optimizer is given. `then`: the evaluation batches
        that follow in this epoch (the validation pass after a training pass), for the time left in the epoch."""
        config, training = self.config, optimizer is not None
        seq_len = config.seq_len
        data = self.on_device(ids)  # (batch, batch_len)
        steps = self.batches(ids)
        self.model.train(training)
        step = self.step_for(optimizer, (config.batch_size, seq_len))
        state = self.model.initial_state(config.batch_size)  # zeros on the model's device, or None
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        report_every = max(steps // 10, 1)
        progress = _progress_bar(steps, label) if self.interactive else None
        started = time.perf_counter()
        for index in range(steps):
            if self.should_stop():
                raise StopRequested
            x, y = batch_at(data, index, seq_len)  # (batch, seq) each, y shifted by one token
            loss, state = step(x, y, state)  # loss stays on the device: no sync per batch
            total += loss
            if training and self.on_step is not None:
                self.on_step(index + 1, steps, loss)
            at_cadence = (index + 1) % report_every == 0 or index + 1 == steps
            if config.log_steps or at_cadence:
                self._report(label, index + 1, steps, total, started, progress, then)
            if training and at_cadence and self.on_progress is not None:
                self.on_progress(index + 1, steps, time.perf_counter() - started)
        if progress is not None:
            progress.close()
        mean = (total / steps).item()
        if not training:
            self._eval_pace = (time.perf_counter() - started) / steps
        return mean

    def _report(self, label: str, done: int, steps: int, total: torch.Tensor, started: float, progress,
                then: int = 0) -> None:
        """Every ~10% of an epoch (every step with --log_steps): the progress bar, or a log line with the time left
        in the epoch: this pass's rest at its pace, and the `then` evaluation batches at the last evaluation
        pass's pace (before the first one, at this pass's: an evaluation batch takes less than a training one)."""
        mean_loss = (total / done).item()  # one host sync per report, ~10 per epoch
        seconds = max(time.perf_counter() - started, 1e-9)
        words_per_second = done * self.config.batch_size * self.config.seq_len / seconds
        if progress is not None:
            progress.update(done - progress.n)
            progress.set_postfix(loss=f"{mean_loss:.3f}", wps=f"{words_per_second:,.0f}")
        else:
            left = seconds_left(seconds, done, steps) + then * (self._eval_pace or seconds / done)
            where = "this pass" if label == "test" else "this epoch"
            self.log(f"{label} step {done}/{steps} ({100 * done // steps}%) loss {mean_loss:.4f} "
                     f"ppl {perplexity(mean_loss):.2f} {words_per_second:,.0f} words/s, "
                     f"{format_seconds(left)} left in {where}")


def seconds_left(seconds: float, done: int, steps: int) -> float:
    """The rest of a pass at its pace so far: `seconds` for `done` of `steps` batches."""
    return seconds / done * (steps - done) if done else math.inf


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, leave=False, dynamic_ncols=True)
