"""When a rule's ``reference_every`` moves its reference in a run, without JAX or the rules.

:mod:`sim.rules.reference` holds the advancement itself; this module only says whether a run of T updates
ever makes one, so that bounds, warnings and figure processes (which import no JAX) can ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def never_advances(every: object, iterations: int) -> bool:
    """True when a concrete ``reference_every`` M never moves the reference in a run of ``iterations`` updates:
    the first advance is before the update M → M+1, so it needs M ≤ T − 1."""
    return isinstance(every, (int, float)) and not isinstance(every, bool) and every >= iterations


def as_run(parameters: Mapping[str, Any], iterations: int) -> dict:
    """``parameters`` as a run of ``iterations`` updates executes them: without a ``reference_every`` that
    :func:`never_advances`, whose run is the fixed-reference rule's (so are its theorems)."""
    if never_advances(parameters.get("reference_every"), iterations):
        return {key: value for key, value in parameters.items() if key != "reference_every"}
    return dict(parameters)
