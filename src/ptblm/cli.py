"""The `ptblm` command line: each command parses flags and calls one plain, importable function."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import threading
from pathlib import Path

from . import __version__
from .completion import SUGGESTIONS
from .config import CHOICES, MAX_SEED, MODELS, PRECISIONS, ConfigError, RunConfig
from .corpora import CORPORA, DEFAULT_CORPUS
from .errors import UserError

CORPUS_VARIABLES = " or ".join(f"${entry.env_var}" for entry in CORPORA.values())  # each names its corpus's folder
# The scaffold's run_exp.py defaults for the flags a setting must have (the course passes them all).
SCAFFOLD_DEFAULTS = {"model": "GRU", "optimizer": "SGD_LR_SCHEDULE", "initial_lr": 20.0, "batch_size": 20,
                     "hidden_size": 200, "num_layers": 2, "dp_keep_prob": 0.35, "num_epochs": 40}
FLAG_HELP = {
    "model": f"{', '.join(MODELS[:-1])} or {MODELS[-1]}", "optimizer": "SGD, SGD_LR_SCHEDULE or ADAM",
    "hidden_size": "hidden units (n_units for the TRANSFORMER)", "num_layers": "layers (blocks for the TRANSFORMER)",
    "dp_keep_prob": "dropout keep probability",
    "corpus": f"the corpus to train on: {', '.join(CORPORA)} (its files: --data, else {CORPUS_VARIABLES}, else "
              f"data/<corpus>)",
    "save_best": "also write best_params.pt, the raw state_dict (best.pt is always written)",
    "evaluate": "also report test perplexity of the best weights",
    "debug": "the scaffold's: one epoch, a tiny TRANSFORMER (16 units, 2 blocks), every step logged",
    "log_steps": "log the loss of every step",
    "max_batches": "cap batches per epoch (0 = whole split)", "impl": "fast (default) or reference (plain loops)",
    "attention": "scratch (default) or fused (scaled_dot_product_attention)",
    "precision": "fp32 (strict, default), tf32 (TF32 matmuls on CUDA) or bf16 (autocast)",
    "device": "auto, cpu or cuda",
    "cuda_graph": "auto (capture each step in a CUDA graph on CUDA), on or off",
    "compile": "off, model (the whole model under torch.compile) or cell (only a recurrent model's time step); "
               "cached in <results>/.compile-cache",
    "deterministic": "torch.use_deterministic_algorithms (and CUBLAS_WORKSPACE_CONFIG=:4096:8): bit-equal "
                     "reruns, slower; an operation without a deterministic version stops the run",
}


def default_results_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_RESULTS", "results"))


def default_jobs_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_JOBS", "jobs"))


def finite_float(text: str) -> float:
    """Every float flag: a finite number (argparse turns the error into one line, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; valid: e.g. 0.7") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; valid: e.g. 0.7") from None
    return value


def bounded(kind, noun: str, valid: str, minimum: float, maximum: float = math.inf, above: bool = False):
    """An argparse type: `kind` (finite_float or int) in [minimum, maximum] ((minimum, maximum] with above);
    its one-line error says the text is not `noun`, and what is `valid`."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, argparse.ArgumentTypeError):
            value = None
        if value is None or not minimum <= value <= maximum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; valid: {valid}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


temperature = bounded(finite_float, "a temperature", "0 (greedy) or a finite number > 0, e.g. 0.7", 0)
perplexity = bounded(finite_float, "a perplexity", "a finite number > 0, e.g. 200", 0, above=True)
count = bounded(int, "a count", "an integer >= 0", 0)
positive = bounded(int, "a positive integer", "1 or more", 1)
seed = bounded(int, "a seed", f"an integer from 0 to {MAX_SEED}", 0, MAX_SEED)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, spelled as in the scaffold (--initial_lr, --save_best, ...)."""
    for field in dataclasses.fields(RunConfig):
        flag = f"--{field.name}"
        default = SCAFFOLD_DEFAULTS.get(field.name, field.default)
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", help=FLAG_HELP.get(field.name))
        else:
            kind = {"int": int, "float": finite_float, "str": str}[field.type]
            action = parser.add_argument(flag, type=kind, default=default,
                                         help=f"{FLAG_HELP.get(field.name, '')} (default {default})".strip())
            setattr(action, SUGGESTIONS, CHOICES.get(field.name))  # for shell completion; RunConfig checks them


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    if args.dry_run:
        values.update(num_epochs=1, max_batches=2)
    return RunConfig.from_dict(values, where="command line")


