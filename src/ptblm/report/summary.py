"""One run reduced to what tables, figures and facts report, in the one order they all share.

Rows are sorted by corpus (comparable.corpus_order: one group for a report of one corpus), then
architecture, then optimizer (in the order config.py lists them), then experiment and the remaining
hyper-parameters, and numbered from 1; tables, figure legends and
facts all use these numbers, so the text can say "row 3" and mean one setting everywhere.
Runs of one setting that differ only by seed are one summary: its run is their mean curve
(results.mean_epochs) and `seeds` holds the runs themselves; a setting of one seed is its run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import runfolder as rf
from ..config import MODELS, OPTIMIZERS, exact_number
from ..errors import NoRunFolders
from ..naming import each_once
from .comparable import choose_hint, corpora_sentence, corpus_order, corpus_tag, files_of
from .selection import only_left_out, left_out_note, reported

# (RunConfig key, short name in legends and captions)
HYPER_PARAMETERS = (("model", ""), ("optimizer", ""), ("initial_lr", "lr"), ("batch_size", "bs"),
                    ("hidden_size", "h"), ("num_layers", "L"), ("dp_keep_prob", "keep"), ("seq_len", "seq"),
                    ("emb_size", "emb"))


@dataclass(frozen=True)
class RunSummary:
    """A run folder's results; perplexities may be inf/nan (diverged), None when no epoch finished."""

    number: int  # 1-based row number, shared by every table, figure and fact
    run: rf.RunRecord
    final: rf.EpochRecord | None  # the last finished epoch
    best: rf.EpochRecord | None  # the epoch of lowest finite validation perplexity
    seeds: tuple[rf.RunRecord, ...] = ()  # the setting's runs when it has several seeds (then `run` is their mean)

    @property
    def n(self) -> int:
        """How many runs (seeds) the summary stands for."""
        return len(self.seeds) or 1

    @property
    def best_valid_ppl(self) -> float | None:
        """The best validation ppl: over seeds, the mean of each run's best (what bold and the tables rank)."""
        if self.seeds:
            from ..results import seed_statistics
            return float(seed_statistics(list(self.seeds)).loc["mean", "best_valid_ppl"])
        return self.best.valid_ppl if self.best else None

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def corpus_files(self) -> str:
        """Which files its runs read (results.corpus_files): only summaries of equal ones compare."""
        return files_of(self.run)

    @property
    def corpus_tag(self) -> str:
        return corpus_tag(self.run)

    @property
    def experiment(self) -> str:
        return self.run.experiment

    @property
    def epochs_done(self) -> int:
        return len(self.run.curves.epochs)  # the curves, not status.json: values come from them

    @property
    def num_epochs(self) -> int:
        return int(self.config["num_epochs"])

    @property
    def state(self) -> str:
        return self.run.observed_state  # `stopped`, as status says, for a run whose writer is gone

    @property
    def complete(self) -> bool:
        """Trained to its last epoch; only complete runs can be called best."""
        return self.state == rf.DONE and self.epochs_done == self.num_epochs

    @property
    def wall_clock_seconds(self) -> float | None:
        return self.final.wall_clock_seconds if self.final else None

    def epochs_label(self) -> str:
        """'20' when complete, else e.g. '12/20 running' or '1/20 diverged'."""
        if self.complete:
            return str(self.num_epochs)
        return f"{self.epochs_done}/{self.num_epochs} {self.state}"

    def setting(self, keys: tuple[str, ...] | None = None) -> str:
        """'SGD lr 1 bs 128': the hyper-parameters in `keys` (default: all)."""
        keys = keys if keys is not None else tuple(key for key, _ in HYPER_PARAMETERS)
        return " ".join(hyper_parameter(self.config, key) for key in keys)

    def label(self, keys: tuple[str, ...] | None = None) -> str:
        """'(3) SGD lr 1 bs 128': the row number, then `setting(keys)`."""
        return f"({self.number}) {self.setting(keys)}".strip()


def hyper_parameter(config: dict, key: str) -> str:
    """'lr 0.001', 'bs 128', or the bare value for the model and the optimizer."""
    short = dict(HYPER_PARAMETERS)[key]
    value = config[key]
    text = exact_number(value) if isinstance(value, float) else str(value)
    return f"{short} {text}" if short else text


