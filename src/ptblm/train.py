"""One training run: a RunConfig in, a run folder out, resumable at every epoch boundary.

Semantics follow the course scaffold's run_exp.py: mean cross-entropy per token, perplexity =
exp(mean loss over the epoch), the hidden state carried (detached) across consecutive batches and
reset each epoch (validation too), gradient-norm clip 0.25, SGD p <- p - lr*g, SGD_LR_SCHEDULE
lr <- lr * (1/1.15)^max(e - 14, 0) at the start of 0-based epoch e (it compounds), seed 1111.

Divergence policy: perplexities that are large but finite (SGD lr 10 reaches 1e8) are recorded and
training goes on, as in the reference results. When an epoch's mean train or validation loss is
not finite (inf/NaN: the weights are poisoned), that epoch is recorded as such and the run ends
`diverged`; best.pt keeps the best finite epoch.

The trainer knows nothing about Slurm: preemption is handled by the caller (ptblm.launch.tasks)
rerunning `train_run`, which resumes from last.pt.
"""
from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
import traceback
from collections.abc import Callable, MutableMapping
from pathlib import Path

import torch

from . import corpora
from . import runfolder as rf
from .compiling import use_compile_cache
from .config import RunConfig
from .data import (Corpus, check_batches_fit, check_data_dir, corpus_fingerprint, count_tokens, is_synthetic,
                   load_corpus, split_path, stage_data)
from .determinism import naming_nondeterministic_operations, use_deterministic
from .devices import check_cuda_graph, pick_device
from .errors import UserError
from .epochs import EpochRunner, RunLog, StopRequested, perplexity
from .evaluation import measure_test_ppl, needs_test_pass
from .loss_scaling import loss_scaling_for
from .models import build_model
from .optimizers import make_optimizer, scheduled_lr
from .provenance import cpu_fallback_note, installed_packages, provenance, record_attempt
from .resuming import RunFolderMismatch, check_resumable, check_same_setting
from .step import graphs_on, rng_state, set_rng_state, use_matmul_precision
from .stopping import sigint_ignored
from .tensorboard_events import RunBoard


def train_run(config: RunConfig, data_dir: Path, out_dir: Path, *, force: bool = False,
              experiment: str | None = None, setting_index: int | None = None, description: str | None = None,
              command_line: list[str] | None = None, interactive: bool | None = None,
              echo: bool = True, scratch_dir: Path | None = None,
              compile_cache: Path | None = None, slurm_job_id: str | None = None,
              fingerprint_cache: Path | None = None, should_stop: Callable[[], bool] | None = None,
              environ: MutableMapping[str, str], out_flag: str = "--out") -> rf.RunStatus:
    """Train one setting into `out_dir`, resuming from last.pt; a finished run is returned as is.

    The run holds the folder's lock (RunFolder.hold) for its whole life: a second writer is refused. A damaged
    folder, or one of another setting or corpus, is refused before anything in it is touched (--force empties
    it, holding the lock). `should_stop` is asked between batches: once it says yes, the epoch is abandoned
    and the run ends `cancelled`, resumable from its last.pt (the caller decides why: a signal, a parent gone).
    With `scratch_dir` (the node-local $SLURM_TMPDIR on a cluster) the data is read from a copy there.
    With `compile_cache` a compiling run (compile model or cell) keeps its artefacts there (see ptblm.compiling).
    `slurm_job_id` ("123_4") is recorded in status.json and in the lock, to name this run to others.
    `environ` is the environment the run records (Slurm ids, the image) and sets torch's variables in
    (TORCHINDUCTOR_CACHE_DIR, CUBLAS_WORKSPACE_CONFIG): the entry point passes os.environ, a test a dict.
    The corpus's fingerprint (ptblm.data.corpus_fingerprint, cached in `fingerprint_cache`) is recorded in
    config.json: a run folder resumes only on the corpus it was trained on. `experiment`, `setting_index` and
    the experiment's `description` go into config.json too, so that status and reports read the run folder alone.
    `out_flag` is the option that chose `out_dir` (--out, --save_dir, --results), named where another is needed.
    The run is `done` (or `diverged`) only once everything it promised is written, the --evaluate test pass
    included: a run stopped during the test pass finishes it when rerun.
    """
    out_dir = Path(out_dir)
    entry = corpora.get(config.corpus)
    check_data_dir(data_dir, entry)  # before anything is written: a typo in --data leaves no run folder behind
    check_batches_fit(count_tokens(data_dir, entry), split_paths(data_dir, entry), config.batch_size, config.seq_len,
                      config.evaluate)  # nor does a batch larger than a split (as submit checks on the login node)
    check_cuda_graph(config)
    corpus = corpus_fingerprint(data_dir, fingerprint_cache, entry)
    folder = rf.RunFolder(out_dir).make(out_flag)  # a file, an unwritable place, someone else's folder: refused
    if not force:  # refused before the lock file is touched
        check_resumable(folder.read(), config, corpus, Path(data_dir), out_flag)
    with folder.hold(slurm_job_id, force=force) as writer:
        if not writer.holder.enforced:
            RunLog(writer, echo=echo)(f"warning: the file system of {out_dir} does not support flock: a second "
                                       f"writer into this folder would not be refused")
        origin = {"experiment": experiment, "setting_index": setting_index, "description": description}
        return _train_holding_lock(config, Path(data_dir), corpus, writer, force, origin, command_line,
                                   interactive, echo, scratch_dir, compile_cache, should_stop, environ, out_flag)


