"""The run folder's checkpoints: best.pt (the best weights), last.pt (everything to resume), best_params.pt.

Checkpoints hold only tensors and plain containers, so the safe loader reads them (weights_only), through a
descriptor opened without following links; anything else (a link, an empty or truncated file, a pickle with
code in it, a foreign dict, a newer format_version) is Damaged naming the file. `looks_whole` is the cheap
test every reader runs: torch.save writes a zip archive, whose end record a truncated copy lacks.
`problem_with` is the one check of a loaded checkpoint against its run (RunFolder.best_weights and
resume_point call it): its setting is config.json's, its vocabulary the run's, its weights every name and shape
of the model that setting builds; last.pt's epoch within the run and its curves, its optimizer state that of
those weights, its RNG state a generator's, its loss-scaling state there exactly when the run is fp16's. Every
number is read with its range (fields.py): the loss scale finite and above 0, the seconds finite, the epochs
within the run. A checkpoint that fails it is Damaged naming what differs.
torch is imported only where a checkpoint is loaded or saved.
"""
from __future__ import annotations

import errno
import math
import os
import pickle
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import READ_FLAGS, link_reason
from .damage import Damaged
from .fields import field_of, integer_in, json_type, number_in, out_of_range, perplexity_of, seconds_of
from .records import VERSION_KEY, Curves, migrated
from .states import FINISHED_STATES

ZIP_START, ZIP_END = b"PK\x03\x04", b"PK\x05\x06"
ZIP_END_SIZE = 22  # the end-of-central-directory record, without a comment (torch.save writes none)


