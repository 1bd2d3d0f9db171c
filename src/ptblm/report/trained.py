"""The two trained models the gradient analysis and the samples study: which runs, and their best weights.

Read from the run folders alone (config.json records experiment, setting index and data folder).
By default the RNN is setting 0 of experiment 3.1 (SGD, lr 1, batch 128) and the GRU setting 0 of
3.2 (ADAM, lr 0.001, batch 128), as the assignment asks; until those are trained, the RNN and GRU
runs with weights and the lowest best validation ppl stand in (with a note); `--rnn DIR --gru DIR`
name any others. The vocabulary is rebuilt from the data folder the run recorded (or --data / PTB_DIR),
which must be the corpus the run recorded (its fingerprint; the vocabulary size for folders from before
fingerprints). A damaged run folder is never loaded: a note names its file and reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import runfolder as rf
from ..config import RunConfig
from ..data import Corpus, DataError, corpus_fingerprint, load_corpus
from ..errors import UserError
from ..models import build_model
from ..models._recurrent import RecurrentLM

DEFAULT_RUNS = {"RNN": ("3.1", 0), "GRU": ("3.2", 0)}  # model -> (experiment, setting index)


class MissingRun(UserError, FileNotFoundError):
    """A run the analysis needs has no best.pt; the message says which and how to name another."""


@dataclass
class TrainedModel:
    folder: Path
    config: RunConfig
    model: RecurrentLM  # eval mode, on the CPU
    corpus: Corpus
    epoch: int  # the epoch best.pt was saved at
    valid_ppl: float

    @property
    def name(self) -> str:
        return self.config.model

    @property
    def run_label(self) -> str:
        """'3.1/rnn_sgd_lr1_bs128_h512_l2_keep0.8': experiment/run, short enough for a caption."""
        return f"{self.folder.parent.name}/{self.folder.name}"

    def describe(self) -> str:
        return f"{self.name} {self.folder} (best epoch {self.epoch}, valid ppl {self.valid_ppl:.2f})"


def trained_runs_of(model: str, results_dir: Path, skip: frozenset[Path] = frozenset()) -> list[rf.RunRecord]:
    """Runs of `model` under results_dir that have a best.pt (damaged ones, and those in `skip`, are none)."""
    return [run for run in rf.find_runs(results_dir) if not run.damage and run.folder not in skip
            and run.config.get("model") == model and (run.folder / rf.BEST_CHECKPOINT).is_file()]


def damaged_runs_notes(results_dir: Path) -> list[str]:
    """One line per damaged run folder under results_dir, naming the file and the reason."""
    return [f"note: skipped {run.folder}: damaged ({run.damage.describe()})"
            for run in rf.find_runs(results_dir) if run.damage]


def best_valid_ppl(run: rf.RunRecord) -> float:
    best = run.curves.best_epoch()
    return best.valid_ppl if best else math.inf


def resolve_run_dir(model: str, named: Path | None, results_dir: Path, notify=print,
                    skip: frozenset[Path] = frozenset()) -> Path:
    """The folder named on the command line, else the default setting's, else (with a note) the best one;
    never one of `skip` (runs whose best.pt could not be loaded).

    The stand-in lets `make gradients samples report` work right after the demo, or while 3.1/3.2
    still train; the note and the captions (which name every run) say that it happened.
    """
    flag = f"--{model.lower()}"
    trained = trained_runs_of(model, results_dir, skip)
    if named is not None:
        folder = Path(named).parent if Path(named).name == rf.BEST_CHECKPOINT else Path(named)
        damage = rf.RunFolder(folder).read().damage if folder.is_dir() else None
        if damage:
            raise rf.Damaged(damage.file, damage.reason)
        if (folder / rf.BEST_CHECKPOINT).is_file():
            return folder
        raise MissingRun(f"no trained {model}: {folder} (named with {flag}) has no {rf.BEST_CHECKPOINT}; "
                         f"{trained_runs_hint(model, results_dir, trained)}")
    experiment, index = DEFAULT_RUNS[model]
    for run in trained:
        if run.experiment == experiment and run.provenance.get("setting_index") == index:
            return run.folder
    missing = f"no {model} run of setting {index} of experiment {experiment} under {results_dir} has weights yet"
    if trained:
        best = min(trained, key=best_valid_ppl)
        notify(f"note: {missing}; using the {model} run with the lowest best validation ppl instead, {best.folder} "
               f"({best_valid_ppl(best):.2f}; train {experiment} with `make submit EXP={experiment}`, or name a "
               f"run with {flag} DIR)")
        return best.folder
    raise MissingRun(f"no trained {model}: {missing}, nor has any other; train one (`make submit EXP={experiment}`, "
                     f"or `make demo` for small ones) or name a run folder with {flag} DIR")


def trained_runs_hint(model: str, results_dir: Path, trained: list[rf.RunRecord]) -> str:
    if trained:
        return f"{model} runs with weights under {results_dir}: " + ", ".join(str(run.folder) for run in trained)
    return f"no {model} run under {results_dir} has weights yet (`make demo` trains small ones)"


def load_trained(folder: Path, expected_model: str, data_dir: Path | None = None,
                 batch_size: int | None = None, corpora: dict[Path, Corpus] | None = None) -> TrainedModel:
    """best.pt of `folder` in a model built for `batch_size` sequences (default: the run's batch size).

    data_dir overrides the data folder recorded in config.json (a cluster's path is often gone).
    `corpora` keeps the corpora read so far, so that two runs of the same data read it once.
    """
    folder = Path(folder)
    run = rf.RunFolder(folder)
    record = run.read()
    if record.damage:
        raise rf.Damaged(record.damage.file, record.damage.reason)
    best = run.best_weights()
    try:
        config = RunConfig.from_dict(best.config, where="config")
    except ValueError as error:
        raise rf.Damaged(run.file(rf.BEST_CHECKPOINT), str(error)) from None
    if config.model != expected_model:
        raise ValueError(f"{folder} holds a {config.model} run; --{expected_model.lower()} needs a "
                         f"{expected_model} run folder")
    recorded_data = record.provenance.get("data_dir")
    if data_dir is None and recorded_data is None:
        raise rf.Damaged(run.file(rf.CONFIG_FILE), "no data_dir: name the data it was trained on with --data")
    data_dir = Path(data_dir) if data_dir is not None else Path(recorded_data)
    corpora = {} if corpora is None else corpora
    if data_dir not in corpora:
        try:
            corpora[data_dir] = load_corpus(data_dir)
        except DataError as error:
            raise DataError(f"{folder} needs the vocabulary of the data it was trained on ({data_dir}): "
                            f"{error}") from error
    corpus = corpora[data_dir]
    check_same_corpus(folder, record.provenance.get(rf.CORPUS_KEY), data_dir, corpus.vocab_size, best.vocab_size)
    model = build_model(config.replace(batch_size=batch_size) if batch_size else config, corpus.vocab_size)
    model.load_state_dict(best.model)
    model.eval()
    return TrainedModel(folder, config, model, corpus, best.epoch, best.valid_ppl)


def check_same_corpus(folder: Path, recorded: str | None, data_dir: Path, vocab_size: int, trained_vocab: int) -> None:
    """The words are decoded with the corpus the run was trained on: the fingerprint it recorded, else (folders
    from before fingerprints) at least the vocabulary size."""
    hint = "point --data (or PTB_DIR) at the data the run was trained on"
    if recorded is not None:
        actual = corpus_fingerprint(data_dir)
        if actual != recorded:
            raise DataError(f"{data_dir} is not the corpus {folder} was trained on (fingerprint {actual}, the run "
                            f"recorded {recorded}): {hint}")
    if vocab_size != trained_vocab:
        raise DataError(f"{data_dir} has a vocabulary of {vocab_size} words but {folder} was trained with "
                        f"{trained_vocab}: {hint}")


def load_analysed(named: dict[str, Path | None], results_dir: Path, data_dir: Path | None = None,
                  batch_size: int | None = None, notify=print) -> list[TrainedModel]:
    """The RNN and the GRU (named[model] or the defaults); one error naming every run that is missing. Damaged
    run folders are named in a note each and never loaded."""
    for note in damaged_runs_notes(results_dir):
        notify(note)
    folders, problems = {}, []
    for model in DEFAULT_RUNS:
        try:
            folders[model] = resolve_run_dir(model, named.get(model), results_dir, notify)
        except MissingRun as error:
            problems.append(str(error))
    if problems:
        raise MissingRun("\n".join(problems))
    corpora: dict[Path, Corpus] = {}  # the RNN and the GRU were usually trained on the same data: read it once
    loaded = []
    for model, folder in folders.items():
        skipped: set[Path] = set()
        while True:
            try:
                loaded.append(load_trained(folder, model, data_dir, batch_size, corpora))
                break
            except rf.Damaged as error:  # a best.pt that only loading tells apart (a foreign dict, a newer format)
                if named.get(model) is not None:
                    raise
                notify(f"note: skipped {folder}: damaged ({error.damage.describe()})")
                skipped.add(folder)
                folder = resolve_run_dir(model, None, results_dir, notify, frozenset(skipped))
    return loaded
