"""Contextual linear bandits (bandits/linear.py): exact preference matrices and refused inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.linear import LINEAR_KINDS, linear_preference_game, random_linear_bandit


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
