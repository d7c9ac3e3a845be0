"""Experiment tracking for the bridge: ``[run] report_to = "tensorboard"`` (TRL's / transformers' name).

Every rule gets two TensorBoard runs under ``<out>/tensorboard/<label>/``:

* ``iterations`` — every numeric column of the rule's ``metrics.csv`` row (:mod:`llm_bridge.metrics`)
  as ``iteration/<column>``, at step t = 0 … T (the row of π_t; NaN entries, such as the reward of a
  preference-only oracle, are left out);
* ``steps`` — per optimiser step, at the rule's cumulative step count: ``train/loss`` (the weighted
  mean loss of the step, before it), ``train/grad_norm`` (global gradient norm before clipping),
  ``train/learning_rate``, ``train/pairs`` (pairs in the step) and ``train/iteration`` (t + the fraction
  of the update t → t+1 done after the step, over both stages of extragradient and optimistic MD, like
  TRL's fractional ``epoch``: it grows from t to t + 1 in every iteration).

Only the main process writes.  The writers open with TensorBoard's ``purge_step`` at the first
unrecorded iteration / step, so after a resume the events an interrupted iteration wrote before it was
recorded are hidden when the files are read (TensorBoard's restart semantics), and the redone
iteration's events replace them.  ``torch.utils.tensorboard`` (which needs the ``tensorboard``
package) is imported only when TensorBoard is asked for, so the bridge starts without it.

TensorBoard writes each event file in a thread of its own; a failed write there (a full disk) is raised
again in the run at the writer's next call, where it becomes a :class:`PrefsimError` naming the directory,
and the thread's own traceback print is left out.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from pathlib import Path

from bandits.errors import PrefsimError

REPORT_TO = ("none", "tensorboard")
"""Accepted values of ``[run] report_to`` (a string or a list of strings)."""


def parse_report_to(value: object) -> tuple[str, ...]:
    """``[run] report_to`` as a tuple of reporter names (``"none"`` and ``[]`` mean no reporting)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise PrefsimError(
            f'run.report_to must be a string or a list of strings ("none", "tensorboard"), got {value!r}.'
        )
    unknown = sorted(set(names) - set(REPORT_TO))
    if unknown:
        raise PrefsimError(f"run.report_to: unknown reporter(s) {', '.join(unknown)}; known: {', '.join(REPORT_TO)}.")
    return tuple(n for n in dict.fromkeys(names) if n != "none")


class Reporter:
    """Does nothing: no ``report_to``, or not the main process."""

    def start_rule(self, label: str, finished: int, steps_done: int) -> None:
        """Begin (or resume after ``finished`` recorded iterations and ``steps_done`` optimiser steps) a rule."""

    def log_step(self, label: str, values: dict) -> None:
        """One optimiser step's scalars (the step number is the rule's running count)."""

    def log_iteration(self, label: str, row: dict) -> None:
        """One metrics row (π_t for t = ``row["iteration"]``)."""

    def close(self) -> None:
        """Flush and close every writer."""


class TensorBoardReporter(Reporter):
    """Writes TensorBoard event files under ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # heavy optional import, only when asked for
        except ImportError:
            raise PrefsimError(
                'run.report_to = "tensorboard" needs the tensorboard package: `pip install tensorboard` '
                "(part of prefsim[llm])."
            ) from None
        self._writer_class = SummaryWriter
        self.directory = Path(directory)
        self.writers: dict = {}
        self.steps: dict = {}
        self._threads: set = set()
        """The writers' threads, whose failed writes :meth:`_quiet_writer_failure` leaves unprinted."""
        self._previous_hook = threading.excepthook
        threading.excepthook = self._quiet_writer_failure

    def _quiet_writer_failure(self, args) -> None:
        """``threading.excepthook`` while the reporter is open: an OSError of one of its writers' threads is
        raised again at that writer's next call (:meth:`_writing`), so its print is left out."""
        if args.thread in self._threads and issubclass(args.exc_type, OSError):
            return
        self._previous_hook(args)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Writer calls in the block: a failed write is a :class:`PrefsimError` naming the directory."""
        try:
            yield
        except OSError as exc:
            raise PrefsimError(
                f"could not write the TensorBoard events under {str(self.directory)!r} ({exc.strerror or exc}); "
                "free disk space and rerun with --resume (finished iterations are kept)."
            ) from None

    def start_rule(self, label: str, finished: int, steps_done: int) -> None:
        for writer in self.writers.pop(label, {}).values():
            with self._writing():
                writer.close()
        root = self.directory / label
        # events at or after these steps belong to iterations that were not recorded: hidden when read back
        # (π_0's row is logged again when no iteration was recorded)
        before = set(threading.enumerate())
        try:
            with self._writing():
                self.writers[label] = {
                    "iterations": self._writer_class(
                        str(root / "iterations"), purge_step=finished + 1 if finished else 0
                    ),
                    "steps": self._writer_class(str(root / "steps"), purge_step=steps_done + 1),
                }
        finally:
            self._threads |= set(threading.enumerate()) - before
        self.steps[label] = steps_done

    def log_step(self, label: str, values: dict) -> None:
        self.steps[label] += 1
        writer = self.writers[label]["steps"]
        with self._writing():
            for name, value in values.items():
                writer.add_scalar(f"train/{name}", float(value), self.steps[label])

    def log_iteration(self, label: str, row: dict) -> None:
        writer = self.writers[label]["iterations"]
        iteration = int(row["iteration"])
        with self._writing():
            for name, value in row.items():
                if name in ("rule", "iteration") or isinstance(value, (str, bool)) or value is None:
                    continue
                value = float(value)
                if not math.isnan(value):
                    writer.add_scalar(f"iteration/{name}", value, iteration)
            writer.flush()
            self.writers[label]["steps"].flush()

    def close(self) -> None:
        """Close every writer (all of them, even after a failed one), then raise the first failure."""
        failure = None
        for writers in self.writers.values():
            for writer in writers.values():
                try:
                    with self._writing():
                        writer.close()
                except PrefsimError as exc:
                    failure = failure or exc
        self.writers.clear()
        if threading.excepthook == self._quiet_writer_failure:
            threading.excepthook = self._previous_hook
        if failure is not None:
            raise failure


def make_reporter(report_to: tuple, directory: Path, main: bool) -> Reporter:
    """The reporter of ``[run] report_to`` (a no-op one on processes other than the main one)."""
    if main and "tensorboard" in report_to:
        return TensorBoardReporter(directory)
    return Reporter()
