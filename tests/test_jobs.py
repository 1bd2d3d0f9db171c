"""Experiments as data, cluster profiles, the submit plan and the status table (no scheduler needed)."""
import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO, queued, tiny_config
from ptblm import runfolder as rf
from ptblm.clusters import ClusterProfile, load_profile, split_array
from ptblm.config import ConfigError, RunConfig, exact_number
from ptblm.jobs import experiment_names, load_experiment, parse_overrides
from ptblm.status import status_rows
from ptblm.launch.plan import Action, plan_experiment
from ptblm.launch.sbatch import sbatch_argv
from ptblm.launch.slurm import scheduler_parameters
from runtree import write_status

SUBMIT, RESUME, SKIP = Action.SUBMIT, Action.RESUME, Action.SKIP

JOBS = REPO / "jobs"


def settings_of(name: str) -> list[dict]:
    keys = ("model", "optimizer", "initial_lr", "batch_size", "hidden_size", "num_layers", "dp_keep_prob")
    return [{k: getattr(s.config, k) for k in keys} for s in load_experiment(name, JOBS).settings]


def test_course_settings_are_exactly_the_assignments():
    rnn = dict(model="RNN", hidden_size=512, num_layers=2, dp_keep_prob=0.8)
    assert settings_of("3.1") == [
        {**rnn, "optimizer": "SGD", "initial_lr": 1.0, "batch_size": 128},
        {**rnn, "optimizer": "SGD", "initial_lr": 1.0, "batch_size": 20},
        {**rnn, "optimizer": "SGD", "initial_lr": 10.0, "batch_size": 128},
        {**rnn, "optimizer": "ADAM", "initial_lr": 0.001, "batch_size": 128},
        {**rnn, "optimizer": "ADAM", "initial_lr": 0.0001, "batch_size": 128}]
    gru = dict(model="GRU", hidden_size=512, num_layers=2, dp_keep_prob=0.5)
    assert settings_of("3.2") == [
        {**gru, "optimizer": "ADAM", "initial_lr": 0.001, "batch_size": 128},
        {**gru, "optimizer": "SGD", "initial_lr": 10.0, "batch_size": 128},
        {**gru, "optimizer": "ADAM", "initial_lr": 0.001, "batch_size": 20}]
    adam = dict(model="GRU", optimizer="ADAM", initial_lr=0.001, batch_size=128)
    assert settings_of("3.3") == [
        {**adam, "hidden_size": 256, "num_layers": 2, "dp_keep_prob": 0.2},
        {**adam, "hidden_size": 2048, "num_layers": 2, "dp_keep_prob": 0.5},
        {**adam, "hidden_size": 512, "num_layers": 4, "dp_keep_prob": 0.5}]
    tf = dict(model="TRANSFORMER", optimizer="ADAM", initial_lr=0.0001, batch_size=128)
    assert settings_of("3.4") == [
        {**tf, "hidden_size": 512, "num_layers": 6, "dp_keep_prob": 0.9},
        {**tf, "hidden_size": 512, "num_layers": 2, "dp_keep_prob": 0.9},
        {**tf, "hidden_size": 2048, "num_layers": 2, "dp_keep_prob": 0.6},
        {**tf, "hidden_size": 1024, "num_layers": 6, "dp_keep_prob": 0.9}]
    for name in ("3.1", "3.2", "3.3", "3.4"):
        for setting in load_experiment(name, JOBS).settings:
            c = setting.config
            assert (c.seq_len, c.num_epochs, c.emb_size, c.seed) == (35, 20, 200, 1111)
    assert [s.config.save_best for s in load_experiment("3.1", JOBS).settings] == [True] + [False] * 4


def test_run_names_are_stable_and_readable():
    names = [s.run_name for s in load_experiment("3.2", JOBS).settings]
    assert names == ["gru_adam_lr0.001_bs128_h512_l2_keep0.5", "gru_sgd_lr10_bs128_h512_l2_keep0.5",
                     "gru_adam_lr0.001_bs20_h512_l2_keep0.5"]
    assert [s.index for s in load_experiment("3.2", JOBS).settings] == [0, 1, 2]


def test_grid_is_the_product_of_its_values():
    experiment = load_experiment("example-sweep", JOBS)
    assert [(s.config.initial_lr, s.config.dp_keep_prob) for s in experiment.settings] == [
        (0.001, 0.5), (0.001, 0.35), (0.0005, 0.5), (0.0005, 0.35)]


def write_jobs(tmp_path: Path, body: str) -> Path:
    (tmp_path / "bad.yaml").write_text(textwrap.dedent(body))
    return tmp_path


TWO_SETTINGS = ("common: {model: GRU, optimizer: ADAM, initial_lr: 0.001, num_layers: 1, dp_keep_prob: 0.5}\n"
                "settings:\n  - {batch_size: 2, hidden_size: 8}\n  - {batch_size: 4, hidden_size: 8}\n")


