"""The report's words and its LaTeX: counts in the right nouns and number, text from run folders made safe for
LaTeX in one place, a failed build named by file and line and rebuilt next time, and which experiments the
report covers (not `ptblm train`'s manual/ unless named)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PUBLISHED_RNN, write_run
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.config import RunConfig
from ptblm.report import latex
from ptblm.report.document import write_report
from ptblm.report.facts import architecture_facts, markdown, rows
from ptblm.report.summary import load_summaries
from runtree import write_config, write_curves, write_status

needs_latex = pytest.mark.skipif(latex.latex_engine() is None, reason="no latexmk/pdflatex: apt-get install "
                                 "texlive-latex-recommended texlive-latex-extra latexmk (CI has them)")


def cut_to(folder: Path, epochs: int, state: str = rf.RUNNING) -> None:
    """The run as it looks while it trains: `epochs` finished of the ones planned."""
    curves = rf.read_curves(folder)
    write_curves(folder, rf.Curves(epochs=curves.epochs[:epochs]))
    write_status(folder, rf.RunStatus(state=state, epochs_done=epochs, num_epochs=len(curves.epochs)))


# --- counts in words ----------------------------------------------------------------------------------

def test_page_one_counts_run_folders_and_the_settings_they_are(tmp_path):
    """Was: 'from the 2 run folders' for four folders (three seeds of one setting and one other)."""
    results = tmp_path / "results"
    for seed in (1, 2, 3):
        write_run(results, "3.1", [300.0, 200.0], seed=seed)
    cut_to(write_run(results, "3.1", [400.0, 350.0], initial_lr=0.5), 1)  # says running; nobody writes it
    tex = write_report(load_summaries(results), tmp_path / "report", {}, results).tex.read_text()
    assert (f"from 4 run folders under \\texttt{{{latex.path(str(results))}}} (3 done, 1 stopped): 2 settings, "
            "one table row each (the seeds of a setting share its row).") in tex


def test_page_one_says_one_run_folder_in_the_singular(tmp_path):
    results = tmp_path / "results"
    write_run(results, "3.1", [300.0, 200.0])
    tex = write_report(load_summaries(results), tmp_path / "report", {}, results).tex.read_text()
    assert f"from 1 run folder under \\texttt{{{latex.path(str(results))}}} (1 done)." in tex


def test_runs_not_judged_are_named_as_one_row_or_several(tmp_path):
    """Was: 'rows 3 not judged' for one row, 'rows 2, 3' for two."""
    write_run(tmp_path, "3.1", [300.0, 200.0])
    cut_to(write_run(tmp_path, "3.1", [300.0, 150.0], initial_lr=0.5), 1)
    (facts,) = architecture_facts(load_summaries(tmp_path))
    assert "; row 1 not judged (incomplete or diverged)" in markdown([facts])
    cut_to(write_run(tmp_path, "3.1", [300.0, 150.0], initial_lr=0.1), 1)
    (facts,) = architecture_facts(load_summaries(tmp_path))
    assert "; rows 1 and 2 not judged (incomplete or diverged)" in markdown([facts])


def test_a_setting_without_a_finished_epoch_has_no_time_to_tau_and_none_at_all_no_facts(tmp_path):
    from ptblm.report.facts import NO_FACTS

    write_run(tmp_path, "3.1", [300.0, 200.0])
    cut_to(write_run(tmp_path, "3.1", [300.0, 150.0], initial_lr=0.5), 0)
    (facts,) = architecture_facts(load_summaries(tmp_path))
    assert [row[-1] for row in rows(facts)] == ["-", "0:00:10"]  # lr 0.5 first (was: 'not reached')
    fresh = tmp_path / "fresh"
    cut_to(write_run(fresh, "3.1", [300.0, 200.0]), 0)
    assert main(["report", "--results", str(fresh), "--no-pdf"]) == 0
    assert NO_FACTS in (fresh / "report" / "facts.md").read_text()  # was an empty section
    assert latex.escape(NO_FACTS) in (fresh / "report" / "facts.tex").read_text()


# --- text from run folders reaching LaTeX -------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("first\n\nsecond", "first second"),  # a blank line in \section{} was 'Paragraph ended before \@sect'
    ("a \t\r\n\f b", "a b"),
    ("50% & $x_1$ #2 ~{}^\\", r"50\% \& \$x\_1\$ \#2 \textasciitilde{}\{\}\textasciicircum{}\textbackslash{}"),
    ("café, Łódź, naïve", "café, Łódź, naïve"),  # printable with the default fonts: kept
    ("ħ α 中 \U0001f600 \x00", "? ? ? ? ?"),  # not: one would stop the whole PDF
    ("ﬁle ſ Ｆ", "file s F"),  # their ASCII letters
])
def test_text_is_escaped_and_set_on_one_line(text, expected):
    assert latex.escape(text) == expected


@needs_latex
def test_every_character_kept_as_printable_compiles(tmp_path):
    printable = "".join(sorted(latex.PRINTABLE))
    assert latex.escape(printable).count("?") == printable.count("?")
    (tmp_path / "all.tex").write_text(latex.document(latex.escape(printable)))
    assert latex.compile_pdf(tmp_path / "all.tex").stat().st_size > 1000


def write_described_run(results: Path, experiment: str, description: str, **changes) -> Path:
    config = RunConfig.from_dict({**PUBLISHED_RNN, "num_epochs": 2, **changes})
    folder = results / experiment / config.run_name()
    write_config(folder, config.to_dict(), {"experiment": experiment, "setting_index": 0, "data_dir": "/d",
                                               "description": description})
    write_curves(folder, rf.Curves(epochs=[rf.EpochRecord(1, 600.0, 300.0, 10.0, 10.0, 1.0),
                                              rf.EpochRecord(2, 500.0, 250.0, 10.0, 20.0, 1.0)]))
    write_status(folder, rf.RunStatus(state=rf.DONE, epochs_done=2, num_epochs=2))
    return folder


@needs_latex
def test_descriptions_names_and_paths_from_run_folders_cannot_break_the_pdf(tmp_path, capsys):
    """Was: a description with a blank line stopped the PDF ('Paragraph ended before \\@sect was complete')."""
    results = tmp_path / "res #1 ~x%"
    write_described_run(results, "3.1 ünï & co", "RNN study.\n\nSecond paragraph: 50% & $5 {x}_1 \\ α→ħ\ttab")
    write_described_run(results, "3.2", "GRU\n\n\n", model="GRU", hidden_size=256)
    assert main(["report", "--results", str(results)]) == 0, capsys.readouterr().err
    tex = (results / "report" / "report.tex").read_text()
    assert "\\section{RNN study. Second paragraph: 50\\% \\& \\$5 \\{x\\}\\_1 \\textbackslash{} ??? tab}" in tex
    pdf = results / "report" / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                       check=True).stdout.split())
        assert "RNN study. Second paragraph: 50% & $5 {x}" in text and "1 \\ ??? tab" in text
        assert "res #1" in text and "x%" in text and "& co RNN" in text  # OT1 sets ü, ï as accented letters


@needs_latex
@pytest.mark.parametrize("engine", ["latexmk", "pdflatex"])
def test_a_failed_build_names_file_and_line_and_fails_again_until_fixed(engine, tmp_path, monkeypatch):
    """Was: the first failure quoted latexmk's summary, and the rerun only 'Nothing to do'."""
    if not shutil.which(engine):
        pytest.skip(f"no {engine}")
    if engine == "pdflatex":
        which = shutil.which
        monkeypatch.setattr(latex.shutil, "which", lambda name: None if name == "latexmk" else which(name))
    (tmp_path / "part.tex").write_text("Some text.\n\\section{a\n\nb}\n")
    (tmp_path / "doc.tex").write_text(latex.document("\\input{part.tex}"))
    for attempt in range(2):
        with pytest.raises(latex.LatexError) as error:
            latex.compile_pdf(tmp_path / "doc.tex")
        message = str(error.value)
        assert f"{tmp_path / 'part.tex'} line 4: Paragraph ended before \\@sect was complete." in message, attempt
        assert "l.4 b}" in message and "Nothing to do" not in message
    (tmp_path / "part.tex").write_text("Some text.\n\\section{a b}\n")
    assert latex.compile_pdf(tmp_path / "doc.tex").read_bytes()[:5] == b"%PDF-"


