"""Which runs the report covers: those of the experiments named on the command line, else every run under
results/ but the runs of `ptblm train` (results/manual/: trials and --debug runs, no experiment of the study)."""
from __future__ import annotations

from .. import runfolder as rf
from ..layout import MANUAL_EXPERIMENT

LEFT_OUT_UNLESS_NAMED = (MANUAL_EXPERIMENT,)


def groups(run: rf.RunRecord) -> set[str]:
    """The names a run answers to: its experiment and the folder it lies in under results/ (a run of
    `ptblm train` records no experiment; one copied into manual/ still lies there)."""
    return {run.experiment, run.folder.parent.name}


def reported(run: rf.RunRecord, named: list[str] | None = None) -> bool:
    """Whether the report covers `run` when `named` experiments (maybe none) are asked for."""
    return bool(groups(run) & set(named)) if named else not groups(run) & set(LEFT_OUT_UNLESS_NAMED)


def left_out_note(runs: list[rf.RunRecord]) -> str:
    """'; the runs of `ptblm train` (<results>/manual/) are left out unless named, ...' when some are."""
    if all(reported(run) for run in runs):
        return ""
    names = " ".join(LEFT_OUT_UNLESS_NAMED)
    return (f"; the runs of `ptblm train` ({', '.join(f'<results>/{name}/' for name in LEFT_OUT_UNLESS_NAMED)}) "
            f"are left out unless named, e.g. `ptblm report {names}`")


def only_left_out(found: list[rf.RunRecord], results_dir) -> str:
    """The message when every run under results_dir is one the report leaves out unless named (manual/)."""
    where = sorted({str(run.folder.parent) for run in found})
    names = " ".join(sorted({run.folder.parent.name for run in found}))
    return (f"only runs of `ptblm train` under {results_dir} ({len(found)} in {', '.join(where)}), which tables, "
            f"figures and the report leave out unless named: name them, e.g. `ptblm tables {names}` (`make tables "
            f"EXPS={names}`), or submit an experiment, e.g. `make submit EXP=smoke`")
