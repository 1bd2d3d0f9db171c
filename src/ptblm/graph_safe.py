"""An optimizer a CUDA graph can hold: its update captured once and replayed for every batch.

A captured update may not read anything from the host: Adam keeps its step counters on the device
(capturable), SGD runs its fused kernel, and the learning rates live in device tensors (DeviceLearningRates),
which SGD_LR_SCHEDULE changes between replays without a new capture. GraphedStep (ptblm.step) puts an
optimizer in this mode, EagerStep back in torch's defaults: a checkpoint of either kind resumes in the other.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def use_graph_safe_updates(optimizer: torch.optim.Optimizer, graph_safe: bool) -> None:
    """Put the optimizer in the mode a step kind needs (a checkpoint may come from the other kind).

    Graph-safe: Adam keeps its step counters on the device (capturable=True) and SGD runs its fused
    kernel, the one that reads a learning rate held in a device tensor. Otherwise torch's defaults:
    counters on the host, foreach kernels; the only mode that runs on CPU. An optimizer built fused
    (fp16's, see ptblm.loss_scaling) stays fused in both modes, its counters on the device.
    """
    fused = bool(optimizer.defaults.get("fused"))
    if isinstance(optimizer, torch.optim.Adam):
        for group in optimizer.param_groups:
            group["capturable"] = graph_safe
            group["fused"] = True if fused else None
            for parameter in group["params"]:
                state = optimizer.state.get(parameter, {})
                if "step" in state:
                    state["step"] = state["step"].to(parameter.device if graph_safe or fused else "cpu")
    elif isinstance(optimizer, torch.optim.SGD):
        for group in optimizer.param_groups:
            group["fused"] = True if graph_safe or fused else None
    elif graph_safe:
        raise ValueError(f"CUDA graph steps support the optimizers make_optimizer builds (Adam, SGD), "
                         f"not {type(optimizer).__name__}; run that optimizer eagerly (cuda_graph=False)")


class DeviceLearningRates:
    """The optimizer's learning rates mirrored in device tensors, which a captured update reads.

    The param groups keep plain floats (what the trainer sets and checkpoints save); `sync` copies
    a changed float into its tensor without a host sync, and `installed` puts the tensors in the
    groups only while the update is being captured.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device):
        self.groups = optimizer.param_groups
        self.values = [float(group["lr"]) for group in self.groups]
        self.tensors = [torch.tensor(value, device=device) for value in self.values]

    def sync(self) -> None:
        for index, group in enumerate(self.groups):
            if group["lr"] != self.values[index]:
                self.values[index] = float(group["lr"])
                self.tensors[index].fill_(self.values[index])

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        floats = [group["lr"] for group in self.groups]
        for group, tensor in zip(self.groups, self.tensors):
            group["lr"] = tensor
        try:
            yield
        finally:
            for group, value in zip(self.groups, floats):
                group["lr"] = value
