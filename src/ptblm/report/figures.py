"""`ptblm figures`: per experiment, perplexity against epoch and against wall-clock time.

Figures are drawn at the size they are printed (PRINT_WIDTH, included in report.tex unscaled) in
STYLE, whose smallest text is 8 pt, so what is set here is what the page shows. One row of panels
per architecture (per architecture and corpus when an experiment's runs read several corpora, whose
perplexities do not share an axis), epoch left and wall-clock right, tagged (a), (b), ...; legends sit
outside the data.
matplotlib's object API on an Agg canvas chosen here, in code: no pyplot, no global backend or
figure state, and no display needed (Slurm nodes, CI).
"""
from __future__ import annotations

import math
import string
import textwrap
from pathlib import Path

import matplotlib
import numpy
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from ..outputs import write_figure, write_text
from ..config import MODELS
from . import latex
from .comparable import by_corpus, corpus_tag
from .summary import (RunSummary, by_experiment, differing_keys, file_stem, hyper_parameter,
                      published_comparisons)

FOLDER = "figures"  # inside the report folder
TIME_UNITS = ((3 * 3600, 3600, "h"), (3 * 60, 60, "min"), (0, 1, "s"))  # (from this many seconds, divisor, unit)
PRINT_WIDTH = 6.5  # inches: the text width of report.tex (letter paper, 2 cm margins) is 6.9 in
ROW_HEIGHT = 1.85  # inches per architecture: three rows and a table fit one page
SMALLEST_PT = 8
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": SMALLEST_PT,
         "ytick.labelsize": SMALLEST_PT, "legend.fontsize": SMALLEST_PT, "figure.titlesize": 9,
         "lines.linewidth": 1.2, "lines.markersize": 3, "pdf.fonttype": 42}
CONVENTIONS = ("Dashed lines are train perplexity (averaged over the epoch, with dropout on) and solid lines "
               "validation perplexity, both on a log scale (ticks 20k, 3M, 2B: thousands, millions, billions); "
               "wall-clock time is that of training and validation. Legend numbers are table rows; runs with "
               "[brackets] are not complete; non-finite perplexities (diverged epochs) are not drawn.")
SEED_CONVENTION = ("A setting of several seeds (n in the legend) is drawn as the mean curve of its seeds, with the "
                   "min-max range of their validation ppl shaded.")
PUBLISHED_CONVENTION = ("A setting of the published study has that study's validation curve beside it, light and "
                        "dash-dotted (dashed is our train ppl), by epoch up to the run's planned epochs (not by "
                        "wall-clock: the study ran on another machine).")
CORPUS_CONVENTION = ("An experiment whose runs read several corpora has a row of panels per architecture and "
                     "corpus: perplexities on different texts share no axis.")
MIN_LOG_SPAN = math.log10(1.5)  # decades: a y axis spans at least a factor 1.5
LOG_MARGIN = 0.08  # of the y axis's decades, above and below the data (a marker at the edge stays whole)
TICK_MANTISSAS = ((1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 4, 5, 6, 8),
                  (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))  # of the labelled y ticks, densest first
MAX_TICKS = 5  # labelled ticks per y axis
MIN_TICK_GAP = 0.12  # of the y axis's height between labelled ticks: 8 pt labels on a panel of ~1.2 in
LARGE_TICKS = ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k"))  # (from, divisor, suffix) of tick labels
EMPTY_PANEL = "no finished epoch\nwith a finite perplexity yet"
LEGEND_CHARS = 26  # per legend line: the legend column stays ~1.6 in wide, whatever the settings
NO_BREAK = "\u00a0"  # textwrap breaks at ASCII whitespace only
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
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    with style():
        for path in paths:
            write_figure(figure, path, dpi=150)
    return paths


def panel_tags():
    """'(a)', '(b)', ... for the panels, in reading order."""
    return (f"({letter})" for letter in string.ascii_lowercase)


def drawable(values: list[float]) -> list[float]:
    """inf/nan -> nan, which matplotlib leaves as a gap (inf breaks a log axis)."""
    return [value if math.isfinite(value) else math.nan for value in values]


