"""Stop requests from outside a process: the signals that end a run `cancelled`, and those that end a command.

The trainer knows nothing about signals: it asks `should_stop` between batches. Its callers install
stop_on_signals: `ptblm train` and a scheduled task for SIGTERM (scancel, a local submit that went away),
SIGHUP (a closed terminal) and SIGINT (Ctrl-C, a second one included: it only asks again, so no
KeyboardInterrupt can cut the run's last writes short). Those handlers only set an Event, which is safe at
any instant.

Every other command ends on SIGTERM and SIGHUP as on Ctrl-C: raise_on_signals (cli.main) raises StopSignal,
so `finally` blocks and context managers run (a child process stopped, a temporary folder removed), where
Python's default would end the process at once. A signal that is ignored when the process starts (`nohup`
ignores SIGHUP) stays ignored by both.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
RAISED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT raises KeyboardInterrupt already


class StopSignal(BaseException):
    """SIGTERM or SIGHUP arrived (a BaseException, as KeyboardInterrupt: `except Exception` does not catch it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def _handled(signals: tuple[int, ...], handler) -> Iterator[None]:
    """`handler` for each of `signals` not ignored now, on the main thread only (where Python can install one);
    the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in signals
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored while inside, on the main thread: a process started here inherits it (Python then installs
    no KeyboardInterrupt handler), and a stopped run's state is written whole; the previous handler after."""
    with _handled((signal.SIGINT,), signal.SIG_IGN):
        yield


def signal_exit_status(signum: int) -> int:
    """The one exit-status rule for a command a signal ended (the shell's): 128 + N, 130 for Ctrl-C (SIGINT),
    143 for SIGTERM, 129 for SIGHUP, whether the command unwound (cli.main) or its run ended `cancelled`."""
    return 128 + signum


def ended_run_exit_status(state: str, stop: StopRequest) -> int:
    """A command that trained one run (`ptblm train`, `ptblm run-setting`): 0 when it finished (done or
    diverged), 128 + N when signal N stopped it `cancelled` (as if the signal had ended the command), else 1."""
    from .runfolder.states import CANCELLED, DIVERGED, DONE

    if state == CANCELLED and stop.signum is not None:
        return signal_exit_status(stop.signum)
    return 0 if state in (DONE, DIVERGED) else 1


class StopRequest(threading.Event):
    """A stop Event that remembers the first signal that set it (None: set by something else)."""

    signum: int | None = None

    def set_by(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.set()


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """While inside, each of `signals` sets `stop`, which records the first."""
    def handler(signum, frame) -> None:
        stop.set_by(signum)

    with _handled(signals, handler):
        yield stop


@contextlib.contextmanager
def raise_on_signals(signals: tuple[int, ...] = RAISED_SIGNALS) -> Iterator[None]:
    """While inside, the first of `signals` raises StopSignal; later ones are ignored while that unwinds (the
    cleanup it runs is not cut short)."""
    raised: list[int] = []

    def handler(signum, frame) -> None:
        if not raised:
            raised.append(signum)
            raise StopSignal(signum)

    with _handled(signals, handler):
        yield
