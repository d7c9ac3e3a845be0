"""Contextual linear bandits (bandits/linear.py): exact preference matrices and refused inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.errors import PrefsimError
from bandits.linear import LINEAR_KINDS, linear_bradley_terry, linear_preference_game, random_linear_bandit


@pytest.mark.parametrize("kind", LINEAR_KINDS)
def test_linear_preferences_satisfy_p_plus_pt_equals_one_exactly(kind):
    for seed in range(30):
        preference = random_linear_bandit(8, 4, 3, kind, seed)["preference"]
        assert np.all(preference + preference.transpose(0, 2, 1) == 1.0), seed
        assert np.all(np.diagonal(preference, axis1=1, axis2=2) == 0.5), seed
        assert preference.min() >= 0.0 and preference.max() <= 1.0


def test_linear_preference_game_is_the_bilinear_form_and_exact_for_any_skew_matrix():
    rng = np.random.default_rng(3)
    for _ in range(10):
        features = rng.standard_normal((4, 6, 5))
        gaussian = rng.standard_normal((5, 5))
        skew = gaussian - gaussian.T
        preference, scaled = linear_preference_game(features, skew)
        assert np.all(preference + preference.transpose(0, 2, 1) == 1.0)
        assert np.all(np.diagonal(preference, axis1=1, axis2=2) == 0.5)
        # P = ½ + ½·φᵀAφ′/max|φᵀAφ′|, written as loops; scaled_skew = A/max|φᵀAφ′|
        bilinear = np.array([[[f[i] @ skew @ f[j] for j in range(6)] for i in range(6)] for f in features])
        largest = np.abs(bilinear).max()
        np.testing.assert_allclose(preference, 0.5 + 0.5 * bilinear / largest, rtol=0, atol=1e-14)
        np.testing.assert_allclose(scaled, skew / largest, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: linear_bradley_terry([[1.0, 0.0], [0.0, 1.0]], [float("nan"), 1.0]),
            "weights: every weight of θ* must be finite (no NaN or inf), got [nan, 1.0].",
        ),
        (
            lambda: linear_bradley_terry([[1.0, 0.0], [0.0, 1.0]], [1.0, float("-inf")]),
            "weights: every weight of θ* must be finite (no NaN or inf), got [1.0, -inf].",
        ),
        (
            lambda: linear_preference_game([[1.0, 0.0], [0.0, 1.0]], [[0.0, float("nan")], [float("nan"), 0.0]]),
            "skew: every entry of A must be finite (no NaN or inf).",
        ),
        (
            lambda: random_linear_bandit(3, 2, 1, "bradley_terry", 0, scale=float("nan")),
            "scale: expected a finite number, got nan.",
        ),
        (
            lambda: random_linear_bandit(3, 2, 1, "bradley_terry", 0, scale=float("inf")),
            "scale: expected a finite number, got inf.",
        ),
        (
            lambda: random_linear_bandit(3, 2, 1, "bradley_terry", 0, scale="2"),
            "scale: expected a number, got '2'.",
        ),
        (lambda: random_linear_bandit(3, 2, 1, "preference_game", -1), "seed: expected an integer ≥ 0, got -1."),
        (lambda: random_linear_bandit(3, 2, 1, "preference_game", 1.7), "seed: expected an integer ≥ 0, got 1.7."),
    ],
    ids=["nan_weight", "inf_weight", "nan_skew", "nan_scale", "inf_scale", "text_scale", "negative_seed", "float_seed"],
)
def test_non_finite_parameters_and_bad_seeds_are_refused(build, message):
    with pytest.raises(PrefsimError) as info:
        build()
    assert str(info.value) == message
