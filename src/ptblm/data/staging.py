"""A corpus copied to a node's scratch folder ($SLURM_TMPDIR), and run_exp.py's `--data SLURM_TMPDIR`."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..corpora import PTB, SPLITS, CorpusEntry
from .files import DataError, check_data_dir, split_path
from .fingerprint import file_digest

STAGED_FOLDER = "ptblm-data"  # stage_data's copy, under the scratch folder


def stage_data(data_dir: Path, scratch_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Copy the corpus to node-local scratch (e.g. $SLURM_TMPDIR) once; return the staged folder (one for every
    corpus: their file names differ). A copy left there earlier is reused only when its content hashes equal
    the source's."""
    data_dir = check_data_dir(data_dir, corpus)
    staged = Path(scratch_dir) / STAGED_FOLDER
    for split in SPLITS:
        source, target = split_path(data_dir, split, corpus), split_path(staged, split, corpus)
        if (not target.is_file() or target.stat().st_size != source.stat().st_size
                or file_digest(target) != file_digest(source)):
            staged.mkdir(parents=True, exist_ok=True)
            # a private temporary name: runs packed on one node stage into the same $SLURM_TMPDIR at once
            fd, tmp = tempfile.mkstemp(dir=staged, prefix=f".{target.name}.", suffix=".partial")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    return staged


def slurm_tmpdir_data(scratch_dir: str | None, corpus: CorpusEntry = PTB) -> Path:
    """run_exp.py's `--data SLURM_TMPDIR`: the corpus copied into $SLURM_TMPDIR (the scaffold's place for it),
    else the copy stage_data made there."""
    if not scratch_dir:
        raise DataError("--data SLURM_TMPDIR: $SLURM_TMPDIR is not set (Slurm sets it inside a job); "
                        f"pass the {corpus.title} folder instead")
    for candidate in (Path(scratch_dir), Path(scratch_dir) / STAGED_FOLDER):
        if split_path(candidate, "train", corpus).is_file():
            return check_data_dir(candidate, corpus)
    raise DataError(f"--data SLURM_TMPDIR: neither {scratch_dir} nor {Path(scratch_dir) / STAGED_FOLDER} holds "
                    f"{corpus.file_name('train')}; copy {corpus.title} there first, or pass its folder to --data")
