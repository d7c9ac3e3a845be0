"""Ending a prefsim process without the interpreter's teardown.

After its last statement, a process that has imported JAX, pandas and Matplotlib spends 0.3–0.7 s (2-core
CI machine, 2026-12-06) tearing itself down: every module's objects are freed one by one and XLA's client
and thread pools are destroyed.  None of it writes anything.  :func:`exit_now` does the parts of a normal
exit that do write — the ``atexit`` handlers (``logging``, ``multiprocessing``'s children, JAX's clean-up)
and flushing the standard streams — and then ends the process with ``os._exit``.  Every file prefsim
writes is closed before its command returns (results are written to a temporary name and renamed).

It ends the process only when no other non-daemon thread runs (Python waits for those at exit);
otherwise it returns and the caller exits the usual way.  The ``prefsim`` console script
(:func:`sim.cli.console`) and a figure process (:func:`sim.figure_worker.serve`) end through it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def other_threads_running() -> bool:
    """Whether a non-daemon thread other than this one is alive (Python's exit would wait for it)."""
    current = threading.current_thread()
    return any(thread is not current and thread.is_alive() and not thread.daemon for thread in threading.enumerate())


def exit_now(status: int) -> None:
    """Run the ``atexit`` handlers, flush standard output and error, and end the process with ``status``
    (0–255) without the interpreter's teardown; returns (doing nothing) while another non-daemon thread
    runs."""
    if other_threads_running():
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (`prefsim … | head`) or a closed stream: nothing to keep
            pass
    os._exit(status)
