"""`--deterministic` (jobs key `deterministic: true`): the same run gives the same numbers, on request.

torch.use_deterministic_algorithms(True) makes every operation with a deterministic implementation use it and
every other one raise. On CUDA, cuBLAS is deterministic only with a fixed workspace: CUBLAS_WORKSPACE_CONFIG
=:4096:8 (or :16:8). PyTorch sizes a cuBLAS handle's workspace from that variable when it creates the handle,
at the process's first matrix product on the GPU, so it is set in the process's environment before the model
reaches the device (the trainer calls use_deterministic before it builds the model; each run is its own
process, under Slurm and locally). A process that ran CUDA matrix products before cannot be helped: the log
says so. Off by default: deterministic kernels can be slower (a scatter-add by sorting instead of atomics)
and the course's results do not need bit-equal reruns.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, MutableMapping

from .errors import UserError

CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE = ":4096:8"  # the larger of the two settings NVIDIA documents as deterministic
NO_DETERMINISTIC_VERSION = re.compile(r"(\S+) does not have a deterministic implementation")


class NondeterministicOperation(UserError, RuntimeError):
    """--deterministic met an operation that torch has no deterministic version of."""


def use_deterministic(enabled: bool, environ: MutableMapping[str, str]) -> tuple[dict, str | None]:
    """Deterministic algorithms on or off for this process (a run sets it either way, as it sets the matmul
    precision). Returns what config.json records, and a note for the log when cuBLAS may have been set up
    without the workspace setting."""
    import torch

    note = None
    if enabled:
        if CUBLAS_VARIABLE not in environ and torch.cuda.is_available() and torch.cuda.is_initialized():
            note = (f"warning: CUDA was in use in this process before --deterministic set {CUBLAS_VARIABLE}="
                    f"{CUBLAS_WORKSPACE}: cuBLAS may not be deterministic; run it in a fresh process")
        environ.setdefault(CUBLAS_VARIABLE, CUBLAS_WORKSPACE)  # a value the person set (:16:8) is kept
    torch.use_deterministic_algorithms(enabled)
    return {"deterministic_algorithms": enabled, CUBLAS_VARIABLE: environ.get(CUBLAS_VARIABLE)}, note


def nondeterministic_operation(error: BaseException) -> str | None:
    """The operation torch names in its 'does not have a deterministic implementation' error, else None."""
    found = NO_DETERMINISTIC_VERSION.search(str(error)) if isinstance(error, RuntimeError) else None
    return found.group(1) if found else None


@contextlib.contextmanager
def naming_nondeterministic_operations() -> Iterator[None]:
    """torch's long RuntimeError for an operation without a deterministic version, as one line naming it."""
    try:
        yield
    except RuntimeError as error:
        operation = nondeterministic_operation(error)
        if operation is None:
            raise
        import torch

        raise NondeterministicOperation(
            f"--deterministic: {operation} has no deterministic implementation in torch {torch.__version__}; run "
            f"this setting without --deterministic (deterministic: false in the jobs file)") from None
