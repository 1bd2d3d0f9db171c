"""One pipeline behind `ptblm submit` (submitit: Slurm or local) and `ptblm sbatch`:

    check data and profile -> lock the experiment -> plan -> table -> submit the settings that run
    -> hold the locks of the folders that run -> submit them
    -> for each task the scheduler accepted: empty its forced folders, write submitted.json, release its locks
    -> release the held Slurm jobs

Slurm tasks are submitted held and released once their folders are ready, so a forced folder is
emptied only after the scheduler accepted its task, and before the task can start: a partition typo
leaves every folder as it was, and a task that Slurm requeues later resumes (never in the task).
Nothing is emptied or written without the folder's lock: a folder that another process writes is
skipped by the plan, and one taken between the plan and the submission refuses the whole submission.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import corpora, layout
from .. import runfolder as rf
from ..clusters import ClusterProfile, split_array
from ..config import ConfigError
from ..container import ContainerSpec, job_binds, profile_spec, requeue_env
from ..data import DataError, corpus_fingerprint
from ..errors import ToolFailed
from ..invocation import Locations, status_command
from ..jobs import Experiment, Setting
from ..threads import threads_per_run
from ..wording import count
from .checks import check_data_for_submission, check_gpus_asked_for, check_model_sizes
from .cost import cost_table, project_costs, read_bench_reports
from .local import run_local
from .lock import submission_lock
from .plan import PlannedTask, forced_line, plan_experiment, plan_table
from .sbatch import PINNED_PLACEHOLDER, check_task_ids, sbatch_argv, sbatch_job_command, submit_array
from .slurm import (DEV_CLUSTER_NAME, ArraySize, cluster_name, job_name, missing_programs, no_slurm_here,
                    sbatch_flags, scheduler_parameters, slurm_answers, squeue_jobs)
from .submitit_arrays import submit_arrays
from .tasks import TrainGroup, TrainTask


# Why tasks run as local processes: the executor named (`--executor local`, `ptblm demo`), or none answered.
LOCAL_REASONS = {"local": "the local executor was asked for", "auto": "no Slurm cluster answers sinfo here"}


@dataclass
class SubmitOutcome:
    experiment: str
    plan: list[PlannedTask]
    executor: str  # "slurm", "local", "sbatch" or "none" (dry run / nothing to do)
    job_ids: list[str]
    logs_dir: Path
    failures: tuple[str, ...] = ()  # local runs: one line per setting that failed, with its error


def corpus_data_dirs(settings: Sequence[Setting], explicit: Path | None,
                     environ: Mapping[str, str]) -> dict[str, Path]:
    """Corpus name -> the absolute folder its tasks read (corpora.resolve_data_dir), for each corpus the
    settings train on. --data names one folder, so it serves an experiment of one corpus only."""
    names = list(dict.fromkeys(setting.config.corpus for setting in settings))
    if explicit is not None and len(names) > 1:
        variables = ", ".join(f"{corpora.get(name).env_var} ({name})" for name in names)
        raise DataError(f"--data {explicit} names one folder, but these settings train on {len(names)} corpora "
                        f"({', '.join(names)}); valid: leave --data out and set {variables}, or submit one corpus "
                        f"at a time (--set corpus=NAME)")
    return {name: corpora.resolve_data_dir(corpora.get(name), explicit, environ).resolve() for name in names}


def container_spec(profile: ClusterProfile, results_dir: Path, data_dirs: Sequence[Path],
                   requeue_dir: Path, jobs_dir: Path, environ: Mapping[str, str]) -> ContainerSpec | None:
    """The profile's image (apptainer .sif or podman image) with the repository, results, data, the
    experiments folder (and $SLURM_TMPDIR) bound at their own paths."""
    if not profile.container:
        return None
    return profile_spec(profile.container, profile.container_runtime,
                        binds=job_binds(Path.cwd(), results_dir, data_dirs[0],
                                        [*data_dirs[1:], jobs_dir.resolve(), *profile.container_binds]),
                        env=requeue_env(requeue_dir), where=f"cluster profile {profile.name}", environ=environ,
                        digest_cache=layout.fingerprint_cache_file(results_dir))


def group_tasks(tasks: list[TrainTask], runs_per_gpu: int) -> list[TrainTask | TrainGroup]:
    """One array task per setting, or per `runs_per_gpu` settings sharing one allocation."""
    if runs_per_gpu <= 1:
        return list(tasks)
    return [TrainGroup(tuple(tasks[i:i + runs_per_gpu])) for i in range(0, len(tasks), runs_per_gpu)]


def array_task_count(settings: int, runs_per_gpu: int) -> int:
    """How many array tasks group_tasks makes of `settings` settings."""
    return -(-settings // max(runs_per_gpu, 1))


class HeldFolders:
    """The locks of the run folders a submission writes, taken before anything is submitted: a folder another
    process writes refuses the whole submission (one line naming it and its holder; nothing submitted), and
    no queued job ever points at a folder the submission could not prepare. Each lock is released once its
    folder is prepared (emptied when forced, submitted.json written), before its job can start."""

    def __init__(self, plan: list[PlannedTask], results_dir: Path):
        self._stacks: dict[int, contextlib.ExitStack] = {}
        self.writers: dict[int, rf.RunWriter] = {}
        try:
            for task in plan:
                if task.runs:
                    folder = rf.RunFolder(task.setting.run_dir(results_dir))
                    folder.path.mkdir(parents=True, exist_ok=True)
                    stack = contextlib.ExitStack()
                    self.writers[task.setting.index] = stack.enter_context(folder.hold(force=task.forced))
                    self._stacks[task.setting.index] = stack
        except rf.RunFolderError as error:
            self.release_all()
            raise rf.RunFolderBusy(f"{error}; nothing was submitted") from None

    def release(self, index: int) -> None:
        stack = self._stacks.pop(index, None)
        if stack is not None:
            stack.close()

    def release_all(self) -> None:
        for index in list(self._stacks):
            self.release(index)

    close = release_all  # contextlib.closing


def mark_accepted(plan: list[PlannedTask], results_dir: Path, executor: str, overrides: tuple[str, ...] = (),
                  held: HeldFolders | None = None, profile: str | None = None, jobs_dir: Path | None = None):
    """What happens once the scheduler has accepted a job: its forced folders are emptied, then each run
    folder records the job (submitted.json, with the setting it runs, the --set texts that made it, the job's
    name, and the profile and the jobs folder named, if they were: what resubmitting it takes), all under the
    folder's lock (`held` since before the submission, else taken here), which is released then."""
    forced = {task.setting.index for task in plan if task.forced}

    def prepare(writer: rf.RunWriter, member: TrainTask, job_id: str | None, submitted_at: float) -> None:
        if member.setting.index in forced:
            writer.clear()
        writer.write_submission(rf.Submission(
            job_id, executor, submitted_at, setting_index=member.setting.index,
            config=member.setting.config.to_dict(), overrides=list(overrides) or None,
            job_name=job_name(member.setting.experiment) if executor in ("slurm", "sbatch") else None,
            profile=profile, jobs_dir=str(Path(jobs_dir).resolve()) if jobs_dir is not None else None))

    def accepted(job: TrainTask | TrainGroup, job_id: str | None, submitted_at: float) -> None:
        for member in job.members:
            if held is not None and member.setting.index in held.writers:
                prepare(held.writers[member.setting.index], member, job_id, submitted_at)
                held.release(member.setting.index)
            else:
                folder = rf.RunFolder(member.setting.run_dir(Path(results_dir)))
                folder.path.mkdir(parents=True, exist_ok=True)
                with folder.hold(force=member.setting.index in forced) as writer:
                    prepare(writer, member, job_id, submitted_at)
    return accepted


