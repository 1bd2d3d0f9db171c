"""What is wrong with a run folder's file: Damage (the file and the reason) and Damaged, the error that carries it.

Every reader of a run file raises Damaged for a file that does not hold what ptblm writes there; the reader of a
whole folder (folder.py) turns it into a damaged run, never into an exception that hides the other runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..invocation import Locations

LOCK_REMEDY = "delete it: the next run makes the lock anew (--force needs the lock too)"
UPDATE_REMEDY = "--force would delete what this ptblm cannot read: update ptblm instead"


class RunFolderError(UserError, RuntimeError):
    """A path that cannot hold a run, or a run folder file that cannot be read; the message names the file."""


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
        from .records import LOCK_FILE
        from .remedy import rerun_command, run_folder_of

        if self.remedy:
            return self.remedy
        if self.file.name == LOCK_FILE:
            return LOCK_REMEDY
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
