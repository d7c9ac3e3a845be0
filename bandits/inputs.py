"""Checks of the values a user passes to prefsim's functions: numbers, integers, arrays of real numbers, random
generators, file paths, and sizes against the memory available.  Each returns the value in the type the code
computes with, or raises a :class:`~bandits.errors.PrefsimError` naming the argument and saying what was
expected, where NumPy would raise its own error, convert silently (booleans, None, complex numbers) or start
an allocation that cannot fit.
"""

from __future__ import annotations

import decimal
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bandits.errors import PrefsimError

#: float64 arrays of a result's size that a constructor holds at once (the result, a transposed sum, its
#: residual, a clipped copy, the input and a temporary), counted by :func:`check_size`.
WORKING_COPIES = 6
#: Below this many bytes :func:`check_size` does not ask the system how much memory is available.
SMALL_ARRAY_BYTES = 1 << 28


def check_integer(value: object, name: str, least: int, what: str = "an integer") -> int:
    """``value`` as an int; a clear error naming ``name`` unless it is an integer ≥ ``least`` (a bool, a float
    such as 3.0, a string or None is refused, not converted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise PrefsimError(f"{name}: expected {what} ≥ {least}, got {value!r}.")
    return int(value)


#: Array kinds (NumPy ``dtype.kind``) that are not numbers, in words, for :func:`real_array`'s error.
_NOT_NUMBERS = {
    "b": "booleans",
    "c": "complex numbers",
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "M": "dates",
    "m": "time spans",
    "V": "raw records",
}


def store_checked(instance: object, values: Mapping[str, object]) -> None:
    """Set the fields that ``values`` names on ``instance``, a frozen dataclass: how a ``validate`` method keeps
    the values it has just checked in the types a spec parser gives them (an int for a NumPy integer, a float
    for an int given as a rate, a tuple for a list), so that a spec built directly in Python is the same
    object, JSON and hashable, as the one read from a file."""
    for name, value in values.items():
        object.__setattr__(instance, name, value)


def real_array(values: object, name: str, expected: str = "an array of numbers") -> np.ndarray:
    """``values`` as a float64 array; a clear error naming ``name`` (and saying it ``expected``) unless every
    entry is a real number: text, booleans (also mixed into a list of numbers), None, a ragged list or complex
    numbers are refused (NumPy would raise its own error, convert booleans silently, or drop the imaginary part
    with only a warning).  Fractions and decimals are converted to the nearest float64.  The shape is the caller's
    to check."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise PrefsimError(f"{name}: expected {expected}, could not read it as numbers ({exc}).") from None
    if array.dtype.kind in "iuf" and not isinstance(values, np.ndarray):
        # NumPy reads True and False among numbers as 1 and 0 ([0.5, True, 0.5] → [0.5, 1.0, 0.5])
        found = _boolean_entry(values)
        if found is not _ALL_REAL:
            raise PrefsimError(
                f"{name}: expected {expected}, got a boolean entry {found!r}; give real numbers (True and False "
                "are not read as 1 and 0)."
            )
    if array.dtype.kind == "O":  # numbers NumPy keeps as objects (fractions, decimals, ints beyond 64 bits): one by one
        wrong = next((item for item in array.flat if not _is_real(item)), _ALL_REAL)
        if wrong is not _ALL_REAL:
            raise PrefsimError(f"{name}: expected {expected}, got an entry {wrong!r}; give real numbers.")
        array = np.fromiter(map(_as_float, array.flat), np.float64, array.size).reshape(array.shape)
    if array.dtype.kind not in "iuf":
        raise PrefsimError(
            f"{name}: expected {expected}, got {_NOT_NUMBERS.get(array.dtype.kind, array.dtype)} "
            f"(dtype {array.dtype}); give real numbers."
        )
    return np.asarray(array, dtype=np.float64)  # no copy of a float64 array


#: What :func:`real_array` finds when every entry of an object array is a real number.
_ALL_REAL = object()


#: The types of a row of numbers :func:`_boolean_entry` passes without looking at each entry.
_PLAIN_NUMBERS = frozenset({float, int})


def _boolean_entry(values: object) -> object:
    """The first boolean (Python's or NumPy's, or an array of them) in ``values`` and the lists, tuples and
    arrays it nests, or :data:`_ALL_REAL` when it holds none."""
    if isinstance(values, (bool, np.bool_)):
        return values
    if isinstance(values, (list, tuple)):
        if set(map(type, values)) <= _PLAIN_NUMBERS:  # a row of floats: one pass in C
            return _ALL_REAL
        for item in values:
            found = _boolean_entry(item)
            if found is not _ALL_REAL:
                return found
        return _ALL_REAL
    dtype = getattr(values, "dtype", None)  # a NumPy or JAX array among the lists
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return values
    return _ALL_REAL


