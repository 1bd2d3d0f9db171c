"""`ptblm bench` itself: every case on every path, the table, bench-<time>.json.

Printed and saved per path: ms per step, training tokens/s, the ratio to `builtin`, projected seconds
per epoch of the corpus (training + validation) and, for the course's suite, per suite. Projections
count step time (and compile time) only: no start-up.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict
from pathlib import Path

import torch

from .. import corpora
from ..compiling import use_compile_cache
from ..config import ConfigError
from ..provenance import device_description, provenance
from ..runfolder import atomic_write_json
from ..step import GRAPH_WARMUP_STEPS, use_matmul_precision
from ..devices import pick_device
from ..wording import count
from .cases import EMB_SIZE, PATHS, SEQ_LEN, SMALL_CASES, BenchCase, on_corpus, paths_for, select_cases, suite_cases
from .timing import bench_packed, bench_path

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
         f"median of {count(repeats, 'step')} after {count(warmup, 'warm-up step')}")
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


def bench_command(experiments: tuple[str, ...] | None, only: list[str] | None, device_name: str, jobs_dir: Path,
                  out_dir: Path, precision: str, warmup: int | None, repeats: int | None,
                  compile_cache: Path | None = None, runs_per_gpu: int = 1, corpus: corpora.CorpusEntry | None = None,
                  overrides=None, *, environ: MutableMapping[str, str], command_line: list[str]) -> Path:
    """What `ptblm bench` does: the shapes of `experiments` (the course's with `--full` alone; each setting's
    corpus, and `overrides` as submit applies them), small ones without; at `corpus`'s vocabulary when one is
    given, projecting its epochs (the dry run's cost projection reads them for its settings). Step counts
    default per device: on GPU enough warm-up for the graph capture, on CPU few slow steps.
    With `compile_cache` the compiled path is timed too, its artefacts cached there as training does (set in
    `environ`, the process's own from the CLI)."""
    if runs_per_gpu < 1:
        raise ConfigError(f"bench: --runs-per-gpu {runs_per_gpu} is invalid; valid: 1 (one run alone) or more")
    device = pick_device(device_name)
    if compile_cache is not None:
        use_compile_cache(compile_cache, environ)
    all_cases = suite_cases(jobs_dir, experiments, overrides) if experiments else list(SMALL_CASES)
    all_cases = on_corpus(all_cases, corpus) if corpus else all_cases
    cases = select_cases(all_cases, only)
    cuda = device.type == "cuda"
    warmup = (GRAPH_WARMUP_STEPS + 2 if cuda else 2) if warmup is None else warmup
    repeats = (50 if cuda else 10) if repeats is None else repeats
    return run_bench(cases, device, out_dir, corpus=corpus or corpora.get(cases[0].corpus), precision=precision,
                     warmup=warmup, repeats=repeats, complete_suite=bool(experiments) and len(cases) == len(all_cases),
                     compiled=compile_cache is not None,
                     runs_per_gpu=runs_per_gpu, command_line=command_line, environ=environ)
