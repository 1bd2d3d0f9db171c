"""`ptblm tables`: one summary table over every experiment and one per experiment, LaTeX and Markdown.

Each cell is formatted once (`row_cells`) and only then set as LaTeX or Markdown, so both renderings
print the same digits, which are the values of curves.json rounded to the printed precision.
Seed aggregation and the published comparison are pandas operations on the ptblm.results frames
(results.seed_statistics, published.published_comparison via summary.published_comparisons).

Why not pandas' Styler.to_latex (booktabs via hrules, bold via highlight_min): highlight_min bolds a
column's minimum, while the rule here is per architecture and among complete runs only (a mask we
compute anyway); Styler has no \\midrule between architecture groups (its clines are \\cline) and would
need jinja2, which is no dependency of ptblm; and the cells must be the strings Markdown prints
(mean ± sd, '12/20 running', 10^8). So latex.Table stays; the frames feed it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from ..outputs import write_text
from ..config import exact_number
from ..formatting import format_ppl, format_seconds
from . import latex
from .comparable import several_corpora
from .summary import RunSummary, best_per_architecture, by_experiment, file_stem, published_comparisons


FOLDER = "tables"  # inside the report folder
SUMMARY = "summary"


@dataclass(frozen=True)
class Column:
    name: str  # Markdown and console header
    latex: str  # LaTeX header
    align: str  # LaTeX column type


COLUMNS = (
    Column("#", r"\#", "r"), Column("exp", "Exp.", "l"), Column("arch", "Arch.", "l"),
    Column("optimizer", "Opt.", "l"), Column("lr", "lr", "r"), Column("bs", "bs", "r"),
    Column("hidden", "h", "r"), Column("layers", "L", "r"), Column("keep", "keep", "r"),
    Column("final train ppl", "train", "r"), Column("final valid ppl", "valid", "r"),
    Column("best valid ppl", "valid", "r"), Column("best epoch", "epoch", "r"),
    Column("wall-clock", "time", "r"), Column("epochs", "epochs", "l"),
)
BEST = "best valid ppl"
NUMERIC_COLUMNS = {"lr", "final train ppl", "final valid ppl", "best valid ppl", "published best",
                   "published final"}  # may print as 1e+08

CORPUS = Column("corpus", "Corpus", "l")  # only in the tables of a report of several corpora
CORPUS_RULE = (r" Corpus: the text the run trained on, as page~1 names it; bold type compares the runs of each "
               r"architecture on one corpus only.")
SEEDS = Column("n", "n", "r")  # only in tables with a setting of several seeds
SEED_RULE = (r" Over several seeds (n): mean $\pm$ sample standard deviation of each run's final and best ppl "
             r"(the best ppl is each run's own; bold compares the means); epoch and time are those of the mean curve.")
PUBLISHED = (Column("published best", "best", "r"), Column("published final", "final", "r"),
             Column("vs published", r"$\Delta$", "r"))  # only in tables with a run of a published setting
PUBLISHED_RULE = (r" Published: the published study's (ptblm/reference/) best and final validation ppl over the "
                  r"epochs both it and the run have, and $\Delta$ = best / published best $-$ 1 over those epochs "
                  r"(for several seeds: the mean of the seeds' best); empty for a run of no published setting.")
BOLD_RULE = r"\textbf{Bold}: the lowest best validation ppl of each architecture among the table's complete runs."
DEFINITION = (
    r"\#: row number, the same in every table, figure and fact; Exp.: experiment "
    r"(jobs/\textless exp\textgreater.yaml); Arch.: architecture; Opt.: optimizer (SGD: plain SGD; "
    r"SGD\_LR\_SCHEDULE: SGD whose learning rate is divided by 1.15 at every epoch after the 14th, "
    r"compounding; ADAM: Adam); lr: initial learning rate; bs: batch size; h: hidden units (n\_units for "
    r"the Transformer); L: layers (blocks for the Transformer); keep: dropout keep probability; final: "
    r"train and validation perplexity (ppl) of the last finished epoch (train ppl is measured with "
    r"dropout, while training); best: lowest validation ppl and its epoch; time: wall-clock (h:mm:ss) of "
    r"training and validation up to the last finished epoch; epochs: epochs trained, or finished/planned "
    r"and the run's state when it is not complete. " + BOLD_RULE + r" Perplexities of $10^5$ or more "
    r"are in scientific notation; inf and diverged: the loss overflowed or became NaN.")


def ppl_cell(values, column: str, summary: RunSummary) -> str:
    """A perplexity, or 'mean ± sd' over a setting's seeds (`values`: results.seed_statistics)."""
    if not summary.seeds:
        return format_ppl(values)
    mean, sd = values.loc["mean", column], values.loc["std", column]
    return format_ppl(mean) if not math.isfinite(mean) else f"{format_ppl(mean)} ± {format_ppl(sd)}"


