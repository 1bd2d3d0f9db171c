"""Checked on the login node before anything is queued: the data every task will read, and that each
setting's batches fit in it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..corpora import SPLITS, CorpusEntry
from ..data import (DataError, check_batches_fit, check_data_dir, count_tokens, file_mismatch, split_path,
                    where_to_get)
from ..jobs import Setting

NOTHING_SUBMITTED = "; nothing was submitted"


def check_data_for_submission(data_dir: Path, corpus: CorpusEntry, settings: Sequence[Setting] = ()) -> Path:
    """Every split present, readable, UTF-8 text and not empty; a file the size of the published one must
    have its sums (a copy cut short or altered in place); and every setting's batch and sequence length
    fill one batch of each split it reads. DataError names the file (and the setting) and what to do."""
    try:
        data_dir = check_data_dir(data_dir, corpus)
        for split in SPLITS:
            path = split_path(data_dir, split, corpus)
            try:
                with open(path, "rb") as handle:
                    empty = not handle.read(1)
            except OSError as error:
                raise DataError(f"{path} is not readable ({error.strerror}): fix its permissions or point --data or "
                                f"{corpus.env_var} at a readable copy") from None
            if empty:
                raise DataError(f"{path} is empty: {where_to_get(corpus)}")
            published = corpus.files[split]
            if published.size is not None and path.stat().st_size == published.size:
                mismatch = file_mismatch(path.read_bytes(), published)
                if mismatch:
                    raise DataError(f"{path} has the size of {corpus.title}'s {published.name} but its {mismatch}: "
                                    f"a corrupt copy; run `ptblm data --corpus {corpus.name}` to fetch it again")
        counts = count_tokens(data_dir, corpus)  # each file read as training reads it: UTF-8, its tokens
        paths = {split: split_path(data_dir, split, corpus) for split in SPLITS}
        for setting in settings:
            config = setting.config
            check_batches_fit(counts, paths, config.batch_size, config.seq_len, config.evaluate,
                              where=f"setting {setting.index} ({setting.run_name}): ")
    except DataError as error:
        raise DataError(f"{error}{NOTHING_SUBMITTED}") from None
    return data_dir
