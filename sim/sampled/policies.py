"""Parametric policies for sampled mode: ``init``/``log_probs`` pure functions over pytree parameters.

Every policy maps parameters to normalised log-probabilities of shape (M, K) (M contexts, K
responses) and starts at π_0:

* ``tabular`` — one logit per (context, response): θ ∈ ℝ^{M×K}, log π = θ − logsumexp θ; starts at
  θ = log π_0.
* ``log_linear`` — π_θ(y|x) ∝ π_ref(y|x)·exp(θᵀφ(x, y)) with θ ∈ ℝ^d (docs/theory.md §C.13); starts at θ = 0,
  i.e. π_0 = π_ref (so it requires ``initial = "reference"``).  log π is affine in θ up to the
  normaliser, which is why APO's parameter extrapolation is exact for it.
* ``mlp`` — π_w(y|x) ∝ π_ref(y|x)·exp(f_w(φ(x, y))), f_w a fully connected tanh network with
  ``hidden_layers`` hidden layers of ``width`` units (default one hidden layer of 256: the "two-layer
  network, width 256" of the APO rebuttal) and a scalar output whose weights start at zero (so
  π_0 = π_ref); hidden weights use LeCun-normal initialisation from the run's key.

Parameters are plain pytrees (arrays, dicts of arrays), so optax and ``jax.tree_util`` act on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import normalize

POLICIES = ("tabular", "log_linear", "mlp")


class PolicyModel(NamedTuple):
    """A policy class as pure functions.

    Attributes:
      name: ``tabular``, ``log_linear`` or ``mlp``.
      init: ``(key, problem) -> params`` (π_0 as described in the module docstring).
      log_probs: ``(params, problem) -> (M, K)`` normalised log-probabilities.
      linear_in_parameters: True when log π is affine in the parameters up to the normaliser
        (tabular, log-linear), i.e. parameter extrapolation equals log-space extrapolation.
    """

    name: str
    init: Callable[[Any, Any], Any]
    log_probs: Callable[[Any, Any], jax.Array]
    linear_in_parameters: bool


def tabular() -> PolicyModel:
    """Tabular logits θ (M, K)."""

    def init(key, problem):
        return jnp.asarray(problem.log_initial)

    def log_probs(params, problem):
        return normalize(params)

    return PolicyModel("tabular", init, log_probs, True)


def log_linear() -> PolicyModel:
    """π_θ ∝ π_ref·exp(Φθ), θ ∈ ℝ^d."""

    def init(key, problem):
        return jnp.zeros(problem.features.shape[-1], problem.log_reference.dtype)

    def log_probs(params, problem):
        return normalize(problem.log_reference + problem.features @ params)

    return PolicyModel("log_linear", init, log_probs, True)


def mlp(width: int = 256, hidden_layers: int = 1) -> PolicyModel:
    """π_w ∝ π_ref·exp(f_w(φ)) with a tanh MLP f_w: ℝ^d → ℝ (zero-initialised output layer)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise PrefsimError(f"run.mlp_width: expected an integer ≥ 1, got {width!r}.")
    if isinstance(hidden_layers, bool) or not isinstance(hidden_layers, int) or hidden_layers < 1:
        raise PrefsimError(f"run.mlp_hidden_layers: expected an integer ≥ 1, got {hidden_layers!r}.")

    def init(key, problem):
        dtype = problem.log_reference.dtype
        sizes = [problem.features.shape[-1]] + [width] * hidden_layers
        layers = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight = jax.random.normal(jax.random.fold_in(key, index), (fan_in, fan_out), dtype) / jnp.sqrt(
                max(fan_in, 1)
            )
            layers.append({"weight": weight, "bias": jnp.zeros((fan_out,), dtype)})
        layers.append({"weight": jnp.zeros((width, 1), dtype), "bias": jnp.zeros((1,), dtype)})
        return layers

    def log_probs(params, problem):
        hidden = problem.features
        for layer in params[:-1]:
            hidden = jnp.tanh(hidden @ layer["weight"] + layer["bias"])
        scores = (hidden @ params[-1]["weight"] + params[-1]["bias"])[..., 0]
        return normalize(problem.log_reference + scores)

    return PolicyModel("mlp", init, log_probs, False)


def make_policy(name: str, width: int = 256, hidden_layers: int = 1) -> PolicyModel:
    """The policy class ``name`` (one of :data:`POLICIES`)."""
    if name == "tabular":
        return tabular()
    if name == "log_linear":
        return log_linear()
    if name == "mlp":
        return mlp(width, hidden_layers)
    raise PrefsimError(f"run.policy: unknown policy {name!r}; choose one of {', '.join(POLICIES)}.")
