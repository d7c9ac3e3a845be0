"""Tests of sim.stats: bootstrap coverage, reproducibility, paired differences, rate fits."""

import numpy as np
import pandas as pd
import pytest

from bandits.errors import PrefsimError
from sim import stats
from sim.figure_plan import figure_title
from sim.summary import format_summary, summary_cell, summary_frame


def synthetic_table(curves: dict, seeds: int, iterations) -> pd.DataFrame:
    """A run-shaped table from ``rule -> f(seed_index, iterations) -> values``."""
    iterations = np.asarray(iterations)
    rows = []
    for rule, function in curves.items():
        for seed in range(seeds):
            values = function(seed, iterations)
            rows.append(
                pd.DataFrame(
                    {"rule": rule, "seed": seed, "iteration": iterations, "kl_to_nash": values, "suboptimality": np.nan}
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_bootstrap_ci_coverage_of_the_mean_is_close_to_nominal():
    rng = np.random.default_rng(1)
    experiments, seeds, true_mean = 300, 30, 2.0
    data = rng.exponential(true_mean, size=(seeds, experiments))  # skewed, like metrics over seeds
    centre, lower, upper = stats.bootstrap_ci(data, resamples=1000)
    coverage = np.mean((lower <= true_mean) & (true_mean <= upper))
    assert centre.shape == (experiments,)
    assert 0.88 <= coverage <= 0.99, coverage
    assert np.all(lower <= centre) and np.all(centre <= upper)


@pytest.mark.parametrize(("seeds", "stated"), [(2, 0.51), (4, 0.79), (8, 0.89), (10, 0.91), (20, 0.93)])
def test_bootstrap_ci_undercovers_with_few_seeds_as_the_few_seeds_warning_states(seeds, stated):
    """The coverage of the 95% percentile interval of a normal mean that sim.diagnostics' few-seeds warning
    and docs/theory.md §D.1 state (4000 experiments: a binomial standard error of ≤ 0.008)."""
    data = np.random.default_rng(123).normal(size=(seeds, 4000))
    _, lower, upper = stats.bootstrap_ci(data, resamples=2000)
    coverage = np.mean((lower <= 0) & (0 <= upper))
    assert abs(coverage - stated) < 0.015, coverage


@pytest.mark.parametrize(
    ("distribution", "stated", "stated_bonferroni_miss"), [("exponential", 0.90, 0.03), ("lognormal", 0.86, 0.07)]
)
def test_bootstrap_ci_undercovers_skewed_metrics_at_20_seeds_as_docs_state(
    distribution, stated, stated_bonferroni_miss
):
    """docs/theory.md §D.1: at 20 seeds the 95% percentile interval of a skewed metric's mean covers it less
    than a normal mean's (93%), and a Bonferroni-corrected interval over 9 cells (99.44%) misses it far more
    often than 0.56% (4000 experiments: binomial standard errors ≤ 0.006 and ≤ 0.004)."""
    rng = np.random.default_rng(123)
    if distribution == "exponential":
        data, truth = rng.exponential(1.0, size=(20, 4000)), 1.0
    else:
        data, truth = rng.lognormal(0.0, 1.0, size=(20, 4000)), float(np.exp(0.5))
    _, lower, upper = stats.bootstrap_ci(data, resamples=2000)
    assert abs(np.mean((lower <= truth) & (truth <= upper)) - stated) < 0.015
    _, lower, upper = stats.bootstrap_ci(data, resamples=2000, confidence=1 - 0.05 / 9)
    assert abs(np.mean((truth < lower) | (upper < truth)) - stated_bonferroni_miss) < 0.01


def test_bootstrap_ci_percentiles_on_a_symmetric_sample_with_known_quantiles():
    """Half zeros, half ones (S = 100): a resample's mean is Binomial(100, ½)/100 exactly.

    Its 2.5% and 97.5% quantiles are 40/100 and 60/100 (CDF(39) = 0.018 < 0.025 < CDF(40) = 0.028);
    the 5% quantile would be 42/100 (CDF(41) = 0.044 < 0.05 < CDF(42) = 0.067).
    """
    binomial = pytest.importorskip("scipy.stats").binom(100, 0.5)
    assert binomial.cdf(39) < 0.025 < binomial.cdf(40) and binomial.cdf(41) < 0.05 < binomial.cdf(42)
    sample = np.repeat([0.0, 1.0], 50)
    centre, lower, upper = stats.bootstrap_ci(sample, resamples=20000)
    assert centre == 0.5
    assert lower == pytest.approx(0.40, abs=1e-12) and upper == pytest.approx(0.60, abs=1e-12)
    _, lower90, upper90 = stats.bootstrap_ci(sample, resamples=20000, confidence=0.90)
    assert lower90 == pytest.approx(0.42, abs=1e-12) and upper90 == pytest.approx(0.58, abs=1e-12)


def test_bootstrap_ci_half_width_is_the_normal_one_at_large_s():
    """A symmetric sample of S = 400 values: each side of the 95% interval is 1.96·sd/√S (sd with divisor S).

    Monte-Carlo error of a 2.5% quantile with B = 20000 resamples is ≈ 1% of the half-width, the
    non-normality of the mean of 400 draws is smaller; a 5%/95% interval would be 1.645/1.96 = 0.84 of it.
    """
    half = np.linspace(0.1, 3.0, 200) ** 1.5
    sample = np.concatenate([2.0 + half, 2.0 - half])  # symmetric about 2
    expected = 1.959963984540054 * sample.std() / np.sqrt(sample.size)
    centre, lower, upper = stats.bootstrap_ci(sample, resamples=20000)
    assert centre == pytest.approx(2.0, abs=1e-12)
    assert centre - lower == pytest.approx(expected, rel=0.03)
    assert upper - centre == pytest.approx(expected, rel=0.03)


def test_bootstrap_ci_is_reproducible_and_seed_dependent():
    data = np.random.default_rng(2).normal(size=(20, 5))
    first = stats.bootstrap_ci(data, seed=7)
    second = stats.bootstrap_ci(data, seed=7)
    other = stats.bootstrap_ci(data, seed=8)
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])


