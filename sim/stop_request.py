"""Stopping a command on Ctrl-C (SIGINT) or SIGTERM, even where Python drops the exception.

Inside :func:`stop_on_signals` both signals raise at once — Ctrl-C as :class:`KeyboardInterrupt`, SIGTERM
(what batch schedulers send before a kill) as :class:`Terminated` — so the command unwinds with its files
closed and its lock released.  The handler also records the request, because Python drops an exception
raised while a garbage-collection callback runs (JAX registers one), and the command would then go on to
its end.  Loops call :func:`check_stop` where stopping loses nothing (between rules, between a long rule's
time blocks, between a bridge run's optimiser steps and generation batches), which raises again.

Outside :func:`stop_on_signals` (a library call of :func:`sim.run`), :func:`check_stop` does nothing and the
signals keep their handlers.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Exit statuses of a command a stop signal ended: 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM

#: The stop signals received inside :func:`stop_on_signals` (cleared when the outermost block starts and ends).
_received: list[int] = []
#: One entry per :func:`stop_on_signals` block the main thread is in.
_depth: list[None] = []
#: The ``sys.unraisablehook`` the outermost block replaced (restored when it ends).
_hooks: list = []


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives, so it unwinds like Ctrl-C (files closed, lock released)."""


def stop_exception(number: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: :class:`Terminated` for SIGTERM, :class:`KeyboardInterrupt` for SIGINT."""
    return Terminated() if number == signal.SIGTERM else KeyboardInterrupt()


def stopped(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What a stop exception says happened (``terminated (SIGTERM)`` or ``interrupted``) and the exit status."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


def request_stop(number: int) -> None:
    """Record that stop signal ``number`` arrived (what the handler does before it raises)."""
    _received.append(number)


def _stop(number: int, frame) -> None:
    request_stop(number)
    raise stop_exception(number)


def _quiet_dropped_stop(unraisable) -> None:
    """``sys.unraisablehook`` inside :func:`stop_on_signals`: a stop exception Python could not raise (it
    arrived in a garbage-collection callback) is recorded and raised again by :func:`check_stop`, so
    Python's "Exception ignored in … Traceback" print of it says nothing true; anything else is printed by
    the hook that was in place."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received:
        return
    _hooks[-1](unraisable)


def check_stop() -> None:
    """Raise the first received stop signal's exception again (nothing when none arrived)."""
    if _received:
        raise stop_exception(_received[0])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM raising at once and recorded for :func:`check_stop`.

    Only in the main thread (the only one Python delivers signals to); elsewhere the block runs with the
    handlers and the record as they are.  Python's print of a stop exception it had to drop ("Exception
    ignored in: <function _xla_gc_callback …>" and a traceback) is left out: the stop is recorded and
    raised again at the next :func:`check_stop`.  A signal the process ignores (``SIG_IGN``: a background job of
    a non-interactive shell ignores Ctrl-C) stays ignored.  Blocks nest: the record starts empty in the
    outermost one, and the previous handlers are back, and the record empty, when that one ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = not _depth
    if outermost:
        _received.clear()
        _hooks.append(sys.unraisablehook)
        sys.unraisablehook = _quiet_dropped_stop
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, _stop)
    _depth.append(None)
    try:
        yield
    finally:
        _depth.pop()
        for number, handler in previous.items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(number, handler)
        if outermost:
            _received.clear()
            sys.unraisablehook = _hooks.pop()
