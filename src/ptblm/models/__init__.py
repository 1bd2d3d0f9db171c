"""The language models: the course's RNN, GRU and Transformer, an LSTM in their style, and their registry.

Two faces, on purpose:

- ptblm's own code (step, epoch loop, bench, report) builds a model with `build_model(config,
  vocab_size)` (the registry, registry.py) and uses only the uniform interface of interface.py:
  `lm_forward(tokens (batch, seq), state) -> (logits (batch, seq, vocab), state)` and
  `initial_state(batch_size)`.
- The course's scaffold (IFT6135 2020, assignment 2: solution.py and run_exp.py) and its contract
  tests use their own names, kept here unchanged so that course code runs against ptblm: the
  constructors `RNN/GRU/LSTM(emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers,
  dp_keep_prob)` with `forward(inputs (seq, batch), hidden) -> (logits (seq, batch, vocab), hidden)`,
  `init_hidden()`, the `init_*` methods, `generate(input=...)`; `make_model(...)` whose forward takes
  (batch, seq) and a mask and returns log-probabilities; `Batch`, `subsequent_mask`, `clones` and
  the Transformer's building blocks.

The names are imported lazily (PEP 562): config.py reads the torch-free registry at every command,
and importing this package must not import torch for that.
"""
from __future__ import annotations

from importlib import import_module

from .registry import ARCHITECTURES, MODELS, Architecture, architecture, build_baseline, build_model

_LAZY = {  # name -> the module (in this package) that defines it
    "RNN": "rnn", "GRU": "gru", "LSTM": "lstm", "clones": "_recurrent",
    **{name: "transformer" for name in (
        "make_model", "FullTransformer", "MultiHeadedAttention", "attention", "causal_mask", "subsequent_mask",
        "Batch", "TransformerBlock", "TransformerStack", "ResidualSkipConnectionWithLayerNorm")},
}

__all__ = [*_LAZY, "build_model", "build_baseline", "architecture", "Architecture", "ARCHITECTURES", "MODELS"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
