"""`ptblm figures`: per experiment, perplexity against epoch and against wall-clock time.

One row of panels per architecture (per architecture and corpus when an experiment's runs read several
corpora, whose perplexities do not share an axis), epoch left and wall-clock right, tagged (a), (b), ...;
legends sit outside the data. Drawn at print size, in the report's style (plotting.py).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..outputs import write_text
from ..config import MODELS
from . import latex
from .comparable import by_corpus, corpus_tag
from .plotting import (PRINT_WIDTH, drawable, linear_x_axis, log_y_axis, new_figure, panel_tags, save_figure,
                       style)
from .summary import (RunSummary, by_experiment, differing_keys, file_stem, hyper_parameter,
                      published_comparisons)

FOLDER = "figures"  # inside the report folder
TIME_UNITS = ((3 * 3600, 3600, "h"), (3 * 60, 60, "min"), (0, 1, "s"))  # (from this many seconds, divisor, unit)
ROW_HEIGHT = 1.85  # inches per architecture: three rows and a table fit one page
MAX_ROWS = 4  # rows of panels in one figure: four fill a page; an experiment with more gets more figures
TITLE_CHARS = 34  # a panel's title fits its width up to this; a longer one drops ', by epoch' (the x axis says it)
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
EMPTY_PANEL = "no finished epoch\nwith a finite perplexity yet"
LEGEND_CHARS = 26  # per legend line: the legend column stays ~1.6 in wide, whatever the settings
NO_BREAK = "\u00a0"  # textwrap breaks at ASCII whitespace only
BAND_ALPHA = 0.3
PUBLISHED_STYLE = {"linestyle": "-.", "alpha": 0.45, "linewidth": 1.0, "zorder": 3}  # above ours: seen when equal


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


def plot_experiment(summaries: list[RunSummary], rows: list[tuple[str, list[RunSummary]]] | None = None,
                    first_tag: int = 0) -> Figure:
    """A row per architecture (and corpus): perplexity vs epoch (left), vs wall-clock (right), sharing a log
    axis. `rows`: some of panel_rows(summaries) (a figure continued), their panels tagged from `first_tag` on."""
    rows = panel_rows(summaries) if rows is None else rows
    summaries = [summary for _, group in rows for summary in group]
    published = published_curves(summaries)
    divisor, unit = time_unit(max((seconds for s in summaries for seconds in [s.wall_clock_seconds]
                                   if seconds is not None and math.isfinite(seconds)), default=0.0))
    with style():
        figure = new_figure(PRINT_WIDTH, ROW_HEIGHT * len(rows) + 0.3)
        grid = figure.subplots(len(rows), 2, squeeze=False)
        tags = panel_tags()
        for _ in range(first_tag):
            next(tags)
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
                text = f"{next(tags)} {title}, {what}"
                axis.set_title(text if len(text) <= TITLE_CHARS else text.rsplit(", ", 1)[0], loc="left")
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
    """figures/exp-<name>.{pdf,png} for every experiment (exp-<name>-2... for its rows past MAX_ROWS, so that
    every figure fits a page) and exp-<name>.tex with their floats; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    written = []
    for experiment, group in by_experiment(summaries).items():
        stem, rows, floats = out_dir / file_stem(experiment), panel_rows(group), []
        for part, start in enumerate(range(0, len(rows), MAX_ROWS)):
            name = stem.name if part == 0 else f"{stem.name}-{part + 1}"
            written += save_figure(plot_experiment(group, rows[start:start + MAX_ROWS], 2 * start), out_dir / name)
            text = caption(experiment) if part == 0 else f"Figure~\\ref{{fig:{stem.name}}} continued."
            floats.append(latex.figure_float(f"{FOLDER}/{name}", text, f"fig:{name}"))  # relative to report.tex
        write_text(stem.with_suffix(".tex"), "\n".join(floats))
        written.append(stem.with_suffix(".tex"))
    return written
