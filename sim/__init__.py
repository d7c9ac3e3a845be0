"""prefsim's simulator: exact preference-game dynamics in JAX, metrics, theory and plots.

Data flow: ``sim.spec`` (spec) → ``bandits.games`` (game) → ``sim.rules`` (rule) →
``sim.trajectory`` (trajectory) → ``sim.metrics`` (metrics) → ``sim.plotting`` (plot);
``sim.experiment`` ties them together and :func:`sim.run` is its entry point.

Importing ``sim`` is light: it changes no global setting (exact mode's float64 is scoped, see
:mod:`sim.precision`) and loads pandas, SciPy and plotting only when an attribute below that needs
them is first used.
"""

from __future__ import annotations

from importlib import import_module

#: Public attributes, loaded on first use: name → (module, attribute).
_PUBLIC = {
    "run": ("sim.experiment", "run"),
    "Game": ("sim.game", "Game"),
    "ExperimentSpec": ("sim.spec", "ExperimentSpec"),
    "load_spec": ("sim.spec", "load_spec"),
    "parse_spec": ("sim.spec", "parse_spec"),
    "float64": ("sim.precision", "float64"),
    "enable_compile_cache": ("sim.precision", "enable_compile_cache"),
    "keep_programs": ("sim.program_cache", "keep_programs"),
    "use_cpu_cores": ("sim.cpu_cores", "use_cpu_cores"),
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    """Load a public attribute of :data:`_PUBLIC` on first use (PEP 562), so ``import sim`` stays light."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
