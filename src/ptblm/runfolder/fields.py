"""Checking one value read from a run file (a JSON field, a checkpoint entry): its type, then its range.

A type alone lets through what no run writes: seconds that are inf, nan, negative or 1e308, a step past the steps
of its epoch, an epoch past the run's. Every number is checked where it is read, against the range of what it
measures, so that what a record holds is safe to compute with (a clock time, a percentage, a sum); a value
outside it is Damaged naming the file, the field, the value and what is valid. Perplexities are the exception:
inf and nan are what a diverged run records, so only values no perplexity can have (<= 0) are refused.
JSON stays standard: a non-finite float is written as "inf", "-inf" or "nan" and read back as a float.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .damage import Damaged

MAX_SECONDS = 100 * 365.25 * 24 * 3600  # a century: no epoch, run or wait that ptblm times lasts longer
MAX_TIMESTAMP = 32503680000.0  # 1 January 3000, in seconds since 1970: no clock ptblm read is later
SECONDS = "seconds: a finite number from 0 to a century (3155760000)"
TIMESTAMP = "a time: finite seconds since 1970, before the year 3000"


def json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("inf", "-inf", "nan")


KINDS = {"an integer": _is_int, "a number": _is_number, "a string": lambda v: isinstance(v, str),
         "a boolean": lambda v: isinstance(v, bool),
         "an object": lambda v: isinstance(v, dict), "a list": lambda v: isinstance(v, list),
         "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}


def shown(value: Any) -> str:
    """The value as a message shows it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def encode_float(value: float) -> float | str:
    """JSON-safe float: finite values as numbers, others as 'inf', '-inf' or 'nan'."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def decode_float(value: float | str | None) -> float:
    """A JSON number (or 'inf', '-inf', 'nan') as a float; an integer too large for one is +-inf."""
    if value is None:
        return float("nan")
    try:
        return float(value)
    except OverflowError:  # 10**400 is a valid JSON integer
        return math.inf if value > 0 else -math.inf


def field_of(obj: dict, key: str, kind: str, path: Path, where: str = "", required: bool = False) -> Any:
    """obj[key] when it is of `kind` (None when absent or null, unless required): else Damaged naming it."""
    value = obj.get(key)
    if value is None:
        if required:
            raise Damaged(path, f"no {where}{key!r} (ptblm writes {kind} there)")
        return None
    if not KINDS[kind](value):
        raise Damaged(path, f"{where}{key!r} is {json_type(value)} ({shown(value)}), expected {kind}")
    return value


def json_object(obj: Any, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise Damaged(path, f"expected a JSON object (ptblm's {Path(path).name}), got {json_type(obj)}")
    return obj


def out_of_range(path: Path, name: str, value: Any, expected: str) -> Damaged:
    """The Damaged of a value of the right type outside what it measures can be."""
    return Damaged(path, f"{name!r} is {shown(value)}, out of range: expected {expected}")


def integer_in(obj: dict, key: str, path: Path, where: str = "", low: int = 0, high: int | None = None,
               required: bool = True, why: str = "") -> int | None:
    """obj[key]: an integer from `low` to `high` (no upper bound when None); `why` says where a bound comes from."""
    value = field_of(obj, key, "an integer", path, where, required)
    if value is not None and not (low <= value and (high is None or value <= high)):
        expected = (str(low) if low == high else f"an integer from {low} to {high}" if high is not None
                    else f"an integer >= {low}")
        raise out_of_range(path, f"{where}{key}", value, expected + (f" ({why})" if why else ""))
    return value


def number_in(obj: dict, key: str, path: Path, where: str = "", low: float = 0.0, high: float = math.inf,
              required: bool = True, expected: str | None = None, open: bool = False) -> float | None:
    """obj[key]: a finite number from `low` to `high` (strictly between them when `open`), as a float;
    `expected` says the range in words."""
    value = field_of(obj, key, "a number", path, where, required)
    if value is None:
        return None
    number = decode_float(value)
    inside = low < number < high if open else low <= number <= high
    if not (math.isfinite(number) and inside):
        between = "between" if open else "from"
        raise out_of_range(path, f"{where}{key}", value, expected or (
            f"a finite number {'>' if open else '>='} {low:g}" if high == math.inf
            else f"a finite number {between} {low:g} {'and' if open else 'to'} {high:g}"))
    return number


def seconds_of(obj: dict, key: str, path: Path, where: str = "", required: bool = True) -> float | None:
    """A duration ptblm measured: finite, 0 to MAX_SECONDS."""
    return number_in(obj, key, path, where, 0.0, MAX_SECONDS, required, SECONDS)


def timestamp_of(obj: dict, key: str, path: Path, where: str = "", required: bool = True) -> float | None:
    """A time.time() ptblm read: finite, 0 to MAX_TIMESTAMP."""
    return number_in(obj, key, path, where, 0.0, MAX_TIMESTAMP, required, TIMESTAMP)


def perplexity(value: float, path: Path, where: str) -> float:
    """A perplexity is above 0 (at least 1, exp of a mean loss; inf or nan once diverged): else Damaged."""
    if value <= 0 or value == -math.inf:
        raise Damaged(path, f"{where!r} is {value!r}: a perplexity is above 0 (inf or nan for a diverged run)")
    return value


def perplexity_of(obj: dict, key: str, path: Path, where: str = "", required: bool = True) -> float | None:
    value = field_of(obj, key, "a number", path, where, required)
    return None if value is None else perplexity(decode_float(value), path, f"{where}{key}")
