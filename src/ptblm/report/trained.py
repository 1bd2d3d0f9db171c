"""The trained models the gradient analysis and the samples study: which runs, and their best weights.

Read from the run folders alone (config.json records experiment, setting index and data folder). analysed_runs()
lists them: by default the RNN is setting 0 of experiment 3.1 (SGD, lr 1, batch 128) and the GRU setting 0 of
3.2 (ADAM, lr 0.001, batch 128), as the assignment asks; until those are trained, the RNN and GRU runs with
weights and the lowest best validation ppl stand in (with a note). Every other recurrent model of the registry
is optional: the LSTM's is setting 0 of example-lstm (3.2's setting 0 with the LSTM, the GRU's counterpart),
a new model's setting 0 of example-<name>, else the best run of it with weights (with a note), else none: the
analyses then cover the RNN and the GRU. `--rnn DIR --gru DIR --lstm DIR` (a flag per model) name any others;
all must have read the same corpus files (the samples share start words), so stand-ins are chosen among runs
of the first run's files. The vocabulary is rebuilt from the data folder the run recorded (or
--data, or its corpus's variable such as PTB_DIR), which must be the corpus the run recorded (its fingerprint;
the vocabulary size for folders from before fingerprints). A damaged run folder is never loaded: a note names
its file and reason.

Torch-free at import: the command line reads analysed_runs() to make its flags before any model is loaded.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import corpora
from .. import runfolder as rf
from ..config import RunConfig
from ..data import Corpus, DataError, corpus_fingerprint, load_corpus
from ..errors import UserError
from ..models import ARCHITECTURES, architecture, build_model
from .. import wording
from .comparable import corpus_tag, files_of
from .selection import reported

if TYPE_CHECKING:
    from ..models.interface import LanguageModel


@dataclass(frozen=True)
class AnalysedRun:
    """A model the analyses study, and the run that stands for it unless one is named (--<model> DIR)."""

    model: str
    experiment: str
    setting_index: int
    required: bool = True  # False: analysed only when named, or when a run of it has weights

    @property
    def flag(self) -> str:
        return f"--{self.model.lower()}"


COURSE_ANALYSED = {"RNN": ("3.1", 0), "GRU": ("3.2", 0)}  # the assignment's runs: required


def analysed_runs() -> tuple[AnalysedRun, ...]:
    """Every recurrent model of the registry (the analyses follow a hidden state over time), in its order, read
    when called (a model registered later is analysed too); one the course does not name is optional, its
    default setting 0 of example-<name> (example-lstm: 3.2's setting 0 with the LSTM)."""
    return tuple(AnalysedRun(entry.name, *COURSE_ANALYSED.get(entry.name, (f"example-{entry.name.lower()}", 0)),
                             required=entry.name in COURSE_ANALYSED)
                 for entry in ARCHITECTURES.values() if entry.recurrent)


def analysed_in_words() -> str:
    """analysed_runs() as the commands' help says it: 'the RNN, the GRU and, when there is one, the LSTM'."""
    def listed(names: list[str]) -> str:
        return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)

    required = [f"the {architecture(run.model).title}" for run in analysed_runs() if run.required]
    optional = [f"the {architecture(run.model).title}" for run in analysed_runs() if not run.required]
    if not optional:
        return listed(required)
    return f"{', '.join(required)} and, when there is one, {listed(optional)}"


class MissingRun(UserError, FileNotFoundError):
    """A run the analysis needs has no best.pt; the message says which and how to name another."""


@dataclass
class TrainedModel:
    folder: Path
    config: RunConfig
    model: LanguageModel  # any registered model (an nn.Module), in eval mode, on the CPU
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


def trained_runs_of(model: str, results_dir: Path, skip: frozenset[Path] = frozenset(),
                    files: str | None = None) -> list[rf.RunRecord]:
    """Runs of `model` under results_dir that have a best.pt, of the experiments the report covers by default
    (a `ptblm train --debug` run never stands in; --rnn/--gru can name one), that read the corpus `files`
    (comparable.files_of) when given; damaged ones, and those in `skip`, are none."""
    return [run for run in rf.find_runs(results_dir) if reported(run) and not run.damage and run.folder not in skip
            and run.config.get("model") == model and (run.folder / rf.BEST_CHECKPOINT).is_file()
            and (files is None or files_of(run) == files)]


def damaged_runs_notes(results_dir: Path) -> list[str]:
    """One line per damaged run folder under results_dir, naming the file and the reason."""
    return [f"note: skipped {run.folder}: damaged ({run.damage.describe()})"
            for run in rf.find_runs(results_dir) if run.damage]


def best_valid_ppl(run: rf.RunRecord) -> float:
    best = run.curves.best_epoch()
    return best.valid_ppl if best else math.inf


