"""The run folder: the one on-disk contract between training and everything that reads results.

    results/<exp>/<run>/
        config.json   every setting plus provenance (code version, torch, device, command line, Slurm ids)
        curves.json   one record per finished epoch (see EpochRecord)
        status.json   state: running | done | diverged | failed | requeued | cancelled, epochs finished, error
        submitted.json  written by `ptblm submit`/`sbatch` only: job id, time, setting of the last submission
        log.txt       human log, appended
        best.pt       weights of the best validation epoch (always written)
        best_params.pt  with save_best only: the same weights as a raw state_dict, run_exp.py's file
        last.pt       everything needed to resume (model, optimizer, epoch, RNG states, curves)
        packages.txt  the installed packages of the latest attempt, `pip freeze` style (its hash in config.json)
        tb/           TensorBoard event files (see ptblm.tensorboard_events)
        .lock         flock'd by the one training run writing the folder (see ptblm.runlock)

Every write is atomic (temporary file in the same folder, created with the umask's mode, then rename),
so a run killed at any instant leaves readable files; the orphans of such a kill are removed by the next
run (remove_orphans). JSON stays standard: a non-finite float is written as the string
"inf", "-inf" or "nan" and read back as a float.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import layout
from .config import MODELS, OPTIMIZERS
from .corpora import DEFAULT_CORPUS
from .errors import UserError

CONFIG_FILE = "config.json"
CURVES_FILE = "curves.json"
STATUS_FILE = "status.json"
LOG_FILE = "log.txt"
BEST_CHECKPOINT = "best.pt"
BEST_PARAMS = "best_params.pt"  # run_exp.py's name; a raw state_dict
LAST_CHECKPOINT = "last.pt"
SUBMISSION_FILE = "submitted.json"
PACKAGES_FILE = "packages.txt"  # written by ptblm.provenance.record_attempt
TB_FOLDER = "tb"  # TensorBoard event files, written by ptblm.tensorboard_events
LOCK_FILE = ".lock"  # held by the training run that writes the folder (see ptblm.runlock)
OWN_FILES = (CONFIG_FILE, CURVES_FILE, STATUS_FILE, LOG_FILE, BEST_CHECKPOINT, BEST_PARAMS, LAST_CHECKPOINT,
             SUBMISSION_FILE, PACKAGES_FILE)
TRAINER_FILES = tuple(name for name in OWN_FILES if name != SUBMISSION_FILE)  # submitted.json: `ptblm submit`'s
CORPUS_KEY = "corpus_fingerprint"  # in config.json, beside data_dir: see ptblm.data.corpus_fingerprint

RUNNING, DONE, DIVERGED, FAILED, REQUEUED, PENDING, CANCELLED = (
    "running", "done", "diverged", "failed", "requeued", "pending", "cancelled")  # cancelled: stopped on request
FINISHED_STATES = (DONE, DIVERGED)  # resubmission skips these unless forced
FORMAT_VERSION = 1


class RunFolderError(UserError, RuntimeError):
    """A path that cannot hold a run, or a run folder file that cannot be read; the message names the file."""


class DamagedRunFile(RunFolderError, ValueError):
    """A JSON file in a run folder that is not what ptblm wrote (a ValueError, as json's own error is)."""


def encode_float(value: float) -> float | str:
    """JSON-safe float: finite values as numbers, others as 'inf', '-inf' or 'nan'."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def decode_float(value: float | str | None) -> float:
    return float("nan") if value is None else float(value)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new `.<name>.<random>.tmp` beside `path`, created with the umask's mode as log.txt is (mkstemp's
    0600 would keep results from a lab's shared project space)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DamagedRunFile(f"{path}: not UTF-8 text (byte {error.start}): damaged or not written by ptblm; "
                             f"delete the file or rerun with --force") from None
    except json.JSONDecodeError as error:
        raise DamagedRunFile(f"{path}: not valid JSON ({error})") from error


def read_json_object(path: Path) -> dict:
    """A run-folder JSON file, which is always an object: anything else is named, not half-read."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DamagedRunFile(f"{path}: expected a JSON object (ptblm's {Path(path).name}), got a JSON "
                             f"{type(obj).__name__}; delete the file or rerun with --force")
    return obj


def read_parsed(path: Path, parse):
    """parse(the JSON object of `path`): a value of the wrong type, or a missing field, is named with its file
    (not `could not convert string to float: 'garbage'`)."""
    obj = read_json_object(path)
    try:
        return parse(obj)
    except KeyError as error:
        problem = f"no {error} field"
    except (TypeError, ValueError) as error:
        problem = str(error)
    raise DamagedRunFile(f"{path}: {problem} (damaged, or not written by ptblm); delete the file or rerun with "
                         f"--force")


def make_run_folder(folder: Path) -> Path:
    """Create `folder` for a run, or check that it is one. Refused: a file, a place that cannot be written,
    and a non-empty folder that is not a ptblm run's (never train into someone else's files, nor --force
    them away)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder} is a file, not a run folder; choose a folder for --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"{folder}: cannot create the run folder ({error.strerror}); choose a writable "
                             f"--out") from None
    if not is_run_folder(folder):
        names = sorted(path.name for path in folder.iterdir())
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise RunFolderError(f"{folder} is not empty and not a ptblm run folder (it holds {shown}); choose an "
                             f"empty or new folder for --out")
    return folder


def is_run_folder(folder: Path) -> bool:
    """Empty, or holding what only ptblm writes: the lock, or a config.json, status.json or submitted.json
    in ptblm's shape (folders from before the lock existed have those)."""
    names = {path.name for path in Path(folder).iterdir()}
    if not names or LOCK_FILE in names:
        return True
    for name, key in ((CONFIG_FILE, "config"), (STATUS_FILE, "state"), (SUBMISSION_FILE, "executor")):
        if name in names:
            try:
                obj = read_json(Path(folder) / name)
            except (OSError, ValueError):
                continue
            if isinstance(obj, dict) and key in obj:
                return True
    return False


@dataclass
class EpochRecord:
    """One finished epoch. Perplexities may be inf/nan for a diverged run."""

    epoch: int  # 1-based
    train_ppl: float
    valid_ppl: float
    epoch_seconds: float  # training + validation time of this epoch
    wall_clock_seconds: float  # cumulative over the run, resumed segments included
    lr: float  # learning rate used during this epoch

    def to_json(self) -> dict:
        return {k: (encode_float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, record: dict) -> EpochRecord:
        return cls(epoch=int(record["epoch"]),
                   train_ppl=decode_float(record["train_ppl"]),
                   valid_ppl=decode_float(record["valid_ppl"]),
                   epoch_seconds=decode_float(record["epoch_seconds"]),
                   wall_clock_seconds=decode_float(record["wall_clock_seconds"]),
                   lr=decode_float(record["lr"]))


@dataclass
class Curves:
    epochs: list[EpochRecord] = field(default_factory=list)
    test_ppl: float | None = None  # with --evaluate: test perplexity of the best weights
    peak_memory_bytes: int | None = None  # peak accelerator memory (CUDA only)

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION,
                "epochs": [record.to_json() for record in self.epochs],
                "test_ppl": None if self.test_ppl is None else encode_float(self.test_ppl),
                "peak_memory_bytes": self.peak_memory_bytes}

    @classmethod
    def from_json(cls, obj: dict) -> Curves:
        test = obj.get("test_ppl")
        return cls(epochs=[EpochRecord.from_json(r) for r in obj.get("epochs", [])],
                   test_ppl=None if test is None else decode_float(test),
                   peak_memory_bytes=obj.get("peak_memory_bytes"))

    def column(self, name: str) -> list[float]:
        return [getattr(record, name) for record in self.epochs]

    def last_epoch(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    def best_epoch(self) -> EpochRecord | None:
        """The epoch of lowest finite validation perplexity (ties: the earliest)."""
        finite = [r for r in self.epochs if math.isfinite(r.valid_ppl)]
        return min(finite, key=lambda r: r.valid_ppl) if finite else None


@dataclass
class RunStatus:
    state: str
    epochs_done: int
    num_epochs: int
    error: str | None = None
    updated_at: float | None = None
    slurm_job_id: str | None = None
    host: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> RunStatus:
        return cls(**{k: obj.get(k) for k in cls.__dataclass_fields__})


@dataclass
class RunRecord:
    """Everything the readers (status, tables, figures) know about one run folder."""

    folder: Path
    config: dict  # the "config" section of config.json (the RunConfig fields)
    provenance: dict  # the rest of config.json
    curves: Curves
    status: RunStatus

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def experiment(self) -> str:
        return str(self.provenance.get("experiment") or self.folder.parent.name)


def write_config(folder: Path, config: dict, provenance: dict) -> None:
    atomic_write_json(Path(folder) / CONFIG_FILE, {"config": config, **provenance})


def write_curves(folder: Path, curves: Curves) -> None:
    atomic_write_json(Path(folder) / CURVES_FILE, curves.to_json())


def write_status(folder: Path, status: RunStatus) -> None:
    atomic_write_json(Path(folder) / STATUS_FILE, status.to_json())


def read_status(folder: Path) -> RunStatus | None:
    path = Path(folder) / STATUS_FILE
    return read_parsed(path, RunStatus.from_json) if path.exists() else None


@dataclass
class Submission:
    job_id: str | None  # e.g. "1234_3" for array task 3; None for the local executor
    executor: str  # "slurm", "sbatch" or "local"
    submitted_at: float
    setting_index: int | None = None  # what was submitted into this folder (absent in older folders)
    config: dict | None = None  # the RunConfig fields
    overrides: list[str] | None = None  # the `--set KEY=VALUE` texts the setting was submitted with


def write_submission(folder: Path, submission: Submission) -> None:
    atomic_write_json(Path(folder) / SUBMISSION_FILE, asdict(submission))


def read_submission(folder: Path) -> Submission | None:
    path = Path(folder) / SUBMISSION_FILE
    return read_parsed(path, lambda obj: Submission(**obj)) if path.exists() else None


def current_state(status: RunStatus | None, submission: Submission | None) -> str:
    """A submission newer than the last status update means the task has not started yet."""
    if submission and (status is None or submission.submitted_at > (status.updated_at or 0)):
        return PENDING
    return status.state if status else PENDING


def current_job_id(status: RunStatus | None, submission: Submission | None) -> str | None:
    """The scheduler job the run last ran as, or the one it is queued as since its newer submission."""
    running_as = status.slurm_job_id if status and current_state(status, submission) != PENDING else None
    return running_as or (submission.job_id if submission else None)


def read_curves(folder: Path) -> Curves:
    path = Path(folder) / CURVES_FILE
    return read_parsed(path, Curves.from_json) if path.exists() else Curves()


def read_run(folder: Path) -> RunRecord:
    """Read one run folder; a folder without config.json is not a run (DamagedRunFile)."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        raise DamagedRunFile(f"{folder}: no {CONFIG_FILE}, not a run folder")
    raw = read_json_object(config_path)
    config = raw.pop("config", None)
    if not isinstance(config, dict):
        raise DamagedRunFile(f"{config_path}: no \"config\" object with the run's settings; not written by ptblm "
                             f"train, or damaged: delete it or rerun with --force")
    config.setdefault("corpus", DEFAULT_CORPUS)  # written before the corpus was a setting: a PTB run
    for key, choices in (("model", MODELS), ("optimizer", OPTIMIZERS)):  # what readers sort and group by
        if config.get(key) not in choices:
            raise DamagedRunFile(f"{config_path}: {key} = {config.get(key)!r} is invalid; valid: one of "
                                 f"{', '.join(choices)} (a run of another ptblm version, or an edited file)")
    status = read_status(folder) or read_parsed(config_path, lambda obj: RunStatus(
        state=PENDING, epochs_done=0, num_epochs=int(obj["config"].get("num_epochs", 0))))
    return RunRecord(folder=folder, config=config, provenance=raw,
                     curves=read_curves(folder), status=status)


def recorded_corpus(folder: Path) -> str | None:
    """The corpus fingerprint a run folder was trained on; None for none yet (or a folder older than them)."""
    path = Path(folder) / CONFIG_FILE
    return read_json_object(path).get(CORPUS_KEY) if path.exists() else None


def find_runs(results_dir: Path, experiment: str | None = None) -> list[RunRecord]:
    """All run folders under results/<exp>/<run>/, sorted by experiment then setting number.
    Hidden folders (results/.compile-cache) are not experiments, whatever files they hold."""
    names = [experiment] if experiment else layout.experiments_with_results(results_dir)
    runs = [read_run(folder) for name in names for folder in layout.run_folders(results_dir, name)
            if (folder / CONFIG_FILE).is_file()]
    return sorted(runs, key=lambda r: (r.experiment, r.provenance.get("setting_index", 0), r.name))


def clear_run_folder(folder: Path) -> None:
    """--force: remove what an earlier run wrote (only the run folder's own files and their orphans)."""
    for name in OWN_FILES:
        (Path(folder) / name).unlink(missing_ok=True)
    shutil.rmtree(Path(folder) / TB_FOLDER, ignore_errors=True)
    remove_orphans(folder, OWN_FILES)


def remove_orphans(folder: Path, names: tuple[str, ...]) -> tuple[int, int]:
    """Delete the temporary files (`.<name>.*.tmp`) that a kill during an atomic write of `names` left
    behind; returns how many and their bytes. Only the writer of those files may call it (no write of
    theirs is under way): the training run holding the lock, or --force."""
    count = size = 0
    for path in Path(folder).glob(".*.tmp"):
        if any(path.name.startswith(f".{name}.") for name in names):
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
                path.unlink()
                count += 1
    return count, size


def append_log(folder: Path, line: str) -> None:
    """The human log is append-only; a torn last line is harmless to readers."""
    with open(Path(folder) / LOG_FILE, "a") as handle:
        handle.write(line.rstrip("\n") + "\n")
