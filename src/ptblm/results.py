"""The run folders as pandas DataFrames, and `ptblm export`'s CSV files.

`runs_frame` has one row per run folder, `epochs_frame` one row per run and finished epoch. Both
read the folders through `runfolder.find_runs`, so they hold exactly the values of config.json,
curves.json and status.json (perplexities of diverged runs stay inf or nan). A damaged run folder is
one row of state `damaged` whose `damage` column names the file and the reason; it has no epoch rows. pandas is imported
here only, and this module only by the commands that need it, so `ptblm --help` stays fast.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import pandas as pd

from . import corpora
from . import runfolder as rf
from .config import RunConfig
from .errors import NoRunFolders
from .naming import each_once

RUN_KEYS = ["experiment", "setting", "run"]  # identify a run in both frames
RUN_COLUMNS = ["published_corpus", "state", "epochs_done", "final_train_ppl", "final_valid_ppl", "best_train_ppl",
               "best_valid_ppl", "best_epoch", "test_ppl", "wall_clock_seconds", "job_id", "folder", "damage", "gpu",
               "cpu", "nodes", "torch", "cuda", "image", "packages"]
SHORT_DIGEST = len("sha256:") + 12  # the image's digest in runs.csv, as `docker images` shortens an id
SHORT_HASH = 12  # the packages' SHA-256 in runs.csv: as many hex digits as a short image id
EPOCH_COLUMNS = [f.name for f in fields(rf.EpochRecord)]
CSV_FILES = {"runs": "runs.csv", "epochs": "epochs.csv"}
SEED_STATISTICS = ["final_train_ppl", "final_valid_ppl", "best_valid_ppl"]  # aggregated over seeds in tables
PPL_COLUMNS = ["train_ppl", "valid_ppl"]


def load_runs(results_dir: Path, experiments: list[str] | None = None) -> list[rf.RunRecord]:
    """Every run under results/ (or only those of `experiments`, each of which must have one; one named twice is
    read once), in find_runs' order; NoRunFolders when there is none."""
    if not experiments:
        runs = rf.find_runs(results_dir)
        if not runs:
            raise NoRunFolders(f"no run folders under {results_dir} (expected {results_dir}/<experiment>/<run>/"
                               f"config.json): train something first, e.g. `make submit EXP=smoke`, or point "
                               f"--results at a results folder")
        return runs
    runs = []
    for name in each_once(experiments):
        found = rf.find_runs(results_dir, name)
        if not found:
            raise NoRunFolders(f"{Path(results_dir) / name}: no run folders (nothing of experiment {name!r} has "
                               f"run yet; `make status` lists what has)")
        runs += found
    return runs


def damage_notes(runs: list[rf.RunRecord]) -> list[str]:
    """One line per damaged run: which file, why, and what to do."""
    return [f"note: {run.folder} is damaged ({run.damage.describe()}); it is listed as damaged, without "
            f"results; {run.damage.hint()}" for run in runs if run.damage]


def run_keys(run: rf.RunRecord) -> dict:
    return {"experiment": run.experiment, "setting": run.setting_index, "run": run.name}


def run_row(run: rf.RunRecord) -> dict:
    """One run: its keys, every config key, then what its curves and status say."""
    curves = run.curves
    last, best = curves.last_epoch(), curves.best_epoch()
    finite_train = [ppl for ppl in curves.column("train_ppl") if math.isfinite(ppl)]
    if run.damage:
        curves, last, best, finite_train = rf.Curves(), None, None, []
    corpus = corpora.CORPORA.get(run.config.get("corpus", corpora.DEFAULT_CORPUS))
    return {**run_keys(run), **run.config,
            "published_corpus": bool(corpus and corpus.is_published(run.provenance.get(rf.CORPUS_KEY))),
            "state": run.observed_state, "epochs_done": len(curves.epochs),
            "final_train_ppl": last.train_ppl if last else math.nan,
            "final_valid_ppl": last.valid_ppl if last else math.nan,
            "best_train_ppl": min(finite_train) if finite_train else math.nan,
            "best_valid_ppl": best.valid_ppl if best else math.nan,
            "best_epoch": best.epoch if best else None,
            "test_ppl": math.nan if curves.test_ppl is None else curves.test_ppl,
            "wall_clock_seconds": last.wall_clock_seconds if last else math.nan,
            "job_id": run.job_id, "folder": str(run.folder),
            "damage": run.damage.describe() if run.damage else math.nan, **where_it_ran(run.provenance)}


def where_it_ran(provenance: dict) -> dict:
    """The short environment columns (config.json has the whole record): the GPU, else the CPU model (a GPU
    run's CPU is left out), the Slurm node list, torch, CUDA, the image's digest and the installed packages'
    hash (packages.txt's SHA-256), both shortened to 12 hex digits. NaN where a run lacks one (no Slurm, an
    older folder), as read_csv reads an empty field back."""
    gpu, image, packages = provenance.get("gpu"), provenance.get("image"), provenance.get("packages_sha256")
    digest = image.get("digest") if isinstance(image, dict) else None
    values = {"gpu": gpu.get("name") if isinstance(gpu, dict) else None,
              "cpu": None if isinstance(gpu, dict) else provenance.get("cpu"), "nodes": provenance.get("node_list"),
              "torch": provenance.get("torch_version"), "cuda": provenance.get("cuda_version"),
              "image": digest[:SHORT_DIGEST] if digest else None,
              "packages": packages[:SHORT_HASH] if isinstance(packages, str) else None}
    return {key: math.nan if value is None else value for key, value in values.items()}


