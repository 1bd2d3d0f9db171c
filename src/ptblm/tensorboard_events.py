"""TensorBoard event files of a run folder, `<run>/tb/`: written as the run trains, read by `ptblm tensorboard`.

    per epoch (step = the 1-based epoch)    train/ppl valid/ppl train/loss valid/loss lr epoch_seconds
                                            wall_clock_seconds, the values of curves.json (loss = ln ppl)
    per training batch, with log_steps      train/step_loss at step = batches trained since the run began
    once per attempt                        the setting (config.json's "config") as hparams

A resumed run continues its curves without duplicate or stale points. TensorBoard reads every event file of
a folder in name order, and two files holding the same step are shown differently by its two loaders: the
fast one (Rust, the default) drops the earlier points from that step on, the legacy Python one
(--load_fast=false) shows both. So each attempt starts one new file holding the history up to the resumed
epoch (epoch scalars from curves.json, the source of truth; step losses up to that epoch's last batch, read
from the earlier files), then deletes the earlier files: whichever loader reads the folder sees each step
once. The trainer calls `RunBoard.open` at run start, `epoch` at each epoch's end and `step` per batch.

Writing events never makes a run fail: the first error is one warning in the run's log, and the board
writes nothing more in that attempt. Runs made before event files existed get theirs from curves.json
(`write_from_curves`, called by `ptblm tensorboard`, see ptblm.tensorboard_server).
"""
from __future__ import annotations

import contextlib
import math
import stat
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from . import runfolder as rf

TB_FOLDER = rf.TB_FOLDER
EVENT_FILE_GLOB = "events.out.tfevents.*"
CONVERTED_SUFFIX = ".from-curves"  # the files write_from_curves writes; a trainer's have none
EPOCH_TAGS = ("train/ppl", "valid/ppl", "train/loss", "valid/loss", "lr", "epoch_seconds", "wall_clock_seconds")
STEP_TAG = "train/step_loss"
METRIC_TAGS = ("valid/ppl", "train/ppl")  # what the HParams dashboard shows beside each setting
FLUSH_SECONDS = 10  # step losses reach the file at least this often; epoch scalars are flushed at once


def board_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TB_FOLDER


def event_files(folder: Path) -> list[Path]:
    """The event files of a folder in the order TensorBoard reads them (by name): regular files only, in a
    folder that is no link (a link or a FIFO is the run folder's damage, never followed nor read)."""
    if Path(folder).is_symlink() or not Path(folder).is_dir():
        return []
    return sorted(path for path in Path(folder).glob(EVENT_FILE_GLOB) if stat.S_ISREG(path.lstat().st_mode))


def log_of(value: float) -> float:
    """ln ppl, the epoch's mean loss; inf for an infinite or non-positive ppl, nan stays nan."""
    if math.isnan(value):
        return value
    return math.log(value) if 0 < value < math.inf else math.inf


def epoch_scalars(record: rf.EpochRecord) -> dict[str, float]:
    """The per-epoch scalars of one curves.json record, by tag."""
    return {"train/ppl": record.train_ppl, "valid/ppl": record.valid_ppl, "train/loss": log_of(record.train_ppl),
            "valid/loss": log_of(record.valid_ppl), "lr": record.lr, "epoch_seconds": record.epoch_seconds,
            "wall_clock_seconds": record.wall_clock_seconds}


def estimated_wall_times(curves: rf.Curves, last_epoch_ended: float) -> dict[int, float]:
    """When each epoch ended, for epochs no event file dates: the last at `last_epoch_ended`, the others
    earlier by the training time in between (breaks between attempts are not known)."""
    last = curves.last_epoch()
    return {record.epoch: last_epoch_ended - (last.wall_clock_seconds - record.wall_clock_seconds)
            for record in curves.epochs} if last else {}


def hparam_values(config: dict) -> dict[str, float | str]:
    """config.json's settings as the HParams plugin takes them (a bool as 'true'/'false', not 1/0)."""
    return {key: (str(value).lower() if isinstance(value, bool) else value) for key, value in config.items()
            if isinstance(value, (bool, int, float, str))}


