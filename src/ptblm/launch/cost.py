"""What a submission costs, printed by `--dry-run`: per setting the sbatch resources and a projected time.

The time comes from the newest `ptblm bench` JSON (results/bench/*.json) of the device kind the tasks get
(cuda when the profile asks for GPUs, else cpu) that timed the setting's shape (model, hidden size,
layers, batch, seq len, emb size, at the vocabulary of the setting's corpus: `ptblm bench --corpus`): one
epoch of that corpus (its entry's token counts; training then validation, step time only) times the
setting's epochs. A setting no bench timed says so.
Pure functions, apart from reading the JSON files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from .. import corpora
from ..clusters import ClusterProfile
from ..config import RunConfig
from ..data import num_batches
from ..jobs import Setting
from ..wording import count


@dataclass(frozen=True)
class SettingCost:
    setting: Setting
    gpus: int
    cpus: int
    mem_gb: float | None
    time_min: int
    epoch_seconds: float | None  # None: no bench timed this shape on this device kind
    bench: str | None  # the bench file's name

    @property
    def seconds(self) -> float | None:
        return None if self.epoch_seconds is None else self.epoch_seconds * self.setting.config.num_epochs

    @property
    def requeues(self) -> int:
        """Time limits the task hits before it finishes (it resumes from last.pt after each)."""
        return 0 if self.seconds is None else max(math.ceil(self.seconds / (self.time_min * 60)) - 1, 0)


def profile_gpus(profile: ClusterProfile) -> int:
    """GPUs per task: gpus_per_node, or the count at the end of gres (gpu:a100:2 -> 2, gpu -> 1)."""
    if profile.gpus_per_node:
        return profile.gpus_per_node
    if profile.gres and profile.gres.startswith("gpu"):
        last = profile.gres.split(":")[-1]
        return int(last) if last.isdigit() else 1
    return 0


OPTIMIZER_STATES = {"SGD": 0, "SGD_LR_SCHEDULE": 0, "ADAM": 2}  # tensors the optimizer keeps per parameter
FLOAT_BYTES = 4  # fp32 master weights (precision fp16/bf16 computes in half, keeps fp32 weights)


def model_parameters(config: RunConfig) -> int:
    """The parameters of `config`'s model at its corpus's vocabulary, counted on PyTorch's meta device (shapes
    only, no memory): the model training would build. Raises what torch raises for a shape it cannot make."""
    import torch

    from ..models import build_model

    with torch.device("meta"):
        model = build_model(config, corpora.get(config.corpus).vocab_size)
    return sum(parameter.numel() for parameter in model.parameters())


def training_bytes(config: RunConfig, parameters: int) -> int:
    """Memory training needs at the least: weights, gradients and the optimizer's state (no activations)."""
    return parameters * FLOAT_BYTES * (2 + OPTIMIZER_STATES.get(config.optimizer, 2))


def read_bench_reports(bench_dir: Path) -> list[tuple[str, dict]]:
    """(file name, report) of every readable bench JSON, newest first (bench-<date>-<time>.json)."""
    reports = []
    for path in sorted(Path(bench_dir).glob("*.json"), reverse=True):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and isinstance(report.get("results"), list):
            reports.append((path.name, report))
    return reports


