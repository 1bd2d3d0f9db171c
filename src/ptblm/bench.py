"""`ptblm bench`: one training step of each model and shape, timed side by side on this machine.

A step is what training does per batch: forward, backward, clip to 0.25, Adam update, on random
tokens (seq 35, emb 200, the corpus's vocabulary: --corpus, PTB's 10,000 by default). Each case (a model
and shape) is timed on these paths:

    default    the project's path as EpochRunner runs it: impl fast, scratch attention, and on GPU
               the whole step in a CUDA graph
    eager      the same without the graph (GPU, recurrent models only: on CPU it is `default`)
    reference  the plain path: impl reference (nested loops over time and layers) / scratch attention
               with the scaffold's LayerNorm, eager
    builtin    PyTorch's own, the yardstick (each architecture's baseline, ptblm.models.builtin): an
               nn.RNN / nn.GRU / nn.LSTM language model (cuDNN on GPU) or the Transformer with fused
               scaled_dot_product_attention and nn.LayerNorm, eager
    compiled-model  with --compile: `default` over the whole model under torch.compile (compile: model)
    compiled-cell   with --compile, recurrent models: `default` with only the time step compiled (compile: cell)
               A compiled path's compile time (its first train and eval calls) is reported apart and
               counted once per setting in the suite projection, which is how training pays it.

Each path gets untimed warm-up steps (they include the graph capture), then the median of many
timed steps: CUDA events on GPU, perf_counter on CPU. Evaluation steps (forward only) are timed
the same way, for the validation share of an epoch. Printed and saved per path: ms per step,
training tokens/s, the ratio to `builtin`, projected seconds per epoch of the corpus (training + validation)
and, for the course's suite, per suite. Projections count step time (and compile time) only: no
start-up.

With --runs-per-gpu K, each case's default path is also timed in K processes at once on the one
device, as a profile's `runs_per_gpu: K` packs settings: the sum of their training tokens/s against
one process alone says whether packing pays.
"""
from __future__ import annotations

import gc
import multiprocessing
import statistics
import time
from collections.abc import Mapping, MutableMapping
from queue import Empty
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from . import corpora
from .compiling import cache_counts, use_compile_cache
from .config import ConfigError, RunConfig
from .data import batch_at, num_batches
from .jobs import load_experiment
from .models import MODELS, architecture, build_baseline, build_model
from .provenance import device_description, provenance
from .runfolder import atomic_write_json
from .launch.tasks import threads_per_run
from .loss_scaling import loss_scaling_for
from .step import GRAPH_WARMUP_STEPS, make_step, use_matmul_precision
from .train import make_optimizer, pick_device

SEQ_LEN, EMB_SIZE = 35, 200
SUITE = ("3.1", "3.2", "3.3", "3.4")  # the course's 15 settings, jobs/<name>.yaml
PATHS = {
    "default": "as EpochRunner runs it: impl fast, scratch attention; a CUDA graph on GPU",
    "eager": "default without the CUDA graph (GPU, recurrent models)",
    "reference": "impl reference (nested loops) / scratch attention + scaffold LayerNorm, eager "
                 "(the Transformer's equals default on CPU: not timed twice)",
    "builtin": "PyTorch's own (ptblm.models.builtin): nn.RNN / nn.GRU / nn.LSTM (cuDNN on GPU) / fused SDPA "
               "+ nn.LayerNorm, eager",
    "compiled-model": "default over the whole model under torch.compile (with --compile; compile time apart)",
    "compiled-cell": "default with a recurrent model's time step under torch.compile (with --compile; compile "
                     "time apart)",
}
COMPILED_PATHS = {"compiled-model": "model", "compiled-cell": "cell"}  # path -> RunConfig.compile


@dataclass(frozen=True)
class BenchCase:
    """One model and shape; the suite trains `suite_settings` settings, `suite_epochs` epochs, at it."""

    model: str
    hidden_size: int
    num_layers: int
    batch_size: int
    dp_keep_prob: float
    suite_settings: int = 0
    suite_epochs: int = 0
    vocab_size: int = corpora.PTB.vocab_size
    corpus: str = corpora.PTB.name  # whose epoch epoch_seconds projects (its entry's token counts)
    seq_len: int = SEQ_LEN
    emb_size: int = EMB_SIZE

    @property
    def name(self) -> str:
        return f"{self.model.lower()}-h{self.hidden_size}-l{self.num_layers}-bs{self.batch_size}"

    def config(self, **changes) -> RunConfig:
        """The setting training would run for this shape (Adam, lr 1e-3), with `changes`."""
        return RunConfig.from_dict({
            "model": self.model, "optimizer": "ADAM", "initial_lr": 1e-3, "batch_size": self.batch_size,
            "hidden_size": self.hidden_size, "num_layers": self.num_layers, "dp_keep_prob": self.dp_keep_prob,
            "seq_len": self.seq_len, "emb_size": self.emb_size, **changes}, where=f"bench case {self.name}")


