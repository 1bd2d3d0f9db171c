"""The `ptblm` command line: each command parses flags and calls one plain, importable function."""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .config import PRECISIONS, RunConfig

# The scaffold's run_exp.py defaults for the flags a setting must have (the course passes them all).
SCAFFOLD_DEFAULTS = {"model": "GRU", "optimizer": "SGD_LR_SCHEDULE", "initial_lr": 20.0, "batch_size": 20,
                     "hidden_size": 200, "num_layers": 2, "dp_keep_prob": 0.35, "num_epochs": 40}
FLAG_HELP = {
    "model": "RNN, GRU or TRANSFORMER", "optimizer": "SGD, SGD_LR_SCHEDULE or ADAM",
    "hidden_size": "hidden units (n_units for the TRANSFORMER)", "num_layers": "layers (blocks for the TRANSFORMER)",
    "dp_keep_prob": "dropout keep probability",
    "save_best": "also write best_params.pt, the raw state_dict (best.pt is always written)",
    "evaluate": "also report test perplexity of the best weights",
    "debug": "the scaffold's: one epoch, a tiny TRANSFORMER (16 units, 2 blocks), every step logged",
    "log_steps": "log the loss of every step",
    "max_batches": "cap batches per epoch (0 = whole split)", "impl": "fast (default) or reference (plain loops)",
    "attention": "scratch (default) or fused (scaled_dot_product_attention)",
    "precision": "fp32 (strict, default), tf32 (TF32 matmuls on CUDA) or bf16 (autocast)",
    "device": "auto, cpu or cuda",
    "cuda_graph": "auto (capture each step in a CUDA graph on CUDA), on or off",
    "compile": "off, model (the whole model under torch.compile) or cell (only the RNN/GRU time step); "
               "cached in <results>/.compile-cache",
}


def default_data_dir(environ=os.environ) -> Path:
    return configured_data_dir(environ) or Path("data/ptb")


def configured_data_dir(environ=os.environ) -> Path | None:
    """$PTB_DIR when the user set it; None lets a command choose its own fallback."""
    return Path(environ["PTB_DIR"]) if environ.get("PTB_DIR") else None


def default_results_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_RESULTS", "results"))


