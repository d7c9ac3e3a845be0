"""Tests of sim.theory: closed forms, and that the papers' bounds hold on runs (and fail when broken)."""

import math

import numpy as np
import pandas as pd
import pytest

import sim
from bandits.errors import PrefsimError
from bandits.preference import cyclic
from sim import stats, theory
from sim.rules.apo import apo_multipliers

TAU = 0.2


@pytest.fixture(scope="module")
def random_run():
    """INPO (schedule and two constant η), Nash-MD, MMD, SPPO, DNO on random games, every iteration recorded."""
    spec = {
        "iterations": 200,
        "seeds": 5,
        "record_every": 1,
        "game": {"kind": "random", "arms": 5, "tau": TAU, "reference": "random", "reference_min_mass": 0.02},
        "rule": [
            {"name": "inpo", "label": "inpo", "eta": [0.5, 6.0]},
            {"name": "inpo", "label": "inpo_t4", "schedule": "theorem4"},
            {"name": "nash_md", "eta": theory.nash_md_theorem1_eta(200, TAU)},
            {"name": "mmd", "eta": 0.5},
            {"name": "sppo", "eta": float(theory.hedge_optimal_eta(201, 0.02))},
            {"name": "dno", "eta": 5.0},
        ],
    }
    return spec, sim.run(spec)


@pytest.fixture(scope="module")
def bt_run():
    """Exact-reward iterative DPO, APO (α = 0.3, 0.9, Nesterov) and the β(1−α) DPO controls."""
    spec = {
        "iterations": 60,
        "seeds": 3,
        "record_every": 1,
        "game": {"kind": "bradley_terry", "rewards": "random", "arms": 6, "tau": 0.0},
        "rule": [
            {"name": "dpo", "label": "dpo", "beta": [1.0, 0.7, 0.1]},
            {"name": "apo", "label": "apo", "alpha": [0.3, 0.9], "beta": 1.0},
            {"name": "apo", "label": "apo_nesterov", "schedule": "nesterov", "beta": 1.0},
        ],
    }
    return spec, sim.run(spec)


# ---------------------------------------------------------------------------------------------- η_crit


@pytest.mark.parametrize("tau, expected", [(0.05, 0.858), (0.2, 0.308), (0.01, 4.17)])
def test_eta_critical_matches_the_three_cycle_closed_form(tau, expected):
    uniform = np.full(3, 1 / 3)
    assert theory.omega_max(cyclic(3, 1.0), uniform) == pytest.approx(1 / (2 * math.sqrt(3)), rel=1e-12)
    assert theory.eta_critical(cyclic(3, 1.0), uniform, tau) == pytest.approx((tau**2 + 1 / 12) / (2 * tau), rel=1e-12)
    assert theory.eta_critical(cyclic(3, 1.0), uniform, tau) == pytest.approx(expected, rel=2e-3)


def test_eta_critical_separates_converging_from_cycling_inpo_and_predicts_the_rate():
    game = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": TAU, "reference": [0.5, 0.3, 0.2]}
    probe = sim.run({"iterations": 1, "seeds": 1, "game": game, "rule": [{"name": "online_ipo"}]})
    spec, context = theory._run_context({"iterations": 1, "seeds": 1, "game": game, "rule": [{"name": "online_ipo"}]})
    target = context[0]["target"]
    assert probe is not None
    critical = theory.eta_critical(cyclic(3, 1.0), target, TAU)
    assert 1.4 * TAU < critical < 1.55 * TAU  # THEORY §A.3: 1.47τ
    below, above = 0.8 * critical, 1.25 * critical
    table = sim.run({"iterations": 3000, "seeds": 1, "game": game, "rule": [{"name": "inpo", "eta": [below, above]}]})
    final = table[table.iteration == 3000].set_index("rule")["duality_gap"]
    assert final.iloc[0] > 1e-3  # circles π*
    assert final.iloc[1] < 1e-11  # converges
    # linear rate: the semilog slope of KL(π*‖π_t) is 2·log ρ
    fit = stats.fit_rate(table, "kl_to_nash", table.rule.unique()[1], window=(10, 80), scale="semilog")
    predicted = 2 * math.log(theory.inpo_contraction_factor(cyclic(3, 1.0), target, TAU, above))
    assert fit.slope == pytest.approx(predicted, rel=0.05)
    assert theory.inpo_contraction_factor(cyclic(3, 1.0), target, TAU, below) > 1.0


