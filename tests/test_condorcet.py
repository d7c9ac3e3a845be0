"""sim.condorcet: how often a random game has a Condorcet winner, against exact counts and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from exact_reference import bradley_terry_matrix, cyclic_matrix

from bandits import preference as preference_models
from bandits.errors import PrefsimError
from sim import condorcet, nash


@pytest.mark.parametrize("arms", [2, 3, 4, 5])
def test_tournament_enumeration_matches_the_closed_form(arms):
    with_winner, total = condorcet.tournament_condorcet_count(arms)
    # a winner beats the K − 1 others; the remaining (K−1)(K−2)/2 pairs are free; winners are exclusive
    assert total == 2 ** (arms * (arms - 1) // 2)
    assert with_winner == arms * 2 ** ((arms - 1) * (arms - 2) // 2)
    for name in ("random (lower_triangle)", "random (skew_logits)"):
        assert condorcet.exact_condorcet_probability(name, arms) == with_winner / total


def test_has_condorcet_winner_on_hand_made_games():
    assert not condorcet.has_condorcet_winner(cyclic_matrix(1.0))
    assert condorcet.has_condorcet_winner(bradley_terry_matrix([0.0, 2.0, 1.0]))
    # a tie with the best arm: only a weak winner, not a Condorcet winner
    assert not condorcet.has_condorcet_winner(bradley_terry_matrix([2.0, 2.0, 1.0]))
    # the same notion as sim.nash.condorcet_winner
    for matrix in (cyclic_matrix(0.5), bradley_terry_matrix([0.3, -1.0, 0.7, 0.1])):
        assert condorcet.has_condorcet_winner(matrix) is (nash.condorcet_winner(matrix) is not None)


@pytest.mark.parametrize("construction", list(condorcet.CONSTRUCTIONS))
def test_two_arms_always_have_a_winner(construction):
    estimate = condorcet.condorcet_frequency(construction, 2, samples=50)
    assert estimate.hits == estimate.samples == 50 and estimate.estimate == 1.0
    assert estimate.high == 1.0 and estimate.low == pytest.approx(50 / (50 + 1.959963984540054**2))


@pytest.mark.parametrize("arms", [3, 6, 10])
def test_bradley_terry_always_has_a_winner(arms):
    estimate = condorcet.condorcet_frequency("bradley_terry (random rewards)", arms, samples=100)
    assert estimate.hits == 100
    assert condorcet.exact_condorcet_probability("bradley_terry (random rewards)", arms) == 1.0


@pytest.mark.parametrize("construction", ["random (lower_triangle)", "random (skew_logits)"])
@pytest.mark.parametrize("arms", [3, 5])
def test_random_games_match_k_over_two_to_the_k_minus_one(construction, arms):
    estimate = condorcet.condorcet_frequency(construction, arms, samples=600)
    exact = arms / 2 ** (arms - 1)
    assert estimate.low <= exact <= estimate.high
    # four standard errors: a wrong closed form (e.g. 1/K) would be far outside
    assert abs(estimate.estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / 600)
    assert not estimate.low <= 1 / arms <= estimate.high


def test_two_equally_weighted_bradley_terry_components_always_have_a_winner():
    # ½σ(x) + ½σ(y) > ½ ⟺ x + y > 0: the winner is argmax(r_1 + r_2)
    rng = np.random.default_rng(3)
    for _ in range(200):
        rewards = 5.0 * rng.uniform(size=(2, 6))
        matrix = preference_models.bradley_terry_mixture(rewards)
        assert nash.condorcet_winner(matrix) == int(np.argmax(rewards.sum(axis=0)))
    name = "bt_mixture (2 random BT, scale 5)"
    assert condorcet.exact_condorcet_probability(name, 7) == 1.0
    assert condorcet.condorcet_frequency(name, 7, samples=100).hits == 100


def test_mixtures_of_bradley_terry_models_sometimes_lack_a_winner():
    estimate = condorcet.condorcet_frequency("bt_mixture (3 random BT, scale 5)", 6, samples=300)
    assert 0 < estimate.hits < estimate.samples
    assert math.isnan(condorcet.exact_condorcet_probability("bt_mixture (3 random BT, scale 5)", 6))


def test_wilson_interval_closed_forms():
    assert condorcet.Z_95 == pytest.approx(1.959963984540054, rel=1e-15)  # Φ⁻¹(0.975): a 95% interval
    # Wilson's 95% interval for 3 of 10, computed by hand from the formula below
    assert condorcet.wilson_interval(3, 10) == (pytest.approx(0.107791, abs=1e-6), pytest.approx(0.603222, abs=1e-6))
    z2 = condorcet.Z_95**2
    assert condorcet.wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    low, high = condorcet.wilson_interval(3, 10)
    mirror = condorcet.wilson_interval(7, 10)
    assert mirror == (pytest.approx(1 - high), pytest.approx(1 - low))
    # (p̂ + z²/2n ± z√(p̂q̂/n + z²/4n²)) / (1 + z²/n) at p̂ = 0.3, n = 10
    centre = (0.3 + z2 / 20) / (1 + z2 / 10)
    half = condorcet.Z_95 * math.sqrt(0.21 / 10 + z2 / 400) / (1 + z2 / 10)
    assert (low, high) == (pytest.approx(centre - half), pytest.approx(centre + half))


def test_bad_arguments():
    with pytest.raises(PrefsimError, match="construction"):
        condorcet.condorcet_frequency("tournament", 3)
    with pytest.raises(PrefsimError, match="samples"):
        condorcet.condorcet_frequency("random (lower_triangle)", 3, samples=0)
    with pytest.raises(PrefsimError, match="game.arms"):
        condorcet.condorcet_frequency("random (lower_triangle)", 1)
    # counts that are no binomial outcome: more successes than trials, negative, or not whole numbers
    for successes, trials in ((5, 3), (-1, 3), (1.5, 3)):
        with pytest.raises(PrefsimError, match="successes"):
            condorcet.wilson_interval(successes, trials)
    with pytest.raises(PrefsimError, match="trials"):
        condorcet.wilson_interval(0, 0)
    with pytest.raises(PrefsimError, match="construction"):
        condorcet.exact_condorcet_probability("tournament", 3)


def test_figure_has_its_legend_outside_and_a_title_that_fits(tmp_path):
    estimates = condorcet.condorcet_frequencies((2, 3, 5), samples=40)
    assert [(e.construction, e.arms) for e in estimates[:3]] == [("random (lower_triangle)", k) for k in (2, 3, 5)]
    path = tmp_path / "condorcet.png"
    figure = condorcet.plot_condorcet_frequency(estimates, path)
    assert path.stat().st_size > 0
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    legend = axes.get_legend()
    assert legend.get_window_extent(renderer).x0 >= axes.get_window_extent(renderer).x1
    title = axes.title.get_window_extent(renderer)
    assert title.x0 >= 0 and title.x1 <= figure.bbox.x1
    assert len(legend.get_texts()) == len(condorcet.CONSTRUCTIONS) + 1
    lines = [line for line in axes.get_lines() if line.get_linestyle() == "-"]
    np.testing.assert_allclose(lines[0].get_ydata(), [e.estimate for e in estimates[:3]])
