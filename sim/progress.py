"""Progress of ``prefsim run`` / ``prefsim plot``: a bar on a terminal, one line per step otherwise,
nothing under ``--quiet``.

A :class:`Progress` is the ``progress`` callable of :func:`sim.run` and :func:`sim.plotting.plot_run`:
called with a message it prints the message (above the bar on a terminal); its :meth:`Progress.stage`
is called before each step (a rule table of the run — compiled and run as one call — or a figure),
and shows how many steps are done, the elapsed time and an estimate of the time left (the mean time
per finished step × the steps left).

    [#######·········] 3/7 rules · running apo · 41 s elapsed, ~55 s left
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
MODES = ("auto", "bar", "lines", "quiet")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Prints messages and step progress to ``stream`` (default stdout).

    Args:
      stream: where to write.
      mode: ``bar`` (redrawn in place with carriage returns), ``lines`` (one line per step),
        ``quiet`` (nothing at all), or ``auto``: ``bar`` when ``stream`` is a terminal, else ``lines``.
      clock: a function returning seconds (``time.monotonic``; tests pass a fake).
    """

    def __init__(self, stream: TextIO | None = None, mode: str = "auto", clock=time.monotonic):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.stream = sys.stdout if stream is None else stream
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self.clock = clock
        self._phase: str | None = None
        self._phase_start = 0.0
        self._bar = ""

    def __call__(self, message: str) -> None:
        """Print one message (above the bar, which is redrawn)."""
        if self.mode == "quiet":
            return
        if self.mode == "bar" and self._bar:
            self.stream.write("\r" + " " * len(self._bar) + "\r")
        self.stream.write(message + "\n")
        if self.mode == "bar" and self._bar:
            self.stream.write(self._bar)
        self.stream.flush()

    def stage(self, index: int, total: int, label: str, unit: str = "rules") -> None:
        """Step ``index`` (0-based) of ``total`` begins: ``label`` says what it is."""
        if self.mode == "quiet":
            return
        now = self.clock()
        if self._phase != unit or index == 0:
            self._phase, self._phase_start = unit, now
        elapsed = now - self._phase_start
        left = f"~{_duration(elapsed / index * (total - index))} left" if index > 0 else "time left: after the first"
        text = f"{index}/{total} {unit} · {label} · {_duration(elapsed)} elapsed, {left}"
        if self.mode == "lines":
            self.stream.write(f"prefsim: {text}\n")
        else:
            filled = int(round(BAR_WIDTH * index / max(total, 1)))
            bar = f"[{'#' * filled}{'·' * (BAR_WIDTH - filled)}] {text}"
            padding = " " * max(0, len(self._bar) - len(bar))
            self._bar = bar
            self.stream.write("\r" + bar + padding)
        self.stream.flush()

    def finish(self) -> None:
        """End the current bar (a no-op in the other modes)."""
        if self.mode == "bar" and self._bar:
            self.stream.write("\r" + " " * len(self._bar) + "\r")
            self.stream.flush()
            self._bar = ""
        self._phase = None