def default_jobs_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_JOBS", "jobs"))


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, spelled as in the scaffold (--initial_lr, --save_best, ...)."""
    for field in dataclasses.fields(RunConfig):
        flag = f"--{field.name}"
        default = SCAFFOLD_DEFAULTS.get(field.name, field.default)
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", help=FLAG_HELP.get(field.name))
        else:
            kind = {"int": int, "float": float, "str": str}[field.type]
            parser.add_argument(flag, type=kind, default=default,
                                help=f"{FLAG_HELP.get(field.name, '')} (default {default})".strip())


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    if args.dry_run:
        values.update(num_epochs=1, max_batches=2)
    return RunConfig.from_dict(values, where="command line")


def cmd_train(args: argparse.Namespace) -> int:
    from .compiling import compile_cache_dir
    from .data import slurm_tmpdir_data, write_synthetic_corpus
    from .layout import manual_run_dir
    from .provenance import slurm_task_id
    from .runfolder import DONE, DIVERGED
    from .stopping import stop_on_signals
    from .train import train_run

    config = config_from_args(args)
    scratch_dir = os.environ.get("SLURM_TMPDIR")
    with tempfile.TemporaryDirectory(prefix="ptblm-dry-run-") as scratch:
        data_dir = args.data or default_data_dir()
        if str(args.data) == "SLURM_TMPDIR":  # run_exp.py's spelling: the copy already on the node
            data_dir, scratch_dir = slurm_tmpdir_data(scratch_dir), None
        if args.dry_run and args.data is None and configured_data_dir() is None and not data_dir.exists():
            data_dir = write_synthetic_corpus(Path(scratch) / "data")
        if args.out:
            out = args.out
        elif args.save_dir:  # run_exp.py's: the parent of the run folder
            out = args.save_dir / config.run_name()
        else:
            out = Path(scratch) / "run" if args.dry_run else manual_run_dir(default_results_dir(), config.run_name())
        # SIGTERM, SIGHUP (a closed terminal) and Ctrl-C end the run `cancelled` after the current batch
        with stop_on_signals(threading.Event()) as stop:
            status = train_run(config, data_dir, out, force=args.force, command_line=sys.argv,
                               scratch_dir=scratch_dir, compile_cache=compile_cache_dir(default_results_dir()),
                               slurm_job_id=slurm_task_id(os.environ), should_stop=stop.is_set)
    return 0 if status.state in (DONE, DIVERGED) else 1


def cmd_data(args: argparse.Namespace) -> int:
    from .data import download_ptb

    for path in download_ptb(args.dest):
        print(f"{path}: ok (MD5 verified)")
    print(f"use it with: export PTB_DIR={Path(args.dest).resolve()}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from .data import write_synthetic_corpus

    print(f"wrote {write_synthetic_corpus(args.dest, seed=args.seed)}")
    return 0


def default_clusters_dir(environ=os.environ) -> Path:
    return Path(environ.get("PTBLM_CLUSTERS", "slurm/clusters"))


def experiments_and_profile(args: argparse.Namespace):
    """Every named experiment (`all` expanded) and the profile, all validated, --set overrides included,
    before anything is submitted."""
    from .clusters import load_profile
    from .jobs import experiment_names, load_experiment, parse_overrides

    overrides = parse_overrides(args.set)
    names = experiment_names(args.experiments, args.jobs)
    experiments = [load_experiment(name, args.jobs, overrides) for name in names]
    return experiments, load_profile(args.cluster, args.clusters)


def add_override_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="override a jobs-file key in every setting (repeatable); a comma list adds a grid "
                             "axis; seeds=1111,1,2 sets the seeds. Validated like the jobs file, and part of the "
                             "run names (e.g. --set num_epochs=40 -> ..._ep40)")


def cmd_submit(args: argparse.Namespace) -> int:
    from .launch.pipeline import submit_experiment

    experiments, profile = experiments_and_profile(args)
    for experiment in experiments:  # one array (one lock, one plan table) each
        submit_experiment(experiment, profile, results_dir=args.results, data_dir=args.data or default_data_dir(),
                          dry_run=args.dry_run, force=args.force, executor=args.executor)
    return 0


def cmd_sbatch(args: argparse.Namespace) -> int:
    from .launch.pipeline import submit_sbatch

    experiments, profile = experiments_and_profile(args)
    for experiment in experiments:
        submit_sbatch(experiment, profile, results_dir=args.results, data_dir=args.data or default_data_dir(),
                      script=args.script, dry_run=args.dry_run, force=args.force)
    return 0


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

    build_sif(args.out, args.from_tar or args.tag, Path("docker/ptblm.def"))
    print(f"wrote {args.out}; copy it to the cluster and set `container: /path/to/{args.out.name}` in its profile")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .jobs import experiment_names, parse_overrides
    from .status import status_report

    print(status_report(args.results, args.jobs, experiment_names(args.experiments, args.jobs),
                        overrides=parse_overrides(args.set)))
    return 0


def cmd_run_setting(args: argparse.Namespace) -> int:
    from .launch.sbatch import run_setting
    from .runfolder import CANCELLED, DIVERGED, DONE

    state = run_setting(args.experiment, args.index, args.jobs, args.data or default_data_dir(), args.results,
                        pinned=args.pinned, force=args.force)
    return 0 if state in (DONE, DIVERGED, CANCELLED) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The smoke experiment into results/demo/ (apart from the suite's own results), then its results table."""
    from .clusters import load_profile
    from .data import write_synthetic_corpus
    from .jobs import load_experiment
    from .launch.pipeline import submit_experiment
    from .layout import demo_results_dir
    from .report.summary import load_summaries
    from .report.tables import markdown_table

    demo_dir = demo_results_dir(args.results)
    data_dir = args.data or configured_data_dir()
    if data_dir is None:
        data_dir = write_synthetic_corpus(demo_dir / "data")
        print(f"no PTB_DIR set: using the synthetic corpus written to {data_dir}")
    submit_experiment(load_experiment("smoke", args.jobs), load_profile("local", args.clusters),
                      results_dir=demo_dir, data_dir=data_dir, executor="local")
    print(f"\n{markdown_table(load_summaries(demo_dir))}\n\nrun folders in {demo_dir}/smoke/")
    return 0