def test_resample_means_by_draw_counts_equal_the_gathered_means():
    rng = np.random.default_rng(3)
    values = rng.lognormal(size=(37, 5, 2))  # seeds × trailing axes
    indices = rng.integers(0, 37, size=(300, 37))
    by_definition = values[indices].mean(axis=1)  # the mean of each resample of the seeds
    np.testing.assert_allclose(stats._replicates(values, indices, "mean"), by_definition, rtol=1e-13, atol=0)
    counts = stats._draw_counts(indices, 37)
    assert counts.shape == (300, 37) and np.all(counts.sum(axis=1) == 37)
    assert counts[0, indices[0, 0]] == np.count_nonzero(indices[0] == indices[0, 0])
    # an infinite value (0·inf = NaN for resamples without it) takes the gather: exactly the definition
    values[4, 1, 0] = np.inf
    with np.errstate(invalid="ignore"):
        assert np.array_equal(stats._replicates(values, indices, "mean"), values[indices].mean(axis=1))


def test_the_resamples_are_drawn_once_per_process_read_only_and_are_the_generators_draws():
    indices, counts = stats.resample_draws(11, 50, 5)
    np.testing.assert_array_equal(indices, np.random.default_rng(5).integers(0, 11, size=(50, 11)))
    np.testing.assert_array_equal(counts, stats._draw_counts(indices, 11))
    assert stats.resample_draws(11, 50, 5)[0] is indices  # the same arrays again, not drawn again
    with pytest.raises(ValueError):
        indices[0, 0] = 3  # nobody changes what later curves will use
    # the interval is the percentile interval of the means of those resamples, by definition
    data = np.random.default_rng(9).lognormal(size=(11, 4))
    _, lower, upper = stats.bootstrap_ci(data, resamples=50, seed=5)
    means = data[indices].mean(axis=1)
    np.testing.assert_allclose(lower, np.quantile(means, 0.025, axis=0), rtol=1e-12)
    np.testing.assert_allclose(upper, np.quantile(means, 0.975, axis=0), rtol=1e-12)


