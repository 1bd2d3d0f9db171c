"""The one interface every model offers ptblm's own code: the step, the epoch loop, the bench, the report.

    logits, state = model.lm_forward(tokens, state)   tokens (batch, seq) int64 -> logits (batch, seq, vocab)
    state = model.initial_state(batch_size)           zeros for a recurrent model, None for the Transformer

A state is a tensor pytree: None, a tensor, or a tuple of states (the LSTM's (h, c)); whoever carries
it across batches (detach, copy into a CUDA graph's buffers) maps over its tensors with `map_state`
and never looks inside. The course's own signatures ((seq, batch) forward, init_hidden, generate)
stay on the classes beside this interface, for run_exp.py and the graders (see ptblm.models).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:
    from torch import Tensor

State = Union["Tensor", tuple["State", ...], None]


class LanguageModel(Protocol):
    def lm_forward(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """(batch, seq) token ids and the state after the previous batch -> logits (batch, seq, vocab), next state."""

    def initial_state(self, batch_size: int) -> State:
        """The state before the first batch of a split, on the parameters' device and dtype."""


def map_state(function: Callable[[Tensor], Any], state: State) -> State:
    """`function` applied to each tensor of `state`, its structure kept (None stays None)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(map_state(function, part) for part in state)
    return function(state)


def state_tensors(state: State) -> list[Tensor]:
    """The tensors of `state`, depth first."""
    tensors: list[Tensor] = []
    map_state(tensors.append, state)
    return tensors
