"""What a command is told to read, show, run or evaluate (experiments, runs, bench cases), each once.

Naming one twice (`ptblm export smoke smoke`, `ptblm evaluate smoke smoke/<run>`) must never read, write, show
or run it twice: every command line list goes through `each_once` (cli.flags.EachOnce), and so does every
function that resolves such a list to experiments or run folders, for the callers that import it.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

Item = TypeVar("Item")


def each_once(items: Iterable[Item], key: Callable[[Item], Hashable] | None = None) -> list[Item]:
    """`items` without repeats, in the order first named; `key` says when two spellings name the same thing
    (e.g. a run folder's resolved path), the first spelling kept."""
    kept: dict[Hashable, Item] = {}
    for item in items:
        kept.setdefault(item if key is None else key(item), item)
    return list(kept.values())
