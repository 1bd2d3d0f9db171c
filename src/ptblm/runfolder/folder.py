"""RunFolder: the one owner of a run folder. It alone reads its files (tolerant per run), holds its lock, and
writes it (through the RunWriter that `hold` yields: writer.py).

Reading never raises for a damaged folder: `RunFolder.read` returns a RunRecord whose `damage` names the
file and the reason, so one damaged run never hides the others. A file is damaged when it exists but does
not hold its record (empty, truncated, not JSON, the wrong type, a newer format_version, a link, not a
regular file), or is missing where the write order guarantees it: config.json once any epoch file exists
(it is the first write), status.json once curves.json exists. A missing last.pt of a run that has not finished
is no damage to readers of results (results rsync-ed without their checkpoints are read as usual), only to
resuming it: `unresumable` says why, for the trainer and the plan.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runlock import FREE, LockBusy, LockHolder, exclusive_lock, probe, read_lock_holder
from .checkpoints import (BestWeights, ResumePoint, load_checkpoint, looks_whole, problem_with,
                          resume_problem)
from .damage import Damage, Damaged, RunFolderError
from .files import (LinkRefused, NotRegular, TooLarge, atomic_write_json, entry_problem, link_reason, parse_json,
                    read_bytes)
from .records import (BEST_CHECKPOINT, CHECKPOINTS, CONFIG_FILE, CORPUS_KEY, CURVES_FILE, JSON_FILES,
                      LAST_CHECKPOINT, LOCK_FILE, OWN_FILES, PACKAGES_FILE, STATUS_FILE, SUBMISSION_FILE, TB_FOLDER,
                      Curves, RunSettings, RunStatus, Submission)
from .states import (DAMAGED, FINISHED_STATES, PENDING, REQUEUED, RUNNING, STOPPED, WRITING_STATES,
                     current_job_id, current_state)
from .writer import RunWriter


class RunFolderBusy(RunFolderError):
    """Another process (or another run of this one) is writing the run folder."""


class NoBestWeights(RunFolderError):
    """A run without best.pt; the message says why, as its curves tell it (RunFolder.no_best_weights)."""


@dataclass
class RunRecord:
    """Everything the readers (status, plan, tables, figures, export, samples) know about one run folder."""

    folder: Path
    config: dict  # the "config" section of config.json (the RunConfig fields); {} when unknown
    provenance: dict  # the rest of config.json
    curves: Curves
    status: RunStatus  # as written, or made up from the folder when status.json is absent (`status_written`)
    submission: Submission | None = None
    damage: Damage | None = None  # the first damaged file, and why
    status_written: bool = True
    writer_gone: bool = False  # says running or requeued, outside a scheduler, and nobody held its .lock when read

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def experiment(self) -> str:
        return str(self.provenance.get("experiment") or self.folder.parent.name)

    @property
    def setting_index(self) -> int | None:
        index = self.provenance.get("setting_index")
        return index if index is not None or self.submission is None else self.submission.setting_index

    @property
    def damaged(self) -> bool:
        return self.damage is not None

    @property
    def state(self) -> str:
        """What the folder says (pending when a newer submission has not started), or `damaged`."""
        if self.damaged:
            return DAMAGED
        if not self.status_written:  # made up: running once config.json (the trainer's first write) exists
            return self.status.state
        return current_state(self.status, self.submission)

    @property
    def observed_state(self) -> str:
        """`state`, or `stopped` when its writer is gone (`writer_gone`): what every reader shows. Runs under a
        scheduler keep the folder's word here; status asks squeue about them."""
        return STOPPED if self.writer_gone else self.state

    @property
    def job_id(self) -> str | None:
        return current_job_id(self.status if self.status_written else None, self.submission)

    @property
    def under_scheduler(self) -> bool:
        """Submitted to Slurm (submitit or sbatch), or trained inside a Slurm job: squeue, not its lock, tells
        whether it still runs (the lock may live on a compute node's view of a shared file system)."""
        status = self.status if self.status_written else None
        executor = self.submission.executor if self.submission else None
        return bool(self.job_id) and (executor in ("slurm", "sbatch") or bool(status and status.slurm_job_id))


