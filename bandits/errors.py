"""The one error type of prefsim.

Every check of user input (a preference matrix, a reference policy, a spec field, a rule
parameter) raises :class:`PrefsimError` with a one-paragraph message that names the field or the
rule, seed and iteration.  The CLI turns it into ``error: <message>`` and a non-zero exit status,
without a Python traceback.  It lives in ``bandits`` because that is the lowest layer; ``sim`` and
``llm_bridge`` re-use it.
"""

import os
from pathlib import Path


class PrefsimError(ValueError):
    """Bad input or a failed run, explained in one paragraph (field, or rule / seed / iteration)."""


def describe_os_error(exc: OSError) -> str:
    """An operating-system error as the command lines print it: its reason and the file (``No such file or
    directory (/proc/out)``)."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"{exc.strerror or exc}{where}"


def os_reason(exc: OSError) -> str:
    """An operating-system error's reason alone (``No space left on device``), or its type's name without one."""
    return exc.strerror or type(exc).__name__


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