def recorded_points(files: list[Path], epochs_done: int, steps_per_epoch: int) -> dict[tuple[str, int], tuple]:
    """(tag, step) -> (wall_time, value) of the scalars in `files` that the resumed run keeps: epoch tags up
    to `epochs_done`, step losses up to that epoch's last batch; a later file wins."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    limits = {**{tag: epochs_done for tag in EPOCH_TAGS}, STEP_TAG: epochs_done * steps_per_epoch}
    points: dict[tuple[str, int], tuple] = {}
    for path in files:
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value if event.HasField("summary") else ():
                if value.tag in limits and event.step <= limits[value.tag] and value.HasField("simple_value"):
                    points[(value.tag, event.step)] = (event.wall_time, value.simple_value)
    return points


def write_history(writer, config: dict, curves: rf.Curves, points: dict[tuple[str, int], tuple],
                  last_epoch_ended: float) -> None:
    """The hparams, then every epoch of `curves` (at the wall time an earlier file gave it, else an
    estimate), then the step losses kept in `points`."""
    from torch.utils.tensorboard.summary import hparams

    for summary in hparams(hparam_values(config), {tag: math.nan for tag in METRIC_TAGS}):
        writer.file_writer.add_summary(summary)
    estimates = estimated_wall_times(curves, last_epoch_ended)
    for record in curves.epochs:
        for tag, value in epoch_scalars(record).items():
            walltime = points.get((tag, record.epoch), (estimates[record.epoch],))[0]
            writer.add_scalar(tag, value, record.epoch, walltime=walltime)
    for (tag, step), (walltime, value) in sorted(points.items(), key=lambda item: item[0][1]):
        if tag == STEP_TAG:
            writer.add_scalar(tag, value, step, walltime=walltime)
    writer.flush()


def summary_writer(folder: Path, **options):
    """torch's SummaryWriter on `folder`, the one way this module opens one. Its writer thread raises a failed
    write (a read-only folder, a full disk) twice: in the thread, where Python prints a traceback, and to the
    writer's next call, which the callers here turn into one line; the thread's copy is not printed."""
    from torch.utils.tensorboard import SummaryWriter

    quiet_writer_threads()
    return SummaryWriter(str(folder), **options)


def quiet_writer_threads() -> None:
    """threading.excepthook, once: an exception TensorBoard's writer thread kept for its writer is not printed;
    any other thread's goes to the hook that was there before."""
    previous = threading.excepthook
    if getattr(previous, "quiet_writer_threads", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        kept = getattr(args.thread, "exception", None) is args.exc_value  # _AsyncWriterThread keeps it
        if not (kept and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    hook.quiet_writer_threads = True
    threading.excepthook = hook


class RunBoard:
    """The event file of one attempt of a run; every method is safe to call after a failure (it does nothing)."""

    def __init__(self, writer, epochs_done: int, warn: Callable[[str], None]):
        self._writer, self._epochs_done, self._warn = writer, epochs_done, warn
        self._closer = weakref.finalize(self, writer.close) if writer is not None else None

    @classmethod
    def open(cls, run_dir: Path, config: dict, curves: rf.Curves, steps_per_epoch: int,
             warn: Callable[[str], None]) -> RunBoard:
        """At run start, after a resume has read its curves: a new event file with the history up to the
        resumed epoch, the earlier files deleted. `steps_per_epoch`: training batches per epoch, which
        number the step losses."""
        folder, writer = board_dir(run_dir), None
        try:
            if folder.is_symlink():  # RunFolder.read names it; never written through
                raise rf.Damaged(folder, rf.files.link_reason(folder))
            earlier = event_files(folder)
            epochs_done = len(curves.epochs)
            points = recorded_points(earlier, epochs_done, steps_per_epoch) if earlier else {}
            writer = summary_writer(folder, flush_secs=FLUSH_SECONDS)
            write_history(writer, config, curves, points, time.time())
            for path in earlier:  # only once the history is on disk: a kill before leaves both, never neither
                path.unlink(missing_ok=True)
        except Exception as error:  # events are a view of the run, never a reason to stop it
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            warn(f"warning: TensorBoard events are not written in this attempt ({describe(error)}); "
                 f"curves.json and log.txt are unaffected")
            return cls(None, 0, warn)
        return cls(writer, epochs_done, warn)

    def epoch(self, record: rf.EpochRecord) -> None:
        """At an epoch's end, once curves.json has it."""
        self._epochs_done = record.epoch

        def write(writer) -> None:
            for tag, value in epoch_scalars(record).items():
                writer.add_scalar(tag, value, record.epoch)
            writer.flush()  # a person watching sees the epoch now, not in FLUSH_SECONDS

        self._write(write)

    def step(self, done: int, steps: int, loss) -> None:
        """After training batch `done` of `steps` in the current epoch; `loss` that batch's (a tensor)."""
        global_step = self._epochs_done * steps + done
        self._write(lambda writer: writer.add_scalar(STEP_TAG, float(loss), global_step))

    def close(self) -> None:
        if self._closer is not None:
            self._write(lambda writer: self._closer())
            self._writer = None

    def _write(self, action: Callable) -> None:
        if self._writer is None:
            return
        try:
            action(self._writer)
        except Exception as error:  # see the module docstring: never a reason to stop the run
            self._warn(f"warning: TensorBoard events stop here for this attempt ({describe(error)}); "
                       f"curves.json and log.txt are unaffected")
            with contextlib.suppress(Exception):
                self._closer()
            self._writer = None


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


def needs_conversion(run_dir: Path) -> bool:
    """A run with curves and no event file of a trainer, whose converted file (if any) is older than its
    curves.json: its events are (re)written from curves.json."""
    curves_path = Path(run_dir) / rf.CURVES_FILE
    files = event_files(board_dir(run_dir))
    if not curves_path.is_file() or any(not path.name.endswith(CONVERTED_SUFFIX) for path in files):
        return False
    return not files or max(path.stat().st_mtime for path in files) < curves_path.stat().st_mtime


def write_from_curves(run_dir: Path) -> Path:
    """Event files for a run made before they existed (or by a trainer of that time still running): one file
    from config.json and curves.json, replacing an earlier converted one. A trainer's own files are never
    touched; a trainer resuming later takes this history over as it does its own."""
    run = rf.read_run(run_dir)
    folder = board_dir(run_dir)
    earlier = event_files(folder)
    with contextlib.closing(summary_writer(folder, filename_suffix=CONVERTED_SUFFIX)) as writer:
        write_history(writer, run.config, run.curves, {}, (Path(run_dir) / rf.CURVES_FILE).stat().st_mtime)
    for path in earlier:
        path.unlink(missing_ok=True)
    return next(path for path in reversed(event_files(folder)) if path not in earlier)
