"""build_parser: every `ptblm` command, in the order --help lists them; each module here adds its own."""
from __future__ import annotations

import argparse

from .. import __version__
from . import completion, images, launching, reporting, training, watching

DESCRIPTION = "The `ptblm` command line: each command parses flags and calls one plain, importable function."
EXIT_CODES = ("exit status: 0 done; 1 an error to act on (one line naming the file, flag or value), or a local "
              "run that failed; 2 a usage error; 128 + N ended by signal N (130 Ctrl-C, 143 SIGTERM); anything "
              "else is a bug and keeps its traceback")


class OneLineErrorParser(argparse.ArgumentParser):
    """A bad flag is one line that names it, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="ptblm", description=DESCRIPTION, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"ptblm {__version__}",
                        help="print ptblm's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (training.add_train, training.add_data, training.add_synthetic,
                        launching.add_submit, launching.add_sbatch, images.add_image, images.add_sif,
                        launching.add_status, launching.add_run_setting, launching.add_demo,
                        reporting.add_tables, reporting.add_figures, reporting.add_gradients, reporting.add_samples,
                        reporting.add_report, reporting.add_export, training.add_bench,
                        watching.add_tensorboard, watching.add_evaluate, watching.add_generate,
                        completion.add_completion):
        add_command(commands)
    return parser
