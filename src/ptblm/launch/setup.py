"""The profile's `setup` lines in a job, for both submit paths: a failing command stops the task before training,
and its run folder records `failed` with the command and what it printed.

The lines run in the job's own shell (a `module load` must change the environment that starts ptblm), as one
block, so that a line may open an `if` another closes. An ERR trap remembers the first command that fails, and
the block's output goes to the job's log; the job exports that failure as SETUP_VARIABLES. The task reads them
before anything else (check_setup, from TrainTask.run) and raises SetupFailed, which its run folder records as
any failure before training. A task that runs inside a container starts on the host's Python instead when setup
failed (the failed line may be the one that loads the container runtime), so that the failure is recorded.
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from ..errors import UserError

SETUP_FAILED = "PTBLM_SETUP_FAILED"  # the first command that failed, as the profile wrote it
SETUP_STATUS = "PTBLM_SETUP_STATUS"  # its exit status
SETUP_OUTPUT = "PTBLM_SETUP_OUTPUT"  # the last lines the setup block printed
SETUP_PROFILE = "PTBLM_SETUP_PROFILE"  # the profile's name, for the message
OUTPUT_LINES = 5


class SetupFailed(UserError):
    """A line of the cluster profile's `setup` failed in the job: the task stops before training."""


def setup_script(lines: Sequence[str], profile: str) -> list[str]:
    """Shell lines for a job script: the profile's setup `lines` in this shell, their output in the job's log,
    and the first command that fails exported as SETUP_FAILED, SETUP_STATUS and SETUP_OUTPUT. [] without lines."""
    if not lines:
        return []
    record = (f'ptblm_status=$?; [ -n "${{{SETUP_FAILED}+set}}" ] || export {SETUP_FAILED}="$BASH_COMMAND" '
              f'{SETUP_STATUS}="$ptblm_status" {SETUP_PROFILE}={shlex.quote(profile)}')
    return ["# the cluster profile's setup lines (ptblm.launch.setup): the first command that fails is recorded, "
            "and the task stops before training",
            "set -o pipefail",
            f"unset {SETUP_FAILED} {SETUP_STATUS} {SETUP_OUTPUT} {SETUP_PROFILE}",
            'ptblm_setup_log=$(mktemp "${TMPDIR:-/tmp}/ptblm-setup.XXXXXX")',
            f"trap {shlex.quote(record)} ERR",
            "{",
            *lines,
            '} > "$ptblm_setup_log" 2>&1',
            "trap - ERR",
            'cat "$ptblm_setup_log"',
            f'[ -z "${{{SETUP_FAILED}+set}}" ] || export {SETUP_OUTPUT}="$(tail -n {OUTPUT_LINES} "$ptblm_setup_log")"',
            'rm -f "$ptblm_setup_log"']


def unless_setup_failed(variable: str, command: str, host_command: str) -> str:
    """A shell line that sets the array `variable` to the words of `command` (a container's), or of
    `host_command` when setup failed: the host's Python records the failure, whatever the container needs."""
    return (f'if [ -n "${{{SETUP_FAILED}+set}}" ]; then {variable}=({host_command}); '
            f'else {variable}=({command}); fi')


def check_setup(environ: Mapping[str, str]) -> None:
    """SetupFailed when the job's setup block exported a failure (setup_script); the message is one line: the
    run folder records it, and `ptblm status` shows it."""
    command = environ.get(SETUP_FAILED)
    if command is None:
        return
    output = "; ".join(line.strip() for line in environ.get(SETUP_OUTPUT, "").splitlines() if line.strip())
    profile = environ.get(SETUP_PROFILE, "")
    raise SetupFailed(f"the setup line `{command}` of cluster profile {profile or '(unnamed)'} failed (exit "
                      f"{environ.get(SETUP_STATUS, '?')})" + (f": {output}" if output else "")
                      + "; the task stopped before training: fix or remove the line (slurm/clusters/"
                      f"{profile or '<profile>'}.yaml, setup:) and submit again")