# ---------------------------------------------------------------------------------------------- INPO


def test_theorem4_bound_holds_along_the_schedule_and_a_wrong_constant_is_caught(random_run):
    spec, table = random_run
    report = theory.tightness_report(table, spec)
    theorem4 = report[report.rule == "inpo_t4"]
    assert len(theorem4) == 5 * 200 and theorem4["holds"].all()
    assert theorem4["ratio"].max() < 1e-2  # very loose: exact updates give KL ∝ T⁻⁴
    # the same check with a constant 10⁵ times too small must fail
    frame = table[(table.rule == "inpo_t4") & (table.iteration >= 1)]
    b = max(frame["max_log_ratio"].max(), 1.0)
    wrong = theory.theorem4_kl_bound(frame["iteration"].to_numpy(), TAU, b, constant=32e-5)
    assert (frame["kl_to_nash"].to_numpy() > wrong).any()


def test_theorem4_one_step_recursion_holds_for_schedule_and_constant_eta(random_run):
    spec, table = random_run
    _, context = theory._run_context(spec)
    for label, schedule in (("inpo_t4", True), ("inpo[eta=6]", False), ("inpo[eta=0.5]", False)):
        for seed, frame in table[table.rule == label].groupby("seed"):
            frame = frame.sort_values("iteration")
            kl = frame["kl_to_nash"].to_numpy()
            b = theory.realised_log_ratio(frame, context[seed]["target"], context[seed]["reference"])
            steps = frame["iteration"].to_numpy()[:-1]
            eta = theory.theorem4_eta_schedule(steps, TAU) if schedule else float(label[9:-1])
            bound = theory.theorem4_step_bound(kl[:-1], eta, TAU, b[1:])
            assert np.all(kl[1:] <= bound * (1 + 1e-9) + 1e-15), (label, seed)


def test_theorem3_gap_bound_holds_for_constant_eta_and_fails_when_scaled_down(random_run):
    spec, table = random_run
    report = theory.tightness_report(table, spec)
    theorem3 = report[report.rule.str.startswith("inpo[")]
    assert set(theorem3["metric"]) == {"duality_gap_mixture"} and theorem3["holds"].all()
    worst = theorem3["ratio"].max()
    assert 0 < worst < 1
    # a bound 1/(2·worst) times smaller is violated
    assert (theorem3["observed"] > theorem3["bound"] * worst / 2).any()


def test_lemma2_regret_bound_holds_for_the_realised_regret_at_lemma2_eta():
    game_spec = {"kind": "random", "arms": 6, "tau": 0.1, "reference": "random", "reference_min_mass": 0.01}
    spec, context = theory._run_context(
        {"iterations": 1, "seeds": [3], "game": game_spec, "rule": [{"name": "online_ipo"}]}
    )
    from sim.experiment import build_games

    games, _, targets, _ = build_games(spec)
    divergence = theory.log_reference_mass_bound(context[3]["reference"])
    horizon = 300
    b = theory.policy_log_ratio(context[3]["target"], context[3]["reference"])
    eta = float(theory.lemma2_eta(horizon, b, 0.1, divergence))
    regret = theory.inpo_linearised_regret(games, eta, 0.1, horizon, targets[0])
    bound = theory.lemma2_regret_bound(np.arange(1, horizon + 1), eta, 0.1, max(b, 10.0), divergence)
    assert np.all(regret <= bound)
    assert regret[-1] > 0  # a real regret, not a vacuous zero
    assert np.all(regret <= theory.lemma2_regret_bound(np.arange(1, horizon + 1), eta, 0.1, 1.0, divergence))


