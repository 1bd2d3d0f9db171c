"""`ptblm completion`: the shell completion script, read off the parser itself."""
from __future__ import annotations

import argparse

from ..completion import SHELLS


def cmd_completion(args: argparse.Namespace) -> int:
    from ..completion import completion_script
    from .parser import build_parser  # the parser holds this command: built when it runs

    print(completion_script(args.shell, build_parser()), end="")
    return 0


def add_completion(commands) -> None:
    completion = commands.add_parser("completion", help="print a shell completion script: eval \"$(.venv/bin/ptblm "
                                     "completion bash)\" (or zsh) in your shell's rc file")
    completion.add_argument("shell", choices=SHELLS, help="bash or zsh")
    completion.set_defaults(handler=cmd_completion)
