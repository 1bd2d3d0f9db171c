"""The run folder's files and their schema: one typed record per JSON file, read from any version ptblm wrote.

Every JSON file and checkpoint carries `format_version`. A file of a newer version is damage named with
both versions (this ptblm would drop what it does not know when it wrote the file back); an older one is
migrated on reading (`migrated`) and written in the current version by the next write. Version 1 is the
format before issue 20: only curves.json said so; config.json, status.json, submitted.json and the
checkpoints carried no version (absent means 1). Fields added within version 2 are optional, None where absent:
status.json's `progress` (where a running epoch is), submitted.json's `job_name`, `profile` and `jobs_dir`,
last.pt's `grad_scaler`, config.json's `attempts`.

A file that does not hold its record's shape raises Damaged naming the file, the field and what it holds:
the reader (folder.py) turns that into a damaged run, never into an exception that hides the other runs.
Every number is checked against its range where it is read (fields.py): seconds and times finite and >= 0,
counts within their bounds, a step within its epoch's steps, epochs listed in order and within the run's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..determinism import CUBLAS_VARIABLE
from .damage import LOCK_REMEDY, UPDATE_REMEDY, Damage, Damaged, RunFolderError  # noqa: F401 (their old home)
from .fields import (_is_int, decode_float, encode_float, field_of, integer_in, json_object,  # noqa: F401
                     json_type, number_in, perplexity, perplexity_of, seconds_of, shown, timestamp_of)
from .states import STORED_STATES

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
    # absent: last.pt's grad_scaler (fp16's loss scale), status.json's `progress`, submitted.json's `job_name`,
    # `profile` and `jobs_dir`, config.json's `attempts` (and an attempt's determinism: RunSettings.attempts).
    # Later migrations go here, oldest first.
    return current


# --- the records ---------------------------------------------------------------------------------------

@dataclass
class EpochRecord:
    """One finished epoch. Perplexities may be inf/nan for a diverged run; every other number is finite."""

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
        """The record of epoch `index` + 1 (curves.json lists them in order from 1)."""
        where = f"epochs[{index}]."
        if not isinstance(record, dict):
            raise Damaged(path, f"epochs[{index}] is {json_type(record)}, expected an object")
        return cls(epoch=integer_in(record, "epoch", path, where, index + 1, index + 1,
                                    why="curves.json lists epochs 1, 2, 3, ... in order"),
                   train_ppl=perplexity_of(record, "train_ppl", path, where),
                   valid_ppl=perplexity_of(record, "valid_ppl", path, where),
                   epoch_seconds=seconds_of(record, "epoch_seconds", path, where),
                   wall_clock_seconds=seconds_of(record, "wall_clock_seconds", path, where),
                   lr=number_in(record, "lr", path, where))


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
        listed = field_of(obj, "epochs", "a list", path) or []
        epochs = [EpochRecord.from_json(record, path, index) for index, record in enumerate(listed)]
        for earlier, later in zip(epochs, epochs[1:]):
            if later.wall_clock_seconds < earlier.wall_clock_seconds:
                raise Damaged(path, f"'epochs[{later.epoch - 1}].wall_clock_seconds' is {later.wall_clock_seconds!r}, "
                                    f"less than epoch {earlier.epoch}'s {earlier.wall_clock_seconds!r}: the run's "
                                    f"seconds so far never decrease")
        return cls(epochs=epochs, test_ppl=perplexity_of(obj, "test_ppl", path, required=False),
                   peak_memory_bytes=integer_in(obj, "peak_memory_bytes", path, required=False))

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
    def from_json(cls, obj: Any, path: Path = Path(STATUS_FILE), epochs_done: int = 0,
                  num_epochs: int | None = None) -> EpochProgress:
        """The progress of a run that finished `epochs_done` of `num_epochs` epochs: the epoch after those."""
        if not isinstance(obj, dict):
            raise Damaged(path, f"'progress' is {json_type(obj)}, expected an object")
        where = "progress."
        if num_epochs is not None and epochs_done >= num_epochs:
            raise Damaged(path, f"'progress' of an epoch, though {epochs_done} of {num_epochs} epochs are done")
        steps = integer_in(obj, "steps", path, where, 1)
        return cls(epoch=integer_in(obj, "epoch", path, where, epochs_done + 1, epochs_done + 1,
                                    why=f"the epoch after the {epochs_done} done"),
                   step=integer_in(obj, "step", path, where, 0, steps, why=f"of its {steps} steps"),
                   steps=steps, seconds=seconds_of(obj, "seconds", path, where))


@dataclass
class RunStatus:
    state: str
    epochs_done: int
    num_epochs: int
    error: str | None = None
    updated_at: float | None = None
    slurm_job_id: str | None = None
    host: str | None = None
    progress: EpochProgress | None = None  # while running: the epoch in progress (absent in older files)

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, obj: Any, path: Path = Path(STATUS_FILE)) -> RunStatus:
        obj = migrated(json_object(obj, path), path)
        state = field_of(obj, "state", "a string", path, required=True)
        if state not in STORED_STATES:
            raise Damaged(path, f"state {state!r} is not one of {', '.join(STORED_STATES)}")
        num_epochs = integer_in(obj, "num_epochs", path)
        epochs_done = integer_in(obj, "epochs_done", path, high=num_epochs, why=f"the run has {num_epochs} epochs")
        progress = obj.get("progress")
        return cls(state=state, epochs_done=epochs_done, num_epochs=num_epochs,
                   error=field_of(obj, "error", "a string", path),
                   updated_at=timestamp_of(obj, "updated_at", path, required=False),
                   slurm_job_id=field_of(obj, "slurm_job_id", "a string", path),
                   host=field_of(obj, "host", "a string", path),
                   progress=None if progress is None else EpochProgress.from_json(progress, path, epochs_done,
                                                                                  num_epochs))


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
                   submitted_at=timestamp_of(obj, "submitted_at", path),
                   setting_index=integer_in(obj, "setting_index", path, required=False),
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
PROVENANCE_COUNTS = {"setting_index": 0, "vocab_size": 1, "parameters": 1}  # the counts, and their least value
# What each attempt of a run records (ptblm.provenance.record_attempt), and config.json's top level repeats for
# the latest: where it ran and how. An attempt lacks the keys recorded only since it was made.
ATTEMPT_KINDS = {"started_at": "a string", "host": "a string", "slurm": "an object", "device": "a string",
                 "code_version": "a string", "python_version": "a string", "torch_version": "a string",
                 "cuda_version": "a string", "cudnn_version": "an integer", "driver_version": "a string",
                 "gpu": "an object", "cpu": "a string", "image": "an object", "packages_sha256": "a string",
                 "node_list": "a string", "deterministic_algorithms": "a boolean", CUBLAS_VARIABLE: "a string"}
ATTEMPTS_KEY = "attempts"


def check_attempt(attempt: dict, path: Path, where: str) -> None:
    """The keys of one attempt's record (or the top level's copy of the latest) hold what ptblm records."""
    for key, kind in ATTEMPT_KINDS.items():
        field_of(attempt, key, kind, path, where)
    gpu, image = attempt.get("gpu"), attempt.get("image")
    if gpu is not None:
        field_of(gpu, "name", "a string", path, f"{where}gpu.", required=True)
        integer_in(gpu, "memory_bytes", path, f"{where}gpu.")
    if image is not None:
        field_of(image, "path", "a string", path, f"{where}image.", required=True)
        field_of(image, "digest", "a string", path, f"{where}image.")


@dataclass
class RunSettings:
    """config.json: the setting (RunConfig's fields, checked as RunConfig.from_dict checks them) and the
    provenance beside it (experiment, setting number, data, corpus fingerprint, code and machine, and each
    attempt's record: `attempts`)."""

    config: dict
    provenance: dict

    def to_json(self) -> dict:
        return {VERSION_KEY: FORMAT_VERSION, "config": self.config, **self.provenance}

    @property
    def attempts(self) -> list[dict]:
        """Every attempt's record, oldest first. config.json's top level repeats the latest attempt's, so the
        keys the latest lacks (recorded only since it was made) are taken from there; a folder from before
        `attempts` has its top level as its one attempt."""
        latest = {key: self.provenance[key] for key in ATTEMPT_KINDS if key in self.provenance}
        recorded = self.provenance.get(ATTEMPTS_KEY)
        return [*recorded[:-1], {**latest, **recorded[-1]}] if recorded else [latest]

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
        for key, least in PROVENANCE_COUNTS.items():
            integer_in(provenance, key, path, low=least, required=False)
        check_attempt(provenance, path, "")
        attempts = field_of(provenance, ATTEMPTS_KEY, "a list", path)
        if attempts == []:
            raise Damaged(path, "'attempts' is an empty list: ptblm records one object per attempt of the run")
        for index, attempt in enumerate(attempts or []):
            if not isinstance(attempt, dict):
                raise Damaged(path, f"'attempts[{index}]' is {json_type(attempt)} ({shown(attempt)}), expected an "
                                    f"object (one attempt's record)")
            check_attempt(attempt, path, f"attempts[{index}].")
        return cls(config, provenance)