def test_an_error_without_a_file_and_line_is_quoted_from_its_bang_line():
    log = "This is pdfTeX\n(./doc.tex\n! Emergency stop.\n<*> doc.tex\n\n*** (job aborted, no legal \\end found)\n"
    assert latex.first_error(log).startswith("! Emergency stop.")


# --- which experiments the report covers -----------------------------------------------------------------

def test_runs_of_ptblm_train_are_left_out_of_the_report_unless_named(tmp_path, capsys):
    """Was: a `ptblm train --debug` run in results/manual/ became a row, a figure and a fact of the report."""
    write_run(tmp_path, "3.1", [300.0, 200.0])
    write_run(tmp_path, "manual", [math.inf], model="GRU", state=rf.DIVERGED)
    assert {s.experiment for s in load_summaries(tmp_path)} == {"3.1"}
    assert {s.experiment for s in load_summaries(tmp_path, ["manual"])} == {"manual"}
    assert {s.experiment for s in load_summaries(tmp_path, ["3.1", "manual"])} == {"3.1", "manual"}
    assert main(["report", "--results", str(tmp_path), "--no-pdf"]) == 0
    report = tmp_path / "report"
    assert sorted(path.name for path in (report / "figures").glob("*.png")) == ["exp-3_1.png"]
    assert [f["model"] for f in json.loads((report / "facts.json").read_text())] == ["RNN"]
    assert "manual" not in (report / "tables" / "summary.md").read_text()
    assert "manual" not in (report / "report.tex").read_text()