def looks_whole(path: Path) -> None:
    """Damaged unless `path` (which exists) is a regular file holding a complete zip archive."""
    path = Path(path)
    if path.is_symlink():
        raise Damaged(path, link_reason(path))
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise Damaged(path, "not a regular file")
    if info.st_size == 0:
        raise Damaged(path, "empty (0 bytes): not a checkpoint")
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as error:
        raise Damaged(path, f"cannot be read ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        start = handle.read(4)
        handle.seek(max(info.st_size - ZIP_END_SIZE, 0))
        end = handle.read(4)
    if start != ZIP_START:
        raise Damaged(path, "not a checkpoint written by torch.save (no zip archive): ptblm did not write it")
    if end != ZIP_END:
        raise Damaged(path, f"truncated ({info.st_size} bytes, the zip archive has no end record)")


def load_checkpoint(path: Path, device: Any = "cpu") -> dict:
    """A checkpoint's dict, migrated to the current format, or Damaged naming the file."""
    import torch

    path = Path(path)
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Damaged(path, link_reason(path)) from None
        raise Damaged(path, f"cannot be read ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise Damaged(path, "empty (0 bytes): not a checkpoint")
        try:
            with warnings.catch_warnings():  # "Detected pickle protocol 4": what a foreign pickle looks like
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                obj = torch.load(handle, map_location=device, weights_only=True)
        except pickle.UnpicklingError:
            raise Damaged(path, "refused to load it: it holds Python objects other than tensors and plain "
                                "containers, so ptblm did not write it (nothing in it was run)") from None
        except (RuntimeError, EOFError, ValueError, OSError) as error:
            reason = str(error).split(". ")[0] or type(error).__name__
            raise Damaged(path, f"not a readable checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise Damaged(path, f"holds {json_type(obj)}, not a ptblm checkpoint (a dict)")
    return migrated(obj, path)


def _entry(checkpoint: dict, key: str, kind: str, path: Path) -> Any:
    if key in ("model", "optimizer", "rng"):
        if not isinstance(checkpoint.get(key), dict):
            raise Damaged(path, f"no {key!r} dict (it holds {json_type(checkpoint.get(key))} there): not a "
                                f"ptblm checkpoint")
        return checkpoint[key]
    return field_of(checkpoint, key, kind, path, required=True)


FLOAT32_MAX = 3.4028234663852886e38  # GradScaler keeps its scale in a float32 tensor
INT32_MAX = 2**31 - 1  # and its growth tracker in an int32 one


def loss_scale_state(checkpoint: dict, path: Path) -> dict | None:
    """last.pt's `grad_scaler` (GradScaler.state_dict: scale, growth and backoff factors, growth interval and
    tracker), each entry checked against what GradScaler can hold and ever writes: Damaged naming the entry."""
    state = field_of(checkpoint, "grad_scaler", "an object", path)
    if state is None:
        return None
    where = "grad_scaler."
    number_in(state, "scale", path, where, 0.0, FLOAT32_MAX, open=True,
              expected=f"a finite number above 0, below {FLOAT32_MAX:.4g} (float32's largest)")
    number_in(state, "growth_factor", path, where, 1.0, FLOAT32_MAX, open=True, expected="a finite number above 1")
    number_in(state, "backoff_factor", path, where, 0.0, 1.0, open=True)
    interval = integer_in(state, "growth_interval", path, where, 1, INT32_MAX)
    integer_in(state, "_growth_tracker", path, where, 0, interval - 1,
               why=f"steps without an overflow since the scale last changed, fewer than its growth_interval "
                   f"{interval}")
    return state


def loss_scale_problem(point: ResumePoint) -> str | None:
    """Why last.pt's loss-scaling state does not fit its run: every fp16 run's last.pt holds one (without it a
    resume would restart the scale, no longer the run an unbroken one is), no other precision's does."""
    from .records import _setting_defaults

    precision = {**_setting_defaults(), **point.config}.get("precision")
    if precision == "fp16" and point.grad_scaler is None:
        return ("it has no 'grad_scaler' (fp16's loss-scaling state), which the last.pt of every fp16 run holds: "
                "resuming would restart the loss scale")
    if precision != "fp16" and point.grad_scaler is not None:
        return f"it holds a 'grad_scaler' (fp16's loss-scaling state), but the run's precision is {precision}"
    return None


@dataclass
class BestWeights:
    """best.pt: the weights of the best validation epoch, with the setting and vocabulary they belong to."""

    model: dict  # the state_dict
    config: dict  # the RunConfig fields
    epoch: int
    valid_ppl: float
    vocab_size: int

    def to_checkpoint(self) -> dict:
        from .records import FORMAT_VERSION

        return {VERSION_KEY: FORMAT_VERSION, "model": self.model, "config": self.config, "epoch": self.epoch,
                "valid_ppl": self.valid_ppl, "vocab_size": self.vocab_size}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: Path) -> BestWeights:
        valid_ppl = perplexity_of(checkpoint, "valid_ppl", path)
        if not math.isfinite(valid_ppl):
            raise out_of_range(path, "valid_ppl", valid_ppl, "a finite perplexity (best.pt is saved only at one)")
        return cls(model=_entry(checkpoint, "model", "", path), config=_entry(checkpoint, "config", "an object", path),
                   epoch=integer_in(checkpoint, "epoch", path, low=1), valid_ppl=valid_ppl,
                   vocab_size=integer_in(checkpoint, "vocab_size", path, low=1))


@dataclass
class ResumePoint:
    """last.pt: everything to resume after `epoch` (model, optimizer, learning rate, RNG states, curves).
    `ended` is the final state ("done", "diverged") once training ended: only the promised test pass is left.
    `grad_scaler` is fp16's loss-scaling state (GradScaler.state_dict: scale, growth tracker, factors); None
    for the other precisions and in files of format_version 2 and before."""

    model: dict
    optimizer: dict
    config: dict
    epoch: int
    lr: float
    wall_clock_seconds: float
    rng: dict
    curves: Curves
    ended: str | None = None
    grad_scaler: dict | None = None

    def to_checkpoint(self) -> dict:
        from .records import FORMAT_VERSION

        return {VERSION_KEY: FORMAT_VERSION, "model": self.model, "optimizer": self.optimizer, "config": self.config,
                "epoch": self.epoch, "lr": self.lr, "wall_clock_seconds": self.wall_clock_seconds, "rng": self.rng,
                "curves": self.curves.to_json(), "ended": self.ended, "grad_scaler": self.grad_scaler}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: Path) -> ResumePoint:
        ended = field_of(checkpoint, "ended", "a string", path)
        if ended is not None and ended not in FINISHED_STATES:
            raise Damaged(path, f"'ended' is {ended!r}, expected one of {', '.join(FINISHED_STATES)} or null")
        return cls(model=_entry(checkpoint, "model", "", path), optimizer=_entry(checkpoint, "optimizer", "", path),
                   config=_entry(checkpoint, "config", "an object", path),
                   epoch=integer_in(checkpoint, "epoch", path), lr=number_in(checkpoint, "lr", path),
                   wall_clock_seconds=seconds_of(checkpoint, "wall_clock_seconds", path),
                   rng=_entry(checkpoint, "rng", "", path),
                   curves=Curves.from_json(_entry(checkpoint, "curves", "an object", path), path),
                   ended=ended, grad_scaler=loss_scale_state(checkpoint, path))


# --- the one check of a loaded checkpoint against its run ----------------------------------------------------

def _shape(value: Any) -> tuple | None:
    import torch

    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _expected_model(config: dict, vocab_size: int):
    """The model `config` builds for `vocab_size` words, without memory (on the meta device)."""
    import torch

    from ..config import RunConfig
    from ..models import build_model

    with torch.device("meta"):
        return build_model(RunConfig.from_dict(config), vocab_size)


def setting_problem(stored: dict, recorded: dict) -> str | None:
    """Why a checkpoint's setting `stored` is not config.json's `recorded` (execution options may differ)."""
    from ..config import ConfigError, RunConfig
    from .records import _setting_defaults

    try:
        theirs = RunConfig.from_dict({**_setting_defaults(), **stored}, where="config").identity()
    except (ConfigError, TypeError) as error:
        return f"its setting is not one ptblm trains ({error})"
    ours = RunConfig.from_dict(recorded).identity()
    changes = [f"{key} {theirs[key]!r} (config.json: {ours[key]!r})" for key in ours if theirs[key] != ours[key]]
    return f"its setting is not config.json's: {'; '.join(changes)}" if changes else None


def weights_problem(model: dict, expected) -> str | None:
    """Why the state_dict `model` is not the weights of the module `expected` (names and shapes)."""
    wanted = {name: tuple(value.shape) for name, value in expected.state_dict().items()}
    if not model:
        return f"its 'model' holds no weights (the model has {len(wanted)} tensors)"
    missing, extra = sorted(set(wanted) - set(model)), sorted(set(model) - set(wanted))
    if missing or extra:
        return (f"its weights are not this model's: {len(missing)} missing ({', '.join(missing[:2])}), "
                f"{len(extra)} unexpected ({', '.join(extra[:2])})")
    for name, shape in wanted.items():
        if _shape(model[name]) != shape:
            return f"its weight {name!r} has shape {_shape(model[name])}, the model's is {shape}"
    return None


def optimizer_problem(optimizer: dict, expected) -> str | None:
    """Why `optimizer` (an optimizer's state_dict) is not the state of an optimizer of `expected`'s parameters."""
    shapes = [tuple(parameter.shape) for parameter in expected.parameters()]
    groups, states = optimizer.get("param_groups"), optimizer.get("state")
    if (not isinstance(groups, list) or not isinstance(states, dict)
            or not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups)):
        return "its optimizer state has no 'param_groups' list of groups with 'params' and 'state' object"
    ids = [index for group in groups for index in group["params"]]
    if len(ids) != len(shapes):
        return f"its optimizer state is for {len(ids)} parameters, the model has {len(shapes)}"
    shape_of = dict(zip(ids, shapes))
    for index, entry in states.items():
        if index not in shape_of or not isinstance(entry, dict):
            return f"its optimizer state has an entry {index!r} for no parameter of the model"
        for name, value in entry.items():
            shape = _shape(value)
            if shape and shape != shape_of[index]:
                return (f"its optimizer state {name!r} of parameter {index} has shape {shape}, the parameter "
                        f"{shape_of[index]}")
    return None