def test_bootstrap_ci_median_nan_and_single_seed():
    data = np.array([[1.0, np.nan], [2.0, np.nan], [100.0, np.nan]])
    centre, lower, upper = stats.bootstrap_ci(data, statistic="median")
    assert centre[0] == 2.0 and np.isnan(centre[1]) and np.isnan(lower[1]) and np.isnan(upper[1])
    one = stats.bootstrap_ci(np.array([[3.0, 4.0]]))
    np.testing.assert_array_equal(one[1], [3.0, 4.0])
    with pytest.raises(PrefsimError, match="statistic"):
        stats.bootstrap_ci(data, statistic="mode")
    with pytest.raises(PrefsimError, match="confidence"):
        stats.bootstrap_ci(data, confidence=95)


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("resamples", 0, "resamples"),
        ("resamples", -5, "resamples"),
        ("resamples", 2.5, "resamples"),
        ("resamples", True, "resamples"),
        ("seed", -1, "seed"),
        ("seed", 1.5, "seed"),
        ("confidence", "0.95", "confidence"),
    ],
)
def test_bootstrap_ci_refuses_bad_resampling_parameters_with_a_clear_error(keyword, value, message):
    """B = 0 divided by zero, a negative B or seed reached NumPy's ValueError, 2.5 resamples were silently 2."""
    data = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(PrefsimError, match=message):
        stats.bootstrap_ci(data, **{keyword: value})
    table = synthetic_table({"a": lambda s, t: (1 + s) / t}, 4, np.arange(1, 20))
    with pytest.raises(PrefsimError, match=message):
        stats.fit_rate(table, "kl_to_nash", "a", **{keyword: value})


@pytest.mark.parametrize("window", [5, (5,), (2, 8, 9), ("2", "8"), (2.5, 8)])
def test_fit_rate_refuses_a_window_that_is_not_a_pair_of_iterations(window):
    table = synthetic_table({"a": lambda s, t: (1 + s) / t}, 4, np.arange(1, 20))
    with pytest.raises(PrefsimError, match="window"):
        stats.fit_rate(table, "kl_to_nash", "a", window=window)
    with pytest.raises(PrefsimError, match="floor"):
        stats.fit_rate(table, "kl_to_nash", "a", floor="1e-12")


def test_bootstrap_ci_resamples_only_the_seeds_that_have_a_value():
    """NaN marks a missing seed: the interval of a column is the percentile interval of the means of
    resamples of its n present seeds (here 8 of 12), by definition; columns with the same seeds present
    share one draw, and a full column is resampled as before."""
    rng = np.random.default_rng(11)
    data = rng.lognormal(size=(12, 3))
    data[[1, 4, 6, 9], 0] = np.nan
    data[[1, 4, 6, 9], 2] = np.nan
    centre, lower, upper = stats.bootstrap_ci(data, resamples=400, seed=3)
    present = np.delete(data[:, 0], [1, 4, 6, 9])
    indices, _ = stats.resample_draws(8, 400, 3)
    means = present[indices].mean(axis=1)
    assert centre[0] == pytest.approx(present.mean(), rel=1e-14)
    np.testing.assert_allclose([lower[0], upper[0]], np.quantile(means, [0.025, 0.975]), rtol=1e-12)
    full = stats.bootstrap_ci(data[:, 1], resamples=400, seed=3)
    np.testing.assert_allclose([lower[1], upper[1]], full[1:], rtol=1e-13)
    third = np.delete(data[:, 2], [1, 4, 6, 9])[indices].mean(axis=1)  # the same 8 seeds: the same draw
    np.testing.assert_allclose([lower[2], upper[2]], np.quantile(third, [0.025, 0.975]), rtol=1e-12)


def test_bootstrap_ci_with_an_infinite_seed_is_the_percentile_interval():
    """One seed at +inf: the mean is inf, and so is the mean of every resample that draws it (about
    1 − (1 − 1/S)^S = 65% of them at S = 12), so the upper end is inf; the lower end is the 2.5% quantile
    of the finite resample means, which all lie among the resamples that miss it."""
    values = np.random.default_rng(12).lognormal(size=12)
    values[5] = np.inf
    centre, lower, upper = stats.bootstrap_ci(values, resamples=2000, seed=1)
    indices, _ = stats.resample_draws(12, 2000, 1)
    with np.errstate(invalid="ignore"):
        means = np.sort(values[indices].mean(axis=1))
    position = 0.025 * (len(means) - 1)  # NumPy's linear interpolation between order statistics
    below, fraction = int(np.floor(position)), position - np.floor(position)
    expected = means[below] + fraction * (means[below + 1] - means[below])
    assert centre == np.inf and upper == np.inf and np.isfinite(lower)
    assert lower == pytest.approx(expected, rel=1e-12)
    negative = stats.bootstrap_ci(-values, resamples=2000, seed=1)
    assert negative[0] == -np.inf and negative[1] == -np.inf and negative[2] == pytest.approx(-expected, rel=1e-12)