def test_seeds_run_each_setting_once_per_seed_numbered_seed_by_seed(tmp_path):
    plain = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS)).settings
    seeded = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS + "seeds: [1111, 1, 2]\n")).settings
    assert [(s.index, s.config.seed, s.config.batch_size) for s in seeded] == [
        (0, 1111, 2), (1, 1111, 4), (2, 1, 2), (3, 1, 4), (4, 2, 2), (5, 2, 4)]
    # the default seed's block keeps today's numbers and folder names; the others carry their seed
    assert [s.run_name for s in plain] == ["gru_adam_lr0.001_bs2_h8_l1_keep0.5", "gru_adam_lr0.001_bs4_h8_l1_keep0.5"]
    assert [s.run_name for s in seeded] == [s.run_name for s in plain] + [
        "gru_adam_lr0.001_bs2_h8_l1_keep0.5_seed1", "gru_adam_lr0.001_bs4_h8_l1_keep0.5_seed1",
        "gru_adam_lr0.001_bs2_h8_l1_keep0.5_seed2", "gru_adam_lr0.001_bs4_h8_l1_keep0.5_seed2"]
    one = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS + "seeds: [1111]\n")).settings
    assert one == plain


@pytest.mark.parametrize("seeds, message", [
    ("[1, 2, 1]", r"bad.yaml: seeds\[2\] = 1 appears a second time; valid: a non-empty list of distinct integers "
                  r"from 0 to 4294967295"),
    ("[1, -3]", r"bad.yaml: seeds\[1\] = -3 is invalid; valid: a non-empty list of distinct integers"),
    ("[1, 4294967296]", r"bad.yaml: seeds\[1\] = 4294967296 is invalid"),
    ("[1, true]", r"bad.yaml: seeds\[1\] = True is invalid"),
    ("[1, '2']", r"bad.yaml: seeds\[1\] = '2' is invalid"),
    ("5", r"bad.yaml: seeds = 5 is invalid; valid: a non-empty list"),
    ("[]", r"bad.yaml: seeds = \[\] is invalid"),
    ("[" + ", ".join(map(str, range(501))) + "]",
     r"bad.yaml: 2 settings x 501 seeds = 1002 settings; valid: at most 1000 settings per experiment"),
])
def test_invalid_seeds_are_one_line_naming_the_file_and_what_is_valid(tmp_path, seeds, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS + f"seeds: {seeds}\n"))


def test_a_seed_in_a_setting_beside_seeds_is_refused(tmp_path):
    body = TWO_SETTINGS.replace("{batch_size: 4,", "{seed: 3, batch_size: 4,") + "seeds: [1, 2]\n"
    with pytest.raises(ConfigError, match=r"bad.yaml: setting 1 sets seed and the file has seeds:; valid: one of"):
        load_experiment("bad", write_jobs(tmp_path, body))


@pytest.mark.parametrize("body, message", [
    ("settings:\n  - {model: GRU, optimizer: ADAM, initial_lr: 0.001, batch_size: 2, hidden_size: 8,\n"
     "     num_layers: 1, dp_keep_prob: 0.5, hiden_size: 3}\n",
     r"bad.yaml, setting 0: unknown key 'hiden_size'; valid keys: model, optimizer"),
    ("common: {model: GRU, optimizer: ADAM, initial_lr: 0.001, batch_size: 2, num_layers: 1, dp_keep_prob: 0.5}\n"
     "settings:\n  - {hidden_size: 8}\n  - {hidden_size: '8'}\n",
     r"bad.yaml, setting 1: hidden_size = '8' has type str; expected int"),
    ("common: {model: TRANSFORMER, optimizer: ADAM, initial_lr: 1e-4, batch_size: 2, num_layers: 1, "
     "dp_keep_prob: 0.5}\nsettings:\n  - {hidden_size: 100}\n",
     r"bad.yaml, setting 0: hidden_size = 100 is invalid; valid: a multiple of n_heads = 16"),
    ("common: {model: GRU, optimizer: ADAM, initial_lr: 0.001, batch_size: 2, num_layers: 1, hidden_size: 8}\n"
     "settings:\n  - {dp_keep_prob: 0}\n",
     r"bad.yaml, setting 0: dp_keep_prob = 0.0 is invalid; valid: a keep probability in \(0, 1\]"),
    ("common: {model: GRU, initial_lr: 0.001, batch_size: 2, num_layers: 1, hidden_size: 8, dp_keep_prob: 1}\n"
     "settings:\n  - {optimizer: RMSPROP}\n",
     r"bad.yaml, setting 0: optimizer = 'RMSPROP' is invalid; valid: one of SGD, SGD_LR_SCHEDULE, ADAM"),
    ("setings: []\n", r"bad.yaml: unknown top-level key 'setings'"),
    ("grid: {initial_lr: 0.1}\n", r"bad.yaml: grid.initial_lr must be a non-empty list"),
    ("settings:\n  - {model: GRU, optimizer: ADAM, initial_lr: 0.1, batch_size: 2, hidden_size: 8, num_layers: 1,"
     " dp_keep_prob: 1}\n  - {model: GRU, optimizer: ADAM, initial_lr: 0.1, batch_size: 2, hidden_size: 8,"
     " num_layers: 1, dp_keep_prob: 1.0}\n", r"bad.yaml: settings 0 and 1 are the same setting"),
    ("settings:\n  - {model: GRU, optimizer: ADAM, initial_lr: 0.1, batch_size: 2, hidden_size: 8, num_layers: 1,"
     " dp_keep_prob: 1, batch_size: 4}\n",
     r"bad.yaml, line 2: key 'batch_size' appears a second time \(first on line 2\); valid: each key once"),
    ("settings:\n  - {hidden_size: 8}\ncommon: {model: GRU}\nsettings:\n  - {hidden_size: 9}\n",
     r"bad.yaml, line 4: key 'settings' appears a second time \(first on line 1\)"),
    ("description: &a [x, x, x, x, x, x, x, x, x]\ncommon: {b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]}\n",
     r"bad.yaml, line 1: YAML anchors and aliases \(&name, \*name, <<\) are not allowed"),
    ("common: {model: GRU, optimizer: ADAM, batch_size: 2, num_layers: 1, hidden_size: 8, dp_keep_prob: 1}\n"
     "settings:\n  - {initial_lr: .inf}\n",
     r"bad.yaml, setting 0: initial_lr = inf is invalid; valid: a finite number > 0"),
    ("common: {model: GRU, optimizer: ADAM, batch_size: 2, num_layers: 1, hidden_size: 8, dp_keep_prob: 1}\n"
     "settings:\n  - {initial_lr: 1e400}\n",
     r"bad.yaml, setting 0: initial_lr = inf is invalid; valid: a finite number > 0"),
    ("common: {model: GRU, optimizer: ADAM, initial_lr: 0.1, batch_size: 2, num_layers: 1, hidden_size: 8,"
     " dp_keep_prob: 1}\nsettings:\n  - {seed: 1180591620717411303424}\n",
     r"bad.yaml, setting 0: seed = 1180591620717411303424 is invalid; valid: an integer from 0 to 4294967295"),
    ("grid: {seed: [" + ", ".join(map(str, range(1000))) + "], batch_size: [" + ", ".join(map(str, range(1, 1001)))
     + "]}\nsettings:\n  - {seed: 5}\n",
     r"bad.yaml: grid gives 1000 x 1000 = 1000000 settings after 1 listed ones; valid: at most 1000 settings per "
     r"experiment"),
])
def test_invalid_jobs_stop_with_one_message_naming_file_setting_and_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("bad", write_jobs(tmp_path, body))