# One per architecture, small enough for a couple of seconds per path on a 2-core CPU; vocab and sequence as in
# the course. Dropout keep 0.8 for all: a cost, not a result, is compared.
SMALL_CASES = tuple(BenchCase(model, 128, 2, 20, 0.8) for model in MODELS)


def on_corpus(cases: list[BenchCase], corpus: corpora.CorpusEntry) -> list[BenchCase]:
    """The cases at the corpus's vocabulary, projecting its epochs."""
    return [replace(case, vocab_size=corpus.vocab_size, corpus=corpus.name) for case in cases]


def suite_cases(jobs_dir: Path, experiments: tuple[str, ...] = SUITE) -> list[BenchCase]:
    """One case per distinct shape of the suite's settings, in file order, with its epoch count."""
    cases: dict[tuple, BenchCase] = {}
    for name in experiments:
        for setting in load_experiment(name, jobs_dir).settings:
            c = setting.config
            shape = (c.model, c.hidden_size, c.num_layers, c.batch_size, c.seq_len, c.emb_size)
            known = cases.get(shape)
            cases[shape] = (replace(known, suite_settings=known.suite_settings + 1,
                                    suite_epochs=known.suite_epochs + c.num_epochs) if known else
                            BenchCase(c.model, c.hidden_size, c.num_layers, c.batch_size, c.dp_keep_prob,
                                      1, c.num_epochs, seq_len=c.seq_len, emb_size=c.emb_size))
    return list(cases.values())


def path_model(case: BenchCase, path: str, precision: str = "fp32") -> tuple[nn.Module, RunConfig]:
    """The model a path times, and the setting it stands for."""
    if path == "reference":
        config = case.config(impl="reference", precision=precision)
    elif path in COMPILED_PATHS:
        config = case.config(compile=COMPILED_PATHS[path], precision=precision)
    else:
        config = case.config(precision=precision)
    build = build_baseline if path == "builtin" else build_model
    return build(config, case.vocab_size), config


def paths_for(case: BenchCase, device: torch.device, compiled: bool = False) -> list[str]:
    """The paths that differ on this device: on CPU nothing is graphed, so `eager` is `default`, and
    so is the Transformer's `reference`; on GPU the Transformer's `eager` is its `reference`.
    `compiled` adds the torch.compile path; `builtin` is timed where the registry names a baseline."""
    entry, cuda = architecture(case.model), device.type == "cuda"
    recurrent = entry.recurrent
    return ["default", *(["eager"] if recurrent and cuda else []),
            *(["reference"] if recurrent or cuda else []), *(["builtin"] if entry.baseline else []),
            *(["compiled-model", *(["compiled-cell"] if recurrent else [])] if compiled else [])]


def time_steps(step, data: torch.Tensor, state, seq_len: int, warmup: int,
               repeats: int, after_warmup=None) -> list[float]:
    """Milliseconds of each of `repeats` steps after `warmup` untimed ones; batches are cut from
    `data` (batch, tokens) as EpochRunner cuts them, cyclically, and the model's state is carried.
    `after_warmup()` is called between the two (packed processes wait there for each other)."""
    count = (data.size(1) - 1) // seq_len

    def run(index: int) -> None:
        nonlocal state
        _, state = step(*batch_at(data, index % count, seq_len), state)

    for index in range(warmup):
        run(index)
    if after_warmup is not None:
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        after_warmup()
    if data.device.type != "cuda":
        times = []
        for index in range(warmup, warmup + repeats):
            started = time.perf_counter()
            run(index)
            times.append((time.perf_counter() - started) * 1000)
        return times
    torch.cuda.synchronize(data.device)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for index, (start, end) in enumerate(events, start=warmup):
        start.record()
        run(index)
        end.record()
    torch.cuda.synchronize(data.device)
    return [start.elapsed_time(end) for start, end in events]