def rng_problem(rng: dict) -> str | None:
    import torch

    wanted = torch.get_rng_state()
    for name in ("torch", *(("cuda",) if "cuda" in rng else ())):
        value = rng.get(name)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1 or (
                name == "torch" and value.numel() != wanted.numel()):
            return f"its RNG state {name!r} is not a generator's state (a byte tensor)"
    return None


def problem_with(path: Path, config: dict, model: dict, vocab_size: int | None, recorded_config: dict | None,
                 recorded_vocab: int | None) -> tuple[str | None, Any]:
    """The check of a checkpoint at `path` (see the module docstring) against config.json's setting and
    vocabulary size (None when unknown): why it does not fit, and the module its weights are for."""
    if recorded_config:
        problem = setting_problem(config, recorded_config)
        if problem:
            return problem, None
    if vocab_size is not None and recorded_vocab is not None and vocab_size != recorded_vocab:
        return f"its vocabulary is {vocab_size} words, config.json's {recorded_vocab}", None
    vocab = recorded_vocab if recorded_vocab is not None else vocab_size
    if vocab is None:
        return None, None
    try:
        expected = _expected_model(recorded_config or config, vocab)
    except Exception as error:  # a setting RunConfig accepts that the model code cannot build
        return f"its setting builds no model ({type(error).__name__}: {error})", None
    return weights_problem(model, expected), expected


def resume_problem(point: ResumePoint, expected) -> str | None:
    """What of last.pt beyond its weights does not fit its run: the epoch, the optimizer and RNG states."""
    num_epochs = point.config.get("num_epochs")
    if not 0 <= point.epoch <= (num_epochs if isinstance(num_epochs, int) else point.epoch):
        return f"it says epoch {point.epoch} of a {num_epochs}-epoch run"
    if point.epoch != len(point.curves.epochs):
        return f"it says epoch {point.epoch} but its curves hold {len(point.curves.epochs)} epochs"
    return ((optimizer_problem(point.optimizer, expected) if expected is not None else None)
            or rng_problem(point.rng) or loss_scale_problem(point))
