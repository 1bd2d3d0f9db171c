"""The numbers the study's questions need, per setting and per architecture, computed from the curves.

Per setting:
    best epoch        the epoch of lowest validation perplexity
    final - best      validation ppl of the last epoch minus the best: > 0 means it over-fitted after
    valid - train     at the best epoch (train ppl is averaged over the epoch with dropout on, so it
                      flatters early epochs: shown, but not used to rank)
    time to tau       wall-clock seconds until the validation ppl first reached tau
A setting of several seeds is judged on the mean curve of its seeds (summary.py).
Per architecture and corpus (comparable.py: runs on other files do not compare), tau is one threshold for all
its runs: by default THRESHOLD_FACTOR x the lowest best validation ppl of those runs (a level the good settings
reach and the poor ones may not); --threshold sets it. Fastest: the least time to tau. Best generalisation:
GENERALISATION_RULE.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from ..outputs import write_text
from .. import runfolder as rf
from ..config import MODELS, ConfigError
from ..formatting import format_ppl, format_seconds
from .. import wording
from . import latex
from .comparable import by_corpus, corpus_tag, several_corpora
from .summary import HYPER_PARAMETERS, RunSummary, differing_keys, published_comparisons

THRESHOLD_FACTOR = 2.0
GENERALISATION_RULE = ("the lowest validation perplexity at the best epoch, since perplexity on held-out text "
                       "is what generalisation means (valid - train is not used: train ppl is averaged over the "
                       "epoch with dropout on, which flatters epoch 1); it cannot judge incomplete or diverged runs")


@dataclass(frozen=True)
class SettingFacts:
    summary: RunSummary
    overfit_gap: float | None  # final valid ppl - best valid ppl
    generalisation_gap: float | None  # valid ppl - train ppl at the best epoch
    seconds_to_threshold: float | None  # None: never reached
    published: dict | None = None  # summary.published_comparisons' row: None for a run of no published setting

    @property
    def number(self) -> int:
        return self.summary.number

    @property
    def judged(self) -> bool:
        """Whether GENERALISATION_RULE can judge it: complete, with a finite best validation ppl."""
        return self.summary.complete and self.summary.best is not None


@dataclass(frozen=True)
class ArchitectureFacts:
    """The settings of one architecture on one corpus's files."""

    model: str
    threshold: float
    threshold_source: str  # how tau was chosen, for the caption
    settings: list[SettingFacts]
    corpus: str = ""  # the corpus's tag (comparable.corpus_tag) when the report covers several, else ""

    @property
    def on_corpus(self) -> str:
        """' on wikitext-2' after the architecture's name when the report covers several corpora, else ''."""
        return f" on {self.corpus}" if self.corpus else ""

    @property
    def title(self) -> str:
        """'GRU', or 'GRU on wikitext-2'."""
        return self.model + self.on_corpus

    @property
    def reached(self) -> list[SettingFacts]:
        """The settings whose validation ppl reached tau (so they have a best epoch and a gap)."""
        return [s for s in self.settings if s.seconds_to_threshold is not None]

    @property
    def fastest(self) -> SettingFacts | None:
        return min(self.reached, key=lambda s: s.seconds_to_threshold, default=None)

    @property
    def best_generalisation(self) -> SettingFacts | None:
        return min((s for s in self.settings if s.judged), key=lambda s: s.summary.best.valid_ppl, default=None)


def seconds_to_reach(summary: RunSummary, threshold: float) -> float | None:
    """Wall-clock seconds at the end of the first epoch whose validation ppl is <= threshold."""
    return next((r.wall_clock_seconds for r in summary.run.curves.epochs if r.valid_ppl <= threshold), None)


def setting_facts(summary: RunSummary, threshold: float, published: dict | None = None) -> SettingFacts:
    final, best = summary.final, summary.best
    return SettingFacts(summary, final.valid_ppl - best.valid_ppl if best else None,
                        best.valid_ppl - best.train_ppl if best else None, seconds_to_reach(summary, threshold),
                        published)


def published_verdict(facts: SettingFacts) -> str | None:
    """'Row 2 (mean of 3 seeds): within 4 % of published 3.1 setting 0 at epoch 20 (best valid ppl 150.20 vs
    146.70, +2.4 %)': the best validation ppl over the epochs both have, up to the last of them."""
    compared = facts.published
    if compared is None:
        return None
    seeds = f" (mean of {facts.summary.n} seeds)" if facts.summary.seeds else ""
    difference = compared["relative_difference"]
    source = f"published {compared['published_experiment']} setting {compared['published_setting']}"
    if not math.isfinite(difference):
        return f"Row {facts.number}{seeds}: diverged, unlike {source}, by epoch {compared['epoch']}."
    return (f"Row {facts.number}{seeds}: within {math.ceil(100 * abs(difference) - 1e-9):d} % of {source} at epoch "
            f"{compared['epoch']} (best valid ppl {format_ppl(compared['best_valid_ppl'])} vs "
            f"{format_ppl(compared['published_best_valid_ppl'])}, {100 * difference:+.1f} %).")