def submit_experiment(experiment: Experiment, profile: ClusterProfile, *, results_dir: Path,
                      data_dir: Path | None = None, environ: Mapping[str, str] | None = None,
                      dry_run: bool = False, force: bool = False, executor: str = "auto", profile_chosen: bool = True,
                      where: Locations = Locations(), runner=subprocess.run, echo=print) -> SubmitOutcome:
    """`ptblm submit`: submitit, to Slurm (one array, fire-and-forget) or, without Slurm, local processes (waits).
    Each setting reads its corpus from `data_dir` (--data), else from where `environ` says (corpus_data_dirs).
    profile_chosen: False when nobody named the profile (see check_profile_choice); where: how the user runs
    ptblm and the folders named that are not the default (for the commands suggested, now and from the run
    folders later: a named jobs folder is recorded in each)."""
    use_slurm = executor == "slurm" or (executor == "auto" and slurm_answers())
    return _pipeline(experiment, profile, "slurm" if use_slurm else "local", results_dir=results_dir,
                     data_dir=data_dir, environ=environ or {}, dry_run=dry_run, force=force, echo=echo,
                     profile_chosen=profile_chosen, where=where, runner=runner,
                     local_reason=LOCAL_REASONS["local" if executor == "local" else "auto"])


def submit_sbatch(experiment: Experiment, profile: ClusterProfile, *, results_dir: Path, script: Path,
                  data_dir: Path | None = None, environ: Mapping[str, str] | None = None,
                  dry_run: bool = False, force: bool = False, profile_chosen: bool = True,
                  where: Locations = Locations(), runner=subprocess.run, echo=print) -> SubmitOutcome:
    """`ptblm sbatch`: one sbatch array of slurm/array.sbatch for the settings that still need to run.

    No submitit here, so no USR2 handling: a preempted task is requeued by Slurm (--requeue in the
    script) and resumes from last.pt; a timed-out one resumes when submitted again.
    """
    return _pipeline(experiment, profile, "sbatch", results_dir=results_dir, data_dir=data_dir,
                     environ=environ or {}, dry_run=dry_run, force=force, echo=echo, script=script, runner=runner,
                     profile_chosen=profile_chosen, where=where)


