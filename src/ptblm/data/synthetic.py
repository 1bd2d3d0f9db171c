"""A small seeded corpus in a corpus's file names and PTB's format, for tests and the offline demo."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..corpora import PTB, SPLITS, CorpusEntry
from ..runfolder import atomic_write_bytes
from .files import split_path


SYNTHETIC_WORD = re.compile(r"w\d+")  # its words besides <unk>, N and <eos>: w0, w1, ...


def synthetic_words(vocab_size: int) -> list[str]:
    return ["<unk>", "N"] + [f"w{i}" for i in range(vocab_size - 2)]


def is_synthetic(id_to_word: list[str]) -> bool:
    """Whether a vocabulary is write_synthetic_corpus's (a dry run's or the demo's stand-in for a corpus): every word
    <unk>, N, <eos> or w<number>, which no real text is."""
    return all(word in ("<unk>", "N", "<eos>") or SYNTHETIC_WORD.fullmatch(word) for word in id_to_word)


def write_synthetic_corpus(dest: Path, seed: int = 0, vocab_size: int = 500,
                           tokens: tuple[int, int, int] = (60_000, 6_000, 6_000), corpus: CorpusEntry = PTB) -> Path:
    """A seeded corpus with learnable structure in `corpus`'s file names (PTB's format), for tests and the
    offline demo.

    Words follow a first-order Markov chain: each word has a handful of likely successors drawn
    from a Zipf-like distribution, so a language model's perplexity falls well below vocab_size.
    """
    rng = np.random.default_rng(seed)
    words = synthetic_words(vocab_size)
    zipf = 1.0 / np.arange(1, vocab_size + 1)
    zipf /= zipf.sum()
    successors = rng.choice(vocab_size, size=(vocab_size, 4), p=zipf)  # likely next words
    dest = Path(dest)
    for split, count in zip(SPLITS, tokens):
        lines, line, word = [], [], int(rng.integers(vocab_size))
        for _ in range(count):
            explore = rng.random() < 0.15
            word = int(rng.choice(vocab_size, p=zipf)) if explore else int(rng.choice(successors[word]))
            line.append(words[word])
            if len(line) >= 4 and rng.random() < 0.08:
                lines.append(" " + " ".join(line) + " ")
                line = []
        lines.append(" " + " ".join(line) + " ")
        atomic_write_bytes(split_path(dest, split, corpus), ("\n".join(lines) + "\n").encode())
    return dest
