"""A small results tree shared by the damage suite and the run-folder tests: two experiments of two runs each.

    3.1  RNN h16 (setting 0: the target, the default RNN of samples and gradients; cancelled after epoch 1 of
         2, so that `ptblm train` resumes it; with submitted.json, best_params.pt, log.txt and .lock)
         RNN h12 (done)
    3.2  GRU h16, GRU h12 (done)

Trained once per module (tiny models, a synthetic corpus, 3 batches per epoch) and copied per example.
`cli` calls the `ptblm` command line in-process and returns (exit code, stdout + stderr).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.jobs import load_experiment

REPO = Path(__file__).resolve().parents[1]
COMMON = ("{optimizer: ADAM, initial_lr: 0.01, batch_size: 8, seq_len: 12, emb_size: 12, num_layers: 1, "
          "dp_keep_prob: 0.8, num_epochs: 2, max_batches: 3, device: cpu}")
JOBS = {"3.1": ("RNNs", ["{model: RNN, hidden_size: 16, save_best: true}", "{model: RNN, hidden_size: 12}"]),
        "3.2": ("GRUs", ["{model: GRU, hidden_size: 16}", "{model: GRU, hidden_size: 12}"])}


@dataclass(frozen=True)
class Tree:
    root: Path
    data: Path

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def settings(self):
        return [s for name in JOBS for s in load_experiment(name, self.jobs).settings]

    def folder(self, experiment: str, index: int) -> Path:
        return load_experiment(experiment, self.jobs).settings[index].run_dir(self.results)

    @property
    def target(self) -> Path:
        return self.folder("3.1", 0)

    def others(self) -> list[Path]:
        return [s.run_dir(self.results) for s in self.settings() if s.run_dir(self.results) != self.target]

    def copy(self, dest: Path) -> Tree:
        shutil.copytree(self.root, dest, symlinks=True)
        return Tree(dest, self.data)

    def train_argv(self) -> list[str]:
        """`ptblm train` flags of the target's setting: resuming it."""
        config = load_experiment("3.1", self.jobs).settings[0].config
        flags = [f"--{key}" if value is True else f"--{key}={value}" for key, value in config.to_dict().items()
                 if value is not False]
        return ["train", *flags, "--data", str(self.data), "--out", str(self.target)]


def build_tree(root: Path, data: Path) -> Tree:
    from ptblm.train import train_run

    tree = Tree(root, data)
    tree.jobs.mkdir(parents=True)
    for name, (description, settings) in JOBS.items():
        (tree.jobs / f"{name}.yaml").write_text(f"description: {description}\ncommon: {COMMON}\nsettings:\n"
                                                + "".join(f"  - {setting}\n" for setting in settings))
    for setting in tree.settings():
        folder = setting.run_dir(tree.results)
        target = folder == tree.target
        if target:  # submitted (locally) before it started
            folder.mkdir(parents=True)
            rf.write_submission(folder, rf.Submission(None, "local", 1.0, setting.index, setting.config.to_dict()))
        train_run(setting.config, data, folder, experiment=setting.experiment, setting_index=setting.index,
                  description=setting.description, echo=False,
                  should_stop=(lambda f=folder: len(rf.read_curves(f).epochs) >= 1) if target else None, environ={})
    assert rf.read_status(tree.target).state == rf.CANCELLED
    return tree


def write_config(folder: Path, config: dict, provenance: dict) -> None:
    """A run's file written as a test sets it up (plain file writes, no lock): what ptblm writes there."""
    rf.atomic_write_json(Path(folder) / rf.CONFIG_FILE, rf.RunSettings(config, provenance).to_json())


def write_curves(folder: Path, curves: rf.Curves) -> None:
    rf.atomic_write_json(Path(folder) / rf.CURVES_FILE, curves.to_json())


def write_status(folder: Path, status: rf.RunStatus) -> None:
    rf.atomic_write_json(Path(folder) / rf.STATUS_FILE, status.to_json())


def cli(*argv: str) -> tuple[int, str]:
    """`ptblm ARGV` in this process: its exit code and everything it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue()


def snapshot(folder: Path) -> dict:
    """Every entry of a run folder: its kind, bytes (or link target) and mtime; a link's target's bytes too.
    The lock file's content is left out: a reader may take the lock (its holder record is rewritten)."""
    entries = {}
    for path in sorted(folder.iterdir()):
        info = path.lstat()
        if path.is_symlink():
            target = Path(os.readlink(path))
            entries[path.name] = ("link", str(target), target.read_bytes() if target.is_file() else None,
                                  info.st_mtime_ns)
        elif path.name == rf.LOCK_FILE:
            entries[path.name] = ("lock",)
        elif path.is_dir():  # tb/, the TensorBoard event files
            entries[path.name] = ("folder", snapshot(path))
        elif not stat.S_ISREG(info.st_mode):  # a FIFO: never opened
            entries[path.name] = ("special", stat.S_IFMT(info.st_mode), info.st_mtime_ns)
        else:
            entries[path.name] = ("file", path.read_bytes(), info.st_mtime_ns)
    return entries