def bench_epoch_seconds(config: RunConfig, kind: str, reports: list[tuple[str, dict]]) -> tuple[float, str] | None:
    """Seconds per epoch of `config` on its corpus on a `kind` device (cpu or cuda) from the newest report that
    timed its shape, at its corpus's vocabulary, on the path training runs (default, or reference for impl
    reference); capped by max_batches. A report's epoch_seconds counts its own corpus's batches (PTB's in
    reports older than the corpus key); another corpus's are counted here from its step times."""
    path = "reference" if config.impl == "reference" else "default"
    corpus = corpora.get(config.corpus)
    for name, report in reports:
        if str(report.get("device", "")).split(":")[0] != kind:
            continue
        # a case's sequence, embedding and vocabulary (a test's tiny case is not a PTB shape)
        shapes = {case.get("name"): (case.get("seq_len"), case.get("emb_size"), case.get("vocab_size"))
                  for case in report.get("cases", [])}
        case_corpus = {case.get("name"): case.get("corpus") for case in report.get("cases", [])}
        wanted = (config.seq_len, config.emb_size, corpus.vocab_size)
        for result in report["results"]:
            if (result.get("path") == path and result.get("epoch_seconds") is not None
                    and (result.get("model"), result.get("hidden_size"), result.get("num_layers"),
                         result.get("batch_size")) == (config.model, config.hidden_size, config.num_layers,
                                                       config.batch_size)
                    and shapes.get(result.get("case"), (report.get("seq_len"), report.get("emb_size"),
                                                        report.get("vocab_size"))) == wanted):
                projected = case_corpus.get(result.get("case")) or report.get("corpus", corpora.PTB.name)
                if not config.max_batches and projected == corpus.name:
                    return result["epoch_seconds"], name
                train, valid = (min(num_batches(corpus.tokens[split], config.batch_size, config.seq_len),
                                    config.max_batches or math.inf) for split in ("train", "valid"))
                return (train * result["train_ms"] + valid * result["eval_ms"]) / 1000, name
    return None


def project_costs(settings: list[Setting], profile: ClusterProfile,
                  reports: list[tuple[str, dict]]) -> list[SettingCost]:
    gpus = profile_gpus(profile)
    costs = []
    for setting in settings:
        kind = "cuda" if gpus and setting.config.device != "cpu" else "cpu"
        found = bench_epoch_seconds(setting.config, kind, reports)
        costs.append(SettingCost(setting, gpus, profile.cpus_per_task, profile.mem_gb, profile.time_min,
                                 *(found or (None, None))))
    return costs


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def cost_table(costs: list[SettingCost], profile: ClusterProfile, bench_command: str = "ptblm bench --full") -> str:
    """The table, then the totals: projected hours and GPU-hours (gpus x time, each run as if alone);
    `bench_command`: what times the settings without an estimate (the experiment's, with its --set texts)."""
    if not costs:
        return "cost: nothing to run"
    rows = []
    for cost in costs:
        limit = f"{cost.time_min} min"
        if cost.requeues:
            limit += f" ({count(cost.requeues, 'requeue')}" + (
                f", over max_timeouts {profile.max_timeouts})" if cost.requeues > profile.max_timeouts else ")")
        rows.append((cost.setting.index, cost.setting.run_name, cost.gpus, cost.cpus,
                     "-" if cost.mem_gb is None else f"{cost.mem_gb:g} GB", limit,
                     "no estimate" if cost.epoch_seconds is None else f"{cost.epoch_seconds:,.0f}",
                     "-" if cost.seconds is None else _hours(cost.seconds)))
    table = tabulate(rows, headers=["#", "run", "gpus", "cpus", "mem", "time limit", "s/epoch", "projected"],
                     disable_numparse=True)
    known = [cost for cost in costs if cost.seconds is not None]
    unknown = len(costs) - len(known)
    sources = sorted({cost.bench for cost in known})
    seconds = sum(cost.seconds for cost in known)
    if known:
        gpu_hours = sum(cost.seconds * cost.gpus for cost in known) / 3600
        core_hours = sum(cost.seconds * cost.cpus for cost in known) / 3600
        hours = (f"{gpu_hours:.2f} GPU-hours (gpus" if gpu_hours else f"no GPU, {core_hours:.2f} core-hours (cpus")
        table += (f"\nprojected total for {len(known)} of {count(len(costs), 'setting')}: {_hours(seconds)}, {hours} x "
                  f"projected time, step time only, each run as if alone; from {', '.join(sources)})")
    if unknown:
        kind = "cuda" if costs[0].gpus else "cpu"
        table += (f"\nno estimate for {count(unknown, 'setting')}: no results/bench/*.json of "
                  f"device kind {kind} timed its shape at its corpus's vocabulary (`{bench_command}` on such a "
                  f"device writes one)")
    return table
