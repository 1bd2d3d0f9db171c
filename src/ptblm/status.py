"""`ptblm status EXP`: one table per experiment, built from the run folders alone.

squeue, when present, only adds the scheduler's view of queued and running jobs; the table never
depends on it (it works on a laptop after rsync-ing results back).
"""
from __future__ import annotations

import getpass
import math
import shutil
import subprocess
from pathlib import Path

from tabulate import tabulate

from . import runfolder as rf
from .jobs import Experiment


def squeue_states(runner=subprocess.run) -> dict[str, str] | None:
    """Job id ("123", "123_4") -> Slurm state ("PENDING", "RUNNING", ...) of this user's jobs;
    None when squeue is missing or does not answer (then nobody knows what still runs)."""
    if shutil.which("squeue") is None:
        return None
    command = ["squeue", "-u", getpass.getuser(), "-h", "-r", "-o", "%i %T"]
    try:
        result = runner(command, capture_output=True, text=True, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if result.returncode != 0:
        return None
    return dict(line.split(maxsplit=1) for line in result.stdout.splitlines() if " " in line)


def format_ppl(value: float | None) -> str:
    """Readable perplexities, diverged ones included (1e8, inf, nan)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "diverged" if math.isnan(value) else "inf"
    return f"{value:.3g}" if value >= 1e5 else f"{value:.2f}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def status_rows(experiment: Experiment, results_dir: Path, scheduler: dict[str, str] | None = None) -> list[dict]:
    scheduler = scheduler or {}
    rows = []
    for setting in experiment.settings:
        folder = setting.run_dir(results_dir)
        status, submission = rf.read_status(folder), rf.read_submission(folder)
        curves = rf.read_curves(folder)
        state = rf.current_state(status, submission) if (status or submission) else "not submitted"
        job_id = rf.current_job_id(status, submission)
        queued_as = scheduler.get(job_id, "").lower()
        if queued_as and queued_as != state and state in (rf.PENDING, rf.RUNNING, rf.REQUEUED):
            state = f"{state} ({queued_as})"  # e.g. "requeued (pending)"
        last, best = curves.last_epoch(), curves.best_epoch()
        rows.append({"#": setting.index, "run": setting.run_name, "state": state,
                     "epoch": f"{len(curves.epochs)}/{setting.config.num_epochs}",
                     "last valid ppl": format_ppl(last.valid_ppl if last else None),
                     "best valid ppl": format_ppl(best.valid_ppl if best else None),
                     "elapsed": format_seconds(last.wall_clock_seconds if last else None),
                     "slurm job": job_id or "-"})
    return rows


def status_table(experiment: Experiment, results_dir: Path, scheduler: dict[str, str] | None = None) -> str:
    rows = status_rows(experiment, results_dir, scheduler)
    return f"{experiment.name}: {experiment.description}\n" + tabulate(rows, headers="keys")
