"""The report chain on results trained here by the real training code, checked against curves.json.

One session fixture trains nine tiny runs on the synthetic corpus, laid out as results/<exp>/<run>/
from jobs files written here (3.1: three RNNs, 3.2: two GRUs, smoke: one per model), including a
run that diverges (GRU SGD lr 1e38: inf at epoch 1) and one left incomplete (trained 3 epochs, then
its curves cut to 2 and its status set back to running, as a run killed after epoch 2 looks). Then
`ptblm tables figures gradients samples report` run with no arguments but the environment.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import zlib
from pathlib import Path

import matplotlib.figure
import matplotlib.text
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import PUBLISHED_RNN_VALID, tiny_config, write_run
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.config import MODELS, OPTIMIZERS
from ptblm.corpora import WIKITEXT2
from ptblm.data import EOS, UNK, DataError, load_corpus, write_synthetic_corpus
from ptblm.jobs import load_experiment
from ptblm.report import latex
from ptblm.report.comparable import corpus_tag
from ptblm.report.document import write_report
from ptblm.report.figures import panel_rows, plot_experiment
from ptblm.report.plotting import save_figure
from ptblm.report.gradients import hidden_gradient_norms, seeded_minibatch
from ptblm.report.samples import PER_LENGTH, Decoding, appendix, make_samples, start_words
from ptblm.report.summary import load_summaries
from ptblm.report.tables import bold_numbers, latex_table, markdown_table
from ptblm.report.trained import load_trained
from ptblm.train import train_run
from runtree import write_curves, write_status

TINY = {key: value for key, value in tiny_config().to_dict().items()
        if key in ("batch_size", "hidden_size", "num_layers", "dp_keep_prob", "seq_len", "emb_size", "num_epochs",
                   "device")}
JOBS = {
    "3.1": {"description": "3.1 vanilla RNN", "common": {**TINY, "model": "RNN"},
            "settings": [{"optimizer": "SGD", "initial_lr": 1.0},  # the gradient/sample default
                         {"optimizer": "ADAM", "initial_lr": 0.01},
                         {"optimizer": "SGD_LR_SCHEDULE", "initial_lr": 1.0}]},  # left incomplete
    "3.2": {"description": "3.2 GRU", "common": {**TINY, "model": "GRU"},
            "settings": [{"optimizer": "ADAM", "initial_lr": 0.01},  # the gradient/sample default
                         {"optimizer": "SGD", "initial_lr": 1e38}]},  # diverges at epoch 1
    "smoke": {"description": "smoke: one per model", "common": {**TINY, "num_epochs": 2},
              "settings": [{"model": "RNN", "optimizer": "ADAM", "initial_lr": 0.003},
                           {"model": "GRU", "optimizer": "SGD", "initial_lr": 1.0},
                           {"model": "LSTM", "optimizer": "ADAM", "initial_lr": 0.01},  # the LSTM's stand-in
                           {"model": "TRANSFORMER", "optimizer": "ADAM", "initial_lr": 0.003, "n_heads": 2,
                            "max_batches": 10}]},
}
INCOMPLETE = ("3.1", 2)
HAS_LATEX = latex.latex_engine() is not None
needs_latex = pytest.mark.skipif(not HAS_LATEX, reason="no latexmk/pdflatex: apt-get install "
                                 "texlive-latex-recommended texlive-latex-extra latexmk (CI has them)")


@pytest.fixture(scope="session")
def chain(tmp_path_factory, synthetic_dir) -> dict[str, Path]:
    """Train the runs, then run every report command with the defaults (results/, results/report/)."""
    root = tmp_path_factory.mktemp("report-chain")
    jobs, results = root / "jobs", root / "results"
    jobs.mkdir()
    for name, content in JOBS.items():
        (jobs / f"{name}.yaml").write_text(yaml.safe_dump(content))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only contends with the rest of CI for 2 cores
    try:
        for name in JOBS:
            for setting in load_experiment(name, jobs).settings:
                train_run(setting.config, synthetic_dir, setting.run_dir(results), experiment=name,
                          setting_index=setting.index, echo=False, environ={})
    finally:
        torch.set_num_threads(threads)
    incomplete = load_experiment(INCOMPLETE[0], jobs).settings[INCOMPLETE[1]].run_dir(results)
    curves = rf.read_curves(incomplete)
    write_curves(incomplete, rf.Curves(epochs=curves.epochs[:2]))
    write_status(incomplete, rf.RunStatus(state=rf.RUNNING, epochs_done=2, num_epochs=3))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PTBLM_RESULTS", str(results))
        env.setenv("PTBLM_JOBS", str(jobs))
        env.delenv("PTB_DIR", raising=False)  # the runs' recorded data folder, not PTB, has their vocabulary
        for command in ("tables", "figures", "gradients", "samples", "report"):
            assert main([command]) == 0, command
    return {"jobs": jobs, "results": results, "report": results / "report", "data": synthetic_dir}


def raw_runs(results: Path) -> list[dict]:
    """Every run as its JSON files say, read without ptblm's readers."""
    runs = []
    for config_path in sorted(results.glob("*/*/config.json")):
        folder = config_path.parent
        runs.append({"folder": folder, "experiment": folder.parent.name,
                     "config": json.loads(config_path.read_text())["config"],
                     "epochs": json.loads((folder / "curves.json").read_text())["epochs"],
                     "status": json.loads((folder / "status.json").read_text())})
    return runs


def markdown_rows(path: Path) -> list[dict[str, str]]:
    return markdown_rows_of(path.read_text())