def test_fit_rate_recovers_a_known_power_law_exponent():
    rng = np.random.default_rng(3)
    scales = rng.lognormal(0.0, 0.5, size=20)
    noise = rng.normal(0.0, 0.05, size=(20, 200))
    table = synthetic_table(
        {"power": lambda s, t: scales[s] * np.maximum(t, 1) ** -1.5 * np.exp(noise[s, t])}, 20, np.arange(200)
    )
    fit = stats.fit_rate(table, "kl_to_nash", "power", window=(10, 199))
    assert fit.contains(-1.5)
    assert abs(fit.slope + 1.5) < 0.02
    assert fit.faster_than(-1.0) and not fit.slower_than(-1.5)
    comparison = stats.compare_rate(fit, -1.0)
    assert comparison["faster"] and not comparison["consistent"]
    # a wrong exponent is rejected
    assert not fit.contains(-1.0) and not fit.contains(-2.0)


def test_fit_rate_semilog_recovers_a_linear_rate_and_respects_the_floor():
    table = synthetic_table({"linear": lambda s, t: (1 + s) * np.exp(-0.2 * t)}, 5, np.arange(0, 300, 5))
    fit = stats.fit_rate(table, "kl_to_nash", "linear", window=(0, 100), scale="semilog")
    assert abs(fit.slope + 0.2) < 1e-9
    # beyond t ≈ 140 the values are below 1e-12 and must be ignored, not fitted
    late = stats.fit_rate(table, "kl_to_nash", "linear", window=(0, 295), scale="semilog")
    assert abs(late.slope + 0.2) < 1e-9
    with pytest.raises(PrefsimError, match="floor"):
        stats.fit_rate(table, "kl_to_nash", "linear", window=(200, 295), scale="semilog")
    with pytest.raises(PrefsimError, match="iteration ≥ 1"):
        stats.fit_rate(table, "kl_to_nash", "linear", window=(0, 100))


def test_fit_rate_says_which_recorded_iterations_it_used():
    # recorded every 5 iterations, below the floor (1e-12) from t ≈ 140 on (≈ 150 on the seed of scale 5): the
    # window (3, 295) was asked, t = 5…145 were fitted
    table = synthetic_table({"linear": lambda s, t: (1 + s) * np.exp(-0.2 * t)}, 5, np.arange(0, 300, 5))
    fit = stats.fit_rate(table, "kl_to_nash", "linear", window=(3, 295), scale="semilog")
    assert fit.window == (3, 295) and fit.span == (5, 145)


def test_paired_difference_detects_a_consistent_improvement_and_not_a_null_one():
    rng = np.random.default_rng(4)
    base = rng.lognormal(size=(25, 10))
    jitter = rng.normal(0, 0.01, size=(25, 10))
    table = synthetic_table(
        {
            "b": lambda s, t: base[s, t],
            "a": lambda s, t: base[s, t] - 0.1 + jitter[s, t],
            "same": lambda s, t: base[s, t],
        },
        25,
        np.arange(10),
    )
    better = stats.paired_difference(table, "kl_to_nash", "a", "b")
    assert np.all(better["difference_upper"] < 0)
    np.testing.assert_allclose(better["difference"], -0.1 + jitter.mean(axis=0), rtol=1e-12)
    assert np.all(better["probability_of_improvement"] == 1.0) and np.all(better["seeds"] == 25)
    # higher is better: a is never better than b
    flipped = stats.paired_difference(table, "kl_to_nash", "a", "b", lower_is_better=False)
    assert np.all(flipped["probability_of_improvement"] == 0.0)
    np.testing.assert_allclose(flipped["difference"], better["difference"], rtol=0, atol=0)
    null = stats.paired_difference(table, "kl_to_nash", "same", "b", iteration=9)
    assert len(null) == 1 and null["difference"].iloc[0] == 0.0
    assert null["probability_of_improvement"].iloc[0] == 0.5
    with pytest.raises(PrefsimError, match="not recorded"):
        stats.paired_difference(table, "kl_to_nash", "a", "b", iteration=99)


