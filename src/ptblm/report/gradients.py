"""`ptblm gradients`: how far back the loss at the last time step reaches, for each analysed recurrent model
(report.trained.analysed_runs: the RNN, the GRU and an LSTM when there is one).

For one seeded training minibatch, in eval mode (no dropout) from a zero hidden state:

    l_b = the cross-entropy of sequence b at the final time step T only;  L = (1/B) sum_b l_b
    g_t = (1/B) sum_b dl_b/dh_t^b   (h_t^b: sequence b's chosen hidden state at step t; the LSTM's h_t,
                                     not its cell state c_t)
        = sum_b dL/dh_t^b, since l_b depends on sequence b's states only: a single batch mean
    plotted: ||g_t||_2 against t, each curve min-max rescaled to [0, 1], and the raw ||g_t||_2

A vanishing gradient shows as a curve that is ~0 for early t and rises only near T. The raw norms
go to gradients.json beside the plot, since the rescaling hides their scale.
"""
from __future__ import annotations

import copy

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from ..outputs import write_text
from .. import wording
from ..data import batch_at, batchify, num_batches
from ..models._recurrent import RecurrentLM
from . import latex
from .plotting import PRINT_WIDTH, log_y_axis, new_figure, panel_tags, save_figure, style
from .trained import TrainedModel

FOLDER = "gradients"  # inside the report folder
HIDDEN_CHOICES = {  # --hidden: which h_t, as the caption says it
    "top": "the top layer's hidden state",
    "each": "each layer's hidden state (one curve per layer)",
    "all": "all layers' hidden states concatenated",
}


@dataclass
class GradientCurve:
    label: str  # legend entry: the model, or the model and a layer ("GRU layer 1")
    layer: str  # "top", a 1-based layer number, or "all"
    raw_norms: list[float]  # ||g_t|| for t = 1..T

    @property
    def rescaled(self) -> list[float]:
        return min_max(self.raw_norms)


@dataclass
class ModelGradients:
    model: str
    run: str  # the run folder
    run_label: str  # experiment/run, for the caption
    best_epoch: int
    batch_index: int  # which minibatch of the training split (seeded draw)
    batch_size: int
    seq_len: int
    loss: float  # L, the mean cross-entropy at t = T
    curves: list[GradientCurve]


def min_max(values: list[float]) -> list[float]:
    """Rescale to [0, 1]; a constant curve becomes all zeros."""
    low, high = min(values), max(values)
    return [(v - low) / (high - low) if high > low else 0.0 for v in values]


def seeded_minibatch(train_ids: list[int], batch_size: int, seq_len: int, seed: int) -> tuple[Tensor, Tensor, int]:
    """One (inputs, targets) pair of the training split, each (seq_len, batch), and its batch index."""
    data = torch.from_numpy(batchify(train_ids, batch_size))  # (batch, batch_len)
    count = num_batches(len(train_ids), batch_size, seq_len)
    index = int(torch.randint(count, (1,), generator=torch.Generator().manual_seed(seed)))
    inputs, targets = batch_at(data, index, seq_len)  # (batch, seq) each, targets shifted by one token
    return inputs.t(), targets.t(), index  # (seq, batch) each


def hidden_gradient_norms(model: RecurrentLM, inputs: Tensor, targets: Tensor,
                          hidden: str) -> tuple[float, dict[str, list[float]]]:
    """L and, per curve ("top", "1".."layers" or "all"), the T norms ||g_t|| (see the module docstring)."""
    if hidden not in HIDDEN_CHOICES:
        raise ValueError(f"hidden = {hidden!r} is invalid; valid: {', '.join(HIDDEN_CHOICES)}")
    with torch.enable_grad():
        # logits (seq, batch, vocab); states[layer][t] (batch, hidden)
        logits, _, states = model.forward_with_states(inputs, model.initial_state(inputs.size(1)))
        loss = F.cross_entropy(logits[-1], targets[-1])  # final step only, mean over the batch
        layers = [model.num_layers - 1] if hidden == "top" else list(range(model.num_layers))
        gradients = torch.autograd.grad(loss, [h for layer in layers for h in states[layer]])
    seq_len = inputs.size(0)
    # per layer: T x (batch, hidden) dL/dh_t^b -> (T, batch, hidden) -> sum over b = batch mean of dl_b/dh_t^b
    means = {layer: torch.stack(gradients[i * seq_len:(i + 1) * seq_len]).sum(dim=1)
             for i, layer in enumerate(layers)}
    if hidden == "top":
        curves = {"top": means[layers[0]].norm(dim=-1)}
    elif hidden == "each":
        curves = {str(layer + 1): mean.norm(dim=-1) for layer, mean in means.items()}
    else:  # the norm of the concatenation over layers: (T, layers * hidden) -> (T,)
        curves = {"all": torch.cat(list(means.values()), dim=-1).norm(dim=-1)}
    return loss.item(), {key: norms.tolist() for key, norms in curves.items()}


