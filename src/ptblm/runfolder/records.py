"""The run folder's files and their schema: one typed record per JSON file, read from any version ptblm wrote.

Every JSON file and checkpoint carries `format_version`. A file of a newer version is damage named with
both versions (this ptblm would drop what it does not know when it wrote the file back); an older one is
migrated on reading (`migrated`) and written in the current version by the next write. Version 1 is the
format before issue 20: only curves.json said so; config.json, status.json, submitted.json and the
checkpoints carried no version (absent means 1). Version 3 added fields a reader of version 2 would drop when
it wrote the file back: status.json's `progress` (where a running epoch is) and submitted.json's `job_name` and
`profile`; a file of version 2 reads as before, without them.

A file that does not hold its record's shape raises Damaged naming the file, the field and what it holds:
the reader (folder.py) turns that into a damaged run, never into an exception that hides the other runs.
JSON stays standard: a non-finite float is written as "inf", "-inf" or "nan" and read back as a float.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .states import STORED_STATES

if TYPE_CHECKING:
    from ..invocation import Locations

CONFIG_FILE = "config.json"
CURVES_FILE = "curves.json"
STATUS_FILE = "status.json"
LOG_FILE = "log.txt"
BEST_CHECKPOINT = "best.pt"
BEST_PARAMS = "best_params.pt"  # run_exp.py's name; a raw state_dict
LAST_CHECKPOINT = "last.pt"
SUBMISSION_FILE = "submitted.json"
PACKAGES_FILE = "packages.txt"  # the installed packages of the latest attempt (ptblm.provenance.record_attempt)
TB_FOLDER = "tb"  # TensorBoard event files (ptblm.tensorboard_events); --force empties it with the rest
LOCK_FILE = ".lock"  # held by the one process writing the folder (see RunFolder.hold)
OWN_FILES = (CONFIG_FILE, CURVES_FILE, STATUS_FILE, LOG_FILE, BEST_CHECKPOINT, BEST_PARAMS, LAST_CHECKPOINT,
             SUBMISSION_FILE, PACKAGES_FILE)
TRAINER_FILES = tuple(name for name in OWN_FILES if name != SUBMISSION_FILE)  # submitted.json: `ptblm submit`'s
JSON_FILES = (CONFIG_FILE, CURVES_FILE, STATUS_FILE, SUBMISSION_FILE)
CHECKPOINTS = (BEST_CHECKPOINT, BEST_PARAMS, LAST_CHECKPOINT)
CORPUS_KEY = "corpus_fingerprint"  # in config.json, beside data_dir: see ptblm.data.corpus_fingerprint
VERSION_KEY = "format_version"
FORMAT_VERSION = 2
LOCK_REMEDY = "delete it: the next run makes the lock anew (--force needs the lock too)"


class RunFolderError(UserError, RuntimeError):
    """A path that cannot hold a run, or a run folder file that cannot be read; the message names the file."""


UPDATE_REMEDY = "--force would delete what this ptblm cannot read: update ptblm instead"


@dataclass(frozen=True)
class Damage:
    """Why one file of a run folder cannot be read; `remedy` when starting over is not what to do (a newer
    format_version: update ptblm), else `hint` names the command that reruns this one run from scratch."""

    file: Path
    reason: str
    remedy: str | None = None

    def describe(self) -> str:
        return f"{self.file}: {self.reason}"

    def hint(self, where: Locations | None = None) -> str:
        """What to do, for every reader: the one place that decides the remedy (remedy.rerun_command's).
        `where`: how ptblm is run and the folders named (see invocation.Locations)."""
        if self.remedy:
            return self.remedy
        if self.file.name == LOCK_FILE:
            return LOCK_REMEDY
        from .remedy import rerun_command, run_folder_of

        return (f"{rerun_command(run_folder_of(self.file), where)} reruns only this run from scratch "
                f"(or move the folder away)")


class Damaged(RunFolderError):
    """A run folder file that does not hold what ptblm writes there; `damage` names the file and why. The
    message, with the remedy, is made when it is shown (the remedy reads the folder's other files)."""

    def __init__(self, file: Path, reason: str, remedy: str | None = None):
        self.damage = Damage(Path(file), reason, remedy)
        super().__init__(self.damage.describe())

    def __str__(self) -> str:
        return f"{self.damage.describe()}; {self.damage.hint()}"

    @classmethod
    def of(cls, damage: Damage) -> Damaged:
        return cls(damage.file, damage.reason, damage.remedy)


def encode_float(value: float) -> float | str:
    """JSON-safe float: finite values as numbers, others as 'inf', '-inf' or 'nan'."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def decode_float(value: float | str | None) -> float:
    return float("nan") if value is None else float(value)


# --- checking a parsed JSON value ---------------------------------------------------------------------

def json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("inf", "-inf", "nan")


KINDS = {"an integer": _is_int, "a number": _is_number, "a string": lambda v: isinstance(v, str),
         "an object": lambda v: isinstance(v, dict), "a list": lambda v: isinstance(v, list),
         "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}


def field_of(obj: dict, key: str, kind: str, path: Path, where: str = "", required: bool = False) -> Any:
    """obj[key] when it is of `kind` (None when absent or null, unless required): else Damaged naming it."""
    value = obj.get(key)
    if value is None:
        if required:
            raise Damaged(path, f"no {where}{key!r} (ptblm writes {kind} there)")
        return None
    if not KINDS[kind](value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise Damaged(path, f"{where}{key!r} is {json_type(value)} ({shown}), expected {kind}")
    return value


def json_object(obj: Any, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise Damaged(path, f"expected a JSON object (ptblm's {Path(path).name}), got {json_type(obj)}")
    return obj


def migrated(obj: dict, path: Path) -> dict:
    """The object in the current format (a copy without the version key), or Damaged for a newer version."""
    version = obj.get(VERSION_KEY, 1)
    if not _is_int(version) or version < 1:
        raise Damaged(path, f"format_version {version!r} is not a version ptblm writes (an integer >= 1)")
    if version > FORMAT_VERSION:
        raise Damaged(path, f"format_version {version} is newer than this ptblm's ({FORMAT_VERSION}): update "
                            f"ptblm (git pull, make setup) to read it", UPDATE_REMEDY)
    current = {key: value for key, value in obj.items() if key != VERSION_KEY}
    # 1 -> 2: every file says its version; no field changed. Optional fields added since read as None where
    # absent: last.pt's grad_scaler (fp16's loss scale), status.json's `progress`, submitted.json's `job_name`
    # and `profile`.
    # Later migrations go here, oldest first.
    return current


def perplexity(value: float, path: Path, where: str) -> float:
    """A perplexity is above 0 (at least 1, exp of a mean loss; inf or nan once diverged): else Damaged."""
    if value <= 0 or value == -math.inf:
        raise Damaged(path, f"{where!r} is {value!r}: a perplexity is above 0 (inf or nan for a diverged run)")
    return value


# --- the records ---------------------------------------------------------------------------------------

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
    def from_json(cls, record: dict, path: Path = Path(CURVES_FILE), index: int = 0) -> EpochRecord:
        where = f"epochs[{index}]."
        if not isinstance(record, dict):
            raise Damaged(path, f"epochs[{index}] is {json_type(record)}, expected an object")
        values = {"epoch": field_of(record, "epoch", "an integer", path, where, required=True)}
        for name in ("train_ppl", "valid_ppl", "epoch_seconds", "wall_clock_seconds", "lr"):
            values[name] = decode_float(field_of(record, name, "a number", path, where))
        for name in ("train_ppl", "valid_ppl"):
            perplexity(values[name], path, f"{where}{name}")
        return cls(**values)


@dataclass
class Curves:
    epochs: list[EpochRecord] = field(default_factory=list)
    test_ppl: float | None = None  # with --evaluate: test perplexity of the best weights
    peak_memory_bytes: int | None = None  # peak accelerator memory (CUDA only)

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION,
                "epochs": [record.to_json() for record in self.epochs],
                "test_ppl": None if self.test_ppl is None else encode_float(self.test_ppl),
                "peak_memory_bytes": self.peak_memory_bytes}

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(CURVES_FILE)) -> Curves:
        obj = migrated(json_object(obj, path), path)
        epochs = field_of(obj, "epochs", "a list", path) or []
        test = field_of(obj, "test_ppl", "a number", path)
        return cls(epochs=[EpochRecord.from_json(r, path, i) for i, r in enumerate(epochs)],
                   test_ppl=None if test is None else perplexity(decode_float(test), path, "test_ppl"),
                   peak_memory_bytes=field_of(obj, "peak_memory_bytes", "an integer", path))

    def column(self, name: str) -> list[float]:
        return [getattr(record, name) for record in self.epochs]

    def last_epoch(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    def best_epoch(self) -> EpochRecord | None:
        """The epoch of lowest finite validation perplexity (ties: the earliest)."""
        finite = [r for r in self.epochs if math.isfinite(r.valid_ppl)]
        return min(finite, key=lambda r: r.valid_ppl) if finite else None


@dataclass
class EpochProgress:
    """Where the training pass of a running epoch is, as the trainer last recorded it (about every 10%)."""

    epoch: int  # 1-based: the epoch in progress
    step: int  # batches of its training pass done
    steps: int  # batches in that pass
    seconds: float  # since the epoch began, when recorded (at RunStatus.updated_at)

    @property
    def fraction(self) -> float:
        return self.step / self.steps if self.steps else 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(STATUS_FILE)) -> EpochProgress:
        if not isinstance(obj, dict):
            raise Damaged(path, f"'progress' is {json_type(obj)}, expected an object")
        where = "progress."
        ints = {name: field_of(obj, name, "an integer", path, where, required=True)
                for name in ("epoch", "step", "steps")}
        return cls(**ints, seconds=decode_float(field_of(obj, "seconds", "a number", path, where, required=True)))


@dataclass
class RunStatus:
    state: str
    epochs_done: int
    num_epochs: int
    error: str | None = None
    updated_at: float | None = None
    slurm_job_id: str | None = None
    host: str | None = None
    progress: EpochProgress | None = None  # while running: the epoch in progress (absent before format 3)

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(STATUS_FILE)) -> RunStatus:
        obj = migrated(json_object(obj, path), path)
        state = field_of(obj, "state", "a string", path, required=True)
        if state not in STORED_STATES:
            raise Damaged(path, f"state {state!r} is not one of {', '.join(STORED_STATES)}")
        updated = field_of(obj, "updated_at", "a number", path)
        progress = obj.get("progress")
        return cls(state=state, epochs_done=field_of(obj, "epochs_done", "an integer", path, required=True),
                   num_epochs=field_of(obj, "num_epochs", "an integer", path, required=True),
                   error=field_of(obj, "error", "a string", path),
                   updated_at=None if updated is None else decode_float(updated),
                   slurm_job_id=field_of(obj, "slurm_job_id", "a string", path),
                   host=field_of(obj, "host", "a string", path),
                   progress=None if progress is None else EpochProgress.from_json(progress, path))


@dataclass
class Submission:
    job_id: str | None  # e.g. "1234_3" for array task 3; None for the local executor
    executor: str  # "slurm", "sbatch" or "local"
    submitted_at: float
    setting_index: int | None = None  # what was submitted into this folder (absent in older folders)
    config: dict | None = None  # the RunConfig fields
    overrides: list[str] | None = None  # the `--set KEY=VALUE` texts the setting was submitted with
    job_name: str | None = None  # the Slurm job name (ptblm-<exp>): a reused job id under another name is not this
    profile: str | None = None  # the cluster profile the submission named (--cluster); None: the default, unnamed
    jobs_dir: str | None = None  # the jobs folder it was submitted from (absolute), when not the default jobs/

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(SUBMISSION_FILE)) -> Submission:
        obj = migrated(json_object(obj, path), path)
        return cls(job_id=field_of(obj, "job_id", "a string", path),
                   executor=field_of(obj, "executor", "a string", path, required=True),
                   submitted_at=decode_float(field_of(obj, "submitted_at", "a number", path, required=True)),
                   setting_index=field_of(obj, "setting_index", "an integer", path),
                   config=field_of(obj, "config", "an object", path),
                   overrides=field_of(obj, "overrides", "a list of strings", path),
                   job_name=field_of(obj, "job_name", "a string", path),
                   profile=field_of(obj, "profile", "a string", path),
                   jobs_dir=field_of(obj, "jobs_dir", "a string", path))


def _setting_defaults() -> dict:
    from dataclasses import MISSING, fields

    from ..config import RunConfig

    return {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}


PROVENANCE_KINDS = {"experiment": "a string", "setting_index": "an integer", "description": "a string",
                    "run_name": "a string", "data_dir": "a string", CORPUS_KEY: "a string",
                    "vocab_size": "an integer", "parameters": "an integer"}  # the keys readers use


@dataclass
class RunSettings:
    """config.json: the setting (RunConfig's fields, checked as RunConfig.from_dict checks them) and the
    provenance beside it (experiment, setting number, data, corpus fingerprint, code and machine)."""

    config: dict
    provenance: dict

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION, "config": self.config, **self.provenance}

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(CONFIG_FILE)) -> RunSettings:
        from ..config import ConfigError, RunConfig

        provenance = migrated(json_object(obj, path), path)
        config = provenance.pop("config", None)
        if not isinstance(config, dict):
            raise Damaged(path, f"no \"config\" object with the run's settings ({json_type(config)} there)")
        config = {**_setting_defaults(), **config}  # keys added since (corpus: PTB, deterministic: off) migrate
        try:
            RunConfig.from_dict(config, where="config")
        except ConfigError as error:
            raise Damaged(path, str(error)) from None
        for key, kind in PROVENANCE_KINDS.items():
            field_of(provenance, key, kind, path)
        return cls(config, provenance)
