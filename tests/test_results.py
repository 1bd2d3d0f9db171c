"""Run folders as DataFrames (ptblm.results) and `ptblm export` (CSV and the course's files)."""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import PUBLISHED_RNN_VALID, REPO, tiny_config, write_run
from ptblm.corpora import PTB
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.config import RunConfig
from ptblm.models import build_model
from ptblm.results import epochs_frame, runs_frame
from ptblm.train import train_run
from runtree import write_config, write_curves, write_status


@pytest.fixture(scope="module")
def results(synthetic_dir, tmp_path_factory):
    """exp1: one trained, evaluated run (setting 0); exp2: a diverged run written by hand (setting 1)."""
    root = tmp_path_factory.mktemp("results")
    config = tiny_config(num_epochs=2, max_batches=3, evaluate=True)
    train_run(config, synthetic_dir, root / "exp1" / config.run_name(), experiment="exp1", setting_index=0,
              echo=False, environ={})
    diverged = tiny_config(model="RNN", num_epochs=3)
    folder = root / "exp2" / diverged.run_name()
    write_config(folder, diverged.to_dict(), {"experiment": "exp2", "setting_index": 1, "data_dir": "/d"})
    write_curves(folder, rf.Curves(epochs=[
        rf.EpochRecord(1, 900.0, 700.5, 1.5, 1.5, 0.01),
        rf.EpochRecord(2, 2e8, math.inf, 1.25, 2.75, 0.01),
        rf.EpochRecord(3, math.nan, math.nan, 1.0, 3.75, 0.01)]))
    write_status(folder, rf.RunStatus(state=rf.DIVERGED, epochs_done=3, num_epochs=3, slurm_job_id="77_1"))
    return root


def raw_curves(folder):
    return json.loads((folder / rf.CURVES_FILE).read_text())


def as_float(value):
    return float(value)  # curves.json writes non-finite values as "inf" / "nan"


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_frames_hold_the_curves_json_values(results):
    runs, epochs = runs_frame(results), epochs_frame(results)
    assert list(runs["experiment"]) == ["exp1", "exp2"] and list(runs["setting"]) == [0, 1]
    assert len(epochs) == 5
    for row in runs.itertuples(index=False):
        folder = results / row.experiment / row.run
        curves = raw_curves(folder)
        config = json.loads((folder / rf.CONFIG_FILE).read_text())["config"]
        for key, value in config.items():  # every config key, flat
            assert getattr(row, key) == value, key
        train = [as_float(e["train_ppl"]) for e in curves["epochs"]]
        valid = [as_float(e["valid_ppl"]) for e in curves["epochs"]]
        assert same(row.final_train_ppl, train[-1]) and same(row.final_valid_ppl, valid[-1])
        finite = [(v, i + 1) for i, v in enumerate(valid) if math.isfinite(v)]
        assert (row.best_valid_ppl, row.best_epoch) == min(finite)
        assert row.best_train_ppl == min(t for t in train if math.isfinite(t))
        assert row.epochs_done == len(curves["epochs"])
        assert row.wall_clock_seconds == curves["epochs"][-1]["wall_clock_seconds"]
        assert same(row.test_ppl, math.nan if curves["test_ppl"] is None else as_float(curves["test_ppl"]))
        mine = epochs[(epochs["experiment"] == row.experiment) & (epochs["run"] == row.run)]
        for got, want in zip(mine.to_dict("records"), curves["epochs"]):
            for key, value in want.items():
                assert same(got[key], as_float(value)), key
    first, second = runs.iloc[0], runs.iloc[1]
    assert first.state == "done" and math.isfinite(first.test_ppl) and pd.isna(first.job_id)
    assert second.state == "diverged" and second.job_id == "77_1" and math.isnan(second.test_ppl)
    assert second.best_epoch == 1 and second.final_train_ppl is not None and math.isnan(second.final_valid_ppl)