def runs_frame(results_dir: Path, experiments: list[str] | None = None) -> pd.DataFrame:
    """One row per run: experiment, setting, run, every config key, then RUN_COLUMNS.

    published_corpus says whether the run read its corpus's published files (its recorded fingerprint is
    the corpus entry's published_fingerprint), not a sample or another text in the same format.
    best_valid_ppl is the lowest finite validation perplexity and best_epoch its (1-based) epoch;
    best_train_ppl the lowest finite training one; test_ppl is NaN unless the run was evaluated.
    """
    return runs_table(load_runs(results_dir, experiments))


def epochs_frame(results_dir: Path, experiments: list[str] | None = None) -> pd.DataFrame:
    """One row per run and finished epoch: experiment, setting, run, then EPOCH_COLUMNS (curves.json's)."""
    return epochs_table(load_runs(results_dir, experiments))


def runs_table(runs: list[rf.RunRecord]) -> pd.DataFrame:
    """runs_frame of runs already read."""
    frame = pd.DataFrame([run_row(run) for run in runs])
    if frame.empty:
        return pd.DataFrame(columns=RUN_KEYS + [f.name for f in fields(RunConfig)] + RUN_COLUMNS)
    return frame.astype({"best_epoch": "Int64", "setting": "Int64"})


def epochs_table(runs: list[rf.RunRecord]) -> pd.DataFrame:
    """epochs_frame of runs already read."""
    rows = [{**run_keys(run), **asdict(record)} for run in runs if not run.damage for record in run.curves.epochs]
    frame = pd.DataFrame(rows, columns=RUN_KEYS + EPOCH_COLUMNS)
    return frame.astype({"setting": "Int64"})


def write_csv(runs: list[rf.RunRecord], out_dir: Path) -> list[Path]:
    """runs.csv and epochs.csv in out_dir, readable by pandas.read_csv as they are (inf and nan included)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("runs", runs_table(runs)), ("epochs", epochs_table(runs))):
        path = out_dir / CSV_FILES[name]
        rf.atomic_write_bytes(path, frame.to_csv(index=False).encode())
        written.append(path)
    return written


# --- seeds: runs of one setting that differ only by seed ------------------------------------------

def setting_keys() -> list[str]:
    """The config keys that define a setting, less the seed: those RunConfig.identity() keeps."""
    required = {f.name: None for f in fields(RunConfig) if f.default is MISSING}
    return [key for key in RunConfig(**required).identity() if key != "seed"]


def corpus_files(run: rf.RunRecord) -> str:
    """Which files a run read, as its folder records them: its corpus and the files' fingerprint, or for a folder
    from before fingerprints its corpus and vocabulary size. Perplexities of runs that differ here (another
    corpus, or a sample of the same one) are never averaged nor compared."""
    corpus = run.config.get("corpus", corpora.DEFAULT_CORPUS)
    fingerprint = run.provenance.get(rf.CORPUS_KEY)
    if fingerprint:
        return f"{corpus} fingerprint {fingerprint}"
    return f"{corpus} vocabulary {run.provenance.get('vocab_size')}"


def seed_groups(runs: list[rf.RunRecord]) -> list[list[rf.RunRecord]]:
    """The runs grouped by experiment, setting (config without seed) and corpus_files (seeds of one setting on
    different files are different results), groups and runs in `runs`' order."""
    if not runs:
        return []
    frame = runs_table(runs).assign(corpus_files=[corpus_files(run) for run in runs])
    keys = ["experiment", *[key for key in setting_keys() if key in frame.columns], "corpus_files"]
    groups = frame.groupby(keys, sort=False, dropna=False).indices
    return [[runs[index] for index in indices] for indices in sorted(groups.values(), key=min)]


def mean_epochs(runs: list[rf.RunRecord]) -> pd.DataFrame:
    """Per epoch that every run has: the mean of EPOCH_COLUMNS, and n, sd, min and max of each perplexity.

    A non-finite perplexity (a diverged seed) makes its epoch's mean and extremes inf, never a mean of
    the other seeds (pandas would skip a NaN).
    """
    frame = epochs_table(runs)
    frame[PPL_COLUMNS] = frame[PPL_COLUMNS].astype(float).fillna(math.inf)
    grouped = frame.groupby("epoch")
    mean = grouped[[c for c in EPOCH_COLUMNS if c != "epoch"]].mean()
    spread = grouped[PPL_COLUMNS].agg(["std", "min", "max"])
    spread.columns = [f"{column}_{statistic}" for column, statistic in spread.columns]
    table = mean.join(spread).assign(n=grouped.size()).reset_index()
    return table[table["n"] == len(runs)].reset_index(drop=True)


def seed_statistics(runs: list[rf.RunRecord]) -> pd.DataFrame:
    """mean, std (sample, ddof 1; NaN for one seed) and count of SEED_STATISTICS over the runs, one column each.

    A seed without the value (diverged: NaN) makes mean and std NaN rather than a mean of the others.
    """
    frame = runs_table(runs)[SEED_STATISTICS].astype(float)
    return pd.DataFrame({"mean": frame.mean(skipna=False), "std": frame.std(skipna=False),
                         "count": frame.count()}).T
