"""sim.process_exit.exit_now: what a normal exit writes is written, the status is kept, and a process
with another running thread is left to exit the usual way."""

import subprocess
import sys

from python_process import REPO, run_python


def test_exit_now_runs_the_atexit_handlers_flushes_the_streams_and_keeps_the_status(tmp_path):
    marker = tmp_path / "atexit.txt"
    code = (
        "import atexit, sys\n"
        "from sim.process_exit import exit_now\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('handler ran'))\n"
        "sys.stdout.write('buffered, no newline')\n"  # a pipe is block-buffered: lost without the flush
        "sys.stderr.write('to stderr')\n"
        "exit_now(3)\n"
        "print('not reached')\n"
    )
    result = run_python(code)
    assert result.returncode == 3
    assert result.stdout == "buffered, no newline"
    assert result.stderr == "to stderr"
    assert marker.read_text() == "handler ran"


def test_exit_now_skips_the_interpreter_teardown():
    """An object's finaliser that teardown would call is not called: the process ended before it."""
    code = (
        "from sim.process_exit import exit_now\n"
        "class Loud:\n"
        "    def __del__(self):\n"
        "        print('torn down', flush=True)\n"
        "kept = Loud()\n"
        "exit_now(0)\n"
    )
    result = run_python(code)
    assert result.returncode == 0 and result.stdout == ""
    assert run_python(code.replace("exit_now(0)\n", "")).stdout == "torn down\n"  # the check can fail


def test_exit_now_returns_while_another_thread_runs():
    code = (
        "import threading, time\n"
        "from sim.process_exit import exit_now, other_threads_running\n"
        "release = threading.Event()\n"
        "worker = threading.Thread(target=lambda: (release.wait(), print('thread finished', flush=True)))\n"
        "worker.start()\n"
        "assert other_threads_running()\n"
        "exit_now(5)\n"
        "print('returned', flush=True)\n"
        "release.set()\n"
        "worker.join()\n"
        "assert not other_threads_running()\n"
        "daemon = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
        "daemon.start()\n"
        "assert not other_threads_running()  # daemon threads do not hold an exit back\n"
        "exit_now(4)\n"
    )
    result = run_python(code)
    assert result.returncode == 4, result.stderr
    assert result.stdout == "returned\nthread finished\n"


def test_the_prefsim_command_keeps_its_exit_status_and_its_error_message(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(tmp_path / "absent.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