def bench_command(experiment: Experiment, where: Locations) -> str:
    """The `ptblm bench` that times this experiment's shapes as submitted (its --set texts), on its corpora, into
    the bench folder of the results the dry run reads."""
    out = layout.bench_dir(where.results_dir) if where.results_dir is not None else None
    return " ".join([where.ptblm, "bench", "--full", shlex.quote(experiment.name),
                     *(f"--set {shlex.quote(text)}" for text in experiment.overrides),
                     *([f"--jobs {shlex.quote(str(where.jobs_dir))}"] if where.jobs_dir is not None else []),
                     *([f"--out {shlex.quote(str(out))}"] if out is not None else [])])


def where_tasks_run(profile: ClusterProfile, executor: str, cluster: str | None, script: Path | None,
                    local_reason: str = "", arrays: int = 1, array_size: ArraySize | None = None) -> str:
    """The plan's line naming the profile, and whether Slurm (which cluster, which partition, how many arrays:
    submit splits the tasks at the array size) or local processes will run the tasks, and why local ones
    (LOCAL_REASONS)."""
    if executor == "local":
        return (f"profile {profile.name}: local processes on this machine ({local_reason}), at most "
                f"{profile.local_parallelism} at once")
    if executor == "sbatch":
        how = f"one sbatch array of {script}"
    elif arrays > 1:
        how = (f"{arrays} Slurm arrays (submitit; at most {array_size.tasks} tasks each: {array_size.source} "
               f"max_array_size)")
    else:
        how = "one Slurm array (submitit)"
    return (f"profile {profile.name}: {how} on Slurm cluster {cluster or '(unnamed)'}, partition "
            f"{profile.partition or '(the cluster default)'}")


