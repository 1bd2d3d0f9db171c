"""torch.compile for the models, with its artefacts kept where every task of an array finds them.

Compiled, the layer-major recurrent models run each time step's gate arithmetic in a few fused
kernels instead of one launch per op; the step (eager or a CUDA graph, see step.py) runs the
compiled model as it would run the plain one. Two granularities: the whole model (`compile: model`,
the time loop unrolled into one graph: about a minute of compiling for the GRU 512x2 on an H100,
per issue 6) or only the recurrent time step (`compile: cell`, one small graph: seconds). Inductor's
caches (FX graphs, AOTAutograd graphs, generated kernels: all under $TORCHINDUCTOR_CACHE_DIR) live
beside the run folders, on the storage every task of an array sees: the first task to compile a
shape writes, the others load.
"""
from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path

import torch
from torch import nn

from . import layout

COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # read by Inductor each time it compiles


def compile_cache_dir(results_dir: Path, environ: Mapping[str, str]) -> Path:
    """$TORCHINDUCTOR_CACHE_DIR when the user set it, else <results>/.compile-cache (one for all experiments)."""
    if environ.get(COMPILE_CACHE_ENV):
        return Path(environ[COMPILE_CACHE_ENV])
    return layout.compile_cache_dir(results_dir)


def use_compile_cache(folder: Path, environ: MutableMapping[str, str]) -> Path:
    """Point Inductor's caches at `folder` (absolute, created) in `environ`: the process's own (os.environ,
    which Inductor reads) from the entry point; call before compiling."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    environ[COMPILE_CACHE_ENV] = str(folder)
    return folder


def compile_for_step(model: nn.Module, mode: str, backend="inductor") -> nn.Module | CompiledModel:
    """What a step runs for compile `mode`, sharing the model's parameters and train/eval mode.

    "model": the model's uniform forward (lm_forward) under torch.compile, static shapes (a split's batches
    all have one shape, so each of train and eval mode is one graph; the time loop is unrolled into it).
    "cell": the model itself with its fast path's time step compiled (RecurrentLM.compile_time_step).
    """
    if mode == "model":
        return CompiledModel(model, backend)
    if mode == "cell":
        model.compile_time_step(backend)
        return model
    raise ValueError(f"compile mode {mode!r} is invalid; valid: model or cell")


class CompiledModel:
    """`model` as a step sees it (ptblm.step), its lm_forward compiled; its parameters and mode are the model's.

    torch.compile(model) would compile only `forward`, the course's signature, which the step does not call.
    """

    def __init__(self, model: nn.Module, backend="inductor"):
        self.model = model
        self.lm_forward = torch.compile(model.lm_forward, backend=backend, dynamic=False)

    def parameters(self):
        return self.model.parameters()

    @property
    def training(self) -> bool:
        return self.model.training


def uncompile(model: nn.Module, mode: str) -> nn.Module:
    """The model as it runs uncompiled, after `compile_for_step(model, mode)` failed: "model" left the
    model itself untouched; "cell" swapped its time step, which is swapped back."""
    if mode == "cell":
        model.use_plain_time_step()
    return model


def cache_counts() -> dict[str, int]:
    """Inductor's FX-graph cache hits and misses in this process so far: how much compiling was loaded."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {"hits": int(inductor["fxgraph_cache_hit"]), "misses": int(inductor["fxgraph_cache_miss"])}


def compile_error_summary(error: BaseException) -> str:
    """One line saying why compiling failed: the compiler's own error, not dynamo's wrapper."""
    cause = getattr(error, "inner_exception", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()] or [""]
    return f"{type(cause).__name__}: {lines[0].strip()}"
