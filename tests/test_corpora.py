"""The corpus registry (ptblm.corpora) and WikiText-2, its second entry: reading, finding, downloading, training."""
import dataclasses
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, shared_data, tiny_config
from ptblm import corpora
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.config import ConfigError, RunConfig
from ptblm.corpora import PTB, SPLITS, WIKITEXT2, ArchiveSource, FileSource
from ptblm.data import (DataError, check_data_dir, corpus_fingerprint, download_corpus, load_corpus, read_words,
                        stage_data, write_synthetic_corpus)
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.launch.pipeline import corpus_data_dirs
from ptblm.train import train_run

HEX = {32: re.compile(r"[0-9a-f]{32}"), 64: re.compile(r"[0-9a-f]{64}")}


# --- the registry ----------------------------------------------------------------------------------

@pytest.mark.parametrize("corpus", list(corpora.CORPORA.values()), ids=list(corpora.CORPORA))
def test_every_entry_says_all_ptblm_needs_to_know(corpus):
    """What a new entry must hold: its files with their sums, its variable, a source, its token counts."""
    assert corpora.get(corpus.name) is corpus and re.fullmatch(r"[a-z0-9][a-z0-9-]*", corpus.name)
    assert set(corpus.files) == set(SPLITS) and len(set(corpus.file_names)) == 3
    for file in corpus.files.values():
        assert HEX[64].fullmatch(file.sha256) and (file.md5 is None or HEX[32].fullmatch(file.md5))
        assert file.size is None or file.size > 0
    assert re.fullmatch(r"[A-Z0-9_]+_DIR", corpus.env_var) and corpus.sources
    assert corpus.vocab_size > 1 and all(corpus.tokens[split] > corpus.vocab_size / 100 for split in SPLITS)
    assert corpus.tokenize(" a b \n\n c \n") in (["a", "b", "<eos>", "<eos>", "c", "<eos>"],)
    assert corpora.resolve_data_dir(corpus, None, {}) == Path("data") / corpus.name


def test_entries_are_distinct_and_the_published_ptb_keeps_its_fingerprint():
    entries = list(corpora.CORPORA.values())
    for key in ("name", "env_var", "published_fingerprint"):
        assert len({getattr(entry, key) for entry in entries}) == len(entries), key
    # existing run folders on the real PTB recorded this value; it must keep meaning "the published PTB"
    assert PTB.published_fingerprint == "208c39d304387f15"
    with pytest.raises(corpora.UnknownCorpus, match="unknown corpus 'wikitext2'; valid: ptb, wikitext-2"):
        corpora.get("wikitext2")


def test_the_recorded_sums_are_those_of_the_published_files():
    """Checked against the real files where we have them (the training files cannot be fetched here)."""
    for corpus, folder in ((PTB, shared_data("ptb")), (WIKITEXT2, shared_data("wikitext-2"))):
        for split in ("valid", "test"):
            file, data = corpus.files[split], (folder / corpus.file_name(split)).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data)) == (
                file.sha256, file.md5, file.size)


def test_the_fingerprint_says_whether_the_files_are_the_published_ones(tmp_path):
    """corpus_fingerprint equals the entry's published_fingerprint exactly for the published bytes."""
    folder = write_synthetic_corpus(tmp_path / "c", seed=2, vocab_size=20, tokens=(300, 100, 100))
    published = dataclasses.replace(PTB, files={split: dataclasses.replace(
        file, sha256=hashlib.sha256((folder / file.name).read_bytes()).hexdigest())
        for split, file in PTB.files.items()})
    fingerprint = corpus_fingerprint(folder, corpus=published)
    assert published.is_published(fingerprint) and not PTB.is_published(fingerprint)
    (folder / "ptb.test.txt").write_text(" w1 w2 \n")
    assert not published.is_published(corpus_fingerprint(folder, corpus=published))
    assert not PTB.is_published(None)


