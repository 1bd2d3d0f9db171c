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

import math
import os
import pickle
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from . import corpora
from . import runfolder as rf
from .compiling import use_compile_cache
from .config import ConfigError, RunConfig
from .data import Corpus, check_batches_fit, check_data_dir, corpus_fingerprint, load_corpus, split_path, stage_data
from .determinism import naming_nondeterministic_operations, use_deterministic
from .errors import UserError
from .epochs import EpochRunner, RunLog, StopRequested, perplexity
from .evaluation import evaluate_best_weights, needs_test_pass
from .models import build_model
from .provenance import cpu_fallback_note, installed_packages, provenance, record_attempt
from .runlock import hold_run_folder
from .step import rng_state, set_rng_state, use_matmul_precision
from .tensorboard_events import RunBoard

LR_DECAY_BASE = 1 / 1.15  # SGD_LR_SCHEDULE, from the scaffold
LR_FLAT_EPOCHS = 14


class RunFolderMismatch(UserError, RuntimeError):
    """The run folder holds another setting: resuming would mix two experiments."""


def scheduled_lr(lr: float, optimizer_name: str, epoch_index: int) -> float:
    """The learning rate for 0-based epoch `epoch_index`, given the previous epoch's rate."""
    if optimizer_name == "SGD_LR_SCHEDULE":
        return lr * LR_DECAY_BASE ** max(epoch_index - LR_FLAT_EPOCHS, 0)
    return lr


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def check_cuda_graph(config: RunConfig) -> None:
    """cuda_graph "on" needs CUDA: said before anything is written, in the user's terms."""
    device = pick_device(config.device)
    if config.cuda_graph == "on" and device.type != "cuda":
        raise ConfigError(f"cuda_graph = 'on' needs a CUDA device, but this run is on {device} (device "
                          f"{config.device!r}, torch sees {torch.cuda.device_count()} GPUs); valid here: cuda_graph "
                          f"auto (graphs on CUDA, eager elsewhere) or off (--cuda_graph, or cuda_graph: in a jobs "
                          f"file), or run it on a GPU node")


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    if config.optimizer == "ADAM":
        return torch.optim.Adam(model.parameters(), lr=config.initial_lr)
    return torch.optim.SGD(model.parameters(), lr=config.initial_lr)  # p <- p - lr * g, no momentum


def check_same_setting(stored: dict, config: RunConfig, out_dir: Path) -> None:
    """A run folder resumes only the setting it holds; execution options (EXECUTION_OPTIONS) may change."""
    previous = RunConfig.from_dict(stored, where=str(out_dir / rf.CONFIG_FILE)).identity()
    changes = [f"{key} {previous[key]!r} -> {value!r}" for key, value in config.identity().items()
               if previous[key] != value]
    if changes:
        raise RunFolderMismatch(f"{out_dir} holds another setting ({'; '.join(changes)}); pass --force to "
                                f"start over there or choose another --out")


