"""The dry run's cost projection, against a hand-written bench JSON and a hand computation."""
import json
import re

import pytest

from conftest import REPO
from ptblm.clusters import ClusterProfile
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.launch.cost import cost_table, profile_gpus, project_costs, read_bench_reports
from ptblm.launch.pipeline import submit_experiment

GRU_512 = {"model": "GRU", "hidden_size": 512, "num_layers": 2, "batch_size": 128, "case": "gru-h512-l2-bs128"}


def bench(device: str, epoch_seconds: float, train_ms: float = 140.0, eval_ms: float = 40.0) -> dict:
    """What `ptblm bench` writes, reduced to what the projection reads."""
    return {"device": device, "seq_len": 35, "emb_size": 200, "vocab_size": 10_000,
            "ptb_tokens": {"train": 929_589, "valid": 73_760},
            "cases": [{"name": GRU_512["case"], "seq_len": 35, "emb_size": 200, "vocab_size": 10_000}],
            "results": [{**GRU_512, "path": "reference", "epoch_seconds": 1.0, "train_ms": 1.0, "eval_ms": 1.0},
                        {**GRU_512, "path": "default", "epoch_seconds": epoch_seconds, "train_ms": train_ms,
                         "eval_ms": eval_ms}]}


@pytest.fixture
def bench_dir(tmp_path):
    folder = tmp_path / "results" / "bench"
    folder.mkdir(parents=True)
    (folder / "bench-20260101-000000.json").write_text(json.dumps(bench("cuda:NVIDIA H100", 99.0)))  # older
    (folder / "bench-20260301-000000.json").write_text(json.dumps(bench("cuda:NVIDIA H100", 30.0)))  # newest cuda
    (folder / "bench-20260401-000000.json").write_text(json.dumps(bench("cpu:x86_64 (2 threads)", 3000.0)))
    (folder / "notes.json").write_text("not json")
    tiny = bench("cuda:NVIDIA H100", 1.0)  # the newest, but its case is a test's tiny vocabulary: not PTB's
    tiny["cases"][0]["vocab_size"] = 50
    (folder / "bench-20260501-000000.json").write_text(json.dumps(tiny))
    return folder


def test_projection_uses_the_newest_bench_of_the_device_kind_and_the_shape(bench_dir):
    profile = ClusterProfile(name="gpu", gpus_per_node=2, cpus_per_task=4, mem_gb=16, time_min=5)
    settings = load_experiment("3.2", REPO / "jobs").settings  # GRU 512x2: bs 128, 128, then 20; 20 epochs
    costs = project_costs(list(settings), profile, read_bench_reports(bench_dir))
    assert [(c.epoch_seconds, c.bench) for c in costs] == [
        (30.0, "bench-20260301-000000.json"), (30.0, "bench-20260301-000000.json"), (None, None)]
    assert (costs[0].seconds, costs[0].requeues, costs[0].gpus, costs[0].cpus) == (20 * 30.0, 1, 2, 4)  # 600 s > 300
    table = cost_table(costs, profile)
    rows = [re.split(r"\s{2,}", line) for line in table.splitlines()[2:5]]
    assert rows == [["0", "gru_adam_lr0.001_bs128_h512_l2_keep0.5", "2", "4", "16 GB", "5 min (1 requeue)", "30",
                     "0.17 h"],
                    ["1", "gru_sgd_lr10_bs128_h512_l2_keep0.5", "2", "4", "16 GB", "5 min (1 requeue)", "30", "0.17 h"],
                    ["2", "gru_adam_lr0.001_bs20_h512_l2_keep0.5", "2", "4", "16 GB", "5 min", "no estimate", "-"]]
    # 2 settings x 600 s = 0.33 h; x 2 GPUs = 0.67 GPU-hours
    assert "projected total for 2 of 3 settings: 0.33 h, 0.67 GPU-hours" in table
    assert "no estimate for 1 setting: no results/bench/*.json of device kind cuda timed its shape" in table
    on_cpu = project_costs(list(settings)[:1], ClusterProfile(name="cpu"), read_bench_reports(bench_dir))
    assert on_cpu[0].epoch_seconds == 3000.0 and on_cpu[0].requeues == 5  # 20 x 3000 s = 60000 s: 6 slices of 180 min
    # 60000 s = 16.67 h on the profile's default 2 cpus: 33.33 core-hours
    assert "projected total for 1 of 1 setting: 16.67 h, no GPU, 33.33 core-hours" in cost_table(
        on_cpu, ClusterProfile(name="cpu"))


