"""The `ptblm` command line: each command parses flags and calls one plain, importable function.

parser.build_parser lists the commands; each is added, next to its body, by the module of its concern:
training (train, data, synthetic, bench), launching (submit, sbatch, status, run-setting, demo), images
(image, sif), reporting (tables, figures, gradients, samples, report, export), watching (tensorboard,
evaluate, generate), completion. types holds the argparse types, flags the folders several commands share.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys

from ..errors import UserError
from ..stopping import StopSignal, raise_on_signals, signal_exit_status
from .parser import build_parser
from .training import config_from_args

__all__ = ["build_parser", "config_from_args", "main"]


def main(argv: list[str] | None = None) -> int:
    """The exit-code rule: 0 done; 1 a UserError (one line naming the file, flag or value) or a task that
    failed; 2 a usage error (argparse's); 128 + N ended by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP);
    anything else is a bug or the machine's, and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        with raise_on_signals():  # SIGTERM and SIGHUP unwind as Ctrl-C does: children stopped, temporary files gone
            return args.handler(args)
    except StopSignal as stop:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"ptblm {args.command}: stopped by {stop.name}", file=sys.stderr)
        return signal_exit_status(stop.signum)
    except UserError as error:
        print(f"ptblm {args.command}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ptblm submit 3.1 --dry-run | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a run (a training run handles it itself: cancelled, resumable)
        print(f"ptblm {args.command}: interrupted", file=sys.stderr)
        return signal_exit_status(signal.SIGINT)
