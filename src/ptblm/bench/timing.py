"""How the bench times a path: untimed warm-up steps (they include the graph capture), then the median of
many timed steps: CUDA events on GPU, perf_counter on CPU. Evaluation steps (forward only) are timed the
same way, for the validation share of an epoch.

With --runs-per-gpu K, a case's default path is also timed in K processes at once on the one device, as
a profile's `runs_per_gpu: K` packs settings: the sum of their training tokens/s against one process
alone says whether packing pays.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Mapping
from queue import Empty

import torch

from ..compiling import cache_counts
from ..data import batch_at
from ..loss_scaling import loss_scaling_for
from ..optimizers import make_optimizer
from ..step import make_step, use_matmul_precision
from ..threads import threads_per_run
from .cases import COMPILED_PATHS, BenchCase, epoch_seconds, path_model

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