def test_a_run_in_manual_is_left_out_whatever_experiment_its_config_names(tmp_path):
    write_run(tmp_path, "3.1", [300.0, 200.0])
    copied = write_run(tmp_path, "manual", [300.0, 200.0], model="GRU")
    config = json.loads((copied / rf.CONFIG_FILE).read_text())
    (copied / rf.CONFIG_FILE).write_text(json.dumps({**config, "experiment": "3.1"}))  # a copy of a 3.1 run
    assert [s.model for s in load_summaries(tmp_path)] == ["RNN"]
    assert [s.model for s in load_summaries(tmp_path, ["manual"])] == ["GRU"]


def test_with_only_manual_runs_the_error_says_how_to_name_them(tmp_path):
    write_run(tmp_path, "manual", [300.0, 200.0])
    with pytest.raises(FileNotFoundError, match=rf"^only runs of `ptblm train` under {tmp_path} \(1 in "
                       rf"{tmp_path / 'manual'}\), which tables, figures and the report leave out unless named: "
                       r"name them, e.g. `ptblm tables manual`"):
        load_summaries(tmp_path)


def test_a_manual_run_never_stands_in_for_the_analysed_models(tmp_path):
    from ptblm.report.trained import MissingRun, analysed_runs, resolve_run_dir

    manual = write_run(tmp_path, "manual", [300.0, 200.0])
    (manual / rf.BEST_CHECKPOINT).write_bytes(b"weights")
    with pytest.raises(MissingRun):
        resolve_run_dir(analysed_runs()[0], None, tmp_path, notify=lambda message: None)
    assert resolve_run_dir(analysed_runs()[0], manual, tmp_path) == manual  # named: used


def test_a_missing_analysed_run_is_told_to_train_on_the_corpus_the_others_read(tmp_path):
    """Was: `make submit EXP=3.1`, or `make demo`, for a results tree of WikiText-2 runs: neither trains on it."""
    from ptblm.report.trained import MissingRun, analysed_runs, resolve_run_dir
    from ptblm.wording import article

    gru = write_run(tmp_path, "3.2", [300.0, 200.0], corpus="wikitext-2", model="GRU")
    (gru / rf.BEST_CHECKPOINT).write_bytes(b"weights")
    first = rf.RunFolder(gru).read()
    rnn = analysed_runs()[0]
    with pytest.raises(MissingRun, match=r"train one \(`make submit EXP=3.1 CORPUS=wikitext-2`\) or name a run "
                                         r"folder with --rnn DIR$"):
        resolve_run_dir(rnn, None, tmp_path, notify=lambda message: None, first=first)
    with pytest.raises(MissingRun, match=r"train one \(`make submit EXP=3.1`, or `make demo` for small ones\)"):
        resolve_run_dir(rnn, None, tmp_path / "empty", notify=lambda message: None)
    assert [article(name) for name in ("RNN", "GRU", "LSTM", "TRANSFORMER", "Transformer", "MGU")] == [
        "an", "a", "an", "a", "a", "an"]


def test_the_title_names_the_architectures_of_the_runs_in_the_registry_s_order(tmp_path):
    """Was: 'RNN, GRU and Transformer' whatever the runs were, an LSTM study's report included."""
    from ptblm.report.document import report_title

    results = tmp_path / "results"
    write_run(results, "3.4", [300.0, 200.0], model="TRANSFORMER", hidden_size=512, n_heads=16)
    write_run(results, "lstm", [300.0, 200.0], model="LSTM")
    write_run(results, "3.1", [300.0, 200.0])
    assert report_title(load_summaries(results)) == ("Word-level language models on Penn Treebank: RNN, LSTM and "
                                                     "Transformer")
    assert report_title(load_summaries(results, ["3.1"])) == "Word-level language models on Penn Treebank: RNN"
