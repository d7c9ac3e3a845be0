"""Which iterations sim.theorems' linear-rate bounds are checked at, against the theorems' statements.

KL(π*‖π_t) ≤ KL(π*‖π_0)·ρ^t holds for every t ≥ 1 (at t = 0 it is the equality KL_0 = KL_0, not a check).
Mutation testing found that the mirror-prox/optimistic evaluators' mask could start at t = 2 with no test
failing (test_theory.py and test_bounds_registry.py included): iteration 1 would go unchecked."""

import numpy as np
import pytest

import sim  # noqa: F401  (float64)
from sim import theorems

FRAME = {"iteration": np.array([0, 1, 2]), "kl_to_nash": np.array([0.8, 0.5, 0.3])}
GAME = {"preference": np.array([[0.5, 0.6], [0.4, 0.5]]), "tau": 0.2}  # L = max|P − ½| = 0.1


@pytest.mark.parametrize(
    ("bound", "eta", "rate"),
    [
        (theorems.MMD_LINEAR, 1.0, 1 / 1.2),  # 1/(1 + ητ), ηL² = 0.01 ≤ τ
        (theorems.MIRROR_PROX_LINEAR, 1.0, 0.8),  # 1 − ητ, η ≤ 1/(L + τ) = 1/0.3
        (theorems.OPTIMISTIC_LINEAR, 1.0, 0.8),  # 1 − ητ, η ≤ 1/(3L + τ) = 2
    ],
)
def test_a_linear_rate_bound_is_kl0_times_its_rate_to_the_t_checked_from_the_first_iteration(bound, eta, rate):
    values, checked = bound.evaluate({"eta": eta}, FRAME, GAME)
    np.testing.assert_allclose(values, [0.8, 0.8 * rate, 0.8 * rate**2], rtol=1e-14, atol=0)
    assert np.asarray(checked).tolist() == [False, True, True]
