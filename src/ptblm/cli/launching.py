"""`ptblm submit`, `sbatch`, `status`, `run-setting` and `demo`: experiments launched, their tasks run, their state."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..config import ConfigError
from ..wording import count
from .flags import EachOnce, add_location_flags, add_override_flag
from .types import path_flag, setting_list

DEFAULT_PROFILE = "local"  # a workstation, or the dev cluster (slurm/dev-cluster.sh)
EXPERIMENTS_HELP = ("jobs/<experiment>.yaml, e.g. 3.1, or a path to a YAML file; several (one array each), or all: "
                    "every jobs file but the examples (example-*) and the smoke test")


def experiments_and_profile(args: argparse.Namespace):
    """Every named experiment (`all` expanded) and the profile, all validated, --set overrides included,
    before anything is submitted."""
    from ..clusters import load_profile
    from ..jobs import check_trains_distinct, experiment_names, load_experiment, only_settings, parse_overrides

    overrides = parse_overrides(args.set)
    names = experiment_names(args.experiments, args.jobs)
    if args.only and len(names) != 1:
        raise ConfigError(f"--only {','.join(args.only)} picks settings of one experiment, but {len(names)} are "
                          f"named ({', '.join(names)}); valid: one experiment with --only")
    experiments = [only_settings(load_experiment(name, args.jobs, overrides), args.only) for name in names]
    for experiment in experiments:
        check_trains_distinct(experiment)
    return experiments, load_profile(args.cluster or DEFAULT_PROFILE, args.clusters)


def failed_settings(outcomes, command: str) -> int:
    """Local runs wait for their tasks: 1 when any setting failed (`make submit && make report` stops), each
    failure's error line repeated on stderr."""
    failures = [f"{outcome.experiment} {line}" for outcome in outcomes for line in outcome.failures]
    if not failures:
        return 0
    ran = sum(task.runs for outcome in outcomes for task in outcome.plan)
    print(f"ptblm {command}: error: {len(failures)} of {count(ran, 'setting')} failed:", *failures, sep="\n  ",
          file=sys.stderr)
    return 1


def named_locations(args: argparse.Namespace):
    """How the user runs ptblm, and the results and jobs folders that are not the defaults (--results, --jobs or
    their variables named others): the commands ptblm suggests name them."""
    from ..invocation import Locations

    return Locations(invoked_as(), None if args.results == Path("results") else args.results,
                     None if args.jobs == Path("jobs") else args.jobs)


def invoked_as() -> str:
    """How the user ran this ptblm (`.venv/bin/ptblm` after `make setup`), for the commands it suggests."""
    from ..invocation import ptblm_command

    return ptblm_command(sys.argv[0], os.environ, Path.cwd())


def launch_flags() -> argparse.ArgumentParser:
    """What `ptblm submit` and `ptblm sbatch` share: the experiments, the profile, the plan's flags, --set and
    --only, and where jobs, results and data are."""
    launch = argparse.ArgumentParser(add_help=False)
    launch.add_argument("experiments", nargs="+", action=EachOnce, metavar="experiment",
                        help=EXPERIMENTS_HELP)
    launch.add_argument("--cluster", default=os.environ.get("CLUSTER") or None,
                        help=f"cluster profile slurm/clusters/<name>.yaml (default $CLUSTER, else {DEFAULT_PROFILE}, "
                             f"which a Slurm cluster other than the dev cluster refuses)")
    launch.add_argument("--dry-run", action="store_true", help="print the plan and its cost (resources, projected "
                        "time from results/bench/*.json, GPU-hours), and for sbatch its command; submit nothing")
    launch.add_argument("--force", action="store_true", help="rerun finished settings from scratch")
    add_override_flag(launch)
    launch.add_argument("--only", action="append", default=[], metavar="SETTING[,SETTING...]", type=setting_list,
                        help="only these settings of the experiment: numbers (0,2 or 0-3) or run names, as the plan "
                             "lists them (repeatable)")
    add_location_flags(launch, "jobs", "results", "clusters", "data")
    return launch


def cmd_submit(args: argparse.Namespace) -> int:
    from ..launch.pipeline import submit_experiment

    experiments, profile = experiments_and_profile(args)
    outcomes = [submit_experiment(experiment, profile, results_dir=args.results, data_dir=args.data,
                                  environ=os.environ, dry_run=args.dry_run, force=args.force, executor=args.executor,
                                  profile_chosen=args.cluster is not None, where=named_locations(args))
                for experiment in experiments]  # one array (one lock, one plan table) each
    return failed_settings(outcomes, "submit")


def add_submit(commands) -> None:
    submit = commands.add_parser("submit", parents=[launch_flags()],
                                 help="submit an experiment as one Slurm array (local processes without Slurm)")
    submit.add_argument("--executor", choices=("auto", "slurm", "local"), default="auto",
                        help="auto = Slurm when a cluster answers sinfo, else local processes")
    submit.set_defaults(handler=cmd_submit)


