"""Figures drawn by other Python processes, shared with the caller one figure at a time.

A :class:`FigureWorker` is a plain ``python -c`` process (not :mod:`multiprocessing`: nothing of the
caller's ``__main__``, a notebook or a script, is imported again) that imports :mod:`sim.plotting`,
warms Matplotlib up, says it is ready, and then draws the figures it is asked for
(:func:`sim.plotting.serve_figures`).  Messages on its pipes are pickles with an 8-byte length: the
job (what every figure shares), then one metric at a time; the written paths, or the error a figure
raised, come back the same way.  Its standard error goes to a temporary file, read when it fails.

It can be started long before there is anything to draw: ``prefsim run`` starts one per usable core
when the run begins (:func:`sim.cli.start_figure_workers`), so that their imports (about 0.8 s of
Python, Matplotlib and pandas each; no JAX) use cores the run leaves idle while it imports and builds
its games.  A worker runs at the lowest CPU priority, so it only takes time the run leaves idle.

:func:`draw_shared` is the sharing: this process takes figures from the front of the list and each
worker, from a thread that waits on its pipe, from the back, so a fast worker draws more and one that
is not ready yet draws nothing; a figure still out in a worker when everything else is drawn is drawn
here instead (after that worker is stopped) unless the worker is ready and likely to finish first.
With as many ready workers as cores, this process leaves the figures to them (``prefsim run`` then
never imports Matplotlib).  The figures are the same bytes whichever process draws them.  This module
imports neither Matplotlib nor JAX, so starting a worker costs the caller nothing but the process.
"""

from __future__ import annotations

import collections
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from bandits.errors import PrefsimError
from sim.process_exit import exit_now

#: How much lower than the caller's a worker's CPU priority is (``os.nice``; the most there is).
WORKER_NICENESS = 19
#: What a worker process runs: it lowers its priority first, so that its imports (about 1 s of Python,
#: Matplotlib and pandas) only take CPU time the run leaves idle, then serves figures.
WORKER_COMMAND = (
    f"import os; os.nice({WORKER_NICENESS}) if hasattr(os, 'nice') else None; "
    "import sim.plotting as p; p.serve_figures()"
)
#: The byte a worker writes once its imports and warm-up are done, before it reads anything; it names the
#: version of this protocol (answers are ``(paths or error, CPU seconds)``): a worker of another prefsim
#: writes another byte, never counts as ready, and its figures are drawn by the caller.
READY = b"2"
_LENGTH = struct.Struct("<Q")


def send_message(stream: IO[bytes], value: object) -> None:
    """Write ``value`` pickled, after its length (8 bytes, little-endian)."""
    data = pickle.dumps(value)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> object:
    """The next value :func:`send_message` wrote; ``EOFError`` when the stream ends first."""
    header = _read_exactly(stream, _LENGTH.size)
    return pickle.loads(_read_exactly(stream, _LENGTH.unpack(header)[0]))


def _read_exactly(stream: IO[bytes], count: int) -> bytes:
    parts, left = [], count
    while left:
        part = stream.read(left)
        if not part:
            raise EOFError("the stream ended inside a message")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class FigureProcessLost(PrefsimError):
    """A figure process ended (or was stopped) before it answered: its figure can be drawn elsewhere."""


