"""Where a corpus's files lie in a folder, the check that all three are there, and the error for data a
person must fix (missing, unreadable, corrupt)."""
from __future__ import annotations

from pathlib import Path

from ..corpora import DEFAULT_CORPUS, PTB, SPLITS, CorpusEntry, fetch_command
from ..errors import UserError


class DataError(UserError, RuntimeError):
    """Missing, unreadable or corrupt data; the message says which file and what to do."""


def split_path(data_dir: Path, split: str, corpus: CorpusEntry = PTB) -> Path:
    return Path(data_dir) / corpus.file_name(split)


def where_to_get(corpus: CorpusEntry) -> str:
    """The ways to provide a corpus's files, for error messages."""
    return (f"run `{fetch_command(corpus)}` (downloads {corpus.title} into data/{corpus.name}), or point --data or "
            f"{corpus.env_var} at a folder holding {', '.join(corpus.file_names[:-1])} and {corpus.file_names[-1]}")


def check_data_dir(data_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Fail early, naming the first missing file and the ways to provide it."""
    data_dir = Path(data_dir)
    for split in SPLITS:
        path = split_path(data_dir, split, corpus)
        if not path.is_file():
            raise DataError(f"{path} is missing: {where_to_get(corpus)} (`ptblm synthetic DIR"
                            f"{'' if corpus.name == DEFAULT_CORPUS else ' --corpus ' + corpus.name}` writes a small "
                            f"offline stand-in)")
    return data_dir
