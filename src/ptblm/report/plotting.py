"""What every figure of the report shares: drawn at the size it is printed, log y axes with plain tick labels.

Figures are drawn at the size they are printed (PRINT_WIDTH, included in report.tex unscaled) in STYLE,
whose smallest text is 8 pt, so what is set here is what the page shows. matplotlib's object API on an Agg
canvas chosen here, in code: no pyplot, no global backend or figure state, and no display needed (Slurm
nodes, CI). The learning curves (figures.py) and the gradient norms (gradients.py) are drawn with these.
"""
from __future__ import annotations

import math
import string
from pathlib import Path

import matplotlib
import numpy
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from ..outputs import write_figure

PRINT_WIDTH = 6.5  # inches: the text width of report.tex (letter paper, 2 cm margins) is 6.9 in
SMALLEST_PT = 8
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": SMALLEST_PT,
         "ytick.labelsize": SMALLEST_PT, "legend.fontsize": SMALLEST_PT, "figure.titlesize": 9,
         "lines.linewidth": 1.2, "lines.markersize": 3, "pdf.fonttype": 42}
MIN_LOG_SPAN = math.log10(1.5)  # decades: a y axis spans at least a factor 1.5
LOG_MARGIN = 0.08  # of the y axis's decades, above and below the data (a marker at the edge stays whole)
TICK_MANTISSAS = ((1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 4, 5, 6, 8),
                  (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))  # of the labelled y ticks, densest first
MAX_TICKS = 5  # labelled ticks per y axis
MIN_TICK_GAP = 0.12  # of the y axis's height between labelled ticks: 8 pt labels on a panel of ~1.2 in
LARGE_TICKS = ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k"))  # (from, divisor, suffix) of tick labels


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
