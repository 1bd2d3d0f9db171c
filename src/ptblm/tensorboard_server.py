"""`ptblm tensorboard [EXP...]`: TensorBoard on the run folders' event files, on a free port of 127.0.0.1.

TensorBoard runs as a child process (`python -m tensorboard.main`) on a view of the results folder: a
temporary folder with one link per experiment shown, so the UI's run names read `<exp>/<run>/tb` and
TensorBoard never walks report/, bench/ or the compile cache. It listens on loopback only; from a laptop
the one `ssh -L` line it prints forwards the port. On a cluster that line must name the login node this runs
on (its own hostname, not the load-balanced alias), which the caller passes in.

However `ptblm tensorboard` ends, TensorBoard ends with it and the temporary folder goes: Ctrl-C, SIGTERM and
SIGHUP unwind through serve (cli.main raises them as exceptions); on Linux the child also gets SIGTERM when
its parent dies by SIGKILL, whose temporary folder the next `ptblm tensorboard` removes.

Runs made before event files existed get theirs from curves.json as TensorBoard starts
(ptblm.tensorboard_events.write_from_curves): it is the command a person runs to see the curves, so the
conversion needs no step of its own and cannot be forgotten; it writes only where no trainer's event file
is, and again only when curves.json has changed since.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import layout
from . import runfolder as rf
from .errors import UserError
from .naming import each_once
from .wording import count
from .tensorboard_events import describe, needs_conversion, write_from_curves

URL_LINE = re.compile(r"TensorBoard \S+ at (http://[^\s/]+:(\d+)/)")
START_TIMEOUT = 120  # seconds for TensorBoard to answer (its first start imports a lot)
VIEW_PREFIX = "ptblm-tensorboard-"  # the temporary folder's name, before a random part
HELD_FILE = "held"  # in the temporary folder, locked while its ptblm tensorboard runs
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class TensorBoardError(UserError, RuntimeError):
    """TensorBoard did not start, or there is nothing to show; the message says why."""


@dataclass
class Server:
    """A running TensorBoard child process."""

    process: subprocess.Popen
    url: str  # http://127.0.0.1:PORT/
    port: int
    log: Path  # its stderr

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_tensorboard(logdir: Path, log: Path, host: str = "127.0.0.1", port: int = 0,
                      extra_args: Sequence[str] = (), timeout: float = START_TIMEOUT) -> Server:
    """TensorBoard on `logdir`, listening on host:port (0: a free port the kernel picks); returns once it
    serves, with the port it took (read from its own first line)."""
    argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port),
            *extra_args]
    with open(log, "wb") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                   preexec_fn=ended_with(os.getpid()))
    server = Server(process, "", 0, log)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = URL_LINE.search(log.read_text(errors="replace"))
            if found:
                return Server(process, found.group(1), int(found.group(2)), log)
            if process.poll() is not None:
                break
            time.sleep(0.2)
    except BaseException:  # Ctrl-C or a signal while it starts: it must not outlive this
        server.stop()
        raise
    server.stop()
    said = log.read_text(errors="replace").strip().splitlines()
    raise TensorBoardError(f"TensorBoard did not start on {host} within {timeout:.0f} s" +
                           (f": {said[-1]}" if said else "") + f" (its command: {' '.join(argv)})")


def ended_with(parent: int) -> Callable[[], None] | None:
    """For Popen's preexec_fn: the child gets SIGTERM when `parent` ends, even by SIGKILL, which runs no cleanup
    (Linux's PR_SET_PDEATHSIG; elsewhere None: nothing)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent ended before prctl took
            os._exit(1)
    return in_child


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    """`folder`/held, locked while inside: how remove_stale_views tells a folder in use (whatever process
    namespace its ptblm runs in) from one left behind. Locked before it takes its name, so never seen unlocked."""
    path = Path(folder) / f".{HELD_FILE}.tmp"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        path.rename(Path(folder) / HELD_FILE)
        yield


def remove_stale_views(temp_dir: Path) -> list[Path]:
    """The temporary folders of `ptblm tensorboard` processes that ended without removing them (SIGKILL runs no
    cleanup): this user's whose held file nobody locks. Removed; which."""
    removed = []
    for folder in Path(temp_dir).glob(f"{VIEW_PREFIX}*"):
        with contextlib.suppress(OSError):  # not a folder, not ours, no held file (an older ptblm's), locked
            if folder.stat().st_uid != os.getuid():
                continue
            with open(folder / HELD_FILE) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder)
                removed.append(folder)
    return removed


