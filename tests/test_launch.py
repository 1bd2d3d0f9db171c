"""The launch layer without a scheduler: nothing lost, checks before queueing, one writer, true states."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, queued, tiny_config
from ptblm import layout
from ptblm import runfolder as rf
from ptblm.clusters import ClusterProfile, load_profile
from ptblm.config import ConfigError
from ptblm.data import DataError, write_synthetic_corpus
from ptblm.jobs import load_experiment, parse_overrides
from ptblm.launch.lock import SubmissionLocked, submission_lock
from ptblm.launch.pipeline import submit_experiment, submit_sbatch
from ptblm.launch.plan import Action, plan_experiment
from ptblm.launch.sbatch import read_pinned_task, run_setting, write_pinned_tasks
from ptblm.launch.slurm import sbatch_flags, scheduler_parameters
from ptblm.launch.tasks import TrainTask
from ptblm.status import status_report, status_rows
from ptblm.train import train_run
from runtree import write_status


def tiny_jobs(jobs_dir: Path, hidden_sizes=(8, 10), num_epochs: int = 2) -> str:
    jobs_dir.mkdir(exist_ok=True)
    common = {k: v for k, v in tiny_config(num_epochs=num_epochs, model="RNN").to_dict().items() if k != "hidden_size"}
    settings = "".join(f"  - {{hidden_size: {h}}}\n" for h in hidden_sizes)
    (jobs_dir / "tiny.yaml").write_text(f"description: tiny\ncommon: {json.dumps(common)}\nsettings:\n{settings}")
    return "tiny"


def finished_runs(tmp_path, synthetic_dir):
    """An experiment whose two settings are done, as training leaves them."""
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    for setting in experiment.settings:
        train_run(setting.config, synthetic_dir, setting.run_dir(tmp_path / "results"), experiment=setting.experiment,
                  setting_index=setting.index, echo=False, environ={})
    return experiment


def folder_contents(experiment, results):
    """Every file and its mtime, but the lock's: a submission holds the lock of each folder it writes (the
    lock file then names it), which changes nothing of the run."""
    return {s.run_name: sorted((p.name, p.stat().st_mtime_ns) for p in s.run_dir(results).iterdir()
                               if p.name != rf.LOCK_FILE) for s in experiment.settings}


class FakeSlurm:
    """sbatch and scontrol as a runner: records each call and what the forced folders held at that moment."""

    def __init__(self, experiment, results, sbatch_rc=0, stderr=""):
        self.experiment, self.results, self.sbatch_rc, self.stderr = experiment, results, sbatch_rc, stderr
        self.calls = []

    def __call__(self, argv, **kwargs):
        if argv[:2] == ["scontrol", "show"]:  # which cluster: the dev cluster (not recorded)
            return subprocess.CompletedProcess(argv, 0, "ClusterName = ptblm-dev\n", "")
        held = {s.index: sorted(p.name for p in s.run_dir(self.results).iterdir()) for s in self.experiment.settings}
        self.calls.append((argv, kwargs.get("env"), held))
        if argv[0] == "sbatch":
            return subprocess.CompletedProcess(argv, self.sbatch_rc, "Submitted batch job 41\n" if not self.sbatch_rc
                                               else "", self.stderr)
        return subprocess.CompletedProcess(argv, 0, "", "")


# ----------------------------------------------------------------------------- nothing lost

def test_a_forced_sbatch_that_slurm_refuses_leaves_every_folder_as_it_was(tmp_path, synthetic_dir):
    experiment = finished_runs(tmp_path, synthetic_dir)
    results = tmp_path / "results"
    before = folder_contents(experiment, results)
    runner = FakeSlurm(experiment, results, sbatch_rc=1, stderr="sbatch: error: invalid partition specified: dbug")
    with pytest.raises(RuntimeError, match="invalid partition specified: dbug; nothing was submitted"):
        submit_sbatch(experiment, ClusterProfile(name="t", partition="dbug"), results_dir=results,
                      data_dir=synthetic_dir, script=Path("slurm/array.sbatch"), force=True, runner=runner,
                      echo=lambda line: None)
    assert folder_contents(experiment, results) == before
    assert [call[0][0] for call in runner.calls] == ["sbatch"]


def test_a_forced_sbatch_empties_folders_after_slurm_accepted_and_before_the_job_may_start(tmp_path, synthetic_dir):
    experiment = finished_runs(tmp_path, synthetic_dir)
    results = tmp_path / "results"
    runner = FakeSlurm(experiment, results)
    submit_sbatch(experiment, ClusterProfile(name="t"), results_dir=results, data_dir=synthetic_dir,
                  script=Path("slurm/array.sbatch"), force=True, runner=runner, echo=lambda line: None)
    (sbatch, _, at_sbatch), (release, _, at_release) = runner.calls
    assert sbatch[0] == "sbatch" and "--hold" in sbatch and release == ["scontrol", "release", "41"]
    assert all(rf.LAST_CHECKPOINT in files for files in at_sbatch.values())  # intact while sbatch could fail
    # emptied before the release (the trainers' lock file stays: a lock is never deleted under its holder)
    assert all(files == [rf.LOCK_FILE, rf.SUBMISSION_FILE] for files in at_release.values())
    submission = rf.read_submission(experiment.settings[1].run_dir(results))
    assert (submission.job_id, submission.executor, submission.setting_index) == ("41_1", "sbatch", 1)


@pytest.mark.parametrize("line, message", [
    ("partition: [a, b]", "partition = ['a', 'b'] is invalid; valid: one word"),
    ("account: {a: 1}", "account = {'a': 1} is invalid; valid: one word"),
    ("mem_gb: -4", "mem_gb = -4 is invalid; valid: a number of GB of at least 0.25"),
    ('mem_gb: "lots"', "mem_gb = 'lots' is invalid; valid: a number of GB of at least 0.25"),
    ("mem_gb: 0.0001", "mem_gb = 0.0001 is invalid (it is --mem=0MB); valid: a number of GB of at least 0.25"),
    ("mem_gb: 0.2", "mem_gb = 0.2 is invalid (it is --mem=204MB); valid: a number of GB of at least 0.25"),
    ('partition: "debug\\n#SBATCH --time=0"', "partition = 'debug\\n#SBATCH --time=0' is invalid"),
    ('setup: ["module load x\\nrm -rf ~"]', "setup[0] = 'module load x\\nrm -rf ~' is invalid; valid: one line"),
    ('sbatch_extra: {constraint: "a100\\nhostname"}', "sbatch_extra.constraint = 'a100\\nhostname' is invalid"),
    ('sbatch_extra: {"bad option": 1}', "sbatch_extra key 'bad option' is invalid"),
    ("sbatch_extra: [exclusive]", "sbatch_extra = ['exclusive'] is invalid; valid: a mapping"),
    ("sbatch_extra: {constraint: a100, array: 0-3}", "sbatch_extra key 'array' is invalid: it is sbatch's --array, "
     "which ptblm sets itself; set array_parallelism instead; valid: other sbatch long options, spelled out, e.g. "
     "constraint"),
    ("sbatch_extra: {job_name: x}", "sbatch_extra key 'job_name' is invalid: sbatch reads it as --job-name, which "
     "ptblm sets itself; valid: other"),
    ("sbatch_extra: {m: block}", "sbatch_extra key 'm' is invalid: sbatch reads it as --m, which begins several of "
     "its options (--mail-type, --mail-user, --mcs-label, --mem, --mem-bind, --mem-per-cpu, --mem-per-gpu, "
     "--mincpus) and which it refuses as ambiguous; valid: other sbatch long options, spelled out"),
    ("sbatch_extra: {mem-per-cpu: 2G}", "sbatch_extra key 'mem-per-cpu' is invalid: it is sbatch's --mem-per-cpu, "
     "which sbatch refuses beside the --mem that ptblm sets; set mem_gb instead; valid: other"),
])
def test_bad_profile_values_are_one_line_naming_the_file_key_and_value(tmp_path, line, message):
    (tmp_path / "c.yaml").write_text(line + "\n")
    with pytest.raises(ConfigError) as error:
        load_profile("c", tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'c.yaml'}: {message}") and "\n" not in str(error.value).replace(
        "\\n", "")


# what sbatch reads each key as (checked against sbatch itself in test_slurm.py): ptblm passes a key as --KEY, which
# sbatch takes as that option, or as the one option it begins; a key that begins several, sbatch refuses
@pytest.mark.parametrize("key, refused", [
    ("arr", "--array"), ("out", "--output"), ("chd", "--chdir"), ("export", "--export"), ("partitio", "--partition"),
    ("j", "--job-name"), ("gpus", "--gpus"), ("no_req", "--no-requeue"), ("mem", "--mem"), ("time", "--time"),
    ("mem_per_cpu", "--mem-per-cpu"), ("mem-per-gpu", "--mem-per-gpu"), ("gpus-per-task", "--gpus-per-task"),
    ("cpus-per-gpu", "--cpus-per-gpu"), ("wait", "--wait"), ("clusters", "--clusters"), ("cluster", "--cluster"),
    ("ntasks-per-gpu", "--ntasks-per-gpu"), ("tasks-per", "--tasks-per-node"), ("vers", "--version"),
    ("o", "ambiguous"), ("p", "ambiguous"), ("t", "ambiguous"), ("m", "ambiguous"), ("cpus_per", "ambiguous"),
    ("con", "ambiguous"), ("mem-per", "ambiguous"), ("wa", "ambiguous"), ("exp", "ambiguous"), ("ti", "ambiguous"),
])
def test_sbatch_extra_refuses_every_spelling_sbatch_reads_as_an_option_ptblm_sets_or_that_breaks_it(tmp_path, key,
                                                                                                    refused):
    (tmp_path / "c.yaml").write_text(f"sbatch_extra: {{{key}: x}}\n")
    with pytest.raises(ConfigError) as error:
        load_profile("c", tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'c.yaml'}: sbatch_extra key {key!r} is invalid: ")
    if refused == "ambiguous":
        assert f"sbatch reads it as --{key.replace('_', '-')}, which begins several" in message
    else:
        assert f" {refused}, which" in message or f" {refused}, with which" in message


@pytest.mark.parametrize("key", ["constraint", "exclusive", "mail_type", "mem-bind", "distribution", "time_min", "tmp",
                                 "contig", "container-image"])
def test_sbatch_extra_takes_options_ptblm_does_not_manage(tmp_path, key):
    (tmp_path / "c.yaml").write_text(f"sbatch_extra: {{{key}: x}}\n")
    assert load_profile("c", tmp_path).sbatch_extra == {key: "x"}


def test_a_profile_built_in_code_cannot_render_a_zero_mem():
    with pytest.raises(ConfigError, match=r"mem_gb = 0.0001 is invalid \(it is --mem=0MB\)"):
        scheduler_parameters(ClusterProfile(name="c", mem_gb=0.0001), "ptblm-x")


def test_both_paths_spell_a_profile_the_same_way_booleans_as_bare_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("partition: main\nmem_gb: 1.5\nsbatch_extra: {exclusive: true, "
                                     "overcommit: false, constraint: a100}\n")
    parameters = scheduler_parameters(load_profile("c", tmp_path), "ptblm-x")
    assert parameters["additional_parameters"] == {"hold": True, "exclusive": True, "constraint": "a100"}
    flags = sbatch_flags(parameters)
    assert "--exclusive" in flags and "--constraint=a100" in flags and "--mem=1536MB" in flags
    assert not any("True" in flag or "overcommit" in flag for flag in flags)


def test_the_pinned_file_is_all_a_task_needs_setup_lines_included(tmp_path, synthetic_dir):
    """The task gets the pinned file and its task id, nothing else (no PTB_DIR, no PTBLM_*, another working
    folder): it runs the profile's setup lines, one line each, before ptblm, and trains the pinned setting."""
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", num_epochs=1), tmp_path / "jobs")
    results = tmp_path / "results"
    setup = ("# the site's modules", "first=1", "if true; then", "  second=2", "fi",
             f"echo \"$first$second\" > {tmp_path / 'setup-ran'}")
    runner = FakeSlurm(experiment, results)
    results.mkdir()
    for setting in experiment.settings:
        setting.run_dir(results).mkdir(parents=True)
    submit_sbatch(experiment, ClusterProfile(name="t", setup=setup), results_dir=results, data_dir=synthetic_dir,
                  script=Path("slurm/array.sbatch"), runner=runner, echo=lambda line: None)
    (sbatch, environment, _), _release = runner.calls
    assert environment is None and sbatch[-3] == "slurm/array.sbatch" and sbatch[-1] == sys.executable
    pinned = Path(sbatch[-2])
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("PTB", "SLURM"))}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    task = subprocess.run([sys.executable, "-m", "ptblm.cli", "run-setting", str(pinned), "1"], cwd=elsewhere,
                          env={**clean, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True, timeout=300)
    assert task.returncode == 0, task.stdout[-2000:] + task.stderr[-2000:]
    assert (tmp_path / "setup-ran").read_text() == "12\n"
    assert rf.read_status(experiment.settings[1].run_dir(results)).state == rf.DONE
    script = (REPO / "slurm" / "array.sbatch").read_text()
    assert "eval" not in script and "PTBLM_" not in script
    assert 'run-setting "$pinned" "$task"' in script


@pytest.mark.parametrize("damage", ["missing", "empty", "corrupt PTB"])
def test_bad_data_stops_submit_and_dry_run_before_anything_is_queued(tmp_path, synthetic_dir, damage):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    data = write_synthetic_corpus(tmp_path / "data", seed=1, vocab_size=30, tokens=(500, 100, 100))
    if damage == "missing":
        (data / "ptb.valid.txt").unlink()
    elif damage == "empty":
        (data / "ptb.test.txt").write_text("")
    else:  # the size of the real ptb.valid.txt, other bytes
        (data / "ptb.valid.txt").write_bytes(b"x\n" * (399782 // 2))
    expected = {"missing": "ptb.valid.txt is missing", "empty": "ptb.test.txt is empty",
                "corrupt PTB": "ptb.valid.txt has the size of Penn Treebank's ptb.valid.txt but its MD5"}[damage]
    for dry_run in (True, False):
        with pytest.raises(DataError, match=expected):
            submit_experiment(experiment, ClusterProfile(name="t"), results_dir=tmp_path / "results",
                              data_dir=data, dry_run=dry_run, executor="local", echo=lambda line: None)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("override, mem_gb, message", [
    ("hidden_size=100000000000000000000", None, r"hidden_size = 100000000000000000000, emb_size = 12, num_layers = 2 "
     r"make a model torch cannot build \(.*Overflow.*\); valid: at most 1e\+09 parameters; nothing was submitted$"),
    ("emb_size=100000000", None, r"hidden_size = 8, emb_size = 100000000, num_layers = 2 make a model of 1e\+12 "
     r"parameters; valid: at most 1e\+09 \(lower hidden_size or emb_size\); nothing was submitted$"),
    ("emb_size=2000", 0.25, r"make a model of 2\.\d+e\+07 parameters whose weights, gradients and ADAM state alone "
     r"need 0\.3\d* GB; valid: at most the profile t's mem_gb = 0.25 \(lower hidden_size or emb_size, or raise "
     r"mem_gb\); nothing was submitted$"),
])
def test_a_model_too_big_for_its_task_stops_submit_and_dry_run_naming_setting_keys_and_limit(
        tmp_path, synthetic_dir, override, mem_gb, message):
    """Such a task would fail on the node with kilobytes of C++ error: the login node says so first."""
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", hidden_sizes=(8,)), tmp_path / "jobs",
                                 parse_overrides([override]))
    where = f"{experiment.path} with --set {override}, setting 0 ({experiment.settings[0].run_name}): "
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as error:
            submit_experiment(experiment, ClusterProfile(name="t", mem_gb=mem_gb), results_dir=tmp_path / "results",
                              data_dir=synthetic_dir, dry_run=dry_run, executor="local", echo=lambda line: None)
        assert str(error.value).startswith(where) and re.search(message, str(error.value)), str(error.value)
    assert not (tmp_path / "results").exists()
    if mem_gb:  # with a GPU the model lives in the GPU's memory: mem_gb does not limit it
        submit_experiment(experiment, ClusterProfile(name="t", mem_gb=mem_gb, gpus_per_node=1),
                          results_dir=tmp_path / "results", data_dir=synthetic_dir, dry_run=True, executor="local",
                          echo=lambda line: None)


@pytest.mark.parametrize("damage", ["binary train", "3-token valid", "batch_size=100000"])
def test_data_that_cannot_fill_a_batch_stops_submit_and_dry_run_naming_split_file_and_numbers(
        tmp_path, damage):
    """Each task would fail on the node ("63924 tokens cannot fill one batch"): the login node says so first."""
    overrides = parse_overrides(["batch_size=100000"] if damage == "batch_size=100000" else [])
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs", overrides)
    data = write_synthetic_corpus(tmp_path / "data", seed=1, vocab_size=30, tokens=(2000, 600, 600))
    if damage == "binary train":
        (data / "ptb.train.txt").write_bytes(bytes(range(256)) * 40)
        expected = rf"{data / 'ptb.train.txt'} is not UTF-8 text \(byte 128\): corrupt, or not a Penn Treebank file"
    elif damage == "3-token valid":
        (data / "ptb.valid.txt").write_text(" a b \n")  # a, b, <eos>
        expected = (rf"setting 0 \(rnn_adam_lr0.01_bs8_h8_l2_keep0.8_seq12_emb12_ep2\): the valid split, "
                    rf"{data / 'ptb.valid.txt'}, has 3 tokens: they cannot fill one batch of batch_size 8 x seq_len 12 "
                    rf"\(needs at least 104 tokens\); valid: more data, or a larger valid split; nothing was submitted")
    else:
        expected = (rf"setting 0 \(rnn_adam_lr0.01_bs100000_h8_l2_keep0.8_seq12_emb12_ep2\): the train split, "
                    rf"{data / 'ptb.train.txt'}, has 2127 tokens: they cannot fill one batch of batch_size 100000 x "
                    r"seq_len 12 \(needs at least 1300000 tokens\); valid: batch_size at most 163 \(at seq_len 12\), "
                    r"or a larger train split; nothing was submitted")  # 2127 // 13 = 163
    for dry_run in (True, False):
        with pytest.raises(DataError, match=expected):
            submit_experiment(experiment, ClusterProfile(name="t"), results_dir=tmp_path / "results",
                              data_dir=data, dry_run=dry_run, executor="local", echo=lambda line: None)
    assert not (tmp_path / "results").exists()


def test_a_split_too_small_for_one_batch_is_named_when_training_starts(tmp_path, synthetic_dir):
    """The same check where a run starts (`ptblm train`, a task whose data changed since submission)."""
    with pytest.raises(DataError, match=rf"the valid split, {synthetic_dir / 'ptb.valid.txt'}, has \d+ tokens: they "
                                        r"cannot fill one batch of batch_size 200 x seq_len 12"):
        train_run(tiny_config(batch_size=200), synthetic_dir, tmp_path / "run", echo=False, environ={})
    assert not (tmp_path / "run").exists()  # refused before any run folder is made (a task's says why: test_train)


# ----------------------------------------------------------------------------- one writer

def test_a_second_submission_of_the_same_experiment_is_refused_naming_the_holder(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    holder = f"experiment tiny is being submitted by another `ptblm submit` \\(host .*, pid {os.getpid()}, since"
    with submission_lock(layout.submit_lock_path(results, "tiny"), "tiny"), \
            pytest.raises(SubmissionLocked, match=holder):
        submit_experiment(experiment, ClusterProfile(name="t"), results_dir=results, data_dir=synthetic_dir,
                          executor="local", echo=lambda line: None)
    assert not any(layout.run_folders(results, "tiny"))  # nothing was planned into a folder
    with submission_lock(layout.submit_lock_path(results, "tiny"), "tiny"):  # released when its holder let go
        pass


@pytest.mark.slow
def test_kill_9_of_a_local_submit_stops_its_trainers(tmp_path):
    data = write_synthetic_corpus(tmp_path / "data", seed=3, vocab_size=60, tokens=(20000, 1200, 1200))
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    common = {k: v for k, v in tiny_config(num_epochs=30, hidden_size=64).to_dict().items()}
    (jobs_dir / "slow.yaml").write_text(f"common: {json.dumps(common)}\nsettings:\n  - {{}}\n")
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "one.yaml").write_text("local_parallelism: 1\nlocal_timeout_min: 10\n")
    submit = subprocess.Popen([sys.executable, "-m", "ptblm.cli", "submit", "slow", "--executor", "local",
                               "--cluster", "one", "--clusters", str(tmp_path / "clusters"), "--jobs", str(jobs_dir),
                               "--results", str(tmp_path / "results"), "--data", str(data)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = load_experiment("slow", jobs_dir).settings[0].run_dir(tmp_path / "results")
    deadline = time.time() + 300
    while len(rf.read_curves(run_dir).epochs) < 1:
        assert time.time() < deadline and submit.poll() is None, "the local run did not start"
        time.sleep(0.2)
    submit.send_signal(signal.SIGKILL)
    submit.wait()
    deadline = time.time() + 120
    while rf.read_status(run_dir).state == rf.RUNNING:
        assert time.time() < deadline, "the trainer went on after its submit was killed"
        time.sleep(0.2)
    status = rf.read_status(run_dir)
    assert status.state == rf.CANCELLED and status.epochs_done < 30
    time.sleep(2)
    assert rf.read_status(run_dir) == status  # nobody writes there any more
    assert "stopped on request" in (run_dir / rf.LOG_FILE).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_a_closed_terminal_or_ctrl_c_ends_a_local_submits_trainers_cancelled(tmp_path, signum):
    """The terminal's signal reaches every process of the submit's group (submitit's controllers and the tasks
    too): each run ends `cancelled`, resumable; the submit says so in one line, exits 128 + N, no traceback."""
    data = write_synthetic_corpus(tmp_path / "data", seed=3, vocab_size=60, tokens=(20000, 1200, 1200))
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    common = tiny_config(num_epochs=30, hidden_size=64).to_dict()
    (jobs_dir / "slow.yaml").write_text(f"common: {json.dumps(common)}\nsettings:\n  - {{}}\n")
    submit = subprocess.Popen([sys.executable, "-m", "ptblm.cli", "submit", "slow", "--executor", "local",
                               "--jobs", str(jobs_dir), "--results", str(tmp_path / "results"), "--data", str(data)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    run_dir = load_experiment("slow", jobs_dir).settings[0].run_dir(tmp_path / "results")
    try:
        deadline = time.time() + 300
        while len(rf.read_curves(run_dir).epochs) < 1:
            assert time.time() < deadline and submit.poll() is None, "the local run did not start"
            time.sleep(0.2)
        os.killpg(submit.pid, signum)
        out, err = submit.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(submit.pid, signal.SIGKILL)
    deadline = time.time() + 120
    while rf.read_status(run_dir).state == rf.RUNNING:
        assert time.time() < deadline, "the trainer went on, or died without a word, after the signal"
        time.sleep(0.2)
    status = rf.read_status(run_dir)
    assert status.state == rf.CANCELLED and status.epochs_done < 30
    assert submit.returncode == 128 + signum
    assert "stopping: the 1 running tasks end `cancelled` after their current batch" in out
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert err.splitlines()[-1] in ("ptblm submit: stopped by SIGHUP", "ptblm submit: interrupted")


# ----------------------------------------------------------------------------- states that stay true

def test_a_stop_request_ends_the_run_cancelled_and_resumable(tmp_path, synthetic_dir):
    config = tiny_config(num_epochs=3)
    asked = []

    def stop_in_the_second_epoch() -> bool:
        asked.append(1)
        return len(rf.read_curves(tmp_path / "run").epochs) == 1 and len(asked) > 1

    status = train_run(config, synthetic_dir, tmp_path / "run", echo=False, should_stop=stop_in_the_second_epoch,
                       environ={})
    assert (status.state, status.epochs_done) == (rf.CANCELLED, 1)
    resumed = train_run(config, synthetic_dir, tmp_path / "run", echo=False, environ={})
    assert (resumed.state, resumed.epochs_done) == (rf.DONE, 3)
    assert "resuming from" in (tmp_path / "run" / rf.LOG_FILE).read_text()


@pytest.mark.slow
def test_sigterm_stops_a_task_promptly_and_cleanly(tmp_path):
    data = write_synthetic_corpus(tmp_path / "data", seed=3, vocab_size=60, tokens=(20000, 1200, 1200))
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    common = tiny_config(num_epochs=30, hidden_size=64).to_dict()
    (jobs_dir / "slow.yaml").write_text(f"common: {json.dumps(common)}\nsettings:\n  - {{}}\n")
    pinned = write_pinned_tasks(list(load_experiment("slow", jobs_dir).settings), experiment="slow",
                                results_dir=tmp_path / "results", data_dirs={"ptb": data})
    task = subprocess.Popen([sys.executable, "-m", "ptblm.cli", "run-setting", str(pinned), "0"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = load_experiment("slow", jobs_dir).settings[0].run_dir(tmp_path / "results")
    deadline = time.time() + 300
    while len(rf.read_curves(run_dir).epochs) < 1:
        assert time.time() < deadline and task.poll() is None, task.stderr.read() if task.poll() is not None else ""
        time.sleep(0.2)
    task.send_signal(signal.SIGTERM)
    assert task.wait(timeout=120) == 128 + signal.SIGTERM  # handled (a kill reads -15), said as `ptblm train` says it
    status = rf.read_status(run_dir)
    assert status.state == rf.CANCELLED and 1 <= status.epochs_done < 30
    plan = plan_experiment(load_experiment("slow", jobs_dir), tmp_path / "results", False, {})
    assert plan[0].action is Action.RESUME


def test_a_systemexit_is_left_to_the_caller_not_recorded_as_a_failure(tmp_path, synthetic_dir):
    from ptblm.launch.tasks import mark_requeued

    def requeue_now() -> bool:  # what submitit does on USR2: checkpoint(), then sys.exit
        mark_requeued(tmp_path / "run", 3)
        raise SystemExit(-1)

    with pytest.raises(SystemExit):
        train_run(tiny_config(), synthetic_dir, tmp_path / "run", echo=False, should_stop=requeue_now, environ={})
    assert rf.read_status(tmp_path / "run").state == rf.REQUEUED


def test_a_task_that_fails_before_training_records_its_error(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    setting = experiment.settings[0]
    results = tmp_path / "results"
    rf.write_submission(setting.run_dir(results), rf.Submission("12_0", "slurm", time.time() - 1, 0,
                                                                setting.config.to_dict()))
    with pytest.raises(DataError):
        TrainTask(setting, str(tmp_path / "no-data-on-this-node"), str(results))()
    status = rf.read_status(setting.run_dir(results))
    assert status.state == rf.FAILED and status.error.startswith(
        f"DataError: {tmp_path}/no-data-on-this-node/ptb.train.txt is missing")
    assert plan_experiment(experiment, results, False, {})[0].reason == "was failed"
    assert f"0: failed: DataError: {tmp_path}/no-data-on-this-node" in status_report(
        results, tmp_path / "jobs", ["tiny"], scheduler=lambda: {}, accounting=lambda ids: None)


def running_folder(results, setting, job_id):
    rf.write_submission(setting.run_dir(results), rf.Submission(job_id, "slurm", 1.0, setting.index,
                                                                setting.config.to_dict()))
    write_status(setting.run_dir(results), rf.RunStatus(rf.RUNNING, 1, 2, updated_at=2.0, slurm_job_id=job_id))


def test_status_shows_a_run_whose_job_left_the_queue_as_lost_or_as_sacct_says(tmp_path):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    running_folder(results, experiment.settings[0], "7_0")
    running_folder(results, experiment.settings[1], "7_1")
    states = lambda **kw: [row["state"] for row in status_rows(results, "tiny", experiment, **kw)]  # noqa: E731
    assert states(scheduler={"7_0": queued("tiny"), "7_1": queued("tiny")}) == ["running", "running"]
    assert states(scheduler={"7_1": queued("tiny")}) == ["lost", "running"]
    assert states(scheduler={}, accounting={"7_0": "CANCELLED", "7_1": "TIMEOUT"}) == ["cancelled", "timeout"]
    assert states(scheduler=None) == ["running", "running"]  # no squeue: the folders as they are
    report = lambda: status_report(results, tmp_path / "jobs", ["tiny"],  # noqa: E731
                                   scheduler=lambda: {"7_1": queued("tiny")}, accounting=lambda ids: None)
    assert (f"setting 0: job 7_0 is no longer queued or running, but its run folder says running; its task wrote no "
            f"log in {results}/tiny/logs; ") in report()  # a log that is not there is never named
    log = results / "tiny" / "logs" / "7_0_0_log.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("srun: error: node lost\n")
    assert (f"setting 0: job 7_0 is no longer queued or running, but its run folder says running; log: {log}; "
            ) in report()


def test_status_reads_run_folders_not_the_jobs_file(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    running_folder(results, experiment.settings[1], "8_1")
    tiny_jobs(tmp_path / "jobs", hidden_sizes=(6, 8, 10))  # a setting inserted in front while the job runs
    rows = status_rows(results, "tiny", load_experiment("tiny", tmp_path / "jobs"), scheduler={"8_1": queued("tiny")})
    assert [(row["#"], row["run"].split("_")[4], row["state"]) for row in rows] == [
        (0, "h6", "not submitted"), (1, "h10", "running"), (1, "h8", "not submitted")]
    (tmp_path / "jobs" / "tiny.yaml").unlink()
    report = status_report(results, tmp_path / "jobs", None, scheduler=lambda: None, accounting=lambda ids: None)
    assert "tiny" in report and "h10" in report and " running " in report


def test_status_with_the_submissions_set_lists_its_settings_not_the_files(tmp_path):
    overrides = parse_overrides(["num_epochs=5"])
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs", overrides)
    results = tmp_path / "results"
    for setting in experiment.settings:
        running_folder(results, setting, f"8_{setting.index}")
    quiet = dict(scheduler=lambda: {"8_0": queued("tiny"), "8_1": queued("tiny")}, accounting=lambda ids: {})
    with_set = status_report(results, tmp_path / "jobs", ["tiny"], overrides=overrides, **quiet)
    assert with_set.count(" running ") == 2 and "not submitted" not in with_set and "_ep5 " in with_set
    without = status_report(results, tmp_path / "jobs", ["tiny"], **quiet)
    assert without.count("not submitted ") == 2  # the file's own 2-epoch settings (rows, not the summary)


def test_sbatch_pins_what_each_task_runs_at_submission(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    for setting in experiment.settings:
        setting.run_dir(results).mkdir(parents=True)
    runner = FakeSlurm(experiment, results)
    submit_sbatch(experiment, ClusterProfile(name="t"), results_dir=results, data_dir=synthetic_dir,
                  script=Path("slurm/array.sbatch"), runner=runner, echo=lambda line: None)
    pinned = Path(runner.calls[0][0][-2])
    assert pinned.parent == layout.logs_dir(results, "tiny") and pinned.is_file()
    tiny_jobs(tmp_path / "jobs", hidden_sizes=(6, 8, 10))  # edited while the array waits
    assert read_pinned_task(pinned, 0, {}).setting.run_name == experiment.settings[0].run_name  # still h8
    assert read_pinned_task(pinned, 1, {}).setting.config.hidden_size == 10
    assert (read_pinned_task(pinned, 1, {}).data_dir, read_pinned_task(pinned, 1, {}).results_dir) == (
        synthetic_dir.resolve(), results.resolve())
    with pytest.raises(ConfigError, match="no task 2; pinned tasks: 0, 1"):
        read_pinned_task(pinned, 2, {})
    assert run_setting(pinned, 0, {}) == rf.DONE
    assert rf.read_status(experiment.settings[0].run_dir(results)).state == rf.DONE


def test_resubmission_that_adds_a_setting_keeps_task_ids_equal_to_setting_numbers(tmp_path, synthetic_dir):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    results = tmp_path / "results"
    train_run(experiment.settings[0].config, synthetic_dir, experiment.settings[0].run_dir(results), echo=False,
              experiment="tiny", setting_index=0, environ={})
    experiment.settings[1].run_dir(results).mkdir(parents=True)
    runner = FakeSlurm(experiment, results)
    submit_sbatch(experiment, ClusterProfile(name="t"), results_dir=results, data_dir=synthetic_dir,
                  script=Path("slurm/array.sbatch"), runner=runner, echo=lambda line: None)
    assert "--array=1%16" in runner.calls[0][0]
    assert rf.read_submission(experiment.settings[1].run_dir(results)).job_id == "41_1"


def test_profile_yaml_in_the_repository_still_loads():
    for path in (REPO / "slurm" / "clusters").glob("*.yaml"):
        load_profile(path.stem, path.parent)


# ----------------------------------------------------------------------------- the profile, named in the plan

def fake_cluster(name: str, calls: list):
    """scontrol says which cluster this is; sbatch accepts every array as job 41."""
    def runner(argv, **kwargs):
        calls.append(argv)
        out = {"scontrol": f"ClusterName = {name}\nMaxArraySize = 1001\n", "sbatch": "Submitted batch job 41\n"}
        return subprocess.CompletedProcess(argv, 0, out.get(argv[0], "") if argv[1:2] != ["release"] else "", "")
    return runner


@pytest.mark.parametrize("submit", [submit_experiment, submit_sbatch])
def test_the_dry_run_shows_what_each_task_asks_slurm_for_on_both_paths(tmp_path, synthetic_dir, monkeypatch, submit):
    """What a student choosing a profile wants to see: the options scheduler_parameters makes of it, spelled as
    sbatch options, the same line on the submitit path and the sbatch path."""
    monkeypatch.setattr("ptblm.launch.slurm.shutil.which", lambda name, path=None: f"/usr/bin/{name}")
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    profile = ClusterProfile(name="mine", partition="long", account="rrg-x", gpus_per_node=1, cpus_per_task=4,
                             mem_gb=16, time_min=90, array_parallelism=8, setup=("module load apptainer",),
                             sbatch_extra={"mail-type": "END", "exclusive": True})
    lines = []
    where = dict(script=Path("slurm/array.sbatch")) if submit is submit_sbatch else dict(executor="slurm")
    submit(experiment, profile, results_dir=tmp_path / "results", data_dir=synthetic_dir, dry_run=True,
           runner=fake_cluster("mila", []), echo=lines.append, **where)
    assert ("slurm options: --job-name=ptblm-tiny --time=90 --cpus-per-task=4 --partition=long --account=rrg-x "
            "--gpus-per-node=1 --mem=16384MB --hold --mail-type=END --exclusive; at most 8 tasks at once; setup: "
            "module "
            "load apptainer") in lines
    assert lines[-1] == "dry run: nothing submitted"


@pytest.mark.parametrize("cluster, chosen, refused", [("mila", False, True), ("mila", True, False),
                                                      ("ptblm-dev", False, False)])
def test_the_default_profile_is_refused_on_a_cluster_it_is_not_made_for(tmp_path, synthetic_dir, monkeypatch,
                                                                        cluster, chosen, refused):
    monkeypatch.setattr("ptblm.launch.slurm.shutil.which", lambda name, path=None: f"/usr/bin/{name}")
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    profile = load_profile("local", REPO / "slurm" / "clusters")
    calls, lines = [], []
    submit = dict(results_dir=tmp_path / "results", data_dir=synthetic_dir, script=Path("slurm/array.sbatch"),
                  profile_chosen=chosen, runner=fake_cluster(cluster, calls), echo=lines.append)
    submit_sbatch(experiment, profile, dry_run=True, **submit)
    assert lines[1] == (f"profile local: one sbatch array of slurm/array.sbatch on Slurm cluster {cluster}, "
                        f"partition debug")
    warning = ("warning: no cluster profile was chosen (--cluster NAME, or CLUSTER=NAME for make), and Slurm cluster "
               "mila is not the dev cluster (ptblm-dev) the default profile local is made for (partition debug, no "
               "GPU, 60 min): choose a profile of slurm/clusters/ with --cluster, or --cluster local to use it here "
               "anyway")
    assert (lines[2] == warning) is refused
    if refused:
        with pytest.raises(ConfigError, match="^" + re.escape(warning[len("warning: "):]) + "$"):
            submit_sbatch(experiment, profile, **submit)
        assert not (tmp_path / "results").exists() and {argv[0] for argv in calls} == {"scontrol"}
    else:
        submit_sbatch(experiment, profile, **submit)
        assert [argv[0] for argv in calls if argv[0] == "sbatch"] == ["sbatch"]
        assert lines[-1] == "follow with `make status EXP=tiny` (or `ptblm status tiny`)"


def test_the_follow_up_hint_names_the_set_of_the_submission(tmp_path, synthetic_dir, monkeypatch):
    """Status numbers and finds the settings as the overrides make them: without the --set it shows the jobs
    file's settings as not submitted."""
    monkeypatch.setattr("ptblm.launch.slurm.shutil.which", lambda name, path=None: f"/usr/bin/{name}")
    overrides = parse_overrides(["num_epochs=1", "initial_lr=1,2"])
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs", overrides)
    lines = []
    submit_sbatch(experiment, load_profile("local", REPO / "slurm" / "clusters"), results_dir=tmp_path / "results",
                  data_dir=synthetic_dir, script=Path("slurm/array.sbatch"), runner=fake_cluster("ptblm-dev", []),
                  echo=lines.append)
    assert lines[-1] == ("follow with `make status EXP=tiny SET='num_epochs=1 initial_lr=1,2'` (or `ptblm status "
                         "tiny --set num_epochs=1 --set initial_lr=1,2`)")


@pytest.mark.parametrize("executor, slurm, why", [("local", True, "the local executor was asked for"),
                                                   ("auto", False, "no Slurm cluster answers sinfo here")])
def test_a_local_run_names_the_profile_this_machine_and_why(tmp_path, synthetic_dir, monkeypatch, executor, slurm,
                                                            why):
    """Asked for (`--executor local`, `ptblm demo`) where a Slurm cluster answers, or chosen since none does."""
    monkeypatch.setattr("ptblm.launch.pipeline.slurm_answers", lambda: slurm)
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    lines = []
    submit_experiment(experiment, ClusterProfile(name="t", local_parallelism=3), results_dir=tmp_path / "results",
                      data_dir=synthetic_dir, dry_run=True, executor=executor, profile_chosen=False,
                      echo=lines.append)
    assert lines[1] == f"profile t: local processes on this machine ({why}), at most 3 at once"
    assert not any(line.startswith("warning:") for line in lines)


def test_the_suggested_command_is_the_one_the_user_ran(tmp_path):
    from ptblm.invocation import ptblm_command

    venv_ptblm = tmp_path / ".venv" / "bin" / "ptblm"
    venv_ptblm.parent.mkdir(parents=True)
    venv_ptblm.write_text("#!/bin/sh\n")
    venv_ptblm.chmod(0o755)
    assert ptblm_command(str(venv_ptblm), {"PATH": "/usr/bin"}, tmp_path) == ".venv/bin/ptblm"
    assert ptblm_command(str(venv_ptblm), {"PATH": f"{venv_ptblm.parent}:/usr/bin"}, tmp_path) == "ptblm"
    assert ptblm_command("/x/src/ptblm/cli/__main__.py", {}, tmp_path, python="/p/python") == "/p/python -m ptblm.cli"


@pytest.mark.parametrize("max_array_size, refused", [(2, [2]), (None, [])])
def test_sbatch_honours_max_array_size_and_refuses_settings_it_cannot_number(tmp_path, synthetic_dir,
                                                                             max_array_size, refused):
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs", hidden_sizes=(8, 10, 12)), tmp_path / "jobs")
    results = tmp_path / "results"
    for setting in experiment.settings:
        setting.run_dir(results).mkdir(parents=True)
    runner = FakeSlurm(experiment, results)
    submit = dict(results_dir=results, data_dir=synthetic_dir, script=Path("slurm/array.sbatch"), runner=runner,
                  echo=lambda line: None)
    profile = ClusterProfile(name="small", max_array_size=max_array_size)
    if refused:
        message = (f"{experiment.path}: settings 2 cannot be task ids of one sbatch array (the profile's (small) "
                   f"max_array_size is 2; the sbatch path numbers tasks by setting): use `ptblm submit`, which "
                   f"splits arrays, or --only with settings below 2")
        for dry_run in (True, False):
            with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
                submit_sbatch(experiment, profile, dry_run=dry_run, **submit)
        assert runner.calls == [] and not list(layout.logs_dir(results, "tiny").glob("pinned-*"))
    else:  # the dev cluster's MaxArraySize (scontrol, here FakeSlurm's: none said, so 1000)
        submit_sbatch(experiment, profile, **submit)
        assert "--array=0,1,2%16" in runner.calls[0][0]


def test_an_array_queued_by_an_older_ptblm_still_runs(tmp_path, synthetic_dir):
    """Its array.sbatch ran `run-setting EXP TASK --pinned FILE`, the data and results in $PTB_DIR, $PTBLM_RESULTS."""
    experiment = load_experiment(tiny_jobs(tmp_path / "jobs"), tmp_path / "jobs")
    old = tmp_path / "pinned-old.json"
    rf.atomic_write_json(old, {"experiment": "tiny", "description": "tiny", "tasks": {
        "1": {"run_name": experiment.settings[1].run_name, "config": experiment.settings[1].config.to_dict()}}})
    entry = read_pinned_task(old, 1, {"PTB_DIR": str(synthetic_dir), "PTBLM_RESULTS": str(tmp_path / "r")})
    assert (entry.setting, entry.data_dir, entry.results_dir, entry.command) == (
        experiment.settings[1], synthetic_dir, tmp_path / "r", None)
    from ptblm.cli import build_parser

    args = build_parser().parse_args(["run-setting", "tiny", "1", "--pinned", str(old)])
    assert (args.old_pinned, args.task, args.here) == (old, 1, False)


@pytest.mark.parametrize("args, message", [
    (["run-setting", "/no/pinned-1.json", "0"], "ptblm run-setting: error: /no/pinned-1.json: no such pinned file; "
                                                "valid: one `ptblm sbatch` wrote, results/<exp>/logs/pinned-*.json"),
    (["submit", "../x.yaml", "--dry-run"], "ptblm submit: error: ../x.yaml: no such jobs file; valid: a path to a "
                                           "YAML file, or the name of one in jobs (e.g. 3.1)"),
    (["submit", "3.1", "--clusters", "/no/profiles", "--dry-run"],
     "ptblm submit: error: no cluster profile 'local': /no/profiles/local.yaml does not exist; known: none (no "
     "profiles in /no/profiles; see --clusters)"),
])
def test_a_missing_file_named_on_the_command_line_is_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "ptblm.cli", *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr == message + "\n"
