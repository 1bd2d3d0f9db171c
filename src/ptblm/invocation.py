"""How the person at the keyboard runs ptblm, for the commands ptblm suggests (`make setup` puts it in
.venv/bin, which is seldom on PATH)."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


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
