"""SIGTERM stops a command like Ctrl-C: an exception in the main thread, so clean-up runs."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from doppelkit.termination import EXIT_TERMINATED, Terminated, sigterm_raises


def test_sigterm_raises_terminated_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Terminated) as raised, sigterm_raises():
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            time.sleep(10)
        finally:
            cleaned.append(True)
    assert cleaned and raised.value.code == EXIT_TERMINATED == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_sigterm_does_not_break_off_the_clean_up() -> None:
    cleaned = []
    with pytest.raises(Terminated), sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # as systemd's, or a forwarded one, would arrive
            time.sleep(0.05)
            cleaned.append(True)
    assert cleaned


def test_terminated_passes_code_that_catches_exceptions_or_ctrl_c() -> None:
    with pytest.raises(Terminated):
        try:
            raise Terminated()
        except (Exception, KeyboardInterrupt):  # as a library or the chat would
            pytest.fail("Terminated was caught as an ordinary error or as Ctrl-C")


def test_terminated_travels_between_processes() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(Terminated())).code == EXIT_TERMINATED


def test_outside_the_main_thread_it_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def inside() -> None:
        with sigterm_raises():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=inside)
    thread.start()
    thread.join()
    assert seen == [before]
