"""`ptblm figures`: per experiment, perplexity against epoch and against wall-clock time.

Figures are drawn with matplotlib's object API on an Agg canvas chosen here, in code: no pyplot,
no global backend or figure state, and no display needed (Slurm nodes, CI).
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator

from . import latex
from .summary import RunSummary, by_experiment, differing_keys, file_stem, hyper_parameter

FOLDER = "figures"  # inside the report folder
TIME_UNITS = ((3 * 3600, 3600, "h"), (3 * 60, 60, "min"), (0, 1, "s"))  # (from this many seconds, divisor, unit)


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure
    return figure


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """stem.pdf (for LaTeX) and stem.png (for people and Markdown)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for path in paths:
        figure.savefig(path, dpi=150)
    return paths


def drawable(values: list[float]) -> list[float]:
    """inf/nan -> nan, which matplotlib leaves as a gap (inf breaks a log axis)."""
    return [value if math.isfinite(value) else math.nan for value in values]


def log_y_axis(axis) -> None:
    """Log scale; over less than two decades, ticks labelled as plain numbers (20, 30) instead of 2 x 10^1."""
    axis.set_yscale("log")
    low, high = axis.get_ylim()
    if high < 100 * low:
        axis.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        axis.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axis.grid(True, which="both", alpha=0.3)


def time_unit(max_seconds: float) -> tuple[float, str]:
    """The divisor and name of a unit that keeps the time axis readable."""
    return next((divisor, name) for threshold, divisor, name in TIME_UNITS if max_seconds >= threshold)


def plot_experiment(summaries: list[RunSummary]) -> Figure:
    """Two panels sharing a log perplexity axis; one colour per setting, train dashed, validation solid."""
    figure = new_figure(11, 4.6)
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    differ, _ = differing_keys(summaries)
    divisor, unit = time_unit(max(s.wall_clock_seconds or 0.0 for s in summaries))
    colours = [f"C{i % 10}" for i in range(len(summaries))]
    handles = []
    for colour, summary in zip(colours, summaries):
        curves = summary.run.curves
        train, valid = drawable(curves.column("train_ppl")), drawable(curves.column("valid_ppl"))
        epochs = curves.column("epoch")
        seconds = [value / divisor for value in curves.column("wall_clock_seconds")]
        for axis, x in ((by_epoch, epochs), (by_time, seconds)):
            axis.plot(x, train, color=colour, linestyle="--", marker="o", markersize=3)
            axis.plot(x, valid, color=colour, linestyle="-", marker="o", markersize=3)
        label = summary.label(differ) + ("" if summary.complete else f" [{summary.epochs_label()}]")
        handles.append(Line2D([], [], color=colour, label=label))
    handles += [Line2D([], [], color="black", linestyle="--", label="train"),
                Line2D([], [], color="black", linestyle="-", label="validation")]
    for axis in (by_epoch, by_time):
        log_y_axis(axis)
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel(f"wall-clock time ({unit})")
    by_epoch.set_ylabel("perplexity (log scale)")
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small")
    return figure


def caption(experiment: str, description: str, summaries: list[RunSummary]) -> str:
    _, shared = differing_keys(summaries)
    shared_text = ", ".join(hyper_parameter(summaries[0].config, key) for key in shared)
    return (f"{latex.escape(description or 'Experiment ' + experiment)}: perplexity (log scale) against epoch "
            f"(left) and against wall-clock time of training and validation (right). Dashed: train "
            f"(measured with dropout, while training); solid: validation. One colour per setting, numbered as "
            f"the rows of Table~\\ref{{tab:{file_stem(experiment)}}}"
            + (f"; shared by all settings: {latex.escape(shared_text)}" if shared_text else "")
            + ". Runs in brackets are not complete; non-finite perplexities (diverged epochs) are not drawn.")


def write_figures(summaries: list[RunSummary], report_dir: Path, descriptions: dict[str, str]) -> list[Path]:
    """figures/exp-<name>.{pdf,png,tex} for every experiment; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    written = []
    for experiment, group in by_experiment(summaries).items():
        stem = out_dir / file_stem(experiment)
        written += save_figure(plot_experiment(group), stem)
        snippet = latex.figure_float(f"{FOLDER}/{stem.name}",  # relative to report.tex
                                     caption(experiment, descriptions.get(experiment, ""), group),
                                     f"fig:{stem.name}")
        stem.with_suffix(".tex").write_text(snippet)
        written.append(stem.with_suffix(".tex"))
    return written
