"""`ptblm tables`, `figures`, `gradients`, `samples`, `report` and `export`: what the run folders say, written out."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .flags import EachOnce, add_decoding_flags, add_location_flags, decoding_from_args
from .types import path_flag, perplexity, seed
from ..wording import count

EXPORT_DIRS = {"csv": "data", "course": "course"}  # under <results>/report/


def report_dir(args: argparse.Namespace, under: str = "") -> Path:
    """--out, or <results>/report (/`under`): made and checked before anything is computed."""
    from ..layout import output_dir, report_dir as results_report_dir

    return output_dir(args.out or results_report_dir(args.results) / under,
                      "--out" if args.out else "--out (or --results)")


def add_report_flags(parser: argparse.ArgumentParser, models: bool = False) -> None:
    """--out for every report command; --rnn/--gru/--lstm/--seed for the two that load trained models."""
    add_location_flags(parser, "results")
    parser.add_argument("--out", type=path_flag, default=None, help="report folder (default <results>/report)")
    if not models:
        parser.add_argument("experiments", nargs="*", action=EachOnce, help="only these experiments (default: every "
                            "one in results/ but manual/, the runs of `ptblm train`)")
    if models:
        parser.add_argument("--data", type=path_flag, default=None, help="data folder to rebuild the vocabulary from "
                            "(default: the run's corpus's variable, e.g. $PTB_DIR, else the folder each run "
                            "recorded in config.json)")
        from ..report.trained import analysed_runs  # torch-free

        for run in analysed_runs():
            optional = "" if run.required else f"; without any {run.model} run, none"
            parser.add_argument(run.flag, type=path_flag, default=None, metavar="DIR",
                                help=f"{run.model} run folder (default: setting {run.setting_index} of "
                                     f"{run.experiment}; until it is trained, the {run.model} run with the lowest "
                                     f"best valid ppl{optional})")
        parser.add_argument("--seed", type=seed, default=0, help="seeds the minibatch / the start words (default 0)")


def cmd_tables(args: argparse.Namespace) -> int:
    from ..report.summary import experiment_descriptions, load_summaries
    from ..report.tables import markdown_table, write_tables

    summaries = load_summaries(args.results, args.experiments)
    written = write_tables(summaries, report_dir(args), experiment_descriptions(summaries))
    print(markdown_table(summaries))
    print(f"\nwrote {count(len(written), 'file')} to {written[0].parent}")
    return 0


def add_tables(commands) -> None:
    tables = commands.add_parser("tables", help="LaTeX and Markdown tables of every run (into results/report/tables)")
    add_report_flags(tables)
    tables.set_defaults(handler=cmd_tables)


def cmd_figures(args: argparse.Namespace) -> int:
    from ..report.figures import write_figures
    from ..report.summary import load_summaries

    for path in write_figures(load_summaries(args.results, args.experiments), report_dir(args)):
        print(f"wrote {path}")
    return 0


def add_figures(commands) -> None:
    figures = commands.add_parser("figures", help="perplexity curves per experiment (into results/report/figures)")
    add_report_flags(figures)
    figures.set_defaults(handler=cmd_figures)


def analysed_models(args: argparse.Namespace, batch_size: int | None = None):
    """The models of --rnn/--gru/--lstm/... (report.trained.analysed_runs: defaults 3.1 and 3.2, setting 0; any
    other recurrent model when there is one), each named as it is loaded; --data, or their corpus's variable
    (PTB_DIR, ...), overrides the data folder they recorded."""
    from ..report.trained import analysed_runs, load_analysed

    named = {analysed.model: getattr(args, analysed.model.lower()) for analysed in analysed_runs()}
    models = load_analysed(named, args.results, args.data, batch_size, environ=os.environ)
    for model in models:
        print(f"loaded {model.describe()}")
    return models


def cmd_gradients(args: argparse.Namespace) -> int:
    from ..report.gradients import describe, write_gradients

    models = analysed_models(args)
    written = write_gradients(models, report_dir(args), hidden=args.hidden, seed=args.seed)
    print(describe(next(path for path in written if path.suffix == ".json")))
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def add_gradients(commands) -> None:
    from ..report.trained import analysed_in_words  # torch-free

    gradients = commands.add_parser("gradients", help=f"dL_T/dh_t against t for {analysed_in_words()} "
                                    "(into results/report/gradients)")
    add_report_flags(gradients, models=True)
    gradients.add_argument("--hidden", choices=("top", "each", "all"), default="top",
                           help="which hidden state: the top layer's (default), each layer's, all layers concatenated")
    gradients.set_defaults(handler=cmd_gradients)


def cmd_samples(args: argparse.Namespace) -> int:
    from ..report.samples import PER_LENGTH, write_samples

    models = analysed_models(args, batch_size=PER_LENGTH)
    written = write_samples(models, report_dir(args), decoding_from_args(args))
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def add_samples(commands) -> None:
    from ..report.trained import analysed_in_words  # torch-free

    samples = commands.add_parser("samples", help=f"sequences generated by {analysed_in_words()}, and "
                                  "appendix.tex (into results/report/samples)")
    add_report_flags(samples, models=True)
    add_decoding_flags(samples)
    samples.set_defaults(handler=cmd_samples)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.document import write_report
    from ..report.latex import INSTALL_HINT, LatexError, compile_pdf, latex_engine
    from ..report.summary import experiment_descriptions, load_summaries

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


def add_report(commands) -> None:
    report = commands.add_parser("report", help="report.tex with every table, figure and fact, and its PDF")
    add_report_flags(report)
    report.add_argument("--threshold", type=perplexity, default=None,
                        help="perplexity for 'time to reach' (default: 2 x the best of each architecture)")
    report.add_argument("--no-pdf", action="store_true", help="write report.tex only")
    report.set_defaults(handler=cmd_report)


def cmd_export(args: argparse.Namespace) -> int:
    from ..course_files import write_course_exports
    from ..errors import NoRunFolders
    from ..results import damage_notes, load_runs, write_csv

    runs = load_runs(args.results, args.experiments)
    out = report_dir(args, EXPORT_DIRS[args.format])
    if args.format == "csv":  # every run is a row; a damaged one says so in its state
        written, exported = write_csv(runs, out), len(runs)
        for note in damage_notes(runs):
            print(note)
    else:  # a damaged run has no files of its own: left out
        by_run = write_course_exports(runs, out)
        written, exported = [path for files in by_run.values() for path in files], len(by_run)
    if not exported:
        raise NoRunFolders(f"no run under {args.results} could be exported ({count(len(runs), 'run')}, named "
                           f"above); `ptblm status` lists {'it' if len(runs) == 1 else 'them'}")
    left_out = len(runs) - exported
    print(f"exported {count(exported, 'run')}{f' ({left_out} left out, named above)' if left_out else ''}: wrote "
          f"{count(len(written), 'file')} to {out}")
    return 0


def add_export(commands) -> None:
    export = commands.add_parser("export", help="the run folders as data: runs.csv and epochs.csv (default), or "
                                 "per run the course's learning_curves.npy, best_params.pt, exp_config.txt")
    export.add_argument("experiments", nargs="*", action=EachOnce,
                        help="only these experiments (default: every one in results/)")
    export.add_argument("--format", choices=tuple(EXPORT_DIRS), default="csv",
                        help="csv (runs.csv, epochs.csv; default) or course (the scaffold's files per run)")
    export.add_argument("--out", type=path_flag, default=None,
                        help="folder (default <results>/report/data for csv, <results>/report/course for course)")
    add_location_flags(export, "results")
    export.set_defaults(handler=cmd_export)