class FigureWorker:
    """A process that imports :mod:`sim.plotting`, then draws the figures of one job on request.

    :meth:`is_ready` (never blocks), :meth:`draw` (one figure, blocks until it is written; the first
    call sends the job), :meth:`stop` (always call it, e.g. in a ``finally``: it ends the process if it
    still runs).
    """

    def __init__(self) -> None:
        # this process's import path, so the worker imports the same prefsim (a script may have set it)
        path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            env={**os.environ, "PYTHONPATH": path},
        )
        self._ready = False
        self._job_sent = False
        self._busy = False
        #: CPU seconds the worker spent on its last figure (what a figure costs when it gets a core; on a busy
        #: machine a worker at the lowest priority takes far longer in wall time), ``None`` before one.
        self.last_cpu_seconds: float | None = None

    @property
    def ready(self) -> bool:
        """Whether the worker has said it is ready, as far as this process has read (no I/O: safe while
        another thread waits in :meth:`draw`)."""
        return self._ready

    def is_ready(self) -> bool:
        """Whether the worker has finished its imports and warm-up (never blocks; False once it has died).
        Reads its pipe: not while another thread is in :meth:`draw`."""
        if not self._ready and self.process.poll() is None:
            readable, _, _ = select.select([self.process.stdout], [], [], 0.0)
            if readable:
                self._ready = self.process.stdout.read(1) == READY
        return self._ready

    def draw(self, job: object, metric: str) -> list[Path]:
        """Draw ``metric``'s figure of ``job`` (a :class:`sim.figure_plan.FigureJob`, sent with the first
        call) and return its paths; the worker's error is raised again here, and a worker that dies
        or was stopped raises :class:`FigureProcessLost` with what it wrote to standard error."""
        self._busy = True
        try:
            if not self._ready:  # blocks until the imports are done
                self._ready = self.process.stdout.read(1) == READY
                if not self._ready:
                    raise EOFError("the figure process ended before it was ready")
            if not self._job_sent:
                send_message(self.process.stdin, job)
                self._job_sent = True
            send_message(self.process.stdin, metric)
            answer = read_message(self.process.stdout)
            if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[1], (int, float))):
                raise ValueError(f"an answer of another protocol: {type(answer).__name__}")
            outcome, self.last_cpu_seconds = answer
        except (EOFError, BrokenPipeError, OSError, ValueError) as exc:
            if self.process.poll() is None:  # alive, but not answering as this protocol says: end it
                self.process.kill()
            raise FigureProcessLost(
                f"a figure process failed (exit {self.process.wait()}; {exc}): {self.stderr_text()}"
            ) from None
        finally:
            self._busy = False
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stderr_text(self, limit: int = 2000) -> str:
        """The end of what the worker wrote to its standard error."""
        try:
            self.errors.seek(0)
            return self.errors.read().decode(errors="replace")[-limit:]
        except (OSError, ValueError):  # closed by stop()
            return ""

    def stop(self) -> None:
        """End the process and close its pipes: an idle worker that has a job sees its input end and exits
        (at once); any other is killed (a figure it was drawing is left unfinished)."""
        if self.process.poll() is None and self._job_sent and not self._busy:
            try:  # never written to here: a draw() starting in another thread fails cleanly on the closed pipe
                self.process.stdin.close()
                self.process.wait(timeout=1.0)
            except (BrokenPipeError, OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.errors):
            try:
                stream.close()
            except (BrokenPipeError, OSError, ValueError):
                pass


def start_workers(count: int, make: Callable[[], FigureWorker] = FigureWorker) -> list[FigureWorker]:
    """Up to ``count`` figure processes: as many as the system starts (a process it cannot start, e.g. at
    its process limit, is one fewer helper, not an error: the caller draws those figures itself)."""
    workers = []
    for _ in range(max(0, count)):
        try:
            workers.append(make())
        except OSError:
            break
    return workers


def serve(draw: Callable[[Any, str], list[Path]], warm_up: Callable[[], None]) -> None:
    """A worker's side of :class:`FigureWorker` (``draw(job, metric)`` draws one figure): warm up, say it
    is ready, read the job, then draw each metric sent until ``None`` (:data:`WORKER_COMMAND` has lowered
    the CPU priority before its imports)."""
    warm_up()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(READY)
    answers.flush()
    try:
        job = read_message(requests)
        while (metric := read_message(requests)) is not None:
            began = time.process_time()
            try:
                outcome = draw(job, metric)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it again
                outcome = exc
            send_message(answers, (outcome, time.process_time() - began))
    except EOFError:  # the caller is gone
        pass
    # the figures are written and closed: end now, not after ~0.2 s of interpreter shutdown
    exit_now(0)


#: Seconds between two looks at the workers while this process leaves the figures to them.
POLL_SECONDS = 0.01
#: The least time this process waits for a worker's next figure before it draws one itself (:func:`draw_shared`).
MIN_PATIENCE_SECONDS = 0.5