def check_same_corpus(stored: dict, corpus: str, data_dir: Path, out_dir: Path) -> str | None:
    """A run folder resumes only on the corpus it recorded; returns that fingerprint (None: not recorded yet)."""
    recorded = stored.get(rf.CORPUS_KEY)
    if recorded is not None and recorded != corpus:
        raise RunFolderMismatch(f"{out_dir} was trained on another corpus (fingerprint {recorded}, data "
                                f"{stored.get('data_dir')}), not on {data_dir} (fingerprint {corpus}); pass --force "
                                f"to start over there on this corpus or choose another --out")
    return recorded


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Checkpoints hold only tensors and plain containers, so the safe loader reads them; anything else
    (an empty or truncated file, a pickle with code in it) is one error naming the file."""
    path = Path(path)
    remedy = "delete it to start that run over, or rerun with --force"
    if path.stat().st_size == 0:
        raise rf.RunFolderError(f"{path} is empty (0 bytes): not a checkpoint; {remedy}")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": what a foreign pickle looks like
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise rf.RunFolderError(f"{path}: refused to load it: it holds Python objects other than tensors and "
                                f"plain containers, so ptblm did not write it (nothing in it was run); {remedy}") \
            from None
    except (RuntimeError, EOFError, ValueError) as error:
        reason = str(error).split(". ")[0] or type(error).__name__
        raise rf.RunFolderError(f"{path} is not a readable checkpoint ({reason}); {remedy}") from None


def train_run(config: RunConfig, data_dir: Path, out_dir: Path, *, force: bool = False,
              experiment: str | None = None, setting_index: int | None = None, description: str | None = None,
              command_line: list[str] | None = None, interactive: bool | None = None,
              echo: bool = True, scratch_dir: Path | None = None,
              compile_cache: Path | None = None, slurm_job_id: str | None = None,
              fingerprint_cache: Path | None = None, should_stop: Callable[[], bool] | None = None) -> rf.RunStatus:
    """Train one setting into `out_dir`, resuming from last.pt; a finished run is returned as is.

    The run holds the folder's lock (ptblm.runlock) for its whole life: a second writer is refused.
    `should_stop` is asked between batches: once it says yes, the epoch is abandoned and the run ends
    `cancelled`, resumable from its last.pt (the caller decides why: a signal, a parent gone).
    With `scratch_dir` (the node-local $SLURM_TMPDIR on a cluster) the data is read from a copy there.
    With `compile_cache` a compiling run (compile model or cell) keeps its artefacts there (see ptblm.compiling).
    `slurm_job_id` ("123_4") is recorded in status.json and in the lock, to name this run to others.
    The corpus's fingerprint (ptblm.data.corpus_fingerprint, cached in `fingerprint_cache`) is recorded in
    config.json: a run folder resumes only on the corpus it was trained on. `experiment`, `setting_index` and
    the experiment's `description` go into config.json too, so that status and reports read the run folder alone.
    """
    out_dir = Path(out_dir)
    entry = corpora.get(config.corpus)
    check_data_dir(data_dir, entry)  # before anything is written: a typo in --data leaves no run folder behind
    check_cuda_graph(config)
    corpus = corpus_fingerprint(data_dir, fingerprint_cache, entry)
    rf.make_run_folder(out_dir)  # a file, an unwritable place or someone else's folder: refused here
    with hold_run_folder(out_dir, slurm_job_id) as holder:
        if not holder.enforced:
            RunLog(out_dir, echo=echo)(f"warning: the file system of {out_dir} does not support flock: a second "
                                       f"writer into this folder would not be refused")
        origin = {"experiment": experiment, "setting_index": setting_index, "description": description}
        return _train_holding_lock(config, Path(data_dir), corpus, out_dir, force, origin, command_line,
                                   interactive, echo, scratch_dir, compile_cache, slurm_job_id, should_stop)


def _train_holding_lock(config: RunConfig, data_dir: Path, corpus: str, out_dir: Path, force: bool, origin: dict,
                        command_line, interactive, echo: bool, scratch_dir, compile_cache,
                        slurm_job_id, should_stop) -> rf.RunStatus:
    recorded_corpus = None
    if not force and (out_dir / rf.CONFIG_FILE).exists():
        stored = rf.read_run(out_dir)
        check_same_setting(stored.config, config, out_dir)
        recorded_corpus = check_same_corpus(stored.provenance, corpus, data_dir, out_dir)
    orphans, orphan_bytes = rf.remove_orphans(out_dir, rf.TRAINER_FILES)  # a kill during a write left them
    if orphans:
        RunLog(out_dir, echo=echo)(f"removed {orphans} temporary files ({orphan_bytes / 1e6:.1f} MB) left by a "
                                   f"run killed during a write")
    status = rf.read_status(out_dir)
    if status and status.state in rf.FINISHED_STATES and not force:
        if config.evaluate and needs_test_pass(out_dir):  # finished before --evaluate was asked for
            evaluate_best_weights(out_dir, data_dir, config.device, RunLog(out_dir, echo=echo))
            return rf.read_status(out_dir)
        if echo:
            print(f"{out_dir}: already {status.state} ({status.epochs_done}/{status.num_epochs} epochs); "
                  f"use --force to rerun", flush=True)
        return status
    if force:
        rf.clear_run_folder(out_dir)
    log = RunLog(out_dir, echo=echo)
    try:
        data_dir = stage_data(data_dir, scratch_dir, corpora.get(config.corpus)) if scratch_dir else data_dir
        if config.compile != "off" and compile_cache is not None:
            use_compile_cache(compile_cache)
        if (out_dir / rf.CONFIG_FILE).exists() and recorded_corpus is None:
            log(f"this run folder predates corpus fingerprints: recording {corpus} ({data_dir}) as its corpus")
        with naming_nondeterministic_operations():  # --deterministic: torch's error as one line
            return _train(config, data_dir, corpus, out_dir, log, origin, command_line,
                          sys.stderr.isatty() if interactive is None else interactive, slurm_job_id,
                          should_stop or (lambda: False))
    except StopRequested:
        previous = rf.read_status(out_dir)
        epochs_done = previous.epochs_done if previous else 0
        rf.write_status(out_dir, rf.RunStatus(
            state=rf.CANCELLED, epochs_done=epochs_done, num_epochs=config.num_epochs, updated_at=time.time(),
            slurm_job_id=previous.slurm_job_id if previous else None, host=previous.host if previous else None))
        log(f"stopped on request: cancelled after {epochs_done}/{config.num_epochs} epochs; "
            f"rerunning resumes from last.pt")
        return rf.read_status(out_dir)
    except (Exception, KeyboardInterrupt) as error:  # record why, for status tables, then let the caller see it
        # (a SystemExit is the caller's own decision to leave, e.g. a requeue: its state is the caller's to write)
        previous = rf.read_status(out_dir)
        if isinstance(error, RunFolderMismatch):
            raise  # the folder belongs to another setting: leave its status alone
        interrupted = isinstance(error, KeyboardInterrupt)
        rf.write_status(out_dir, rf.RunStatus(
            state=rf.FAILED, epochs_done=previous.epochs_done if previous else 0, num_epochs=config.num_epochs,
            error=("interrupted" if interrupted else f"{type(error).__name__}: {error}"),
            updated_at=time.time()))
        log(str(error) if isinstance(error, UserError) else "".join(traceback.format_exception(error)).rstrip())
        raise


def _train(config: RunConfig, data_dir: Path, corpus_id: str, out_dir: Path, log: RunLog, origin: dict,
           command_line, interactive: bool, slurm_job_id: str | None, should_stop: Callable[[], bool]) -> rf.RunStatus:
    entry = corpora.get(config.corpus)
    corpus: Corpus = load_corpus(data_dir, entry)
    check_batches_fit({"train": len(corpus.train), "valid": len(corpus.valid), "test": len(corpus.test)},
                      {split: split_path(data_dir, split, entry) for split in corpora.SPLITS},
                      config.batch_size, config.seq_len, config.evaluate)
    device = pick_device(config.device)
    if cpu_fallback_note(device):
        log(cpu_fallback_note(device))
    torch.manual_seed(config.seed)  # before the model: initial weights follow the seed, as in the scaffold
    use_matmul_precision(config.precision)  # explicit, and in config.json: fp32 is strict, TF32 only when asked
    determinism, determinism_note = use_deterministic(config.deterministic, os.environ)  # before CUDA's first matmul
    if determinism_note:
        log(determinism_note)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(config.seed)
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(config, corpus.vocab_size).to(device)
    optimizer = make_optimizer(model, config)
    curves, lr, start_epoch, elapsed = rf.Curves(), config.initial_lr, 0, 0.0
    last_path, best_path = out_dir / rf.LAST_CHECKPOINT, out_dir / rf.BEST_CHECKPOINT

    if last_path.exists():
        checkpoint = load_checkpoint(last_path, device)
        check_same_setting(checkpoint["config"], config, out_dir)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng"], device)
        curves = rf.Curves.from_json(checkpoint["curves"])
        lr, start_epoch, elapsed = checkpoint["lr"], checkpoint["epoch"], checkpoint["wall_clock_seconds"]
        rf.write_curves(out_dir, curves)  # a kill between last.pt and curves.json left curves one epoch behind
        log(f"resuming from {last_path} after epoch {start_epoch}/{config.num_epochs}")

    packages = installed_packages()
    where = provenance(device, command_line, os.environ, packages)
    attempts, environment_change = record_attempt(out_dir, where, packages)  # packages.txt, every attempt's record
    rf.write_config(out_dir, config.to_dict(), {
        **origin, "run_name": config.run_name(),
        "data_dir": str(data_dir), rf.CORPUS_KEY: corpus_id, "vocab_size": corpus.vocab_size,
        "unknown_words": corpus.unknown_counts, "parameters": sum(p.numel() for p in model.parameters()),
        **where, **determinism, "attempts": attempts})
    if environment_change:
        log(environment_change)
    published = "the published files" if entry.is_published(corpus_id) else f"not the published files ({corpus_id})"
    log(f"{config.model} {config.run_name()} on {device}, precision {config.precision}: {entry.title}, {published}; "
        f"{corpus.describe()}")
    runner = EpochRunner(model, config, device, log, interactive,
                         cuda_graph={"auto": None, "on": True, "off": False}[config.cuda_graph],
                         should_stop=should_stop)
    board = RunBoard.open(out_dir, config.to_dict(), curves, runner.batches(corpus.train), log)  # <run>/tb/
    runner.on_step = board.step if config.log_steps else None
    best = curves.best_epoch()
    state = rf.RUNNING

    def write_status(state: str, epochs_done: int) -> None:
        rf.write_status(out_dir, rf.RunStatus(state=state, epochs_done=epochs_done,
                                              num_epochs=config.num_epochs, updated_at=time.time(),
                                              slurm_job_id=slurm_job_id, host=socket.gethostname()))

    write_status(state, start_epoch)
    for epoch_index in range(start_epoch, config.num_epochs):
        lr = scheduled_lr(lr, config.optimizer, epoch_index)
        for group in optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        train_loss = runner.run(corpus.train, optimizer, label=f"epoch {epoch_index + 1} train")
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
            rf.atomic_torch_save({"model": model.state_dict(), "config": config.to_dict(),
                                  "epoch": record.epoch, "valid_ppl": record.valid_ppl,
                                  "vocab_size": corpus.vocab_size}, best_path)
            if config.save_best:  # the scaffold's file, for the course's own loading code
                rf.atomic_torch_save(model.state_dict(), out_dir / rf.BEST_PARAMS)
        diverged = not (math.isfinite(train_loss) and math.isfinite(valid_loss))
        finished = record.epoch == config.num_epochs
        # every epoch's perplexity infinite (lr 1e30): no best.pt, nothing learnt; diverged, not done
        never_finite = finished and best is None
        state = rf.DIVERGED if diverged or never_finite else (rf.DONE if finished else rf.RUNNING)
        # last.pt before curves/status: a kill between the writes leaves curves behind, never ahead.
        rf.atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "config": config.to_dict(), "epoch": record.epoch, "lr": lr,
                              "wall_clock_seconds": elapsed, "rng": rng_state(device),
                              "curves": curves.to_json()}, last_path)
        rf.write_curves(out_dir, curves)
        write_status(state, record.epoch)
        board.epoch(record)
        log(f"epoch {record.epoch}/{config.num_epochs} lr {lr:.6g} train ppl {record.train_ppl:.2f} "
            f"valid ppl {record.valid_ppl:.2f} ({seconds:.1f} s){' *best*' if improved else ''}")
        if diverged:
            log(f"diverged: non-finite loss at epoch {record.epoch} (train {train_loss}, valid {valid_loss}); stopping")
            break
        if never_finite:
            log(f"diverged: no epoch of {config.num_epochs} had a finite validation perplexity (no best.pt)")

    if config.evaluate and best_path.exists():
        model.load_state_dict(load_checkpoint(best_path, device)["model"])
        curves.test_ppl = perplexity(runner.run(corpus.test, label="test"))
        rf.write_curves(out_dir, curves)
        log(f"test ppl {curves.test_ppl:.2f} with the weights of epoch {best.epoch}")
    if state == rf.RUNNING:  # zero epochs left to run (resumed a run whose last epoch was written)
        state = rf.DONE if best else rf.DIVERGED
        write_status(state, len(curves.epochs))
    board.close()
    log(f"finished: {state}" + (f", best valid ppl {best.valid_ppl:.2f} at epoch {best.epoch}" if best else ""))
    return rf.read_status(out_dir)