def test_an_experiment_name_that_would_leave_results_is_refused(tmp_path):
    (tmp_path / "...yaml").write_text("settings: []\n")  # the experiment `..`: results/../<run>
    with pytest.raises(ConfigError, match=r"experiment name '..' \(the file's name\) is invalid; valid: letters, "
                                          r"digits, '.', '_' and '-', starting with a letter or digit"):
        load_experiment("..", tmp_path)


def test_a_jobs_file_named_all_is_refused_since_all_names_every_experiment(tmp_path):
    """`all` expands to every jobs file: a file all.yaml would be submitted under a name no command can pick alone."""
    body = f"settings: [{json.dumps(tiny_config().to_dict())}]\n"
    (tmp_path / "all.yaml").write_text(body)
    (tmp_path / "mine.yaml").write_text(body)
    for named in (["all"], [str(tmp_path / "all.yaml")]):
        experiments = experiment_names(named, tmp_path)
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'all.yaml'))}: experiment name 'all' "
                                              r"\(the file's name\) is the word that names every experiment at once"):
            for name in experiments:
                load_experiment(name, tmp_path)
    assert load_experiment("mine", tmp_path).name == "mine"


def test_a_profile_with_a_key_written_twice_is_refused(tmp_path):
    (tmp_path / "twice.yaml").write_text("partition: debug\ntime_min: 60\npartition: gpu\n")
    with pytest.raises(ConfigError, match=r"twice.yaml, line 3: key 'partition' appears a second time"):
        load_profile("twice", tmp_path)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"no experiment '3.9'.*known experiments: 3.1, 3.2, 3.3, 3.4"):
        load_experiment("3.9", JOBS)


def test_every_shipped_profile_loads_and_bad_ones_are_named(tmp_path):
    for path in (REPO / "slurm" / "clusters").glob("*.yaml"):
        assert isinstance(load_profile(path.stem, path.parent), ClusterProfile)
    (tmp_path / "x.yaml").write_text("partition: gpu\ngpus: 1\n")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'gpus'; valid keys: .*gpus_per_node"):
        load_profile("x", tmp_path)
    (tmp_path / "y.yaml").write_text("time_min: -5\n")
    with pytest.raises(ConfigError, match=r"y.yaml: time_min = -5 is invalid"):
        load_profile("y", tmp_path)


def test_array_splitting_respects_max_array_size():
    assert split_array(5, 1000) == [range(0, 5)]
    assert split_array(2500, 1000) == [range(0, 1000), range(1000, 2000), range(2000, 2500)]
    assert split_array(4, 2) == [range(0, 2), range(2, 4)]
    with pytest.raises(ValueError):
        split_array(3, 0)