def cmd_sbatch(args: argparse.Namespace) -> int:
    from ..launch.pipeline import submit_sbatch

    experiments, profile = experiments_and_profile(args)
    for experiment in experiments:
        submit_sbatch(experiment, profile, results_dir=args.results, data_dir=args.data, environ=os.environ,
                      script=args.script, dry_run=args.dry_run, force=args.force,
                      profile_chosen=args.cluster is not None, where=named_locations(args))
    return 0


def add_sbatch(commands) -> None:
    sbatch = commands.add_parser("sbatch", parents=[launch_flags()],
                                 help="submit an experiment through slurm/array.sbatch (no submitit)")
    sbatch.add_argument("--script", type=path_flag, default=Path("slurm/array.sbatch"),
                        help="the job script each array task runs (default slurm/array.sbatch)")
    sbatch.set_defaults(handler=cmd_sbatch)


def cmd_status(args: argparse.Namespace) -> int:
    from ..jobs import experiment_names, parse_overrides
    from ..status import status_report

    print(status_report(args.results, args.jobs, experiment_names(args.experiments, args.jobs),
                        overrides=parse_overrides(args.set), where=named_locations(args)))
    return 0


def add_status(commands) -> None:
    status = commands.add_parser("status", help="a table per experiment from the run folders")
    status.add_argument("experiments", nargs="*", action=EachOnce, help="experiments, or all (every jobs file but "
                        "the examples and the smoke test); default: every one with results")
    status.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="as given to submit: the settings not submitted yet are listed with these overrides")
    add_location_flags(status, "jobs", "results")
    status.set_defaults(handler=cmd_status)


def cmd_run_setting(args: argparse.Namespace) -> int:
    from ..launch.sbatch import run_setting
    from ..stopping import StopRequest, ended_run_exit_status

    stop = StopRequest()  # scancel's SIGTERM: the run ends cancelled, the task 143 (as `ptblm train`)
    return ended_run_exit_status(run_setting(args.old_pinned or args.pinned, args.task, os.environ, here=args.here,
                                             stop=stop), stop)


def add_run_setting(commands) -> None:
    run_setting = commands.add_parser("run-setting", help="run one task of an array `ptblm sbatch` submitted "
                                      "(what slurm/array.sbatch runs)")
    run_setting.add_argument("pinned", type=path_flag, help="the pinned file `ptblm sbatch` wrote "
                             "(results/<exp>/logs/pinned-*.json): each task's setting, the data, how to start ptblm")
    run_setting.add_argument("task", type=int, help="$SLURM_ARRAY_TASK_ID, the setting's number")
    run_setting.add_argument("--here", action="store_true", help="run in this process as it is (run-setting runs "
                             "itself so once the profile's setup lines and container apply)")
    run_setting.add_argument("--pinned", dest="old_pinned", type=path_flag, default=None,
                             help="the pinned file, as an array queued by an older ptblm passes it (its first "
                                  "argument is then the experiment's name)")
    run_setting.set_defaults(handler=cmd_run_setting)


def cmd_demo(args: argparse.Namespace) -> int:
    """The smoke experiment into results/demo/ (apart from the suite's own results), then its results table."""
    from .. import corpora
    from ..clusters import load_profile
    from ..data import write_synthetic_corpus
    from ..jobs import load_experiment
    from ..launch.pipeline import submit_experiment
    from ..layout import demo_results_dir, output_dir
    from ..report.summary import load_summaries
    from ..report.tables import markdown_table

    demo_dir = output_dir(demo_results_dir(args.results), "--results")
    experiment = load_experiment("smoke", args.jobs)
    corpus = corpora.get(experiment.settings[0].config.corpus)
    data_dir = args.data or corpora.configured_data_dir(corpus, os.environ)
    if data_dir is None:
        data_dir = write_synthetic_corpus(demo_dir / "data", corpus=corpus)
        print(f"no {corpus.env_var} set: using the synthetic corpus written to {data_dir}")
    where = dataclasses.replace(named_locations(args), results_dir=demo_dir)  # what a suggested status reads
    outcome = submit_experiment(experiment, load_profile(DEFAULT_PROFILE, args.clusters), results_dir=demo_dir,
                                data_dir=data_dir, executor="local", environ=os.environ, where=where)
    print(f"\n{markdown_table(load_summaries(demo_dir))}\n\nrun folders in {demo_dir}/smoke/")
    return failed_settings([outcome], "demo")


def add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="the smoke experiment on this machine into results/demo/ "
                               "(synthetic data without PTB_DIR), then its results table")
    add_location_flags(demo, "jobs", "results", "clusters", "data")
    demo.set_defaults(handler=cmd_demo)
