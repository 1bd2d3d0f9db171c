"""Signals that end a command (ptblm.stopping): raised so cleanup runs, and a signal ignored from the start
(`nohup`) left ignored."""
from __future__ import annotations

import os
import signal

import pytest

from ptblm.stopping import StopRequest, StopSignal, raise_on_signals, stop_on_signals


@pytest.fixture
def sighup_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_sigterm_raises_once_and_a_second_one_does_not_cut_the_cleanup_short():
    cleaned = []
    with pytest.raises(StopSignal) as stopped, raise_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs as os.kill returns
            pytest.fail("SIGTERM did not raise")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored while the first unwinds
            cleaned.append(True)
    assert (stopped.value.signum, stopped.value.name, cleaned) == (signal.SIGTERM, "SIGTERM", [True])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back


def test_a_signal_ignored_by_nohup_stays_ignored(sighup_ignored):
    with raise_on_signals():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)  # nothing happens
    stop = StopRequest()
    with stop_on_signals(stop):
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGHUP)
    assert not stop.is_set() and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
