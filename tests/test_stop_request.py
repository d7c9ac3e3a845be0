"""sim.stop_request: Ctrl-C and SIGTERM raise at once and are recorded, so a dropped exception still stops."""

import gc
import os
import signal
import sys
import threading

import pytest

from sim import stop_request
from sim.stop_request import Terminated, check_stop, request_stop, stop_on_signals


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler for the test: a library loaded by an earlier test of the session may have
    set SIGINT to SIG_IGN, which stop_on_signals leaves ignored (test_an_ignored_ctrl_c_stays_ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("number", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_signal_raises_at_once_and_again_at_each_check(number, raised, python_ctrl_c):
    earlier = {n: signal.getsignal(n) for n in stop_request.STOP_SIGNALS}
    with stop_on_signals():
        check_stop()  # nothing arrived yet
        with pytest.raises(raised) as caught:
            os.kill(os.getpid(), number)
            threading.Event().wait(1.0)  # the handler runs here, in the main thread
        assert type(caught.value) is raised
        for _ in range(2):  # the exception was dropped (a GC callback): every later check raises it again
            with pytest.raises(raised):
                check_stop()
    check_stop()  # outside the block: the record is empty and nothing is raised
    assert {n: signal.getsignal(n) for n in stop_request.STOP_SIGNALS} == earlier


def test_a_request_before_the_block_is_cleared_and_the_first_signal_decides():
    request_stop(signal.SIGTERM)  # outside stop_on_signals: cleared when a block starts
    with stop_on_signals():
        check_stop()
        request_stop(signal.SIGTERM)
        request_stop(signal.SIGINT)
        with pytest.raises(Terminated):
            check_stop()
    check_stop()


def test_an_ignored_ctrl_c_stays_ignored():
    """A background job of a non-interactive shell inherits SIGINT ignored: a Ctrl-C meant for the script that
    started it must not stop it."""
    earlier = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # ignored: nothing raised, nothing recorded
            check_stop()
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, earlier)


def test_a_stop_recorded_in_a_nested_block_reaches_the_outer_one():
    with stop_on_signals():
        with stop_on_signals():
            request_stop(signal.SIGTERM)
        with pytest.raises(Terminated):
            check_stop()
    check_stop()  # the outermost block's end empties the record


def test_a_stop_python_drops_in_a_gc_callback_prints_nothing_and_is_raised_at_the_next_check(python_ctrl_c, capfd):
    """JAX's garbage-collection callback is where Python drops a signal handler's exception; it used to print
    "Exception ignored in: <function _xla_gc_callback …>" and a traceback above the clean stop message."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(phase)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside the callback
            fired.append("after")  # some bytecode for the handler to run before

    gc.callbacks.append(callback)
    try:
        with stop_on_signals():
            gc.collect()  # the callback raises Terminated; Python drops it (an unraisable exception)
            assert fired == ["start"]
            with pytest.raises(Terminated):
                check_stop()
    finally:
        gc.callbacks.remove(callback)
    assert capfd.readouterr().err == ""
    assert sys.unraisablehook is not stop_request._quiet_dropped_stop  # the block put the previous hook back
