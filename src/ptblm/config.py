"""One training setting as a typed, validated dataclass.

The CLI flags (`ptblm train`), the jobs YAML (`jobs/*.yaml`) and the run folder's config.json
all go through `RunConfig.from_dict`, so a setting is validated in exactly one place.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from . import corpora
from .errors import UserError
from .models.registry import ARCHITECTURES, MODELS  # torch-free: one entry per architecture

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
ON_OFF_OPTIONS = ("cuda_graph", "compile")  # YAML 1.1 reads a bare on/off as a boolean: taken back as "on"/"off"
# run_exp.py's --debug: one epoch, every step logged as the scaffold prints it, and the architecture's own
# changes (Architecture.debug_changes: the TRANSFORMER's tiny model).
DEBUG_CHANGES = {"num_epochs": 1, "log_steps": True}


class ConfigError(UserError, ValueError):
    """A setting that cannot run; the message names where, the key, the value and what is valid."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"line {line}: key {key!r} appears a second time (first on line {first_line}); "
                         f"valid: each key once per mapping (merge the two)")


class _NotDecimal(yaml.YAMLError):
    def __init__(self, text: str, line: int, kind: type = int):
        self.line = line
        super().__init__(not_decimal_message(text, kind))


def not_decimal_message(text: str, kind: type) -> str:
    """Why `text` is no number here, and the decimal spelling of what YAML 1.1 would have read."""
    if kind is int:
        digits = text.replace("_", "")
        example = str(int(digits)) if re.fullmatch(r"[-+]?[0-9]+", digits) else "32"
        return (f"{text} is not a decimal integer (YAML 1.1 reads a leading 0 as octal, 0x as hex, 1:20 as base 60, "
                f"1_000 as 1000); valid: decimal digits without a leading zero, e.g. {example}")
    digits = text.replace("_", "")
    example = digits if DECIMAL_FLOAT.fullmatch(digits) else "0.001"
    return (f"{text} is not a decimal number (YAML 1.1 reads 1:30.5 as base 60, 1_000.5 as 1000.5); valid: "
            f"decimal digits with an optional point and exponent, e.g. {example} or 1e-3")


DECIMAL_INTEGER = re.compile(r"[-+]?(0|[1-9][0-9]*)")
DECIMAL_FLOAT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
YAML_NON_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")  # refused later, with the key's range


def decimal_number(text: str) -> float | None:
    """The one reading of a written float (a jobs file, --set, a flag, a quoted value): decimal only, or None."""
    return float(text) if DECIMAL_FLOAT.fullmatch(text) else None


def decimal_integer(text: str) -> int | None:
    """The one reading of a written integer (a jobs file, --set, a flag): decimal only, or None."""
    return int(text) if DECIMAL_INTEGER.fullmatch(text) else None


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key written twice in one mapping (PyYAML keeps the last one silently), and
    a number in any base but 10 (`hidden_size: 032` is not 26, `seeds: [0777]` not 511, `1:30.5` not 90.5)."""

    def construct_decimal_int(self, node: yaml.ScalarNode) -> int:
        value = decimal_integer(node.value)
        if value is None:
            raise _NotDecimal(node.value, node.start_mark.line + 1)
        return value

    def construct_decimal_float(self, node: yaml.ScalarNode) -> float:
        if YAML_NON_FINITE.fullmatch(node.value):
            return self.construct_yaml_float(node)
        value = decimal_number(node.value)
        if value is None:
            raise _NotDecimal(node.value, node.start_mark.line + 1, float)
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first_lines:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, first_lines[key])
                first_lines[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base class names it
                pass
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_decimal_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_decimal_float)


def load_yaml(text: str, where: str, lines: bool = True) -> Any:
    """YAML text as this project reads it everywhere (jobs files, profiles, --set values): the safe loader,
    no anchors or aliases, each key once, integers in base 10. Errors name `where` (and the line)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: aliases are not expanded here
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ConfigError(f"{where}, line {event.start_mark.line + 1}: YAML anchors and aliases (&name, "
                                  f"*name, <<) are not allowed; valid: each value written out")
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as error:
        raise ConfigError(f"{where}, {error}") from None
    except _NotDecimal as error:
        raise ConfigError(f"{where}{f', line {error.line}' if lines else ''}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {error}") from error


def read_yaml_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty one); `expected` says what kind.

    Anchors and aliases are refused before anything is built (a few lines of aliases expand to billions of
    values), and so is a key written twice in one mapping.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); valid: a YAML file saved as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror}); valid: a readable YAML file") from None
    content = load_yaml(text, str(path)) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected {expected}, got {type(content).__name__}")
    return content


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


_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str}


def convert_value(where: str, key: str, type_name: Any, value: Any) -> Any:
    expected = _TYPE_NAMES[str(type_name)]
    if key in ON_OFF_OPTIONS and isinstance(value, bool):
        return "on" if value else "off"
    if expected is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        number = decimal_number(value.strip())
        if number is not None:
            return number
        if re.fullmatch(r"[-+0-9_.:eE]+", value.strip()) and re.search("[0-9]", value):
            raise ConfigError(f"{where}: {key} = {not_decimal_message(value, float)}")
    ok = (isinstance(value, bool) if expected is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if expected is float else
          isinstance(value, int) and not isinstance(value, bool) if expected is int else
          isinstance(value, str))
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r} has type {type(value).__name__}; "
                          f"expected {expected.__name__}")
    return float(value) if expected is float else value