def test_max_batches_caps_the_projected_epoch(bench_dir):
    setting = load_experiment("3.2", REPO / "jobs", parse_overrides(["max_batches=10"])).settings[0]
    cost, = project_costs([setting], ClusterProfile(name="g", gres="gpu:a100:1"), read_bench_reports(bench_dir))
    # PTB: 207 training and 16 validation batches of 128 x 35, both capped at 10: 10 x 140 ms + 10 x 40 ms
    assert cost.epoch_seconds == pytest.approx(1.8) and cost.seconds == pytest.approx(36.0) and cost.gpus == 1


def test_profile_gpus_from_gpus_per_node_or_gres():
    assert [profile_gpus(ClusterProfile(name="x", **values)) for values in (
        {}, {"gpus_per_node": 4}, {"gres": "gpu:a100:2"}, {"gres": "gpu"}, {"gres": "tmpfs:10G"})] == [0, 4, 2, 1, 0]


def test_a_dry_run_prints_the_cost_and_without_a_bench_says_so(tmp_path, bench_dir, study_sized_dir):
    printed = []
    profile = ClusterProfile(name="gpu", gpus_per_node=1, time_min=60)
    submit_experiment(load_experiment("3.2", REPO / "jobs"), profile, results_dir=tmp_path / "results",
                      data_dir=study_sized_dir, dry_run=True, executor="local", echo=printed.append)
    assert "projected total for 2 of 3 settings: 0.33 h, 0.33 GPU-hours" in "\n".join(printed)
    printed.clear()
    submit_experiment(load_experiment("3.2", REPO / "jobs"), profile, results_dir=tmp_path / "elsewhere",
                      data_dir=study_sized_dir, dry_run=True, executor="local", echo=printed.append)
    assert "no estimate for 3 settings" in "\n".join(printed) and "projected total" not in "\n".join(printed)


def test_the_bench_command_a_dry_run_names_times_exactly_the_settings_it_could_not_estimate(tmp_path):
    """Was `make bench ARGS=--full`: the course's PTB shapes, never an LSTM's, another corpus's or a --set one."""
    from ptblm.corpora import WIKITEXT2
    from ptblm.data import write_synthetic_corpus
    from runtree import cli

    jobs, results = tmp_path / "jobs", tmp_path / "results"
    jobs.mkdir()
    (jobs / "tiny.yaml").write_text(
        "description: an LSTM on WikiText-2\ncommon: {model: LSTM, hidden_size: 8, num_layers: 1, emb_size: 8, "
        "dp_keep_prob: 1, batch_size: 4, corpus: wikitext-2, num_epochs: 2, device: cpu}\nsettings:\n"
        "  - {optimizer: ADAM, initial_lr: 0.001}\n")
    data = write_synthetic_corpus(tmp_path / "data", corpus=WIKITEXT2)
    dry_run = ["submit", "tiny", "--set", "hidden_size=16", "--dry-run", "--executor", "local", "--jobs", jobs,
               "--results", results, "--data", data]
    code, output = cli(*dry_run)
    assert code == 0 and "no estimate for 1 setting" in output, output
    command = re.search(r"`(\S+ -m ptblm.cli|ptblm) (bench [^`]*)` on such a device", output).group(2)
    assert command == f"bench --full tiny --set hidden_size=16 --jobs {jobs} --out {results / 'bench'}"
    code, output = cli(*command.split(), "--steps", "1", "--warmup", "0", "--device", "cpu")
    assert code == 0 and "lstm-h16-l1-bs4-wikitext-2 default" in output, output
    code, output = cli(*dry_run)
    assert code == 0 and "no estimate" not in output and "projected total for 1 of 1 setting:" in output, output
