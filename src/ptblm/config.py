"""One training setting as a typed, validated dataclass.

The CLI flags (`ptblm train`), the jobs YAML (`jobs/*.yaml`) and the run folder's config.json
all go through `RunConfig.from_dict`, so a setting is validated in exactly one place.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from . import corpora
from .errors import ConfigError
from .models.registry import ARCHITECTURES, MODELS, readers_of  # torch-free: one entry per architecture
from .yamlread import (decimal_integer, decimal_number, load_yaml, read_bool, read_float, read_int, read_text,
                       read_yaml_mapping)

__all__ = ["ConfigError", "RunConfig", "convert_value", "decimal_integer", "decimal_number", "load_yaml",
           "read_yaml_mapping"]

OPTIMIZERS = ("SGD", "SGD_LR_SCHEDULE", "ADAM")
IMPLEMENTATIONS = ("fast", "reference")  # reference = the plain nested loop over time and layers
ATTENTIONS = ("scratch", "fused")  # fused = torch's scaled_dot_product_attention
# strict float32; TF32 matmuls on CUDA; bf16 autocast, fp32 master weights; fp16 the same with loss scaling
# (ptblm.loss_scaling). All four run on CPU too (autocast supports bf16 and fp16 there): slower, for tests.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
CUDA_GRAPHS = ("auto", "on", "off")  # auto = the whole step captured in a CUDA graph on CUDA, eager on CPU
# torch.compile (Inductor, cached; see compiling.py): model = the whole model, cell = only a recurrent model's fast
# path's time step, a small graph that compiles in seconds.
COMPILES = ("off", "model", "cell")
CHOICES = {"model": MODELS, "optimizer": OPTIMIZERS, "impl": IMPLEMENTATIONS, "attention": ATTENTIONS,
           "precision": PRECISIONS, "device": DEVICES, "cuda_graph": CUDA_GRAPHS, "compile": COMPILES,
           "corpus": tuple(corpora.CORPORA)}
MAX_SEED = 2**32 - 1  # numpy's limit; torch's is larger
GRAD_CLIP = 0.25  # the course's gradient-norm clip, not a setting
# How a setting runs, not what it computes: they may change when a run resumes, and stay out of its name.
EXECUTION_OPTIONS = ("save_best", "evaluate", "debug", "log_steps", "impl", "attention", "device", "cuda_graph",
                     "compile", "deterministic")
# run_exp.py's --debug: one epoch, every step logged as the scaffold prints it, and the architecture's own
# changes (Architecture.debug_changes: the TRANSFORMER's tiny model).
DEBUG_CHANGES = {"num_epochs": 1, "log_steps": True}


@dataclass(frozen=True)
class RunConfig:
    """The scaffold's run_exp.py flags plus this suite's execution options."""

    model: str
    optimizer: str
    initial_lr: float
    batch_size: int
    hidden_size: int
    num_layers: int
    dp_keep_prob: float
    seq_len: int = 35
    emb_size: int = 200
    num_epochs: int = 20
    seed: int = 1111
    corpus: str = corpora.DEFAULT_CORPUS  # a ptblm.corpora entry; config.json files without it are PTB runs
    save_best: bool = False  # also write best_params.pt (the raw state_dict), as run_exp.py; best.pt is written anyway
    evaluate: bool = False  # also report test perplexity of the best weights
    debug: bool = False  # the scaffold's: one epoch, a tiny TRANSFORMER, every step logged (DEBUG_CHANGES)
    log_steps: bool = False  # log the loss of every step
    n_heads: int = 16  # transformer only, as in the scaffold's make_model
    max_batches: int = 0  # > 0 caps batches per epoch (dry runs); 0 = the whole split
    impl: str = "fast"
    attention: str = "scratch"
    precision: str = "fp32"
    device: str = "auto"
    cuda_graph: str = "auto"
    compile: str = "off"
    deterministic: bool = False  # torch.use_deterministic_algorithms (see ptblm.determinism)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "setting") -> RunConfig:
        """Build and validate; raise ConfigError naming `where`, the key and the valid values."""
        known = {f.name: f for f in fields(cls)}
        cls.check_values(values, where)
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ConfigError(f"{where}: missing key {missing[0]!r} (required: {', '.join(required)})")
        converted = {name: convert_value(where, name, known[name].type, value) for name, value in values.items()}
        if converted.get("debug"):
            entry = ARCHITECTURES.get(converted["model"])  # an unknown model is reported by check()
            converted.update(DEBUG_CHANGES, **(entry.debug_changes if entry else {}))
        config = cls(**converted)
        config.check(where)
        return config

    @classmethod
    def check_values(cls, values: dict[str, Any], where: str) -> None:
        """Part of a setting (defaults.yaml, a jobs file's common:): every key known, every value of its type."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(known)}")
        for name, value in values.items():
            convert_value(where, name, known[name].type, value)

    def check(self, where: str = "setting") -> None:
        def fail(key: str, valid: str) -> None:
            raise ConfigError(f"{where}: {key} = {getattr(self, key)!r} is invalid; valid: {valid}")

        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                fail(key, "one of " + ", ".join(choices))
        for key in ("batch_size", "hidden_size", "num_layers", "seq_len", "emb_size", "num_epochs", "n_heads"):
            if getattr(self, key) < 1:
                fail(key, "an integer >= 1")
        if not 0 < self.initial_lr < math.inf:
            fail("initial_lr", "a finite number > 0")
        if not 0 <= self.seed <= MAX_SEED:
            fail("seed", f"an integer from 0 to {MAX_SEED} (what torch and numpy accept)")
        if not 0 < self.dp_keep_prob <= 1:
            fail("dp_keep_prob", "a keep probability in (0, 1]")
        if self.max_batches < 0:
            fail("max_batches", "0 (whole split) or a positive number of batches")
        entry = ARCHITECTURES[self.model]
        if entry.attention_heads and self.hidden_size % self.n_heads:
            fail("hidden_size", f"a multiple of n_heads = {self.n_heads} for the {self.model}")
        if self.compile == "cell" and not (entry.recurrent and self.impl == "fast"):
            fail("compile", f"off or model for {self.model} with impl {self.impl!r} (cell compiles the time step "
                            f"of a recurrent model's fast path)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def identity(self) -> dict[str, Any]:
        """The fields that define the setting: two configs with equal identities train the same model."""
        return {key: value for key, value in asdict(self).items() if key not in EXECUTION_OPTIONS}

    def trained_identity(self) -> dict[str, Any]:
        """identity() without the keys its architecture does not read (the registry's `unread`): two settings
        with equal ones train the same model, whatever their names say."""
        unread = ARCHITECTURES[self.model].unread
        return {key: value for key, value in self.identity().items() if key not in unread}

    def check_keys_read(self, where: str) -> None:
        """A setting made from flags gives no key its architecture does not read (`train --model RNN --n_heads 4`
        would train the default RNN under another name). Recorded settings are read as they are."""
        defaults = {f.name: f.default for f in fields(self)}
        for key in ARCHITECTURES[self.model].unread:
            if getattr(self, key) != defaults[key]:
                raise ConfigError(f"{where}: {key} = {getattr(self, key)!r} is not read by the {self.model}, which "
                                  f"would train the same model under another name; valid: leave {key} out ({key} "
                                  f"is read by {', '.join(readers_of(key))})")

    def run_name(self) -> str:
        """Stable, readable folder name from the hyper-parameters that define the setting."""
        parts = [self.model.lower(), self.optimizer.lower(), f"lr{exact_number(self.initial_lr)}",
                 f"bs{self.batch_size}", f"h{self.hidden_size}", f"l{self.num_layers}",
                 f"keep{exact_number(self.dp_keep_prob)}"]
        defaults = {f.name: f.default for f in fields(self)}
        for key, short in (("seq_len", "seq"), ("emb_size", "emb"), ("num_epochs", "ep"),
                           ("seed", "seed"), ("n_heads", "heads"), ("max_batches", "maxb"), ("precision", ""),
                           ("corpus", "")):
            value = getattr(self, key)
            if value != defaults[key]:
                parts.append(f"{short}{value}")
        return "_".join(parts)


def exact_number(value: float) -> str:
    """A float as run names and tables show it: `{:g}` where that reads back as the same number (every name
    made so far: lr1, lr0.001, keep0.35), else the shortest text that does (repr), so that two settings that
    differ never share a name (0.5 and 0.5000001 are lr0.5 and lr0.5000001)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def convert_value(where: str, key: str, type_name: Any, value: Any) -> Any:
    """A RunConfig key's value, read for the key's type (yamlread: a text key takes what YAML read as a number
    or boolean as written, so `compile: on` is "on" and `compile: true` is refused as 'true')."""
    kind = str(type_name)
    if kind == "int":
        return read_int(where, key, value)
    if kind == "float":
        return read_float(where, key, value)
    if kind == "bool":
        return read_bool(where, key, value)
    return read_text(where, key, value)
