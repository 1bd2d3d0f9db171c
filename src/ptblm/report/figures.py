"""`ptblm figures`: per experiment, perplexity against epoch and against wall-clock time.

Figures are drawn at the size they are printed (PRINT_WIDTH, included in report.tex unscaled) in
STYLE, whose smallest text is 8 pt, so what is set here is what the page shows. One row of panels
per architecture, epoch left and wall-clock right, tagged (a), (b), ...; legends sit outside the data.
matplotlib's object API on an Agg canvas chosen here, in code: no pyplot, no global backend or
figure state, and no display needed (Slurm nodes, CI).
"""
from __future__ import annotations

import math
import string
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, MaxNLocator

from ..config import MODELS
from . import latex
from .summary import RunSummary, by_experiment, differing_keys, file_stem, published_comparisons

FOLDER = "figures"  # inside the report folder
TIME_UNITS = ((3 * 3600, 3600, "h"), (3 * 60, 60, "min"), (0, 1, "s"))  # (from this many seconds, divisor, unit)
PRINT_WIDTH = 6.5  # inches: the text width of report.tex (letter paper, 2 cm margins) is 6.9 in
ROW_HEIGHT = 1.85  # inches per architecture: three rows and a table fit one page
SMALLEST_PT = 8
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": SMALLEST_PT,
         "ytick.labelsize": SMALLEST_PT, "legend.fontsize": SMALLEST_PT, "figure.titlesize": 9,
         "lines.linewidth": 1.2, "lines.markersize": 3, "pdf.fonttype": 42}
CONVENTIONS = ("Dashed lines are train perplexity (averaged over the epoch, with dropout "
               "on) and solid lines validation perplexity, both on a log scale; wall-clock time is that of "
               "training and validation. Legend numbers are table rows; runs with [brackets] are not complete; "
               "non-finite perplexities (diverged epochs) are not drawn.")
SEED_CONVENTION = ("A setting of several seeds (n in the legend) is drawn as the mean curve of its seeds, with the "
                   "min-max range of their validation ppl shaded.")
PUBLISHED_CONVENTION = ("A setting of the published study has that study's validation curve beside it, light and "
                        "dash-dotted (dashed is our train ppl), by epoch up to the run's planned epochs (not by "
                        "wall-clock: the study ran on another machine).")
BAND_ALPHA = 0.3
PUBLISHED_STYLE = {"linestyle": "-.", "alpha": 0.45, "linewidth": 1.0, "zorder": 3}  # above ours: seen when equal


def style():
    """The rcParams every figure is drawn and saved under."""
    return matplotlib.rc_context(STYLE)


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure
    return figure


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """stem.pdf (for LaTeX) and stem.png (for people and Markdown), at the figure's own size."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    with style():
        for path in paths:
            figure.savefig(path, dpi=150)
    return paths


def panel_tags():
    """'(a)', '(b)', ... for the panels, in reading order."""
    return (f"({letter})" for letter in string.ascii_lowercase)


def drawable(values: list[float]) -> list[float]:
    """inf/nan -> nan, which matplotlib leaves as a gap (inf breaks a log axis)."""
    return [value if math.isfinite(value) else math.nan for value in values]


def log_y_axis(axis) -> None:
    """Log scale, ticks as plain text (20, 30 or 1e+05: no superscripts, which would print below 8 pt)."""
    axis.set_yscale("log")
    low, high = axis.get_ylim()
    few_decades = high < 100 * low
    axis.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=not few_decades))
    axis.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=not few_decades, minor_thresholds=(2, 0.5)))
    axis.grid(True, which="both", alpha=0.3)


def time_unit(max_seconds: float) -> tuple[float, str]:
    """The divisor and name of a unit that keeps the time axis readable."""
    return next((divisor, name) for threshold, divisor, name in TIME_UNITS if max_seconds >= threshold)


def legend_label(summary: RunSummary, differ: tuple[str, ...]) -> str:
    """'(3) ADAM lr 0.01': the row number and what differs within its panel (optimizer and lr if nothing)."""
    keys = tuple(key for key in differ if key != "model") or ("optimizer", "initial_lr")
    seeds = f" n={summary.n}" if summary.seeds else ""
    return summary.label(keys) + seeds + ("" if summary.complete else f" [{summary.epochs_label()}]")


def seed_band(axis, x: list[float], summary: RunSummary, colour: str) -> None:
    """The min-max range of the seeds' validation ppl, shaded (a setting of one seed has none)."""
    if not summary.seeds:
        return
    from ..results import mean_epochs
    curve = mean_epochs(list(summary.seeds))
    axis.fill_between(x, drawable(list(curve["valid_ppl_min"])), drawable(list(curve["valid_ppl_max"])),
                      color=colour, alpha=BAND_ALPHA, linewidth=0)