def add_location_flags(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--jobs", type=Path, default=default_jobs_dir(), help="experiments folder (default jobs/)")
    parser.add_argument("--results", type=Path, default=default_results_dir(), help="results folder (default results/)")
    parser.add_argument("--clusters", type=Path, default=default_clusters_dir(),
                        help="cluster profiles folder (default slurm/clusters/)")
    if data:
        parser.add_argument("--data", type=Path, default=None, help="PTB folder (default $PTB_DIR or data/ptb)")


def report_dir(args: argparse.Namespace) -> Path:
    from .layout import report_dir as results_report_dir

    return args.out or results_report_dir(args.results)


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
    """The RNN and GRU of --rnn/--gru (default 3.1 and 3.2, setting 0); --data or PTB_DIR overrides their data."""
    from .report.trained import load_analysed

    data_dir = args.data or configured_data_dir()
    return load_analysed({"RNN": args.rnn, "GRU": args.gru}, args.results, data_dir, batch_size)


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


def perplexity(text: str) -> float:
    """--threshold: a finite perplexity > 0 (argparse turns the error into one line)."""
    from .report.facts import check_threshold

    try:
        value = float(text)
        check_threshold(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a perplexity; valid: a number > 0, e.g. 200") from None
    return value


def add_report_flags(parser: argparse.ArgumentParser, models: bool = False) -> None:
    """--out for every report command; --rnn/--gru/--seed for the two that load trained models."""
    add_location_flags(parser, data=False)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default <results>/report)")
    if not models:
        parser.add_argument("experiments", nargs="*", help="only these experiments (default: every one in results/)")
    if models:
        parser.add_argument("--data", type=Path, default=None, help="data folder to rebuild the vocabulary from "
                            "(default $PTB_DIR, else the one each run recorded in config.json)")
        for model, default in (("RNN", "3.1"), ("GRU", "3.2")):
            parser.add_argument(f"--{model.lower()}", type=Path, default=None, metavar="DIR",
                                help=f"{model} run folder (default: setting 0 of {default}; until it is trained, "
                                     f"the {model} run with the lowest best valid ppl)")
        parser.add_argument("--seed", type=int, default=0, help="seeds the minibatch / the start words (default 0)")


class OneLineErrorParser(argparse.ArgumentParser):
    """A bad flag is one line that names it, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


EXPORT_DIRS = {"csv": "data", "course": "course"}  # under <results>/report/


def cmd_export(args: argparse.Namespace) -> int:
    from .course_files import write_course_exports
    from .results import damage_notes, load_runs, write_csv

    runs = load_runs(args.results, args.experiments)
    out = args.out or Path(args.results) / "report" / EXPORT_DIRS[args.format]
    if args.format == "csv":
        written = write_csv(runs, out)
        for note in damage_notes(runs):
            print(note)
    else:
        written = write_course_exports(runs, out)
    print(f"{len(runs)} runs: wrote {len(written)} files to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_command
    from .compiling import compile_cache_dir

    from .layout import bench_dir

    bench_command(args.full, args.only, args.device, args.jobs, args.out or bench_dir(default_results_dir()),
                  args.precision, args.warmup, args.steps,
                  compile_cache=compile_cache_dir(default_results_dir()) if args.compile else None,
                  runs_per_gpu=args.runs_per_gpu)
    return 0


EXPERIMENTS_HELP = ("jobs/<experiment>.yaml, e.g. 3.1, or a path to a YAML file; several (one array each), or all: "
                    "every jobs file but the examples (example-*) and the smoke test")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="ptblm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one setting into a run folder (resumes; the scaffold's flags)")
    add_setting_flags(train)
    train.add_argument("--data", type=Path, default=None, help="folder with ptb.{train,valid,test}.txt "
                       "(default $PTB_DIR or data/ptb; SLURM_TMPDIR: the copy in $SLURM_TMPDIR, as in run_exp.py)")
    train.add_argument("--out", type=Path, default=None, help="run folder (default results/manual/<run name>)")
    train.add_argument("--save_dir", type=Path, default=None, help="run_exp.py's: the folder to put the run folder "
                       "<save_dir>/<run name> in (--out names the run folder itself)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder is finished")
    train.add_argument("--dry-run", action="store_true", help="one epoch of two batches in a temporary folder "
                       "(synthetic data when no PTB is configured)")
    train.set_defaults(handler=cmd_train)

    data = commands.add_parser("data", help="download PTB and verify its MD5 sums")
    data.add_argument("--dest", type=Path, default=Path("data/ptb"))
    data.set_defaults(handler=cmd_data)

    synthetic = commands.add_parser("synthetic", help="write a small seeded PTB-format corpus (offline demos, tests)")
    synthetic.add_argument("dest", type=Path)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(handler=cmd_synthetic)

    submit = commands.add_parser("submit",
                                 help="submit an experiment as one Slurm array (local processes without Slurm)")
    submit.add_argument("experiments", nargs="+", metavar="experiment", help=EXPERIMENTS_HELP)
    submit.add_argument("--cluster", default=os.environ.get("CLUSTER", "local"), help="slurm/clusters/<name>.yaml")
    submit.add_argument("--executor", choices=("auto", "slurm", "local"), default="auto",
                        help="auto = Slurm when a cluster answers sinfo, else local processes")
    submit.add_argument("--dry-run", action="store_true", help="print the plan and its cost (resources, projected "
                        "time from results/bench/*.json, GPU-hours), submit nothing")
    submit.add_argument("--force", action="store_true", help="rerun finished settings from scratch")
    add_override_flag(submit)
    add_location_flags(submit)
    submit.set_defaults(handler=cmd_submit)

    sbatch = commands.add_parser("sbatch", help="submit an experiment through slurm/array.sbatch (no submitit)")
    sbatch.add_argument("experiments", nargs="+", metavar="experiment", help=EXPERIMENTS_HELP)
    sbatch.add_argument("--cluster", default=os.environ.get("CLUSTER", "local"), help="slurm/clusters/<name>.yaml")
    sbatch.add_argument("--script", type=Path, default=Path("slurm/array.sbatch"))
    sbatch.add_argument("--dry-run", action="store_true", help="print the plan, its cost and the sbatch command, "
                        "submit nothing")
    sbatch.add_argument("--force", action="store_true", help="rerun finished settings from scratch")
    add_override_flag(sbatch)
    add_location_flags(sbatch)
    sbatch.set_defaults(handler=cmd_sbatch)

    from .images import IMAGE_TAG

    image = commands.add_parser("image", help="docker (or podman) build of docker/Dockerfile")
    image.add_argument("--tag", default=IMAGE_TAG)
    image.add_argument("--engine", choices=("docker", "podman"), default="docker")
    image.add_argument("--base", help="podman: this image in place of the Dockerfile's FROM (e.g. a stand-in base)")
    image.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="e.g. BASE_TORCH=2.13.0 for a base with another torch")
    image.set_defaults(handler=cmd_image)
    sif = commands.add_parser("sif", help="Apptainer .sif from the Docker image or a saved tar (runs its %%test)")
    sif.add_argument("--from-tar", type=Path, help="a `docker save` tar built elsewhere")
    sif.add_argument("--tag", default=IMAGE_TAG)
    sif.add_argument("--out", type=Path, default=Path("ptblm.sif"))
    sif.set_defaults(handler=cmd_sif)

    status = commands.add_parser("status", help="a table per experiment from the run folders")
    status.add_argument("experiments", nargs="*", help="experiments, or all (every jobs file but the examples "
                        "and the smoke test); default: every one with results")
    status.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,VALUE...]",
                        help="as given to submit: the settings not submitted yet are listed with these overrides")
    add_location_flags(status, data=False)
    status.set_defaults(handler=cmd_status)

    run_setting = commands.add_parser("run-setting", help="run setting INDEX of an experiment (the sbatch path)")
    run_setting.add_argument("experiment")
    run_setting.add_argument("index", type=int, help="0-based setting number = $SLURM_ARRAY_TASK_ID")
    run_setting.add_argument("--pinned", type=Path, default=None,
                             help="the task -> setting file `ptblm sbatch` wrote (default: read the jobs file now)")
    run_setting.add_argument("--force", action="store_true", help="empty the run folder first (array.sbatch passes "
                             "it on a job's first attempt only)")
    add_location_flags(run_setting)
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
    samples.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    samples.add_argument("--top-k", type=int, default=0, help="sample among the k most probable tokens (0 = all)")
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
    export.add_argument("--format", choices=tuple(EXPORT_DIRS), default="csv")
    export.add_argument("--out", type=Path, default=None,
                        help="folder (default <results>/report/data for csv, <results>/report/course for course)")
    export.add_argument("--results", type=Path, default=default_results_dir(), help="results folder (default results/)")
    export.set_defaults(handler=cmd_export)
    bench = commands.add_parser("bench", help="time one training step per model and shape: this project's path, "
                                "its reference loops and PyTorch's built-in (JSON into results/bench)")
    bench.add_argument("--full", action="store_true", help="the course suite's 11 shapes (default: 3 small ones)")
    bench.add_argument("--only", nargs="+", default=None, metavar="NAME",
                       help="cases whose name contains NAME, e.g. --full --only gru-h512-l2")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32 (strict), tf32 (TF32 matmuls on CUDA) or bf16 (autocast); as ptblm train")
    bench.add_argument("--compile", action="store_true", help="also time the compiled paths (whole model; RNN/GRU "
                       "time step), compile time apart (cached in <results>/.compile-cache)")
    bench.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                       help="also time K processes at once on the device, as a profile's runs_per_gpu packs runs")
    bench.add_argument("--steps", type=int, default=None, help="timed steps per path (default 50 on GPU, 10 on CPU)")
    bench.add_argument("--warmup", type=int, default=None,
                       help="untimed steps first, graph capture included (default 5 on GPU, 2 on CPU)")
    bench.add_argument("--jobs", type=Path, default=default_jobs_dir(),
                       help="experiments folder for --full (default jobs/)")
    bench.add_argument("--out", type=Path, default=None, help="folder for bench-<time>.json (default results/bench)")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    # ConfigError is a ValueError; DataError, RunFolderMismatch and LatexError are RuntimeErrors. Naming
    # them here would import torch before every command, `ptblm --help` included.
    except (ValueError, FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"ptblm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a run (a training run handles it itself: cancelled, resumable)
        print(f"ptblm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