def test_data_folders_are_found_as_ptb_s_are(tmp_path):
    """--data, else the corpus's own variable, else data/<corpus>: one rule for every command."""
    environ = {"PTB_DIR": "/p", "WIKITEXT2_DIR": "/w"}
    assert corpora.resolve_data_dir(WIKITEXT2, None, environ) == Path("/w")
    assert corpora.resolve_data_dir(PTB, None, environ) == Path("/p")
    assert corpora.resolve_data_dir(WIKITEXT2, Path("/x"), environ) == Path("/x")
    assert corpora.resolve_data_dir(WIKITEXT2, None, {"PTB_DIR": "/p"}) == Path("data/wikitext-2")
    both = load_experiment("3.2", REPO / "jobs", parse_overrides(["corpus=ptb,wikitext-2"])).settings
    assert corpus_data_dirs(both, None, environ) == {"ptb": Path("/p"), "wikitext-2": Path("/w")}
    with pytest.raises(DataError, match=r"--data /x names one folder, but these settings train on 2 corpora "
                                        r"\(ptb, wikitext-2\); valid: leave --data out and set PTB_DIR \(ptb\), "
                                        r"WIKITEXT2_DIR \(wikitext-2\)"):
        corpus_data_dirs(both, Path("/x"), environ)


def test_a_missing_file_names_the_corpus_s_variable_and_command(tmp_path):
    with pytest.raises(DataError, match=r"wiki.train.tokens is missing: run `make data CORPUS=wikitext-2` \("
                                        r"downloads WikiText-2 into data/wikitext-2\), or point --data or "
                                        r"WIKITEXT2_DIR at a folder holding wiki.train.tokens, wiki.valid.tokens "
                                        r"and wiki.test.tokens"):
        check_data_dir(tmp_path, WIKITEXT2)


# --- the setting and its run name ------------------------------------------------------------------

TODAYS_NAMES = {  # run names before the corpus was a setting: PTB runs keep them
    "3.1": ["rnn_sgd_lr1_bs128_h512_l2_keep0.8", "rnn_sgd_lr1_bs20_h512_l2_keep0.8",
            "rnn_sgd_lr10_bs128_h512_l2_keep0.8", "rnn_adam_lr0.001_bs128_h512_l2_keep0.8",
            "rnn_adam_lr0.0001_bs128_h512_l2_keep0.8"],
    "3.2": ["gru_adam_lr0.001_bs128_h512_l2_keep0.5", "gru_sgd_lr10_bs128_h512_l2_keep0.5",
            "gru_adam_lr0.001_bs20_h512_l2_keep0.5"],
    "3.3": ["gru_adam_lr0.001_bs128_h256_l2_keep0.2", "gru_adam_lr0.001_bs128_h2048_l2_keep0.5",
            "gru_adam_lr0.001_bs128_h512_l4_keep0.5"],
    "3.4": ["transformer_adam_lr0.0001_bs128_h512_l6_keep0.9", "transformer_adam_lr0.0001_bs128_h512_l2_keep0.9",
            "transformer_adam_lr0.0001_bs128_h2048_l2_keep0.6", "transformer_adam_lr0.0001_bs128_h1024_l6_keep0.9"],
    "smoke": ["rnn_sgd_lr1_bs20_h64_l2_keep0.8_emb32_ep2_maxb40",
              "gru_adam_lr0.003_bs20_h64_l2_keep0.8_emb32_ep2_maxb40",
              "lstm_adam_lr0.003_bs20_h64_l2_keep0.8_emb32_ep2_maxb40",  # the LSTM joined the smoke test
              "transformer_adam_lr0.0005_bs20_h64_l1_keep0.9_emb32_ep2_heads4_maxb40"]}


def test_corpus_is_a_setting_ptb_runs_keep_their_names_and_others_show_theirs():
    for experiment, names in TODAYS_NAMES.items():
        settings = load_experiment(experiment, REPO / "jobs").settings
        # each name kept, in order (smoke.yaml gains a line per new model)
        assert [s.run_name for s in settings if s.run_name in names] == names
        assert {s.config.corpus for s in settings} == {"ptb"}
    on_wikitext = load_experiment("example-wikitext2", REPO / "jobs").settings
    assert [s.run_name for s in on_wikitext] == [f"{name}_wikitext-2" for name in TODAYS_NAMES["3.2"]]
    plain_32 = load_experiment("3.2", REPO / "jobs").settings
    assert [s.config.replace(corpus="ptb") for s in on_wikitext] == [s.config for s in plain_32]
    assert "corpus" in RunConfig.from_dict(tiny_config().to_dict()).identity()
    with pytest.raises(ConfigError, match=r"command line: corpus = 'wiki' is invalid; valid: one of ptb, wikitext-2"):
        RunConfig.from_dict({**tiny_config().to_dict(), "corpus": "wiki"}, where="command line")