def test_export_csv_reads_back_with_read_csv(results, tmp_path):
    assert main(["export", "--results", str(results)]) == 0
    out = results / "report" / "data"
    runs, epochs = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "epochs.csv")
    pd.testing.assert_frame_equal(runs, runs_frame(results), check_dtype=False)
    pd.testing.assert_frame_equal(epochs, epochs_frame(results), check_dtype=False)
    assert epochs.loc[3, "train_ppl"] == 2e8 and math.isinf(epochs.loc[3, "valid_ppl"])  # inf reads back

    assert main(["export", "exp2", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert list(pd.read_csv(tmp_path / "runs.csv")["experiment"]) == ["exp2"]


def test_an_experiment_named_twice_is_read_once(results, tmp_path):
    """Was 8 rows for 4 runs: `export smoke smoke` and runs_frame(R, ['smoke', 'smoke']) read each run twice, so
    seed counts and the sd over seeds were wrong."""
    once = runs_frame(results, ["exp1", "exp2"])
    pd.testing.assert_frame_equal(runs_frame(results, ["exp2", "exp1", "exp2", "exp1"]),
                                  runs_frame(results, ["exp2", "exp1"]))
    assert len(runs_frame(results, ["exp1", "exp1"])) == 1 and len(once) == 2
    assert len(epochs_frame(results, ["exp2", "exp2"])) == 3
    assert main(["export", "exp1", "exp2", "exp1", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert list(pd.read_csv(tmp_path / "runs.csv")["experiment"]) == ["exp1", "exp2"]
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == 2 + 3


def test_export_course_files_load_as_run_exp_py_says(results, tmp_path):
    args = ["export", "exp1", "exp2", "--format", "course", "--results", str(results), "--out", str(tmp_path)]
    assert main(args) == 0
    for run in rf.find_runs(results):
        dest = tmp_path / run.experiment / run.name
        x = np.load(dest / "learning_curves.npy", allow_pickle=True)[()]  # run_exp.py's own loading line
        curves = raw_curves(run.folder)["epochs"]
        assert sorted(x) == ["times", "train_losses", "train_ppls", "val_losses", "val_ppls"]
        for key, name in (("train_ppls", "train_ppl"), ("val_ppls", "valid_ppl"), ("times", "epoch_seconds")):
            assert all(same(a, as_float(e[name])) for a, e in zip(x[key], curves)) and len(x[key]) == len(curves)
        assert all(same(loss, math.log(as_float(e["train_ppl"]))) for loss, e in zip(x["train_losses"], curves))
        lines = dict(line.split("    ", 1) for line in (dest / "exp_config.txt").read_text().splitlines())
        assert lines["model"] == run.config["model"] and lines["initial_lr"] == str(run.config["initial_lr"])
        assert list(lines) == sorted(lines) and lines["save_dir"] == str(dest)
    trained = rf.find_runs(results, "exp1")[0]
    config = RunConfig.from_dict(trained.config)
    model = build_model(config, trained.provenance["vocab_size"])
    model.load_state_dict(torch.load(tmp_path / "exp1" / trained.name / "best_params.pt"))  # a raw state_dict
    best = torch.load(trained.folder / rf.BEST_CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    assert not (tmp_path / "exp2" / rf.find_runs(results, "exp2")[0].name / "best_params.pt").exists()


def test_export_of_an_experiment_without_runs_is_one_line(results, capsys):
    assert main(["export", "3.9", "--results", str(results)]) == 1
    assert capsys.readouterr().err.strip() == (f"ptblm export: error: {results / '3.9'}: no run folders (nothing of "
                                               f"experiment '3.9' has run yet; `make status` lists what has)")


def test_the_command_line_imports_neither_pandas_nor_torch_to_parse():
    code = "import sys, ptblm.cli as c; c.build_parser(); print('pandas' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


# --- seeds and the published study -------------------------------------------------------------

def test_the_published_study_is_package_data_with_the_study_s_emb_and_seq():
    from ptblm.published import published_epochs
    study = published_epochs()
    assert len(study) == 15 * 20 and set(study["emb_size"]) == {200} and set(study["seq_len"]) == {35}
    first = study[(study["published_experiment"] == "3.1") & (study["published_setting"] == 0)]
    assert list(first["valid_ppl"][:3]) == PUBLISHED_RNN_VALID and first["train_ppl"].iloc[0] == 1139.62


def test_a_run_matches_its_published_setting_at_the_epochs_both_have_and_another_matches_none(tmp_path):
    from ptblm.published import published_comparison
    write_run(tmp_path, "3.1", [700.0, 600.0, 610.0], seed=7)  # seed and length may differ
    write_run(tmp_path, "3.1", [500.0, 400.0], hidden_size=256)  # no published setting has h 256 with SGD
    write_run(tmp_path, "mine", [800.0], emb_size=100)  # emb differs from the study's 200
    compared = published_comparison(runs_frame(tmp_path), epochs_frame(tmp_path))
    assert len(compared) == 1
    row = compared.iloc[0]
    assert (row.published_experiment, row.published_setting, row.epoch) == ("3.1", 0, 3)
    assert (row.best_valid_ppl, row.published_best_valid_ppl) == (600.0, 578.56)
    assert (row.final_valid_ppl, row.published_final_valid_ppl) == (610.0, 578.56)
    assert row.relative_difference == pytest.approx(600.0 / 578.56 - 1)


def test_only_runs_trained_as_the_study_was_are_compared_with_it(tmp_path):
    """The published PTB files (the recorded fingerprint) and whole epochs: not a sample, not max_batches,
    not another corpus, even at the study's hyper-parameters."""
    from ptblm.cli import main
    from ptblm.corpora import WIKITEXT2
    from ptblm.published import published_comparison
    write_run(tmp_path, "mini", [900.0, 800.0], corpus_fingerprint="46ad9f3834311e0c")  # ptb-mini's
    write_run(tmp_path, "capped", [5000.0, 4000.0], max_batches=5)
    write_run(tmp_path, "wt2", [300.0, 250.0], corpus="wikitext-2", corpus_fingerprint=WIKITEXT2.published_fingerprint)
    write_run(tmp_path, "unrecorded", [900.0, 800.0], corpus_fingerprint=None)  # from before fingerprints
    runs = runs_frame(tmp_path)
    assert dict(zip(runs["experiment"], runs["published_corpus"])) == {
        "mini": False, "capped": True, "wt2": True, "unrecorded": False}
    assert published_comparison(runs, epochs_frame(tmp_path)).empty
    assert main(["report", "--results", str(tmp_path), "--no-pdf"]) == 0
    report = tmp_path / "report"
    assert "published" not in (report / "facts.md").read_text() + (report / "report.tex").read_text()
    write_run(tmp_path, "study", [700.0, 600.0])  # the published files, whole epochs: compared
    compared = published_comparison(runs_frame(tmp_path), epochs_frame(tmp_path))
    assert list(compared["experiment"]) == ["study"]


def test_seeds_of_one_setting_aggregate_to_mean_and_sample_sd(tmp_path):
    from ptblm.results import mean_epochs, seed_groups, seed_statistics
    for seed, valid in ((1, [300.0, 200.0]), (2, [310.0, 220.0]), (3, [290.0, 240.0])):
        write_run(tmp_path, "3.1", valid, seed=seed)
    write_run(tmp_path, "3.1", [100.0, 90.0], initial_lr=0.5)  # another setting
    groups = seed_groups(rf.find_runs(tmp_path))
    assert sorted(len(group) for group in groups) == [1, 3]
    seeds = next(group for group in groups if len(group) == 3)
    stats = seed_statistics(seeds)
    assert stats.loc["mean", "best_valid_ppl"] == pytest.approx((200 + 220 + 240) / 3)
    assert stats.loc["std", "best_valid_ppl"] == pytest.approx(math.sqrt(((-20) ** 2 + 0 + 20 ** 2) / 2))  # ddof 1
    assert stats.loc["count", "best_valid_ppl"] == 3
    curve = mean_epochs(seeds)
    assert list(curve["valid_ppl"]) == pytest.approx([300.0, 220.0])
    assert list(curve["valid_ppl_min"]) == [290.0, 200.0] and list(curve["valid_ppl_max"]) == [310.0, 240.0]
    assert list(curve["n"]) == [3, 3]
    diverged = write_run(tmp_path, "3.1", [280.0, math.nan], seed=4)
    with_diverged = seeds + [run for run in rf.find_runs(tmp_path) if run.folder == diverged]
    stats = seed_statistics(with_diverged)
    assert math.isnan(stats.loc["mean", "final_valid_ppl"]) and stats.loc["count", "final_valid_ppl"] == 3
    assert stats.loc["mean", "best_valid_ppl"] == pytest.approx((200 + 220 + 240 + 280) / 4)
    assert list(mean_epochs(with_diverged)["valid_ppl"])[1] == math.inf  # never a mean of the other seeds


def test_runs_on_different_copies_of_a_corpus_are_never_seeds_of_one_setting(tmp_path):
    """Was one group of six: seed_groups keyed on the setting only, so a ptb-mini run and a real PTB run of one
    setting became 'n 2, mean ± sd'. The recorded fingerprint (before fingerprints: the vocabulary) tells apart."""
    from ptblm.results import seed_groups
    mini = "46ad9f3834311e0c"  # ptb-mini's fingerprint
    for seed, fingerprint, vocab in ((1, PTB.published_fingerprint, None), (2, mini, None),
                                     (3, PTB.published_fingerprint, None), (4, None, 10_000), (5, None, 9_000),
                                     (6, None, 10_000)):
        write_run(tmp_path, "3.1", [300.0 + seed, 200.0], corpus_fingerprint=fingerprint, vocab_size=vocab, seed=seed)
    groups = seed_groups(rf.find_runs(tmp_path))
    assert sorted(sorted(run.config["seed"] for run in group) for group in groups) == [[1, 3], [2], [4, 6], [5]]


def test_export_counts_the_runs_it_exported_and_refuses_when_there_are_none(results, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    damaged = rf.find_runs(copy, "exp2")[0].folder
    (damaged / rf.CURVES_FILE).write_text("{bad")
    assert main(["export", "--format", "course", "--results", str(copy), "--out", str(tmp_path / "course")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"exported 1 run (1 left out, named above): wrote 3 files to " \
                                                       f"{tmp_path / 'course'}"
    assert main(["export", "--results", str(copy), "--out", str(tmp_path / "csv")]) == 0  # a damaged run is a row
    assert capsys.readouterr().out.splitlines()[-1] == f"exported 2 runs: wrote 2 files to {tmp_path / 'csv'}"
    shutil.rmtree(copy / "exp1")
    assert main(["export", "--format", "course", "--results", str(copy), "--out", str(tmp_path / "course")]) == 1
    assert capsys.readouterr().err.strip() == (f"ptblm export: error: no run under {copy} could be exported (1 run, "
                                               f"named above); `ptblm status` lists it")
    empty = tmp_path / "empty"
    empty.mkdir()
    for export_format in ("csv", "course"):
        assert main(["export", "--format", export_format, "--results", str(empty)]) == 1
        assert capsys.readouterr().err.strip() == (
            f"ptblm export: error: no run folders under {empty} (expected {empty}/<experiment>/<run>/config.json): "
            f"train something first, e.g. `make submit EXP=smoke`, or point --results at a results folder")
    assert not (empty / "report").exists()