# ---------------------------------------------------------------------------------------------- SPPO, Nash-MD, MMD


def test_hedge_nash_md_and_mmd_bounds_hold(random_run):
    spec, table = random_run
    report = theory.tightness_report(table, spec)
    for rule in ("sppo", "dno", "nash_md", "mmd"):
        rows = report[report.rule == rule]
        assert len(rows) >= 5 * 200 and rows["holds"].all(), rule
    sppo = report[report.rule == "sppo"]
    # with a bound 10x smaller the Hedge check fails
    assert (sppo["observed"] > sppo["bound"] / 10).any()
    assert (
        theory.mmd_kl_bound(np.arange(3), eta=10.0, tau=0.1, kl_initial=1.0, lipschitz=0.5)[0]
        != theory.mmd_kl_bound(np.arange(3), eta=10.0, tau=0.1, kl_initial=1.0, lipschitz=0.5)[0]
    )  # NaN: η > τ/L²


def test_nash_md_theorem1_eta_form():
    # (1 − ητ)^T KL_0 + 2η²Σ(1−ητ)^k ≤ (KL_0 + 2 log T/τ²)/T for η = log T/(τT)
    for horizon in (10, 100, 1000):
        eta = theory.nash_md_theorem1_eta(horizon, 0.1)
        unrolled = theory.nash_md_kl_bound(horizon, eta, 0.1, 0.7)
        assert unrolled <= (0.7 + 2 * math.log(horizon) / 0.01) / horizon


# ---------------------------------------------------------------------------------------------- APO


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9])
def test_apo_multiplier_sequence_matches_the_closed_form(alpha):
    proximal, extrapolated = theory.apo_multiplier_sequence(50, alpha)
    closed_hat, closed = apo_multipliers(np.arange(51.0), alpha)
    np.testing.assert_allclose(proximal, closed_hat, atol=1e-10)
    np.testing.assert_allclose(extrapolated, closed, atol=1e-10)
    ŵ, w = theory.apo_noise_weights(50, alpha)
    assert ŵ.sum() == pytest.approx(closed_hat[-1]) and w.sum() == pytest.approx(closed[-1])


def test_apo_noise_weights_match_a_direct_simulation_with_reward_errors():
    rng = np.random.default_rng(0)
    alpha, horizon = 0.6, 12
    errors = rng.normal(size=(horizon, 4))
    proximal_prev = np.zeros(4)
    extrapolated = np.zeros(4)
    for s in range(horizon):  # log-space APO on the error terms only (linear, normaliser irrelevant)
        proximal = extrapolated + errors[s]
        extrapolated = (1 + alpha) * proximal - alpha * proximal_prev
        proximal_prev = proximal
    ŵ, w = theory.apo_noise_weights(horizon, alpha)
    np.testing.assert_allclose(proximal, ŵ @ errors, atol=1e-12)
    np.testing.assert_allclose(extrapolated, w @ errors, atol=1e-12)


def test_apo_exact_run_matches_closed_form_and_bounds(bt_run):
    spec, table = bt_run
    _, context = theory._run_context(spec)
    for seed, game in context.items():
        for label, alpha, schedule in (
            ("apo[alpha=0.3]", 0.3, "constant"),
            ("apo[alpha=0.9]", 0.9, "constant"),
            ("apo_nesterov", 0.0, "nesterov"),
            ("dpo[beta=1]", 0.0, "constant"),
        ):
            row = table[(table.rule == label) & (table.seed == seed) & (table.iteration == 40)]
            policy = theory.apo_exact_policy(40, alpha, 1.0, game["reference"], game["rewards"], schedule)
            expected = game["rewards"].max() - policy @ game["rewards"]
            assert row["suboptimality"].item() == pytest.approx(expected, abs=1e-12, rel=1e-9), label
    report = theory.tightness_report(table, spec)
    assert {"suboptimality", "tv_to_optimum"} <= set(report["metric"]) and report["holds"].all()
    # a bound with c_T replaced by 3·c_T (i.e. β three times too small) is violated somewhere
    sub = report[(report.metric == "suboptimality") & (report.rule == "apo[alpha=0.3]")]
    assert (sub["observed"] > sub["bound"] / 3).any()


