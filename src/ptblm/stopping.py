"""Stop requests from outside a run: the signals that end it `cancelled`, resumable from its last.pt.

The trainer knows nothing about signals: it asks `should_stop` between batches. Its callers install these
handlers: `ptblm train` for SIGTERM, SIGHUP (a closed terminal) and SIGINT (Ctrl-C, a second one included:
it only asks again, so no KeyboardInterrupt can cut the run's last writes short), a scheduled task for
SIGTERM (scancel). The handlers only set an Event, which is safe at any instant.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[threading.Event]:
    """While inside, each of `signals` sets `stop`; the previous handlers come back after. Off the main
    thread (where Python cannot install handlers) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {number: signal.signal(number, lambda signum, frame: stop.set()) for number in signals}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