class RunFolder:
    """results/<exp>/<run>/ (or any --out): see ptblm.runfolder for its files."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def holds_run(self) -> bool:
        """Any file of a run (a lock or a log alone is none)."""
        return any(os.path.lexists(self.file(name)) for name in JSON_FILES + CHECKPOINTS)

    # --- reading -------------------------------------------------------------------------------------------

    def _json(self, name: str, parse: Callable[[Any, Path], Any]) -> Any:
        """The record of one JSON file, None when absent; Damaged when it cannot be read as that record."""
        path = self.file(name)
        try:
            data = read_bytes(path)
        except FileNotFoundError:
            return None
        except (LinkRefused, NotRegular, TooLarge) as error:
            raise Damaged(path, error.strerror) from None
        except OSError as error:
            raise Damaged(path, f"cannot be read ({error.strerror})") from None
        if not data.strip():
            raise Damaged(path, f"empty ({len(data)} bytes)")
        try:
            obj = parse_json(data)
        except ValueError as error:
            raise Damaged(path, f"not valid JSON, truncated or overwritten ({error})") from None
        return parse(obj, path)

    def read_settings(self) -> RunSettings | None:
        return self._json(CONFIG_FILE, RunSettings.from_json)

    def read_status(self) -> RunStatus | None:
        return self._json(STATUS_FILE, RunStatus.from_json)

    def read_submission(self) -> Submission | None:
        return self._json(SUBMISSION_FILE, Submission.from_json)

    def read_packages(self) -> list[str]:
        """packages.txt's lines ([] when absent), read as every run file is: Damaged when it cannot be."""
        path = self.file(PACKAGES_FILE)
        try:
            return read_bytes(path).decode().splitlines()
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise Damaged(path, "not the UTF-8 text ptblm writes there") from None
        except OSError as error:
            raise Damaged(path, error.strerror or f"cannot be read ({error})") from None

    def read_curves(self) -> Curves:
        return self._json(CURVES_FILE, Curves.from_json) or Curves()

    def read(self) -> RunRecord:
        """Every file of the folder, never raising for damage (see the module's docstring)."""
        damages: list[Damage] = []

        def attempt(read: Callable[[], Any]) -> Any:
            try:
                return read()
            except Damaged as error:
                damages.append(error.damage)
                return None

        settings, status = attempt(self.read_settings), attempt(self.read_status)
        submission, curves = attempt(self.read_submission), attempt(self.read_curves) or Curves()
        attempt(self.read_packages)
        for name in CHECKPOINTS:
            if os.path.lexists(self.file(name)):
                attempt(lambda name=name: looks_whole(self.file(name)))
        damages.extend(self.entry_damages())
        exists = {name: os.path.lexists(self.file(name)) for name in (CURVES_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT)}
        if not damages:
            if settings is None and any(exists.values()):
                damages.append(Damage(self.file(CONFIG_FILE), "missing, though the run wrote epochs (config.json "
                                                              "is its first write): the setting is unknown"))
            elif status is None and exists[CURVES_FILE]:
                damages.append(Damage(self.file(STATUS_FILE), "missing, though curves.json exists"))
            elif settings is not None and len(curves.epochs) > settings.config["num_epochs"]:
                damages.append(Damage(self.file(CURVES_FILE), f"lists {len(curves.epochs)} epochs, but config.json's "
                                                              f"num_epochs is {settings.config['num_epochs']}"))
        config = settings.config if settings else {}
        written = status is not None
        if status is None:  # a task that has not started, or a trainer killed between config.json and status.json
            num_epochs = config.get("num_epochs") or ((submission.config or {}) if submission else {}).get("num_epochs")
            status = RunStatus(RUNNING if settings else PENDING, len(curves.epochs), int(num_epochs or 0))
        record = RunRecord(self.path, config, settings.provenance if settings else {}, curves, status, submission,
                           damages[0] if damages else None, written)
        if record.state in WRITING_STATES and not record.under_scheduler:
            with contextlib.suppress(Damaged):  # a lock file that is a link: nothing can be said about its writer
                record.writer_gone = self.writer_gone(record)
        return record

    def entry_damages(self) -> list[Damage]:
        """The entries of the folder that are not what ptblm puts there (files.entry_problem): a link or a
        FIFO in place of any run file, tb/ or one of its event files; the folder itself a link."""
        if self.path.is_symlink():
            return [Damage(self.path, link_reason(self.path))]
        problems = [(self.file(name), entry_problem(self.file(name))) for name in OWN_FILES + (LOCK_FILE,)]
        board = self.file(TB_FOLDER)
        problems.append((board, entry_problem(board, folder=True)))
        if problems[-1][1] is None and board.is_dir():
            with contextlib.suppress(OSError):
                problems += [(path, entry_problem(path)) for path in sorted(board.iterdir())]
        return [Damage(path, problem) for path, problem in problems if problem]

    def unresumable(self, record: RunRecord) -> Damage | None:
        """Why a run that has not finished cannot resume: curves.json lists epochs, but last.pt (written before
        curves.json every epoch) is gone. None when it can resume, or has nothing to resume."""
        if (record.damage is None and record.curves.epochs and record.status.state not in FINISHED_STATES
                and not os.path.lexists(self.file(LAST_CHECKPOINT))):
            return Damage(self.file(LAST_CHECKPOINT), f"missing, though curves.json lists {len(record.curves.epochs)} "
                                                      f"epochs: cannot resume")
        return None

    def recorded_corpus(self) -> str | None:
        """The corpus fingerprint the run recorded; None for none yet (or a folder older than them)."""
        settings = self.read_settings()
        return settings.provenance.get(CORPUS_KEY) if settings else None

    def no_best_weights(self, curves: Curves | None = None) -> NoBestWeights | None:
        """Why the run has no best weights, None when best.pt exists: the one reason every reader of weights
        gives (evaluate, generate, samples, gradients), told by the curves (its own, or `curves` when read).
        best.pt is written at each epoch of a finite validation perplexity better than the last, so without one
        the run is still in its first epoch, or it diverged at every epoch (a rerun would diverge the same way),
        or best.pt was lost (deleted, or the results copied without their checkpoints)."""
        path = self.file(BEST_CHECKPOINT)
        if os.path.lexists(path):
            return None
        if not self.holds_run():
            return NoBestWeights(f"{self.path} holds no run (no {CONFIG_FILE}, {CURVES_FILE} nor checkpoint), so no "
                                 f"{BEST_CHECKPOINT}")
        if curves is None:
            try:
                curves = self.read_curves()
            except Damaged as error:
                return NoBestWeights(f"{self.path} has no {BEST_CHECKPOINT}, and its curves cannot tell why: "
                                     f"{error}")
        best = curves.best_epoch()
        if not curves.epochs:
            reason = ("no epoch has finished yet (it is written at the first epoch of a finite validation "
                      "perplexity)")
        elif best is None:
            reason = (f"none of its {len(curves.epochs)} epochs had a finite validation perplexity (it diverged), "
                      f"so it has no weights to use; rerunning it would diverge the same way: train the setting "
                      f"with a lower initial_lr")
        else:
            from .remedy import rerun_command

            reason = (f"epoch {best.epoch} had the best validation perplexity ({best.valid_ppl:.2f}), but its "
                      f"weights are gone (deleted, or the results copied without their checkpoints): copy "
                      f"{BEST_CHECKPOINT} back from where the run trained, or {rerun_command(self.path)} reruns "
                      f"only this run from scratch")
        return NoBestWeights(f"{self.path} has no {BEST_CHECKPOINT}: {reason}")

    def best_weights(self, device: Any = "cpu") -> BestWeights:
        """best.pt, checked against config.json (checkpoints.problem_with): Damaged naming what differs,
        NoBestWeights saying why there is none."""
        missing = self.no_best_weights()
        if missing:
            raise missing
        path = self.file(BEST_CHECKPOINT)
        best = BestWeights.from_checkpoint(load_checkpoint(path, device), path)
        self._checked(path, best.config, best.model, best.vocab_size)
        return best

    def resume_point(self, device: Any = "cpu") -> ResumePoint | None:
        """last.pt, checked against config.json, its epoch, optimizer and RNG states too: Damaged naming what
        differs (never a traceback while it is restored, nor a run marked done by an epoch it never had)."""
        path = self.file(LAST_CHECKPOINT)
        if not os.path.lexists(path):
            return None
        point = ResumePoint.from_checkpoint(load_checkpoint(path, device), path)
        problem = resume_problem(point, self._checked(path, point.config, point.model, None))
        if problem:
            raise Damaged(path, problem)
        return point

    def _checked(self, path: Path, config: dict, model: dict, vocab_size: int | None) -> Any:
        settings = self.read_settings()
        problem, expected = problem_with(path, config, model, vocab_size, settings.config if settings else None,
                                         settings.provenance.get("vocab_size") if settings else None)
        if problem:
            raise Damaged(path, problem)
        return expected

    # --- the lock ------------------------------------------------------------------------------------------

    def lock_state(self) -> str:
        """HELD, FREE or UNKNOWN, without taking the lock from anyone (ptblm.runlock.probe)."""
        path = self.file(LOCK_FILE)
        try:
            return probe(path)
        except (LinkRefused, NotRegular) as error:
            raise Damaged(path, error.strerror) from None
        except OSError as error:
            raise Damaged(path, f"cannot be opened ({error.strerror})") from None

    def writer_gone(self, record: RunRecord) -> bool:
        """The folder says a writer works in it (running, requeued), but nobody holds its lock: stopped."""
        return record.state in WRITING_STATES and self.lock_state() == FREE

    def holder(self) -> LockHolder | None:
        """Who holds (or last held) the lock."""
        return read_lock_holder(self.file(LOCK_FILE))

    def refuse_damaged(self, record: RunRecord | None = None) -> None:
        """Damaged for a damaged run (`record`, else read now), whose lock is never taken: taking it rewrites the
        lock file, and nothing of a damaged run changes. A lock of the wrong kind is left to `hold`, which names
        it as taking it does."""
        damage = (record or self.read()).damage
        if damage is not None and damage.file != self.file(LOCK_FILE):
            raise Damaged.of(damage)

    @contextlib.contextmanager
    def hold(self, slurm_job_id: str | None = None, force: bool = False) -> Iterator[RunWriter]:
        """Hold the lock (the folder must exist) and write through the RunWriter yielded; RunFolderBusy names
        the holder, Damaged a lock file that is a link. A damaged run is refused before its lock is touched
        (taking it rewrites the lock file: nothing of a damaged run changes), unless `force`: --force, which
        empties the folder, damage and all."""
        path = self.file(LOCK_FILE)
        self.refuse_link()
        if not force:
            self.refuse_damaged()
        with contextlib.ExitStack() as held:
            try:
                holder = held.enter_context(exclusive_lock(path, slurm_job_id))
            except LockBusy as busy:
                raise RunFolderBusy(f"{self.path} is being written by another ptblm run "
                                    f"({busy.holder.describe() if busy.holder else 'holder unknown'}); wait for it "
                                    f"to end or stop it") from None
            except (LinkRefused, NotRegular) as error:  # the hints name no flag: evaluate, train and submit come here
                if path.is_dir() and not path.is_symlink():
                    raise RunFolderError(f"{path} is a folder, not the lock file ptblm keeps there; remove it "
                                         f"(`rmdir {path}` when empty) and run again") from None
                raise Damaged(path, error.strerror) from None
            except OSError as error:
                raise RunFolderError(f"{path}: cannot create or lock the run folder's lock ({error.strerror}); "
                                     f"make {self.path} writable") from None
            try:
                previous = self.read_status()
            except Damaged:
                previous = None  # the caller reads the folder and decides (the trainer refuses to resume)
            yield RunWriter(self, holder, previous, slurm_job_id)

    def refuse_link(self) -> None:
        """Damaged when the run folder itself is a symbolic link: never written, cleared nor locked through it."""
        if self.path.is_symlink():
            raise Damaged(self.path, link_reason(self.path))

    # --- creating ------------------------------------------------------------------------------------------

    def is_run_folder(self) -> bool:
        """Empty, or holding what only ptblm writes: the lock, or a config.json, status.json or submitted.json
        in ptblm's shape (folders from before the lock existed have those)."""
        names = {path.name for path in self.path.iterdir()}
        if not names or LOCK_FILE in names:
            return True
        for name, key in ((CONFIG_FILE, "config"), (STATUS_FILE, "state"), (SUBMISSION_FILE, "executor")):
            if name in names:
                try:
                    obj = parse_json(read_bytes(self.file(name)))
                except (OSError, ValueError):
                    continue
                if isinstance(obj, dict) and key in obj:
                    return True
        return False

    def make(self, flag: str = "--out") -> RunFolder:
        """Create the folder for a run, or check that it is one. Refused: a file, a place that cannot be
        written, and a non-empty folder that is not a ptblm run's (never train into someone else's files,
        nor --force them away). `flag`: the option that chose the folder, named as the way to choose another."""
        self.refuse_link()
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder; choose a folder for {flag}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                raise RunFolderError(f"{blocking} is a file, not a folder, so the run folder {self.path} cannot be "
                                     f"made there; choose a folder for {flag}") from None
            raise RunFolderError(f"{self.path}: cannot create the run folder ({error.strerror}); choose a writable "
                                 f"{flag}") from None
        if not self.is_run_folder():
            names = sorted(path.name for path in self.path.iterdir())
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise RunFolderError(f"{self.path} is not empty and not a ptblm run folder (it holds {shown}); choose "
                                 f"an empty or new folder for {flag}")
        return self

    # --- transitions by a process that does not train here -------------------------------------------------

    def mark_requeued(self, num_epochs: int) -> None:
        """Slurm asked the task to requeue (USR2): said in status.json by the task's own process, whose trainer
        holds the lock and is being stopped. Finished runs stay finished; a damaged status is left alone."""
        try:
            previous = self.read_status()
        except Damaged:
            return
        if previous and previous.state in FINISHED_STATES:
            return
        atomic_write_json(self.file(STATUS_FILE), RunStatus(
            state=REQUEUED, epochs_done=previous.epochs_done if previous else 0, num_epochs=num_epochs,
            updated_at=time.time(), slurm_job_id=previous.slurm_job_id if previous else None,
            host=previous.host if previous else None).to_json())

    def mark_failed_before_start(self, num_epochs: int, error: BaseException) -> None:
        """A task that failed before its trainer wrote anything (data missing on the node, an import error)
        says so, under the lock; a folder another process holds, or that its trainer already wrote, is left."""
        with contextlib.suppress(RunFolderError), self.hold() as writer:  # a damaged run: refused before the lock
            record = self.read()
            if record.damaged or record.submission is None or record.state != PENDING:
                return
            lines = str(error).strip().splitlines()
            writer.slurm_job_id = record.submission.job_id
            writer.mark_failed(f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": "),
                               epochs_done=record.status.epochs_done if record.status_written else 0,
                               num_epochs=num_epochs)
