"""How far a run is and how long it has left, from its run folder alone (curves.json and status.json's progress).

    elapsed  training seconds so far: the finished epochs' wall clock (resumed attempts included), plus, while
             it runs, the epoch in progress (its progress record, and the time since that record was written)
    left     the rest of the epoch in progress, then the mean epoch seconds of curves.json times the epochs after
             it. The rest of the epoch in progress is the larger of its training pass's own pace (seconds per step
             so far times the steps left) and the mean epoch minus the time spent in it (the mean includes the
             validation pass); before any epoch finished, the epoch in progress at its pace is the mean.

The trainer records its progress about every 10% of an epoch (RunWriter.record_progress); `now` is passed in.
The records checked every number they hold (seconds finite and >= 0, a step within its epoch's steps), but
their sums and products may still exceed what a float or a calendar holds (a century-long epoch times a million
epochs): such an estimate is None, and a clock time past the calendar's end is None, never an exception.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from . import runfolder as rf


@dataclass(frozen=True)
class RunTiming:
    elapsed: float | None  # training seconds so far; None before any
    left: float | None  # estimated training seconds to the end; None when unknown (or not running)
    progress: rf.EpochProgress | None  # the epoch in progress, as last recorded (running runs only)


def run_timing(record: rf.RunRecord, running: bool, now: float) -> RunTiming:
    """`running`: a live writer trains it now (squeue or its lock says so); only then is the epoch in progress
    counted and a time left given."""
    epochs = record.curves.epochs
    finished = epochs[-1].wall_clock_seconds if epochs else None
    status = record.status if record.status_written else None
    if not running or status is None:
        return RunTiming(_duration(finished), None, None)
    progress = status.progress if status.progress and status.progress.epoch == len(epochs) + 1 else None
    try:
        mean_epoch = sum(r.epoch_seconds for r in epochs) / len(epochs) if epochs else None
        epochs_left = max(status.num_epochs - len(epochs), 0)
        if progress is None or not progress.step:  # between two epochs, or a folder from before progress records
            return RunTiming(_duration(finished), None if mean_epoch is None else _duration(epochs_left * mean_epoch),
                             progress)
        since = max(now - (status.updated_at or now), 0.0)
        in_epoch = progress.seconds + since
        pace_epoch = progress.seconds / progress.step * progress.steps  # the training pass, at its pace
        rest = max(pace_epoch - in_epoch, (mean_epoch or 0.0) - in_epoch, 0.0)
        after = (epochs_left - 1) * (mean_epoch if mean_epoch is not None else pace_epoch)
        return RunTiming(_duration((finished or 0.0) + in_epoch), _duration(rest + max(after, 0.0)), progress)
    except OverflowError:  # a count no float holds: no estimate
        return RunTiming(_duration(finished), None, progress)


def _duration(seconds: float | None) -> float | None:
    """A duration to show: None unless finite and >= 0."""
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def clock(at: float, now: float) -> str | None:
    """"14:32" today, "Tue 14:32" another day (local time); None for a time no calendar shows (not finite, or
    past the year the C library can count to)."""
    try:
        when = time.localtime(at)
        return time.strftime("%H:%M" if time.localtime(now)[:3] == when[:3] else "%a %H:%M", when)
    except (OverflowError, ValueError, OSError):
        return None
