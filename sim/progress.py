"""Progress of ``prefsim run`` / ``prefsim plot``: a bar on a terminal, one line per step otherwise,
nothing under ``--quiet``.

A :class:`Progress` is the ``progress`` callable of :func:`sim.run` and :func:`sim.plotting.plot_run`:
called with a message it prints the message (above the bar on a terminal); its :meth:`Progress.stage`
is called before each step (a rule table of the run — compiled and run as one call — or a figure),
and shows how many steps are done, the elapsed time and an estimate of the time left (the mean time
per finished step × the steps left).

    [#######·········] 3/7 rules · running apo · 41 s elapsed, ~55 s left

Inside one long rule table (a trajectory run in blocks, :func:`sim.shared_engine.run_blocks`) its
:meth:`Progress.within` is told between blocks how many updates are done, and shows the rule's own
progress and time left (the time per update of the blocks after the first, which also compiles):

    [#########·······] apo: 3.2e6/1e7 updates · 41 s elapsed, ~1 min 27 s left (rule 3/7)

On a terminal that is the bar, redrawn after every block; otherwise a line now and then (the first
report, then whenever :data:`LINE_SECONDS` and a tenth of the rule's elapsed time have passed since the
last line: tens of lines for a rule of hours, not one per block); nothing under ``quiet``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
#: Least seconds between two in-rule progress lines when not on a terminal (see :meth:`Progress.within`).
LINE_SECONDS = 10.0
MODES = ("auto", "bar", "lines", "quiet")


def _count(updates: int) -> str:
    """An update count: exact below 10⁵, else three significant digits (3.2e6)."""
    return str(int(updates)) if updates < 100_000 else f"{updates:.3g}".replace("e+0", "e").replace("e+", "e")


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
        self._stage_text = ""
        self._rule_start: float | None = None
        self._rule: tuple | None = None  # (label, start, first report's time, its updates, last line's time)

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
        self._stage_text, self._rule, self._rule_start = f"{unit.rstrip('s')} {index + 1}/{total}", None, now
        if self.mode == "lines":
            self.stream.write(f"prefsim: {text}\n")
        else:
            self._draw(index / max(total, 1), text)
        self.stream.flush()

    def within(self, label: str, done: int, total: int) -> None:
        """Between two blocks of rule ``label``'s trajectory: ``done`` of ``total`` updates are done."""
        if self.mode == "quiet":
            return
        now = self.clock()
        if self._rule is None or self._rule[0] != label:
            start = now if self._rule_start is None else self._rule_start  # the rule began with its stage
            self._rule = (label, start, now, done, None)
        _, start, first_time, first_done, last_line = self._rule
        elapsed = now - start
        if done > first_done and done < total:
            left = f"~{_duration((now - first_time) / (done - first_done) * (total - done))} left"
        elif done >= total:
            left = "done"
        else:
            left = "time left: after the next block"
        where = f" ({self._stage_text})" if self._stage_text else ""
        text = f"{label}: {_count(done)}/{_count(total)} updates · {_duration(elapsed)} elapsed, {left}{where}"
        if self.mode == "lines":
            if last_line is not None and now - last_line < max(LINE_SECONDS, 0.1 * elapsed):
                return
            self._rule = self._rule[:4] + (now,)
            self.stream.write(f"prefsim: {text}\n")
        else:
            self._draw(done / max(total, 1), text)
        self.stream.flush()

    def _draw(self, fraction: float, text: str) -> None:
        filled = int(round(BAR_WIDTH * min(max(fraction, 0.0), 1.0)))
        bar = f"[{'#' * filled}{'·' * (BAR_WIDTH - filled)}] {text}"
        padding = " " * max(0, len(self._bar) - len(bar))
        self._bar = bar
        self.stream.write("\r" + bar + padding)

    def finish(self) -> None:
        """End the current bar (a no-op in the other modes)."""
        if self.mode == "bar" and self._bar:
            self.stream.write("\r" + " " * len(self._bar) + "\r")
            self.stream.flush()
            self._bar = ""
        self._phase = None