def test_a_config_json_without_corpus_reads_as_ptb_and_resumes(tmp_path, synthetic_dir):
    """Run folders from before the setting existed are PTB runs: read as such, resumed as the same setting."""
    config = tiny_config(num_epochs=2, max_batches=2)
    folder = tmp_path / "old"
    train_run(config, synthetic_dir, folder, echo=False, should_stop=lambda: bool(rf.read_curves(folder).epochs),
              environ={})
    stored = json.loads((folder / rf.CONFIG_FILE).read_text())
    del stored["config"]["corpus"]  # as written before
    (folder / rf.CONFIG_FILE).write_text(json.dumps(stored))
    assert rf.read_run(folder).config["corpus"] == "ptb"
    assert train_run(config, synthetic_dir, folder, echo=False, environ={}).state == rf.DONE
    assert len(rf.read_curves(folder).epochs) == 2


# --- WikiText-2 ------------------------------------------------------------------------------------

def word_language_model_tokens(path: Path) -> list[str]:
    """pytorch/examples word_language_model/data.py, Corpus.tokenize, its reading loop as written there."""
    words_read = []
    with open(path, encoding="utf8") as f:  # the example opens it "r"
        for line in f:
            words = line.split() + ["<eos>"]
            words_read += words
    return words_read


def test_wikitext2_reads_as_word_language_model_reads_it(tmp_path):
    """Each line's words, then <eos>: blank lines too, CRLF, tabs and no newline at the end."""
    path = tmp_path / "wiki.valid.tokens"
    path.write_bytes(" = Title = \n \n\nThe cat\tsat @-@ here . \r\n<unk> \u00e9t\u00e9\u00a0x\n\nlast line".encode())
    expected = word_language_model_tokens(path)
    assert read_words(path, WIKITEXT2) == expected
    assert expected.count("<eos>") == 7 and expected[-2:] == ["line", "<eos>"]
    assert read_words(path, PTB) != expected  # the scaffold's reader ends no unterminated line


def test_wikitext2_mini_has_the_documented_tokens(wikitext2_mini_dir):
    """Its train split is WikiText-2's test split; its valid and test are WikiText-2's validation split."""
    corpus = load_corpus(wikitext2_mini_dir, WIKITEXT2)
    assert len(corpus.train) == WIKITEXT2.tokens["test"] == 241_211 + 4_358  # words + one <eos> per line
    assert len(corpus.valid) + len(corpus.test) == WIKITEXT2.tokens["valid"]
    assert len(corpus.train) == len(word_language_model_tokens(wikitext2_mini_dir / "wiki.train.tokens"))
    assert "<unk>" in corpus.word_to_id and corpus.unknown_counts["train"] == 0 and corpus.unknown_counts["valid"]