def drawn_values(axis, dimension: int) -> list[float]:
    """The finite x (dimension 0) or y (1) values of every line and shaded band drawn on `axis`."""
    values = []
    for line in axis.get_lines():
        values += list(line.get_xdata() if dimension == 0 else line.get_ydata())
    for collection in axis.collections:
        for path in collection.get_paths():
            values += list(path.vertices[:, dimension])
    return [float(value) for value in values if value is not None and math.isfinite(value)]


def log_limits(values: list[float]) -> tuple[float, float] | None:
    """Limits of a log axis around the positive values, at least MIN_LOG_SPAN apart (one point, or equal
    ones, would otherwise give a sliver of axis and ticks in the third digit); None when none is positive."""
    positive = [value for value in values if value > 0]
    if not positive:
        return None
    low, high = math.log10(min(positive)), math.log10(max(positive))
    if high - low < MIN_LOG_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_LOG_SPAN / 2, middle + MIN_LOG_SPAN / 2
    margin = LOG_MARGIN * (high - low)
    return 10 ** (low - margin), 10 ** (high + margin)


def log_ticks(low: float, high: float) -> list[float]:
    """The densest of TICK_MANTISSAS (then every 1st, 2nd, ... decade) whose labels keep MIN_TICK_GAP apart and
    are at most MAX_TICKS: 100 200 500 on a wide axis, 140 160 180 on a narrow one."""
    span = math.log10(high) - math.log10(low)
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    candidates = [sorted(m * 10.0 ** d for d in decades for m in mantissas) for mantissas in TICK_MANTISSAS]
    candidates += [[10.0 ** d for d in decades if d % stride == 0] for stride in range(2, len(decades) + 1)]
    fallback = []
    for ticks in candidates:
        ticks = [tick for tick in ticks if low <= tick <= high]
        gaps = [math.log10(b / a) / span for a, b in zip(ticks, ticks[1:])]
        if len(ticks) <= MAX_TICKS and min(gaps, default=1.0) >= MIN_TICK_GAP:
            if len(ticks) >= 2:
                return ticks
            fallback = fallback or ticks
    return fallback


def plain(value: float) -> str:
    """Three significant digits, never in scientific notation: 5000, 1.5, 0.02."""
    return numpy.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def tick_text(value: float) -> str:
    """A tick label in plain characters at the label's own size: 300, 1.5, 20k, 3M, 2B, 1e15, 1e-07 is 1e-7
    (never Python's 1e+05, nor superscripts, which would print below 8 pt)."""
    for threshold, divisor, suffix in LARGE_TICKS:
        if threshold <= value < 1e12:
            return plain(value / divisor) + suffix
    if 1e-3 <= value < 1e12:
        return plain(value)
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def log_y_axis(axes: list, empty_text: str = "nothing to draw") -> None:
    """A log y axis shared by `axes`, its limits and ticks from what they draw (finite, positive values),
    labelled in plain text; axes with nothing to draw keep a linear axis, no ticks and `empty_text`."""
    limits = log_limits([value for axis in axes for value in drawn_values(axis, 1)])
    for axis in axes:
        if limits is None:
            axis.yaxis.set_major_locator(NullLocator())
            axis.text(0.5, 0.5, empty_text, transform=axis.transAxes, ha="center", va="center", wrap=True)
            continue
        axis.set_yscale("log")
        axis.set_ylim(*limits)
        axis.yaxis.set_major_locator(FixedLocator(log_ticks(*limits)))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: tick_text(value)))
        axis.yaxis.set_minor_formatter(NullFormatter())
        axis.grid(True, which="both", alpha=0.3)


def linear_x_axis(axis, start: float | None = None, integer: bool = False) -> None:
    """x limits from the finite values drawn (from `start` when given), never a zero-width range: one epoch
    is drawn on an axis from 0.5 to 1.5 ticked 1, not from 0.945 to 1.055 ticked every 0.015. Nothing drawn:
    no ticks."""
    values = drawn_values(axis, 0)
    if not values:
        axis.set_xlim(0.0, 1.0)
        axis.xaxis.set_major_locator(NullLocator())
        return
    low, high = min(values), max(values)
    if start is not None:
        low = min(low, start)
    margin = max(0.05 * (high - low), 0.5 if integer else 0.05 * max(abs(high), 1.0))
    axis.set_xlim(low if start is not None else low - margin, high + margin)
    axis.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=integer, min_n_ticks=1))