def test_paired_difference_counts_ties_as_half_and_leaves_out_seeds_without_two_finite_values():
    """Five seeds: a better on seeds 0, 1 and 2, tied on seed 3, worse on seed 4: P = (3 + ½)/5 = 0.7;
    seed 5, where a diverged (inf), and seed 6, where b is missing (NaN), are left out of both the
    difference and the probability, and out of ``seeds``."""
    a = [1.0, 2.0, 3.0, 4.0, 9.0, np.inf, 1.0]
    b = [2.0, 2.5, 3.5, 4.0, 5.0, 1.0, np.nan]
    table = pd.DataFrame(
        {
            "rule": ["a"] * 7 + ["b"] * 7,
            "seed": list(range(7)) * 2,
            "iteration": 0,
            "kl_to_nash": a + b,
        }
    )
    row = stats.paired_difference(table, "kl_to_nash", "a", "b").iloc[0]
    assert row["seeds"] == 5
    assert row["probability_of_improvement"] == pytest.approx(0.7, abs=1e-15)
    assert row["difference"] == pytest.approx((-1.0 - 0.5 - 0.5 + 0.0 + 4.0) / 5, abs=1e-15)
    # each rule's mean over the same five paired seeds
    assert row["mean_a"] == pytest.approx(19.0 / 5, abs=1e-15) and row["mean_b"] == pytest.approx(17.0 / 5, abs=1e-15)
    assert (
        np.isfinite(row["difference_lower"]) and row["difference_lower"] < row["difference"] < row["difference_upper"]
    )


def test_curve_and_summary_table():
    table = synthetic_table({"x": lambda s, t: s + 0.0 * t, "y": lambda s, t: 2.0 * s + t}, 4, [0, 1, 5])
    curve = stats.curve_summary(table, "kl_to_nash")
    assert list(curve.columns) == ["rule", "iteration", "center", "lower", "upper", "seeds"]
    assert curve.loc[(curve.rule == "y") & (curve.iteration == 5), "center"].item() == pytest.approx(8.0)
    assert (curve["seeds"] == 4).all()
    # y at t = 5 is 5 + 2s, s = 0…3: its band is the bootstrap interval of those four values
    y5 = curve[(curve.rule == "y") & (curve.iteration == 5)].iloc[0]
    _, lower, upper = stats.bootstrap_ci(5.0 + 2.0 * np.arange(4))
    assert (y5["lower"], y5["upper"]) == (pytest.approx(lower, rel=1e-14), pytest.approx(upper, rel=1e-14))
    assert 5.0 <= y5["lower"] < 8.0 < y5["upper"] <= 11.0
    constant = stats.curve_summary(synthetic_table({"c": lambda s, t: 0.0 * t + 3.0}, 4, [0, 1]), "kl_to_nash")
    assert (constant["lower"] == 3.0).all() and (constant["upper"] == 3.0).all() and (constant["center"] == 3.0).all()
    summary = stats.summary_table(table)
    assert set(summary["metric"]) == {"kl_to_nash"}  # the all-NaN suboptimality is skipped
    assert summary.set_index("rule").loc["x", "mean"] == pytest.approx(1.5)
    assert (summary["iteration"] == 5).all()
    at_one = stats.summary_table(table, iteration=1, metrics=["kl_to_nash"])
    assert at_one.set_index("rule").loc["y", "mean"] == pytest.approx(4.0)
    with pytest.raises(PrefsimError, match="no recorded iteration"):
        stats.summary_table(table, iteration=2)
    with pytest.raises(PrefsimError, match="not a column"):
        stats.curve_summary(table, "nope")
    with pytest.raises(PrefsimError, match="not in the table"):
        stats.fit_rate(table, "kl_to_nash", "z")


def test_bootstrap_ci_in_column_blocks_equals_one_block(monkeypatch):
    """Wide tables (a head-to-head table's L² cells) are bootstrapped a block of columns at a time, so 2000
    resamples × 160 000 cells are never held at once; the intervals are those of one block."""
    data = np.random.default_rng(5).exponential(size=(7, 300))
    data[2, 10:20] = np.nan  # a second seed group
    whole = stats.bootstrap_ci(data)
    monkeypatch.setattr(stats, "PERCENTILE_BLOCK_NUMBERS", 2000 * 7)  # 7 columns per block
    blocked = stats.bootstrap_ci(data)
    for one, other in zip(whole, blocked):
        np.testing.assert_allclose(other, one, rtol=1e-14, atol=0)


