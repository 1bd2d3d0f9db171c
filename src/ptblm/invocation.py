"""How the person at the keyboard runs ptblm, for the commands ptblm suggests (`make setup` puts it in
.venv/bin, which is seldom on PATH), and the command that submits a setting again."""
from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Locations:
    """How the person runs ptblm and the folders they named, for the commands ptblm suggests."""

    ptblm: str = "ptblm"
    results_dir: Path | None = None  # None: the default folder (the command needs no --results)
    jobs_dir: Path | None = None


def ptblm_command(argv0: str, environ: Mapping[str, str], cwd: Path, python: str = sys.executable) -> str:
    """`ptblm` when PATH finds this very program, else its path as typed from `cwd` (`.venv/bin/ptblm`), or
    `python -m ptblm.cli` when it was started that way."""
    program = Path(argv0)
    if program.name != "ptblm":  # python -m ptblm.cli: argv[0] is the module's file
        return f"{python} -m ptblm.cli"
    found = shutil.which("ptblm", path=environ.get("PATH", ""))
    if found and Path(found).resolve() == program.resolve():
        return "ptblm"
    try:
        return str(program.resolve().relative_to(Path(cwd).resolve()))
    except ValueError:
        return str(program.resolve())


def status_command(experiment: str, where: Locations, overrides: Sequence[str] = ()) -> str:
    """`make status EXP=...` (or `ptblm status ...`), with the --set texts of the submission (status numbers and
    finds the settings as the overrides make them) and the folders named that are not the default."""
    flags = [*(f"--set {shlex.quote(text)}" for text in overrides),
             *([f"--results {shlex.quote(str(where.results_dir))}"] if where.results_dir is not None else []),
             *([f"--jobs {shlex.quote(str(where.jobs_dir))}"] if where.jobs_dir is not None else [])]
    direct = " ".join([where.ptblm, "status", shlex.quote(experiment), *flags])
    if where.jobs_dir is not None:  # make has no variable for another jobs folder
        return f"`{direct}`"
    variables = [f"EXP={shlex.quote(experiment)}",
                 *([f"SET={shlex.quote(' '.join(overrides))}"] if overrides else []),
                 *([f"RESULTS={shlex.quote(str(where.results_dir))}"] if where.results_dir is not None else [])]
    return f"`make status {' '.join(variables)}` (or `{direct}`)"


def resubmit_command(experiment: str, *, executor: str | None = None, overrides: Sequence[str] = (),
                     setting: int | None = None, profile: str | None = None, results_dir: Path | None = None,
                     jobs_dir: Path | None = None, ptblm: str = "ptblm", force: bool = False) -> str:
    """The command that submits one setting again as it was submitted (resuming it from its last.pt; with
    `force`, from scratch: --force reruns only the settings --only picks): make's spelling, then ptblm's.
    `executor`: the one its submission recorded (submitted.json): `sbatch` is `ptblm sbatch`, `local` names
    --executor local (else a Slurm cluster that answers would get it); `overrides`, `profile`: the --set texts and
    the --cluster its submission named; `results_dir`, `jobs_dir`: None where the default (make has no variable
    for another jobs folder)."""
    command = "sbatch" if executor == "sbatch" else "submit"
    local = executor == "local"
    flags = [*(["--executor local"] if local else []),
             *(f"--set {shlex.quote(text)}" for text in overrides),
             *([f"--only {setting}"] if setting is not None else []),
             *(["--force"] if force else []),
             *([f"--cluster {shlex.quote(profile)}"] if profile else []),
             *([f"--results {shlex.quote(str(results_dir))}"] if results_dir is not None else []),
             *([f"--jobs {shlex.quote(str(jobs_dir))}"] if jobs_dir is not None else [])]
    direct = " ".join([ptblm, command, shlex.quote(experiment), *flags])
    if jobs_dir is not None:
        return f"`{direct}`"
    variables = [f"EXP={shlex.quote(experiment)}", *(["EXECUTOR=local"] if local else []),
                 *([f"SET={shlex.quote(' '.join(overrides))}"] if overrides else []),
                 *([f"ONLY={setting}"] if setting is not None else []),
                 *(["FORCE=1"] if force else []),
                 *([f"CLUSTER={shlex.quote(profile)}"] if profile else []),
                 *([f"RESULTS={shlex.quote(str(results_dir))}"] if results_dir is not None else [])]
    return f"`make {command} {' '.join(variables)}` (or `{direct}`)"
