"""Where one training run reads its data and keeps its caches, chosen in one place for `ptblm train` and for
every scheduled task (launch/tasks.py): the data folder (--data, $PTB_DIR, data/ptb, run_exp.py's
`--data SLURM_TMPDIR`, or a synthetic corpus for a dry run without PTB), the node-local scratch folder the
data is staged to ($SLURM_TMPDIR), the corpus-fingerprint and compile caches under the results folder, and
the Slurm task the run is part of. Torch-free: the command line imports it for its defaults.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from . import layout

DEFAULT_DATA_DIR = Path("data/ptb")  # where `ptblm data` puts PTB
SLURM_TMPDIR = "SLURM_TMPDIR"  # run_exp.py's --data value: the copy already in $SLURM_TMPDIR


def configured_data_dir(environ: Mapping[str, str]) -> Path | None:
    """$PTB_DIR when the user set it; None lets a command choose its own fallback."""
    return Path(environ["PTB_DIR"]) if environ.get("PTB_DIR") else None


def default_data_dir(environ: Mapping[str, str]) -> Path:
    return configured_data_dir(environ) or DEFAULT_DATA_DIR


@dataclass(frozen=True)
class RunInputs:
    """What train_run needs besides the setting and the run folder (its keyword arguments of the same names)."""

    data_dir: Path
    scratch_dir: str | None  # where the corpus is staged first ($SLURM_TMPDIR); None reads it in place
    compile_cache: Path
    fingerprint_cache: Path
    slurm_job_id: str | None  # "123_4" inside an array task

    def train_kwargs(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "data_dir"}


def run_inputs(data: str | Path | None, results_dir: Path, environ: Mapping[str, str],
               synthetic_dir: Path | None = None) -> RunInputs:
    """`data` as given (None: $PTB_DIR, else data/ptb; SLURM_TMPDIR: the copy on the node, read in place).
    With `synthetic_dir` (a dry run), a missing default data folder becomes a synthetic corpus written there."""
    from .compiling import compile_cache_dir
    from .provenance import slurm_task_id

    scratch_dir = environ.get("SLURM_TMPDIR")
    if str(data) == SLURM_TMPDIR:
        from .data import slurm_tmpdir_data

        data_dir, scratch_dir = slurm_tmpdir_data(scratch_dir), None
    else:
        data_dir = Path(data) if data is not None else default_data_dir(environ)
        if synthetic_dir is not None and data is None and configured_data_dir(environ) is None \
                and not data_dir.exists():
            from .data import write_synthetic_corpus

            data_dir = write_synthetic_corpus(synthetic_dir)
    return RunInputs(data_dir, scratch_dir, compile_cache_dir(results_dir, dict(environ)),
                     layout.fingerprint_cache_file(results_dir), slurm_task_id(environ))