def cmd_train(args: argparse.Namespace) -> int:
    from . import corpora
    from .layout import manual_run_dir
    from .run_inputs import run_inputs
    from .runfolder import DONE, DIVERGED
    from .stopping import stop_on_signals
    from .train import train_run

    config = config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="ptblm-dry-run-") as scratch:
        inputs = run_inputs(corpora.get(config.corpus), args.data, default_results_dir(), os.environ,
                            synthetic_dir=Path(scratch) / "data" if args.dry_run else None)
        if args.out:
            out = args.out
        elif args.save_dir:  # run_exp.py's: the parent of the run folder
            out = args.save_dir / config.run_name()
        else:
            out = Path(scratch) / "run" if args.dry_run else manual_run_dir(default_results_dir(), config.run_name())
        # SIGTERM, SIGHUP (a closed terminal) and Ctrl-C end the run `cancelled` after the current batch
        with stop_on_signals(threading.Event()) as stop:
            status = train_run(config, inputs.data_dir, out, force=args.force, command_line=sys.argv,
                               should_stop=stop.is_set, **inputs.train_kwargs())
    return 0 if status.state in (DONE, DIVERGED) else 1


def cmd_data(args: argparse.Namespace) -> int:
    from . import corpora
    from .data import download_corpus
    from .layout import output_dir

    corpus = corpora.get(args.corpus)
    dest = output_dir(args.dest or corpora.default_data_dir(corpus), "--dest")
    for path in download_corpus(corpus, dest):
        print(f"{path}: ok (checksums verified)")
    print(f"use it with: export {corpus.env_var}={Path(dest).resolve()}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from . import corpora
    from .data import write_synthetic_corpus
    from .layout import output_dir

    dest = output_dir(args.dest, "its DEST argument")
    print(f"wrote {write_synthetic_corpus(dest, seed=args.seed, corpus=corpora.get(args.corpus))}")
    return 0


DEFAULT_PROFILE = "local"  # a workstation, or the dev cluster (slurm/dev-cluster.sh)


def default_clusters_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_CLUSTERS", "slurm/clusters"))


def experiments_and_profile(args: argparse.Namespace):
    """Every named experiment (`all` expanded) and the profile, all validated, --set overrides included,
    before anything is submitted."""
    from .clusters import load_profile
    from .jobs import experiment_names, load_experiment, only_settings, parse_overrides

    overrides = parse_overrides(args.set)
    names = experiment_names(args.experiments, args.jobs)
    if args.only and len(names) != 1:
        raise ConfigError(f"--only {','.join(args.only)} picks settings of one experiment, but {len(names)} are "
                          f"named ({', '.join(names)}); valid: one experiment with --only")
    experiments = [only_settings(load_experiment(name, args.jobs, overrides), args.only) for name in names]
    return experiments, load_profile(args.cluster or DEFAULT_PROFILE, args.clusters)


def add_override_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="override a jobs-file key in every setting (repeatable); a comma list adds a grid "
                             "axis; seeds=1111,1,2 sets the seeds. Validated like the jobs file, and part of the "
                             "run names (e.g. --set num_epochs=40 -> ..._ep40)")


def cmd_submit(args: argparse.Namespace) -> int:
    from .launch.pipeline import submit_experiment

    experiments, profile = experiments_and_profile(args)
    outcomes = [submit_experiment(experiment, profile, results_dir=args.results, data_dir=args.data,
                                  environ=os.environ, dry_run=args.dry_run, force=args.force, executor=args.executor,
                                  profile_chosen=args.cluster is not None, ptblm=invoked_as())
                for experiment in experiments]  # one array (one lock, one plan table) each
    return failed_settings(outcomes, "submit")


def failed_settings(outcomes, command: str) -> int:
    """Local runs wait for their tasks: 1 when any setting failed (`make submit && make report` stops), each
    failure's error line repeated on stderr."""
    failures = [f"{outcome.experiment} {line}" for outcome in outcomes for line in outcome.failures]
    if not failures:
        return 0
    ran = sum(task.runs for outcome in outcomes for task in outcome.plan)
    print(f"ptblm {command}: error: {len(failures)} of {ran} settings failed:", *failures, sep="\n  ",
          file=sys.stderr)
    return 1