def test_profile_becomes_submitit_and_sbatch_options(tmp_path):
    profile = ClusterProfile(name="c", partition="long", account="rrg-x", gres="gpu:a100:1", mem_gb=16,
                             cpus_per_task=4, time_min=90, array_parallelism=3, setup=("module load apptainer",),
                             sbatch_extra={"constraint": "ampere"})
    parameters = scheduler_parameters(profile, "ptblm-3.1")
    assert parameters["partition"] == "long" and parameters["gres"] == "gpu:a100:1"
    assert parameters["mem"] == "16384MB" and parameters["time"] == 90 and parameters["array_parallelism"] == 3
    assert parameters["setup"] == ["module load apptainer"]
    argv = sbatch_argv("3.1", [1, 3], profile, parameters, logs_dir=tmp_path / "3.1" / "logs",
                       script=Path("slurm/array.sbatch"), pinned=tmp_path / "pinned.json", python="/v/python")
    assert argv[0] == "sbatch" and argv[-3:] == ["slurm/array.sbatch", str(tmp_path / "pinned.json"), "/v/python"]
    assert "--array=1,3%3" in argv and "--gres=gpu:a100:1" in argv and "--constraint=ampere" in argv
    assert f"--output={tmp_path}/3.1/logs/%A_%a.out" in argv and "--export=ALL" in argv


def test_plan_skips_finished_resumes_interrupted_and_respects_force(tmp_path):
    experiment = load_experiment("3.2", JOBS)
    done, interrupted, waiting = (s.run_dir(tmp_path) for s in experiment.settings)
    write_status(done, rf.RunStatus(state=rf.DONE, epochs_done=20, num_epochs=20))
    write_status(interrupted, rf.RunStatus(state=rf.FAILED, epochs_done=7, num_epochs=20))
    rf.write_submission(waiting, rf.Submission(job_id="55_2", executor="slurm", submitted_at=1.0))
    plan = plan_experiment(experiment, tmp_path, force=False, scheduler={"55_2": queued("3.2", "PENDING")})
    assert [(t.action, t.reason) for t in plan] == [
        (SKIP, "done (20/20 epochs)"), (RESUME, "from last.pt after epoch 7"),
        (SKIP, "Slurm job 55_2 still queued or running")]
    assert [t.action for t in plan_experiment(experiment, tmp_path, False, scheduler={})][2] == SUBMIT
    # squeue does not answer: a setting that may still run is left alone
    unknown = plan_experiment(experiment, tmp_path, False, scheduler=None)
    assert unknown[2].action == SKIP and "squeue does not answer" in unknown[2].reason
    forced = plan_experiment(experiment, tmp_path, force=True, scheduler={"55_2": queued("3.2")})
    assert [t.action for t in forced] == [SUBMIT, SUBMIT, SKIP]  # never two jobs in one folder
    assert forced[2].reason.endswith("scancel it to force a rerun")


def test_forced_folders_are_cleared_at_submission_not_in_the_requeued_task(tmp_path):
    from ptblm.launch.pipeline import mark_accepted
    from ptblm.launch.tasks import TrainTask, mark_requeued

    experiment = load_experiment("3.2", JOBS)
    for setting in experiment.settings:
        write_status(setting.run_dir(tmp_path), rf.RunStatus(state=rf.DONE, epochs_done=20, num_epochs=20))
    plan = plan_experiment(experiment, tmp_path, force=True, scheduler={})
    assert all(task.forced for task in plan)
    accepted = mark_accepted(plan, tmp_path, "slurm")
    accepted(TrainTask(experiment.settings[0], str(tmp_path), str(tmp_path)), "5_0", 1.0)
    assert rf.read_status(experiment.settings[0].run_dir(tmp_path)) is None
    assert rf.read_submission(experiment.settings[0].run_dir(tmp_path)).setting_index == 0
    task = TrainTask(experiment.settings[1], str(tmp_path), str(tmp_path))
    assert task.checkpoint().function is task  # the requeued attempt is the same task: it resumes
    mark_requeued(task.run_dir, 20)  # a finished run stays finished
    assert rf.read_status(task.run_dir).state == rf.DONE
    write_status(task.run_dir, rf.RunStatus(state=rf.RUNNING, epochs_done=3, num_epochs=20, slurm_job_id="7_1"))
    task.checkpoint()
    status = rf.read_status(task.run_dir)
    assert (status.state, status.epochs_done, status.slurm_job_id) == (rf.REQUEUED, 3, "7_1")


def test_status_rows_come_from_run_folders(tmp_path, synthetic_dir):
    from ptblm.train import train_run

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    tiny = {k: v for k, v in tiny_config(num_epochs=2).to_dict().items() if k != "hidden_size"}
    (jobs / "tiny.yaml").write_text(f"common: {tiny}\nsettings:\n  - {{hidden_size: 8}}\n"
                                    f"  - {{hidden_size: 10}}\n  - {{hidden_size: 12}}\n")
    experiment = load_experiment("tiny", jobs)
    first = experiment.settings[0]
    train_run(first.config, synthetic_dir, first.run_dir(tmp_path), echo=False, environ={})
    rf.write_submission(experiment.settings[1].run_dir(tmp_path), rf.Submission("9_1", "slurm", 2e9))
    rows = status_rows(tmp_path, "tiny", experiment, scheduler={"9_1": queued("tiny")})
    curves = rf.read_curves(first.run_dir(tmp_path))
    assert rows[0]["state"] == "done" and rows[0]["epoch"] == "2/2"
    assert rows[0]["best valid ppl"] == f"{curves.best_epoch().valid_ppl:.2f}"
    assert rows[0]["last valid ppl"] == f"{curves.epochs[-1].valid_ppl:.2f}"
    assert rows[1]["state"] == "pending (running)" and rows[1]["slurm job"] == "9_1"  # started, no status yet
    assert rows[2]["state"] == "not submitted" and rows[2]["epoch"] == "0/2"