def tunnel_line(port: int, user: str | None, host: str) -> str:
    """The command that shows the server from a laptop at http://localhost:PORT/."""
    return f"ssh -N -L {port}:127.0.0.1:{port} {f'{user}@' if user else ''}{host}"


def reachable_name(hostname: str, fqdn: str) -> str:
    """This machine's name for the ssh line: the fully qualified one when it extends the host name (a laptop
    outside the cluster's domain needs it), else the host name (getfqdn can answer 'localhost')."""
    return fqdn if fqdn.startswith(f"{hostname}.") else hostname


def shown_experiments(results_dir: Path, experiments: Sequence[str]) -> list[str]:
    """The experiments named (each must have runs; each once, as first named), or every one with runs
    (runfolder.experiments: never report/, bench/ or demo/)."""
    available = rf.experiments(results_dir)
    if not experiments:
        if not available:
            raise TensorBoardError(f"{results_dir}: no experiment has results yet; submit one "
                                   f"(`make submit EXP=...`) or point --results at a results folder")
        return available
    named = each_once(experiments)
    missing = [name for name in named if name not in available]
    if missing:
        raise TensorBoardError(f"{Path(results_dir) / missing[0]}: no results of experiment {missing[0]!r}; "
                               f"experiments with results: {', '.join(available) or 'none'}")
    return named


def convert_old_runs(results_dir: Path, experiments: Sequence[str], notify: Callable[[str], None]) -> int:
    """Event files from curves.json for the runs that need them (see needs_conversion); how many were written.
    A run that cannot be converted is one note, and the others go on."""
    written = 0
    for experiment in experiments:
        for run_dir in rf.experiment_runs(results_dir, experiment):
            if not needs_conversion(run_dir):
                continue
            try:
                write_from_curves(run_dir)
                written += 1
            except Exception as error:  # one damaged folder must not hide the others
                notify(f"note: {run_dir}: no TensorBoard events from its curves.json ({describe(error)})")
    return written


def link_view(view: Path, results_dir: Path, experiments: Sequence[str]) -> Path:
    """`view`/<exp> -> results/<exp> for each experiment shown: TensorBoard's logdir."""
    for experiment in experiments:
        (view / experiment).symlink_to(layout.experiment_dir(results_dir, experiment).resolve(),
                                       target_is_directory=True)
    return view


def serve(results_dir: Path, experiments: Sequence[str], environ: Mapping[str, str], hostname: str,
          notify: Callable[[str], None] = print, until: Callable[[Server], None] | None = None) -> None:
    """Convert what needs it, start TensorBoard, print where it is and the ssh line, and wait for Ctrl-C
    (or for `until(server)` to return: tests read it meanwhile); TensorBoard and its temporary folder end with
    it, however it ends (an exception included: cli.main raises SIGTERM and SIGHUP)."""
    names = shown_experiments(results_dir, experiments)
    converted = convert_old_runs(results_dir, names, notify)
    if converted:
        notify(f"wrote TensorBoard events from curves.json for {count(converted, 'run')} made before event files "
               f"existed")
    remove_stale_views(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=VIEW_PREFIX) as scratch, held(Path(scratch)):
        view = Path(scratch) / "view"
        view.mkdir()
        server = start_tensorboard(link_view(view, results_dir, names), Path(scratch) / "tensorboard.log")
        try:
            notify(f"TensorBoard at {server.url} shows {', '.join(names)} (under {results_dir}); Ctrl-C stops it")
            notify(f"from a laptop: {tunnel_line(server.port, environ.get('USER') or environ.get('LOGNAME'), hostname)}"
                   f"   then open http://localhost:{server.port}/")
            if until is not None:
                until(server)
            else:
                with contextlib.suppress(KeyboardInterrupt):
                    if server.process.wait() != 0:
                        said = server.log.read_text(errors="replace").strip().splitlines()
                        raise TensorBoardError(f"TensorBoard stopped: {said[-1] if said else 'no message'}")
        finally:
            server.stop()
