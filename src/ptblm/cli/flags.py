"""What several commands share: the default folders (each a variable can move) and the flags that name them."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..corpora import CORPORA
from ..layout import user_path
from ..naming import each_once
from .types import count, path_flag, temperature

CORPUS_VARIABLES = " or ".join(f"${entry.env_var}" for entry in CORPORA.values())  # each names its corpus's folder


class EachOnce(argparse.Action):
    """The action of every flag or argument that takes a list (experiments, runs, cases): each named once, in the
    order first named (naming.each_once), so `ptblm export smoke smoke` reads smoke once."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, each_once(values))


FOLDER_VARIABLES = {"results": ("PTBLM_RESULTS", "results"), "jobs": ("PTBLM_JOBS", "jobs"),
                    "clusters": ("PTBLM_CLUSTERS", "slurm/clusters")}  # folder -> (its variable, its default)


def default_folder_text(folder: str, environ=os.environ) -> str:
    """The folder as its variable gives it, unexpanded: a flag's default, which argparse reads through the
    flag's type (types.path: `~` expanded, an unknown ~user refused as a usage error naming the flag)."""
    variable, default = FOLDER_VARIABLES[folder]
    return environ.get(variable) or default


def default_results_dir(environ=os.environ) -> Path:
    return user_path(default_folder_text("results", environ))


def add_location_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """The folder flags `names` (of jobs, results, clusters, data), in that order: each only on a command
    that reads it (tests/test_cli.py checks every flag reaches its handler)."""
    unknown = set(names) - {"jobs", "results", "clusters", "data"}
    assert not unknown, unknown
    if "jobs" in names:
        parser.add_argument("--jobs", type=path_flag, default=default_folder_text("jobs"),
                            help="experiments folder (default jobs/)")
    if "results" in names:
        parser.add_argument("--results", type=path_flag, default=default_folder_text("results"),
                            help="results folder (default results/)")
    if "clusters" in names:
        parser.add_argument("--clusters", type=path_flag, default=default_folder_text("clusters"),
                            help="cluster profiles folder (default slurm/clusters/)")
    if "data" in names:
        parser.add_argument("--data", type=path_flag, default=None, help="the corpus's folder (default: its variable, "
                            f"{CORPUS_VARIABLES}, else data/<corpus>)")


def add_override_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="override a jobs-file key in every setting (repeatable); a comma list adds a grid "
                             "axis; seeds=1111,1,2 sets the seeds. Validated like the jobs file, and part of the "
                             "run names (e.g. --set num_epochs=40 -> ..._ep40)")


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """How `samples` and `generate` pick each next word (report.samples.Decoding; --seed is each command's)."""
    parser.add_argument("--temperature", type=temperature, default=0.0, help="0 = greedy (default); > 0 samples")
    parser.add_argument("--top-k", type=count, default=0, help="sample among the k most probable words (0 = all)")
    parser.add_argument("--no-unk", action="store_true", help="never generate <unk> (greedy and sampled alike)")


def decoding_from_args(args: argparse.Namespace):
    """The report.samples.Decoding of add_decoding_flags and --seed."""
    from ..report.samples import Decoding  # imports torch: only when the command runs

    return Decoding(args.temperature, args.top_k, args.seed, args.no_unk)