def test_a_wikitext2_run_trains_resumes_and_shows_its_corpus(tmp_path, wikitext2_mini_dir):
    """Through the command line as a user types it; stopped after its first epoch, then resumed."""
    out = tmp_path / "results" / "manual"
    args = ["train", "--corpus", "wikitext-2", "--data", str(wikitext2_mini_dir), "--model", "GRU",
            "--optimizer", "ADAM", "--initial_lr", "0.01", "--batch_size", "4", "--hidden_size", "8",
            "--num_layers", "1", "--emb_size", "8", "--seq_len", "10", "--num_epochs", "2", "--max_batches", "3",
            "--device", "cpu", "--save_dir", str(out)]
    name = "gru_adam_lr0.01_bs4_h8_l1_keep0.35_seq10_emb8_ep2_maxb3_wikitext-2"
    folder = out / name
    first = train_run(RunConfig.from_dict({
        "corpus": "wikitext-2", "model": "GRU", "optimizer": "ADAM", "initial_lr": 0.01, "batch_size": 4,
        "hidden_size": 8, "num_layers": 1, "dp_keep_prob": 0.35, "emb_size": 8, "seq_len": 10, "num_epochs": 2,
        "max_batches": 3, "device": "cpu"}), wikitext2_mini_dir, folder, echo=False,
        scratch_dir=tmp_path / "node", should_stop=lambda: bool(rf.read_curves(folder).epochs), environ={})
    assert first.state == rf.CANCELLED and first.epochs_done == 1
    staged = tmp_path / "node" / "ptblm-data" / f"wikitext-2-{corpus_fingerprint(wikitext2_mini_dir, corpus=WIKITEXT2)}"
    assert (staged / "wiki.train.tokens").is_file()  # staged under its own names, in a folder of its content
    assert main(args) == 0  # resumes the same folder: the name is the setting's, the corpus part of it
    run = rf.read_run(folder)
    assert run.status.state == rf.DONE and len(run.curves.epochs) == 2 and run.config["corpus"] == "wikitext-2"
    log = (folder / rf.LOG_FILE).read_text()
    assert "resuming from" in log and "WikiText-2, not the published files" in log
    assert run.provenance[rf.CORPUS_KEY] == corpus_fingerprint(wikitext2_mini_dir, corpus=WIKITEXT2)
    assert run.provenance["vocab_size"] == load_corpus(wikitext2_mini_dir, WIKITEXT2).vocab_size


def test_the_sbatch_path_hands_each_task_its_corpus_s_folder(tmp_path):
    """`ptblm sbatch` pins WIKITEXT2_DIR's folder for the task; the task (run-setting, as array.sbatch runs it)
    finds its data there, whatever the job's environment says."""
    import subprocess

    from ptblm.clusters import ClusterProfile
    from ptblm.launch.pipeline import submit_sbatch
    from ptblm.launch.sbatch import read_pinned_task, run_setting

    data = write_synthetic_corpus(tmp_path / "wt2", seed=1, vocab_size=30, tokens=(600, 200, 200), corpus=WIKITEXT2)
    assert sorted(p.name for p in data.iterdir()) == sorted(WIKITEXT2.file_names)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "wt.yaml").write_text(json.dumps({"description": "tiny on WikiText-2", "common": {
        **tiny_config(num_epochs=1, max_batches=2, hidden_size=8).to_dict(), "corpus": "wikitext-2"},
        "settings": [{}]}))
    calls = []

    def runner(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "Submitted batch job 41\n" if argv[0] == "sbatch" else "", "")

    results = tmp_path / "results"
    submit_sbatch(load_experiment("wt", jobs), ClusterProfile(name="t"), results_dir=results,
                  environ={"WIKITEXT2_DIR": str(data), "PTB_DIR": "/not/used"}, script=Path("slurm/array.sbatch"),
                  runner=runner, echo=lambda line: None)
    pinned = Path(next(argv for argv in calls if argv[0] == "sbatch")[-2])
    assert read_pinned_task(pinned, 0, {"WIKITEXT2_DIR": "/elsewhere"}).data_dir == data.resolve()
    assert run_setting(pinned, 0, {"WIKITEXT2_DIR": "/elsewhere"}) == rf.DONE
    (folder,) = (results / "wt").glob("*_wikitext-2")
    assert rf.read_run(folder).provenance["data_dir"] == str(data.resolve())


def test_samples_and_gradients_read_the_run_s_corpus_from_its_variable(tmp_path, synthetic_dir):
    from ptblm.report.trained import load_trained

    folder = tmp_path / "run"
    train_run(tiny_config(model="RNN", num_epochs=1, max_batches=2), synthetic_dir, folder, echo=False, environ={})
    other = write_synthetic_corpus(tmp_path / "other", seed=3, vocab_size=40, tokens=(2000, 500, 500))
    assert load_trained(folder, "RNN", environ={"WIKITEXT2_DIR": str(other)}).corpus.vocab_size == \
        rf.read_run(folder).provenance["vocab_size"]  # another corpus's variable: the recorded folder
    with pytest.raises(DataError, match=rf"{other} is not the corpus {folder} was trained on \(fingerprint \w+, the "
                                        r"run recorded \w+\): point --data \(or PTB_DIR\) at the data"):
        load_trained(folder, "RNN", environ={"PTB_DIR": str(other)})