def check_threshold(threshold: float | None) -> None:
    """--threshold is a perplexity: finite and > 0 (None: the default per architecture)."""
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise ConfigError(f"--threshold = {threshold:g} is not a perplexity; valid: a finite number > 0, e.g. 200")


def architecture_facts(summaries: list[RunSummary], threshold: float | None = None) -> list[ArchitectureFacts]:
    """One entry per architecture present on each corpus's files: corpora in row order, then MODELS order;
    `threshold` overrides the default tau (of each)."""
    check_threshold(threshold)
    facts = []
    published = published_comparisons(summaries)
    named = several_corpora(s.run for s in summaries)
    for on_corpus in by_corpus(summaries, lambda s: s.run).values():
        for model in MODELS:
            group = [s for s in on_corpus if s.model == model]
            bests = [s for s in group if s.best is not None]
            if not bests:
                continue
            corpus = corpus_tag(group[0].run) if named else ""
            runs = f"the {model} runs" + (f" on {corpus}" if corpus else "")
            if threshold is None:
                lowest = min(bests, key=lambda s: s.best.valid_ppl)
                tau = THRESHOLD_FACTOR * lowest.best.valid_ppl
                source = (f"{THRESHOLD_FACTOR:g} x the lowest best validation ppl of {runs} "
                          f"({lowest.best.valid_ppl:.2f}, row {lowest.number})")
            else:
                tau, source = threshold, "set with --threshold"
            facts.append(ArchitectureFacts(model, tau, source,
                                           [setting_facts(s, tau, published.get(s.number)) for s in group], corpus))
    return facts


# (Markdown header, LaTeX header) of the facts tables
COLUMNS = (("#", r"\#"), ("exp", "Exp."), ("setting", "setting"), ("best epoch", "best epoch"),
           ("final - best", r"final $-$ best"), ("valid - train", r"valid $-$ train"),
           ("time to tau", r"time to $\tau$"))
GAP_COLUMNS = (4, 5)  # may print as 1e+08
TAU = r"$\tau$"
SETTING_KEYS = ("optimizer", "initial_lr", "batch_size")  # always in the setting cell, with what else differs


def format_gap(summary: RunSummary, gap: float | None) -> str:
    """A difference of perplexities: 'diverged' for a diverged run, large ones as 1.2e+28 (either sign)."""
    if gap is None:
        return "-"
    if summary.state == rf.DIVERGED or not math.isfinite(gap):
        return "diverged"
    return f"{gap:.3g}" if abs(gap) >= 1e5 else f"{gap:.2f}"


def setting_cell(summary: RunSummary, differ: tuple[str, ...]) -> str:
    """'ADAM lr 0.001 bs 128' plus what else differs between the architecture's runs (never empty), and
    ', mean of 3 seeds' for a setting of several seeds (its facts are those of the mean curve)."""
    seeds = f", mean of {summary.n} seeds" if summary.seeds else ""
    return summary.setting(tuple(key for key, _ in HYPER_PARAMETERS if key in SETTING_KEYS or key in differ)) + seeds


def rows(facts: ArchitectureFacts) -> list[list[str]]:
    """The printed cells, in COLUMNS order."""
    differ, _ = differing_keys([s.summary for s in facts.settings])
    return [[str(s.number), s.summary.experiment, setting_cell(s.summary, differ),
             str(s.summary.best.epoch) if s.summary.best else "-", format_gap(s.summary, s.overfit_gap),
             format_gap(s.summary, s.generalisation_gap),
             time_to_threshold(s)] for s in facts.settings]


def time_to_threshold(facts: SettingFacts) -> str:
    """h:mm:ss, 'not reached', or '-' for a setting with no finished epoch yet (it had no chance to)."""
    if facts.seconds_to_threshold is not None:
        return format_seconds(facts.seconds_to_threshold)
    return "not reached" if facts.summary.final is not None else "-"


def verdict(facts: ArchitectureFacts, tau: str = "tau") -> str:
    """Which setting is best for wall-clock and which for generalisation (`tau`: its symbol)."""
    fastest, general = facts.fastest, facts.best_generalisation
    speed = (f"No {facts.model} run{facts.on_corpus} reached {tau} = {facts.threshold:.2f}." if fastest is None else
             f"Fastest to {tau} = {facts.threshold:.2f}: row {fastest.number} "
             f"({format_seconds(fastest.seconds_to_threshold)}).")
    unjudged = [s.number for s in facts.settings if not s.judged]
    judged = (f"Best generalisation: row {general.number} (best validation ppl "
              f"{format_ppl(general.summary.best.valid_ppl)})" if general else
              f"Best generalisation: none of the {facts.model} runs{facts.on_corpus} is complete yet")
    if unjudged and general:
        judged += f"; {wording.rows(unjudged)} not judged (incomplete or diverged)"
    return f"{speed} {judged}."


def published_verdicts(facts: ArchitectureFacts) -> list[str]:
    return [line for line in map(published_verdict, facts.settings) if line]


NO_FACTS = "No setting has a finished epoch with a finite validation perplexity yet: no facts to give."