def analyse(trained: TrainedModel, hidden: str, seed: int) -> ModelGradients:
    config = trained.config
    inputs, targets, index = seeded_minibatch(trained.corpus.train, config.batch_size, config.seq_len, seed)
    # float64: a vanilla RNN's gradient shrinks tens of times per step and underflows float32 within 35 steps
    model = copy.deepcopy(trained.model).to(torch.float64)
    loss, norms = hidden_gradient_norms(model, inputs, targets, hidden)
    curves = [GradientCurve(trained.name if key in ("top", "all") else f"{trained.name} layer {key}", key, values)
              for key, values in norms.items()]
    return ModelGradients(trained.name, str(trained.folder), trained.run_label, trained.epoch, index,
                          config.batch_size, config.seq_len, loss, curves)


def plot(results: list[ModelGradients]) -> Figure:
    """(a) the rescaled norms (the assignment's plot); (b) the raw norms on a log axis, where decay shows."""
    styles = ["-", "--", ":", "-."]
    with style():
        figure = new_figure(PRINT_WIDTH, 2.6)
        rescaled, raw = figure.subplots(1, 2)
        for colour, result in enumerate(results):
            for layer, curve in enumerate(result.curves):
                steps = range(1, len(curve.raw_norms) + 1)
                line = dict(color=f"C{colour}", linestyle=styles[layer % len(styles)], marker="o")
                rescaled.plot(steps, curve.rescaled, label=curve.label, **line)
                drawable = [norm if norm > 0 else math.nan for norm in curve.raw_norms]  # 0: below float64's range
                raw.plot(steps, drawable, **line)
        tags = panel_tags()
        rescaled.set_title(f"{next(tags)} rescaled to [0, 1]", loc="left")
        rescaled.set_ylim(-0.03, 1.03)
        raw.set_title(f"{next(tags)} raw (log scale)", loc="left")
        log_y_axis([raw])
        rescaled.set_ylabel("gradient norm")
        for axis in (rescaled, raw):
            axis.set_xlabel("time step t")
            axis.grid(True, alpha=0.3)
        figure.legend(loc="outside right upper", frameon=False)
    return figure


DEFINITION = (
    "For one training minibatch of $B$ sequences, in eval mode (no dropout) and from a zero "
    "initial hidden state, $\\ell_b$ is the cross-entropy of sequence $b$ at the last time step $T$ only, and "
    "$g_t = \\frac{1}{B}\\sum_b \\partial \\ell_b / \\partial h^b_t$, the batch mean of the gradient with "
    "respect to that sequence's hidden state at step $t$ (for an LSTM $h_t$, not its cell state $c_t$), "
    "computed in float64 (the vanilla RNN's gradient underflows float32 within 35 steps; exact zeros are not "
    "drawn). Panel (a) rescales each curve to $[0, 1]$ "
    "on its own, so only its shape compares; panel (b) shows the raw $\\|g_t\\|_2$, which are also in "
    "gradients/gradients.json.")


def caption(results: list[ModelGradients], hidden: str, seed: int) -> str:
    runs = "; ".join(f"{r.model}: {latex.escape(r.run_label)}, best epoch {r.best_epoch}, minibatch {r.batch_index} "
                     f"({wording.count(r.batch_size, 'sequence')} of {wording.count(r.seq_len, 'token')})"
                     for r in results)
    return (f"Vanishing gradients: $\\|g_t\\|_2$ against $t$ for {HIDDEN_CHOICES[hidden]} $h_t$, minibatch drawn "
            f"with seed {seed} (definition in Section~\\ref{{sec:definitions}}). Runs: {runs}.")


def write_gradients(trained: list[TrainedModel], report_dir: Path, hidden: str = "top", seed: int = 0) -> list[Path]:
    """gradients/gradients.{pdf,png,json,tex}; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    results = [analyse(model, hidden, seed) for model in trained]
    written = save_figure(plot(results), out_dir / "gradients")  # save_figure creates out_dir
    record = {"hidden": hidden, "hidden_means": HIDDEN_CHOICES[hidden], "seed": seed,
              "loss": "cross-entropy at the final time step, mean over the minibatch",
              "norm": "Euclidean norm of g_t = (1/B) sum_b dl_b/dh_t^b (l_b: sequence b's cross-entropy at T), "
                      "for t = 1..T",
              "models": [{**asdict(result), "curves": [{**asdict(c), "rescaled": c.rescaled} for c in result.curves]}
                         for result in results]}
    write_text(out_dir / "gradients.json", json.dumps(record, indent=2) + "\n")
    write_text(out_dir / "gradients.tex", latex.figure_float(f"{FOLDER}/gradients", caption(results, hidden, seed),
                                                              "fig:gradients"))
    return written + [out_dir / "gradients.json", out_dir / "gradients.tex"]


def describe(path: Path) -> str:
    """Console lines: per curve, how much smaller the gradient at t = 1 is than at t = T."""
    lines = []
    for result in json.loads(Path(path).read_text())["models"]:
        for curve in result["curves"]:
            first, last = curve["raw_norms"][0], curve["raw_norms"][-1]
            lines.append(f"{curve['label']}: ||g_1|| = {first:.3g}, ||g_T|| = {last:.3g}, "
                         f"ratio {first / last:.3g}" if last else f"{curve['label']}: ||g_T|| = 0")
    return "\n".join(lines)
