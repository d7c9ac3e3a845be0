"""prefsim's simulator: exact preference-game dynamics in JAX, metrics, theory and plots.

Data flow: ``sim.spec`` (spec) → ``bandits.games`` (game) → ``sim.rules`` (rule) →
``sim.trajectory`` (trajectory) → ``sim.metrics`` (metrics) → ``sim.plotting`` (plot); ``sim.run``
ties them together.  Importing ``sim`` turns on float64 in JAX (exact mode computes in float64 by
default; a spec's ``precision = "float32"`` switches).
"""

from sim.experiment import run  # noqa: F401
from sim.game import Game  # noqa: F401  (enables float64 first)
from sim.spec import ExperimentSpec, load_spec, parse_spec  # noqa: F401

__all__ = ["Game", "ExperimentSpec", "load_spec", "parse_spec", "run"]
