"""Batching a split's ids as the course scaffold's `ptb_iterator` does: contiguous rows, (x, y) with y
shifted by one token; and the check, before a run starts, that every split it reads fills one batch."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..corpora import SPLITS
from .. import wording
from ..errors import SettingCannotRun
from .files import DataError


class BatchesDoNotFit(DataError, SettingCannotRun):
    """A split of the corpus holds fewer tokens than one batch of the setting: the setting, not the data, must
    change (a DataError still, for the checks that refuse the data before a submission)."""


def batchify(raw_data: Sequence[int], batch_size: int) -> np.ndarray:
    """Cut the token stream into `batch_size` contiguous rows: (batch_size, len // batch_size)."""
    data = np.asarray(raw_data, dtype=np.int64)
    batch_len = len(data) // batch_size
    return data[: batch_size * batch_len].reshape(batch_size, batch_len)  # (batch, batch_len)


def num_batches(num_tokens: int, batch_size: int, num_steps: int) -> int:
    """Batches per epoch, ((len // batch_size) - 1) // num_steps; at least one or an error."""
    count = ((num_tokens // batch_size) - 1) // num_steps
    if count < 1:
        raise ValueError(f"{wording.count(num_tokens, 'token')} cannot fill one batch of batch_size {batch_size} x "
                         f"num_steps {num_steps} (needs at least {batch_size * (num_steps + 1)} tokens): "
                         f"decrease batch_size or seq_len, or use more data")
    return count


def splits_read(evaluate: bool) -> tuple[str, ...]:
    """The splits a training run reads: train and valid every epoch, test only to evaluate the best weights."""
    return SPLITS if evaluate else ("train", "valid")



def check_batches_fit(token_counts: Mapping[str, int], paths: Mapping[str, Path], batch_size: int, seq_len: int,
                      evaluate: bool, where: str = "") -> None:
    """DataError unless every split the run reads fills one batch of batch_size x seq_len: it names the split,
    its file, the numbers and the batch sizes and sequence lengths that would fit."""
    for split in splits_read(evaluate):
        tokens = token_counts[split]
        if tokens >= batch_size * (seq_len + 1):
            continue
        largest_batch, longest_seq = tokens // (seq_len + 1), tokens // batch_size - 1
        valid = " or ".join([*([f"batch_size at most {largest_batch} (at seq_len {seq_len})"]
                               if largest_batch >= 1 else []),
                             *([f"seq_len at most {longest_seq} (at batch_size {batch_size})"]
                               if longest_seq >= 1 else [])]) or "more data"
        raise BatchesDoNotFit(f"{where}the {split} split, {paths[split]}, has {wording.count(tokens, 'token')}: they "
                              f"cannot fill one batch of batch_size {batch_size} x seq_len {seq_len} (needs at least "
                              f"{batch_size * (seq_len + 1)} tokens); valid: {valid}, or a larger {split} split")


def batch_at(data, index: int, num_steps: int):
    """Batch `index` of batchified data (numpy or torch, (batch, batch_len)): x and y = x shifted by one."""
    start = index * num_steps
    return data[:, start:start + num_steps], data[:, start + 1:start + num_steps + 1]  # (batch, num_steps) each


def ptb_iterator(raw_data: Sequence[int], batch_size: int, num_steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x, y) of shape (batch_size, num_steps); y is x shifted by one token."""
    data = batchify(raw_data, batch_size)
    for i in range(num_batches(len(raw_data), batch_size, num_steps)):
        yield batch_at(data, i, num_steps)