def test_a_dry_run_on_wikitext2_without_its_files_uses_a_synthetic_stand_in(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WIKITEXT2_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no data/wikitext-2 here
    assert main(["train", "--dry-run", "--corpus", "wikitext-2", "--model", "RNN", "--hidden_size", "16",
                 "--emb_size", "8", "--device", "cpu"]) == 0
    assert "WikiText-2, synthetic text in its files' names (ptblm synthetic), not the published files" in \
        capsys.readouterr().out


def test_stage_data_copies_a_corpus_under_its_own_file_names(tmp_path, wikitext2_mini_dir):
    staged = stage_data(wikitext2_mini_dir, tmp_path, WIKITEXT2)
    assert sorted(p.name for p in staged.iterdir()) == sorted(WIKITEXT2.file_names)


# --- downloading: a local server stands in for the mirrors ------------------------------------------

def local(source, base: str):
    """The source with its https://host/ replaced by the local server's base/host/."""
    return dataclasses.replace(source, url=re.sub(r"^https?://", base + "/", source.url))


def serve(root: Path, url: str, base: str, data: bytes) -> None:
    path = root / url.removeprefix(base + "/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def fake_wikitext2(base: str, archive_md5: str) -> tuple[corpora.CorpusEntry, dict[str, bytes]]:
    """WikiText-2's entry with its sources on the local server, three small stand-in files as its published
    ones, and `archive_md5` as the published zip's sum."""
    contents = {split: f" = {split} = \n\n some {split} words \n".encode() for split in SPLITS}
    files = {split: dataclasses.replace(file, sha256=hashlib.sha256(contents[split]).hexdigest(),
                                        md5=hashlib.md5(contents[split]).hexdigest(), size=len(contents[split]))
             for split, file in WIKITEXT2.files.items()}
    sources = tuple(local(source, base) if isinstance(source, FileSource) else
                    dataclasses.replace(local(source, base), md5=archive_md5) for source in WIKITEXT2.sources)
    return dataclasses.replace(WIKITEXT2, files=files, sources=sources), contents


def test_download_verifies_every_file_and_falls_back_to_the_next_source(mirror, tmp_path, monkeypatch, capsys):
    """The raw files first (a corrupt train, a missing test), then the author's zip (another archive than the
    published one: refused), then the original zip address: every file ends up verified."""
    root, base = mirror
    corpus, contents = fake_wikitext2(base, archive_md5="0" * 32)
    good = zip_of({f"wikitext-2/{corpus.file_name(split)}": contents[split] for split in SPLITS})
    corpus = dataclasses.replace(corpus, sources=tuple(
        dataclasses.replace(source, md5=hashlib.md5(good).hexdigest()) if isinstance(source, ArchiveSource)
        else source for source in corpus.sources))
    raw, mirror_zip, original_zip = corpus.sources
    assert raw.url.endswith("/raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
                            "wikitext-2/{split}.txt")
    assert original_zip.url.endswith("/s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip")
    assert WIKITEXT2.sources[2].md5 == "542ccefacc6c27f945fb54453812b3cd"  # torchtext's sum of the published zip
    serve(root, raw.url.format(split="train", name=""), base, b"corrupt " + contents["train"])
    serve(root, raw.url.format(split="valid", name=""), base, contents["valid"])
    serve(root, mirror_zip.url, base, zip_of({"wikitext-2/wiki.train.tokens": b"another archive"}))
    serve(root, original_zip.url, base, good)
    monkeypatch.setitem(corpora.CORPORA, "wikitext-2", corpus)
    dest = tmp_path / "data" / "wikitext-2"
    assert main(["data", "--corpus", "wikitext-2", "--dest", str(dest)]) == 0
    assert {path.name: path.read_bytes() for path in dest.iterdir()} == {
        corpus.file_name(split): contents[split] for split in SPLITS}
    assert f"export WIKITEXT2_DIR={dest.resolve()}" in capsys.readouterr().out


def test_download_that_no_source_verifies_writes_nothing_and_names_each_reason(mirror, tmp_path):
    root, base = mirror
    corpus, contents = fake_wikitext2(base, archive_md5=hashlib.md5(b"the published zip").hexdigest())
    raw, mirror_zip, original_zip = corpus.sources
    serve(root, raw.url.format(split="train", name=""), base, b"corrupt")
    serve(root, mirror_zip.url, base, zip_of({"wikitext-2/wiki.train.tokens": contents["train"]}))
    with pytest.raises(DataError) as error:
        download_corpus(corpus, tmp_path / "dest")
    message = str(error.value)
    assert message.startswith("could not download wiki.train.tokens (")
    assert re.search(r"/train.txt: MD5 \w{32} does not match the expected \w{32} \(corrupt, or not WikiText-2\)",
                     message)
    assert re.search(r"wikitext-2-v1.zip: MD5 \w{32} does not match the published archive's \w{32}", message)
    assert "s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip: HTTP 404 (File not found)" in message
    assert "set WIKITEXT2_DIR=/that/folder" in message and not (tmp_path / "dest").exists()


# --- the report and the cost estimate read the entry ------------------------------------------------

def test_the_report_names_the_corpora_its_runs_trained_on(tmp_path):
    from conftest import write_run
    from ptblm.report.summary import load_summaries

    write_run(tmp_path, "3.1", [700.0, 600.0])
    assert main(["report", "--results", str(tmp_path), "--no-pdf"]) == 0
    title = r"\title{Word-level language models on Penn Treebank: RNN}"  # the corpus and the architecture
    assert title in (tmp_path / "report" / "report.tex").read_text()
    write_run(tmp_path, "wt2", [300.0, 250.0], corpus="wikitext-2", corpus_fingerprint=WIKITEXT2.published_fingerprint)
    write_run(tmp_path, "mini", [900.0, 800.0], corpus_fingerprint="46ad9f3834311e0c")
    notes = []
    load_summaries(tmp_path, warn=notes.append)
    assert notes == ["note: These runs come from different corpora, whose perplexities do not compare: ptb (Penn "
                     "Treebank; experiment 3.1), ptb 46ad9f38 (other Penn Treebank-format files, fingerprint "
                     "46ad9f3834311e0c; experiment mini) and wikitext-2 (WikiText-2; experiment wt2). Tables name each "
                     "run's corpus; bold type, facts and figure panels compare runs of one corpus only. Choose "
                     "experiments to report one corpus, e.g. `ptblm tables 3.1` (make tables EXPS='3.1')."]
    assert main(["report", "--results", str(tmp_path), "--no-pdf", "3.1", "wt2"]) == 0
    assert (r"\title{Word-level language models on Penn Treebank and WikiText-2: RNN}"
            in (tmp_path / "report" / "report.tex").read_text())


def bench_report(corpus: corpora.CorpusEntry, epoch_seconds: float) -> dict:
    """A bench JSON (what the projection reads) that timed GRU 512x2, batch 128, at the corpus's vocabulary."""
    case = {"name": "gru-h512-l2-bs128", "seq_len": 35, "emb_size": 200, "vocab_size": corpus.vocab_size}
    result = {"case": case["name"], "model": "GRU", "hidden_size": 512, "num_layers": 2, "batch_size": 128,
              "path": "default", "epoch_seconds": epoch_seconds, "train_ms": 100.0, "eval_ms": 50.0}
    return {"device": "cuda:H100", "seq_len": 35, "emb_size": 200, "vocab_size": corpus.vocab_size,
            "corpus": corpus.name, "cases": [case], "results": [result]}


def test_the_cost_estimate_uses_a_bench_at_the_setting_s_corpus_and_its_epochs():
    from ptblm.clusters import ClusterProfile
    from ptblm.launch.cost import project_costs

    profile = ClusterProfile(name="g", gpus_per_node=1)
    ptb_setting = load_experiment("3.2", REPO / "jobs").settings[0]
    wt2_setting = load_experiment("example-wikitext2", REPO / "jobs").settings[0]
    capped = load_experiment("example-wikitext2", REPO / "jobs", parse_overrides(["max_batches=100"])).settings[0]
    ptb_only = [("ptb.json", bench_report(PTB, 25.0))]
    assert [c.epoch_seconds for c in project_costs([ptb_setting, wt2_setting], profile, ptb_only)] == [25.0, None]
    both = [("wt2.json", bench_report(WIKITEXT2, 60.0)), *ptb_only]
    assert [c.epoch_seconds for c in project_costs([ptb_setting, wt2_setting], profile, both)] == [25.0, 60.0]
    # another corpus's epochs from the step times: (2,088,628 // 128 - 1) // 35 = 466 training and
    # (217,646 // 128 - 1) // 35 = 48 validation batches of WikiText-2, or max_batches of each
    at_ptb_bench_of_wt2_vocab = [("x.json", {**bench_report(WIKITEXT2, 1.0), "corpus": "ptb"})]
    cost, = project_costs([wt2_setting], profile, at_ptb_bench_of_wt2_vocab)
    assert cost.epoch_seconds == pytest.approx(466 * 0.1 + 48 * 0.05)
    cost, = project_costs([capped], profile, both)
    assert cost.epoch_seconds == pytest.approx(100 * 0.1 + 48 * 0.05)


def test_the_bench_times_at_the_corpus_s_vocabulary_and_projects_its_epochs(tmp_path):
    import torch

    from ptblm.bench.cases import BenchCase, epoch_seconds, on_corpus
    from ptblm.bench.command import run_bench

    case, = on_corpus([BenchCase("GRU", 512, 2, 20, 0.5)], WIKITEXT2)
    assert (case.vocab_size, case.corpus) == (33_278, "wikitext-2")
    # (2,088,628 // 20 - 1) // 35 = 2983 training and (217,646 // 20 - 1) // 35 = 310 validation batches
    assert epoch_seconds(case, train_ms=10.0, eval_ms=5.0) == pytest.approx(2983 * 0.010 + 310 * 0.005)
    tiny, = on_corpus([BenchCase("GRU", 8, 1, 4, 0.5, seq_len=5, emb_size=8)], WIKITEXT2)
    path = run_bench([tiny], torch.device("cpu"), tmp_path, corpus=WIKITEXT2, warmup=0, repeats=1,
                     echo=lambda line: None, environ={})
    report = json.loads(path.read_text())
    assert (report["corpus"], report["vocab_size"], report["corpus_tokens"]) == (
        "wikitext-2", 33_278, {"train": 2_088_628, "valid": 217_646, "test": 245_569})
    assert report["cases"][0]["vocab_size"] == 33_278 and report["cases"][0]["corpus"] == "wikitext-2"


def test_a_folder_of_another_layout_is_named_with_what_to_do(tmp_path, synthetic_dir):
    """Was: only 'wiki.train.tokens is missing' for a folder of word_language_model's train.txt ... or of PTB."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for split in ("train", "valid", "test"):
        (plain / f"{split}.txt").write_text(" a b \n")
    with pytest.raises(DataError, match=r"wiki.train.tokens is missing \(the folder holds train.txt, valid.txt and "
                                        r"test.txt \(word_language_model's names\): rename them \(train.txt -> "
                                        r"wiki.train.tokens, valid.txt -> wiki.valid.tokens, test.txt -> "
                                        r"wiki.test.tokens\)\): run"):
        check_data_dir(plain, WIKITEXT2)
    with pytest.raises(DataError, match=r"wiki.train.tokens is missing \(the folder holds Penn Treebank's files "
                                        r"\(ptb.train.txt, ptb.valid.txt, ptb.test.txt\): for them, use --corpus ptb "
                                        r"\(corpus: ptb in a jobs file\)\)"):
        check_data_dir(synthetic_dir, WIKITEXT2)