def row_cells(summary: RunSummary) -> dict[str, str]:
    """The printed cells of one setting, by column name (COLUMNS, plus CORPUS and SEEDS)."""
    config, final, best = summary.config, summary.final, summary.best
    if summary.seeds:
        from ..results import seed_statistics
        stats = seed_statistics(list(summary.seeds))
        ppls = [ppl_cell(stats, column, summary) for column in ("final_train_ppl", "final_valid_ppl", "best_valid_ppl")]
    else:
        ppls = [format_ppl(final.train_ppl if final else None), format_ppl(final.valid_ppl if final else None),
                format_ppl(best.valid_ppl if best else None)]
    cells = [str(summary.number), summary.experiment, summary.model, config["optimizer"],
             exact_number(config['initial_lr']), str(config["batch_size"]), str(config["hidden_size"]),
             str(config["num_layers"]), exact_number(config['dp_keep_prob']), *ppls,
             str(best.epoch) if best else "-", format_seconds(summary.wall_clock_seconds), summary.epochs_label()]
    return {**dict(zip((column.name for column in COLUMNS), cells)), SEEDS.name: str(summary.n),
            CORPUS.name: summary.corpus_tag}


def published_cells(comparison: dict | None) -> dict[str, str]:
    """The PUBLISHED cells of one setting ('-' for a setting of no published setting)."""
    if comparison is None:
        return {column.name: "-" for column in PUBLISHED}
    return {"published best": format_ppl(comparison["published_best_valid_ppl"]),
            "published final": format_ppl(comparison["published_final_valid_ppl"]),
            "vs published": format_relative(comparison["relative_difference"])}


def format_relative(difference: float) -> str:
    """+3.1 % (a relative difference), or 'diverged'."""
    return f"{100 * difference:+.1f} %" if math.isfinite(difference) else "diverged"


def all_cells(summaries: list[RunSummary]) -> list[dict[str, str]]:
    """Every setting's cells by column name, the published ones included."""
    compared = published_comparisons(summaries)
    return [{**row_cells(summary), **published_cells(compared.get(summary.number))} for summary in summaries]


def table_columns(summaries: list[RunSummary], cells: list[dict[str, str]], corpus: bool = False) -> list[Column]:
    """COLUMNS, with CORPUS after exp when `corpus`, SEEDS after keep when a setting has several seeds and
    PUBLISHED last when a setting is one of the published study's (so a table of one-seed runs of one corpus and
    no published setting prints as before)."""
    columns = list(COLUMNS)
    if corpus:
        columns.insert([column.name for column in columns].index("exp") + 1, CORPUS)
    if any(summary.seeds for summary in summaries):
        columns.insert([column.name for column in columns].index("keep") + 1, SEEDS)
    if any(row["published best"] != "-" for row in cells):
        columns += PUBLISHED
    return columns


def bold_numbers(summaries: list[RunSummary]) -> set[int]:
    """Row numbers whose best validation perplexity is set in bold: one per architecture and corpus."""
    return {summary.number for summary in best_per_architecture(summaries).values()}


def corpus_column(summaries: list[RunSummary], corpus: bool | None) -> bool:
    """Whether a table has the CORPUS column: `corpus`, or (None) whether its rows come from several corpora."""
    return several_corpora(summary.run for summary in summaries) if corpus is None else corpus


