"""fp16's dynamic loss scaling: torch.amp.GradScaler, run so that the whole step stays in one CUDA graph.

float16 gradients below ~6e-8 underflow to zero, so an fp16 step multiplies the loss by a scale (2^16 at first)
before backward, divides the gradients by it (`unscale_`: before the gradient-norm clip, which must see the true
gradients), skips the update when a gradient is inf or NaN, and then adjusts the scale: halved after a skipped
step, doubled after 2000 steps in a row without one (`update`). The scale and its growth tracker are the run's
state: last.pt keeps them (`state_dict`), so a resumed run continues with the scale an unbroken run has.

Why it can live inside a CUDA graph: PyTorch's CUDA-graph notes ("Usage with torch.cuda.amp") capture only
forward and backward, because for a typical optimizer `GradScaler.step` reads the inf check on the host
(`.item()`), which a capture forbids. A *fused* Adam or SGD is the exception GradScaler provides for: it takes the
scaler's found-inf tensor and skips its update on the device (`_step_supports_amp_scaling`), and unscale_ (the
inf check) and update (torch._amp_update_scale_) are device ops too; so no part of the step waits for the host.
`make_optimizer` therefore builds fp16's optimizers fused, on every device, so that the graphed and the eager
step run the same update.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .wording import count

INITIAL_SCALE = 2.0**16  # GradScaler's default; the scale then finds its level (halved at each overflow)


class LossScaling:
    """A GradScaler and the count of the steps it skipped since the last `epoch_report`, kept on the device
    (counting never waits for the GPU; the report reads it once)."""

    def __init__(self, device: torch.device):
        self.scaler = torch.amp.GradScaler(device.type, init_scale=INITIAL_SCALE)
        self.skipped = torch.zeros((), device=device)  # float: found_inf is a float tensor

    @staticmethod
    def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
        """Refuse an optimizer whose update cannot skip on the device: GradScaler would sync on it."""
        if not optimizer.defaults.get("fused"):
            raise ValueError(f"fp16 steps need an optimizer built with fused=True (make_optimizer builds Adam and "
                             f"SGD so for precision fp16), not this {type(optimizer).__name__}: its update would "
                             f"wait for the GPU at every step")

    def backward(self, loss: Tensor) -> None:
        """Gradients of loss * scale."""
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale and record whether any is inf or NaN."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Update unless a gradient was inf/NaN (counted in `skipped`), then adjust the scale."""
        self.scaler.step(optimizer)
        # the scaler's own inf check for this step (1.0 when it skipped), a device tensor: no host sync
        for found_inf in self.scaler._found_inf_per_device(optimizer).values():
            self.skipped += found_inf.to(self.skipped.device)
        self.scaler.update()

    def abandon_step(self) -> None:
        """Forget a step begun but not finished (a CUDA-graph capture that failed): the scale and growth tracker
        stay; the step's record of unscale_/step calls, which the next step would trip on, is cleared."""
        self.scaler.update(new_scale=self.scaler.get_scale())

    @staticmethod
    def describe(device: torch.device, graphed: bool, optimizer: torch.optim.Optimizer) -> str:
        """What an fp16 run runs, for its log (once)."""
        where = ("the whole step, loss scaling included, captured in one CUDA graph" if graphed
                 else f"eager steps on {device.type}" + (" (CPU autocast to float16)" if device.type == "cpu" else ""))
        return (f"fp16: float16 autocast, float32 weights, dynamic loss scaling (torch.amp.GradScaler from scale "
                f"{INITIAL_SCALE:g}; fused {type(optimizer).__name__} skips an overflowed step on the device); {where}")

    def epoch_report(self) -> str:
        """The skipped steps since the last report and the current scale, for the log; the count restarts."""
        skipped = int(self.skipped.item())
        self.skipped.zero_()
        return (f"fp16: {count(skipped, 'step')} skipped (overflow), "
                f"scale {self.scaler.get_scale():g}")

    def state_dict(self) -> dict:
        """The scale, growth tracker and factors: plain numbers, as last.pt stores them."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)


def loss_scaling_for(precision: str, device: torch.device) -> LossScaling | None:
    """The loss scaling a precision trains with: fp16's, none for the others (fp32, tf32, bf16's 8-bit exponent
    has float32's range)."""
    return LossScaling(device) if precision == "fp16" else None