def test_config_round_trips_through_dict():
    config = RunConfig.from_dict({"model": "GRU", "optimizer": "ADAM", "initial_lr": "1e-3", "batch_size": 20,
                                  "hidden_size": 200, "num_layers": 2, "dp_keep_prob": 0.5})
    assert config.initial_lr == 0.001  # YAML 1.1 reads 1e-3 as a string
    assert RunConfig.from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------- --set overrides

def test_set_replaces_a_key_in_every_setting_and_a_comma_list_adds_a_grid_axis(tmp_path):
    jobs = write_jobs(tmp_path, TWO_SETTINGS)
    longer = load_experiment("bad", jobs, parse_overrides(["num_epochs=40", "hidden_size=16"]))
    assert [(s.config.num_epochs, s.config.hidden_size, s.config.batch_size) for s in longer.settings] == [
        (40, 16, 2), (40, 16, 4)]
    assert [s.run_name for s in longer.settings] == ["gru_adam_lr0.001_bs2_h16_l1_keep0.5_ep40",
                                                     "gru_adam_lr0.001_bs4_h16_l1_keep0.5_ep40"]
    assert longer.overrides == ("num_epochs=40", "hidden_size=16")
    swept = load_experiment("bad", jobs, parse_overrides(["initial_lr=0.01,1e-3", "seeds=1111,7"])).settings
    assert [(s.index, s.config.initial_lr, s.config.batch_size, s.config.seed) for s in swept] == [
        (0, 0.01, 2, 1111), (1, 0.01, 4, 1111), (2, 0.001, 2, 1111), (3, 0.001, 4, 1111),
        (4, 0.01, 2, 7), (5, 0.01, 4, 7), (6, 0.001, 2, 7), (7, 0.001, 4, 7)]
    # --set seeds replaces the file's seeds; values are typed as in a jobs file (true, on, 1e-3)
    seeded = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS + "seeds: [1, 2]\n"),
                             parse_overrides(["seed=3", "save_best=true", "cuda_graph=off"])).settings
    assert [(s.config.seed, s.config.save_best, s.config.cuda_graph) for s in seeded] == [(3, True, "off")] * 2


@pytest.mark.parametrize("texts, message", [
    (["num_epochs"], r"^--set num_epochs: expected KEY=VALUE; valid: KEY=VALUE or KEY=VALUE,VALUE,..."),
    (["num_epochs="], r"^--set num_epochs=: an empty value; valid: KEY=VALUE"),
    (["hiden_size=3"], r"^--set hiden_size=3: unknown key 'hiden_size'; valid keys: seeds, model, optimizer"),
    (["num_epochs=forty"], r"^--set num_epochs=forty: num_epochs = 'forty' has type str; expected int$"),
    (["initial_lr=0.1,x"], r"^--set initial_lr=0.1,x: initial_lr = 'x' has type str; expected float$"),
    (["initial_lr=0.1,0.1"], r"^--set initial_lr=0.1,0.1: initial_lr value 0.1 appears a second time"),
    (["seeds=1,1"], r"^--set seeds=1,1: seeds\[1\] = 1 appears a second time; valid: a non-empty list"),
    (["seeds=-1"], r"^--set seeds=-1: seeds\[0\] = -1 is invalid; valid: a non-empty list of distinct integers"),
    (["seed=1", "seeds=2"], r"^--set seeds=2: seeds is set a second time \(first by --set seed=1\)"),
])
def test_bad_set_texts_are_one_line_naming_set_the_key_and_what_is_valid(texts, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(texts)


@pytest.mark.parametrize("texts, message", [
    (["num_epochs=0"], r"bad.yaml with --set num_epochs=0, setting 0: num_epochs = 0 is invalid; valid: an "
                       r"integer >= 1"),
    (["optimizer=RMSPROP"], r"bad.yaml with --set optimizer=RMSPROP, setting 0: optimizer = 'RMSPROP' is invalid"),
    (["batch_size=3"], r"bad.yaml with --set batch_size=3: settings 0 and 1 are the same setting"),
    (["batch_size=" + ",".join(map(str, range(1, 502)))],
     r"bad.yaml with --set batch_size=1,2,.*: 2 settings x 501 batch_size values = 1002 settings; valid: at most "
     r"1000 settings per experiment"),
    (["seeds=" + ",".join(map(str, range(300))), "hidden_size=8,16"],
     r": 2 settings x 2 hidden_size values x 300 seeds = 1200 settings; valid: at most 1000"),
])
def test_set_values_are_validated_in_each_setting_like_the_jobs_file(tmp_path, texts, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS), parse_overrides(texts))


