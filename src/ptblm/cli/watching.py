"""`ptblm tensorboard`, `evaluate` and `generate`: watching runs, and using the weights they trained."""
from __future__ import annotations

import argparse
import os

from .flags import EachOnce, add_decoding_flags, add_location_flags, decoding_from_args
from .types import path_flag, positive, seed


def cmd_tensorboard(args: argparse.Namespace) -> int:
    import socket

    from ..tensorboard_server import reachable_name, serve

    serve(args.results, args.experiments, environ=os.environ,
          hostname=reachable_name(socket.gethostname(), socket.getfqdn()))
    return 0


def add_tensorboard(commands) -> None:
    tensorboard = commands.add_parser("tensorboard", help="TensorBoard on the runs' event files, on a free port of "
                                      "127.0.0.1, with the ssh -L line that shows it from a laptop")
    tensorboard.add_argument("experiments", nargs="*", action=EachOnce,
                             help="only these experiments (default: every one in results/)")
    add_location_flags(tensorboard, "results")
    tensorboard.set_defaults(handler=cmd_tensorboard)


def add_run_data_flags(parser: argparse.ArgumentParser) -> None:
    """Where evaluate and generate find a run's data and the runs named EXP/RUN."""
    parser.add_argument("--data", type=path_flag, default=None,
                        help="data folder (default: the run's corpus's variable, e.g. $PTB_DIR, else the "
                             "folder the run recorded in config.json)")
    add_location_flags(parser, "results")  # where EXP/RUN and EXP are


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_targets

    outcome = evaluate_targets(args.runs, args.results, args.data, args.device, again=args.again,
                               environ=os.environ)
    if outcome.failed:  # README "Exit status": it stopped short of what was asked
        print(f"{len(outcome.failed)} of the runs asked for not evaluated (see the skip lines above); "
              f"{len(outcome.evaluated)} evaluated")
        return 1
    return 0


def add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="test perplexity of the best weights of finished runs, into "
                                   "their curves.json")
    evaluate.add_argument("runs", nargs="+", action=EachOnce, metavar="RUN|EXP",
                          help="run folders (a path or EXP/RUN) or experiments")
    evaluate.add_argument("--again", action="store_true", help="also the runs that have a test perplexity")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="auto (CUDA when torch sees it; default), cpu or cuda")
    add_run_data_flags(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_generate(args: argparse.Namespace) -> int:
    from ..evaluation import run_folder_named
    from ..report.samples import continue_run

    folder = run_folder_named(args.run, args.results)
    result = continue_run(folder, args.prompt, args.length, decoding_from_args(args), args.data, environ=os.environ)
    if result.unknown:
        print(f"note: not in the vocabulary of {folder}, read as <unk>: {' '.join(result.unknown)}")
    print(f"[{' '.join(result.prompt)}] {' '.join(result.words)}")
    return 0


def add_generate(commands) -> None:
    generate = commands.add_parser("generate", help="continue a prompt with a run's best weights (any model)")
    generate.add_argument("run", metavar="RUN", help="run folder (a path or EXP/RUN)")
    generate.add_argument("--prompt", required=True, help="words to continue, e.g. 'the company said'")
    generate.add_argument("--length", type=positive, default=35, help="words to generate (default 35)")
    add_decoding_flags(generate)
    generate.add_argument("--seed", type=seed, default=0, help="seeds the sampling (default 0)")
    add_run_data_flags(generate)
    generate.set_defaults(handler=cmd_generate)