def slurm_options(parameters: dict, arrays: int = 1) -> str:
    """The dry run's line of what each task asks Slurm for: the profile's options as both submit paths pass them
    (scheduler_parameters, spelled as sbatch options), how many tasks run at once (the throttle holds for each
    array), and the setup lines."""
    setup = "; ".join(parameters["setup"])
    return (f"slurm options: {' '.join(sbatch_flags(parameters))}; at most "
            f"{count(parameters['array_parallelism'], 'task')} at once"
            + (f" in each of the {arrays} arrays" if arrays > 1 else "") + (f"; setup: {setup}" if setup else ""))


def check_profile_choice(profile: ClusterProfile, executor: str, cluster: str | None, chosen: bool) -> str | None:
    """Why a submission with nobody's choice of profile must not go on, or None. The default profile (`local`)
    is made for a workstation and the dev cluster: on another Slurm cluster it asks for a partition `debug`, no
    GPU and an hour, and its tasks would queue there and fail, so a forgotten CLUSTER= is refused rather than
    warned about in a line that scrolls past while the array is already queued."""
    if chosen or executor == "local" or cluster == DEV_CLUSTER_NAME:
        return None
    return (f"no cluster profile was chosen (--cluster NAME, or CLUSTER=NAME for make), and Slurm cluster "
            f"{cluster or '(unnamed)'} is not the dev cluster ({DEV_CLUSTER_NAME}) the default profile "
            f"{profile.name} is made for (partition {profile.partition}, {profile.gpus_per_node or 'no'} GPU, "
            f"{profile.time_min} min): choose a profile of slurm/clusters/ with --cluster, or --cluster "
            f"{profile.name} to use it here anyway")