def test_submitted_json_records_the_set_texts_and_the_overridden_config(tmp_path):
    from ptblm.launch.pipeline import mark_accepted
    from ptblm.launch.tasks import TrainTask

    experiment = load_experiment("3.2", JOBS, parse_overrides(["num_epochs=40"]))
    plan = plan_experiment(experiment, tmp_path, force=False, scheduler={})
    mark_accepted(plan, tmp_path, "slurm", experiment.overrides)(
        TrainTask(experiment.settings[0], str(tmp_path), str(tmp_path)), "5_0", 1.0)
    submission = rf.read_submission(tmp_path / "3.2" / "gru_adam_lr0.001_bs128_h512_l2_keep0.5_ep40")
    assert (submission.overrides, submission.config["num_epochs"]) == (["num_epochs=40"], 40)


def test_all_is_every_jobs_file_but_the_examples_and_the_smoke_test():
    assert experiment_names(["all"], JOBS) == ["3.1", "3.2", "3.3", "3.4"]
    assert experiment_names(["3.2", "smoke", "all", "3.2"], JOBS) == ["3.2", "smoke", "3.1", "3.3", "3.4"]


def test_an_experiment_named_by_name_and_by_its_file_is_one_experiment(monkeypatch):
    """`ptblm submit 3.2 jobs/3.2.yaml` would plan and submit 3.2 twice: one jobs file, one experiment."""
    monkeypatch.chdir(REPO)
    assert experiment_names(["jobs/3.2.yaml", "3.2", "all", str(JOBS / "3.1.yaml")], JOBS) == \
        ["jobs/3.2.yaml", "3.1", "3.3", "3.4"]


def test_each_setting_carries_its_experiments_description_into_the_pinned_tasks(tmp_path):
    """What a task records in its run folder (config.json "description") for the report's section titles."""
    from ptblm.launch.sbatch import read_pinned_task, write_pinned_tasks

    experiment = load_experiment("3.2", REPO / "jobs")
    assert experiment.description and {s.description for s in experiment.settings} == {experiment.description}
    pinned = write_pinned_tasks(list(experiment.settings), experiment="3.2", results_dir=tmp_path,
                                data_dirs={"ptb": Path("/d")})
    assert read_pinned_task(pinned, 1, {}).setting == experiment.settings[1]


@pytest.mark.parametrize("text", ["[]", "{", '{"tasks": {}, "tasks": {}}'])
def test_a_damaged_pinned_file_is_one_line_saying_to_submit_again(text, tmp_path):
    """Was a ValueError telling a Slurm task to 'rerun with --force', which run-setting does not take."""
    from ptblm.config import ConfigError
    from ptblm.launch.sbatch import read_pinned_task

    pinned = tmp_path / "pinned-3.2.json"
    pinned.write_text(text)
    with pytest.raises(ConfigError) as error:
        read_pinned_task(pinned, 0, {})
    message = str(error.value)
    assert message.startswith(f"{pinned}: ") and "\n" not in message and "--force" not in message
    assert message.endswith("submit the experiment again (`ptblm sbatch EXP`) to write a new pinned file")


def test_example_lstm_runs_3_2_s_settings_with_the_lstm_and_holds_the_analysed_lstm():
    from ptblm.report.trained import analysed_runs

    gru, lstm = (load_experiment(name, JOBS).settings for name in ("3.2", "example-lstm"))
    assert [s.config.model for s in lstm] == ["LSTM"] * len(gru) == ["LSTM"] * 3
    assert [s.config.replace(model="GRU") for s in lstm] == [s.config for s in gru]
    assert [s.run_name for s in lstm] == [s.run_name.replace("gru_", "lstm_", 1) for s in gru]
    (analysed,) = [a for a in analysed_runs() if a.model == "LSTM"]
    assert (analysed.experiment, analysed.setting_index) == ("example-lstm", 0) and lstm[0].config.save_best


def test_the_smoke_test_has_one_setting_per_registered_model():
    from ptblm.config import MODELS

    assert [s.config.model for s in load_experiment("smoke", JOBS).settings] == list(MODELS)


# ----------------------------------------------------------------------------- names and values that stay distinct

def test_the_names_of_the_course_settings_print_as_before():
    names = {s.run_name for exp in ("3.1", "3.2", "3.3", "3.4", "smoke") for s in load_experiment(exp, JOBS).settings}
    parts = {part for name in names for part in name.split("_")}
    assert {p for p in parts if p.startswith("lr")} == {"lr1", "lr10", "lr0.001", "lr0.0001", "lr0.0005", "lr0.003"}
    assert {p for p in parts if p.startswith("keep")} == {"keep0.2", "keep0.5", "keep0.6", "keep0.8", "keep0.9"}
    for value, text in ((20.0, "20"), (0.35, "0.35"), (1.0, "1"), (1e-05, "1e-05"), (1e6, "1e+06"),
                        (1234567.0, "1234567.0")):
        assert exact_number(value) == text  # {:g} wherever it reads back as the same number


positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(positive, positive)
def test_two_learning_rates_that_differ_have_different_run_names(first, second):
    names = [tiny_config(initial_lr=lr).run_name() for lr in (first, second)]
    assert (names[0] == names[1]) == (first == second)


@given(st.floats(min_value=1e-9, max_value=1.0, exclude_min=True), st.floats(min_value=1e-9, max_value=1.0))
def test_two_keep_probabilities_that_differ_have_different_run_names(first, second):
    names = [tiny_config(dp_keep_prob=keep).run_name() for keep in (first, second)]
    assert (names[0] == names[1]) == (first == second)