def markdown_rows_of(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def run_of(row: dict[str, str], runs: list[dict]) -> dict:
    matches = [r for r in runs if (r["experiment"], r["config"]["model"], r["config"]["optimizer"],
                                   f"{r['config']['initial_lr']:g}") ==
               (row["exp"], row["arch"], row["optimizer"], row["lr"])]
    assert len(matches) == 1, row
    return matches[0]


def default_run(chain: dict[str, Path], experiment: str) -> Path:
    """Setting 0 of the experiment: the gradient and sample analyses' default run."""
    return load_experiment(experiment, chain["jobs"]).settings[0].run_dir(chain["results"])


def ppl(value) -> float:
    return float(value)  # JSON keeps non-finite values as "inf"/"nan" strings


def complete(run: dict) -> bool:
    return run["status"]["state"] == rf.DONE and len(run["epochs"]) == run["config"]["num_epochs"]


def seconds(cell: str) -> int:
    hours, minutes, secs = (int(part) for part in cell.split(":"))
    return 3600 * hours + 60 * minutes + secs


# --- LaTeX helpers ------------------------------------------------------------------------------

def test_escape_makes_every_special_character_printable():
    assert latex.escape("$ & % # _ { } ~ ^ \\ <unk>") == (
        r"\$ \& \% \# \_ \{ \} \textasciitilde{} \textasciicircum{} \textbackslash{} \textless{}unk\textgreater{}")
    assert latex.escape(r"\textbf{x}") == r"\textbackslash{}textbf\{x\}"  # one pass: nothing escaped twice


def test_scientific_numbers_are_set_as_powers_of_ten():
    assert latex.number("1e+08") == "$10^{8}$"
    assert latex.number("2.5e-05") == r"$2.5\times10^{-5}$"
    assert latex.number("123.46") == "123.46" and latex.number("diverged") == "diverged"


@needs_latex
def test_escaped_special_characters_compile(tmp_path):
    text = latex.escape("$ & % # _ { } ~ ^ \\ <unk> <eos>")
    (tmp_path / "escape.tex").write_text(latex.document(f"{text}\n\n\\texttt{{{text}}}"))
    assert latex.compile_pdf(tmp_path / "escape.tex").stat().st_size > 1000


# --- tables ------------------------------------------------------------------------------------

def test_table_values_are_the_curves_json_values_at_printed_precision(chain):
    runs = raw_runs(chain["results"])
    rows = markdown_rows(chain["report"] / "tables" / "summary.md")
    assert len(rows) == len(runs) == 9
    for row in rows:
        run = run_of(row, runs)
        final = run["epochs"][-1]
        finite = [r for r in run["epochs"] if math.isfinite(ppl(r["valid_ppl"]))]
        for cell, value in ((row["final train ppl"], ppl(final["train_ppl"])),
                            (row["final valid ppl"], ppl(final["valid_ppl"]))):
            if math.isfinite(value):
                assert abs(float(cell) - value) <= 0.005 + 1e-9, (row, value)
            else:
                assert cell == "inf" if value == math.inf else cell == "diverged"
        if finite:
            best = min(finite, key=lambda r: r["valid_ppl"])
            assert abs(float(row["best valid ppl"].strip("*")) - best["valid_ppl"]) <= 0.005 + 1e-9
            assert row["best epoch"] == str(best["epoch"])
        else:
            assert row["best valid ppl"] == "-" and row["best epoch"] == "-"
        assert abs(seconds(row["wall-clock"]) - final["wall_clock_seconds"]) <= 0.5
        assert (row["bs"], row["hidden"], row["layers"], row["keep"]) == (
            str(run["config"]["batch_size"]), str(run["config"]["hidden_size"]), str(run["config"]["num_layers"]),
            f"{run['config']['dp_keep_prob']:g}")


def test_rows_are_numbered_and_sorted_by_architecture_then_optimizer(chain):
    rows = markdown_rows(chain["report"] / "tables" / "summary.md")
    assert [row["#"] for row in rows] == [str(i) for i in range(1, len(rows) + 1)]
    keys = [(MODELS.index(row["arch"]), OPTIMIZERS.index(row["optimizer"])) for row in rows]
    assert keys == sorted(keys)
    assert [row["exp"] for row in rows] != sorted(row["exp"] for row in rows)  # smoke's RNN sits before 3.2
    per_experiment = markdown_rows(chain["report"] / "tables" / "exp-3_1.md")
    assert [row["#"] for row in per_experiment] == [row["#"] for row in rows if row["exp"] == "3.1"]


def test_bold_is_the_lowest_best_valid_ppl_of_each_architecture_among_complete_runs(chain):
    runs = raw_runs(chain["results"])
    expected = set()
    for model in {r["config"]["model"] for r in runs}:
        candidates = [r for r in runs if r["config"]["model"] == model and complete(r)]
        best = min(candidates, key=lambda r: min(ppl(e["valid_ppl"]) for e in r["epochs"]))
        expected.add((best["experiment"], model, best["config"]["optimizer"], f"{best['config']['initial_lr']:g}"))
    rows = markdown_rows(chain["report"] / "tables" / "summary.md")
    bold = {(r["exp"], r["arch"], r["optimizer"], r["lr"]) for r in rows if r["best valid ppl"].startswith("**")}
    assert bold == expected
    tex = (chain["report"] / "tables" / "summary.tex").read_text()
    assert tex.count(r"\textbf{") == len(expected)  # one per architecture (the rule is in the definitions)
    assert r"\begin{table}" in tex and r"\toprule" in tex and r"\bottomrule" in tex


def test_an_incomplete_run_is_marked_and_never_bold_even_when_best(chain, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(chain["results"], results, ignore=shutil.ignore_patterns("*.pt", "report"))
    summaries = load_summaries(results)
    best_rnn = min((s for s in summaries if s.model == "RNN" and s.complete), key=lambda s: s.best.valid_ppl)
    assert best_rnn.number in bold_numbers(summaries)
    write_status(best_rnn.run.folder, rf.RunStatus(state=rf.REQUEUED, epochs_done=3, num_epochs=3))
    summaries = load_summaries(results)
    assert best_rnn.number not in bold_numbers(summaries)
    assert any(s.model == "RNN" and s.number in bold_numbers(summaries) for s in summaries)  # the next one is
    rows = {row["#"]: row for row in markdown_rows(chain["report"] / "tables" / "summary.md")}
    incomplete = [row for row in rows.values() if (row["exp"], row["optimizer"]) == ("3.1", "SGD_LR_SCHEDULE")]
    assert incomplete[0]["epochs"] == "2/3 stopped" and not incomplete[0]["best valid ppl"].startswith("**")


def test_a_diverged_run_prints_readably(chain):
    rows = markdown_rows(chain["report"] / "tables" / "summary.md")
    diverged = next(row for row in rows if row["lr"] == "1e+38")
    assert (diverged["final train ppl"], diverged["epochs"]) == ("inf", "1/3 diverged")
    tex = (chain["report"] / "tables" / "summary.tex").read_text()
    assert "$10^{38}$" in tex and "nan" not in tex


# --- figures, gradients, samples ---------------------------------------------------------------

def test_figures_are_written_per_experiment_as_pdf_png_and_snippet(chain):
    for stem in ("exp-3_1", "exp-3_2", "exp-smoke"):
        png, pdf, snippet = (chain["report"] / "figures" / f"{stem}.{ext}" for ext in ("png", "pdf", "tex"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
        assert f"\\includegraphics{{figures/{stem}}}" in snippet.read_text()  # unscaled: printed as drawn


def pdf_fonts_and_width(path: Path) -> tuple[set[float], float]:
    """The font sizes (Tf operators of every content stream) and the page width (pt) of a one-page PDF."""
    data = path.read_bytes()
    width = float(re.search(rb"/MediaBox \[\s*[\d.]+ [\d.]+ ([\d.]+) [\d.]+\s*\]", data).group(1))
    sizes = set()
    for start in re.finditer(rb"(?<!end)stream\r?\n", data):
        # zlib finds the stream's end itself: a compressed stream may end in a b"\r" byte, which a
        # regex up to "\r?\nendstream" would cut off (then nothing decompresses and no font is seen).
        body = data[start.end():]
        try:
            content = zlib.decompressobj().decompress(body)
        except zlib.error:  # an uncompressed stream
            content = body[:body.find(b"endstream")]
        sizes |= {float(size) for size in re.findall(rb"/\w+ ([\d.]+) Tf", content)}
    return sizes, width


def test_pdf_fonts_are_read_from_a_compressed_stream_whose_last_byte_is_a_carriage_return(tmp_path):
    """The data-dependent case that made CI red: the stream's compressed bytes end in b"\r"."""
    content = next(c for c in (b"BT /F1 9 Tf (x%d) Tj ET" % i for i in range(100_000))
                   if zlib.compress(c).endswith(b"\r"))
    plain = b"BT /F2 11 Tf (y) Tj ET"
    pdf = tmp_path / "one.pdf"
    pdf.write_bytes(b"%PDF-1.4\n<< /MediaBox [ 0 0 468 300 ] >>\n"
                    b"<< /Filter /FlateDecode >>\nstream\n" + zlib.compress(content) + b"\nendstream\nendobj\n"
                    b"<< >>\nstream\n" + plain + b"\nendstream\nendobj\n")
    assert pdf_fonts_and_width(pdf) == ({9.0, 11.0}, 468.0)


def test_figures_are_printed_at_their_drawn_size_with_text_of_at_least_8pt(chain, monkeypatch):
    """From the files: page width <= 7 in and every font >= 8 pt; and the text sizes at draw time."""
    pdfs = sorted((chain["report"] / "figures").glob("*.pdf")) + [chain["report"] / "gradients" / "gradients.pdf"]
    assert len(pdfs) == 4
    for pdf in pdfs:
        sizes, width = pdf_fonts_and_width(pdf)
        assert width <= 7 * 72 and sizes and min(sizes) >= 8, (pdf, width, sizes)
    drawn = []

    def recording_draw(figure, renderer):
        drawn.append({text.get_fontsize() for text in figure.findobj(matplotlib.text.Text)
                      if text.get_visible() and text.get_text()} | {matplotlib.rcParams["legend.fontsize"]})
        return original_draw(figure, renderer)

    original_draw = matplotlib.figure.Figure.draw
    monkeypatch.setattr(matplotlib.figure.Figure, "draw", recording_draw)
    summaries = load_summaries(chain["results"], ["smoke"])
    figure = plot_experiment(summaries)
    save_figure(figure, chain["report"] / "size-check" / "smoke")
    assert drawn and min(min(sizes) for sizes in drawn) >= 8
    rows = figure.axes[::2]
    assert len(rows) == len({summary.model for summary in summaries})  # one row per model the experiment has
    assert [axis.get_title(loc="left") for axis in figure.axes[:2]] == [
        "(a) RNN, by epoch", "(b) RNN, by time"]
    for axis in figure.axes:  # legends outside the data: right of the panel
        legend = axis.get_legend()
        if legend is not None:
            assert legend.get_window_extent().x0 >= axis.get_window_extent().x1


def lstm_run(chain: dict[str, Path]) -> Path:
    """The smoke experiment's LSTM: the only one, so it stands in for example-lstm's setting 0."""
    (setting,) = [s for s in load_experiment("smoke", chain["jobs"]).settings if s.config.model == "LSTM"]
    return setting.run_dir(chain["results"])


def test_gradient_json_has_one_rescaled_norm_per_time_step_for_each_analysed_run(chain):
    record = json.loads((chain["report"] / "gradients" / "gradients.json").read_text())
    assert record["hidden"] == "top" and [m["model"] for m in record["models"]] == ["RNN", "GRU", "LSTM"]
    assert [Path(m["run"]) for m in record["models"]] == [*(default_run(chain, exp) for exp in ("3.1", "3.2")),
                                                          lstm_run(chain)]
    for model in record["models"]:
        (curve,) = model["curves"]
        assert len(curve["raw_norms"]) == len(curve["rescaled"]) == TINY["seq_len"]
        raw = curve["raw_norms"]
        assert all(math.isfinite(v) and v > 0 for v in raw)
        assert curve["rescaled"] == pytest.approx([(v - min(raw)) / (max(raw) - min(raw)) for v in raw])
        assert min(curve["rescaled"]) == 0 and max(curve["rescaled"]) == 1
    assert (chain["report"] / "gradients" / "gradients.png").stat().st_size > 10_000


def test_the_gradient_at_the_last_step_is_the_output_layers_backprop(chain):
    """g_T for the top layer is the batch mean of W_out^T (softmax - onehot) over sequences: by hand, one 1/B."""
    trained = load_trained(default_run(chain, "3.1"), "RNN")
    config = trained.config
    inputs, targets, _ = seeded_minibatch(trained.corpus.train, config.batch_size, config.seq_len, seed=0)
    _, norms = hidden_gradient_norms(trained.model, inputs, targets, "top")
    with torch.no_grad():
        logits, _ = trained.model(inputs, trained.model.init_hidden())  # (seq, batch, vocab)
        error = F.softmax(logits[-1], dim=-1) - F.one_hot(targets[-1], trained.corpus.vocab_size)  # (batch, vocab)
        per_sequence = error @ trained.model.out_layer.weight  # (batch, hidden): dl_b/dh_T^b
    assert norms["top"][-1] == pytest.approx(per_sequence.mean(dim=0).norm().item(), rel=1e-5)
    _, each = hidden_gradient_norms(trained.model, inputs, targets, "each")
    _, together = hidden_gradient_norms(trained.model, inputs, targets, "all")
    assert each[str(config.num_layers)] == pytest.approx(norms["top"], rel=1e-6)
    layers = [str(layer + 1) for layer in range(config.num_layers)]
    assert together["all"] == pytest.approx([math.hypot(*(each[layer][t] for layer in layers))
                                             for t in range(config.seq_len)], rel=1e-5)


def test_twenty_samples_per_model_share_start_words_and_their_statistics_hold(chain):
    record = json.loads((chain["report"] / "samples" / "samples.json").read_text())
    samples = record["samples"]
    assert len(samples) == 3 * 20 and record["decoding"]["temperature"] == 0
    for model in ("RNN", "GRU", "LSTM"):
        for length in (35, 70):
            group = [s for s in samples if s["model"] == model and s["length"] == length]
            assert len(group) == 10 and all(len(s["words"]) == length for s in group)
            lines = (chain["report"] / "samples" / f"{model.lower()}-len{length}.txt").read_text().splitlines()
            assert len(lines) == 10
    starts = {model: [s["start"] for s in samples if s["model"] == model] for model in ("RNN", "GRU", "LSTM")}
    assert starts["RNN"] == starts["GRU"] == starts["LSTM"] and len(set(starts["RNN"])) == 20
    assert not {EOS, UNK} & set(starts["RNN"])
    for sample in samples:
        words, repeat = sample["words"], sample["longest_repeat"]
        assert sample["distinct_ratio"] == pytest.approx(len(set(words)) / len(words))
        occurrences = sum(words[i:i + len(repeat)] == repeat for i in range(len(words) - len(repeat) + 1))
        assert occurrences >= 2 if repeat else len(set(words)) == len(words)
        if sample["length"] == 70:
            assert repeat  # 70 tokens from a vocabulary of 60: some word repeats
        assert sample["mean_log_prob"] < 0


def test_greedy_samples_are_each_steps_argmax_and_their_log_probability(chain):
    """Replaying a sample through the model: every token is the argmax after its prefix."""
    sample = json.loads((chain["report"] / "samples" / "samples.json").read_text())["samples"][0]
    trained = load_trained(default_run(chain, "3.1"), "RNN", batch_size=1)
    ids = torch.tensor([trained.corpus.word_to_id[w] for w in [sample["start"], *sample["words"]]])  # (length + 1,)
    with torch.no_grad():
        logits, _ = trained.model(ids[:-1].unsqueeze(1), trained.model.init_hidden())  # (length, 1, vocab)
    assert torch.equal(logits[:, 0].argmax(dim=-1), ids[1:])
    log_probs = logits[:, 0].log_softmax(dim=-1).gather(-1, ids[1:].unsqueeze(-1))  # (length, 1)
    assert sample["mean_log_prob"] == pytest.approx(log_probs.mean().item(), rel=1e-5)


def test_sampling_at_a_temperature_is_seeded(chain):
    trained = load_trained(default_run(chain, "3.2"), "GRU", batch_size=PER_LENGTH)
    starts = start_words(trained.corpus, PER_LENGTH * 2, seed=0)
    warm, again = (make_samples(trained, starts, Decoding(temperature=1.5, seed=7)) for _ in range(2))
    greedy = make_samples(trained, starts, Decoding())
    assert [s.words for s in warm] == [s.words for s in again]
    assert [s.words for s in warm] != [s.words for s in greedy]
    assert "sampled at temperature 1.5" in Decoding(temperature=1.5, top_k=5).describe()


def test_no_unk_never_generates_unk_greedy_or_sampled(chain):
    trained = load_trained(default_run(chain, "3.1"), "RNN", batch_size=PER_LENGTH)
    with torch.no_grad():
        trained.model.out_layer.bias[trained.corpus.word_to_id[UNK]] += 50.0  # a model that loves <unk>
    starts = start_words(trained.corpus, PER_LENGTH * 2, seed=0)
    for decoding in (Decoding(), Decoding(temperature=1.0, top_k=3, seed=1)):
        with_unk = make_samples(trained, starts, decoding)
        assert all(set(s.words) == {UNK} for s in with_unk)
        assert "100\\% of the generated tokens are" in appendix(with_unk, [trained], decoding)  # says --no-unk
        unk_free = make_samples(trained, starts, dataclasses.replace(decoding, no_unk=True))
        assert all(UNK not in s.words for s in unk_free) and all(math.isfinite(s.mean_log_prob) for s in unk_free)
        assert "of the generated tokens are" not in appendix(unk_free, [trained], decoding)
    assert f"{UNK} never picked" in Decoding(no_unk=True).describe()


def test_no_unk_on_the_command_line_is_said_in_the_appendix(chain, tmp_path, monkeypatch):
    monkeypatch.delenv("PTB_DIR", raising=False)
    assert main(["samples", "--no-unk", "--results", str(chain["results"]), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "samples" / "samples.json").read_text())
    assert record["decoding"]["no_unk"] is True and not any(UNK in s["words"] for s in record["samples"])
    assert latex.escape(f"{UNK} never picked") in (tmp_path / "samples" / "appendix.tex").read_text()


def test_three_best_worst_and_interesting_samples_are_picked_by_the_stated_rules(chain):
    record = json.loads((chain["report"] / "samples" / "samples.json").read_text())
    samples = {s["id"]: s for s in record["samples"]}
    picks = record["picks"]
    assert [len(picks[p]) for p in ("best", "worst", "interesting")] == [3, 3, 3]
    assert len({i for ids in picks.values() for i in ids}) == 9
    ratios = sorted(s["distinct_ratio"] for s in samples.values())
    median = (ratios[29] + ratios[30]) / 2  # of 60
    fluent = sorted((s for s in samples.values() if s["distinct_ratio"] >= median), key=lambda s: -s["mean_log_prob"])
    assert picks["best"] == [s["id"] for s in fluent[:3]]
    rest = [s for s in samples.values() if s["id"] not in picks["best"]]
    assert max(samples[i]["distinct_ratio"] for i in picks["worst"]) <= min(
        s["distinct_ratio"] for s in rest if s["id"] not in picks["worst"])
    assert "median" in record["pick_rules"]["best"]
    appendix = (chain["report"] / "samples" / "appendix.tex").read_text()
    assert "\\subsection{Picked samples}" in appendix and appendix.count("\\item[") == 60 + 9


def test_appendix_lists_every_sample_escaped(chain):
    appendix = (chain["report"] / "samples" / "appendix.tex").read_text()
    samples = json.loads((chain["report"] / "samples" / "samples.json").read_text())["samples"]
    assert all(f"\\item[{latex.escape(s['id'])}]" in appendix for s in samples)
    assert "<" not in appendix and ">" not in appendix  # <eos>, <unk> are escaped
    assert "\\subsection{RNN samples}" in appendix and "\\subsubsection{GRU, 70 tokens}" in appendix


# --- facts and the report ------------------------------------------------------------------------

def test_facts_follow_the_curves(chain):
    runs = raw_runs(chain["results"])
    facts = json.loads((chain["report"] / "facts.json").read_text())
    assert [f["model"] for f in facts] == [model for model in MODELS if any(r["config"]["model"] == model
                                                                             for r in runs)]
    for entry in facts:
        group = [r for r in runs if r["config"]["model"] == entry["model"]]
        best_valids = [min(ppl(e["valid_ppl"]) for e in r["epochs"]) for r in group]
        assert entry["threshold"] == pytest.approx(2 * min(v for v in best_valids if math.isfinite(v)))
        times = {}
        for setting in entry["settings"]:
            wanted = (setting["experiment"], setting["run"])
            run = next(r for r in group if (r["experiment"], r["folder"].name) == wanted)
            reached = [e["wall_clock_seconds"] for e in run["epochs"] if ppl(e["valid_ppl"]) <= entry["threshold"]]
            assert setting["seconds_to_threshold"] == (reached[0] if reached else None)
            if reached:
                times[setting["row"]] = reached[0]
        assert entry["fastest_row"] == min(times, key=times.get)


def test_without_latex_or_the_analyses_the_report_says_what_to_install_and_run(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)  # no latexmk, no pdflatex
    assert main(["report", "--results", str(chain["results"]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "apt-get install texlive-latex-recommended" in out and not (tmp_path / "report.pdf").exists()
    assert "gradients/gradients.tex (run `make gradients`)" in out and "samples/appendix.tex" in out
    assert "Not computed yet: run \\texttt{make samples}" in (tmp_path / "report.tex").read_text()


def test_report_inputs_every_part_and_builds(chain):
    report = chain["report"]
    tex = (report / "report.tex").read_text()
    inputs = re.findall(r"\\input\{([^}]+)\}", tex)
    assert {"tables/summary.tex", "facts.tex", "gradients/gradients.tex", "samples/appendix.tex",
            "figures/exp-smoke.tex"} <= set(inputs)
    assert all((report / path).is_file() for path in inputs)
    if not HAS_LATEX:
        pytest.skip("no latexmk/pdflatex: report.pdf not built (CI builds it)")
    assert (report / "report.pdf").read_bytes()[:5] == b"%PDF-"


# --- errors people will meet ------------------------------------------------------------------------

def test_missing_runs_say_what_is_missing_and_how_to_name_others(chain, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(chain["results"], results, ignore=shutil.ignore_patterns("*.pt", "report"))
    assert main(["samples", "--results", str(results), "--out", str(tmp_path / "out")]) == 1
    message = capsys.readouterr().err
    for name, model in (("3.1", "RNN"), ("3.2", "GRU")):
        assert f"no {model} run of setting 0 of experiment {name} under {results} has weights yet" in message
        assert f"--{model.lower()} DIR" in message
    assert "LSTM" not in message  # optional: without any LSTM run, the analyses go without one


def test_report_files_are_replaced_never_written_through_a_link_and_a_blocked_one_is_one_line(chain, tmp_path,
                                                                                               capsys):
    outside = tmp_path / "precious.md"
    outside.write_text("not the report's\n")
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "summary.md").symlink_to(outside)
    assert main(["tables", "--results", str(chain["results"]), "--out", str(out)]) == 0
    assert outside.read_text() == "not the report's\n"  # the link was replaced, its target left alone
    summary = out / "tables" / "summary.md"
    assert not summary.is_symlink() and summary.read_text() == (chain["report"] / "tables" / "summary.md").read_text()
    capsys.readouterr()
    (out / "facts.md").mkdir()  # something in the way of a report file
    assert main(["report", "--results", str(chain["results"]), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"ptblm report: error: {out / 'facts.md'} is a folder where ptblm writes a file: move it away, or "
                   f"choose another folder with --out\n")


def test_the_lstm_is_analysed_when_named_or_trained_and_otherwise_left_out(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PTB_DIR", raising=False)
    results = tmp_path / "results"
    shutil.copytree(chain["results"], results, ignore=shutil.ignore_patterns("report"))
    lstm = results / lstm_run(chain).relative_to(chain["results"])
    assert main(["gradients", "--results", str(results), "--out", str(tmp_path / "a")]) == 0
    assert f"note: no LSTM run of setting 0 of experiment example-lstm under {results}" in capsys.readouterr().out
    (lstm / "best.pt").unlink()  # no LSTM with weights: RNN and GRU alone, nothing to note
    assert main(["gradients", "--results", str(results), "--out", str(tmp_path / "b")]) == 0
    assert "LSTM" not in capsys.readouterr().out
    record = json.loads((tmp_path / "b" / "gradients" / "gradients.json").read_text())
    assert [m["model"] for m in record["models"]] == ["RNN", "GRU"]
    assert main(["samples", "--results", str(results), "--out", str(tmp_path / "c"), "--lstm", str(lstm)]) == 1
    err = capsys.readouterr().err  # the reason its curves give: a finite epoch, its weights gone
    assert f"no trained LSTM named with --lstm: {lstm} has no best.pt: epoch " in err
    assert "had the best validation perplexity" in err and "but its weights are gone" in err


def test_without_jobs_files_or_the_defaults_the_best_runs_stand_in_with_a_note(chain, tmp_path, capsys,
                                                                               monkeypatch):
    """The run folders alone decide (gradients reads no jobs file); without 3.1 and 3.2 the lowest best valid
    ppl stands in."""
    monkeypatch.delenv("PTB_DIR", raising=False)
    assert main(["gradients", "--results", str(chain["results"]), "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "gradients" / "gradients.json").read_text())
    assert [Path(m["run"]) for m in record["models"]] == [*(default_run(chain, exp) for exp in ("3.1", "3.2")),
                                                          lstm_run(chain)]
    results = tmp_path / "results"
    shutil.copytree(chain["results"], results, ignore=shutil.ignore_patterns("report"))
    for experiment in ("3.1", "3.2"):  # the defaults go; 3.1's other two RNNs and the smoke runs compete
        shutil.rmtree(results / default_run(chain, experiment).relative_to(chain["results"]))
    capsys.readouterr()
    assert main(["gradients", "--results", str(results), "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.count("note: ") == 3  # the LSTM's stand-in was one from the start
    expected = []
    for model in ("RNN", "GRU", "LSTM"):
        runs = [r for r in raw_runs(results) if r["config"]["model"] == model and (r["folder"] / "best.pt").exists()]
        best = min(runs, key=lambda r: min(ppl(e["valid_ppl"]) for e in r["epochs"]))
        expected.append(best["folder"])
    record = json.loads((tmp_path / "b" / "gradients" / "gradients.json").read_text())
    assert [Path(m["run"]) for m in record["models"]] == expected and expected[0].parent.name == "3.1"
    named = ["--rnn", str(default_run(chain, "3.1")), "--gru", str(expected[1]), "--lstm", str(expected[2])]
    assert main(["samples", "--results", str(results), "--out", str(tmp_path / "c"), *named]) == 0
    assert json.loads((tmp_path / "c" / "samples" / "samples.json").read_text())["runs"] == named[1::2]


def test_the_analysed_runs_read_one_corpus_stand_ins_and_named_runs_alike(chain, tmp_path, capsys, monkeypatch):
    """The samples share start words and the gradients compare on one text: a GRU of another corpus never stands
    in beside the RNN, however low its perplexity (a 30-word vocabulary gives a low one), and naming it is one
    line."""
    monkeypatch.delenv("PTB_DIR", raising=False)
    results = tmp_path / "results"
    shutil.copytree(chain["results"], results, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(results / default_run(chain, "3.2").relative_to(chain["results"]))
    small = write_synthetic_corpus(tmp_path / "small", seed=1, vocab_size=30, tokens=(3000, 900, 900))
    other = results / "3.2" / "other-corpus"
    train_run(tiny_config(model="GRU", num_epochs=1), small, other, experiment="3.2", echo=False, environ={})
    own_corpus = [r for r in raw_runs(results) if r["config"]["model"] == "GRU" and (r["folder"] / "best.pt").exists()
                  and r["folder"] != other]
    assert min(ppl(e["valid_ppl"]) for e in json.loads((other / "curves.json").read_text())["epochs"]) < min(
        ppl(e["valid_ppl"]) for r in own_corpus for e in r["epochs"])  # the other corpus's GRU is the lowest
    assert main(["gradients", "--results", str(results), "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "gradients" / "gradients.json").read_text())
    best_own = min(own_corpus, key=lambda r: min(ppl(e["valid_ppl"]) for e in r["epochs"]))["folder"]
    assert Path(record["models"][1]["run"]) == best_own
    capsys.readouterr()
    rnn = default_run(chain, "3.1")
    assert main(["samples", "--results", str(results), "--out", str(tmp_path / "b"), "--rnn", str(rnn),
                 "--gru", str(other)]) == 1
    err = capsys.readouterr().err
    small_tag, own_tag = corpus_tag(rf.read_run(other)), corpus_tag(rf.read_run(rnn))  # 'ptb 91ad88ae'
    assert small_tag != own_tag
    assert err.count("\n") == 1 and f"{other} (named with --gru) read {small_tag}, but {rnn} read {own_tag}" in err
    assert err.endswith(f"name a run of {own_tag}\n")
    # named, the GRU of the small corpus sets the corpus: the RNN stand-in must read it too, and none does
    assert main(["samples", "--results", str(results), "--out", str(tmp_path / "c"), "--gru", str(other)]) == 1
    assert f"has weights yet on the corpus files of {other} ({small_tag}), nor" in capsys.readouterr().err


def test_a_run_is_decoded_only_with_the_corpus_it_recorded(chain, tmp_path):
    """Another corpus of the same vocabulary size would decode the weights with the wrong words: its fingerprint
    tells them apart. A folder from before fingerprints still needs the vocabulary size it was trained with."""
    from ptblm.data import corpus_fingerprint

    run = rf.read_run(default_run(chain, "3.1"))
    same_size = write_synthetic_corpus(tmp_path / "same-size", seed=8, vocab_size=60, tokens=(4000, 1200, 1200))
    assert load_corpus(same_size).vocab_size == run.provenance["vocab_size"]
    expected = (f"{same_size} is not the corpus {run.folder} was trained on (fingerprint "
                f"{corpus_fingerprint(same_size)}, the run recorded {run.provenance[rf.CORPUS_KEY]}): point --data")
    with pytest.raises(DataError, match=re.escape(expected)):
        load_trained(run.folder, "RNN", data_dir=same_size)

    old = Path(shutil.copytree(run.folder, tmp_path / "3.1" / run.name))
    config = json.loads((old / rf.CONFIG_FILE).read_text())
    del config[rf.CORPUS_KEY]
    (old / rf.CONFIG_FILE).write_text(json.dumps(config))
    other = write_synthetic_corpus(tmp_path / "other", seed=3, vocab_size=40, tokens=(2000, 500, 500))
    expected = (f"vocabulary of {load_corpus(other).vocab_size} words but {old} was trained with "
                f"{run.provenance['vocab_size']}")
    with pytest.raises(DataError, match=re.escape(expected)):
        load_trained(old, "RNN", data_dir=other)
    # the size is all a folder from before fingerprints can tell
    assert load_trained(old, "RNN", data_dir=same_size).corpus.vocab_size == run.provenance["vocab_size"]


def test_runs_from_different_corpora_are_flagged_and_experiments_selectable(tmp_path, synthetic_dir):
    """A smoke run on the synthetic corpus beside study runs on PTB: perplexities that do not compare."""
    from ptblm.data import write_synthetic_corpus
    from ptblm.train import train_run

    small = write_synthetic_corpus(tmp_path / "small", seed=1, vocab_size=30, tokens=(3000, 900, 900))
    train_run(tiny_config(num_epochs=1), synthetic_dir, tmp_path / "results" / "3.2" / "a", experiment="3.2",
              echo=False, environ={})
    train_run(tiny_config(num_epochs=1), small, tmp_path / "results" / "smoke" / "b", experiment="smoke", echo=False,
              environ={})
    notes = []
    assert len(load_summaries(tmp_path / "results", warn=notes.append)) == 2
    assert len(notes) == 1 and "different corpora" in notes[0] and "3.2" in notes[0] and "smoke" in notes[0]
    notes.clear()
    only = load_summaries(tmp_path / "results", ["3.2"], warn=notes.append)
    assert [s.experiment for s in only] == ["3.2"] and notes == []
    with pytest.raises(FileNotFoundError, match="no run folders of 3.9 under"):
        load_summaries(tmp_path / "results", ["3.9"])


# --- facts on hand-made curves ---------------------------------------------------------------------

def hand_run(folder: Path, epochs: list[tuple[float, float]], state: str = rf.DONE, **config) -> rf.RunRecord:
    """A run record of (train ppl, valid ppl) per epoch, 10 s each, without training anything."""
    records = [rf.EpochRecord(i, train, valid, 10.0, 10.0 * i, 1.0) for i, (train, valid) in enumerate(epochs, 1)]
    values = tiny_config(num_epochs=len(epochs), **config).to_dict()
    return rf.RunRecord(folder, values, {"experiment": folder.parent.name}, rf.Curves(records),
                        rf.RunStatus(state, len(epochs), len(epochs)))


def test_best_generalisation_is_not_the_run_whose_best_epoch_is_1(tmp_path):
    from ptblm.report.facts import architecture_facts, markdown, rows
    from ptblm.report.summary import summarize

    early = hand_run(tmp_path / "x" / "early", [(500.0, 200.0), (150.0, 210.0), (120.0, 230.0)], initial_lr=0.1)
    good = hand_run(tmp_path / "x" / "good", [(400.0, 180.0), (100.0, 120.0), (80.0, 110.0)], initial_lr=0.01)
    cut = hand_run(tmp_path / "x" / "cut", [(300.0, 100.0)], state=rf.RUNNING, initial_lr=0.001)
    (facts,) = architecture_facts(summarize([early, good, cut]))
    by_name = {s.summary.run.name: s for s in facts.settings}
    assert by_name["early"].summary.best.epoch == 1 and by_name["early"].generalisation_gap == -300.0
    assert facts.best_generalisation is by_name["good"]  # the old rule (most negative gap) picked "early"
    assert not by_name["cut"].judged  # lowest valid ppl, but not complete
    assert f"; row {by_name['cut'].number} not judged" in markdown([facts])
    assert "cannot judge incomplete or diverged runs" in markdown([facts])
    assert [row[2] for row in rows(facts)] == ["ADAM lr 0.001 bs 8", "ADAM lr 0.01 bs 8", "ADAM lr 0.1 bs 8"]


def test_a_diverged_gap_prints_as_diverged_and_a_lone_setting_is_named(tmp_path):
    from ptblm.report.facts import architecture_facts, rows
    from ptblm.report.summary import summarize

    blown = hand_run(tmp_path / "x" / "blown", [(3.2e27, 400.0), (math.inf, math.nan)], state=rf.DIVERGED)
    (facts,) = architecture_facts(summarize([blown]))
    (row,) = rows(facts)
    assert row[2] == "ADAM lr 0.01 bs 8" and row[5] == "diverged"  # was '-' and '-3199999999999999...'


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0"])
def test_a_threshold_that_is_no_perplexity_is_refused_in_one_line(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--results", str(tmp_path), f"--threshold={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{value}' is not a perplexity" in err


# --- page layout -----------------------------------------------------------------------------------

def test_a_single_experiment_report_prints_its_table_once(chain, tmp_path):
    from ptblm.report.document import write_report

    summaries = load_summaries(chain["results"], ["smoke"])
    tex = write_report(summaries, tmp_path, {"smoke": "smoke"}, chain["results"]).tex.read_text()
    assert re.findall(r"\\input\{(tables/[^}]+)\}", tex) == ["tables/exp-smoke.tex"]
    full = (chain["report"] / "report.tex").read_text()
    assert re.findall(r"\\input\{(tables/[^}]+)\}", full) == [
        "tables/summary.tex", "tables/exp-3_1.tex", "tables/exp-3_2.tex", "tables/exp-smoke.tex"]
    assert full.count("\\label{sec:definitions}") == 1 and full.split("\\appendix")[0].count("\\clearpage") == 1


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="no pdftotext (apt-get install poppler-utils)")
def test_every_page_of_the_report_starts_at_its_top(chain):
    """No float page with a figure alone in the middle: each page's first word is in its top fifth."""
    pdf = chain["report"] / "report.pdf"
    if not pdf.exists():
        pytest.skip("no report.pdf (no LaTeX here)")
    import subprocess

    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', boxes, re.DOTALL)
    assert len(pages) >= 4
    for number, (_, height, words) in enumerate(pages, start=1):
        tops = [float(y) for y in re.findall(r'yMin="([\d.]+)"', words)]
        assert tops and min(tops) < 0.2 * float(height), f"page {number} starts at {min(tops) / float(height):.0%}"


def test_the_readme_shows_a_page_of_the_report_as_a_small_png():
    from conftest import REPO

    assert "](docs/report-page.png)" in (REPO / "README.md").read_text()
    png = REPO / "docs" / "report-page.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000


def test_section_titles_come_from_the_description_the_run_folders_record(tmp_path, synthetic_dir):
    """No jobs file is read: a folder records its experiment's description when it trains; older ones have none."""
    from ptblm.report.summary import experiment_descriptions, summarize

    train_run(tiny_config(num_epochs=1), synthetic_dir, tmp_path / "3.1" / "a", experiment="3.1", setting_index=0,
              description="as trained", echo=False, environ={})
    trained = rf.read_run(tmp_path / "3.1" / "a")
    assert trained.provenance["description"] == "as trained"
    older = hand_run(tmp_path / "3.2" / "b", [(200.0, 150.0)])  # from before descriptions were recorded
    assert experiment_descriptions(summarize([trained, older])) == {"3.1": "as trained", "3.2": ""}


# --- several seeds of one setting ---------------------------------------------------------------

def write_seeds(root: Path, **changes) -> None:
    """Three seeds of one RNN setting (best valid 200, 220, 240: mean 220, sd 20) and a worse setting of one."""
    for seed, valid in ((1, [300.0, 200.0]), (2, [310.0, 220.0]), (3, [290.0, 240.0])):
        write_run(root, "3.1", valid, seed=seed, **changes)
    write_run(root, "3.1", [400.0, 350.0], initial_lr=0.5, **changes)


def test_seeds_of_a_setting_are_one_row_of_mean_sd_and_n_with_bold_on_the_mean(tmp_path):
    write_seeds(tmp_path, hidden_size=256)
    summaries = load_summaries(tmp_path)
    assert [s.n for s in summaries] == [1, 3]  # lr 0.5, then lr 1
    rows = {row["#"]: row for row in markdown_rows_of(markdown_table(summaries))}
    single, seeded = rows["1"], rows["2"]
    assert (seeded["n"], single["n"]) == ("3", "1")
    assert seeded["best valid ppl"] == "**220.00 ± 20.00**" and seeded["final valid ppl"] == "220.00 ± 20.00"
    assert seeded["final train ppl"] == "440.00 ± 40.00"  # train = 2 x valid: 400, 440, 480
    assert seeded["best epoch"] == "2" and seeded["wall-clock"] == "0:00:20"  # of the mean curve
    assert single["best valid ppl"] == "350.00"
    tex = latex_table(summaries, "caption", "tab:x")
    assert r"\textbf{220.00 $\pm$ 20.00}" in tex and r"& n &" in tex


def test_one_seed_per_setting_has_no_seed_column(chain):
    assert "| n " not in (chain["report"] / "tables" / "summary.md").read_text()
    assert " & n & " not in (chain["report"] / "tables" / "summary.tex").read_text()
    report = (chain["report"] / "report.tex").read_text()  # nor definitions of seeds or the published study
    assert "several seeds" not in report and "published" not in report



def test_a_setting_of_several_seeds_is_drawn_as_its_mean_with_a_min_max_band(tmp_path):
    write_seeds(tmp_path, hidden_size=256)
    figure = plot_experiment(load_summaries(tmp_path))
    by_epoch = figure.axes[0]
    bands = by_epoch.collections
    assert len(bands) == 1  # the one-seed setting has none
    vertices = bands[0].get_paths()[0].vertices
    at_epoch_2 = {y for x, y in vertices if x == 2}
    assert min(at_epoch_2) == 200.0 and max(at_epoch_2) == 240.0
    solid = [line for line in by_epoch.get_lines() if line.get_linestyle() == "-"]
    assert [list(line.get_ydata()) for line in solid] == [[400.0, 350.0], [300.0, 220.0]]  # the mean of the seeds
    labels = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
    assert labels == ["(1) lr 0.5", "(2) lr 1 n=3"]


def test_facts_of_a_setting_of_several_seeds_are_those_of_its_mean_curve(tmp_path):
    write_seeds(tmp_path, hidden_size=256)
    from ptblm.report.facts import architecture_facts, markdown
    text = markdown(architecture_facts(load_summaries(tmp_path)))
    row = next(line for line in text.splitlines() if line.startswith("| 2 "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2].endswith(", mean of 3 seeds") and cells[3] == "2"  # best epoch of the mean curve
    assert cells[4] == "0.00" and cells[5] == f"{220.0 - 440.0:.2f}"  # valid - train of the means at epoch 2


# --- the published study beside the runs --------------------------------------------------------

def write_published_and_other(root: Path) -> None:
    """3.1 setting 0 of the study (3 epochs, seed 7) and an RNN of no published setting (h 256)."""
    write_run(root, "3.1", [700.0, 600.0, 610.0], seed=7)
    write_run(root, "3.1", [500.0, 400.0], hidden_size=256)


def test_tables_show_the_published_best_final_and_difference_beside_a_run_of_its_setting(tmp_path):
    write_published_and_other(tmp_path)
    summaries = load_summaries(tmp_path)
    rows = {row["hidden"]: row for row in markdown_rows_of(markdown_table(summaries))}
    mine, other = rows["512"], rows["256"]
    assert (mine["published best"], mine["published final"]) == (f"{578.56:.2f}", f"{578.56:.2f}")
    assert mine["vs published"] == f"{100 * (600.0 / 578.56 - 1):+.1f} %" == "+3.7 %"
    assert (other["published best"], other["published final"], other["vs published"]) == ("-", "-", "-")
    tex = latex_table(summaries, "caption", "tab:x")
    assert r"\multicolumn{3}{c}{published}" in tex and r"& 578.56 & 578.56 & +3.7 \% \\" in tex
    alone = load_summaries(tmp_path)[:1]  # the h 256 run alone: nothing extra
    assert "published" not in markdown_table(alone) and "published" not in latex_table(alone, "c", "tab:y")


def test_facts_give_a_one_line_published_verdict_per_setting_of_the_study_only(tmp_path):
    write_published_and_other(tmp_path)
    assert main(["report", "--results", str(tmp_path), "--no-pdf"]) == 0
    text = (tmp_path / "report" / "facts.md").read_text()
    verdicts = [line for line in text.splitlines() if "published" in line]
    assert verdicts == ["Row 2: within 4 % of published 3.1 setting 0 at epoch 3 (best valid ppl 600.00 vs 578.56, "
                        "+3.7 %)."]
    settings = json.loads((tmp_path / "report" / "facts.json").read_text())[0]["settings"]
    assert [s["published"] is None for s in settings] == [True, False]
    assert settings[1]["published"]["epoch"] == 3 and settings[1]["published"]["published_best_valid_ppl"] == 578.56
    assert r"within 4 \% of published 3.1 setting 0 at epoch 3" in (tmp_path / "report" / "facts.tex").read_text()
    report = (tmp_path / "report" / "report.tex").read_text()
    assert "Against the published study" in report and "Over several seeds (n)" not in report


def test_figures_draw_the_published_validation_curve_light_and_dashed_beside_its_setting(tmp_path):
    write_published_and_other(tmp_path)
    figure = plot_experiment(load_summaries(tmp_path))
    by_epoch, by_time = figure.axes[:2]
    light = [line for line in by_epoch.get_lines() if line.get_alpha()]
    assert len(light) == 1 and light[0].get_linestyle() == "-." and light[0].get_color() == "C1"  # row 2's colour
    assert list(light[0].get_xdata()) == [1, 2, 3] and list(light[0].get_ydata()) == PUBLISHED_RNN_VALID
    assert not [line for line in by_time.get_lines() if line.get_alpha()]  # another machine's seconds: not drawn
    assert "published validation" in [text.get_text() for text in figure.legends[0].get_texts()]
    save_figure(figure, tmp_path / "figure")
    sizes, width = pdf_fonts_and_width(tmp_path / "figure.pdf")
    assert width <= 7 * 72 and min(sizes) >= 8
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is not None:
            assert legend.get_window_extent().x0 >= axis.get_window_extent().x1


# --- runs of several corpora: compared only with runs on the same files --------------------------

GRU_ADAM = dict(model="GRU", optimizer="ADAM", batch_size=20, hidden_size=1500, dp_keep_prob=0.35)
PTB_MINI = "46ad9f3834311e0c"  # ptb-mini's fingerprint: real PTB text, not the published files


def write_two_corpora(root: Path, experiment: str = "wt2") -> None:
    """GRUs on PTB (3.2: best 120 and 190) and on WikiText-2 (`experiment`: best 260 and 380), 10 s per epoch."""
    wikitext2 = dict(corpus="wikitext-2", corpus_fingerprint=WIKITEXT2.published_fingerprint)
    write_run(root, "3.2", [200.0, 150.0, 120.0], initial_lr=0.001, **GRU_ADAM)
    write_run(root, "3.2", [260.0, 210.0, 190.0], initial_lr=0.0001, **GRU_ADAM)
    write_run(root, experiment, [400.0, 300.0, 260.0], initial_lr=0.001, **GRU_ADAM, **wikitext2)
    write_run(root, experiment, [600.0, 500.0, 380.0], initial_lr=0.0001, **GRU_ADAM, **wikitext2)


def test_an_experiment_of_more_rows_than_a_page_holds_continues_in_a_second_figure(tmp_path):
    """Six rows of panels (three models on two corpora) were one figure 11 inches tall, running off its page, with
    titles of other files' corpora too long for their panels."""
    from ptblm.report.figures import MAX_ROWS, ROW_HEIGHT, write_figures

    other_files = dict(corpus="wikitext-2", corpus_fingerprint="c39cb47a" + "0" * 56)
    for model in ("RNN", "GRU", "LSTM"):
        write_run(tmp_path, "mix", [300.0, 200.0], model=model)
        write_run(tmp_path, "mix", [600.0, 400.0], model=model, **other_files)
    written = write_figures(load_summaries(tmp_path, warn=lambda note: None), tmp_path / "report")
    folder = tmp_path / "report" / "figures"
    assert sorted(path.name for path in written) == ["exp-mix-2.pdf", "exp-mix-2.png", "exp-mix.pdf", "exp-mix.png",
                                                    "exp-mix.tex"]
    snippet = (folder / "exp-mix.tex").read_text()
    assert re.findall(r"\\includegraphics\{([^}]+)\}", snippet) == ["figures/exp-mix", "figures/exp-mix-2"]
    assert re.findall(r"\\label\{([^}]+)\}", snippet) == ["fig:exp-mix", "fig:exp-mix-2"]
    assert r"\caption{Figure~\ref{fig:exp-mix} continued.}" in snippet
    summaries = load_summaries(tmp_path, warn=lambda note: None)
    rows = panel_rows(summaries)
    first, second = plot_experiment(summaries, rows[:MAX_ROWS]), plot_experiment(summaries, rows[MAX_ROWS:], 8)
    assert first.get_figheight() == ROW_HEIGHT * MAX_ROWS + 0.3 and second.get_figheight() == ROW_HEIGHT * 2 + 0.3
    assert [axis.get_title(loc="left") for axis in first.axes[:2]] == ["(a) RNN on ptb, by epoch",
                                                                      "(b) RNN on ptb, by time"]
    assert [axis.get_title(loc="left") for axis in second.axes] == [
        "(i) GRU on wikitext-2 c39cb47a", "(j) GRU on wikitext-2 c39cb47a",
        "(k) LSTM on wikitext-2 c39cb47a", "(l) LSTM on wikitext-2 c39cb47a"]


def rows_by_number(markdown: str) -> dict[str, dict[str, str]]:
    return {row["#"]: row for row in markdown_rows_of(markdown)}


def test_bold_is_per_architecture_on_each_corpus_and_tables_name_the_corpus(tmp_path):
    """Was: one bold GRU (PTB's 120) over WikiText-2's runs too, and no corpus column in 'All runs'."""
    write_two_corpora(tmp_path)
    summaries = load_summaries(tmp_path, warn=lambda note: None)
    assert [(s.number, s.experiment, s.best_valid_ppl) for s in summaries] == [
        (1, "3.2", 190.0), (2, "3.2", 120.0), (3, "wt2", 380.0), (4, "wt2", 260.0)]  # grouped by corpus
    assert bold_numbers(summaries) == {2, 4}
    rows = rows_by_number(markdown_table(summaries))
    assert [rows[n]["corpus"] for n in "1234"] == ["ptb", "ptb", "wikitext-2", "wikitext-2"]
    assert [rows[n]["best valid ppl"] for n in "1234"] == ["190.00", "**120.00**", "380.00", "**260.00**"]
    tex = latex_table(summaries, "caption", "tab:x")
    assert r"\# & Exp. & Corpus & Arch." in tex and tex.count(r"\midrule") == 2  # header, and between the corpora
    assert main(["tables", "--results", str(tmp_path)]) == 0
    for table in ("summary", "exp-3_2", "exp-wt2"):  # every table of a report of several corpora has the column
        assert "| corpus " in (tmp_path / "report" / "tables" / f"{table}.md").read_text()
    assert "All runs, sorted by corpus, then architecture, then optimizer" in (tmp_path / "report" / "tables" /
                                                                            "summary.tex").read_text()
    assert "corpus" not in markdown_table(summaries[:2])  # one corpus: as before


def test_facts_take_tau_fastest_and_best_generalisation_per_corpus(tmp_path):
    """Was: one GRU tau (2 x PTB's 120) that left every WikiText-2 run 'not reached'."""
    from ptblm.report.facts import architecture_facts, markdown, to_json
    write_two_corpora(tmp_path)
    ptb, wikitext2 = architecture_facts(load_summaries(tmp_path, warn=lambda note: None))
    assert (ptb.model, ptb.corpus, ptb.threshold) == ("GRU", "ptb", 240.0)
    assert (wikitext2.model, wikitext2.corpus, wikitext2.threshold) == ("GRU", "wikitext-2", 520.0)
    assert [s.number for s in wikitext2.settings] == [3, 4] and [s.seconds_to_threshold for s in wikitext2.reached] \
        == [20.0, 10.0]
    assert wikitext2.fastest.number == 4 and wikitext2.best_generalisation.number == 4
    assert ptb.best_generalisation.number == 2
    text = markdown([ptb, wikitext2])
    assert ("GRU on wikitext-2: tau = 520.00 (2 x the lowest best validation ppl of the GRU runs on wikitext-2 "
            "(260.00, row 4))") in text
    assert "not reached" not in text
    assert [entry["corpus"] for entry in to_json([ptb, wikitext2])] == ["ptb", "wikitext-2"]


def test_a_report_of_several_corpora_says_so_on_page_one(tmp_path):
    """Was: the warning went to the terminal only."""
    write_two_corpora(tmp_path)
    write_run(tmp_path, "3.1", [900.0, 800.0], corpus_fingerprint=PTB_MINI)
    notes = []
    summaries = load_summaries(tmp_path, warn=notes.append)
    sentence = ("These runs come from different corpora, whose perplexities do not compare: ptb (Penn Treebank; "
                "experiment 3.2), ptb 46ad9f38 (other Penn Treebank-format files, fingerprint 46ad9f3834311e0c; "
                "experiment 3.1) and wikitext-2 (WikiText-2; experiment wt2). Tables name each run's corpus; bold "
                "type, facts and figure panels compare runs of one corpus only.")
    tex = write_report(summaries, tmp_path / "report", {}, tmp_path).tex.read_text()
    page_one = tex[tex.index("Built by"):tex.index(r"\section{Definitions}")]
    assert latex.escape(sentence) in page_one
    assert notes == [f"note: {sentence} Choose experiments to report one corpus, e.g. `ptblm tables 3.2` "
                     "(make tables EXPS='3.2')."]  # the terminal says the same, and how to report one (was: 3.1
    # and 3.2, which read different files)
    mixed = tmp_path / "mixed"  # one experiment holds runs of two corpora: no choice of experiments helps
    write_run(mixed, "3.1", [900.0, 800.0], corpus_fingerprint=PTB_MINI)
    write_run(mixed, "3.1", [700.0, 600.0], corpus="wikitext-2", initial_lr=0.5)
    notes.clear()
    load_summaries(mixed, warn=notes.append)
    assert notes[0].endswith("Experiment 3.1 mixes corpora, so no choice of experiments reports one corpus; the "
                             "tables still rank each corpus apart."), notes
    assert r"\paragraph{Tables.}" in tex and "Corpus: the text the run trained on" in tex
    one = tmp_path / "one"
    write_run(one, "3.1", [900.0, 800.0], corpus_fingerprint=PTB_MINI)
    tex = write_report(load_summaries(one), tmp_path / "report-one", {}, one).tex.read_text()
    assert "corpora" not in tex and "Corpus:" not in tex  # one corpus, even not the published one: as before


def test_a_ptb_mini_seed_is_not_averaged_with_a_ptb_run_nor_compared_with_the_study(tmp_path):
    """Was one row 'n 2, 689.28 ± 156.58' whose published comparison took the PTB seed's best as the mean's."""
    write_run(tmp_path, "3.1", PUBLISHED_RNN_VALID)
    write_run(tmp_path, "3.1", [900.0, 850.0, 800.0], corpus_fingerprint=PTB_MINI, seed=2)
    summaries = load_summaries(tmp_path, warn=lambda note: None)
    assert [(s.n, s.best_valid_ppl) for s in summaries] == [(1, PUBLISHED_RNN_VALID[-1]), (1, 800.0)]
    rows = rows_by_number(markdown_table(summaries))
    assert "n" not in rows["1"] and bold_numbers(summaries) == {1, 2}
    assert (rows["1"]["vs published"], rows["2"]["vs published"]) == ("+0.0 %", "-")


def test_figures_draw_each_corpus_in_panels_of_its_own(tmp_path):
    """Was one GRU row of panels holding PTB's and WikiText-2's curves on one axis."""
    write_two_corpora(tmp_path, experiment="3.2")  # one experiment on two corpora
    figure = plot_experiment(load_summaries(tmp_path, warn=lambda note: None))
    titles = [axis.get_title(loc="left") for axis in figure.axes]
    assert titles == ["(a) GRU on ptb, by epoch", "(b) GRU on ptb, by time", "(c) GRU on wikitext-2, by epoch",
                      "(d) GRU on wikitext-2, by time"]
    drawn = [sorted(max(line.get_ydata()) for line in axis.get_lines() if line.get_linestyle() == "-")
             for axis in figure.axes[::2]]
    assert drawn == [[200.0, 260.0], [400.0, 600.0]]