def time_unit(max_seconds: float) -> tuple[float, str]:
    """The divisor and name of a unit that keeps the time axis readable."""
    return next((divisor, name) for threshold, divisor, name in TIME_UNITS if max_seconds >= threshold)


def legend_label(summary: RunSummary, differ: tuple[str, ...]) -> str:
    """'(3) ADAM lr 0.01': the row number and what differs within its panel (optimizer and lr if nothing),
    wrapped at LEGEND_CHARS so that no legend narrows the panels beside it; '[2/20 running]' never splits."""
    keys = tuple(key for key in differ if key != "model") or ("optimizer", "initial_lr")
    seeds = f" n={summary.n}" if summary.seeds else ""
    state = "" if summary.complete else " [" + summary.epochs_label().replace(" ", NO_BREAK) + "]"
    setting = " ".join(hyper_parameter(summary.config, key).replace(" ", NO_BREAK) for key in keys)
    lines = textwrap.wrap(f"({summary.number}) {setting}{seeds}{state}", LEGEND_CHARS, subsequent_indent="    ",
                          break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines).replace(NO_BREAK, " ")


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


def panel_rows(summaries: list[RunSummary]) -> list[tuple[str, list[RunSummary]]]:
    """(title, its summaries) per row of panels: one per architecture ('GRU'), or per corpus and architecture
    ('GRU on wikitext-2') when the summaries read several corpora; corpora in row order, then MODELS order."""
    groups = list(by_corpus(summaries, lambda s: s.run).values())
    rows = []
    for group in groups:
        for model in MODELS:
            runs = [s for s in group if s.model == model]
            if runs:
                rows.append((model + (f" on {corpus_tag(runs[0].run)}" if len(groups) > 1 else ""), runs))
    return rows


def plot_experiment(summaries: list[RunSummary]) -> Figure:
    """A row per architecture (and corpus): perplexity vs epoch (left), vs wall-clock (right), sharing a log
    axis."""
    published = published_curves(summaries)
    rows = panel_rows(summaries)
    divisor, unit = time_unit(max((seconds for s in summaries for seconds in [s.wall_clock_seconds]
                                   if seconds is not None and math.isfinite(seconds)), default=0.0))
    with style():
        figure = new_figure(PRINT_WIDTH, ROW_HEIGHT * len(rows) + 0.3)
        grid = figure.subplots(len(rows), 2, squeeze=False)
        tags = panel_tags()
        for (by_epoch, by_time), (title, group) in zip(grid, rows):
            differ, _ = differing_keys(group)
            for colour, summary in enumerate(group):
                curves = summary.run.curves
                train, valid = drawable(curves.column("train_ppl")), drawable(curves.column("valid_ppl"))
                seconds = drawable([value / divisor for value in curves.column("wall_clock_seconds")])
                for axis, x in ((by_epoch, curves.column("epoch")), (by_time, seconds)):
                    seed_band(axis, x, summary, f"C{colour % 10}")
                    axis.plot(x, train, color=f"C{colour % 10}", linestyle="--", marker="o")
                    axis.plot(x, valid, color=f"C{colour % 10}", linestyle="-", marker="o",
                              label=legend_label(summary, differ))
                if summary.number in published:
                    by_epoch.plot(*published[summary.number], color=f"C{colour % 10}", **PUBLISHED_STYLE)
            by_time.sharey(by_epoch)
            log_y_axis([by_epoch, by_time], EMPTY_PANEL)
            linear_x_axis(by_epoch, integer=True)
            linear_x_axis(by_time, start=0.0)
            for axis, what in ((by_epoch, "by epoch"), (by_time, "by time")):
                axis.set_title(f"{next(tags)} {title}, {what}", loc="left")
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
        write_text(stem.with_suffix(".tex"), snippet)
        written.append(stem.with_suffix(".tex"))
    return written
