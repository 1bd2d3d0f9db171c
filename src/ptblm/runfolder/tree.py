"""A results tree: the experiments under a results folder and their run folders (one RunFolder each, folder.py).

The one definition of "an experiment" and "its runs" that status, tensorboard, export, evaluate and the
report's selection use; the paths themselves are ptblm.layout's.
"""
from __future__ import annotations

from pathlib import Path

from .. import layout
from .folder import RunFolder, RunRecord


def experiment_runs(results_dir: Path, experiment: str) -> list[Path]:
    """The folders of results/<experiment>/ that hold a run's files (RunFolder.holds_run: a lock or a log alone
    is none), sorted; none for a folder that cannot be an experiment's (results/report, bench, demo, hidden)."""
    if not layout.is_experiment_name(experiment):
        return []
    return [path for path in layout.run_folders(results_dir, experiment) if RunFolder(path).holds_run()]


def experiments(results_dir: Path) -> list[str]:
    """The experiments under a results folder: its folders with at least one run (experiment_runs), sorted.
    The one definition status, tensorboard, export, evaluate and the report's selection use: report/, bench/,
    demo/ (a results tree of its own), hidden folders and folders without a run are not experiments."""
    return [name for name in layout.experiment_folder_names(results_dir) if experiment_runs(results_dir, name)]


def find_runs(results_dir: Path, experiment: str | None = None) -> list[RunRecord]:
    """Every run folder with results (a config.json) or damage of `experiment`, else of every experiment
    (see experiments), sorted by experiment then setting number."""
    names = [experiment] if experiment else experiments(results_dir)
    records = [RunFolder(path).read() for name in names for path in experiment_runs(results_dir, name)]
    runs = [record for record in records if record.config or record.damaged]
    return sorted(runs, key=lambda r: (r.experiment, r.setting_index or 0, r.name))
