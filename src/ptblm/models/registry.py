"""The architectures ptblm trains, one entry each: the one place a model's name is looked up.

A setting's `model` names an entry. `config.MODELS` and every check that depends on the
architecture read the entry's fields; the trainer, the step, the bench and the report call
`build_model` / `build_baseline` and then only the uniform interface (ptblm.models.interface).

Torch-free on purpose: config.py, which every command imports (`ptblm --help` too), reads this
module; an entry names its builders as "module:attribute" inside ptblm.models, imported only when
a model is built.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from ..config import RunConfig


@dataclass(frozen=True)
class Architecture:
    """What ptblm needs to know about one architecture."""

    name: str  # a setting's `model` value
    build: str  # "module:attribute" in ptblm.models: (config, vocab_size) -> the model a run trains
    recurrent: bool  # carries a state across batches, has impl fast|reference and a time step (compile: cell)
    baseline: str | None = None  # the same for PyTorch's own layers at its sizes, the bench's `builtin` yardstick
    attention_heads: bool = False  # n_heads splits hidden_size, which must be a multiple of it
    # setting keys its model never reads: two settings that differ only in them train the same model (RunConfig.
    # trained_identity), and a flag or --set that gives one only to such models is refused
    unread: tuple[str, ...] = ()
    debug_changes: Mapping[str, Any] = field(default_factory=dict)  # run_exp.py's --debug, beyond one epoch
    title: str = ""  # its name in prose (the report's title); default: `name`

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)

    def build_model(self, config: RunConfig, vocab_size: int) -> nn.Module:
        return _resolve(self.build)(config, vocab_size)

    def build_baseline(self, config: RunConfig, vocab_size: int) -> nn.Module:
        if self.baseline is None:
            raise ValueError(f"{self.name} has no builtin baseline (its registry entry names none)")
        return _resolve(self.baseline)(config, vocab_size)


def _resolve(reference: str):
    """"lstm:LSTM.from_config" -> ptblm.models.lstm.LSTM.from_config."""
    module_name, attribute = reference.split(":")
    target = import_module(f"{__package__}.{module_name}")
    for name in attribute.split("."):
        target = getattr(target, name)
    return target


ARCHITECTURES: dict[str, Architecture] = {entry.name: entry for entry in (
    Architecture("RNN", build="rnn:RNN.from_config", recurrent=True, baseline="builtin.baselines:rnn",
                 unread=("n_heads",)),
    Architecture("GRU", build="gru:GRU.from_config", recurrent=True, baseline="builtin.baselines:gru",
                 unread=("n_heads",)),
    Architecture("LSTM", build="lstm:LSTM.from_config", recurrent=True, baseline="builtin.baselines:lstm",
                 unread=("n_heads",)),
    # run_exp.py --debug builds the TRANSFORMER as make_model(vocab, n_units=16, n_blocks=2), make_model's
    # other defaults (dropout 0.1, 16 heads); the recurrent models keep their size.
    Architecture("TRANSFORMER", build="transformer:build", recurrent=False, title="Transformer",
                 baseline="builtin.baselines:transformer", attention_heads=True, unread=("emb_size",),
                 debug_changes={"hidden_size": 16, "num_layers": 2, "dp_keep_prob": 0.9, "n_heads": 16}),
)}
MODELS = tuple(ARCHITECTURES)  # a setting's valid `model` values, in the order tables and figures list them


def readers_of(key: str) -> list[str]:
    """The architectures whose models read setting `key` (those whose entry does not list it as unread)."""
    return [name for name, entry in ARCHITECTURES.items() if key not in entry.unread]


def architecture(name: str) -> Architecture:
    """The entry for a setting's `model`; a ValueError naming the valid ones otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"model = {name!r} is not an architecture ptblm knows; valid: {', '.join(MODELS)}")
    return ARCHITECTURES[name]


def build_model(config: RunConfig, vocab_size: int) -> nn.Module:
    """The model a run trains, from its setting."""
    return architecture(config.model).build_model(config, vocab_size)


def build_baseline(config: RunConfig, vocab_size: int) -> nn.Module:
    """PyTorch's own layers at the setting's sizes, with the same interface (the bench's `builtin` path)."""
    return architecture(config.model).build_baseline(config, vocab_size)
