"""`ptblm report`: report.tex, which \\input-s every table, figure, fact and the two analyses.

Tables, figures and facts are rebuilt from the run folders every time (cheap, and never stale);
the gradient plot and the samples need the models and the data, so they are included when
`ptblm gradients` / `ptblm samples` have written them, and named as missing otherwise.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

from ..outputs import write_text
from ..corpora import DEFAULT_CORPUS
from ..models.registry import ARCHITECTURES
from .. import wording
from . import figures, gradients, latex, samples, tables
from . import facts
from .comparable import corpora_sentence, corpus_title, several_corpora
from .facts import LATEX_DEFINITIONS, architecture_facts, write_facts
from .summary import RunSummary, by_experiment, file_stem, published_comparisons

REPORT_FILE = "report.tex"
TITLE = "Word-level language models on {corpora}: {models}"
GRADIENTS_SNIPPET = f"{gradients.FOLDER}/gradients.tex"
SAMPLES_SNIPPET = f"{samples.FOLDER}/appendix.tex"
OPTIONAL_PARTS = {GRADIENTS_SNIPPET: "make gradients", SAMPLES_SNIPPET: "make samples"}  # snippet -> its command


@dataclass
class Report:
    tex: Path
    missing: list[str]  # what is not in it yet, and the command that makes it


def report_title(summaries: list[RunSummary]) -> str:
    """TITLE with the corpora the runs trained on (Penn Treebank for the course's study) and their architectures
    in the registry's order ("RNN, GRU and Transformer" for the course's study)."""
    titles = sorted({corpus_title(s.config["corpus"]) for s in summaries})
    models = [entry.title for name, entry in ARCHITECTURES.items() if any(s.model == name for s in summaries)]
    return TITLE.format(corpora=" and ".join(titles) or corpus_title(DEFAULT_CORPUS),
                        models=wording.enumeration(models) if models else "no runs yet")


def optional_input(report_dir: Path, snippet: str) -> str:
    """\\input the snippet when it exists; else a line naming the command that writes it."""
    if (report_dir / snippet).is_file():
        return f"\\input{{{snippet}}}"
    return f"Not computed yet: run \\texttt{{{OPTIONAL_PARTS[snippet]}}}, then \\texttt{{make report}} again."


def missing_parts(report_dir: Path) -> list[str]:
    return [f"{snippet} (run `{command}`)" for snippet, command in OPTIONAL_PARTS.items()
            if not (report_dir / snippet).is_file()]


def definitions(seeds: bool = False, published: bool = False, corpora: bool = False) -> str:
    """The one place of the report that defines the columns, curves and measures the captions use; what
    several seeds, the published study and several corpora add only when the report has them."""
    extras = [(seeds, 0), (published, 1), (corpora, 2)]
    added = {name: "".join(" " + texts[index] for present, index in extras if present) for name, texts in (
        ("tables", (tables.SEED_RULE.strip(), tables.PUBLISHED_RULE.strip(), tables.CORPUS_RULE.strip())),
        ("figures", (figures.SEED_CONVENTION, figures.PUBLISHED_CONVENTION, figures.CORPUS_CONVENTION)),
        ("facts", (facts.SEED_DEFINITION, facts.PUBLISHED_DEFINITION, facts.CORPUS_DEFINITION)))}
    parts = {"Tables.": tables.DEFINITION + added["tables"], "Learning curves.": figures.CONVENTIONS + added["figures"],
             "Facts.": LATEX_DEFINITIONS.strip() + added["facts"], "Gradients.": gradients.DEFINITION}
    return "\n\n".join(["\\section{Definitions}\\label{sec:definitions}"]
                       + [f"\\paragraph{{{title}}} {text}" for title, text in parts.items()]) + "\n"


def provenance(summaries: list[RunSummary], results_dir: Path) -> str:
    """Page 1's first line: how many run folders (by state) under which folder, and how many settings (table
    rows) they are; a setting of several seeds is several folders and one row."""
    folders = [run for summary in summaries for run in (summary.seeds or (summary.run,))]
    states = collections.Counter(run.observed_state for run in folders)
    counts = ", ".join(f"{number} {state}" for state, number in sorted(states.items()))
    if len(folders) == len(summaries):
        rows = ", one table row each" if len(folders) > 1 else ""
    elif len(summaries) == 1:
        rows = ": 1 setting, whose seeds share one table row"
    else:
        rows = f": {len(summaries)} settings, one table row each (the seeds of a setting share its row)"
    return (f"Built by \\texttt{{ptblm report}} from {wording.count(len(folders), 'run folder')} under "
            f"\\texttt{{{latex.path(str(results_dir))}}} ({counts}){rows}.")


def corpora_note(summaries: list[RunSummary]) -> str:
    """Page 1's sentence naming the corpora when the runs read several (comparable.corpora_sentence), else ''."""
    sentence = corpora_sentence([run for summary in summaries for run in (summary.seeds or (summary.run,))])
    return f" {latex.escape(sentence)}" if sentence else ""


def body(summaries: list[RunSummary], report_dir: Path, descriptions: dict[str, str], results_dir: Path) -> str:
    """The sections; with one experiment, its table is the only table of runs (not printed twice)."""
    experiments = by_experiment(summaries)
    lines = [provenance(summaries, results_dir) + corpora_note(summaries), "",
             definitions(any(s.seeds for s in summaries), bool(published_comparisons(summaries)),
                         several_corpora(s.run for s in summaries))]
    if len(experiments) > 1:
        lines += ["\\section{All runs}", f"\\input{{{tables.FOLDER}/{tables.SUMMARY}.tex}}", ""]
    for experiment in experiments:
        stem = file_stem(experiment)
        title = latex.escape(descriptions.get(experiment) or f"Experiment {experiment}")
        lines += [f"\\section{{{title}}}", f"\\input{{{tables.FOLDER}/{stem}.tex}}",
                  f"\\input{{{figures.FOLDER}/{stem}.tex}}", ""]
    lines += ["\\section{Facts per setting}", "\\input{facts.tex}", "",
              "\\section{Vanishing gradients}",
              optional_input(report_dir, GRADIENTS_SNIPPET), "",
              "\\clearpage", "\\appendix", "\\section{Generated samples}",
              optional_input(report_dir, SAMPLES_SNIPPET), ""]
    return "\n".join(lines)


def write_report(summaries: list[RunSummary], report_dir: Path, descriptions: dict[str, str], results_dir: Path,
                 threshold: float | None = None) -> Report:
    """Tables, figures, facts and report.tex in report_dir (no PDF: see latex.compile_pdf)."""
    report_dir = Path(report_dir)
    tables.write_tables(summaries, report_dir, descriptions)
    figures.write_figures(summaries, report_dir)
    write_facts(architecture_facts(summaries, threshold), report_dir)
    tex = report_dir / REPORT_FILE
    write_text(tex, latex.document(body(summaries, report_dir, descriptions, results_dir),
                                  title=latex.escape(report_title(summaries))))
    return Report(tex, missing_parts(report_dir))