def cmd_sbatch(args: argparse.Namespace) -> int:
    from .launch.pipeline import submit_sbatch

    experiments, profile = experiments_and_profile(args)
    for experiment in experiments:
        submit_sbatch(experiment, profile, results_dir=args.results, data_dir=args.data, environ=os.environ,
                      script=args.script, dry_run=args.dry_run, force=args.force,
                      profile_chosen=args.cluster is not None, ptblm=invoked_as())
    return 0


def invoked_as() -> str:
    """How the user ran this ptblm (`.venv/bin/ptblm` after `make setup`), for the commands it suggests."""
    from .invocation import ptblm_command

    return ptblm_command(sys.argv[0], os.environ, Path.cwd())


def cmd_image(args: argparse.Namespace) -> int:
    from .images import build_image

    build_args = dict(pair.partition("=")[::2] for pair in args.build_arg)
    build_image(args.tag, Path("docker/Dockerfile"), Path("."), engine=args.engine, base=args.base,
                build_args=build_args)
    if args.engine == "podman":
        print(f"built {args.tag} in podman's storage; set `container: {args.tag}` and `container_runtime: podman` "
              f"in a cluster profile to run jobs inside it")
    else:
        print(f"built {args.tag}; next: `make sif` here, or `docker save {args.tag} -o ptblm.tar` and "
              f"`make sif FROM_TAR=ptblm.tar` where Apptainer is")
    return 0


def cmd_sif(args: argparse.Namespace) -> int:
    from .images import build_sif

    from .layout import output_dir

    output_dir(args.out.resolve().parent, "--out")
    build_sif(args.out, args.from_tar or args.tag, Path("docker/ptblm.def"))
    print(f"wrote {args.out}; copy it to the cluster and set `container: /path/to/{args.out.name}` in its profile")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .jobs import experiment_names, parse_overrides
    from .status import Locations, status_report

    where = Locations(invoked_as(), None if args.results == Path("results") else args.results,  # for resume
                      None if args.jobs == Path("jobs") else args.jobs)  # commands: the folders named, if not default
    print(status_report(args.results, args.jobs, experiment_names(args.experiments, args.jobs),
                        overrides=parse_overrides(args.set), where=where))
    return 0


