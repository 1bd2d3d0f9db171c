"""Which runs the report compares: only runs that read the same corpus files.

Perplexities on different texts do not compare: another corpus has another vocabulary, and even a sample of one
corpus (ptb-mini beside the real PTB) gives other numbers. results.corpus_files says which files a run read (the
recorded fingerprint; before fingerprints, the corpus and the vocabulary size), and bold type, the facts and the
figures' panels compare runs of one value only, as results.seed_groups averages only those. A report of several
corpora names each run's corpus by a short tag (corpus_tag) in its tables, facts and figures, and page 1 says
which text each tag is; a report of one corpus prints as if corpora did not exist.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from .. import corpora
from .. import runfolder as rf
from .. import wording

Item = TypeVar("Item")
FINGERPRINT_DIGITS = 8  # of the fingerprint in a tag: enough to tell a report's corpora apart
SEVERAL_CORPORA = ("Tables name each run's corpus; bold type, facts and figure panels compare runs of one corpus "
                   "only.")


def files_of(run: rf.RunRecord) -> str:
    """results.corpus_files (imported here, not at the top: results imports pandas)."""
    from ..results import corpus_files

    return corpus_files(run)


def corpus_title(name: str) -> str:
    """'Penn Treebank' for ptb: a corpus as people name it (a name no entry has, as it is)."""
    entry = corpora.CORPORA.get(name)
    return entry.title if entry else name


def published(run: rf.RunRecord) -> bool:
    """Whether the run read its corpus's published files (its recorded fingerprint is theirs)."""
    entry = corpora.CORPORA.get(run.config["corpus"])
    return entry is not None and entry.is_published(run.provenance.get(rf.CORPUS_KEY))


def corpus_tag(run: rf.RunRecord) -> str:
    """The short name of the files a run read, for table cells and headings: the corpus's name for its published
    files ('ptb'), else the name and the fingerprint's first digits ('ptb 46ad9f38'), or the vocabulary size in
    folders from before fingerprints ('ptb vocab 10000')."""
    name, fingerprint = run.config["corpus"], run.provenance.get(rf.CORPUS_KEY)
    if published(run):
        return name
    if fingerprint:
        return f"{name} {fingerprint[:FINGERPRINT_DIGITS]}"
    return f"{name} vocab {run.provenance.get('vocab_size')}"


def corpus_description(run: rf.RunRecord) -> str:
    """What the tag stands for: 'Penn Treebank' (the published files), else which other files."""
    name, fingerprint = run.config["corpus"], run.provenance.get(rf.CORPUS_KEY)
    if published(run):
        return corpus_title(name)
    if fingerprint:
        return f"other {corpus_title(name)}-format files, fingerprint {fingerprint}"
    return (f"{corpus_title(name)}-format files of a vocabulary of {run.provenance.get('vocab_size')}, trained before "
            f"runs recorded a fingerprint")


def corpus_order(run: rf.RunRecord) -> tuple:
    """Sorts corpora in the registry's order (unknown names last), the published files before other files."""
    names = list(corpora.CORPORA)
    name = run.config["corpus"]
    return (names.index(name) if name in names else len(names), not published(run), files_of(run))


def by_corpus(items: Iterable[Item], run_of: Callable[[Item], rf.RunRecord]) -> dict[str, list[Item]]:
    """results.corpus_files -> the items whose run (`run_of`) read those files, in the items' order."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(files_of(run_of(item)), []).append(item)
    return groups


def several_corpora(runs: Iterable[rf.RunRecord]) -> bool:
    """Whether the runs read more than one corpus's files (then the report names each run's corpus)."""
    return len({files_of(run) for run in runs}) > 1


def corpora_sentence(runs: list[rf.RunRecord]) -> str | None:
    """Page 1's (and the terminal's) sentence naming each corpus's tag, text and experiments; None for one."""
    groups = by_corpus(sorted(runs, key=corpus_order), lambda run: run)
    if len(groups) < 2:
        return None
    parts = []
    for group in groups.values():
        experiments = sorted({run.experiment for run in group})
        named = "experiment" if len(experiments) == 1 else "experiments"
        parts.append(f"{corpus_tag(group[0])} ({corpus_description(group[0])}; {named} "
                     f"{wording.enumeration(experiments)})")
    return (f"These runs come from different corpora, whose perplexities do not compare: "
            f"{wording.enumeration(parts)}. {SEVERAL_CORPORA}")


def choose_hint(runs: list[rf.RunRecord]) -> str:
    """How to report one corpus of `runs`: the experiments whose runs all read the first corpus's files, as a
    command; or, when every experiment mixes corpora, that no choice of experiments separates them."""
    groups = [sorted({run.experiment for run in group})
              for group in by_corpus(sorted(runs, key=corpus_order), lambda run: run).values()]
    mixed = {name for group in groups for name in group if sum(name in other for other in groups) > 1}
    pure = next(([name for name in group if name not in mixed] for group in groups
                 if any(name not in mixed for name in group)), [])
    if not pure:
        named = wording.enumeration(sorted(mixed))
        said = f"Experiments {named} mix" if len(mixed) > 1 else f"Experiment {named} mixes"
        return (f"{said} corpora, so no choice of experiments reports one corpus; the tables still rank each "
                f"corpus apart.")
    names = " ".join(pure)
    return f"Choose experiments to report one corpus, e.g. `ptblm tables {names}` (make tables EXPS='{names}')."
