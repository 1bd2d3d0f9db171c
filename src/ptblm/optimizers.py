"""The optimizers a run trains with and SGD_LR_SCHEDULE's learning rate per epoch (the course scaffold's)."""
from __future__ import annotations

import torch

from .config import RunConfig

LR_DECAY_BASE = 1 / 1.15  # SGD_LR_SCHEDULE, from the scaffold
LR_FLAT_EPOCHS = 14


def scheduled_lr(lr: float, optimizer_name: str, epoch_index: int) -> float:
    """The learning rate for 0-based epoch `epoch_index`, given the previous epoch's rate."""
    if optimizer_name == "SGD_LR_SCHEDULE":
        return lr * LR_DECAY_BASE ** max(epoch_index - LR_FLAT_EPOCHS, 0)
    return lr


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """Adam, or SGD p <- p - lr * g (no momentum); fused for fp16, whose loss scaling skips overflowed updates
    inside the fused kernel (see ptblm.loss_scaling), torch's default kernels for the other precisions."""
    fused = True if config.precision == "fp16" else None
    if config.optimizer == "ADAM":
        return torch.optim.Adam(model.parameters(), lr=config.initial_lr, fused=fused)
    return torch.optim.SGD(model.parameters(), lr=config.initial_lr, fused=fused)
