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
import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jax
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from bandits.errors import PrefsimError
from sim.program_cache import usable_directory


def float64() -> AbstractContextManager[Any]:
    """Context manager: JAX computes in 64-bit inside (``jax.enable_x64(True)``), as before outside."""
    return jax.enable_x64(True)


def seed_key(seed: int) -> jax.Array:
    """``jax.random.PRNGKey(seed)`` as JAX's 64-bit mode makes it (the seed's high and low 32 bits), in or out of
    that mode: outside it, PRNGKey keeps the low 32 bits only, so seeds 5 and 2³² + 5 gave one key.

    ``seed``: an integer in [0, 2⁶³) (a TOML integer ≥ 0); another is a :class:`PrefsimError` (PRNGKey's
    OverflowError beyond).  The keys of seeds below 2³² are the same in either mode.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or not 0 <= seed < 2**63:
        raise PrefsimError(f"seed: expected an integer ≥ 0 and below 2⁶³ (a TOML integer), got {seed!r}.")
    with float64():
        return jax.random.PRNGKey(int(seed))


def in_float64(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``function`` inside :func:`float64`."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with float64():
            return function(*args, **kwargs)

    return wrapped


#: Environment variable that switches the persistent compilation cache off (``prefsim`` commands).
NO_CACHE_VARIABLE = "PREFSIM_NO_COMPILE_CACHE"
#: Environment variable naming the cache directory (default: ``$XDG_CACHE_HOME/prefsim/jax``).
CACHE_DIR_VARIABLE = "PREFSIM_COMPILE_CACHE_DIR"


def on_device(values: ArrayLike, dtype: DTypeLike | None = None) -> jax.Array:
    """``jnp.asarray(values, dtype)`` without a compiled program for host data.

    JAX 0.10 stages ``jnp.asarray`` of a NumPy array as a small jitted program, traced, lowered and
    loaded (from the compile cache) once per shape and process, ~5 ms each; ``jax.device_put`` of the
    NumPy array only copies it.  The dtype is JAX's for the current 64-bit setting (float64 becomes
    float32 outside :func:`float64`, as ``jnp.asarray`` makes it); device arrays go to ``astype``.
    """
    if isinstance(values, jax.Array):
        return values if dtype is None or values.dtype == np.dtype(dtype) else values.astype(dtype)
    host = np.asarray(values, dtype)
    return jax.device_put(host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False))


def compile_cache_directory() -> Path:
    """Where compiled programs are kept: ``$PREFSIM_COMPILE_CACHE_DIR``, else ``$XDG_CACHE_HOME/prefsim/jax``
    (``~/.cache/prefsim/jax``)."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "prefsim" / "jax"


def enable_compile_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache, so a later process that runs the same shapes compiles
    nothing; returns the directory, or ``None`` when ``$PREFSIM_NO_COMPILE_CACHE`` is set.

    This changes JAX's global configuration, so prefsim calls it only in its own commands (``prefsim
    run``/``plot``/…); a Python user opts in by calling it.  Every compiled program is cached, however
    fast it compiled (the trajectories of small games compile in about a second).
    """
    if os.environ.get(NO_CACHE_VARIABLE):
        return None
    path = usable_directory(directory if directory is not None else compile_cache_directory())
    if path is None:
        return None  # an unwritable cache directory costs speed, never the run
    # a cache entry that cannot be written or read back (a full disk, a file-size limit, a truncated entry)
    # costs a compilation, never the run:
    # JAX says so with a warning per entry, which the command would print before its own clear message
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
