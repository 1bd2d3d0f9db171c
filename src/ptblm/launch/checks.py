"""Checked on the login node before anything is queued: the data every task will read."""
from __future__ import annotations

from pathlib import Path

from ..data import PTB_MD5, SPLITS, DataError, check_data_dir, md5_of, split_path

PTB_SIZES = {"ptb.train.txt": 5101618, "ptb.valid.txt": 399782, "ptb.test.txt": 449945}  # bytes of the real PTB


def check_data_for_submission(data_dir: Path) -> Path:
    """Every split present, readable and not empty; a file the size of the real PTB's must have its MD5
    (a copy cut short or altered in place). DataError names the file and what to do."""
    data_dir = check_data_dir(data_dir)
    for split in SPLITS:
        path = split_path(data_dir, split)
        try:
            with open(path, "rb") as handle:
                empty = not handle.read(1)
        except OSError as error:
            raise DataError(f"{path} is not readable ({error.strerror}): fix its permissions or point --data or "
                            f"PTB_DIR at a readable copy; nothing was submitted") from None
        if empty:
            raise DataError(f"{path} is empty: run `make data` or point --data or PTB_DIR at a complete copy; "
                            f"nothing was submitted")
        if path.stat().st_size == PTB_SIZES[path.name] and md5_of(path) != PTB_MD5[path.name]:
            raise DataError(f"{path} has the size of PTB's {path.name} but MD5 {md5_of(path)}, not "
                            f"{PTB_MD5[path.name]}: a corrupt copy; run `make data` to fetch it again; "
                            f"nothing was submitted")
    return data_dir