def _is_real(value: object) -> bool:
    """Whether ``value`` is one real number (``numbers.Real``: Python's and NumPy's ints and floats, fractions; or a
    ``decimal.Decimal``, which is not registered as one but is a real number as exact as a fraction), not a bool."""
    return isinstance(value, (numbers.Real, decimal.Decimal)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: object) -> float:
    """A real number (:func:`_is_real`) as the nearest float64 (``float`` rounds a fraction or a decimal correctly);
    a signalling NaN decimal, which ``float`` refuses to convert, as NaN, and an integer or fraction beyond float64's
    range, for which it raises OverflowError, as ±inf (both refused as not finite where it matters)."""
    if isinstance(value, decimal.Decimal) and value.is_snan():
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_size(numbers: int, name: str, what: str, copies: int = WORKING_COPIES) -> None:
    """Refuse, before anything is allocated, an array of ``numbers`` float64 entries (``copies`` of them held at
    once) that does not fit in the memory available (:func:`available_memory`); NumPy would
    otherwise fail part-way, or the system end the process.  ``name``: the argument that sets the size,
    ``what``: the array, in words (``"the K×K preference matrix"``)."""
    needed = 8 * int(numbers) * copies
    if needed <= SMALL_ARRAY_BYTES:  # not worth asking the system (~30 µs), and a game is built per seed
        return
    available = available_memory()
    if available is not None and needed > available:
        raise PrefsimError(
            f"{name}: {what} needs {int(numbers):.3g} numbers, about {needed / 2**30:.3g} GiB of memory with its "
            f"working copies, more than the {available / 2**30:.3g} GiB available; make it smaller."
        )


def finite_number(value: object, name: str) -> float:
    """``value`` as a finite float; a clear error naming ``name`` otherwise (a string such as "1.5", a bool,
    None, a complex number, an array of more than one entry, NaN, inf, an integer too large for a float).  A real
    number of any type (a ``fractions.Fraction``, a ``decimal.Decimal``, a NumPy scalar; converted to the nearest
    float64) and a 0-d array of numbers (NumPy's, JAX's) are numbers."""
    value, number = _real_number(value)
    if number is None:
        raise PrefsimError(f"{name}: expected a number, got {shortened(repr(value))}.")
    if not np.isfinite(number):
        raise PrefsimError(f"{name}: expected a finite number, got {shortened(repr(value))}.")
    return number


def is_finite_number(value: object) -> bool:
    """Whether :func:`finite_number` takes ``value`` (for a check whose error message says more than its own)."""
    number = _real_number(value)[1]
    return number is not None and bool(np.isfinite(number))


def _real_number(value: object) -> tuple[object, float | None]:
    """``(value, float)`` for one real number (a 0-d array of numbers: its entry, as ``value`` too; the float by
    :func:`_as_float`); ``(value, None)`` for anything else (:func:`_is_real`)."""
    if not isinstance(value, (numbers.Number, str, bytes)) and hasattr(value, "__array__"):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, RuntimeError):  # e.g. a tensor that tracks gradients: refused below
            array = None
        if array is not None and array.ndim == 0 and array.dtype.kind in "iuf":
            value = array.item()
    if not _is_real(value):
        return value, None
    return value, _as_float(value)


def shortened(text: str, limit: int = 80) -> str:
    """``text`` cut at ``limit`` characters, ending in "…" (an integer of 400 digits, or a list of rewards, in an
    error message)."""
    return text if len(text) <= limit else text[: limit - 3] + "…"


def check_rng(rng: object) -> np.random.Generator:
    """``rng`` unchanged; a clear error unless it is a ``numpy.random.Generator`` (``np.random.default_rng(seed)``)."""
    if not isinstance(rng, np.random.Generator):
        raise PrefsimError(
            f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}."
        )
    return rng


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of ``/proc/meminfo``, else ``sysconf``),
    or None when unknown: what a size is checked against before anything is allocated."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def as_path(value: object, name: str) -> Path:
    """``value``, a ``str`` or ``os.PathLike``, as a :class:`~pathlib.Path`; a clear error naming ``name`` for
    anything else (None, bytes, a number, an array: ``Path`` would raise a TypeError) or for a path holding a NUL
    byte, which no file can have."""
    if not isinstance(value, (str, os.PathLike)):
        raise PrefsimError(f"{name}: expected a file path (a str or pathlib.Path), got {type(value).__name__}.")
    if "\x00" in os.fspath(value):
        raise PrefsimError(f"{name}: the path {os.fspath(value)!r} contains a NUL byte.")
    return Path(value)
