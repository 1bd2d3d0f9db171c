"""The argparse types of ptblm's flags: a bad value is one line that names it and what is valid (exit 2)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import MAX_SEED, decimal_integer, decimal_number
from ..errors import UserError
from ..layout import user_path


def finite_float(text: str) -> float:
    """Every float flag: a finite decimal number, read as jobs files and --set read one (argparse turns the
    error into one line, exit 2)."""
    value = decimal_number(text.strip())
    if value is None and text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number; valid: e.g. 0.7 or 1e-3") from None
    if value is None or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; valid: e.g. 0.7") from None
    return value


def decimal_int(text: str) -> int:
    """Every integer flag: decimal digits, as jobs files and --set read them (no 1_000, no leading zero)."""
    value = decimal_integer(text.strip())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal integer; valid: digits without a leading "
                                         f"zero, e.g. 32") from None
    return value


def bounded(kind, noun: str, valid: str, minimum: float, maximum: float = math.inf, above: bool = False):
    """An argparse type: `kind` (finite_float or decimal_int) in [minimum, maximum] ((minimum, maximum] with above);
    its one-line error says the text is not `noun`, and what is `valid`."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, argparse.ArgumentTypeError):
            value = None
        if value is None or not minimum <= value <= maximum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; valid: {valid}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


temperature = bounded(finite_float, "a temperature", "0 (greedy) or a finite number > 0, e.g. 0.7", 0)
perplexity = bounded(finite_float, "a perplexity", "a finite number > 0, e.g. 200", 0, above=True)
count = bounded(decimal_int, "a count", "an integer >= 0", 0)
positive = bounded(decimal_int, "a positive integer", "1 or more", 1)
seed = bounded(decimal_int, "a seed", f"an integer from 0 to {MAX_SEED}", 0, MAX_SEED)


def setting_list(text: str) -> str:
    """--only's value: settings separated by commas, none of them empty (`--only ,` would pick nothing).
    Which settings exist is the experiment's to say (jobs.only_settings)."""
    if not text.strip() or any(not piece.strip() for piece in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty setting; valid: setting numbers or run names "
                                         f"separated by commas, e.g. 0,2 or 0-3")
    return text


def path_flag(text: str) -> Path:
    """Every folder or file flag (and the variables that default them, given as strings): `~` expanded
    (layout.user_path), so that `--results '~/x'` never makes a folder named `~`."""
    try:
        return user_path(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


path_flag.completes_paths = True  # shell completion offers file names for it