def test_settings_half_a_millionth_apart_both_run_and_the_plan_shows_them_apart(tmp_path):
    from ptblm.launch.plan import plan_table

    experiment = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS),
                                 parse_overrides(["initial_lr=0.5,0.5000001"]))
    assert [s.run_name for s in experiment.settings] == [
        "gru_adam_lr0.5_bs2_h8_l1_keep0.5", "gru_adam_lr0.5_bs4_h8_l1_keep0.5",
        "gru_adam_lr0.5000001_bs2_h8_l1_keep0.5", "gru_adam_lr0.5000001_bs4_h8_l1_keep0.5"]
    table = plan_table(plan_experiment(experiment, tmp_path / "results", False, {}))
    assert [line.split()[4] for line in table.splitlines()[2:]] == ["0.5", "0.5", "0.5000001", "0.5000001"]


@pytest.mark.parametrize("text, message", [
    ("hidden_size=032", "--set hidden_size=032: hidden_size = 032 is not a decimal integer (YAML 1.1 reads a "
                        "leading 0 as octal, 0x as hex, 1:20 as base 60, 1_000 as 1000); valid: decimal digits "
                        "without a leading zero, e.g. 32"),
    ("seeds=1,0777", "--set seeds=1,0777: seeds[1] = 0777 is not a decimal integer"),
    ("batch_size=0x20", "--set batch_size=0x20: batch_size = 0x20 is not a decimal integer"),
    ("initial_lr=1:30.5", "--set initial_lr=1:30.5: initial_lr = 1:30.5 is not a decimal number (YAML 1.1 reads "
                          "1:30.5 as base 60, 1_000.5 as 1000.5); valid: decimal digits with an optional point and "
                          "exponent"),
    ("initial_lr=1_000.5", "--set initial_lr=1_000.5: initial_lr = 1_000.5 is not a decimal number"),
    ("initial_lr=1_000", "--set initial_lr=1_000: initial_lr = 1_000 is not a decimal number"),
    ("dp_keep_prob='0_5e-1'", "--set dp_keep_prob='0_5e-1': dp_keep_prob = 0_5e-1 is not a decimal number"),
])
def test_set_numbers_are_decimal_or_refused(text, message):
    with pytest.raises(ConfigError) as error:
        parse_overrides([text])
    assert str(error.value).startswith(message)


def test_set_zero_and_signed_integers_stay_integers():
    assert parse_overrides(["max_batches=0", "num_epochs=+3"]).values == {"max_batches": [0], "num_epochs": [3]}


def test_set_decimal_floats_in_every_spelling_stay_numbers():
    assert parse_overrides(["initial_lr=1e-3,.5,2.,+1.5E2,3", "dp_keep_prob='0.25'"]).values == {
        "initial_lr": [0.001, 0.5, 2.0, 150.0, 3.0], "dp_keep_prob": [0.25]}


@pytest.mark.parametrize("body, message", [
    (TWO_SETTINGS.replace("hidden_size: 8}\n  - {batch_size: 4", "hidden_size: 032}\n  - {batch_size: 4"),
     "bad.yaml, setting 0, line 3: hidden_size = 032 is not a decimal integer"),
    (TWO_SETTINGS + "seeds: [1111, 0777]\n", "bad.yaml, line 5: seeds[1] = 0777 is not a decimal integer"),
    (TWO_SETTINGS.replace("initial_lr: 0.001", "initial_lr: 1:30.5"),
     "bad.yaml, common, line 1: initial_lr = 1:30.5 is not a decimal number"),
    (TWO_SETTINGS.replace("initial_lr: 0.001", "initial_lr: 1_0.5"),
     "bad.yaml, common, line 1: initial_lr = 1_0.5 is not a decimal number"),
    (TWO_SETTINGS.replace("initial_lr: 0.001", "initial_lr: '1_000'"),
     "bad.yaml, common: initial_lr = 1_000 is not a decimal number"),
])
def test_jobs_file_numbers_are_decimal_or_refused(tmp_path, body, message):
    with pytest.raises(ConfigError) as error:
        load_experiment("bad", write_jobs(tmp_path, body))
    assert str(error.value).startswith(f"{tmp_path}/{message}")


@pytest.mark.parametrize("defaults, message", [
    ("sequence_len: 35\n", "defaults.yaml: unknown key 'sequence_len'; valid keys: model, "),
    ("seq_len: thirty\n", "defaults.yaml: seq_len = 'thirty' has type str; expected int"),
])
def test_a_mistake_in_defaults_yaml_is_named_there_not_in_a_setting(tmp_path, defaults, message):
    (tmp_path / "defaults.yaml").write_text(defaults)
    with pytest.raises(ConfigError) as error:
        load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS))
    assert str(error.value).startswith(f"{tmp_path}/{message}")


def test_a_jobs_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_bytes(TWO_SETTINGS.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/bad.yaml: not UTF-8 text \(byte \d+\); valid: a YAML file "
                                          rf"saved as UTF-8$"):
        load_experiment("bad", tmp_path)


