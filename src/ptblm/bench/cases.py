"""What the bench times: cases (a model and shape, the course suite's or small ones) on paths.

Each case is timed on these paths:

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
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import corpora
from ..config import ConfigError, RunConfig
from ..data import num_batches
from ..jobs import load_experiment
from ..models import MODELS, architecture, build_baseline, build_model

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
        """rnn-h512-l2-bs20; a corpus other than the default is part of it, as of a run name (-wikitext-2)."""
        corpus = "" if self.corpus == corpora.DEFAULT_CORPUS else f"-{self.corpus}"
        return f"{self.model.lower()}-h{self.hidden_size}-l{self.num_layers}-bs{self.batch_size}{corpus}"

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


def suite_cases(jobs_dir: Path, experiments: tuple[str, ...] = SUITE, overrides=None) -> list[BenchCase]:
    """One case per distinct shape (and corpus) of the experiments' settings, loaded as submit loads them (with
    `overrides`, a jobs.Overrides: the --set texts), in file order, with its epoch count."""
    cases: dict[tuple, BenchCase] = {}
    for name in experiments:
        for setting in load_experiment(name, jobs_dir, overrides).settings:
            c = setting.config
            shape = (c.model, c.hidden_size, c.num_layers, c.batch_size, c.seq_len, c.emb_size, c.corpus)
            known = cases.get(shape)
            cases[shape] = (replace(known, suite_settings=known.suite_settings + 1,
                                    suite_epochs=known.suite_epochs + c.num_epochs) if known else
                            BenchCase(c.model, c.hidden_size, c.num_layers, c.batch_size, c.dp_keep_prob,
                                      1, c.num_epochs, corpora.get(c.corpus).vocab_size, c.corpus,
                                      seq_len=c.seq_len, emb_size=c.emb_size))
    return list(cases.values())


def select_cases(cases: list[BenchCase], only: list[str] | None) -> list[BenchCase]:
    """Cases whose name contains one of `only` (all without it); an error naming the choices."""
    if not only:
        return cases
    chosen = [case for case in cases if any(part in case.name for part in only)]
    if not chosen:
        raise ConfigError(f"bench: --only {' '.join(only)} matches no case; cases: "
                         f"{', '.join(case.name for case in cases)}")
    return chosen


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


def epoch_seconds(case: BenchCase, train_ms: float, eval_ms: float) -> float:
    """One epoch of the case's corpus at these step times: every training batch, then every validation batch."""
    tokens = corpora.get(case.corpus).tokens
    train = num_batches(tokens["train"], case.batch_size, case.seq_len)
    valid = num_batches(tokens["valid"], case.batch_size, case.seq_len)
    return (train * train_ms + valid * eval_ms) / 1000