def markdown(all_facts: list[ArchitectureFacts]) -> str:
    parts = [f"{facts.title}: tau = {facts.threshold:.2f} ({facts.threshold_source})\n"
             + tabulate(rows(facts), headers=[name for name, _ in COLUMNS], tablefmt="github", disable_numparse=True)
             + f"\n{verdict(facts)}" + "".join(f"\n{line}" for line in published_verdicts(facts))
             for facts in all_facts]
    return "\n\n".join([f"Best generalisation: {GENERALISATION_RULE}.", *(parts or [NO_FACTS])])


LATEX_DEFINITIONS = (
    "Best epoch: the epoch of lowest validation perplexity (ppl). Final $-$ best: the validation ppl of the "
    "last finished epoch minus the best one ($> 0$: it over-fitted after the best epoch). Valid $-$ train: "
    "the difference at the best epoch, shown but not used to rank (train ppl is averaged over the epoch with "
    "dropout on, so it flatters epoch~1 and can be negative). Time to $\\tau$: the wall-clock time (h:mm:ss) "
    "until the validation ppl first reached the architecture's threshold $\\tau$. Fastest: the least time to "
    "$\\tau$. Best generalisation: " + latex.escape(GENERALISATION_RULE).replace("valid - train", "valid $-$ train")
    + ".\n")
SEED_DEFINITION = "A setting of several seeds: its facts are those of the mean curve of its seeds."
CORPUS_DEFINITION = (r"Over several corpora: $\tau$, fastest and best generalisation are those of each "
                     r"architecture on one corpus, among its runs on that corpus only.")
PUBLISHED_DEFINITION = ("Against the published study: per setting of it, the relative difference of the best "
                        "validation ppl over the epochs both have, named by the last of them (several seeds: of "
                        "the mean of their best).")


def latex_tables(all_facts: list[ArchitectureFacts]) -> str:
    if not all_facts:
        return latex.escape(NO_FACTS) + "\n"
    parts = []
    for facts in all_facts:
        body = [[latex.number(cell) if index in GAP_COLUMNS else latex.escape(cell) for index, cell in enumerate(row)]
                for row in rows(facts)]
        table = latex.Table("rll" + "r" * 4, [" & ".join(header for _, header in COLUMNS)], body)
        source = latex.escape(facts.threshold_source).replace(" x ", r" $\times$ ")
        caption = (f"{latex.escape(facts.title)}: facts per setting; {TAU} = {facts.threshold:.2f}, {source}. "
                   f"{latex.escape(verdict(facts)).replace('tau', TAU)}")
        parts.append(latex.table_float(table, caption, facts_label(facts)))
        lines = published_verdicts(facts)
        if lines:
            parts.append(f"{latex.escape(facts.title)} against the published study: "
                         + " ".join(map(latex.escape, lines)) + "\n")
    return "\n".join(parts)


def facts_label(facts: ArchitectureFacts) -> str:
    """'tab:facts-gru', or 'tab:facts-gru-wikitext-2' in a report of several corpora (labels take [a-z0-9-])."""
    name = f"{facts.model} {facts.corpus}".strip().lower()
    return "tab:facts-" + "".join(c if c.isascii() and c.isalnum() else "-" for c in name)


def to_json(all_facts: list[ArchitectureFacts]) -> list[dict]:
    def finite(value: float | None) -> float | str | None:
        return None if value is None else rf.encode_float(value)

    return [{"model": f.model, "corpus": corpus_tag(f.settings[0].summary.run),
             "generalisation_rule": GENERALISATION_RULE, "threshold": f.threshold,
             "threshold_source": f.threshold_source,
             "fastest_row": f.fastest.number if f.fastest else None,
             "best_generalisation_row": f.best_generalisation.number if f.best_generalisation else None,
             "settings": [{"row": s.number, "experiment": s.summary.experiment, "run": s.summary.run.name,
                           "seed_runs": [run.name for run in s.summary.seeds],
                           "best_epoch": s.summary.best.epoch if s.summary.best else None,
                           "final_minus_best_valid_ppl": finite(s.overfit_gap),
                           "valid_minus_train_ppl_at_best": finite(s.generalisation_gap),
                           "judged_for_generalisation": s.judged,
                           "seconds_to_threshold": s.seconds_to_threshold,
                           "published": None if s.published is None else {
                               key: finite(value) if isinstance(value, float) else value
                               for key, value in s.published.items()},
                           "published_verdict": published_verdict(s)} for s in f.settings]}
            for f in all_facts]


def write_facts(all_facts: list[ArchitectureFacts], report_dir: Path) -> list[Path]:
    """facts.{tex,md,json} in the report folder."""
    report_dir = Path(report_dir)
    paths = [report_dir / "facts.tex", report_dir / "facts.md", report_dir / "facts.json"]
    write_text(paths[0], latex_tables(all_facts))
    write_text(paths[1], markdown(all_facts) + "\n")
    write_text(paths[2], json.dumps(to_json(all_facts), indent=2) + "\n")
    return paths
