"""The one error type of prefsim.

Every check of user input (a preference matrix, a reference policy, a spec field, a rule
parameter) raises :class:`PrefsimError` with a one-paragraph message that names the field or the
rule, seed and iteration.  The CLI turns it into ``error: <message>`` and a non-zero exit status,
without a Python traceback.  It lives in ``bandits`` because that is the lowest layer; ``sim`` and
``llm_bridge`` re-use it.
"""


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
