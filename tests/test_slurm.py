"""The suite through a real Slurm scheduler (slurm/dev-cluster.sh): submit, resubmit, sbatch, faults, containers.

Skipped with a reason when no cluster answers; in CI (CI=true) a missing cluster is a failure instead,
since .ci/run starts one.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from ptblm import runfolder as rf
from ptblm.jobs import load_experiment, parse_overrides

pytestmark = pytest.mark.slurm
FAKE_APPTAINER = REPO / "tests" / "fixtures" / "fake-apptainer"


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    require_slurm()


def require_slurm() -> None:
    """Skip without a cluster; fail in CI."""
    answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True) \
        if shutil.which("sinfo") else None
    if answer is None or answer.returncode != 0 or not answer.stdout.strip():
        why = "no Slurm cluster answers sinfo: start one with `slurm/dev-cluster.sh install start`"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run should have)")
        pytest.skip(why)


def ptblm(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """The command line exactly as `make submit` / `make sbatch` call it, run from the repository root."""
    result = subprocess.run([sys.executable, "-m", "ptblm.cli", *args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"ptblm {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def submitted_job(output: str) -> str:
    match = re.search(r"submitted array job (\d+)", output)
    assert match, output
    return match.group(1)


def wait_for_job(job_id: str, timeout_s: float = 400) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()
        if not queued:
            return
        time.sleep(1)
    subprocess.run(["scancel", "--signal=KILL", job_id])
    pytest.fail(f"Slurm job {job_id} still queued after {timeout_s} s:\n{queued}")


def wait_for_epochs(run_dir: Path, epochs: int, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while len(rf.read_curves(run_dir).epochs) < epochs:
        assert time.time() < deadline, f"{run_dir} did not reach epoch {epochs} in {timeout_s} s"
        time.sleep(0.2)


def kill_job_processes(job_id: str) -> None:
    """SIGKILL every process of the job, as an OOM kill or a node failure would: no handler runs.
    (scancel's own SIGKILL arrives only after KillWait, since submitit ignores the SIGTERM before it.)"""
    listed = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, check=True).stdout
    pids = [int(line.split()[0]) for line in listed.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    assert pids, f"scontrol listpids {job_id} found no process:\n{listed}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.kill(pid, 9)


def write_tiny_jobs(jobs_dir: Path, num_epochs: int = 2, hidden_sizes=(8,)) -> str:
    jobs_dir.mkdir(exist_ok=True)
    common = {k: v for k, v in tiny_config(num_epochs=num_epochs).to_dict().items() if k != "hidden_size"}
    settings = "".join(f"  - {{hidden_size: {h}}}\n" for h in hidden_sizes)
    (jobs_dir / "tiny.yaml").write_text(f"description: tiny\ncommon: {json.dumps(common)}\nsettings:\n{settings}")
    return "tiny"


@pytest.fixture(scope="module")
def slow_corpus(tmp_path_factory) -> Path:
    """Large enough that an epoch of a hidden-64 GRU takes about a second: time to interrupt it."""
    from ptblm.data import write_synthetic_corpus

    return write_synthetic_corpus(tmp_path_factory.mktemp("slow"), seed=3, vocab_size=60,
                                  tokens=(20000, 1200, 1200))


@pytest.fixture
def data_dir(synthetic_dir) -> Path:
    return Path(os.environ["PTB_DIR"]) if os.environ.get("PTB_DIR") else synthetic_dir


def test_submit_smoke_runs_every_setting_then_resubmission_submits_nothing(tmp_path, data_dir):
    locations = ["--results", str(tmp_path), "--data", str(data_dir)]
    experiment = load_experiment("smoke", REPO / "jobs")
    count = len(experiment.settings)  # one per model
    first = ptblm("submit", "smoke", *locations)
    job = submitted_job(first.stdout)
    assert f"{count} tasks" in first.stdout and f"{tmp_path}/smoke/logs" in first.stdout
    wait_for_job(job)
    for setting in experiment.settings:
        status = rf.read_status(setting.run_dir(tmp_path))
        assert status.state == rf.DONE and status.epochs_done == 2, setting.run_name
        assert status.slurm_job_id == f"{job}_{setting.index}"
        assert rf.read_run(setting.run_dir(tmp_path)).provenance["slurm"]["SLURM_ARRAY_JOB_ID"] == job
    assert sorted(p.name for p in (tmp_path / "smoke" / "logs").glob("*_log.out")) == [
        f"{job}_{i}_0_log.out" for i in range(count)]
    table = ptblm("status", "smoke", "--results", str(tmp_path)).stdout
    assert table.count(" done ") == count
    again = ptblm("submit", "smoke", *locations)
    assert "nothing to submit" in again.stdout and "submitted array job" not in again.stdout


def test_sbatch_path_runs_one_task_with_the_same_layout(tmp_path, synthetic_dir):
    name = write_tiny_jobs(tmp_path / "jobs")
    result = ptblm("sbatch", name, "--jobs", str(tmp_path / "jobs"), "--results", str(tmp_path / "results"),
                   "--data", str(synthetic_dir))
    job = submitted_job(result.stdout)
    wait_for_job(job)
    setting = load_experiment(name, tmp_path / "jobs").settings[0]
    status = rf.read_status(setting.run_dir(tmp_path / "results"))
    assert status.state == rf.DONE and status.slurm_job_id == f"{job}_0"
    log = (tmp_path / "results" / name / "logs" / f"{job}_0.out").read_text()
    assert "finished: done" in log
    # the name status and the plan match a queued job by (submitted.json's) is the one sbatch queued it under
    shown = subprocess.run(["scontrol", "show", "job", f"{job}_0"], capture_output=True, text=True).stdout
    assert rf.read_submission(setting.run_dir(tmp_path / "results")).job_name == f"ptblm-{name}"
    assert re.search(rf"\bJobName=ptblm-{name}\n", shown), shown


def test_a_job_id_held_by_another_job_is_not_the_runs_and_a_pending_one_says_why(tmp_path, synthetic_dir):
    """Job ids are reused (a dev-cluster restart, another experiment's `10_3`): held jobs stand in, one queued
    under the run's name writing to its results folder's logs (pending: status says squeue's reason, the plan
    leaves it), one of another name, and one of the run's name whose output goes to another results folder (the
    same experiment submitted elsewhere, or `sbatch -J ptblm-tiny` by hand), each holding the id another folder
    recorded (status: lost; the plan submits them again)."""
    jobs_dir, results = tmp_path / "jobs", tmp_path / "results"
    name = write_tiny_jobs(jobs_dir, hidden_sizes=(8, 10, 12))
    experiment = load_experiment(name, jobs_dir)

    def held_job(job_name: str, output: Path) -> str:
        return subprocess.run(["sbatch", "--hold", "--parsable", f"--job-name={job_name}", f"--output={output}",
                               "--wrap", "sleep 300"], capture_output=True, text=True, check=True).stdout.strip()

    ours = held_job(f"ptblm-{name}", results / name / "logs" / "%A_%a_0_log.out")
    theirs = held_job("someone-elses-sweep", results / name / "logs" / "%j.out")
    elsewhere = held_job(f"ptblm-{name}", tmp_path / "other-results" / name / "logs" / "%j.out")
    try:
        for setting, job in zip(experiment.settings, (ours, theirs, elsewhere)):
            rf.write_submission(setting.run_dir(results), rf.Submission(
                job, "slurm", time.time(), setting.index, setting.config.to_dict(), job_name=f"ptblm-{name}"))
        locations = ["--jobs", str(jobs_dir), "--results", str(results)]
        table = ptblm("status", name, *locations).stdout
        rows = [line.split() for line in table.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]
        assert [(row[0], row[2], row[3]) for row in rows] == [("0", "pending", "(JobHeldUser)"), ("1", "lost", "0/2"),
                                                              ("2", "lost", "0/2")], table
        assert f"setting 1: job {theirs} is no longer queued or running" in table
        assert f"setting 2: job {elsewhere} is no longer queued or running" in table
        assert table.splitlines()[-1] == f"summary {name}: 1 pending, 2 lost"
        plan = ptblm("submit", name, *locations, "--data", str(synthetic_dir), "--dry-run").stdout
        assert f"skip: Slurm job {ours} still queued or running" in plan
        assert plan.count("submit: submitted before, never started") == 2, plan
    finally:
        subprocess.run(["scancel", ours, theirs, elsewhere], check=False)


def test_array_sbatch_by_hand_needs_only_the_pinned_file(tmp_path, synthetic_dir):
    """`sbatch slurm/array.sbatch PINNED PYTHON` from another folder, in an environment without PTB_DIR or any
    PTBLM_ variable: the task reads everything from the pinned file, and its log lands beside it in
    results/<exp>/logs/ (no slurm-*.out where sbatch ran)."""
    from ptblm.launch.sbatch import write_pinned_tasks

    name = write_tiny_jobs(tmp_path / "jobs")
    results = tmp_path / "results"
    experiment = load_experiment(name, tmp_path / "jobs")
    pinned = write_pinned_tasks(list(experiment.settings), experiment=name, results_dir=results,
                                data_dirs={"ptb": synthetic_dir})
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PTB", "SLURM"))}
    submitted = subprocess.run(["sbatch", "--parsable", "--array=0", "--cpus-per-task=1", "--mem=1G",
                                str(REPO / "slurm/array.sbatch"), str(pinned), sys.executable], cwd=tmp_path,
                               env={**env, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True,
                               check=True)
    job = submitted.stdout.strip().split(";")[0]
    wait_for_job(job)
    assert rf.read_status(experiment.settings[0].run_dir(results)).state == rf.DONE
    log = (results / name / "logs" / f"{job}_0.out").read_text()
    assert "finished: done" in log, log
    assert not list(tmp_path.glob("slurm-*.out"))


def test_gpu_profile_runs_through_the_scheduler_on_the_stand_in_gpus(tmp_path, synthetic_dir):
    """slurm/clusters/dev-gpu.yaml: one GPU per task, two settings per GPU; Slurm hands each task a GPU
    (CUDA_VISIBLE_DEVICES) and the runs say they go on on the CPU."""
    node = subprocess.run(["scontrol", "show", "node"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"\bGres=gpu:2\b", node), "no GPUs on the dev cluster: restart it (slurm/dev-cluster.sh start)"
    name = write_tiny_jobs(tmp_path / "jobs", hidden_sizes=(8, 10, 12))
    output = ptblm("submit", name, "--cluster", "dev-gpu", "--jobs", str(tmp_path / "jobs"), "--results",
                   str(tmp_path / "results"), "--data", str(synthetic_dir)).stdout
    assert "with 2 tasks: settings 0+1" in output, output
    wait_for_job(submitted_job(output))
    for setting in load_experiment(name, tmp_path / "jobs").settings:
        run_dir = setting.run_dir(tmp_path / "results")
        assert rf.read_status(run_dir).state == rf.DONE
        assert re.search(r"GPUs \d allocated \(CUDA_VISIBLE_DEVICES\) but torch sees no CUDA device: running on the "
                         r"CPU", (run_dir / rf.LOG_FILE).read_text())


def reference_curves(tmp_path: Path, jobs_dir: Path, name: str, data: Path) -> list:
    """The uninterrupted run, computed outside Slurm with the same thread count as a 1-CPU task."""
    from ptblm.launch.sbatch import write_pinned_tasks

    setting = load_experiment(name, jobs_dir).settings[0]
    pinned = write_pinned_tasks([setting], experiment=name, results_dir=tmp_path / "reference", data_dirs={"ptb": data})
    ptblm("run-setting", str(pinned), "0", env={"SLURM_CPUS_PER_TASK": "1"})
    return [(r.train_ppl, r.valid_ppl) for r in rf.read_curves(setting.run_dir(tmp_path / "reference")).epochs]


def submit_one_slow_run(tmp_path: Path, corpus: Path, num_epochs: int) -> tuple[list[str], str, str, Path]:
    """One 64-unit setting submitted through the scheduler: (its --jobs/--results/--data flags, experiment, job id,
    run folder)."""
    jobs_dir, results = tmp_path / "jobs", tmp_path / "results"
    name = write_tiny_jobs(jobs_dir, num_epochs=num_epochs, hidden_sizes=(64,))
    locations = ["--jobs", str(jobs_dir), "--results", str(results), "--data", str(corpus)]
    job = submitted_job(ptblm("submit", name, *locations).stdout)
    return locations, name, job, load_experiment(name, jobs_dir).settings[0].run_dir(results)


@pytest.mark.parametrize("fault", ["preempt-usr2", "kill-and-resubmit"])
def test_interrupted_task_resumes_to_the_uninterrupted_curves(tmp_path, slow_corpus, fault):
    """USR2 (what Slurm sends before a time limit or on preemption): submitit checkpoints and requeues.
    SIGKILL (a node crash, scancel): nothing is saved but last.pt, and a resubmission resumes."""
    locations, name, job, run_dir = submit_one_slow_run(tmp_path, slow_corpus, num_epochs=8)
    wait_for_epochs(run_dir, 2)
    task_job = rf.read_submission(run_dir).job_id  # "9" for a one-task submission (no array), else "9_0"
    assert task_job.split("_")[0] == job
    if fault == "preempt-usr2":
        subprocess.run(["scancel", "--signal=USR2", task_job], check=True)
        deadline = time.time() + 60
        while rf.read_status(run_dir).state != rf.REQUEUED and rf.read_status(run_dir).epochs_done < 8:
            assert time.time() < deadline, "the task was not checkpointed after USR2"
            time.sleep(0.1)
        wait_for_job(job)  # the requeued task runs under the same job id
    else:
        kill_job_processes(task_job)
        wait_for_job(job)
        interrupted = rf.read_run(run_dir)  # readable after the kill
        assert interrupted.status.state != rf.DONE and 2 <= len(interrupted.curves.epochs) < 8
        status = ptblm("status", name, *locations[:4]).stdout  # --jobs, --results
        assert " lost " in status and f"job {task_job} is no longer queued or running" in status  # one squeue poll
        assert "resume: from last.pt" in ptblm("submit", name, *locations, "--dry-run").stdout
        wait_for_job(submitted_job(ptblm("submit", name, *locations).stdout))
    final = rf.read_run(run_dir)
    assert final.status.state == rf.DONE and len(final.curves.epochs) == 8
    assert "resuming from" in (run_dir / rf.LOG_FILE).read_text()
    curves = [(r.train_ppl, r.valid_ppl) for r in final.curves.epochs]
    assert curves == reference_curves(tmp_path, tmp_path / "jobs", name, slow_corpus)


@pytest.mark.parametrize("command", ["submit", "sbatch"])
def test_jobs_really_go_through_the_container_wrapper(tmp_path, synthetic_dir, command):
    """A profile with `container:` runs the task as `apptainer exec --nv --bind ... IMAGE ...`; here a
    pass-through stands in for apptainer and records its arguments."""
    jobs_dir, results, clusters = tmp_path / "jobs", tmp_path / "results", tmp_path / "clusters"
    name = write_tiny_jobs(jobs_dir)
    image = tmp_path / "ptblm.sif"
    image.write_text("not a real image: the pass-through only checks it exists\n")
    clusters.mkdir()
    (clusters / "boxed.yaml").write_text(f"partition: debug\ncpus_per_task: 1\nmem_gb: 2\ncontainer: {image}\n")
    log = tmp_path / "apptainer.log"
    env = {"PTBLM_CONTAINER_RUNTIME": str(FAKE_APPTAINER), "FAKE_APPTAINER_LOG": str(log),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `ptblm` inside the "image"
    job = submitted_job(ptblm(command, name, "--cluster", "boxed", "--clusters", str(clusters), "--jobs",
                              str(jobs_dir), "--results", str(results), "--data", str(synthetic_dir), env=env).stdout)
    wait_for_job(job)
    calls = log.read_text()
    assert calls.startswith("exec\n--nv\n--bind\n")
    assert f"{results}:{results}" in calls and f"{synthetic_dir}:{synthetic_dir}" in calls
    assert f"\n{image}\n" in calls
    assert ("submitit.core._submit" in calls) if command == "submit" else ("run-setting" in calls)
    setting = load_experiment(name, jobs_dir).settings[0]
    assert rf.read_status(setting.run_dir(results)).state == rf.DONE


@pytest.mark.parametrize("container", [False, True])
@pytest.mark.parametrize("command", ["submit", "sbatch"])
def test_a_failing_setup_line_stops_the_task_before_training_and_status_shows_it(tmp_path, synthetic_dir, command,
                                                                                 container):
    """Both paths run the profile's setup lines alike: the task stops before training and its run folder records
    `failed` with the command and its output. With a container, the failed line is the one that would have made
    the runtime available (here it removes the stand-in first): the host's Python records the failure."""
    jobs_dir, results, clusters = tmp_path / "jobs", tmp_path / "results", tmp_path / "clusters"
    name = write_tiny_jobs(jobs_dir)
    clusters.mkdir()
    runtime, image, log = tmp_path / "apptainer", tmp_path / "ptblm.sif", tmp_path / "apptainer.log"
    setup = ["module load nosuchmodule"]
    profile = "partition: debug\ncpus_per_task: 1\nmem_gb: 1\ntime_min: 10\n"
    env = {}
    if container:
        shutil.copy(FAKE_APPTAINER, runtime)
        image.write_text("not a real image\n")
        setup.insert(0, f"rm {runtime}")
        profile += f"container: {image}\n"
        env = {"PTBLM_CONTAINER_RUNTIME": str(runtime), "FAKE_APPTAINER_LOG": str(log)}
    (clusters / "rvc.yaml").write_text(profile + f"setup: {json.dumps(setup)}\n")
    locations = ["--jobs", str(jobs_dir), "--results", str(results)]
    job = submitted_job(ptblm(command, name, "--cluster", "rvc", "--clusters", str(clusters), *locations, "--data",
                              str(synthetic_dir), env=env).stdout)
    wait_for_job(job)
    run_dir = load_experiment(name, jobs_dir).settings[0].run_dir(results)
    status = rf.read_status(run_dir)
    assert status.state == rf.FAILED and status.epochs_done == 0, status
    assert status.error.startswith("SetupFailed: the setup line `module load nosuchmodule` of cluster profile rvc "
                                   "failed (exit 127): ") and "module: command not found" in status.error, status.error
    assert not rf.read_curves(run_dir).epochs and not log.exists()
    table = ptblm("status", name, *locations).stdout
    assert re.search(r"\n +0 +\S+ +failed ", table), table
    assert "the setup line `module load nosuchmodule` of cluster profile rvc failed (exit 127)" in table, table


def test_experiment_larger_than_max_array_size_is_split_into_arrays(tmp_path, synthetic_dir):
    jobs_dir, results, clusters = tmp_path / "jobs", tmp_path / "results", tmp_path / "clusters"
    name = write_tiny_jobs(jobs_dir, hidden_sizes=(8, 10, 12))
    clusters.mkdir()
    (clusters / "small.yaml").write_text("partition: debug\ncpus_per_task: 1\nmem_gb: 2\nmax_array_size: 2\n")
    output = ptblm("submit", name, "--cluster", "small", "--clusters", str(clusters), "--jobs", str(jobs_dir),
                   "--results", str(results), "--data", str(synthetic_dir)).stdout
    arrays = re.findall(r"submitted array job (\d+) with (\d+) tasks?", output)
    assert [count for _, count in arrays] == ["2", "1"], output
    for job, _ in arrays:
        wait_for_job(job)
    for setting in load_experiment(name, jobs_dir).settings:
        assert rf.read_status(setting.run_dir(results)).state == rf.DONE


def test_max_array_size_is_read_from_the_cluster():
    from ptblm.launch.slurm import max_array_size

    assert max_array_size() == 1001  # slurm/dev-cluster/slurm.conf.in sets MaxArraySize=1001


def test_scancel_stops_a_running_task_at_once_and_leaves_it_resumable(tmp_path, slow_corpus):
    """scancel sends SIGTERM (submitit only logs it): the task stops after the batch, long before KillWait's
    SIGKILL, and says `cancelled`; resubmitting resumes it."""
    locations, name, job, run_dir = submit_one_slow_run(tmp_path, slow_corpus, num_epochs=30)
    wait_for_epochs(run_dir, 1)
    while not (rf.read_status(run_dir).progress or rf.EpochProgress(0, 0, 0, 0)).step:  # epoch 2, ~10% in
        time.sleep(0.05)
    running = ptblm("status", name, *locations[:4]).stdout
    assert re.search(r" running +\d+/30 \(epoch \d+: \d+%\) .* \d:\d\d:\d\d +\d:\d\d:\d\d ", running), running
    assert re.search(rf"\nsummary {name}: 1 running; last running ends ~\d\d:\d\d \(in \d:\d\d:\d\d\)$", running)
    subprocess.run(["scancel", rf.read_submission(run_dir).job_id], check=True)
    wait_for_job(job, timeout_s=120)
    status = rf.read_status(run_dir)
    assert status.state == rf.CANCELLED and 1 <= status.epochs_done < 30
    assert "stopped on request" in (run_dir / rf.LOG_FILE).read_text()  # our handler, not the SIGKILL
    table = ptblm("status", name, *locations[:4]).stdout  # --jobs DIR --results DIR
    assert " cancelled " in table
    assert f"-m ptblm.cli submit {name} --only 0 {' '.join(locations[2:4])} {' '.join(locations[:2])}` resumes it" \
        in table, table
    assert "resume: from last.pt" in ptblm("submit", name, *locations, "--dry-run").stdout


@pytest.mark.parametrize("command", ["submit", "sbatch"])
def test_forced_submission_with_a_partition_typo_changes_no_folder(tmp_path, synthetic_dir, command):
    jobs_dir, results, clusters = tmp_path / "jobs", tmp_path / "results", tmp_path / "clusters"
    name = write_tiny_jobs(jobs_dir)
    setting = load_experiment(name, jobs_dir).settings[0]
    from ptblm.train import train_run

    train_run(setting.config, synthetic_dir, setting.run_dir(results), experiment=name, setting_index=0, echo=False,
              environ={})
    def contents():  # the lock's holder record aside: the submission held the lock (that changes no result)
        return sorted((p.name, p.stat().st_mtime_ns) for p in setting.run_dir(results).iterdir()
                      if p.name != rf.LOCK_FILE)

    before = contents()
    clusters.mkdir()
    (clusters / "typo.yaml").write_text("partition: dbug\ncpus_per_task: 1\nmem_gb: 2\n")
    result = ptblm(command, name, "--force", "--cluster", "typo", "--clusters", str(clusters), "--jobs", str(jobs_dir),
                   "--results", str(results), "--data", str(synthetic_dir), check=False)
    assert result.returncode == 1 and "invalid partition" in result.stderr.lower(), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert contents() == before
    left = sorted(path.name for path in (results / name / "logs").iterdir())  # no script or pickle of no job
    assert not [n for n in left if n.startswith((".submission_file_", "pinned-")) or n.endswith(".pkl")], left
    assert rf.read_status(setting.run_dir(results)).state == rf.DONE
    assert "submitted array job" not in result.stdout


def test_missing_data_is_found_on_the_login_node_and_nothing_is_queued(tmp_path):
    jobs_dir, results = tmp_path / "jobs", tmp_path / "results"
    name = write_tiny_jobs(jobs_dir)
    result = ptblm("submit", name, "--jobs", str(jobs_dir), "--results", str(results), "--data",
                   str(tmp_path / "not-here"), check=False)
    assert result.returncode == 1 and f"{tmp_path}/not-here/ptb.train.txt is missing" in result.stderr
    assert "submitted" not in result.stdout and not results.exists()


def test_two_experiments_with_set_are_two_arrays_and_status_shows_both(tmp_path, synthetic_dir):
    jobs, results = tmp_path / "jobs", tmp_path / "results"
    write_tiny_jobs(jobs, num_epochs=3)
    (jobs / "tiny.yaml").rename(jobs / "other.yaml")
    write_tiny_jobs(jobs, num_epochs=3, hidden_sizes=(10,))
    locations = ["--jobs", str(jobs), "--results", str(results), "--data", str(synthetic_dir)]
    output = ptblm("submit", "other", "tiny", "--set", "num_epochs=1", *locations).stdout
    arrays = re.findall(r"submitted array job (\d+)", output)
    assert len(arrays) == 2 and arrays[0] != arrays[1], output
    for job in arrays:
        wait_for_job(job)
    for name, job in zip(("other", "tiny"), arrays):
        setting, = load_experiment(name, jobs, parse_overrides(["num_epochs=1"])).settings
        run = rf.read_run(setting.run_dir(results))
        assert run.status.state == rf.DONE and run.status.slurm_job_id.split("_")[0] == job, name  # one task: no _0
        assert run.config["num_epochs"] == 1 and setting.run_name.endswith("_ep1")
        assert rf.read_submission(setting.run_dir(results)).overrides == ["num_epochs=1"]
    table = ptblm("status", "--results", str(results), "--jobs", str(jobs)).stdout
    assert table.startswith("other: tiny") and "\n\ntiny: tiny" in table and table.count(" done ") == 2


def sbatch_option_table() -> set[str]:
    """The installed sbatch's long options, from its own parser: `--X` for each letter X names every option that
    begins with X as ambiguous, or is the one that does (its --help leaves some out)."""
    options = set()
    for letter in "abcdefghijklmnopqrstuvwxyz":
        said = subprocess.run(["sbatch", "--test-only", f"--{letter}", "--wrap=true"], capture_output=True,
                              text=True).stderr
        if "is ambiguous; possibilities:" in said:
            options |= set(re.findall(r"'--([a-z-]+)'", said.split("possibilities:")[1]))
        elif "unrecognized option" not in said:  # one option begins with the letter: its name from --help
            help_text = subprocess.run(["sbatch", "--help"], capture_output=True, text=True).stdout
            named = set(re.findall(rf"--({letter}[a-z-]*)", help_text + said))
            assert len(named) == 1, (letter, said, named)
            options |= named
    return options


def test_ptblms_table_of_sbatch_options_is_the_installed_sbatchs_and_sbatch_reads_keys_as_ptblm_says():
    """sbatch_extra is checked against SBATCH_LONG_OPTIONS: that table is the real one, and for each key sbatch
    refuses as ambiguous, or reads as an option ptblm refuses, the profile is refused too."""
    from ptblm.clusters import REFUSED_SBATCH_OPTIONS, SBATCH_LONG_OPTIONS, refused_option

    assert sbatch_option_table() == set(SBATCH_LONG_OPTIONS)
    assert set(REFUSED_SBATCH_OPTIONS) - {"tres-per-task"} <= set(SBATCH_LONG_OPTIONS)
    for key in ("m", "p", "me", "mem-per", "wa", "exp", "arr", "partitio", "mem", "mem_per_cpu", "distribution",
                "constraint", "mail_type", "j", "contig"):
        result = subprocess.run(["sbatch", "--test-only", f"--{key.replace('_', '-')}=1", "--wrap=true"],
                                capture_output=True, text=True)
        ambiguous = "is ambiguous" in result.stderr
        why = refused_option(key)
        assert ambiguous == (why is not None and "ambiguous" in why), (key, result.stderr, why)
    for key in ("mem-per-cpu", "cpus-per-gpu", "mem-per-gpu"):  # beside ptblm's own --mem and --cpus-per-task
        result = subprocess.run(["sbatch", "--test-only", "--mem=1G", "--cpus-per-task=1", f"--{key}=1",
                                 "--wrap=true"], capture_output=True, text=True)
        assert refused_option(key) and result.returncode != 0, (key, result.stderr)
