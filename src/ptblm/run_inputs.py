"""Where one training run reads its data and keeps its caches, chosen in one place for `ptblm train` and for
every scheduled task (launch/tasks.py): the data folder (--data, the corpus's variable such as $PTB_DIR,
data/<corpus>, run_exp.py's `--data SLURM_TMPDIR`, or a synthetic corpus for a dry run without data), the
node-local scratch folder the data is staged to ($SLURM_TMPDIR), the corpus-fingerprint and compile caches under
the results folder, and the Slurm task the run is part of. Torch-free: the command line imports it for its defaults.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from . import corpora, layout

SLURM_TMPDIR = "SLURM_TMPDIR"  # run_exp.py's --data value: the copy already in $SLURM_TMPDIR


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


def run_inputs(corpus: corpora.CorpusEntry, data: str | Path | None, results_dir: Path, environ: Mapping[str, str],
               synthetic_dir: Path | None = None) -> RunInputs:
    """`data` as given (None: the corpus's variable, else data/<corpus>; SLURM_TMPDIR: the copy on the node, read
    in place). With `synthetic_dir` (a dry run), a missing default data folder becomes a synthetic corpus there."""
    from .compiling import compile_cache_dir
    from .provenance import slurm_task_id

    scratch_dir = environ.get("SLURM_TMPDIR")
    if str(data) == SLURM_TMPDIR:
        from .data import slurm_tmpdir_data

        data_dir, scratch_dir = slurm_tmpdir_data(scratch_dir, corpus), None
    else:
        data_dir = corpora.resolve_data_dir(corpus, Path(data) if data is not None else None, environ)
        if synthetic_dir is not None and data is None and corpora.configured_data_dir(corpus, environ) is None \
                and not data_dir.exists():
            from .data import write_synthetic_corpus

            data_dir = write_synthetic_corpus(synthetic_dir, corpus=corpus)
    return RunInputs(data_dir, scratch_dir, compile_cache_dir(results_dir, environ),
                     layout.fingerprint_cache_file(results_dir), slurm_task_id(environ))
