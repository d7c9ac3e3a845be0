"""Every exact rule against a closed form or an independent NumPy/SciPy computation (docs/theory.md §A.3, §B.3, §C).

Games are small (2–5 arms) and reused.  ``iterate`` runs the rule's own init/update (the code under
test); every expected value is computed here, by hand or in NumPy, never by prefsim itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_reference import (
    best_response,
    bradley_terry_matrix,
    cyclic_matrix,
    duality_gap_logz,
    inpo_step,
    iterate,
    kl,
    make_game,
    mirror_step,
    normalize,
    random_matrix,
    random_policy,
    regularised_nash,
)
from scipy.optimize import minimize

import sim  # noqa: F401  (float64)
from bandits.errors import PrefsimError
from sim.rules import RULES, build_rule, resolve_parameters
from sim.rules.apo import apo, apo_multipliers, extrapolation_weight
from sim.rules.dno import dno
from sim.rules.dpo import dpo
from sim.rules.extragradient import extragradient, optimistic
from sim.rules.inpo import inpo
from sim.rules.mmd import mmd
from sim.rules.nash_md import nash_md
from sim.rules.online_ipo import online_ipo
from sim.rules.sppo import solve_paper_target, sppo

TAU = 0.2
CYCLIC = cyclic_matrix(1.0)  # rock–paper–scissors
CYCLIC_REFERENCE = np.array([0.5, 0.3, 0.2])  # non-uniform, so π*_τ ≠ π_ref
RANDOM = random_matrix(5, seed=0)
RANDOM_REFERENCE = random_policy(5, seed=1)
REWARDS = np.array([0.0, 1.0, -0.5, 0.4])
BT = bradley_terry_matrix(REWARDS)
BT_REFERENCE = random_policy(4, seed=2)

GAMES = {
    "cyclic": (CYCLIC, CYCLIC_REFERENCE),
    "random": (RANDOM, RANDOM_REFERENCE),
    "bradley_terry": (BT, BT_REFERENCE),
}


@pytest.fixture(scope="module")
def nash_policies():
    return {name: regularised_nash(matrix, reference, TAU) for name, (matrix, reference) in GAMES.items()}


def _game(name, initial=None, tau=TAU):
    matrix, reference = GAMES[name]
    return make_game(matrix, reference, tau, initial=initial, rewards=REWARDS if name == "bradley_terry" else None)


def _one_step(rule, game):
    return np.asarray(rule.update(rule.init(game), game).log_policy)


# --------------------------------------------------------------------------- INPO
def test_inpo_two_arm_step_by_hand():
    # P = [[.5, .8], [.2, .5]], π_t = (½, ½), π_ref = (¼, ¾), τ = 0.1, η = 0.5.
    # Pπ_t = (0.65, 0.35); log-odds of π_{t+1}: (1 − τ/η)·0 + (τ/η)·log(1/3) + (0.65 − 0.35)/η = 0.6 − 0.2·log 3.
    game = make_game([[0.5, 0.8], [0.2, 0.5]], [0.25, 0.75], 0.1, initial=[0.5, 0.5])
    new = np.exp(_one_step(inpo(eta=0.5, tau=0.1), game))
    expected = 1.0 / (1.0 + np.exp(-(0.6 - 0.2 * np.log(3.0))))
    assert new[0] == pytest.approx(expected, abs=1e-15)
    assert new.sum() == pytest.approx(1.0, abs=1e-15)


def test_inpo_matches_numpy_eq5_and_equals_mmd_step_for_step():
    # docs/theory.md §C.9: MMD with η_MMD = 1/(η_INPO − τ) is INPO's exact update.
    eta_inpo = 0.7
    game = _game("random", initial=random_policy(5, seed=3))
    inpo_logs = iterate(inpo(eta=eta_inpo, tau=TAU), game, 60)
    mmd_logs = iterate(mmd(eta=1.0 / (eta_inpo - TAU), tau=TAU), game, 60)
    np.testing.assert_allclose(inpo_logs, mmd_logs, atol=1e-12, rtol=0)
    expected = [np.log(random_policy(5, seed=3))]
    for _ in range(60):
        expected.append(inpo_step(expected[-1], np.log(RANDOM_REFERENCE), RANDOM, eta_inpo, TAU))
    np.testing.assert_allclose(inpo_logs, np.array(expected), atol=1e-12, rtol=0)
    # a wrong mapping (η_MMD = 1/η_INPO) is detectably different
    wrong = iterate(mmd(eta=1.0 / eta_inpo, tau=TAU), game, 5)
    assert np.abs(wrong[5] - inpo_logs[5]).max() > 1e-3


def test_mmd_step_matches_its_formula():
    # ℓ_{t+1} = [ℓ_t + ητℓ_ref + ηPπ_t]/(1 + ητ) − norm (Sokota et al.), η = 3, τ = 0.2.
    initial = random_policy(5, seed=4)
    new = _one_step(mmd(eta=3.0, tau=TAU), _game("random", initial=initial))
    log_reference = np.log(RANDOM_REFERENCE)
    expected = normalize((np.log(initial) + 3.0 * TAU * log_reference + 3.0 * RANDOM @ initial) / (1 + 3.0 * TAU))
    np.testing.assert_allclose(new, expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("name", list(GAMES))
def test_inpo_with_safe_eta_converges_to_regularised_nash(name, nash_policies):
    # Issue's done-criterion: η ≥ τ + 1/τ contracts; gap < 1e-10 in the last iterate.
    matrix, reference = GAMES[name]
    logs = iterate(inpo(eta=TAU + 1.0 / TAU, tau=TAU), _game(name), 1500)
    last = np.exp(logs[-1])
    assert duality_gap_logz(matrix, reference, TAU, last) < 1e-10
    np.testing.assert_allclose(last, nash_policies[name], atol=1e-8, rtol=0)
    # it actually moved: the reference is not the Nash policy
    assert duality_gap_logz(matrix, reference, TAU, reference) > 1e-3


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"eta": 0.2, "tau": 0.2}, "eta > tau"),
        ({"eta": 0.1, "tau": 0.2}, "eta > tau"),
        ({"eta": -1.0, "tau": 0.2}, "eta"),
        ({"eta": None, "tau": 0.2}, "eta"),
        ({"eta": 1.0, "tau": 0.0}, "tau"),
        ({"eta": 1.0, "tau": 0.2, "schedule": "linear"}, "schedule"),
        ({"eta": 1.0, "tau": 0.2, "schedule": "theorem4"}, "eta is not used with schedule"),  # was ignored silently
    ],
)
def test_inpo_rejects_bad_parameters(kwargs, phrase):
    with pytest.raises(PrefsimError, match=phrase) as info:
        inpo(**kwargs)
    assert "inpo" in str(info.value)


@pytest.mark.parametrize("name", ["cyclic", "random"])
def test_inpo_theorem4_schedule_meets_its_bound(name, nash_policies):
    # η_t = τ(t+2)/2, first update BR_τ(π_ref) (reading (a) of docs/theory.md §A.5);
    # Theorem 4: KL(π*‖π_T) ≤ 32C²/(τ²(T+1)), C = max(Bτ, 1), B the realised max |log π/π_ref|.
    matrix, reference = GAMES[name]
    horizon = 400
    logs = iterate(inpo(tau=TAU, schedule="theorem4"), _game(name), horizon)
    expected = [np.log(reference)]
    for t in range(horizon):
        expected.append(inpo_step(expected[-1], np.log(reference), matrix, TAU * (t + 2) / 2.0, TAU))
    np.testing.assert_allclose(logs, np.array(expected), atol=1e-11, rtol=0)
    np.testing.assert_allclose(np.exp(logs[1]), best_response(matrix, reference, TAU, reference), atol=1e-15)

    target = nash_policies[name]
    realised_b = max(np.abs(logs - np.log(reference)).max(), np.abs(np.log(target / reference)).max())
    constant = max(realised_b * TAU, 1.0)
    divergences = {}
    for horizon_t in (1, 2, 5, 10, 50, 100, 200, 400):
        divergences[horizon_t] = kl(target, np.exp(logs[horizon_t]))
        assert divergences[horizon_t] <= 32 * constant**2 / (TAU**2 * (horizon_t + 1))
    # exact updates are much faster than the bound: KL ∝ T⁻⁴ (docs/theory.md §A.5 remarks)
    slope = np.log(divergences[400] / divergences[200]) / np.log(2.0)
    assert slope < -3.5


# --------------------------------------------------------------------------- online IPO
def test_online_ipo_is_best_response():
    initial = random_policy(5, seed=5)
    new = np.exp(_one_step(online_ipo(tau=TAU), _game("random", initial=initial)))
    np.testing.assert_allclose(new, best_response(RANDOM, RANDOM_REFERENCE, TAU, initial), atol=1e-15)


def test_online_ipo_cycles_at_full_strength_and_converges_at_half():
    # docs/theory.md §C.5: P_c, π_ref = (.5,.3,.2), τ = 0.2: c = 1 oscillates with gap in [0.17, 0.58];
    # c = 0.5 converges.
    for strength in (1.0, 0.5):
        matrix = cyclic_matrix(strength)
        logs = iterate(online_ipo(tau=TAU), make_game(matrix, CYCLIC_REFERENCE, TAU), 600)
        gaps = np.array([duality_gap_logz(matrix, CYCLIC_REFERENCE, TAU, np.exp(l)) for l in logs[-200:]])
        if strength == 1.0:
            assert gaps.min() > 0.15 and gaps.max() < 0.6
            assert gaps.max() - gaps.min() > 0.3  # oscillates, does not settle
        else:
            assert gaps.max() < 1e-12


# --------------------------------------------------------------------------- Nash-MD
def test_nash_md_step_by_hand():
    # ητ = 0.5·0.4 = 0.2; mixture ∝ π_t^0.8 π_ref^0.2; update (1 − ητ)ℓ_t + ητℓ_ref + η·Pπ^μ − norm.
    initial = np.array([0.6, 0.3, 0.1])
    reference = np.array([0.2, 0.2, 0.6])
    game = make_game(CYCLIC, reference, 0.4, initial=initial)
    new = _one_step(nash_md(eta=0.5, tau=0.4), game)
    mixture = initial**0.8 * reference**0.2
    mixture /= mixture.sum()
    win = CYCLIC @ mixture  # rows: ½m0 + m1, ½m1 + m2, m0 + ½m2
    assert win == pytest.approx(
        [0.5 * mixture[0] + mixture[1], 0.5 * mixture[1] + mixture[2], mixture[0] + 0.5 * mixture[2]]
    )
    expected = normalize(0.8 * np.log(initial) + 0.2 * np.log(reference) + 0.5 * win)
    np.testing.assert_allclose(new, expected, atol=1e-15, rtol=0)
    # the opponent is the mixture, not π_t
    against_policy = normalize(0.8 * np.log(initial) + 0.2 * np.log(reference) + 0.5 * CYCLIC @ initial)
    assert np.abs(new - against_policy).max() > 1e-2


def test_nash_md_constant_eta_bias_is_quadratic(nash_policies):
    # docs/theory.md §C.6: π*_τ is not a fixed point of constant-η Nash-MD; the limit's gap is O(η²).
    tau = 0.5
    target = regularised_nash(CYCLIC, CYCLIC_REFERENCE, tau)
    gaps = {}
    for eta in (0.2, 0.1):
        logs = iterate(nash_md(eta=eta, tau=tau), make_game(CYCLIC, CYCLIC_REFERENCE, tau), int(60 / (eta * tau)))
        np.testing.assert_allclose(logs[-1], logs[-2], atol=1e-13)  # converged to the rule's own limit
        gaps[eta] = duality_gap_logz(CYCLIC, CYCLIC_REFERENCE, tau, np.exp(logs[-1]))
    assert 1e-6 < gaps[0.1] < gaps[0.2] < 1e-3
    assert 3.6 < gaps[0.2] / gaps[0.1] < 4.4
    start = make_game(CYCLIC, CYCLIC_REFERENCE, tau, initial=target)
    moved = np.exp(_one_step(nash_md(eta=0.2, tau=tau), start))
    assert np.abs(moved - target).max() > 1e-5
    stays = np.exp(_one_step(inpo(eta=1.0, tau=tau), start))  # INPO: π* is an exact fixed point
    assert np.abs(stays - target).max() < 1e-13


def test_nash_md_rejects_step_above_one():
    with pytest.raises(PrefsimError, match="eta·tau"):
        nash_md(eta=6.0, tau=0.2)


# --------------------------------------------------------------------------- SPPO and DNO
def test_sppo_exact_is_hedge_and_dno_is_sppo_with_inverse_eta():
    game = _game("random")
    sppo_logs = iterate(sppo(eta=2.5), game, 40)
    expected = [np.log(RANDOM_REFERENCE)]
    for _ in range(40):
        expected.append(normalize(expected[-1] + 2.5 * RANDOM @ np.exp(expected[-1])))
    np.testing.assert_allclose(sppo_logs, np.array(expected), atol=1e-12, rtol=0)
    np.testing.assert_allclose(iterate(dno(eta=0.4), game, 40), sppo_logs, atol=1e-12, rtol=0)
    # no π_ref term: the game's reference only enters through π_0
    other = make_game(RANDOM, np.full(5, 0.2), TAU, initial=RANDOM_REFERENCE)
    np.testing.assert_allclose(iterate(sppo(eta=2.5), other, 40), sppo_logs, atol=1e-12, rtol=0)


def _scipy_paper_target(policy, target):
    """argmin_d Σπ(d − c)² subject to Σπe^d = 1, by SLSQP."""
    objective = lambda d: float(np.sum(policy * (d - target) ** 2))  # noqa: E731
    gradient = lambda d: 2 * policy * (d - target)  # noqa: E731
    constraint = {"type": "eq", "fun": lambda d: np.sum(policy * np.exp(d)) - 1.0, "jac": lambda d: policy * np.exp(d)}
    result = minimize(
        objective,
        target - np.log(np.sum(policy * np.exp(target))),
        jac=gradient,
        constraints=[constraint],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    assert result.success
    return result.x


@pytest.mark.parametrize("instance", range(4))
def test_sppo_paper_normaliser_solves_the_constrained_argmin(instance):
    arms = 3 + instance % 3
    eta = (1.0, 3.0, 0.5, 8.0)[instance]
    matrix = random_matrix(arms, seed=10 + instance)
    policy = random_policy(arms, seed=20 + instance)
    target = eta * (matrix @ policy - 0.5)
    expected = _scipy_paper_target(policy, target)
    solved = np.asarray(solve_paper_target(jnp.log(policy), jnp.asarray(target))) - np.log(policy)
    np.testing.assert_allclose(solved, expected, atol=2e-6, rtol=0)
    assert np.sum(policy * np.exp(solved)) == pytest.approx(1.0, abs=1e-12)
    # and the rule's step uses it; it differs from the exact normaliser (log Z > η/2 by Jensen)
    game = make_game(matrix, None, 0.0, initial=policy)
    paper = _one_step(sppo(eta=eta, normaliser="paper"), game)
    np.testing.assert_allclose(paper, np.log(policy) + expected, atol=2e-6, rtol=0)
    exact = _one_step(sppo(eta=eta, normaliser="exact"), game)
    assert np.abs(paper - exact).max() > 1e-4


def test_wright_omega_matches_scipy():
    from scipy.special import wrightomega

    from sim.rules.sppo import wright_omega

    x = np.array([-700.0, -50.0, -3.0, -0.5, 0.0, 0.7, 1.0, 1.0 + 1e-9, 1.5, 4.0, 30.0, 1e3, 1e7, 1e200])
    np.testing.assert_allclose(np.asarray(wright_omega(jnp.asarray(x))), wrightomega(x).real, rtol=4e-16, atol=0)


@pytest.mark.parametrize("eta", [50.0, 1000.0, 1e5])
def test_sppo_paper_normaliser_at_large_eta(eta):
    # The official code's β = 0.001 is η = 1000.  Independent solve: d_y = c_y − ω(log μ + c_y) with
    # SciPy's Wright omega, and brentq on log μ for Σπe^d = 1.
    from scipy.optimize import brentq
    from scipy.special import logsumexp, wrightomega

    for seed in range(3):
        policy = random_policy(5, seed=30 + seed, scale=3.0)
        target = eta * (random_matrix(5, seed=40 + seed) @ policy - 0.5)
        scale = np.abs(target).max()
        log_mu = brentq(
            lambda m, target=target, policy=policy: logsumexp(target - wrightomega(m + target).real, b=policy),
            -60 - scale,
            5 + np.log1p(scale),
            xtol=1e-14,
            rtol=1e-15,
            maxiter=500,
        )
        expected = target - wrightomega(log_mu + target).real
        solved = np.asarray(solve_paper_target(jnp.log(policy), jnp.asarray(target))) - np.log(policy)
        np.testing.assert_allclose(solved, expected, rtol=1e-13, atol=1e-13 * scale)
        assert logsumexp(solved, b=policy) == pytest.approx(0.0, abs=1e-13 + 1e-15 * scale)  # rounding of |d| ~ scale
    logs = iterate(sppo(eta=eta, normaliser="paper"), _game("random"), 20)
    assert np.isfinite(logs).all()
    np.testing.assert_allclose(np.exp(logs).sum(axis=1), 1.0, atol=1e-12)


def test_sppo_paper_equals_exact_when_win_rate_is_constant():
    # uniform π on rock–paper–scissors: Pπ = ½ everywhere, so log Z = η/2 exactly.
    game = make_game(CYCLIC, None, 0.0)
    paper = _one_step(sppo(eta=3.0, normaliser="paper"), game)
    np.testing.assert_allclose(paper, np.log(np.full(3, 1 / 3)), atol=1e-14)


# --------------------------------------------------------------------------- DPO and APO
def _bt_game():
    return make_game(BT, BT_REFERENCE, 0.0, rewards=REWARDS)


def test_iterative_dpo_closed_form():
    logs = iterate(dpo(beta=0.5), _bt_game(), 7)
    for t in range(8):
        np.testing.assert_allclose(logs[t], normalize(np.log(BT_REFERENCE) + t * REWARDS / 0.5), atol=1e-13, rtol=0)


def _multipliers(horizon, alpha):
    """(ĉ_T, c_T) by running the log-space recursion of docs/theory.md §B.3 on a unit reward."""
    proximal_previous, current = 0.0, 0.0  # log π̂_0 = log π_0 = ℓ_ref (offset 0)
    for _ in range(horizon):
        proximal = current + 1.0
        current = (1 + alpha) * proximal - alpha * proximal_previous
        proximal_previous = proximal
    return proximal_previous, current


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, -0.5])  # α < 0: averaging the last two proximal outputs
def test_apo_multipliers_match_recursion_and_formula(alpha):
    for horizon in (1, 2, 5, 40):
        hat, full = _multipliers(horizon, alpha)
        formula_full = (horizon - alpha**2 * (1 - alpha**horizon) / (1 - alpha)) / (1 - alpha)
        formula_hat = (horizon - alpha * (1 - alpha**horizon) / (1 - alpha)) / (1 - alpha)
        assert full == pytest.approx(formula_full, rel=1e-13)
        assert hat == pytest.approx(formula_hat, rel=1e-13)
        code_hat, code_full = apo_multipliers(horizon, alpha)
        assert float(code_full) == pytest.approx(formula_full, rel=1e-13)
        assert float(code_hat) == pytest.approx(formula_hat, rel=1e-13)
    assert _multipliers(1, alpha)[1] == pytest.approx(1 + alpha)


@pytest.mark.parametrize("alpha", [0.3, -0.5])
def test_apo_dpo_closed_form_and_equivalence_to_dpo_with_another_beta(alpha):
    """Extrapolation (α > 0) is DPO with a smaller β(1 − α), averaging (α < 0) DPO with a larger one, each up to
    the same lag α²(1 − α^T)/(1 − α) > 0."""
    beta, horizon = 0.7, 25
    logs = iterate(apo(dpo(beta=beta), alpha=alpha), _bt_game(), horizon)
    for t in (1, 2, 10, 25):
        c_t = (t - alpha**2 * (1 - alpha**t) / (1 - alpha)) / (1 - alpha)
        np.testing.assert_allclose(logs[t], normalize(np.log(BT_REFERENCE) + c_t * REWARDS / beta), atol=1e-12, rtol=0)
    # APO(α, β) after T = DPO(β(1−α)) after T_eff = T − α²(1−α^T)/(1−α) (non-integer: its closed form)
    lag = alpha**2 * (1 - alpha**horizon) / (1 - alpha)
    beta_eff = beta * (1 - alpha)
    dpo_at_t_eff = normalize(np.log(BT_REFERENCE) + (horizon - lag) * REWARDS / beta_eff)
    np.testing.assert_allclose(logs[horizon], dpo_at_t_eff, atol=1e-12, rtol=0)
    dpo_logs = iterate(dpo(beta=beta_eff), _bt_game(), horizon)
    # at the same integer T they differ by exactly the lag
    difference = (logs[horizon] - dpo_logs[horizon]) - (logs[horizon] - dpo_logs[horizon]).mean()
    expected = -lag * (REWARDS - REWARDS.mean()) / beta_eff
    np.testing.assert_allclose(difference, expected, atol=1e-11, rtol=0)
    assert np.abs(expected).max() > 0.1


@pytest.mark.parametrize("base_name", ["dpo", "sppo", "inpo"])
def test_apo_with_alpha_zero_is_the_base_rule(base_name):
    base = {"dpo": lambda: dpo(beta=0.8), "sppo": lambda: sppo(eta=1.5), "inpo": lambda: inpo(eta=0.9, tau=TAU)}[
        base_name
    ]
    game = _bt_game() if base_name == "dpo" else _game("random")
    np.testing.assert_allclose(iterate(apo(base(), alpha=0.0), game, 20), iterate(base(), game, 20), atol=1e-13, rtol=0)


def test_apo_nesterov_schedule():
    weights = [float(extrapolation_weight(0.3, "nesterov", jnp.asarray(step, jnp.int32))) for step in range(4)]
    np.testing.assert_allclose(weights, [0.0, 1 / 4, 2 / 5, 3 / 6], atol=1e-15)
    assert float(extrapolation_weight(0.3, "constant", jnp.asarray(5, jnp.int32))) == 0.3
    logs = iterate(apo(dpo(beta=0.6), schedule="nesterov"), _bt_game(), 12)
    previous_proximal = current = np.log(BT_REFERENCE)
    for k in range(1, 13):
        proximal = normalize(current + REWARDS / 0.6)
        weight = (k - 1) / (k + 2)
        current = normalize((1 + weight) * proximal - weight * previous_proximal)
        previous_proximal = proximal
        np.testing.assert_allclose(logs[k], current, atol=1e-12, rtol=0)


@pytest.mark.parametrize("base_name", ["sppo", "inpo"])
def test_apo_wrapping_nash_rules_matches_numpy_log_space_extrapolation(base_name):
    alpha = 0.4
    if base_name == "sppo":
        rule = apo(sppo(eta=1.5), alpha=alpha)
        step = lambda l: normalize(l + 1.5 * RANDOM @ np.exp(l))  # noqa: E731
    else:
        rule = apo(inpo(eta=0.9, tau=TAU), alpha=alpha)
        step = lambda l: inpo_step(l, np.log(RANDOM_REFERENCE), RANDOM, 0.9, TAU)  # noqa: E731
    logs = iterate(rule, _game("random"), 30)
    previous_proximal = current = np.log(RANDOM_REFERENCE)
    for t in range(1, 31):
        proximal = step(current)  # the base acts on the extrapolated policy
        current = normalize((1 + alpha) * proximal - alpha * previous_proximal)
        previous_proximal = proximal
        np.testing.assert_allclose(logs[t], current, atol=1e-11, rtol=0)


def test_apo_implicit_reference_around_inpo_anchors_at_the_extrapolation_and_plays_the_iterate():
    """``form = "implicit_reference"`` keeps π̂_{t+1} as the iterate (the policy pairs are drawn from) and
    anchors the next proximal step at normalise((1+α)·log π̂_{t+1} − α·log π̂_t): around INPO the step is
    (1 − τ/η)·anchor + (τ/η)·log π_ref + Pπ̂_t/η, the win rates of the iterate, not of the anchor."""
    alpha, eta = 0.4, 0.9
    initial = random_policy(5, seed=9)
    rule = build_rule(
        "apo",
        resolve_parameters("apo", {"base": "inpo", "eta": eta, "alpha": alpha, "form": "implicit_reference"}, TAU),
    )
    logs = iterate(rule, _game("random", initial=initial), 12)
    log_reference = np.log(RANDOM_REFERENCE)
    iterate_now = anchor = previous_proximal = np.log(initial)
    for t in range(1, 13):
        proximal = normalize(
            (1 - TAU / eta) * anchor + (TAU / eta) * log_reference + RANDOM @ np.exp(iterate_now) / eta
        )
        anchor = normalize((1 + alpha) * proximal - alpha * previous_proximal)
        previous_proximal = iterate_now = proximal
        np.testing.assert_allclose(logs[t], iterate_now, atol=1e-12, rtol=0, err_msg=f"t = {t}")


def test_apo_through_the_registry_passes_base_parameters():
    parameters = resolve_parameters("apo", {"base": "inpo", "alpha": 0.4, "eta": 0.9}, TAU)
    assert (
        parameters["tau"] == TAU and parameters["base_schedule"] == "constant" and parameters["schedule"] == "constant"
    )
    from_registry = iterate(build_rule("apo", parameters), _game("random"), 10)
    direct = iterate(apo(inpo(eta=0.9, tau=TAU), alpha=0.4), _game("random"), 10)
    np.testing.assert_allclose(from_registry, direct, atol=1e-14, rtol=0)
    theorem4 = resolve_parameters("apo", {"base": "inpo", "alpha": 0.0, "base_schedule": "theorem4"}, TAU)
    np.testing.assert_allclose(
        iterate(build_rule("apo", theorem4), _game("random"), 10),
        iterate(inpo(tau=TAU, schedule="theorem4"), _game("random"), 10),
        atol=1e-13,
        rtol=0,
    )


@pytest.mark.parametrize("alpha", [1.0, 1.5, -1.0, -1.5, float("nan")])
def test_apo_rejects_alpha_outside_minus_one_one(alpha):
    # α = −1 repeats π̂_t (no progress every other step), α < −1 and α ≥ 1 blow up; α ∈ (−1, 0) averages
    with pytest.raises(PrefsimError, match=r"alpha must lie in \(−1, 1\)"):
        apo(dpo(), alpha=alpha)


# --------------------------------------------------------------------------- extragradient and optimistic
def test_extragradient_step_by_hand():
    eta = 0.8
    initial = random_policy(5, seed=6)
    log_reference = np.log(RANDOM_REFERENCE)
    new = _one_step(extragradient(eta=eta, tau=TAU), _game("random", initial=initial))
    half = mirror_step(np.log(initial), log_reference, RANDOM @ initial, eta, TAU)
    expected = mirror_step(np.log(initial), log_reference, RANDOM @ np.exp(half), eta, TAU)
    np.testing.assert_allclose(new, expected, atol=1e-14, rtol=0)


def test_extragradient_is_egpo_tabular_sgd_at_eta_4lr_over_k_beta():
    """EGPO's exact tabular simulation (``zhourunlong/EGPO``, ``simulations/loss_funcs.py::extragradient`` and
    ``simulations/run.py``): plain SGD of size lr on tabular logits θ of the uniformly weighted loss
    (1/K²)Σ_{i,j}((d_i − d_j) − (p_i − p_j)/β)², d = log softmax θ − log π_ref, p = Pπ_θ detached; a half step
    from θ_t, then a step from θ_t with p from the half-step policy.  It is the rule ``extragradient`` with
    τ = β and learning rate η = 4·lr/(Kβ) (docs/theory.md §C.14, §F.2), not η = lr."""
    arms, beta, lr, steps = 6, 0.1, 0.1, 15
    matrix, reference = random_matrix(arms, seed=3), random_policy(arms, seed=4)
    log_reference = np.log(reference)

    def egpo_loss(theta, prefs):  # EGPO's loss written out, differentiated by JAX (prefs held fixed)
        d = jax.nn.log_softmax(theta) - log_reference
        return jnp.sum(((d[:, None] - d[None, :]) - (prefs[:, None] - prefs[None, :]) / beta) ** 2) / arms**2

    gradient = jax.grad(egpo_loss)
    theta = log_reference.copy()  # EGPO starts the policy at the reference
    expected = [normalize(theta)]
    for _ in range(steps):
        half = theta - lr * np.asarray(gradient(theta, matrix @ np.exp(normalize(theta))))
        theta = theta - lr * np.asarray(gradient(theta, matrix @ np.exp(normalize(half))))
        expected.append(normalize(theta))
    game = make_game(matrix, reference, beta)
    logs = iterate(extragradient(eta=4.0 * lr / (arms * beta), tau=beta), game, steps)
    np.testing.assert_allclose(logs, np.array(expected), atol=1e-13, rtol=0)
    # the step η = lr (4·lr/(Kβ) ≠ lr here) is another algorithm
    assert np.abs(iterate(extragradient(eta=lr, tau=beta), game, steps) - np.array(expected)).max() > 0.1


def test_egpo_online_ipo_1_is_inpo_at_k_beta_over_4lr():
    """EGPO's "Online IPO 1 (OMD)" (``simulations/loss_funcs.py::online_ipo_1``): one plain SGD step of size lr
    per iteration on the loss of the extragradient test above with p = Pπ_t is U(ℓ_t; π_t) at η = 4·lr/(Kβ), i.e.
    INPO with η_INPO = 1/η = Kβ/(4·lr) and τ = β (docs/theory.md §C.5) — plain mirror descent with
    extragradient's step (notebook 07 §3), not MMD's η_INPO = τ + 1/η."""
    arms, beta, lr, steps = 6, 0.05, 0.1, 15
    matrix, reference = random_matrix(arms, seed=5), random_policy(arms, seed=6)
    log_reference = np.log(reference)

    def egpo_loss(theta, prefs):
        d = jax.nn.log_softmax(theta) - log_reference
        return jnp.sum(((d[:, None] - d[None, :]) - (prefs[:, None] - prefs[None, :]) / beta) ** 2) / arms**2

    gradient = jax.grad(egpo_loss)
    theta = log_reference.copy()
    expected = [normalize(theta)]
    for _ in range(steps):
        theta = theta - lr * np.asarray(gradient(theta, matrix @ np.exp(normalize(theta))))
        expected.append(normalize(theta))
    game = make_game(matrix, reference, beta)
    step = 4.0 * lr / (arms * beta)
    np.testing.assert_allclose(iterate(inpo(eta=1.0 / step, tau=beta), game, steps), expected, atol=1e-13, rtol=0)
    assert np.abs(iterate(inpo(eta=beta + 1.0 / step, tau=beta), game, steps) - np.array(expected)).max() > 1e-3


def test_optimistic_steps_by_hand():
    eta = 0.8
    initial = random_policy(5, seed=7)
    log_reference = np.log(RANDOM_REFERENCE)
    logs = iterate(optimistic(eta=eta, tau=TAU), _game("random", initial=initial), 3)
    policy, leading = np.log(initial), np.log(initial)
    for t in range(1, 4):
        leading = mirror_step(policy, log_reference, RANDOM @ np.exp(leading), eta, TAU)  # π̄_{t+1} = U(ℓ_t; π̄_t)
        policy = mirror_step(policy, log_reference, RANDOM @ np.exp(leading), eta, TAU)  # π_{t+1} = U(ℓ_t; π̄_{t+1})
        np.testing.assert_allclose(logs[t], policy, atol=1e-13, rtol=0)


@pytest.mark.parametrize("factory", [extragradient, optimistic, nash_md, inpo], ids=lambda f: f.__name__)
def test_regularised_nash_fixed_point_and_last_iterate_convergence(factory, nash_policies):
    eta = 2.0 if factory is inpo else 1.0
    for name in ("cyclic", "random"):
        matrix, reference = GAMES[name]
        target = nash_policies[name]
        stays = np.exp(_one_step(factory(eta=eta, tau=TAU), _game(name, initial=target)))
        if factory is nash_md:
            assert np.abs(stays - target).max() > 1e-6  # the one rule here for which π* is not a fixed point
            continue
        np.testing.assert_allclose(stays, target, atol=1e-13, rtol=0)
        logs = iterate(factory(eta=eta, tau=TAU), _game(name), 400)
        assert duality_gap_logz(matrix, reference, TAU, np.exp(logs[-1])) < 1e-10


# --------------------------------------------------------------------------- sampled losses ↔ exact updates
def _pair_population_loss(loss, logits, sampling, matrix):
    """E_{y,y′∼μ, (y_w,y_l)∼λ_p}[loss(y_w, y_l)] with λ_p ordering the pair by the oracle (INPO Eq. 8)."""
    log_policy = jax.nn.log_softmax(logits)
    winners = log_policy[:, None]
    losers = log_policy[None, :]
    weights = sampling[:, None] * sampling[None, :] * matrix  # (y, y′) drawn, y wins
    return jnp.sum(weights * loss(winners, losers))


def test_inpo_loss_minimiser_is_the_exact_update():
    # Lemma 5 / Prop. 6: the population loss (8) on y, y′ ~ π_t is minimised by Eq. (5).
    from sim.rules.inpo import inpo_loss

    eta = 0.9
    previous = np.log(random_policy(5, seed=8))
    log_reference = np.log(RANDOM_REFERENCE)
    exact = inpo_step(previous, log_reference, RANDOM, eta, TAU)

    def loss(logits):
        def per_pair(w, l):
            lw, ll = jnp.meshgrid(jnp.arange(5), jnp.arange(5), indexing="ij")
            return inpo_loss(w, l, log_reference[lw], log_reference[ll], previous[lw], previous[ll], eta, TAU)

        return _pair_population_loss(per_pair, logits, np.exp(previous), RANDOM)

    grad = jax.grad(loss)
    assert np.abs(np.asarray(grad(jnp.asarray(exact)))).max() < 1e-13
    assert np.abs(np.asarray(grad(jnp.asarray(previous)))).max() > 1e-3


def test_ipo_loss_minimiser_is_best_response():
    from sim.rules.online_ipo import ipo_loss

    sampling = random_policy(5, seed=9)
    log_reference = np.log(RANDOM_REFERENCE)
    exact = np.log(best_response(RANDOM, RANDOM_REFERENCE, TAU, sampling))

    def loss(logits):
        def per_pair(w, l):
            lw, ll = jnp.meshgrid(jnp.arange(5), jnp.arange(5), indexing="ij")
            return ipo_loss(w, l, log_reference[lw], log_reference[ll], TAU)

        return _pair_population_loss(per_pair, logits, sampling, RANDOM)

    assert np.abs(np.asarray(jax.grad(loss)(jnp.asarray(exact)))).max() < 1e-13
    # a control: the loss is not flat, its gradient at the sampling policy is not zero
    assert np.abs(np.asarray(jax.grad(loss)(jnp.asarray(np.log(sampling))))).max() > 1e-3


def test_sppo_paper_loss_minimiser_is_the_paper_normaliser_step():
    from sim.rules.sppo import sppo_loss

    eta = 3.0
    previous = np.log(random_policy(4, seed=11))
    matrix = random_matrix(4, seed=12)
    win = matrix @ np.exp(previous)
    game = make_game(matrix, None, 0.0, initial=np.exp(previous))
    paper = _one_step(sppo(eta=eta, normaliser="paper"), game)

    def loss(logits):
        return jnp.sum(np.exp(previous) * sppo_loss(jax.nn.log_softmax(logits), previous, win, eta))

    assert np.abs(np.asarray(jax.grad(loss)(jnp.asarray(paper)))).max() < 1e-9
    exact = normalize(previous + eta * win)
    assert np.abs(np.asarray(jax.grad(loss)(jnp.asarray(exact)))).max() > 1e-4


def test_dpo_and_dno_losses_are_minimised_by_their_exact_steps():
    from sim.rules.dno import dno_loss
    from sim.rules.dpo import dpo_loss

    previous = np.log(BT_REFERENCE)
    beta = 0.7
    dpo_next = normalize(previous + REWARDS / beta)
    index_w, index_l = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")

    def dpo_population(logits):
        return _pair_population_loss(
            lambda w, l: dpo_loss(w, l, previous[index_w], previous[index_l], beta), logits, np.exp(previous), BT
        )

    assert np.abs(np.asarray(jax.grad(dpo_population)(jnp.asarray(dpo_next)))).max() < 1e-12
    assert np.abs(np.asarray(jax.grad(dpo_population)(jnp.asarray(previous)))).max() > 1e-3  # not flat

    eta = 2.0
    win = RANDOM @ np.exp(np.log(RANDOM_REFERENCE))
    dno_next = normalize(np.log(RANDOM_REFERENCE) + win / eta)
    pairs_1, pairs_2 = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")

    def dno_population(logits):
        log_policy = jax.nn.log_softmax(logits)
        losses = dno_loss(
            log_policy[pairs_1],
            log_policy[pairs_2],
            np.log(RANDOM_REFERENCE)[pairs_1],
            np.log(RANDOM_REFERENCE)[pairs_2],
            win[pairs_1] - win[pairs_2],
            eta,
        )
        return jnp.sum(RANDOM_REFERENCE[pairs_1] * RANDOM_REFERENCE[pairs_2] * losses)

    assert np.abs(np.asarray(jax.grad(dno_population)(jnp.asarray(dno_next)))).max() < 1e-12
    assert np.abs(np.asarray(jax.grad(dno_population)(jnp.asarray(np.log(RANDOM_REFERENCE))))).max() > 1e-3


def test_every_registered_rule_builds_with_defaults():
    for name, _info in RULES.items():
        given = {"eta": 1.0} if name == "inpo" else {}
        rule = build_rule(name, resolve_parameters(name, given, TAU))
        assert rule.name == name


CARRIED_POLICY_CASES = [(name, {"eta": 1.0} if name == "inpo" else {}) for name in RULES] + [
    ("sppo", {"normaliser": "paper"}),
    ("inpo", {"schedule": "theorem4"}),
    ("apo", {"base": "inpo", "eta": 1.0}),
    ("apo", {"base": "sppo", "schedule": "nesterov"}),
]


@pytest.mark.parametrize(
    "name, given", CARRIED_POLICY_CASES, ids=[f"{n}-{'-'.join(g)}" for n, g in CARRIED_POLICY_CASES]
)
def test_carried_policy_is_exp_of_the_log_policy_and_changes_nothing(name, given):
    # Rules carry π_t = exp(log π_t) in state.policy so the next update and the trajectory take no exp
    # of their own.  (a) It must stay equal to exp(log π_t); (b) a state built from the log-policy alone
    # (policy = None, as the sampled engine and the bridge build them) must give the same update.
    matrix, reference = (BT, BT_REFERENCE) if name in ("dpo", "apo") else (RANDOM, RANDOM_REFERENCE)
    rewards = REWARDS if name in ("dpo", "apo") else None
    game = make_game(matrix, reference, TAU, initial=random_policy(len(reference), seed=9), rewards=rewards)
    rule = build_rule(name, resolve_parameters(name, given, TAU))

    @jax.jit
    def run(game):
        def body(state, _):
            with_policy = rule.update(state, game)
            without = rule.update(state._replace(policy=None), game)
            return with_policy, (with_policy.log_policy, with_policy.policy, without.log_policy)

        return jax.lax.scan(body, rule.init(game), None, length=25)[1]

    logs, policies, logs_without = (np.asarray(x) for x in run(game))
    assert policies.shape == logs.shape == (25, len(reference))
    np.testing.assert_allclose(policies, np.exp(logs), rtol=1e-13, atol=0)
    np.testing.assert_allclose(policies.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(logs_without, logs, rtol=0, atol=1e-12)
    assert np.abs(logs[-1] - logs[0]).max() > 1e-3  # the rule moved, so the comparison means something


def test_a_carried_product_is_what_the_update_uses_and_advance_drops_it():
    # ExactState.win_rates (Pπ_t handed over by the trajectory) replaces the rule's own product: a
    # deliberately different vector w must give INPO's step with w, and the new state carries none.
    from sim.rules.base import current_win_rates

    game = _game("random")
    rule = inpo(eta=0.7, tau=TAU)
    state = rule.init(game)
    own = np.asarray(current_win_rates(state, game))
    np.testing.assert_allclose(own, RANDOM @ RANDOM_REFERENCE, rtol=0, atol=1e-15)
    other = np.linspace(0.1, 0.9, 5)
    stepped = rule.update(state._replace(win_rates=jnp.asarray(other)), game)
    expected = mirror_step(np.log(RANDOM_REFERENCE), np.log(RANDOM_REFERENCE), other, 1 / 0.7, TAU)
    np.testing.assert_allclose(np.asarray(stepped.log_policy), expected, rtol=0, atol=1e-13)
    assert stepped.win_rates is None
    plain = rule.update(state, game)
    assert np.abs(np.asarray(plain.log_policy) - expected).max() > 1e-3