def split_paths(data_dir: Path, entry: corpora.CorpusEntry) -> dict[str, Path]:
    return {split: split_path(data_dir, split, entry) for split in corpora.SPLITS}


def _best_effort(write: Callable[..., object], *args) -> None:
    """A write on the way out of a failed run: a full disk may refuse it too. Then status.json still says
    running, and readers see the run stopped by its free lock (RunFolder.writer_gone)."""
    with contextlib.suppress(OSError, rf.RunFolderError):
        write(*args)



def _train_holding_lock(config: RunConfig, data_dir: Path, corpus: str, writer: rf.RunWriter, force: bool,
                        origin: dict, command_line, interactive, echo: bool, scratch_dir, compile_cache,
                        should_stop, environ: MutableMapping[str, str], out_flag: str) -> rf.RunStatus:
    out_dir = writer.path
    record = writer.folder.read()
    recorded_corpus = None if force else check_resumable(record, config, corpus, data_dir, out_flag)
    status = record.status if record.status_written else None
    if status and status.state in rf.FINISHED_STATES and not force:
        if config.evaluate and needs_test_pass(out_dir):  # finished before --evaluate was asked for
            measure_test_ppl(writer, data_dir, config.device, RunLog(writer, echo=echo))
            # said again, now: a submission of this test pass is older than the status, so no longer pending
            return _mark_ended(writer, status.state, status.epochs_done)
        if echo:
            print(f"{out_dir}: already {status.state} ({status.epochs_done}/{status.num_epochs} epochs); "
                  f"use --force to rerun", flush=True)
        return status
    resume = None if force else writer.folder.resume_point()  # read before any write: a foreign one is refused
    if resume is not None:
        check_same_setting(resume.config, config, out_dir, out_flag)
    if force:
        writer.clear()
    orphans, orphan_bytes = writer.remove_orphans()  # a kill during a write left them
    log = RunLog(writer, echo=echo)
    if orphans:
        log(f"removed {orphans} temporary files ({orphan_bytes / 1e6:.1f} MB) left by a run killed during a write")
    try:
        data_dir = stage_data(data_dir, scratch_dir, corpora.get(config.corpus)) if scratch_dir else data_dir
        if config.compile != "off" and compile_cache is not None:
            use_compile_cache(compile_cache, environ)
        if record.config and recorded_corpus is None and not force:
            log(f"this run folder predates corpus fingerprints: recording {corpus} ({data_dir}) as its corpus")
        with naming_nondeterministic_operations():  # --deterministic: torch's error as one line
            return _train(config, data_dir, corpus, writer, resume, log, origin, command_line,
                          sys.stderr.isatty() if interactive is None else interactive, should_stop or (lambda: False),
                          environ)
    except (StopRequested, KeyboardInterrupt) as stop:
        with sigint_ignored():  # a second Ctrl-C waits until the stopped run's state is written
            _best_effort(writer.mark_cancelled, config.num_epochs)
            epochs = writer.status.epochs_done if writer.status else 0
            resumes = ("rerunning resumes from last.pt" if writer.folder.file(rf.LAST_CHECKPOINT).is_file()
                       else "rerunning starts it over (no last.pt yet)")
            _best_effort(log, f"stopped on request: cancelled after {epochs}/{config.num_epochs} epochs; {resumes}")
        if isinstance(stop, KeyboardInterrupt):
            raise
        return writer.status
    except (RunFolderMismatch, rf.Damaged):
        raise  # the folder belongs to another setting, or cannot be read: leave its status alone
    except Exception as error:  # record why, for status tables, then let the caller see it
        # (a SystemExit is the caller's own decision to leave, e.g. a requeue: its state is the caller's to write)
        _best_effort(writer.mark_failed, f"{type(error).__name__}: {error}", None, config.num_epochs)
        _best_effort(log, f"failed: {error}" if isinstance(error, UserError)  # one line for what a person can fix
                     else "".join(traceback.format_exception(error)).rstrip())
        raise


