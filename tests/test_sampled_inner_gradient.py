"""The sampled table's ``inner_gradient``: the largest absolute gradient entry of the inner loss where the
inner loop ended, so that "the inner problem was solved" can be read off a run instead of assumed.

:func:`sim.sampled.engine.optimise` is checked on a least-squares objective against its gradient written out
in NumPy (both loops: fixed steps and the ``tolerance`` while-loop, full batch and minibatches); a tabular
DPO run reports a large gradient after one inner step and one below the tolerance when run to it.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sim
from sim.diagnostics import DegenerateRunWarning
from sim.sampled.engine import optimise

MATRIX = np.array([[1.0, 0.5, 0.0], [0.0, 2.0, -1.0], [1.5, 0.0, 1.0], [0.5, -0.5, 0.25]])
TARGET = np.array([1.0, -2.0, 0.5, 3.0])


def _objective(params, batch):
    residual = batch["rows"] @ params["theta"] - batch["target"]
    return 0.5 * jnp.mean(residual**2)


@pytest.mark.parametrize(
    "tolerance, minibatch_size, steps", [(None, None, 7), (None, 2, 7), (1e-3, None, 100000), (None, None, 1)]
)
def test_optimise_returns_the_full_batch_gradient_at_its_final_parameters(tolerance, minibatch_size, steps):
    settings = SimpleNamespace(tolerance=tolerance, minibatch_size=minibatch_size, inner_steps=steps)
    batch = {"rows": jnp.asarray(MATRIX), "target": jnp.asarray(TARGET)}  # float64: tests/conftest.py
    start = {"theta": jnp.zeros(3)}
    params, loss, largest = optimise(_objective, start, batch, jax.random.PRNGKey(0), optax.sgd(0.1), settings)
    theta = np.asarray(params["theta"])
    residual = MATRIX @ theta - TARGET
    gradient = MATRIX.T @ residual / len(TARGET)  # ∂/∂θ of ½·mean(residual²)
    assert float(loss) == pytest.approx(0.5 * np.mean(residual**2), rel=1e-12)
    assert float(largest) == pytest.approx(np.max(np.abs(gradient)), rel=1e-10)
    if tolerance is not None:
        assert float(largest) <= tolerance


def _dpo_run(run: dict):
    spec = {
        "iterations": 2,
        "seeds": 2,
        "game": {"kind": "bradley_terry", "rewards": "random", "arms": 4, "tau": 0.0},
        "rule": [{"name": "dpo", "beta": [1.0, 0.2]}],
        "run": {"mode": "sampled", "pairs_per_iteration": 400, "policy": "tabular", "learning_rate": 0.1} | run,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateRunWarning)
        return sim.run(spec)


def test_sampled_table_reports_the_inner_gradient():
    one_step = _dpo_run({"optimizer": "adam", "inner_steps": 1})
    assert one_step[one_step.iteration == 0].inner_gradient.isna().all()
    assert one_step[one_step.iteration > 0].inner_gradient.min() > 1e-3  # one step from θ_t solves nothing


@pytest.mark.parametrize("optimizer, rate", [("adam", 0.1), ("sgd", 0.1)])
def test_tolerance_stops_at_parameters_whose_gradient_is_within_it(optimizer, rate):
    """The while-loop ends where the gradient is ≤ tolerance, not one step past it: it used to test the
    gradient before a step and then take the step, which Adam (a step ≈ lr whatever the gradient) undid
    (tabular DPO: 8e-6 after stopping at ≤ 1e-6)."""
    settings = SimpleNamespace(tolerance=1e-6, minibatch_size=None, inner_steps=100000)
    batch = {"rows": jnp.asarray(MATRIX), "target": jnp.asarray(TARGET)}
    make = {"adam": optax.adam, "sgd": optax.sgd}[optimizer]
    _, _, largest = optimise(_objective, {"theta": jnp.zeros(3)}, batch, jax.random.PRNGKey(0), make(rate), settings)
    assert float(largest) <= 1e-6


def test_tolerance_solves_each_sampled_iteration_with_adam():
    solved = _dpo_run({"optimizer": "adam", "inner_steps": 20000, "tolerance": 1e-6})
    assert solved[solved.iteration > 0].inner_gradient.max() <= 1e-6  # 8e-6 before the loop stopped at it
