"""What this process may use of the machine, found without importing JAX (figure processes import it).

:func:`usable_cores` is the number of CPU cores the operating system lets this process run on: the
default of JAX's CPU devices (:mod:`sim.cpu_cores`), of the threads that solve per-seed games
(:mod:`sim.seed_games`) and of the figure processes (:mod:`sim.figure_worker`).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
