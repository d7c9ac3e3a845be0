"""Shared test setup: make ``tests/exact_reference.py`` (independent NumPy formulas) importable."""

import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
