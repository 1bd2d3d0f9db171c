"""Reading a corpus into ids, as the course scaffold's `ptb_raw_data` does, except that words missing from
the training vocabulary map to `<unk>` and are counted instead of being silently dropped (real PTB has
none; smaller corpora do)."""
from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..corpora import EOS, PTB, SPLITS, UNK, CorpusEntry
from .files import DataError, check_data_dir, split_path

log = logging.getLogger(__name__)


def read_words(path: Path, corpus: CorpusEntry = PTB) -> list[str]:
    """The file's tokens as the corpus reads them (`<eos>` included); DataError for a file that is not
    UTF-8 text or holds no word."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start}): corrupt, or not a {corpus.title} file"
                        ) from error
    words = corpus.tokenize(text)
    if not any(word != EOS for word in words):
        raise DataError(f"{path} is empty: expected {corpus.title} text, one sentence or paragraph per line")
    return words


def build_vocab(words: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Vocabulary sorted by (-count, word), as the scaffold does."""
    counts = collections.Counter(words)
    id_to_word = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return {word: i for i, word in enumerate(id_to_word)}, id_to_word


def words_to_ids(words: Sequence[str], word_to_id: dict[str, int]) -> tuple[list[int], int]:
    """Ids of the words, unknown words as `<unk>` when the vocabulary has it (else dropped); also their count."""
    unk = word_to_id.get(UNK)
    ids, unknown = [], 0
    for word in words:
        index = word_to_id.get(word)
        if index is None:
            unknown += 1
            if unk is None:
                continue
            index = unk
        ids.append(index)
    return ids, unknown


@dataclass
class Corpus:
    train: list[int]
    valid: list[int]
    test: list[int]
    word_to_id: dict[str, int]
    id_to_word: list[str]
    unknown_counts: dict[str, int]  # per split: words outside the training vocabulary

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_word)

    def describe(self) -> str:
        unknown = ", ".join(f"{split} {count}" for split, count in self.unknown_counts.items() if count)
        return (f"vocabulary {self.vocab_size}; tokens train {len(self.train)}, valid {len(self.valid)}, "
                f"test {len(self.test)}" + (f"; out-of-vocabulary words mapped to {UNK}: {unknown}"
                                            if unknown else ""))


def load_corpus(data_dir: Path, corpus: CorpusEntry = PTB) -> Corpus:
    """The three splits as ids of the training split's vocabulary; a corpus whose text has no `<unk>` gets
    one (last), so that words of valid and test outside that vocabulary are counted as it, not dropped."""
    data_dir = check_data_dir(data_dir, corpus)
    train_words = read_words(split_path(data_dir, "train", corpus), corpus)
    word_to_id, id_to_word = build_vocab(train_words)
    if not corpus.has_unk and UNK not in word_to_id:
        word_to_id[UNK] = len(id_to_word)
        id_to_word.append(UNK)
    ids, unknown = {}, {}
    for split in SPLITS:
        words = train_words if split == "train" else read_words(split_path(data_dir, split, corpus), corpus)
        ids[split], unknown[split] = words_to_ids(words, word_to_id)
    return Corpus(ids["train"], ids["valid"], ids["test"], word_to_id, id_to_word, unknown)


def ptb_raw_data(data_path: Path, corpus: CorpusEntry = PTB):
    """The scaffold's loader: (train_ids, valid_ids, test_ids, word_to_id, id_to_word)."""
    loaded = load_corpus(data_path, corpus)
    if any(loaded.unknown_counts.values()):
        log.warning("%s: %s", data_path, loaded.describe())
    return loaded.train, loaded.valid, loaded.test, loaded.word_to_id, loaded.id_to_word



def count_tokens(data_dir: Path, corpus: CorpusEntry = PTB) -> dict[str, int]:
    """Tokens per split as training reads them (`<eos>` included); DataError naming a file that is not UTF-8
    text or holds no word."""
    return {split: len(read_words(split_path(data_dir, split, corpus), corpus)) for split in SPLITS}
