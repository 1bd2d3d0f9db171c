"""`ptblm export --format course`: per run, the files the course's run_exp.py writes, so that the
course's own loading and plotting code works on ptblm runs.

    <out>/<exp>/<run>/
      learning_curves.npy  {train_ppls, val_ppls, train_losses, val_losses, times}: np.load(path, allow_pickle=True)[()]
      best_params.pt       the raw state_dict of the best validation epoch (absent when no epoch was finite)
      exp_config.txt       every setting, "key    value" per line, sorted, as run_exp.py writes it

ptblm records no per-batch losses, so train_losses and val_losses hold one value per epoch: the mean
cross-entropy per token, ln(perplexity). (run_exp.py appends, per batch, the running sum of
loss x seq_len over the epoch.) times are each epoch's seconds, training and validation, as there.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from . import runfolder as rf

LEARNING_CURVES = "learning_curves.npy"
EXP_CONFIG = "exp_config.txt"
LOSSES_ARE = "per epoch: mean cross-entropy per token, ln(ppl)"


def learning_curves(curves: rf.Curves) -> dict[str, list[float]]:
    """run_exp.py's dict, from curves.json; the losses per epoch (see the module's docstring)."""
    return {"train_ppls": curves.column("train_ppl"), "val_ppls": curves.column("valid_ppl"),
            "train_losses": [_loss(ppl) for ppl in curves.column("train_ppl")],
            "val_losses": [_loss(ppl) for ppl in curves.column("valid_ppl")],
            "times": curves.column("epoch_seconds")}


def _loss(ppl: float) -> float:
    return math.log(ppl) if ppl > 0 else math.nan


def exp_config_text(run: rf.RunRecord, save_dir: Path) -> str:
    """run_exp.py's exp_config.txt: its args (here every config key), data, save_dir and code_file, sorted."""
    values = {**run.config, "data": run.provenance.get("data_dir"), "save_dir": str(save_dir),
              "code_file": "ptblm", "losses": LOSSES_ARE}
    return "".join(f"{key}    {values[key]}\n" for key in sorted(values))


def write_course_files(run: rf.RunRecord, dest: Path) -> list[Path]:
    """The three files of one run into `dest`; best_params.pt only when the run has a best epoch."""
    dest = Path(dest)
    folder = rf.RunFolder(run.folder)
    best = folder.best_weights() if folder.file(rf.BEST_CHECKPOINT).is_file() else None  # Damaged: nothing written
    dest.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, learning_curves(run.curves), allow_pickle=True)
    rf.atomic_write_bytes(dest / LEARNING_CURVES, buffer.getvalue())
    rf.atomic_write_bytes(dest / EXP_CONFIG, exp_config_text(run, dest).encode())
    written = [dest / LEARNING_CURVES, dest / EXP_CONFIG]
    if best is not None:
        rf.atomic_torch_save(best.model, dest / rf.BEST_PARAMS)
        written.append(dest / rf.BEST_PARAMS)
    return written


def write_course_exports(runs: list[rf.RunRecord], out_dir: Path, warn=print) -> dict[Path, list[Path]]:
    """write_course_files for each run, into <out_dir>/<experiment>/<run>/: run folder -> the files written,
    for the runs exported. A damaged run (or one whose best.pt cannot be loaded) is left out with a note
    naming the file."""
    written = {}
    for run in runs:
        try:
            if run.damage:
                raise rf.Damaged.of(run.damage)
            written[run.folder] = write_course_files(run, Path(out_dir) / run.experiment / run.name)
        except rf.Damaged as error:
            warn(f"note: {run.folder} left out: {error.damage.describe()}")
    return written