def resolve_run_dir(analysed: AnalysedRun, named: Path | None, results_dir: Path, notify=print,
                    skip: frozenset[Path] = frozenset(), first: rf.RunRecord | None = None) -> Path | None:
    """The folder named on the command line, else the default setting's, else (with a note) the best one;
    None for an optional model without any run that has weights; never one of `skip` (runs whose best.pt
    could not be loaded). After the `first` run found, only a run of its corpus files (the samples share
    start words, the gradients compare on one text): a named one of other files is refused.

    The stand-in lets `make gradients samples report` work right after the demo, or while 3.1/3.2
    still train; the note and the captions (which name every run) say that it happened.
    """
    model, flag = analysed.model, analysed.flag
    files = None if first is None else files_of(first)
    trained = trained_runs_of(model, results_dir, skip, files)
    if named is not None:
        folder = Path(named).parent if Path(named).name == rf.BEST_CHECKPOINT else Path(named)
        no_weights = rf.RunFolder(folder).no_best_weights()
        if no_weights is None:
            check_corpus_files(folder, flag, first)
            return folder
        raise MissingRun(f"no trained {model} named with {flag}: {no_weights}; "
                         f"{trained_runs_hint(model, results_dir, trained)}")
    experiment, index = analysed.experiment, analysed.setting_index
    for run in trained:
        if run.experiment == experiment and run.provenance.get("setting_index") == index:
            return run.folder
    missing = f"no {model} run of setting {index} of experiment {experiment} under {results_dir} has weights yet"
    for run in rf.find_runs(results_dir):  # the setting's run, when it exists without weights: why
        if (not run.damage and run.experiment == experiment and run.provenance.get("setting_index") == index
                and run.config.get("model") == model):
            no_weights = rf.RunFolder(run.folder).no_best_weights(run.curves)
            missing += f" ({no_weights})" if no_weights else ""
            break
    if files is not None:
        missing += f" on the corpus files of {first.folder} ({corpus_tag(first)})"
    if trained:
        best = min(trained, key=best_valid_ppl)
        notify(f"note: {missing}; using the {model} run with the lowest best validation ppl instead, {best.folder} "
               f"({best_valid_ppl(best):.2f}; train {experiment} with {train_command(experiment, first)}, or name a "
               f"run with {flag} DIR)")
        return best.folder
    if not analysed.required:
        return None
    demo = "" if first is not None and corpus_of(first) != corpora.DEFAULT_CORPUS else ", or `make demo` for small ones"
    raise MissingRun(f"no trained {model}: {missing}, nor has any other; train one ({train_command(experiment, first)}"
                     f"{demo}) or name a run folder with {flag} DIR")


def corpus_of(run: rf.RunRecord) -> str:
    return run.config.get("corpus", corpora.DEFAULT_CORPUS)


def train_command(experiment: str, first: rf.RunRecord | None) -> str:
    """`make submit EXP=...`, on the corpus of the first analysed run (the others must read its files)."""
    corpus = corpus_of(first) if first is not None else corpora.DEFAULT_CORPUS
    return f"`make submit EXP={experiment}{'' if corpus == corpora.DEFAULT_CORPUS else f' CORPUS={corpus}'}`"


def check_corpus_files(folder: Path, flag: str, first: rf.RunRecord | None) -> None:
    """A named run must read the corpus files the first analysed run read (comparable.files_of)."""
    record = rf.RunFolder(folder).read()
    if first is not None and not record.damage and files_of(record) != files_of(first):
        raise MissingRun(f"{folder} (named with {flag}) read {corpus_tag(record)}, but {first.folder} read "
                         f"{corpus_tag(first)}: the analyses compare runs of the same corpus files; name a run "
                         f"of {corpus_tag(first)}")


def trained_runs_hint(model: str, results_dir: Path, trained: list[rf.RunRecord]) -> str:
    if trained:
        return f"{model} runs with weights under {results_dir}: " + ", ".join(str(run.folder) for run in trained)
    return f"no {model} run under {results_dir} has weights yet (`make demo` trains small ones)"