def test_apo_equals_dpo_with_beta_one_minus_alpha_up_to_the_iteration_lag(bt_run):
    spec, table = bt_run
    alpha = 0.3
    lag = theory.apo_dpo_lag(40, alpha)
    assert lag == pytest.approx(0.3**2 * (1 - 0.3**40) / 0.7)
    apo = table[(table.rule == "apo[alpha=0.3]") & (table.iteration == 40)].set_index("seed")["suboptimality"]
    later = table[(table.rule == "dpo[beta=0.7]") & (table.iteration == 40 - math.floor(lag))].set_index("seed")[
        "suboptimality"
    ]
    earlier = table[(table.rule == "dpo[beta=0.7]") & (table.iteration == 40 - math.ceil(lag))].set_index("seed")[
        "suboptimality"
    ]
    assert np.all(later <= apo) and np.all(apo <= earlier)
    # DPO with β(1−α) = 0.7 at the *same* T is not equal to APO (the lag is real), but α = 0.9's lag is 8 iterations
    lag9 = theory.apo_dpo_lag(40, 0.9)
    assert 7 < lag9 < 8.2


def test_apo_tv_decays_exponentially_at_the_predicted_slope(bt_run):
    spec, table = bt_run
    _, context = theory._run_context(spec)
    seed = next(iter(context))
    single = table[table.seed == seed]
    rewards = context[seed]["rewards"]
    beta = 1.0
    fit = stats.fit_rate(single, "tv_to_optimum", "apo[alpha=0.3]", window=(20, 40), scale="semilog", floor=1e-13)
    predicted = theory.apo_tv_log_slope(0.3, beta, rewards)
    assert fit.slope == pytest.approx(predicted, rel=0.1)
    with pytest.raises(PrefsimError, match="unique best arm"):
        theory.apo_tv_bound(5, 0.3, 1.0, np.full(3, 1 / 3), [1.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------------------- report


def test_tightness_report_shape_and_errors(random_run):
    spec, table = random_run
    report = theory.tightness_report(table, spec)
    assert list(report.columns) == [
        "rule",
        "seed",
        "iteration",
        "metric",
        "bound_name",
        "observed",
        "bound",
        "ratio",
        "holds",
    ]
    bounds = theory.bounds_for_run(table, spec)
    assert set(bounds["rule"]) == set(report["rule"])
    assert (bounds.groupby(["rule", "metric", "iteration"]).size() == 1).all()
    renamed = table.assign(rule=table["rule"].str.replace("sppo", "unknown_rule"))
    with pytest.raises(PrefsimError, match="not in the spec"):
        theory.tightness_report(renamed, spec)
    empty = theory.tightness_report(table[table.rule == "inpo[eta=6]"].assign(rule="inpo[eta=6]").head(0), spec)
    assert empty.empty and isinstance(empty, pd.DataFrame)


def test_bounds_are_not_drawn_for_sampled_runs_and_other_problems_are_refused():
    spec = {
        "iterations": 3,
        "seeds": 1,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "label": "inpo_t4", "schedule": "theorem4"}],
        "run": {"mode": "sampled", "pairs_per_iteration": 20, "inner_steps": 2},
    }
    table = sim.run(spec)
    assert theory.bounds_for_run(table, spec).empty
    assert not theory.tightness_report(table, spec).empty  # still comparable on request
    ring = {
        **spec,
        "game": {"kind": "bradley_terry", "rewards": [0.0, 1.0], "tau": 0.0},
        "rule": [{"name": "dpo"}],
        "run": {**spec["run"], "problem": "ring", "ring_grid": 3},
    }
    with pytest.raises(PrefsimError, match="problem"):
        theory.tightness_report(sim.run(ring), ring)