def test_one_seed_tables_and_titles_show_its_values_without_an_interval():
    """One seed has no spread to estimate: its summary cells, headings and figure titles give no interval
    (the bootstrap's [x, x] would read as a certain value)."""
    one = summary_frame(synthetic_table({"x": lambda s, t: 0.25 + 0.0 * t}, 1, [0, 3]), metrics=["kl_to_nash"])
    assert summary_cell(next(one.itertuples()), 1e-14) == "0.25"
    assert "iteration 3: the one seed's value (no interval)\n" in format_summary(one, ["kl_to_nash"])
    four = summary_frame(synthetic_table({"x": lambda s, t: s + 0.0 * t}, 4, [0, 3]), metrics=["kl_to_nash"])
    assert summary_cell(next(four.itertuples()), 1e-14).startswith("1.5 [")
    assert "iteration 3: mean [95% bootstrap CI] over 4 seeds\n" in format_summary(four, ["kl_to_nash"])
    assert figure_title({"seeds": [0]}).endswith(" — 1 seed, no interval")
    assert figure_title({"seeds": [0, 1]}).endswith(" — 2 seeds, mean ± 95% bootstrap CI")


def test_fit_rate_window_includes_both_of_its_ends():
    # exact e^{−0.2t} except at t = 2 and t = 10, the window's ends: the fit must use them (least squares
    # over t = 2…10 by np.polyfit), and say so in span
    iterations = np.arange(0, 13)

    def curve(s, t):
        return (1 + s) * np.exp(-0.2 * t) * np.where(t == 2, 3.0, 1.0) * np.where(t == 10, 0.1, 1.0)

    table = synthetic_table({"ends": curve}, 3, iterations)
    fit = stats.fit_rate(table, "kl_to_nash", "ends", window=(2, 10), scale="semilog")
    inside = iterations[(iterations >= 2) & (iterations <= 10)]
    expected = np.polyfit(inside, np.log(curve(0, inside)), 1)[0]
    assert fit.span == (2, 10)
    assert fit.slope == pytest.approx(expected, rel=1e-9)
    assert abs(expected + 0.2) > 0.05  # the ends matter: without them the slope would be exactly −0.2


def test_has_data_counts_iteration_one_but_not_iteration_zero():
    table = synthetic_table({"a": lambda s, t: np.where(t == 1, 0.3, np.nan)}, 2, np.arange(4))
    assert stats.has_data(table, "kl_to_nash")
    only_start = synthetic_table({"a": lambda s, t: np.where(t == 0, 0.3, np.nan)}, 2, np.arange(4))
    assert not stats.has_data(only_start, "kl_to_nash")
    assert not stats.has_data(table, "missing_metric")


def test_compare_rate_is_consistent_inside_the_ci_widened_by_the_tolerance():
    table = synthetic_table({"p": lambda s, t: (1 + s) * np.maximum(t, 1) ** (-1.5 - 0.01 * s)}, 6, np.arange(1, 100))
    fit = stats.fit_rate(table, "kl_to_nash", "p", window=(1, 99))
    exact = np.mean(-1.5 - 0.01 * np.arange(6))  # the mean of the seeds' exact exponents, −1.525
    assert fit.slope == pytest.approx(exact, rel=1e-9)
    assert fit.lower < exact < fit.upper < -1.0
    assert stats.compare_rate(fit, exact)["consistent"]
    gap = -1.0 - fit.upper  # −1 lies this far above the CI
    assert not stats.compare_rate(fit, -1.0, tolerance=0.9 * gap)["consistent"]
    assert stats.compare_rate(fit, -1.0, tolerance=1.1 * gap)["consistent"]


def test_bootstrap_accepts_seed_zero_and_refuses_a_negative_seed():
    values = np.arange(5.0)
    assert np.isfinite(stats.bootstrap_ci(values, resamples=50, seed=0)).all()
    with pytest.raises(PrefsimError, match="seed"):
        stats.bootstrap_ci(values, resamples=50, seed=-1)


def test_fit_rate_fits_a_window_of_exactly_two_recorded_iterations():
    table = synthetic_table({"two": lambda s, t: (1 + s) * np.exp(-0.2 * t)}, 3, np.arange(0, 10))
    fit = stats.fit_rate(table, "kl_to_nash", "two", window=(4, 5), scale="semilog")
    assert fit.span == (4, 5) and fit.slope == pytest.approx(-0.2, rel=1e-9)
