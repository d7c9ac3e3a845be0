"""Float64 where exact mode runs, without changing JAX's global setting behind the user's back.

Exact mode computes in float64.  JAX computes in float32 unless 64-bit mode is on; prefsim does not
switch it on for the whole process when imported.  Instead its entry points (:func:`sim.run`, the
``prefsim`` commands) run inside :func:`float64`, JAX's scoped ``jax.enable_x64(True)``: arrays made
and programs compiled inside are 64-bit, and the setting is as it was afterwards.  Code that calls
the lower-level API directly (rules, trajectories, theory functions on JAX arrays) wraps it in
``with sim.float64():`` or turns 64-bit mode on itself (``jax.config.update("jax_enable_x64", True)``,
as the notebooks and the tests do).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import jax


def float64() -> AbstractContextManager[Any]:
    """Context manager: JAX computes in 64-bit inside (``jax.enable_x64(True)``), as before outside."""
    return jax.enable_x64(True)


def in_float64(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``function`` inside :func:`float64`."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with float64():
            return function(*args, **kwargs)

    return wrapped
