"""After training: the test perplexity of a finished run's best weights, into its curves.json.

`ptblm evaluate RUN|EXP...` (evaluate_targets) and `ptblm train --evaluate` on a finished run without one
(the trainer calls measure_test_ppl with the writer of the lock it holds) both come here. The weights are best.pt's,
loaded as the reports load them (ptblm.report.trained), the pass is the trainer's own (ptblm.epochs), over the
test split of the corpus the run was trained on: a data folder whose fingerprint differs from the one in
config.json is refused, since its test split would give another number under the same name.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import layout
from . import runfolder as rf
from .errors import UserError
from .naming import each_once


class UnusableRun(UserError, RuntimeError):
    """A run named on the command line that the command cannot use (yet); the message says why and what would do."""


@dataclass(frozen=True)
class Evaluated:
    folder: Path
    test_ppl: float
    epoch: int  # of the best weights


def needs_test_pass(folder: Path) -> bool:
    """A finished run with best weights and no test perplexity yet."""
    status = rf.read_status(folder)
    return (status is not None and status.state in rf.FINISHED_STATES and (folder / rf.BEST_CHECKPOINT).is_file()
            and rf.read_curves(folder).test_ppl is None)


def measure_test_ppl(writer: rf.RunWriter, data_dir: Path | None, device_name: str, log: Callable[[str], None],
                      fingerprint_cache: Path | None = None, environ: Mapping[str, str] | None = None) -> Evaluated:
    """Test pass of best.pt; test_ppl written into curves.json through `writer`, the holder of the run's lock.
    `data_dir` None: the folder of the run's corpus's variable in `environ`, else the one config.json recorded."""
    from .config import RunConfig
    from .epochs import EpochRunner, RunLog, perplexity
    from .report.trained import load_trained
    from .step import use_matmul_precision
    from .devices import pick_device

    folder = writer.path
    trained = load_trained(folder, None, data_dir, environ=environ, fingerprint_cache=fingerprint_cache)
    # uncompiled: one pass over the test split does not repay a compile; the device is this machine's
    config: RunConfig = trained.config.replace(device=device_name, compile="off")
    device = pick_device(config.device)
    use_matmul_precision(config.precision)
    runner = EpochRunner(trained.model.to(device), config, device, RunLog(writer, echo=False), interactive=False)
    test_ppl = perplexity(runner.run(trained.corpus.test, label="test"))
    curves = writer.folder.read_curves()
    curves.test_ppl = test_ppl
    writer.write_curves(curves)
    log(f"test ppl {test_ppl:.2f} with the weights of epoch {trained.epoch} (best.pt), on {device}")
    return Evaluated(folder, test_ppl, trained.epoch)


def evaluate_run(folder: Path, data_dir: Path | None = None, device_name: str = "auto",
                 fingerprint_cache: Path | None = None, echo: bool = False,
                 environ: Mapping[str, str] | None = None) -> Evaluated:
    """measure_test_ppl of a finished run, holding its lock (a run being trained is refused, by name). A damaged
    run, an unfinished one and one without best weights are refused before the lock is taken: nothing of them
    changes."""
    from .epochs import RunLog

    run = rf.RunFolder(folder)
    record = run.read()
    run.refuse_damaged(record)
    status = record.status if record.status_written else None
    if status is None or status.state not in rf.FINISHED_STATES:
        state = status.state if status else "not started"
        raise UnusableRun(f"{folder} is {state}, not finished: its best weights may still change; evaluate it "
                           f"once it is done (or train it with --evaluate)")
    missing = run.no_best_weights(record.curves)
    if missing:
        raise missing
    with run.hold() as writer:
        return measure_test_ppl(writer, data_dir, device_name, RunLog(writer, echo=echo), fingerprint_cache,
                                 environ)


def run_folders_named(targets: Sequence[str], results_dir: Path) -> list[Path]:
    """Each target is a run folder (a path, or <exp>/<run> under results) or an experiment (all its runs); a
    folder named twice (`smoke smoke/<run>`) is in the list once."""
    folders: list[Path] = []
    for target in targets:
        for candidate in (Path(target), Path(results_dir) / target):
            if (candidate / rf.CONFIG_FILE).is_file():
                folders.append(candidate)
                break
            runs = [run for run in rf.experiment_runs(candidate.parent, candidate.name)
                    if (run / rf.CONFIG_FILE).is_file()]
            if runs:
                folders += runs
                break
        else:
            raise UnusableRun(f"{target}: neither a run folder (one with {rf.CONFIG_FILE}) nor an experiment with "
                               f"runs under {results_dir}; valid: a run folder's path, EXP/RUN or EXP, e.g. 3.1")
    return each_once(folders, key=lambda folder: folder.resolve())


def run_folder_named(target: str, results_dir: Path) -> Path:
    """The one run folder `target` names (see run_folders_named)."""
    folders = run_folders_named([target], results_dir)
    if len(folders) != 1:
        raise UnusableRun(f"{target} names {len(folders)} runs (an experiment); valid: one run folder, a path "
                           f"or EXP/RUN, e.g. {folders[0].parent.name}/{folders[0].name}")
    return folders[0]


@dataclass(frozen=True)
class Evaluation:
    """What `ptblm evaluate` did: the runs evaluated, and one line per run asked for that could not be."""

    evaluated: list[Evaluated]
    failed: list[str]


def evaluate_targets(targets: Sequence[str], results_dir: Path, data_dir: Path | None, device_name: str,
                     again: bool = False, notify: Callable[[str], None] = print,
                     environ: Mapping[str, str] | None = None) -> Evaluation:
    """`ptblm evaluate`: every finished run named without a test perplexity (all finished ones with `again`);
    a run that cannot be evaluated (damaged, busy, not finished, no best weights, its data refused) is one line
    naming it, and the others are evaluated. Runs evaluated before (without `again`) are not failures."""
    done, failed = [], []
    for folder in run_folders_named(targets, results_dir):
        try:
            test_ppl = rf.RunFolder(folder).read_curves().test_ppl
            if test_ppl is not None and not again:
                notify(f"{folder}: test ppl {test_ppl:.2f} already (--again evaluates it anew)")
                continue
            done.append(evaluated := evaluate_run(folder, data_dir, device_name,
                                                  layout.fingerprint_cache_file(results_dir), environ=environ))
            notify(f"{folder}: test ppl {evaluated.test_ppl:.2f} (weights of epoch {evaluated.epoch})")
        except UserError as reason:  # Damaged, RunFolderBusy, UnusableRun, a refused data folder
            failed.append(line := f"skip: {reason}")
            notify(line)
    return Evaluation(done, failed)