def epoch_seconds(case: BenchCase, train_ms: float, eval_ms: float) -> float:
    """One epoch of the case's corpus at these step times: every training batch, then every validation batch."""
    tokens = corpora.get(case.corpus).tokens
    train = num_batches(tokens["train"], case.batch_size, case.seq_len)
    valid = num_batches(tokens["valid"], case.batch_size, case.seq_len)
    return (train * train_ms + valid * eval_ms) / 1000


def bench_path(case: BenchCase, path: str, device: torch.device, precision: str, warmup: int,
               repeats: int, after_warmup=None) -> dict:
    """Train and eval step times of one path (a fresh model, seeded), or the error that stopped it."""
    torch.manual_seed(0)
    model, config = path_model(case, path, precision)
    model.to(device)
    optimizer = make_optimizer(model, config)  # fused for fp16, as training builds it
    scaling = loss_scaling_for(precision, device)  # fp16's loss scale, as training runs it
    compile_mode = COMPILED_PATHS.get(path, "off")
    compiled = compile_mode != "off"
    graphed = (path == "default" or compiled) and device.type == "cuda"
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(case.vocab_size, (case.batch_size, 8 * case.seq_len + 1), generator=generator)
    data = data.to(device)  # (batch, tokens): 8 distinct batches
    result = {"case": case.name, "path": path, "cuda_graph": graphed, "model": case.model,
              "hidden_size": case.hidden_size, "num_layers": case.num_layers, "batch_size": case.batch_size,
              "dp_keep_prob": case.dp_keep_prob}
    if compiled:  # dynamo keeps 8 graphs per function, then runs it eagerly: start each case afresh
        torch._dynamo.reset()
    counts_before = cache_counts() if compiled else None
    try:
        timings, compile_seconds = {}, {}
        for label, step_optimizer in (("train", optimizer), ("eval", None)):
            model.train(step_optimizer is not None)
            state = model.initial_state(case.batch_size)  # zeros on the device, or None
            step = make_step(model, step_optimizer, precision, cuda_graph=graphed, compile_mode=compile_mode,
                             scaling=scaling)
            timings[label] = statistics.median(time_steps(step, data, state, case.seq_len, warmup, repeats,
                                                          after_warmup))
            if compiled:  # the first call compiled (with warmup 0 it was also timed)
                if step.compile_error is not None:
                    raise step.compile_error
                compile_seconds[label] = step.first_call_seconds
    except (RuntimeError, ValueError) as error:  # e.g. out of memory: record it, time the other paths
        return {**result, "error": f"{type(error).__name__}: {error}".splitlines()[0]}
    tokens = case.batch_size * case.seq_len
    if compiled:
        counts = cache_counts()
        result |= {"compile_seconds": sum(compile_seconds.values()),
                   "cache_loaded": counts["hits"] - counts_before["hits"],
                   "cache_compiled": counts["misses"] - counts_before["misses"]}
    return {**result, "train_ms": timings["train"], "eval_ms": timings["eval"],
            "tokens_per_second": tokens / timings["train"] * 1000,
            "epoch_seconds": epoch_seconds(case, timings["train"], timings["eval"])}


def with_ratios(results: list[dict]) -> list[dict]:
    """Adds ratio_to_builtin: train ms over the builtin path's train ms for the same case."""
    builtin = {r["case"]: r.get("train_ms") for r in results if r["path"] == "builtin"}
    return [{**r, "ratio_to_builtin": (r["train_ms"] / builtin[r["case"]]
                                       if r.get("train_ms") and builtin.get(r["case"]) else None)}
            for r in results]


def suite_seconds(cases: list[BenchCase], results: list[dict]) -> dict[str, float]:
    """Projected seconds of the whole suite per path, for paths timed on every case: every epoch's
    steps, plus each setting's compile time on the compiled path (as if no cache had it)."""
    by_key = {(r["case"], r["path"]): r for r in results}
    totals = {}
    for path in PATHS:
        timed = [by_key.get((case.name, path), {}) for case in cases]
        if all(r.get("epoch_seconds") is not None for r in timed):
            totals[path] = sum(case.suite_epochs * r["epoch_seconds"]
                               + case.suite_settings * r.get("compile_seconds", 0) for case, r in zip(cases, timed))
    return totals