def differing_keys(summaries: list[RunSummary]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Hyper-parameters that differ across `summaries` (for legends) and those all share (for captions)."""
    keys = [key for key, _ in HYPER_PARAMETERS]
    differ = tuple(key for key in keys if len({s.config[key] for s in summaries}) > 1)
    return differ, tuple(key for key in keys if key not in differ)


def sort_key(run: rf.RunRecord) -> tuple:
    config = run.config
    return (*corpus_order(run), MODELS.index(config["model"]), OPTIMIZERS.index(config["optimizer"]), run.experiment,
            config["initial_lr"], config["batch_size"], config["hidden_size"], config["num_layers"],
            config["dp_keep_prob"], run.name)


def mean_run(seeds: list[rf.RunRecord]) -> rf.RunRecord:
    """The runs of one setting as one: the first's folder and config, their mean curve over the epochs all
    have, and state done only when every seed is (else the first other state)."""
    from ..results import mean_epochs

    curve = mean_epochs(seeds)
    epochs = [rf.EpochRecord(int(row.epoch), row.train_ppl, row.valid_ppl, row.epoch_seconds,
                             row.wall_clock_seconds, row.lr) for row in curve.itertuples(index=False)]
    state = next((run.observed_state for run in seeds if run.observed_state != rf.DONE), rf.DONE)
    first = seeds[0]
    status = rf.RunStatus(state=state, epochs_done=len(epochs), num_epochs=first.status.num_epochs)
    return rf.RunRecord(first.folder, first.config, first.provenance, rf.Curves(epochs=epochs), status)


def setting_runs(runs: list[rf.RunRecord]) -> list[tuple[rf.RunRecord, tuple[rf.RunRecord, ...]]]:
    """(the run that stands for a setting, its seeds when several) per setting of `runs`."""
    from ..results import seed_groups

    pairs = []
    for group in seed_groups(runs):
        group = sorted(group, key=lambda run: run.config.get("seed", 0))
        pairs.append((group[0], ()) if len(group) == 1 else (mean_run(group), tuple(group)))
    return pairs


def summarize(runs: list[rf.RunRecord]) -> list[RunSummary]:
    """Sorted, numbered summaries of `runs`, one per setting (its seeds merged)."""
    ordered = sorted(setting_runs(runs), key=lambda pair: sort_key(pair[0]))
    return [RunSummary(number=index, run=run, final=run.curves.last_epoch(), best=run.curves.best_epoch(),
                       seeds=seeds) for index, (run, seeds) in enumerate(ordered, start=1)]


def load_summaries(results_dir: Path, experiments: list[str] | None = None, warn=print) -> list[RunSummary]:
    """The runs of `experiments` (default all but selection.LEFT_OUT_UNLESS_NAMED) under results_dir; warns when
    they come from different corpora (comparable.corpora_sentence, which page 1 of the report repeats). A damaged
    run folder is left out with a note naming the file and the reason (tables, figures and the report show every
    other run)."""
    found = rf.find_runs(results_dir)
    runs = [run for run in found if reported(run, experiments)]
    for run in runs:
        if run.damage:
            warn(f"note: left out {run.folder}: damaged ({run.damage.describe()}); `ptblm status` lists it; "
                 f"{run.damage.hint()}")
    damaged = sum(1 for run in runs if run.damage)
    runs = [run for run in runs if not run.damage]
    if not runs and not damaged and found and not experiments:  # all in manual/: runs there are, left out
        raise NoRunFolders(only_left_out(found, results_dir))
    if not runs:
        wanted = f" of {', '.join(each_once(experiments))}" if experiments else ""
        left_out = f" but {damaged} damaged ones (named above)" if damaged else ""
        raise NoRunFolders(f"no run folders{wanted} under {results_dir}{left_out} (expected {results_dir}/"
                           f"<experiment>/<run>/config.json): train something first, e.g. `make submit EXP=smoke`"
                           + left_out_note(found))
    sentence = corpora_sentence(runs)
    if sentence:
        warn(f"note: {sentence} {choose_hint(runs)}")
    return summarize(runs)


def best_per_architecture(summaries: list[RunSummary]) -> dict[tuple[str, str], RunSummary]:
    """(corpus files, model) -> the complete setting of lowest (mean) best validation perplexity among the
    architecture's runs on those files (ties: the lower row number)."""
    best: dict[tuple[str, str], RunSummary] = {}
    for summary in summaries:
        value = summary.best_valid_ppl
        if not summary.complete or value is None or not math.isfinite(value):
            continue
        key = (summary.corpus_files, summary.model)
        current = best.get(key)
        if current is None or value < current.best_valid_ppl:
            best[key] = summary
    return best


def published_comparisons(summaries: list[RunSummary]) -> dict[int, dict]:
    """Row number -> published.published_comparison's columns for the settings of a published setting; for
    several seeds the mean over the seeds of their own comparisons (and the relative difference of that mean
    best). Settings of no published setting are absent."""
    from ..published import published_comparison
    from ..results import epochs_table, runs_table

    owners = {(run.experiment, run.name): s.number for s in summaries for run in (s.seeds or (s.run,))}
    runs = [run for s in summaries for run in (s.seeds or (s.run,))]
    compared = published_comparison(runs_table(runs), epochs_table(runs))
    if compared.empty:
        return {}
    compared["number"] = [owners[key] for key in zip(compared["experiment"], compared["run"])]
    merged = compared.groupby("number").agg(
        published_experiment=("published_experiment", "first"), published_setting=("published_setting", "first"),
        epoch=("epoch", "min"), best_valid_ppl=("best_valid_ppl", "mean"),
        published_best_valid_ppl=("published_best_valid_ppl", "first"), final_valid_ppl=("final_valid_ppl", "mean"),
        published_final_valid_ppl=("published_final_valid_ppl", "first"), n=("run", "size"))
    merged["relative_difference"] = merged["best_valid_ppl"] / merged["published_best_valid_ppl"] - 1
    return merged.to_dict("index")


def by_experiment(summaries: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Experiment name -> its summaries (in row order); experiments in name order."""
    groups: dict[str, list[RunSummary]] = {}
    for summary in summaries:
        groups.setdefault(summary.experiment, []).append(summary)
    return dict(sorted(groups.items()))


def file_stem(experiment: str) -> str:
    """'3.1' -> 'exp-3_1': a name graphicx and every shell take without quoting."""
    return "exp-" + "".join(c if (c.isascii() and c.isalnum()) or c == "-" else "_" for c in experiment)


def experiment_descriptions(summaries: list[RunSummary]) -> dict[str, str]:
    """Experiment -> its description, for section titles only: the one its run folders record
    (config.json "description"), else '' (folders trained before they recorded it)."""
    return {experiment: next((s.run.provenance["description"] for s in group if s.run.provenance.get("description")),
                             "")
            for experiment, group in by_experiment(summaries).items()}