def _pipeline(experiment: Experiment, profile: ClusterProfile, executor: str, *, results_dir: Path,
              data_dir: Path | None, environ: Mapping[str, str], dry_run: bool, force: bool, echo,
              script: Path | None = None, runner=subprocess.run, profile_chosen: bool = True,
              where: Locations = Locations(), local_reason: str = "") -> SubmitOutcome:
    results_dir = Path(results_dir).resolve()
    logs_dir = layout.logs_dir(results_dir, experiment.name)
    # Everything that can be wrong is found here, before any folder or queue is touched.
    missing = missing_programs(executor, environ)
    if missing and not dry_run:
        raise ToolFailed(no_slurm_here(missing, executor))
    cluster = None if executor == "local" or missing else cluster_name(runner)
    refusal = no_slurm_here(missing, executor) if missing else \
        check_profile_choice(profile, executor, cluster, profile_chosen)
    if refusal and not dry_run:
        raise ConfigError(refusal)
    check_model_sizes(experiment.settings, profile, experiment.where)
    if executor != "local":
        check_gpus_asked_for(experiment.settings, profile, experiment.where)
    data_dirs = corpus_data_dirs(experiment.settings, data_dir, environ)
    for name, folder in data_dirs.items():
        check_data_for_submission(folder, corpora.get(name),
                                  [setting for setting in experiment.settings if setting.config.corpus == name])
    # skip-as-done and resume only on the corpus each run folder was trained on
    fingerprints = {name: corpus_fingerprint(folder, layout.fingerprint_cache_file(results_dir), corpora.get(name))
                    for name, folder in data_dirs.items()}
    parameters = scheduler_parameters(profile, job_name(experiment.name))
    spec = container_spec(profile, results_dir, list(data_dirs.values()), requeue_dir=logs_dir,
                          jobs_dir=experiment.path.parent, environ=environ)
    if not dry_run:  # a file in the way, or a folder this user cannot write: one line naming --results
        layout.output_dir(layout.experiment_dir(results_dir, experiment.name), "--results (RESULTS= for make)")
        layout.logs_folder(results_dir, experiment.name)
    # A dry run writes nothing, so it takes no lock; a submission polls squeue inside it, after the previous
    # holder's submitted.json files are written.
    with contextlib.ExitStack() as stack:
        if not dry_run:
            stack.enter_context(submission_lock(layout.submit_lock_path(results_dir, experiment.name),
                                                experiment.name))
        scheduler = {} if executor == "local" else squeue_jobs()
        plan = plan_experiment(experiment, results_dir, force, scheduler, fingerprints)
        todo = [task for task in plan if task.runs]
        array_size = ArraySize.of(profile, runner) if executor != "local" else None
        arrays = (len(split_array(array_task_count(len(todo), profile.runs_per_gpu), array_size.tasks))
                  if executor == "slurm" else 1)
        overridden = "".join(f" --set {text}" for text in experiment.overrides)
        echo(f"experiment {experiment.name} ({experiment.path}{overridden}): {experiment.description}")
        echo(where_tasks_run(profile, executor, cluster, script, local_reason, arrays, array_size))
        if refusal:
            echo(f"warning: {refusal}")
        echo(plan_table(plan))
        if forced := forced_line(plan):
            echo(forced)
        if executor == "sbatch" and todo:
            check_task_ids(experiment, [task.setting.index for task in todo], array_size.tasks, array_size.source)
        if dry_run:
            if executor in ("slurm", "sbatch"):
                echo(slurm_options(parameters, arrays))
            if executor == "sbatch" and todo:
                echo(" ".join(sbatch_argv(experiment.name, [task.setting.index for task in todo], profile,
                                          parameters, logs_dir=logs_dir, script=script, pinned=PINNED_PLACEHOLDER)))
            costs = project_costs([task.setting for task in todo], profile,
                                  read_bench_reports(layout.bench_dir(results_dir)))
            echo(cost_table(costs, profile, bench_command(experiment, where)))
            echo("dry run: nothing submitted")
            return SubmitOutcome(experiment.name, plan, "none", [], logs_dir)
        if not todo:
            echo("nothing to submit: every setting is finished or queued")
            return SubmitOutcome(experiment.name, plan, "none", [], logs_dir)
        if spec:
            echo(f"tasks run inside {spec.image} ({spec.kind})")
        held = stack.enter_context(contextlib.closing(HeldFolders(plan, results_dir)))
        accepted = mark_accepted(plan, results_dir, executor, experiment.overrides, held,
                                 profile.name if profile_chosen else None,
                                 experiment.path.parent if where.jobs_dir is not None else None)
        # local runs share this machine's cores; on Slurm each task reads $SLURM_CPUS_PER_TASK
        threads = (threads_per_run(profile.local_parallelism * profile.runs_per_gpu, environ) if executor == "local"
                   else None)
        watch = os.getpid() if executor == "local" else None  # local trainers stop when this process is gone
        tasks = [TrainTask(task.setting, str(data_dirs[task.setting.config.corpus]), str(results_dir), threads, watch)
                 for task in todo]
        if executor == "sbatch":
            job_ids = submit_array(tasks, profile, parameters, experiment, results_dir=results_dir,
                                   data_dirs=data_dirs, command=sbatch_job_command(spec), script=script,
                                   accepted=accepted, runner=runner, echo=echo)
            echo(f"follow with {status_command(experiment.name, where, experiment.overrides)}")
        elif executor == "slurm":
            job_ids = submit_arrays(group_tasks(tasks, profile.runs_per_gpu), profile, parameters,
                                    logs_dir=logs_dir, array_size=array_size.tasks, spec=spec, accepted=accepted,
                                    echo=echo)
            echo(f"logs: {logs_dir}/<job>_<task>_0_log.out and .err; follow with "
                 f"{status_command(experiment.name, where, experiment.overrides)}")
        else:
            job_ids, failures = run_local(group_tasks(tasks, profile.runs_per_gpu), profile, logs_dir=logs_dir,
                                          spec=spec, accepted=accepted, echo=echo, reason=local_reason,
                                          status_command=status_command(experiment.name, where, experiment.overrides))
            return SubmitOutcome(experiment.name, plan, executor, job_ids, logs_dir, tuple(failures))
    return SubmitOutcome(experiment.name, plan, executor, job_ids, logs_dir)