def _packed_run(case: BenchCase, device_name: str, precision: str, warmup: int, repeats: int, threads: int,
                barrier, results) -> None:
    """One of the packed processes: the default path, timed while the others run theirs."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    use_matmul_precision(precision)
    result = bench_path(case, "default", device, precision, warmup, repeats, after_warmup=barrier.wait)
    if "error" in result:
        barrier.abort()  # the others stop waiting for this one
    results.put(result)


def bench_packed(case: BenchCase, device: torch.device, precision: str, warmup: int, repeats: int, runs: int,
                 single: dict | None, environ: Mapping[str, str]) -> dict:
    """`runs` processes timing the default path together (a barrier starts their timed steps at once);
    their summed training tokens/s against `single`, the default path alone in this process."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no CUDA state is forked
    barrier, queue = context.Barrier(runs, timeout=900), context.Queue()
    threads = threads_per_run(runs, environ)  # CPU threads shared out as a packed array task shares them
    processes = [context.Process(target=_packed_run, args=(case, str(device), precision, warmup, repeats,
                                                           threads, barrier, queue)) for _ in range(runs)]
    for process in processes:
        process.start()
    per_run, errors = [], []
    while len(per_run) < runs and not errors:
        try:
            per_run.append(queue.get(timeout=5))
        except Empty:  # a process that died without a result (killed, out of host memory) ends the wait
            errors = [f"a packed process exited with code {p.exitcode} and no result"
                      for p in processes if p.exitcode not in (None, 0)]
            if errors:
                barrier.abort()
    for process in processes:
        process.join()
    errors += [r["error"] for r in per_run if "error" in r]
    packed = {"case": case.name, "runs": runs, "per_run": per_run}
    if errors:
        return {**packed, "error": errors[0]}
    total = sum(r["tokens_per_second"] for r in per_run)
    train_ms = statistics.median(r["train_ms"] for r in per_run)
    return {**packed, "train_ms": train_ms, "tokens_per_second": total,
            "gain": total / single["tokens_per_second"] if single else None,
            "slowdown_per_run": train_ms / single["train_ms"] if single else None}


def format_packing(packing: list[dict]) -> str:
    lines = []
    for p in packing:
        if "error" in p:
            lines.append(f"{p['case']}: {p['runs']} runs at once: {p['error']}")
        else:
            gain = "" if p["gain"] is None else (f", {p['gain']:.2f}x the tokens/s of one run alone "
                                                 f"(each run {p['slowdown_per_run']:.2f}x slower)")
            lines.append(f"{p['case']}: {p['runs']} runs at once: {p['tokens_per_second']:,.0f} training "
                         f"tokens/s in all{gain}")
    return "\n".join(lines)


def run_bench(cases: list[BenchCase], device: torch.device, out_dir: Path, *,
              corpus: corpora.CorpusEntry = corpora.PTB, precision: str = "fp32",
              warmup: int = 5, repeats: int = 20, complete_suite: bool = False, compiled: bool = False,
              runs_per_gpu: int = 1, command_line: list[str] | None = None, echo=print,
              environ: Mapping[str, str]) -> Path:
    """Time every case on every path, print the table, write bench-<timestamp>.json; its path. `corpus` is
    recorded as the corpus whose vocabulary and token counts the cases stand for (see on_corpus); `environ`
    is the environment recorded (provenance) and read for the CPU threads of packed runs."""
    use_matmul_precision(precision)  # as training runs
    echo(f"ptblm bench on {device_description(device)}, torch {torch.__version__}, {precision}, "
         f"median of {repeats} steps after {warmup} warm-up steps")
    results = []
    for case in cases:
        for path in paths_for(case, device, compiled):
            results.append(bench_path(case, path, device, precision, warmup, repeats))
            gc.collect()  # the path's model, optimizer state and graph memory, before the next one
            if device.type == "cuda":
                torch.cuda.empty_cache()
            compile_note = (f" after {results[-1]['compile_seconds']:.1f} s compiling"
                            if "compile_seconds" in results[-1] else "")
            echo(f"  {case.name} {path}: " + (results[-1].get("error") or
                                              f"{results[-1]['train_ms']:.2f} ms/step{compile_note}"))
    packing = []
    if runs_per_gpu > 1:
        single = {r["case"]: r for r in results if r["path"] == "default" and "error" not in r}
        for case in cases:
            packing.append(bench_packed(case, device, precision, warmup, repeats, runs_per_gpu, single.get(case.name),
                                        environ))
            echo(f"  {case.name} default x{runs_per_gpu} at once: " + (packing[-1].get("error") or
                 f"{packing[-1]['tokens_per_second']:,.0f} tokens/s in all"))
    results = with_ratios(results)
    suite = None
    if complete_suite:
        suite = {"settings": sum(case.suite_settings for case in cases),
                 "epochs": sum(case.suite_epochs for case in cases), "seconds": suite_seconds(cases, results)}
    report = {**provenance(device, command_line, environ), "precision": precision, "warmup_steps": warmup,
              "timed_steps": repeats, "seq_len": SEQ_LEN, "emb_size": EMB_SIZE, "corpus": corpus.name,
              "vocab_size": corpus.vocab_size, "optimizer": "ADAM", "corpus_tokens": dict(corpus.tokens),
              "paths": PATHS,
              "cases": [asdict(case) | {"name": case.name} for case in cases], "results": results, "suite": suite,
              "packing": packing}
    echo(format_table(results, suite))
    if packing:
        echo(format_packing(packing))
    path = Path(out_dir) / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(path, report)
    echo(f"wrote {path}")
    return path