def draw_shared(
    metrics: Sequence[str],
    draw_here: Callable[[str], list[Path]],
    job: object,
    workers: Sequence[FigureWorker],
    on_start: Callable[[int, str], None] | None = None,
    average_seconds: float = 0.5,
    cores: int | None = None,
) -> dict[str, list[Path]]:
    """Draw every metric's figure, here (``draw_here``) and in ``workers``; metric → paths.

    This process takes metrics from the front, each worker (from a thread of its own) from the back.
    ``cores``: this process takes a figure only while fewer than ``cores`` workers are ready (ready
    workers then keep every core busy, and this process need not load Matplotlib at all), or when no
    worker has finished a figure for the patience below (workers run at the lowest priority, so on a loaded
    machine they may crawl); without it, this process always takes figures.  ``on_start(done, metric)``
    is called here once per figure, with the number of figures finished so far: before a figure drawn
    here, and for a figure a worker took when this process next looks.

    The patience is twice a typical figure's time (the mean over the figures drawn so far, anywhere;
    ``average_seconds`` before the first), at least :data:`MIN_PATIENCE_SECONDS`.  A figure counts with the
    CPU time it took (a worker's :attr:`FigureWorker.last_cpu_seconds`), not its wall time: on a machine busy
    with other work a worker at the lowest priority gets little CPU, and this process, once the workers have
    finished nothing for the patience, draws the figures left one after another.
    When nothing is left to take, a figure still out in a worker is waited for, for the patience, when the
    worker is ready and has drawn a figure already; otherwise, or when the patience runs out, the worker is
    stopped and the figure drawn here, as is the figure of a worker whose process was lost (:class:`FigureProcessLost`).
    Errors of a figure are raised again, after every worker has stopped.
    """
    pending = collections.deque(metrics)
    lock = threading.Lock()
    done: dict[str, list[Path]] = {}
    failures: list[BaseException] = []
    out = [None] * len(workers)  # the metric each worker draws now
    drew = [0] * len(workers)
    stopped = [False] * len(workers)
    taken: list[str] = []  # metrics workers took, not yet announced here
    seconds: list[float] = []  # how long each finished figure took, here or in a worker

    def feed(index: int) -> None:
        worker = workers[index]
        while True:
            with lock:
                if stopped[index] or not pending:
                    out[index] = None
                    return
                metric = pending.pop()
                out[index] = metric
                taken.append(metric)
            began = time.monotonic()
            try:
                paths = worker.draw(job, metric)
            except FigureProcessLost:  # the process is gone: its figure stays out, to be drawn here
                return
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                with lock:
                    if not stopped[index]:
                        failures.append(exc)
                        out[index] = None
                return
            # what the figure cost: the worker's CPU time where it says (a starved worker's wall time would
            # stretch the patience, and this process, at normal priority, would leave it every figure)
            cost = getattr(worker, "last_cpu_seconds", None)
            with lock:
                if stopped[index]:  # taken back: drawn (or being drawn) here
                    return
                done[metric] = paths
                drew[index] += 1
                seconds.append(cost if cost is not None else time.monotonic() - began)
                out[index] = None

    def patience() -> float:
        typical = sum(seconds) / len(seconds) if seconds else average_seconds
        return max(2.0 * typical, MIN_PATIENCE_SECONDS)

    def announce(metrics_taken: list[str], finished: int) -> None:
        if on_start is not None:
            for metric in metrics_taken:
                on_start(finished, metric)

    for worker in workers:  # a worker whose ready byte waits in its pipe counts as ready from the start
        worker.is_ready()
    feeders = [threading.Thread(target=feed, args=(index,), daemon=True) for index in range(len(workers))]
    for feeder in feeders:
        feeder.start()
    # when a worker last finished a figure: this process leaves figures to ready workers only while they keep
    # finishing them (its own figures are no sign that the workers are getting on)
    workers_finished, last_change = 0, time.monotonic()
    try:
        while True:
            with lock:
                if failures:
                    break
                finished, news = len(done), taken[:]
                taken.clear()
                now = time.monotonic()
                if sum(drew) != workers_finished:
                    workers_finished, last_change = sum(drew), now
                # a worker counts while its thread serves it (not lost, failed or done)
                ready = sum(1 for worker, feeder in zip(workers, feeders) if feeder.is_alive() and worker.ready)
                leave_to_workers = cores is not None and ready >= cores and now - last_change < patience()
                wait = bool(pending) and leave_to_workers
                metric = None if wait or not pending else pending.popleft()
            announce(news, finished)
            if wait:
                time.sleep(POLL_SECONDS)
                continue
            if metric is None:
                break
            announce([metric], finished)
            began = time.process_time()  # CPU time, as a worker's figures count
            done[metric] = draw_here(metric)
            with lock:
                seconds.append(time.process_time() - began)
        for index, feeder in enumerate(feeders):
            if not failures and drew[index] and workers[index].ready:
                feeder.join(timeout=patience())
            with lock:
                metric = out[index]  # still out: the worker is slow, not ready, or lost
                stopped[index] = True
            workers[index].stop()
            feeder.join()
            if metric is not None and not failures:  # taken back from a worker not ready or too slow (announced)
                done[metric] = draw_here(metric)
    finally:
        with lock:
            stopped[:] = [True] * len(workers)
        for worker in workers:
            worker.stop()
    if failures:
        raise failures[0]
    return {metric: done[metric] for metric in metrics}
