"""Which experiments the report covers: those named on the command line, else every one under results/
but the runs of `ptblm train` (results/manual/: trials and --debug runs, no experiment of the study)."""
from __future__ import annotations

from ..layout import MANUAL_EXPERIMENT

LEFT_OUT_UNLESS_NAMED = (MANUAL_EXPERIMENT,)


def reported(experiment: str, named: list[str] | None = None) -> bool:
    """Whether the report covers `experiment` when `named` (maybe none) are asked for."""
    return experiment in named if named else experiment not in LEFT_OUT_UNLESS_NAMED


def left_out_note(experiments: set[str]) -> str:
    """' (results/manual/ is left out unless named: `ptblm report manual`)' when such an experiment exists."""
    names = sorted(name for name in experiments if name in LEFT_OUT_UNLESS_NAMED)
    if not names:
        return ""
    return (f"; the runs of `ptblm train` ({', '.join(f'<results>/{name}/' for name in names)}) are left out "
            f"unless named, e.g. `ptblm report {' '.join(names)}`")