def format_table(results: list[dict], suite: dict | None) -> str:
    from tabulate import tabulate

    def number(value, digits):
        return "-" if value is None else f"{value:,.{digits}f}"

    compiled = any("compile_seconds" in r for r in results)
    rows = [[r["case"], r["path"], number(r.get("train_ms"), 2), number(r.get("eval_ms"), 2),
             number(r.get("tokens_per_second"), 0), number(r.get("ratio_to_builtin"), 2),
             number(r.get("epoch_seconds"), 1), *([number(r.get("compile_seconds"), 1)] if compiled else []),
             r.get("error", "")] for r in results]
    table = tabulate(rows, headers=["case", "path", "train ms", "eval ms", "train tokens/s", "x builtin",
                                    "s/epoch", *(["compile s"] if compiled else []), "error"],
                     disable_numparse=True)
    if suite:
        totals = ", ".join(f"{path} {seconds / 60:,.1f} min" for path, seconds in suite["seconds"].items())
        table += (f"\nsuite ({suite['settings']} settings, {suite['epochs']} epochs of train + validation, "
                  f"step time{' and compile time' if compiled else ''}): {totals}")
    return table


def select_cases(cases: list[BenchCase], only: list[str] | None) -> list[BenchCase]:
    """Cases whose name contains one of `only` (all without it); an error naming the choices."""
    if not only:
        return cases
    chosen = [case for case in cases if any(part in case.name for part in only)]
    if not chosen:
        raise ConfigError(f"bench: --only {' '.join(only)} matches no case; cases: "
                         f"{', '.join(case.name for case in cases)}")
    return chosen


def bench_command(full: bool, only: list[str] | None, device_name: str, jobs_dir: Path, out_dir: Path,
                  precision: str, warmup: int | None, repeats: int | None, compile_cache: Path | None = None,
                  runs_per_gpu: int = 1, corpus: corpora.CorpusEntry = corpora.PTB, *,
                  environ: MutableMapping[str, str], command_line: list[str]) -> Path:
    """What `ptblm bench` does: the course's shapes with `full`, small ones otherwise, at the vocabulary of
    `corpus`, projecting its epochs (the dry run's cost projection reads them for its settings). Step counts
    default per device: on GPU enough warm-up for the graph capture, on CPU few slow steps.
    With `compile_cache` the compiled path is timed too, its artefacts cached there as training does (set in
    `environ`, the process's own from the CLI)."""
    if runs_per_gpu < 1:
        raise ConfigError(f"bench: --runs-per-gpu {runs_per_gpu} is invalid; valid: 1 (one run alone) or more")
    device = pick_device(device_name)
    if compile_cache is not None:
        use_compile_cache(compile_cache, environ)
    all_cases = on_corpus(suite_cases(jobs_dir) if full else list(SMALL_CASES), corpus)
    cases = select_cases(all_cases, only)
    cuda = device.type == "cuda"
    warmup = (GRAPH_WARMUP_STEPS + 2 if cuda else 2) if warmup is None else warmup
    repeats = (50 if cuda else 10) if repeats is None else repeats
    return run_bench(cases, device, out_dir, corpus=corpus, precision=precision, warmup=warmup, repeats=repeats,
                     complete_suite=full and len(cases) == len(all_cases), compiled=compile_cache is not None,
                     runs_per_gpu=runs_per_gpu, command_line=command_line, environ=environ)