def markdown_table(summaries: list[RunSummary], corpus: bool | None = None) -> str:
    """`corpus`: whether to name each row's corpus (see corpus_column)."""
    printed = all_cells(summaries)
    bold = bold_numbers(summaries)
    columns = table_columns(summaries, printed, corpus_column(summaries, corpus))
    rows = []
    for summary, cells in zip(summaries, printed):
        if summary.number in bold:
            cells[BEST] = f"**{cells[BEST]}**"
        rows.append([cells[column.name] for column in columns])
    return tabulate(rows, headers=[column.name for column in columns], tablefmt="github", disable_numparse=True)


def latex_cell(column: Column, cell: str) -> str:
    if column.name not in NUMERIC_COLUMNS:
        return latex.escape(cell)
    return r" $\pm$ ".join(latex.number(part) for part in cell.split(" ± "))


def latex_table(summaries: list[RunSummary], caption: str, label: str, corpus: bool | None = None) -> str:
    """A rule between the groups of one architecture on one corpus; `corpus` as for markdown_table."""
    printed = all_cells(summaries)
    bold = bold_numbers(summaries)
    columns = table_columns(summaries, printed, corpus_column(summaries, corpus))
    rows, group_starts = [], set()
    for index, summary in enumerate(summaries):
        previous = summaries[index - 1] if index > 0 else None
        if previous and (summary.model, summary.corpus_files) != (previous.model, previous.corpus_files):
            group_starts.add(index)
        cells = {column.name: latex_cell(column, printed[index][column.name]) for column in columns}
        if summary.number in bold:
            cells[BEST] = latex.bold(cells[BEST])
        rows.append([cells[column.name] for column in columns])
    first = [column.name for column in columns].index("final train ppl") + 1  # 1-based, as \cmidrule counts
    groups = r"\multicolumn{2}{c}{final ppl} & \multicolumn{2}{c}{best}"
    rules = rf"\cmidrule(lr){{{first}-{first + 1}}}\cmidrule(lr){{{first + 2}-{first + 3}}}"
    published = len(PUBLISHED) if columns[-1] == PUBLISHED[-1] else 0
    after = len(columns) - first - 3 - published  # columns between the best group and the published one
    if published:
        groups += " &" * after + rf" & \multicolumn{{{published}}}{{c}}{{published}}"
        rules += rf"\cmidrule(lr){{{len(columns) - published + 1}-{len(columns)}}}"
        after = 0
    header = [" & " * (first - 1) + groups + " &" * after, rules + " " + " & ".join(column.latex for column in columns)]
    table = latex.Table("".join(column.align for column in columns), header, rows, group_starts)
    wide = len(columns) > len(COLUMNS)  # corpus, seeds or published columns: 3 pt gaps, so less scaling shrinks text
    return latex.table_float(table, caption, label, column_gap_pt=3 if wide else None)


def write_tables(summaries: list[RunSummary], report_dir: Path, descriptions: dict[str, str]) -> list[Path]:
    """tables/summary.{tex,md} and tables/exp-<name>.{tex,md}, each with the CORPUS column when `summaries` come
    from several corpora; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    written = []
    key = r"columns and bold type as in Section~\ref{sec:definitions}"
    corpus = corpus_column(summaries, None)
    order = "corpus, then architecture" if corpus else "architecture"
    tables = {SUMMARY: (summaries, f"All runs, sorted by {order}, then optimizer; {key}.", "tab:summary")}
    for experiment, group in by_experiment(summaries).items():
        description = descriptions.get(experiment) or f"Experiment {experiment}"
        caption = f"{latex.escape(description)}; {key}."
        tables[file_stem(experiment)] = (group, caption, f"tab:{file_stem(experiment)}")
    for stem, (group, caption, label) in tables.items():
        write_text(out_dir / f"{stem}.tex", latex_table(group, caption, label, corpus))
        write_text(out_dir / f"{stem}.md", markdown_table(group, corpus) + "\n")
        written += [out_dir / f"{stem}.tex", out_dir / f"{stem}.md"]
    return written
