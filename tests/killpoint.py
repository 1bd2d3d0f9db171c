"""The kill suite's child process: `ptblm train` that signals itself at a chosen write of its run folder.

A test-only hook, no sleep race: every write of a run folder becomes visible at one rename (os.replace,
in ptblm.runfolder.files.publish); this wrapper counts the renames and, at number `at` (and at every later
one with `repeat`, a user pressing Ctrl-C again and again), sends `signum` to its own process just before
the rename. The children are forked from a server that imported torch once (multiprocessing's forkserver),
so that a hundred of them take seconds, not minutes.
"""
from __future__ import annotations

import json
import os
import sys


def train(argv: list[str], at: int, signum: int, repeat: bool, log: str) -> None:
    """Run `ptblm ARGV`, signalling at write `at` (0: never); its output goes to `log`, and the names of the
    files it wrote, in order, to `log`.writes.json. Exits with ptblm's exit code."""
    import torch

    from ptblm.cli import main

    torch.set_num_threads(1)
    written: list[str] = []
    replace = os.replace

    def signalling_replace(tmp, path) -> None:
        written.append(os.path.basename(path))
        if at and (len(written) == at or (repeat and len(written) > at)):
            os.kill(os.getpid(), signum)
        replace(tmp, path)

    os.replace = signalling_replace
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        code = main(argv)
    except BaseException:  # a traceback, which the suite looks for in the log
        import traceback

        traceback.print_exc()
    finally:
        with open(f"{log}.writes.json", "w") as handle:
            json.dump(written, handle)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