def cmd_run_setting(args: argparse.Namespace) -> int:
    from .launch.sbatch import run_setting
    from .runfolder import CANCELLED, DIVERGED, DONE

    state = run_setting(args.old_pinned or args.pinned, args.task, os.environ, here=args.here)
    return 0 if state in (DONE, DIVERGED, CANCELLED) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The smoke experiment into results/demo/ (apart from the suite's own results), then its results table."""
    from . import corpora
    from .clusters import load_profile
    from .data import write_synthetic_corpus
    from .jobs import load_experiment
    from .launch.pipeline import submit_experiment
    from .layout import demo_results_dir, output_dir
    from .report.summary import load_summaries
    from .report.tables import markdown_table

    demo_dir = output_dir(demo_results_dir(args.results), "--results")
    experiment = load_experiment("smoke", args.jobs)
    corpus = corpora.get(experiment.settings[0].config.corpus)
    data_dir = args.data or corpora.configured_data_dir(corpus, os.environ)
    if data_dir is None:
        data_dir = write_synthetic_corpus(demo_dir / "data", corpus=corpus)
        print(f"no {corpus.env_var} set: using the synthetic corpus written to {data_dir}")
    outcome = submit_experiment(experiment, load_profile(DEFAULT_PROFILE, args.clusters), results_dir=demo_dir,
                                data_dir=data_dir, executor="local")
    print(f"\n{markdown_table(load_summaries(demo_dir))}\n\nrun folders in {demo_dir}/smoke/")
    return failed_settings([outcome], "demo")


def add_location_flags(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--jobs", type=Path, default=default_jobs_dir(), help="experiments folder (default jobs/)")
    parser.add_argument("--results", type=Path, default=default_results_dir(), help="results folder (default results/)")
    parser.add_argument("--clusters", type=Path, default=default_clusters_dir(),
                        help="cluster profiles folder (default slurm/clusters/)")
    if data:
        parser.add_argument("--data", type=Path, default=None, help="the corpus's folder (default: its variable, "
                            f"{CORPUS_VARIABLES}, else data/<corpus>)")


def report_dir(args: argparse.Namespace) -> Path:
    """--out, or <results>/report: made and checked before anything is computed."""
    from .layout import output_dir, report_dir as results_report_dir

    return output_dir(args.out or results_report_dir(args.results), "--out" if args.out else "--out (or --results)")


def cmd_tables(args: argparse.Namespace) -> int:
    from .report.summary import experiment_descriptions, load_summaries
    from .report.tables import markdown_table, write_tables

    summaries = load_summaries(args.results, args.experiments)
    written = write_tables(summaries, report_dir(args), experiment_descriptions(summaries))
    print(markdown_table(summaries))
    print(f"\nwrote {len(written)} files to {written[0].parent}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from .report.figures import write_figures
    from .report.summary import load_summaries

    for path in write_figures(load_summaries(args.results, args.experiments), report_dir(args)):
        print(f"wrote {path}")
    return 0


def analysed_models(args: argparse.Namespace, batch_size: int | None = None):
    """The models of --rnn/--gru/--lstm (report.trained.ANALYSED: defaults 3.1 and 3.2, setting 0; the LSTM when
    there is one); --data, or their corpus's variable (PTB_DIR, ...), overrides the data folder they recorded."""
    from .report.trained import ANALYSED, load_analysed

    named = {analysed.model: getattr(args, analysed.model.lower()) for analysed in ANALYSED}
    return load_analysed(named, args.results, args.data, batch_size, environ=os.environ)


def cmd_gradients(args: argparse.Namespace) -> int:
    from .report.gradients import describe, write_gradients

    models = analysed_models(args)
    for model in models:
        print(f"loaded {model.describe()}")
    written = write_gradients(models, report_dir(args), hidden=args.hidden, seed=args.seed)
    print(describe(next(path for path in written if path.suffix == ".json")))
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from .report.samples import PER_LENGTH, Decoding, write_samples

    models = analysed_models(args, batch_size=PER_LENGTH)
    for model in models:
        print(f"loaded {model.describe()}")
    written = write_samples(models, report_dir(args), Decoding(args.temperature, args.top_k, args.seed, args.no_unk))
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report.document import write_report
    from .report.latex import INSTALL_HINT, LatexError, compile_pdf, latex_engine
    from .report.summary import experiment_descriptions, load_summaries

    summaries = load_summaries(args.results, args.experiments)
    report = write_report(summaries, report_dir(args), experiment_descriptions(summaries), args.results,
                          threshold=args.threshold)
    print((report.tex.parent / "facts.md").read_text())
    for item in report.missing:
        print(f"not in the report yet: {item}")
    print(f"wrote {report.tex}")
    if args.no_pdf:
        return 0
    if latex_engine() is None:
        print(INSTALL_HINT)
        return 0
    try:
        print(f"wrote {compile_pdf(report.tex)}")
    except LatexError as error:
        print(f"ptblm report: error: {error}", file=sys.stderr)
        return 1
    return 0


def add_report_flags(parser: argparse.ArgumentParser, models: bool = False) -> None:
    """--out for every report command; --rnn/--gru/--lstm/--seed for the two that load trained models."""
    add_location_flags(parser, data=False)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default <results>/report)")
    if not models:
        parser.add_argument("experiments", nargs="*", help="only these experiments (default: every one in results/ "
                            "but manual/, the runs of `ptblm train`)")
    if models:
        parser.add_argument("--data", type=Path, default=None, help="data folder to rebuild the vocabulary from "
                            "(default: the run's corpus's variable, e.g. $PTB_DIR, else the folder each run "
                            "recorded in config.json)")
        from .report.trained import ANALYSED  # torch-free

        for run in ANALYSED:
            optional = "" if run.required else f"; without any {run.model} run, none"
            parser.add_argument(run.flag, type=Path, default=None, metavar="DIR",
                                help=f"{run.model} run folder (default: setting {run.setting_index} of "
                                     f"{run.experiment}; until it is trained, the {run.model} run with the lowest "
                                     f"best valid ppl{optional})")
        parser.add_argument("--seed", type=seed, default=0, help="seeds the minibatch / the start words (default 0)")


class OneLineErrorParser(argparse.ArgumentParser):
    """A bad flag is one line that names it, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


EXPORT_DIRS = {"csv": "data", "course": "course"}  # under <results>/report/


def cmd_export(args: argparse.Namespace) -> int:
    from .course_files import write_course_exports
    from .layout import output_dir
    from .layout import report_dir as results_report_dir
    from .results import damage_notes, load_runs, write_csv

    runs = load_runs(args.results, args.experiments)
    out = output_dir(args.out or results_report_dir(args.results) / EXPORT_DIRS[args.format],
                     "--out" if args.out else "--out (or --results)")
    if args.format == "csv":
        written = write_csv(runs, out)
        for note in damage_notes(runs):
            print(note)
    else:
        written = write_course_exports(runs, out)
    print(f"{len(runs)} runs: wrote {len(written)} files to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import corpora
    from .bench import bench_command
    from .compiling import compile_cache_dir

    from .layout import bench_dir, output_dir

    out = output_dir(args.out or bench_dir(default_results_dir()), "--out")
    bench_command(args.full, args.only, args.device, args.jobs, out,
                  args.precision, args.warmup, args.steps,
                  compile_cache=compile_cache_dir(default_results_dir()) if args.compile else None,
                  runs_per_gpu=args.runs_per_gpu, corpus=corpora.get(args.corpus))
    return 0


# --- watching and using runs: tensorboard, evaluate, generate -----------------------------------------

def cmd_tensorboard(args: argparse.Namespace) -> int:
    import socket

    from .tensorboard_server import reachable_name, serve

    serve(args.results, args.experiments, environ=os.environ,
          hostname=reachable_name(socket.gethostname(), socket.getfqdn()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_targets

    evaluate_targets(args.runs, args.results, args.data, args.device, again=args.again, environ=os.environ)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .evaluation import run_folder_named
    from .report.samples import Decoding, continue_run

    folder = run_folder_named(args.run, args.results)
    decoding = Decoding(args.temperature, args.top_k, args.seed, args.no_unk)
    result = continue_run(folder, args.prompt, args.length, decoding, args.data, environ=os.environ)
    if result.unknown:
        print(f"note: not in the vocabulary of {folder}, read as <unk>: {' '.join(result.unknown)}")
    print(f"[{' '.join(result.prompt)}] {' '.join(result.words)}")
    return 0


def add_run_commands(commands) -> None:
    tensorboard = commands.add_parser("tensorboard", help="TensorBoard on the runs' event files, on a free port of "
                                      "127.0.0.1, with the ssh -L line that shows it from a laptop")
    tensorboard.add_argument("experiments", nargs="*", help="only these experiments (default: every one in results/)")
    tensorboard.add_argument("--results", type=Path, default=default_results_dir(),
                             help="results folder (default results/)")
    tensorboard.set_defaults(handler=cmd_tensorboard)

    evaluate = commands.add_parser("evaluate", help="test perplexity of the best weights of finished runs, into "
                                   "their curves.json")
    evaluate.add_argument("runs", nargs="+", metavar="RUN|EXP", help="run folders (a path or EXP/RUN) or experiments")
    evaluate.add_argument("--again", action="store_true", help="also the runs that have a test perplexity")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="auto (CUDA when torch sees it; default), cpu or cuda")
    evaluate.set_defaults(handler=cmd_evaluate)

    generate = commands.add_parser("generate", help="continue a prompt with a recurrent run's best weights (RNN, "
                                   "GRU, LSTM)")
    generate.add_argument("run", metavar="RUN", help="run folder (a path or EXP/RUN)")
    generate.add_argument("--prompt", required=True, help="words to continue, e.g. 'the company said'")
    generate.add_argument("--length", type=positive, default=35, help="words to generate (default 35)")
    generate.add_argument("--temperature", type=temperature, default=0.0, help="0 = greedy (default); > 0 samples")
    generate.add_argument("--top-k", type=count, default=0, help="sample among the k most probable words (0 = all)")
    generate.add_argument("--no-unk", action="store_true", help="never generate <unk>")
    generate.add_argument("--seed", type=seed, default=0, help="seeds the sampling (default 0)")
    generate.set_defaults(handler=cmd_generate)
    for command in (evaluate, generate):
        command.add_argument("--data", type=Path, default=None,
                             help="data folder (default: the run's corpus's variable, e.g. $PTB_DIR, else the "
                                  "folder the run recorded in config.json)")
        command.add_argument("--results", type=Path, default=default_results_dir(),
                             help="results folder, for EXP/RUN and EXP (default results/)")


def cmd_completion(args: argparse.Namespace) -> int:
    from .completion import completion_script

    print(completion_script(args.shell, build_parser()), end="")
    return 0


EXIT_CODES = ("exit status: 0 done; 1 an error to act on (one line naming the file, flag or value), or a local "
              "run that failed; 2 a usage error; anything else is a bug and keeps its traceback")


def launch_flags() -> argparse.ArgumentParser:
    """What `ptblm submit` and `ptblm sbatch` share: the experiments, the profile, the plan's flags, --set and
    --only, and where jobs, results and data are."""
    launch = argparse.ArgumentParser(add_help=False)
    launch.add_argument("experiments", nargs="+", metavar="experiment", help=EXPERIMENTS_HELP)
    launch.add_argument("--cluster", default=os.environ.get("CLUSTER") or None,
                        help=f"cluster profile slurm/clusters/<name>.yaml (default $CLUSTER, else {DEFAULT_PROFILE}, "
                             f"which a Slurm cluster other than the dev cluster refuses)")
    launch.add_argument("--dry-run", action="store_true", help="print the plan and its cost (resources, projected "
                        "time from results/bench/*.json, GPU-hours), and for sbatch its command; submit nothing")
    launch.add_argument("--force", action="store_true", help="rerun finished settings from scratch")
    add_override_flag(launch)
    launch.add_argument("--only", action="append", default=[], metavar="SETTING[,SETTING...]",
                        help="only these settings of the experiment: numbers (0,2 or 0-3) or run names, as the plan "
                             "lists them (repeatable)")
    add_location_flags(launch)
    return launch


EXPERIMENTS_HELP = ("jobs/<experiment>.yaml, e.g. 3.1, or a path to a YAML file; several (one array each), or all: "
                    "every jobs file but the examples (example-*) and the smoke test")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="ptblm", description=__doc__, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"ptblm {__version__}",
                        help="print ptblm's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one setting into a run folder (resumes; the scaffold's flags)")
    add_setting_flags(train)
    train.add_argument("--data", type=Path, default=None, help="the corpus's folder, e.g. with ptb.{train,valid,test}"
                       f".txt (default: its variable, {CORPUS_VARIABLES}, else data/<corpus>; SLURM_TMPDIR: "
                       "the copy in $SLURM_TMPDIR, as in run_exp.py)")
    train.add_argument("--out", type=Path, default=None, help="run folder (default results/manual/<run name>)")
    train.add_argument("--save_dir", type=Path, default=None, help="run_exp.py's: the folder to put the run folder "
                       "<save_dir>/<run name> in (--out names the run folder itself)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder is finished")
    train.add_argument("--dry-run", action="store_true", help="one epoch of two batches in a temporary folder "
                       "(synthetic data when the corpus is not configured)")
    train.set_defaults(handler=cmd_train)

    data = commands.add_parser("data", help="download a corpus (PTB unless --corpus) and verify its checksums")
    data.add_argument("--corpus", choices=tuple(CORPORA), default=DEFAULT_CORPUS,
                      help=f"which corpus (default {DEFAULT_CORPUS})")
    data.add_argument("--dest", type=Path, default=None, help="folder to put its three files in (default "
                      "data/<corpus>)")
    data.set_defaults(handler=cmd_data)

    synthetic = commands.add_parser("synthetic", help="write a small seeded corpus in PTB's format (offline demos, "
                                    "tests)")
    synthetic.add_argument("dest", type=Path, help="folder to write the corpus's three files into")
    synthetic.add_argument("--seed", type=seed, default=0, help="seeds the generated text (default 0)")
    synthetic.add_argument("--corpus", choices=tuple(CORPORA), default=DEFAULT_CORPUS,
                           help=f"whose file names to write (default {DEFAULT_CORPUS})")
    synthetic.set_defaults(handler=cmd_synthetic)

    launch = launch_flags()
    submit = commands.add_parser("submit", parents=[launch],
                                 help="submit an experiment as one Slurm array (local processes without Slurm)")
    submit.add_argument("--executor", choices=("auto", "slurm", "local"), default="auto",
                        help="auto = Slurm when a cluster answers sinfo, else local processes")
    submit.set_defaults(handler=cmd_submit)

    sbatch = commands.add_parser("sbatch", parents=[launch],
                                 help="submit an experiment through slurm/array.sbatch (no submitit)")
    sbatch.add_argument("--script", type=Path, default=Path("slurm/array.sbatch"),
                        help="the job script each array task runs (default slurm/array.sbatch)")
    sbatch.set_defaults(handler=cmd_sbatch)

    from .images import IMAGE_TAG

    image = commands.add_parser("image", help="docker (or podman) build of docker/Dockerfile")
    image.add_argument("--tag", default=IMAGE_TAG, help=f"the image's name (default {IMAGE_TAG})")
    image.add_argument("--engine", choices=("docker", "podman"), default="docker",
                       help="which builds it (default docker)")
    image.add_argument("--base", help="podman: this image in place of the Dockerfile's FROM (e.g. a stand-in base)")
    image.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="e.g. BASE_TORCH=2.13.0 for a base with another torch")
    image.set_defaults(handler=cmd_image)
    sif = commands.add_parser("sif", help="Apptainer .sif from the Docker image or a saved tar (runs its %%test)")
    sif.add_argument("--from-tar", type=Path, help="a `docker save` tar built elsewhere")
    sif.add_argument("--tag", default=IMAGE_TAG,
                     help=f"the Docker image to convert, without --from-tar (default {IMAGE_TAG})")
    sif.add_argument("--out", type=Path, default=Path("ptblm.sif"), help="the .sif to write (default ptblm.sif)")
    sif.set_defaults(handler=cmd_sif)

    status = commands.add_parser("status", help="a table per experiment from the run folders")
    status.add_argument("experiments", nargs="*", help="experiments, or all (every jobs file but the examples "
                        "and the smoke test); default: every one with results")
    status.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="as given to submit: the settings not submitted yet are listed with these overrides")
    add_location_flags(status, data=False)
    status.set_defaults(handler=cmd_status)

    run_setting = commands.add_parser("run-setting", help="run one task of an array `ptblm sbatch` submitted "
                                      "(what slurm/array.sbatch runs)")
    run_setting.add_argument("pinned", type=Path, help="the pinned file `ptblm sbatch` wrote "
                             "(results/<exp>/logs/pinned-*.json): each task's setting, the data, how to start ptblm")
    run_setting.add_argument("task", type=int, help="$SLURM_ARRAY_TASK_ID, the setting's number")
    run_setting.add_argument("--here", action="store_true", help="run in this process as it is (run-setting runs "
                             "itself so once the profile's setup lines and container apply)")
    run_setting.add_argument("--pinned", dest="old_pinned", type=Path, default=None,
                             help="the pinned file, as an array queued by an older ptblm passes it (its first "
                                  "argument is then the experiment's name)")
    run_setting.set_defaults(handler=cmd_run_setting)

    demo = commands.add_parser("demo", help="the smoke experiment on this machine into results/demo/ "
                               "(synthetic data without PTB_DIR), then its results table")
    add_location_flags(demo)
    demo.set_defaults(handler=cmd_demo)

    tables = commands.add_parser("tables", help="LaTeX and Markdown tables of every run (into results/report/tables)")
    add_report_flags(tables)
    tables.set_defaults(handler=cmd_tables)

    figures = commands.add_parser("figures", help="perplexity curves per experiment (into results/report/figures)")
    add_report_flags(figures)
    figures.set_defaults(handler=cmd_figures)

    gradients = commands.add_parser("gradients", help="dL_T/dh_t against t for the RNN and the GRU "
                                    "(into results/report/gradients)")
    add_report_flags(gradients, models=True)
    gradients.add_argument("--hidden", choices=("top", "each", "all"), default="top",
                           help="which hidden state: the top layer's (default), each layer's, all layers concatenated")
    gradients.set_defaults(handler=cmd_gradients)

    samples = commands.add_parser("samples",
                                  help="40 generated sequences and appendix.tex (into results/report/samples)")
    add_report_flags(samples, models=True)
    samples.add_argument("--temperature", type=temperature, default=0.0, help="0 = greedy (default); > 0 samples")
    samples.add_argument("--top-k", type=count, default=0, help="sample among the k most probable tokens (0 = all)")
    samples.add_argument("--no-unk", action="store_true", help="never generate <unk> (greedy and sampled alike)")
    samples.set_defaults(handler=cmd_samples)

    report = commands.add_parser("report", help="report.tex with every table, figure and fact, and its PDF")
    add_report_flags(report)
    report.add_argument("--threshold", type=perplexity, default=None,
                        help="perplexity for 'time to reach' (default: 2 x the best of each architecture)")
    report.add_argument("--no-pdf", action="store_true", help="write report.tex only")
    report.set_defaults(handler=cmd_report)
    export = commands.add_parser("export", help="the run folders as data: runs.csv and epochs.csv (default), or "
                                 "per run the course's learning_curves.npy, best_params.pt, exp_config.txt")
    export.add_argument("experiments", nargs="*", help="only these experiments (default: every one in results/)")
    export.add_argument("--format", choices=tuple(EXPORT_DIRS), default="csv",
                        help="csv (runs.csv, epochs.csv; default) or course (the scaffold's files per run)")
    export.add_argument("--out", type=Path, default=None,
                        help="folder (default <results>/report/data for csv, <results>/report/course for course)")
    export.add_argument("--results", type=Path, default=default_results_dir(), help="results folder (default results/)")
    export.set_defaults(handler=cmd_export)
    bench = commands.add_parser("bench", help="time one training step per model and shape: this project's path, "
                                "its reference loops and PyTorch's built-in (JSON into results/bench)")
    bench.add_argument("--full", action="store_true", help="the course suite's 11 shapes (default: 3 small ones)")
    bench.add_argument("--only", nargs="+", default=None, metavar="NAME",
                       help="cases whose name contains NAME, e.g. --full --only gru-h512-l2")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto (CUDA when torch sees it; default), cpu or cuda")
    bench.add_argument("--corpus", choices=tuple(CORPORA), default=DEFAULT_CORPUS,
                       help=f"time the steps at this corpus's vocabulary and project its epochs, for the cost "
                            f"estimate of its settings (default {DEFAULT_CORPUS})")
    bench.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32 (strict), tf32 (TF32 matmuls on CUDA) or bf16 (autocast); as ptblm train")
    bench.add_argument("--compile", action="store_true", help="also time the compiled paths (whole model; a "
                       "recurrent model's time step), compile time apart (cached in <results>/.compile-cache)")
    bench.add_argument("--runs-per-gpu", type=positive, default=1, metavar="K",
                       help="also time K processes at once on the device, as a profile's runs_per_gpu packs runs")
    bench.add_argument("--steps", type=positive, default=None,
                       help="timed steps per path (default 50 on GPU, 10 on CPU)")
    bench.add_argument("--warmup", type=count, default=None,
                       help="untimed steps first, graph capture included (default 5 on GPU, 2 on CPU)")
    bench.add_argument("--jobs", type=Path, default=default_jobs_dir(),
                       help="experiments folder for --full (default jobs/)")
    bench.add_argument("--out", type=Path, default=None, help="folder for bench-<time>.json (default results/bench)")
    bench.set_defaults(handler=cmd_bench)
    add_run_commands(commands)

    from .completion import SHELLS

    completion = commands.add_parser("completion", help="print a shell completion script: eval \"$(.venv/bin/ptblm "
                                     "completion bash)\" (or zsh) in your shell's rc file")
    completion.add_argument("shell", choices=SHELLS, help="bash or zsh")
    completion.set_defaults(handler=cmd_completion)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The exit-code rule: 0 done; 1 a UserError (one line naming the file, flag or value) or a task that
    failed; 2 a usage error (argparse's); anything else is a bug or the machine's, and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"ptblm {args.command}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ptblm submit 3.1 --dry-run | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a run (a training run handles it itself: cancelled, resumable)
        print(f"ptblm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
