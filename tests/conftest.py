"""Shared test setup: make ``tests/exact_reference.py`` (independent NumPy formulas) importable."""

import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# The tests call rules, trajectories and theory functions directly and compare them with float64 NumPy
# references, so they turn JAX's 64-bit mode on explicitly; importing prefsim itself changes no global
# setting (sim.precision), which tests/test_rule_extension.py checks in a fresh process.
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