def _train(config: RunConfig, data_dir: Path, corpus_id: str, writer: rf.RunWriter, resume: rf.ResumePoint | None,
           log: RunLog, origin: dict, command_line, interactive: bool, should_stop: Callable[[], bool],
           environ: MutableMapping[str, str]) -> rf.RunStatus:
    entry = corpora.get(config.corpus)
    corpus: Corpus = load_corpus(data_dir, entry)
    # again on the ids: without <unk> in its vocabulary a corpus drops the words it does not know
    check_batches_fit({"train": len(corpus.train), "valid": len(corpus.valid), "test": len(corpus.test)},
                      split_paths(data_dir, entry), config.batch_size, config.seq_len, config.evaluate)
    device = pick_device(config.device)
    fallback_note = cpu_fallback_note(device, environ)
    if fallback_note:
        log(fallback_note)
    torch.manual_seed(config.seed)  # before the model: initial weights follow the seed, as in the scaffold
    use_matmul_precision(config.precision)  # explicit, and in config.json: fp32 is strict, TF32 only when asked
    determinism, determinism_note = use_deterministic(config.deterministic, environ)  # before CUDA's first matmul
    if determinism_note:
        log(determinism_note)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(config.seed)
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(config, corpus.vocab_size).to(device)
    optimizer = make_optimizer(model, config)
    scaling = loss_scaling_for(config.precision, device)  # fp16's loss scale, or None
    curves, lr, start_epoch, elapsed, ended = rf.Curves(), config.initial_lr, 0, 0.0, None

    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        if scaling is not None and resume.grad_scaler is not None:
            scaling.load_state_dict(resume.grad_scaler)
        set_rng_state(resume.rng, device)
        curves, lr, start_epoch, elapsed, ended = (resume.curves, resume.lr, resume.epoch, resume.wall_clock_seconds,
                                                   resume.ended)
        writer.write_curves(curves)  # a kill between last.pt and curves.json left curves one epoch behind
        log(f"resuming from {writer.folder.file(rf.LAST_CHECKPOINT)} after epoch {start_epoch}/{config.num_epochs}")

    packages = installed_packages()
    where = provenance(device, command_line, environ, packages)
    attempts, environment_change = record_attempt(writer.path, {**where, **determinism},  # each attempt's record
                                                  packages)  # and packages.txt
    writer.write_settings(config.to_dict(), {
        **origin, "run_name": config.run_name(),
        "data_dir": str(data_dir), rf.CORPUS_KEY: corpus_id, "vocab_size": corpus.vocab_size,
        "unknown_words": corpus.unknown_counts, "parameters": sum(p.numel() for p in model.parameters()),
        **where, **determinism, "attempts": attempts})
    if environment_change:
        log(environment_change)
    published = "the published files" if entry.is_published(corpus_id) else f"not the published files ({corpus_id})"
    if is_synthetic(corpus.id_to_word):
        published = f"synthetic text in its files' names (ptblm synthetic), {published}"
    log(f"{config.model} {config.run_name()} on {device}, precision {config.precision}: {entry.title}, {published}; "
        f"{corpus.describe()}")
    runner = EpochRunner(model, config, device, log, interactive,
                         cuda_graph={"auto": None, "on": True, "off": False}[config.cuda_graph],
                         should_stop=should_stop, loss_scaling=scaling)
    if scaling is not None:
        log(scaling.describe(device, graphs_on(device, runner.cuda_graph), optimizer))
    board = RunBoard.open(writer.path, config.to_dict(), curves, runner.batches(corpus.train), log)  # <run>/tb/
    runner.on_step = board.step if config.log_steps else None
    best = curves.best_epoch()
    writer.start(config.num_epochs, start_epoch)
    for epoch_index in range(start_epoch if ended is None else config.num_epochs, config.num_epochs):
        if should_stop():
            raise StopRequested
        lr = scheduled_lr(lr, config.optimizer, epoch_index)
        for group in optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        runner.on_progress = functools.partial(writer.record_progress, epoch_index + 1)  # status: step, time left
        train_loss = runner.run(corpus.train, optimizer, label=f"epoch {epoch_index + 1} train",
                                then=runner.batches(corpus.valid))
        if scaling is not None:
            log(f"epoch {epoch_index + 1}/{config.num_epochs} train, {scaling.epoch_report()}")
        valid_loss = runner.run(corpus.valid, label=f"epoch {epoch_index + 1} valid")
        seconds = time.perf_counter() - started
        elapsed += seconds
        record = rf.EpochRecord(epoch=epoch_index + 1, train_ppl=perplexity(train_loss),
                                valid_ppl=perplexity(valid_loss), epoch_seconds=seconds,
                                wall_clock_seconds=elapsed, lr=lr)
        curves.epochs.append(record)
        if device.type == "cuda":
            curves.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
        improved = math.isfinite(record.valid_ppl) and (best is None or record.valid_ppl < best.valid_ppl)
        if improved:
            best = record
            writer.save_best(rf.BestWeights(model.state_dict(), config.to_dict(), record.epoch, record.valid_ppl,
                                            corpus.vocab_size), raw_params=config.save_best)
        diverged = not (math.isfinite(train_loss) and math.isfinite(valid_loss))
        finished = record.epoch == config.num_epochs
        # every epoch's perplexity infinite (lr 1e30): no best.pt, nothing learnt; diverged, not done
        never_finite = finished and best is None
        if diverged or finished:
            ended = rf.DIVERGED if diverged or never_finite else rf.DONE
        # last.pt before curves/status: a kill between the writes leaves curves behind, never ahead.
        writer.save_last(rf.ResumePoint(model.state_dict(), optimizer.state_dict(), config.to_dict(), record.epoch,
                                        lr, elapsed, rng_state(device), curves, ended,
                                        scaling.state_dict() if scaling is not None else None))
        writer.write_curves(curves)
        if ended is None or _test_pass_left(config, best, curves):
            writer.finish_epoch(record.epoch)
        else:
            _mark_ended(writer, ended, record.epoch)
        board.epoch(record)
        log(f"epoch {record.epoch}/{config.num_epochs} lr {lr:.6g} train ppl {record.train_ppl:.2f} "
            f"valid ppl {record.valid_ppl:.2f} ({seconds:.1f} s){' *best*' if improved else ''}")
        if diverged:
            log(f"diverged: non-finite loss at epoch {record.epoch} (train {train_loss}, valid {valid_loss}); stopping")
            break
        if never_finite:
            log(f"diverged: no epoch of {config.num_epochs} had a finite validation perplexity (no best.pt)")

    if ended is None:  # zero epochs left: a last.pt from before `ended` was recorded
        ended = rf.DONE if best else rf.DIVERGED
    if _test_pass_left(config, best, curves):
        model.load_state_dict(writer.folder.best_weights(device).model)
        curves.test_ppl = perplexity(runner.run(corpus.test, label="test"))
        writer.write_curves(curves)
        log(f"test ppl {curves.test_ppl:.2f} with the weights of epoch {best.epoch}")
    if writer.status.state != ended:
        _mark_ended(writer, ended, len(curves.epochs))
    board.close()
    log(f"finished: {ended}" + (f", best valid ppl {best.valid_ppl:.2f} at epoch {best.epoch}" if best else ""))
    return writer.status


def _test_pass_left(config: RunConfig, best: rf.EpochRecord | None, curves: rf.Curves) -> bool:
    """--evaluate promises the test perplexity of the best weights: the run is not done before it is written."""
    return config.evaluate and best is not None and curves.test_ppl is None


def _mark_ended(writer: rf.RunWriter, ended: str, epochs_done: int) -> rf.RunStatus:
    return (writer.mark_done if ended == rf.DONE else writer.mark_diverged)(epochs_done)
