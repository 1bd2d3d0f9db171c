"""A corpus copied to a node's scratch folder ($SLURM_TMPDIR), and run_exp.py's `--data SLURM_TMPDIR`."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ..corpora import PTB, SPLITS, CorpusEntry, fingerprint_of
from .files import DataError, check_data_dir, split_path
from .fingerprint import file_digest

STAGED_FOLDER = "ptblm-data"  # stage_data's copies, under the scratch folder: one subfolder per corpus content


def stage_data(data_dir: Path, scratch_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Copy the corpus to node-local scratch (e.g. $SLURM_TMPDIR) once; return the staged folder,
    ptblm-data/<corpus>-<fingerprint>. Named by content, not by file names: runs packed on one node may read
    corpora whose files share names (WikiText-2 and -103, ptb-mini and PTB), and none may overwrite another's.
    A copy left there earlier is reused only when its content hashes equal the source's."""
    data_dir = check_data_dir(data_dir, corpus)
    digests = {split: file_digest(split_path(data_dir, split, corpus)) for split in SPLITS}
    staged = Path(scratch_dir) / STAGED_FOLDER / f"{corpus.name}-{fingerprint_of(digests)}"
    for split in SPLITS:
        source, target = split_path(data_dir, split, corpus), split_path(staged, split, corpus)
        if (not target.is_file() or target.stat().st_size != source.stat().st_size
                or file_digest(target) != digests[split]):
            staged.mkdir(parents=True, exist_ok=True)
            # a private temporary name: runs packed on one node stage into the same $SLURM_TMPDIR at once
            fd, tmp = tempfile.mkstemp(dir=staged, prefix=f".{target.name}.", suffix=".partial")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    return staged


def slurm_tmpdir_data(scratch_dir: str | None, corpus: CorpusEntry = PTB) -> Path:
    """run_exp.py's `--data SLURM_TMPDIR`: the corpus copied into $SLURM_TMPDIR (the scaffold's place for it),
    else the one copy of this corpus stage_data made there."""
    if not scratch_dir:
        raise DataError("--data SLURM_TMPDIR: $SLURM_TMPDIR is not set (Slurm sets it inside a job); "
                        f"pass the {corpus.title} folder instead")
    if split_path(Path(scratch_dir), "train", corpus).is_file():
        return check_data_dir(Path(scratch_dir), corpus)
    staged = sorted(folder for folder in (Path(scratch_dir) / STAGED_FOLDER).glob(f"{corpus.name}-*")
                    if re.fullmatch(rf"{re.escape(corpus.name)}-[0-9a-f]+", folder.name)
                    and split_path(folder, "train", corpus).is_file())
    if len(staged) == 1:
        return check_data_dir(staged[0], corpus)
    if staged:
        raise DataError(f"--data SLURM_TMPDIR: {len(staged)} staged copies of {corpus.title} with different "
                        f"contents in {Path(scratch_dir) / STAGED_FOLDER} ({', '.join(f.name for f in staged)}); "
                        f"pass the one meant to --data")
    raise DataError(f"--data SLURM_TMPDIR: {scratch_dir} holds no {corpus.file_name('train')}, and no copy of "
                    f"{corpus.title} is staged under {Path(scratch_dir) / STAGED_FOLDER}; copy {corpus.title} there "
                    f"first, or pass its folder to --data")
