"""Counts and lists in words, singular or plural as the number asks ('1 run folder', 'rows 3 and 12'): every
message that counts something says it through `count`, never with a plural written after the number."""
from __future__ import annotations


def count(number: int, singular: str, plural: str | None = None) -> str:
    """'1 run folder', '16 run folders' (plural: default singular + 's')."""
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def enumeration(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def rows(numbers: list[int]) -> str:
    """'row 12', 'rows 3 and 12', 'rows 3, 5 and 12' (table rows, by number)."""
    return f"{'row' if len(numbers) == 1 else 'rows'} {enumeration([str(number) for number in numbers])}"


def article(word: str) -> str:
    """'a' or 'an' as the word is said: an RNN, an LSTM, a GRU, a Transformer (short capitals are spelled out)."""
    if word.isupper() and len(word) <= 5:
        return "an" if word[0] in "AEFHILMNORSX" else "a"
    return "an" if word[:1].lower() in "aeiou" else "a"