def run_data_dir(folder: Path, entry: corpora.CorpusEntry, data_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Path:
    """Where a run's corpus is read from now: `data_dir` (--data), else the folder its corpus's variable names
    in `environ` (e.g. PTB_DIR), else the folder config.json recorded (often gone: a node's $SLURM_TMPDIR)."""
    return Path(data_dir or corpora.configured_data_dir(entry, environ or {})
                or rf.read_json(Path(folder) / rf.CONFIG_FILE)["data_dir"])


def load_trained(folder: Path, expected_model: str | None, data_dir: Path | None = None,
                 batch_size: int | None = None, loaded: dict[Path, Corpus] | None = None,
                 environ: Mapping[str, str] | None = None, fingerprint_cache: Path | None = None) -> TrainedModel:
    """best.pt of `folder` in a model built for `batch_size` sequences (default: the run's batch size).

    `expected_model` (RNN, GRU, ...) is what the caller's flag asked for; None takes any model.
    data_dir (--data), else the folder the run's corpus's variable names in `environ` (e.g. PTB_DIR),
    overrides the data folder recorded in config.json (a cluster's path is often gone).
    `loaded` keeps the corpora read so far, so that two runs of the same data read it once. The data must be
    the corpus the run recorded (check_same_corpus; `fingerprint_cache` as for ptblm.data.corpus_fingerprint).
    """
    folder = Path(folder)
    run = rf.RunFolder(folder)
    record = run.read()
    if record.damage:
        raise rf.Damaged.of(record.damage)
    best = run.best_weights()  # imports torch
    try:
        config = RunConfig.from_dict(best.config, where="config")
    except ValueError as error:
        raise rf.Damaged(run.file(rf.BEST_CHECKPOINT), str(error)) from None
    if expected_model is not None and config.model != expected_model:
        held, wanted = (f"{wording.article(name)} {name}" for name in (config.model, expected_model))
        raise MissingRun(f"{folder} holds {held} run; --{expected_model.lower()} needs {wanted} run folder")
    entry = corpora.get(config.corpus)
    data_dir = run_data_dir(folder, entry, data_dir, environ)
    loaded = {} if loaded is None else loaded
    if data_dir not in loaded:
        try:
            loaded[data_dir] = load_corpus(data_dir, entry)
        except DataError as error:
            raise DataError(f"{folder} needs the vocabulary of the data it was trained on ({data_dir}): "
                            f"{error}") from error
    corpus = loaded[data_dir]
    check_same_corpus(folder, entry, record.provenance.get(rf.CORPUS_KEY), data_dir, corpus.vocab_size,
                      best.vocab_size, fingerprint_cache)
    model = build_model(config.replace(batch_size=batch_size) if batch_size else config, corpus.vocab_size)
    model.load_state_dict(best.model)
    model.eval()
    return TrainedModel(folder, config, model, corpus, best.epoch, best.valid_ppl)


def check_same_corpus(folder: Path, entry: corpora.CorpusEntry, recorded: str | None, data_dir: Path,
                      vocab_size: int, trained_vocab: int, fingerprint_cache: Path | None = None) -> None:
    """The words are decoded with the corpus the run was trained on: the fingerprint it recorded, else (folders
    from before fingerprints) at least the vocabulary size."""
    hint = f"point --data (or {entry.env_var}) at the data the run was trained on"
    if recorded is not None:
        actual = corpus_fingerprint(data_dir, fingerprint_cache, entry)
        if actual != recorded:
            raise DataError(f"{data_dir} is not the corpus {folder} was trained on (fingerprint {actual}, the run "
                            f"recorded {recorded}): {hint}")
    if vocab_size != trained_vocab:
        raise DataError(f"{data_dir} has a vocabulary of {vocab_size} words but {folder} was trained with "
                        f"{trained_vocab}: {hint}")


def load_analysed(named: dict[str, Path | None], results_dir: Path, data_dir: Path | None = None,
                  batch_size: int | None = None, notify=print,
                  environ: Mapping[str, str] | None = None) -> list[TrainedModel]:
    """The models of analysed_runs() (named[model] or the defaults) in its order; one error naming every required run
    that is missing. Their data: see load_trained. Damaged run folders are named in a note each and never
    loaded; a default run whose best.pt cannot be loaded gives way to the next stand-in."""
    for note in damaged_runs_notes(results_dir):
        notify(note)
    folders, problems, first = {}, [], None  # first: the first run found, whose corpus files all must read
    analysed_all = analysed_runs()
    for analysed in sorted(analysed_all, key=lambda analysed: named.get(analysed.model) is None):  # named ones first
        try:
            folder = resolve_run_dir(analysed, named.get(analysed.model), results_dir, notify, first=first)
        except MissingRun as error:
            problems.append(str(error))
            continue
        if folder is not None:
            folders[analysed.model] = folder
            record = rf.RunFolder(folder).read()
            first = first if first is not None or record.damage else record
    if problems:
        raise MissingRun("\n".join(problems))
    folders = {analysed.model: folders[analysed.model] for analysed in analysed_all if analysed.model in folders}
    corpora_read: dict[Path, Corpus] = {}  # the runs were usually trained on the same data: read it once
    analysed_as = {analysed.model: analysed for analysed in analysed_all}
    models = []
    for model, folder in folders.items():
        skipped: set[Path] = set()
        while folder is not None:
            try:
                models.append(load_trained(folder, model, data_dir, batch_size, corpora_read, environ))
                break
            except rf.Damaged as error:  # a best.pt that only loading tells apart (a foreign dict, a newer format)
                if named.get(model) is not None:
                    raise
                notify(f"note: skipped {folder}: damaged ({error.damage.describe()})")
                skipped.add(folder)
                folder = resolve_run_dir(analysed_as[model], None, results_dir, notify, frozenset(skipped), first)
    return models
