"""The one base class of the errors a person can act on (kept free of torch, so every command may import it).

`ptblm`'s command line prints a UserError as one line and exits 1; a usage error (argparse's) exits 2; anything
else is a bug, or the machine's (CUDA out of memory), and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what a person asked for, or a state of their files they can fix: the message names the
    file or flag, the value, and what would be valid."""


class NoRunFolders(UserError, FileNotFoundError):
    """A command that reads results found no run folder where it looked; the message names the folder."""


class SettingCannotRun(UserError):
    """The setting itself cannot run (its batch cannot fill one batch of a split): rerunning it fails the same
    way, so nothing may offer a rerun as the remedy. A failed run records the error under its class's name,
    by which status tells it from a failure that a rerun gets past (status.reruns_fail_again)."""


class ToolFailed(UserError, RuntimeError):
    """An outside program the user asked for (docker, apptainer, sbatch) is missing, or refused: its own
    message, in one line, and what to do."""


class ConfigError(UserError, ValueError):
    """A setting, a jobs file or a profile that cannot be used; the message names where, the key, the value and
    what is valid."""