def published_curves(summaries: list[RunSummary]) -> dict[int, tuple[list[int], list[float]]]:
    """Row number -> (epochs, validation ppl) of the published study's run of its setting, up to the run's
    planned epochs; settings of no published setting are absent."""
    compared = published_comparisons(summaries)
    if not compared:
        return {}
    from ..published import SOURCE, published_epochs
    study = published_epochs().set_index(SOURCE)
    curves = {}
    for summary in summaries:
        if summary.number in compared:
            row = compared[summary.number]
            curve = study.loc[(row["published_experiment"], row["published_setting"])]
            curve = curve[curve["epoch"] <= summary.num_epochs]
            curves[summary.number] = (list(curve["epoch"]), list(curve["valid_ppl"]))
    return curves


def plot_experiment(summaries: list[RunSummary]) -> Figure:
    """A row per architecture: perplexity vs epoch (left), vs wall-clock (right), sharing a log axis."""
    published = published_curves(summaries)
    models = [model for model in MODELS if any(s.model == model for s in summaries)]
    divisor, unit = time_unit(max(s.wall_clock_seconds or 0.0 for s in summaries))
    with style():
        figure = new_figure(PRINT_WIDTH, ROW_HEIGHT * len(models) + 0.3)
        grid = figure.subplots(len(models), 2, squeeze=False)
        tags = panel_tags()
        for (by_epoch, by_time), model in zip(grid, models):
            group = [s for s in summaries if s.model == model]
            differ, _ = differing_keys(group)
            for colour, summary in enumerate(group):
                curves = summary.run.curves
                train, valid = drawable(curves.column("train_ppl")), drawable(curves.column("valid_ppl"))
                seconds = [value / divisor for value in curves.column("wall_clock_seconds")]
                for axis, x in ((by_epoch, curves.column("epoch")), (by_time, seconds)):
                    seed_band(axis, x, summary, f"C{colour % 10}")
                    axis.plot(x, train, color=f"C{colour % 10}", linestyle="--", marker="o")
                    axis.plot(x, valid, color=f"C{colour % 10}", linestyle="-", marker="o",
                              label=legend_label(summary, differ))
                if summary.number in published:
                    by_epoch.plot(*published[summary.number], color=f"C{colour % 10}", **PUBLISHED_STYLE)
            by_time.sharey(by_epoch)
            for axis, what in ((by_epoch, "by epoch"), (by_time, "by wall-clock")):
                log_y_axis(axis)
                axis.set_title(f"{next(tags)} {model}, {what}", loc="left")
            by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
            by_epoch.set_ylabel("perplexity")
            by_time.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
        grid[-1][0].set_xlabel("epoch")
        grid[-1][1].set_xlabel(f"wall-clock time ({unit})")
        keys = [Line2D([], [], color="black", linestyle="-", label="validation"),
                Line2D([], [], color="black", linestyle="--", label="train")]
        if published:
            keys.append(Line2D([], [], color="black", label="published validation", **PUBLISHED_STYLE))
        if any(summary.seeds for summary in summaries):
            keys.append(Patch(color="black", alpha=BAND_ALPHA, linewidth=0, label="seeds' min-max"))
        figure.legend(handles=keys, loc="outside upper center", ncols=len(keys), frameon=False)
    return figure


def caption(experiment: str) -> str:
    """Short: the runs are those of the experiment's table; the conventions are in the Definitions."""
    return (f"Learning curves of the runs of Table~\\ref{{tab:{file_stem(experiment)}}}: perplexity against epoch "
            f"(left) and wall-clock time (right), one row per architecture (conventions in "
            f"Section~\\ref{{sec:definitions}}).")


def write_figures(summaries: list[RunSummary], report_dir: Path) -> list[Path]:
    """figures/exp-<name>.{pdf,png,tex} for every experiment; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    written = []
    for experiment, group in by_experiment(summaries).items():
        stem = out_dir / file_stem(experiment)
        written += save_figure(plot_experiment(group), stem)
        snippet = latex.figure_float(f"{FOLDER}/{stem.name}",  # relative to report.tex
                                     caption(experiment), f"fig:{stem.name}")
        stem.with_suffix(".tex").write_text(snippet)
        written.append(stem.with_suffix(".tex"))
    return written