@pytest.mark.parametrize("file, text, message", [
    ("bad.yaml", TWO_SETTINGS + "\tseeds: [1]\n", "bad.yaml, line 5, column 1: found character '\\t' that cannot "
                                                  "start any token (a tab: YAML indents with spaces only)"),
    ("defaults.yaml", "seq_len: 35\n\tnum_epochs: 2\n", "defaults.yaml, line 2, column 1: found character '\\t'"),
    ("bad.yaml", TWO_SETTINGS.replace("hidden_size: 8}\n  - {batch_size: 4", "hidden_size: 8\n  - {batch_size: 4"),
     "bad.yaml, line 4, column 5: expected ',' or '}', but got '{', while parsing a flow mapping from line 3, "
     "column 5"),
])
def test_a_yaml_syntax_error_in_a_jobs_file_is_one_line_naming_the_file_line_and_column(tmp_path, file, text,
                                                                                        message):
    write_jobs(tmp_path, TWO_SETTINGS)
    (tmp_path / file).write_text(text)
    with pytest.raises(ConfigError) as error:
        load_experiment("bad", tmp_path)
    assert str(error.value).startswith(f"{tmp_path}/{message}") and "\n" not in str(error.value), str(error.value)
    assert "<unicode string>" not in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("max_batches=`x`", "--set max_batches=`x`, column 1 of the value: found character '`' that cannot start any "
                        "token"),
    ("model=[", "--set model=[, column 2 of the value: expected the node content, but found the end of the value"),
    ("compile=true", None), ("compile=yes", None),
])
def test_a_set_value_is_quoted_as_written_and_a_yaml_error_is_one_line(tmp_path, text, message):
    """YAML 1.1 turns true/yes/on into booleans: `--set compile=true` was refused as compile = 'on'."""
    if message:
        with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
            parse_overrides([text])
        return
    written = text.partition("=")[2]
    with pytest.raises(ConfigError, match=rf"setting 0: compile = '{written}' is invalid; valid: one of off, model"):
        load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS), parse_overrides([text]))


def test_jobs_file_text_keys_keep_what_yaml_would_read_as_numbers_as_written(tmp_path):
    experiment = load_experiment("bad", write_jobs(tmp_path, TWO_SETTINGS + "description: 0123\n"),
                                 parse_overrides(["cuda_graph=on", "save_best=yes"]))
    assert experiment.description == "0123"
    assert {(s.config.cuda_graph, s.config.save_best) for s in experiment.settings} == {("on", True)}


def test_settings_that_differ_only_in_keys_their_model_does_not_read_are_refused_for_a_submission(tmp_path):
    """`--set n_heads=2,4` on an RNN made two runs of one training under two names (the registry's `unread`)."""
    from runtree import cli

    write_jobs(tmp_path, TWO_SETTINGS.replace("model: GRU", "model: RNN"))
    code, output = cli("submit", "bad", "--jobs", tmp_path, "--dry-run", "--executor", "local", "--set",
                       "n_heads=2,4")
    assert code == 1 and output == (
        f"ptblm submit: error: {tmp_path}/bad.yaml with --set n_heads=2,4: settings 0 and 2 train the same model: "
        f"they differ only in n_heads, which the RNN does not read (rnn_adam_lr0.001_bs2_h8_l1_keep0.5_heads2, "
        f"rnn_adam_lr0.001_bs2_h8_l1_keep0.5_heads4); valid: settings that differ in what it reads (--only picks "
        f"some)\n"), output
    code, output = cli("submit", "bad", "--jobs", tmp_path, "--dry-run", "--executor", "local", "--set", "n_heads=4")
    assert code == 1 and output == (
        "ptblm submit: error: --set n_heads=4: no setting of bad reads n_heads (its models: RNN), so it would only "
        "rename the runs; valid: leave it out (n_heads is read by TRANSFORMER)\n"), output
    code, output = cli("train", "--model", "RNN", "--n_heads", "4", "--dry-run")
    assert code == 1 and output == (
        "ptblm train: error: command line: n_heads = 4 is not read by the RNN, which would train the same model "
        "under another name; valid: leave n_heads out (n_heads is read by TRANSFORMER)\n"), output


def test_a_key_one_model_of_a_mixed_experiment_reads_is_swept_for_the_settings_only_picks():
    from ptblm.jobs import check_trains_distinct, only_settings

    smoke = load_experiment("smoke", REPO / "jobs", parse_overrides(["n_heads=2,4"]))
    with pytest.raises(ConfigError, match=r"settings 0 and 4 train the same model: they differ only in n_heads, "
                                          r"which the RNN does not read"):
        check_trains_distinct(smoke)
    picked = only_settings(smoke, ["3,7"])
    check_trains_distinct(picked)
    assert [(s.config.model, s.config.n_heads) for s in picked.settings] == [("TRANSFORMER", 2), ("TRANSFORMER", 4)]
    wide = load_experiment("smoke", REPO / "jobs", parse_overrides(["emb_size=16,32"]))  # the Transformer's unread
    with pytest.raises(ConfigError, match=r"settings 3 and 7 train the same model: they differ only in emb_size, "
                                          r"which the TRANSFORMER does not read"):
        check_trains_distinct(wide)
