"""The two trained models the gradient analysis and the samples study: which runs, and their best weights.

By default the RNN is setting 0 of experiment 3.1 (SGD, lr 1, batch 128) and the GRU setting 0 of
3.2 (ADAM, lr 0.001, batch 128), as the assignment asks; until those are trained, the smoke runs
stand in (with a notice); `--rnn PATH --gru PATH` name others. The vocabulary is rebuilt from the
data folder the run recorded (or --data / PTB_DIR) and must have the size the weights were trained with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import runfolder as rf
from ..config import ConfigError, RunConfig
from ..data import Corpus, DataError, load_corpus
from ..jobs import Setting, load_experiment
from ..models import build_model
from ..models._recurrent import RecurrentLM
from ..train import load_checkpoint

DEFAULT_RUNS = {"RNN": ("3.1", 0), "GRU": ("3.2", 0)}  # model -> (experiment, setting index)
FALLBACK_EXPERIMENT = "smoke"  # its first RNN / GRU setting, when the defaults are not trained yet


class MissingRun(FileNotFoundError):
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


def trained_runs_of(model: str, results_dir: Path) -> list[Path]:
    """Run folders of `model` under results_dir that have a best.pt."""
    return [run.folder for run in rf.find_runs(results_dir)
            if run.config.get("model") == model and (run.folder / rf.BEST_CHECKPOINT).is_file()]


def default_setting(model: str, jobs_dir: Path) -> Setting:
    experiment, index = DEFAULT_RUNS[model]
    return load_experiment(experiment, jobs_dir).settings[index]


def fallback_setting(model: str, jobs_dir: Path) -> Setting | None:
    """The fallback experiment's first setting of `model`; None without that experiment."""
    try:
        settings = load_experiment(FALLBACK_EXPERIMENT, jobs_dir).settings
    except ConfigError:
        return None
    return next((setting for setting in settings if setting.config.model == model), None)


def resolve_run_dir(model: str, named: Path | None, results_dir: Path, jobs_dir: Path, notify=print) -> Path:
    """The folder named on the command line, else the default setting's, else (with a notice) the smoke one's.

    Falling back to smoke lets `make gradients samples report` work right after the demo; the notice
    and the captions (which name every run) say that it happened.
    """
    flag = f"--{model.lower()}"
    if named is not None:
        folder = Path(named).parent if Path(named).name == rf.BEST_CHECKPOINT else Path(named)
        if (folder / rf.BEST_CHECKPOINT).is_file():
            return folder
        raise MissingRun(f"no trained {model}: {folder} (named with {flag}) has no {rf.BEST_CHECKPOINT}; "
                         f"{trained_runs_hint(model, results_dir)}")
    experiment, index = DEFAULT_RUNS[model]
    try:
        setting = default_setting(model, jobs_dir)
    except ConfigError as error:
        raise MissingRun(f"cannot find the default {model} run (setting {index} of experiment {experiment}): "
                         f"{error}; name a run folder with {flag} PATH") from error
    folder = setting.run_dir(results_dir)
    if (folder / rf.BEST_CHECKPOINT).is_file():
        return folder
    missing = (f"{folder} (the default: setting {index} of experiment {experiment}, {setting.config.model} "
               f"{setting.config.optimizer} lr {setting.config.initial_lr:g} bs {setting.config.batch_size}) "
               f"has no {rf.BEST_CHECKPOINT}")
    fallback = fallback_setting(model, jobs_dir)
    if fallback is not None and (fallback.run_dir(results_dir) / rf.BEST_CHECKPOINT).is_file():
        notify(f"note: {missing}; using the {FALLBACK_EXPERIMENT} run {fallback.run_dir(results_dir)} instead "
               f"(train {experiment} with `make submit EXP={experiment}`, or name a run with {flag} PATH)")
        return fallback.run_dir(results_dir)
    raise MissingRun(f"no trained {model}: {missing}; train it (`make submit EXP={experiment}`) or name another "
                     f"run folder with {flag} PATH. {trained_runs_hint(model, results_dir)}")


def trained_runs_hint(model: str, results_dir: Path) -> str:
    others = trained_runs_of(model, results_dir)
    if others:
        return f"{model} runs with weights under {results_dir}: " + ", ".join(str(p) for p in others)
    return f"no {model} run under {results_dir} has weights yet (`make submit EXP=smoke` trains small ones)"


def load_trained(folder: Path, expected_model: str, data_dir: Path | None = None,
                 batch_size: int | None = None, corpora: dict[Path, Corpus] | None = None) -> TrainedModel:
    """best.pt of `folder` in a model built for `batch_size` sequences (default: the run's batch size).

    data_dir overrides the data folder recorded in config.json (a cluster's path is often gone).
    `corpora` keeps the corpora read so far, so that two runs of the same data read it once.
    """
    folder = Path(folder)
    checkpoint = load_checkpoint(folder / rf.BEST_CHECKPOINT)
    config = RunConfig.from_dict(checkpoint["config"], where=str(folder / rf.BEST_CHECKPOINT))
    if config.model != expected_model:
        raise ValueError(f"{folder} holds a {config.model} run; --{expected_model.lower()} needs a "
                         f"{expected_model} run folder")
    data_dir = Path(data_dir) if data_dir is not None else Path(rf.read_json(folder / rf.CONFIG_FILE)["data_dir"])
    corpora = {} if corpora is None else corpora
    if data_dir not in corpora:
        try:
            corpora[data_dir] = load_corpus(data_dir)
        except DataError as error:
            raise DataError(f"{folder} needs the vocabulary of the data it was trained on ({data_dir}): "
                            f"{error}") from error
    corpus = corpora[data_dir]
    if corpus.vocab_size != checkpoint["vocab_size"]:
        raise DataError(f"{data_dir} has a vocabulary of {corpus.vocab_size} words but {folder} was trained with "
                        f"{checkpoint['vocab_size']}: point --data (or PTB_DIR) at the data the run was trained on")
    model = build_model(config.replace(batch_size=batch_size) if batch_size else config, corpus.vocab_size)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return TrainedModel(folder, config, model, corpus, int(checkpoint["epoch"]), float(checkpoint["valid_ppl"]))


def load_analysed(named: dict[str, Path | None], results_dir: Path, jobs_dir: Path, data_dir: Path | None = None,
                  batch_size: int | None = None, notify=print) -> list[TrainedModel]:
    """The RNN and the GRU (named[model] or the defaults); one error naming every run that is missing."""
    folders, problems = {}, []
    for model in DEFAULT_RUNS:
        try:
            folders[model] = resolve_run_dir(model, named.get(model), results_dir, jobs_dir, notify)
        except MissingRun as error:
            problems.append(str(error))
    if problems:
        raise MissingRun("\n".join(problems))
    corpora: dict[Path, Corpus] = {}  # the RNN and the GRU were usually trained on the same data: read it once
    return [load_trained(folder, model, data_dir, batch_size, corpora) for model, folder in folders.items()]
