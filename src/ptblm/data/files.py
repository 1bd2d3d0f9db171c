"""Where a corpus's files lie in a folder, the check that all three are there, and the error for data a
person must fix (missing, unreadable, corrupt)."""
from __future__ import annotations

import os
import stat
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


def not_a_file(path: Path) -> str | None:
    """What stands at `path` when it is no regular file (a link is followed, as reading follows it):
    "is missing", "is a folder", "is a named pipe (FIFO)", ...; None for a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"is a link to {os.readlink(path)}, which does not exist" if path.is_symlink() else "is missing"
    except OSError as error:
        return f"cannot be looked at ({error.strerror})"
    kinds = ((stat.S_ISREG, None), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return None if stat.S_ISREG(mode) else f"is {kind}, not a text file"


def check_data_dir(data_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Fail early, naming the first split that is no regular file (missing, a folder, a FIFO: what is there)
    and the ways to provide it."""
    data_dir = Path(data_dir)
    for split in SPLITS:
        path = split_path(data_dir, split, corpus)
        problem = not_a_file(path)
        if problem:
            other = other_layout(data_dir, corpus) if problem == "is missing" else None
            raise DataError(f"{path} {problem}{f' ({other})' if other else ''}: {where_to_get(corpus)} (`ptblm "
                            f"synthetic DIR{'' if corpus.name == DEFAULT_CORPUS else ' --corpus ' + corpus.name}` "
                            f"writes a small offline stand-in)")
    return data_dir


# Another tool's names for a corpus's three files: pytorch/examples' word_language_model reads these.
PLAIN_NAMES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


def other_layout(data_dir: Path, corpus: CorpusEntry) -> str | None:
    """What the folder holds instead, when it is a whole corpus under other names: another registered corpus's
    files (a --corpus mix-up) or word_language_model's train/valid/test.txt (to rename); else None."""
    from ..corpora import CORPORA

    for other in CORPORA.values():
        if other.name != corpus.name and all(split_path(data_dir, split, other).is_file() for split in SPLITS):
            return (f"the folder holds {other.title}'s files ({', '.join(other.file_names)}): for them, use "
                    f"--corpus {other.name} (corpus: {other.name} in a jobs file)")
    if all((Path(data_dir) / PLAIN_NAMES[split]).is_file() for split in SPLITS):
        renames = ", ".join(f"{PLAIN_NAMES[split]} -> {corpus.file_name(split)}" for split in SPLITS)
        return (f"the folder holds train.txt, valid.txt and test.txt (word_language_model's names): rename them "
                f"({renames})")
    return None
