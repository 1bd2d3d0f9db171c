"""The published study (package data, reference/README.md) beside ptblm's runs, as pandas operations.

A run matches a published setting when MATCH_KEYS agree, and only a run like the study's: trained on the
published PTB files (results.runs_frame's published_corpus) and on whole epochs (max_batches 0). Its
num_epochs and seed may differ, so runs and the study are compared only at the epochs both have. The CSV
has no emb_size or seq_len columns: the study used STUDY_DEFAULTS for every setting.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

from .corpora import PTB
from .results import RUN_KEYS

CSV_NAME = "ift6135-2020-published.csv"
MATCH_KEYS = ["model", "optimizer", "initial_lr", "batch_size", "hidden_size", "num_layers", "dp_keep_prob",
              "emb_size", "seq_len"]
STUDY_DEFAULTS = {"emb_size": 200, "seq_len": 35}
STUDY_CORPUS = PTB.name  # the study trained on the published PTB files, every batch of every epoch
SOURCE = ["published_experiment", "published_setting"]  # the study's experiment and 0-based setting index
COMPARISON_COLUMNS = [*SOURCE, "epoch", "best_valid_ppl", "published_best_valid_ppl", "final_valid_ppl",
                      "published_final_valid_ppl", "relative_difference"]


def published_epochs() -> pd.DataFrame:
    """One row per published setting and epoch: SOURCE, MATCH_KEYS, epoch, train_ppl, valid_ppl."""
    with resources.files("ptblm").joinpath("reference", CSV_NAME).open() as stream:
        raw = pd.read_csv(stream, dtype={"experiment": str})
    raw = raw.assign(**STUDY_DEFAULTS).rename(columns={"experiment": SOURCE[0], "setting": SOURCE[1]})
    wide = raw.pivot_table(index=[*SOURCE, *MATCH_KEYS, "epoch"], columns="split", values="ppl").reset_index()
    return wide.rename(columns={"train": "train_ppl", "valid": "valid_ppl"}).rename_axis(columns=None)


def comparable(runs: pd.DataFrame) -> pd.Series:
    """Which runs (a runs_frame) trained as the study did: on the published PTB files, on whole epochs."""
    return ((runs["corpus"] == STUDY_CORPUS) & (runs["published_corpus"] == True)  # noqa: E712 (NaN: not)
            & (runs["max_batches"] == 0))


def published_comparison(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `runs` (a runs_frame) that matches a published setting, over the epochs both have.

    `epochs` is the runs' epochs_frame. Columns: RUN_KEYS, then COMPARISON_COLUMNS: the last epoch both
    have, the lowest validation ppl of each over epochs 1..epoch, each one's at that epoch, and
    relative_difference = best_valid_ppl / published_best_valid_ppl - 1. Runs of no published setting
    have no row.
    """
    runs = runs[comparable(runs)]
    keyed = epochs[[*RUN_KEYS, "epoch", "valid_ppl"]].merge(runs[[*RUN_KEYS, *MATCH_KEYS]], on=RUN_KEYS)
    both = keyed.merge(published_epochs(), on=[*MATCH_KEYS, "epoch"], suffixes=("", "_published"))
    if both.empty:
        return pd.DataFrame(columns=[*RUN_KEYS, *COMPARISON_COLUMNS])
    keys = [*RUN_KEYS, *SOURCE]
    grouped = both.groupby(keys, sort=False, dropna=False)
    best = grouped.agg(best_valid_ppl=("valid_ppl", "min"), published_best_valid_ppl=("valid_ppl_published", "min"))
    last = both[both["epoch"] == grouped["epoch"].transform("max")].set_index(keys)  # groupby's last skips NaN
    last = last.rename(columns={"valid_ppl": "final_valid_ppl", "valid_ppl_published": "published_final_valid_ppl"})
    frame = best.join(last[["epoch", "final_valid_ppl", "published_final_valid_ppl"]]).reset_index()
    frame["relative_difference"] = frame["best_valid_ppl"] / frame["published_best_valid_ppl"] - 1
    return frame[[*RUN_KEYS, *COMPARISON_COLUMNS]]
