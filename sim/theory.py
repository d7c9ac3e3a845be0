"""The papers' bounds as functions of a run's parameters, and how tight they are on a run.

Every function states its formula and source with docs/theory.md's provenance tags: [V] checked against
the paper text, [M] recalled from the paper but not re-checked, [D] derived in docs/theory.md (✓ when
also checked numerically), [S] secondary (reviews, rebuttal).  APO's paper is **not public**
(docs/theory.md §B): its Theorem 4.4/4.8 constants are unknown, so for APO this module implements docs/theory.md's
exact-reward derivations [D✓] (which are bounds and closed forms for the exact-reward case), not
the paper's statements.

Indexing.  A run records π_t after t updates, t = 0 being the initial policy π_0 = π_ref.  The
``*_mixture`` metrics average π_0 … π_t, i.e. **T = t + 1 iterates**; Theorem 3 of INPO (π̄ =
(1/T)Σ_{t=1}^T π_t with π_1 = π_ref) and the Hedge bound are applied with T = t + 1.  INPO's
``theorem4`` schedule uses η_t = τ(t+2)/2 for the update t → t+1, t = 0, 1, … (docs/theory.md §A.5 reading
(a): the first update is BR_τ(π_ref)), and Theorem 4's bound is applied to π_T, T = t ≥ 1.

Realised constants (Assumption A, docs/theory.md §A.5): B must bound |log π/π_ref| for every iterate on the
trajectory **and** π* (Reviewer 4's reading); :func:`realised_log_ratio` takes the running maximum of
the ``max_log_ratio`` column over the *recorded* iterations together with π*'s log-ratio, so runs
that certify a bound should record every iteration (``record_every = 1``) or accept that B is
read at the recorded iterations only.  D = max_{π∈Π} KL(π‖π_1) over policies with π_ref's support
is log(1/min_y π_ref(y)) (the point mass on the least likely arm).

Main entry points: :func:`tightness_report` (observed / bound along a run, per rule, seed,
iteration) and :func:`bounds_for_run` (bound curves for the figures of :mod:`sim.plotting`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from sim.game import Game
from sim.rules.apo import apo_multipliers
from sim.seed_games import build_games
from sim.spec import ExperimentSpec, load_spec, parse_spec

# ----------------------------------------------------------------------------------------------
# realised constants


def log_reference_mass_bound(reference: ArrayLike) -> float:
    """D = max_{π ∈ Π} KL(π ‖ π_ref) = log(1 / min_y π_ref(y)) over policies with π_ref's support [D].

    INPO's Lemma 2 defines D = max_{π∈Π} KL(π‖π_1) with π_1 = π_ref; the supremum over the simplex
    restricted to π_ref's support is attained at the point mass on argmin π_ref.
    """
    reference = np.asarray(reference, dtype=np.float64)
    return float(-np.log(reference.min()))


def policy_log_ratio(policy: ArrayLike, reference: ArrayLike) -> float:
    """max_y |log π(y)/π_ref(y)| (the quantity Assumption A bounds by B)."""
    policy = np.asarray(policy, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(np.log(policy) - np.log(reference))))


def omega_max(preference: ArrayLike, target: ArrayLike) -> float:
    """ω_max = the largest |imaginary part| of the eigenvalues of (P − ½)J*, J* = diag π* − π*π*ᵀ [D✓].

    docs/theory.md §A.3: they equal those of the skew-symmetric J*^{½}(P − ½)J*^{½}, whose eigenvalues are
    ±iω_k, so ω_max is its spectral norm.  For the 3-cycle P_c with uniform π*: c/(2√3).
    """
    preference = np.asarray(preference, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    jacobian = np.diag(target) - np.outer(target, target)
    values, vectors = np.linalg.eigh(jacobian)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    skew = root @ (preference - 0.5) @ root
    return float(np.linalg.norm(skew, 2))


def eta_critical(preference: ArrayLike, target: ArrayLike, tau: float) -> float:
    """η_crit = (τ² + ω_max²)/(2τ): constant-η INPO converges in the last iterate iff η > η_crit [D✓].

    docs/theory.md §A.3: linearised at π*, the log-space error maps by (1 − τ/η)I + (P − ½)J*/η whose
    eigenvalues are (1 − τ/η) ± iω_k/η; |λ| < 1 ⟺ η > (τ² + ω_k²)/(2τ).  Source: derived in docs/theory.md,
    checked in 48/48 random instances there.
    """
    tau = float(tau)
    if not tau > 0:
        raise PrefsimError(f"eta_critical: needs τ > 0, got {tau:g}.")
    return (tau**2 + omega_max(preference, target) ** 2) / (2.0 * tau)


def inpo_contraction_factor(preference: ArrayLike, target: ArrayLike, tau: float, eta: float) -> float:
    """Spectral radius ρ = max_k |1 − τ/η ± iω_k/η| = √((1 − τ/η)² + ω_max²/η²) of linearised INPO [D].

    The log-policy error near π* shrinks like ρ^t, so KL(π*‖π_t) (quadratic in the error) has the
    semilog slope 2·log ρ per iteration; ρ < 1 ⟺ η > η_crit.
    """
    omega = omega_max(preference, target)
    return math.sqrt((1.0 - tau / eta) ** 2 + (omega / eta) ** 2)


# ----------------------------------------------------------------------------------------------
# INPO (Zhang et al., ICLR 2025): Lemma 2, Theorem 3, Theorem 4


def inpo_c(log_ratio_bound: float, tau: float) -> float:
    """C = max(Bτ, 1) of Lemma 2 / Theorem 4 [V]."""
    return np.maximum(np.asarray(log_ratio_bound, dtype=np.float64) * float(tau), 1.0)


def lemma2_eta(iterations: ArrayLike, log_ratio_bound: ArrayLike, tau: float, divergence: float) -> np.ndarray | float:
    """Lemma 2's inverse learning rate η = max(Bτ, 1)·√T/√D [V].

    T iterates, D as in :func:`log_reference_mass_bound`.
    """
    return inpo_c(log_ratio_bound, tau) * np.sqrt(np.asarray(iterations, dtype=np.float64)) / math.sqrt(divergence)


def lemma2_regret_bound(
    iterations: ArrayLike, eta: ArrayLike, tau: float, log_ratio_bound: ArrayLike, divergence: float
) -> np.ndarray | float:
    """Reg_T ≤ ηD + (4τ²B² + 1)·T/η for OMD (Eq. 4) with constant inverse learning rate η [V, App. A.1].

    This is the explicit inequality of the proof of Lemma 2 (taking B ≥ 1 without loss of generality,
    as the proof does: B is replaced by max(B, 1)); with η = max(Bτ,1)√T/√D it is O(max(Bτ,1)√(TD)).
    It bounds Σ_{t=1}^T ⟨∇ℓ_t(π_t), π_t − u⟩ for every comparator u with KL(u‖π_ref) ≤ D.
    """
    b = np.maximum(np.asarray(log_ratio_bound, dtype=np.float64), 1.0)
    t = np.asarray(iterations, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    return eta * divergence + (4.0 * tau**2 * b**2 + 1.0) * t / eta


def theorem3_gap_bound(
    iterations: ArrayLike, eta: ArrayLike, tau: float, log_ratio_bound: ArrayLike, divergence: float
) -> np.ndarray | float:
    """DualGap(π̄_T) ≤ 2·Reg_T/T (INPO Theorem 3, App. A.2) with Reg_T of :func:`lemma2_regret_bound` [V].

    π̄_T = (1/T)Σ_{t=1}^T π_t is the mixture of distributions of the first T iterates (π_1 = π_ref).
    The paper states it for η = max(Bτ,1)√T/√D (:func:`lemma2_eta`); the proof's inequality holds for
    any constant η, so this function takes η explicitly.
    """
    t = np.asarray(iterations, dtype=np.float64)
    return 2.0 * lemma2_regret_bound(t, eta, tau, log_ratio_bound, divergence) / t


def theorem4_kl_bound(
    iterations: ArrayLike, tau: float, log_ratio_bound: ArrayLike, constant: float = 32.0
) -> np.ndarray | float:
    """KL(π*‖π_T) ≤ 32C²/(τ²(T + 1)), C = max(Bτ, 1), under η_t = τ(t+2)/2 (INPO Theorem 4) [V].

    ``constant`` is the paper's 32 (exposed so tests can check that a wrong constant is caught).
    The bound is loose for exact updates: KL ∝ T⁻⁴ there (docs/theory.md §A.5, [D✓]).
    """
    c = inpo_c(log_ratio_bound, tau)
    t = np.asarray(iterations, dtype=np.float64)
    return constant * c**2 / (tau**2 * (t + 1.0))


def theorem4_step_bound(
    kl_previous: ArrayLike, eta: ArrayLike, tau: float, log_ratio_bound: ArrayLike, constant: float = 8.0
) -> np.ndarray | float:
    """One step of Theorem 4: KL(π*‖π_{t+1}) ≤ (1 − τ/η_t)·KL(π*‖π_t) + 8C²/η_t² [V]."""
    c = inpo_c(log_ratio_bound, tau)
    eta = np.asarray(eta, dtype=np.float64)
    return (1.0 - tau / eta) * np.asarray(kl_previous, dtype=np.float64) + constant * c**2 / eta**2


def theorem4_eta_schedule(steps: ArrayLike, tau: float) -> np.ndarray | float:
    """η_t = τ(t+2)/2 for the update t → t+1, t = 0, 1, … (reading (a) of docs/theory.md §A.5)."""
    return tau * (np.asarray(steps, dtype=np.float64) + 2.0) / 2.0


def inpo_linearised_regret(
    game: Game, eta: float | jax.Array, tau: float | jax.Array, iterations: int, comparator: ArrayLike
) -> np.ndarray:
    """Realised Σ_{t=1}^T ⟨∇ℓ_t(π_t), π_t − u⟩ of exact constant-η INPO, for T = 1 … ``iterations`` [D].

    ∇ℓ_t(π_t)_y = −(Pπ_t)_y + τ(log(π_t(y)/π_ref(y)) + 1) (Eq. 4); the constant +τ cancels in
    ⟨·, π_t − u⟩.  Runs its own jitted ``lax.scan`` from π_1 = π_ref (Algorithm 1's indexing).  Returns
    a NumPy array of length ``iterations`` (entry T−1 is the sum over the first T iterates), for the
    comparator ``u`` (probabilities; e.g. π*).
    """
    comparator = jnp.asarray(comparator, dtype=game.preference.dtype)

    def step(log_policy, _):
        policy = jnp.exp(log_policy)
        payoff = game.preference @ policy
        gradient = -payoff + tau * (log_policy - game.log_reference)
        term = jnp.dot(gradient, policy - comparator)
        new = (1.0 - tau / eta) * log_policy + (tau / eta) * game.log_reference + payoff / eta
        new = new - jax.scipy.special.logsumexp(new)
        return new, term

    _, terms = jax.lax.scan(step, game.log_reference, None, length=int(iterations))
    return np.cumsum(np.asarray(terms))


# ----------------------------------------------------------------------------------------------
# SPPO / DNO (Hedge in self-play), Nash-MD Theorem 1, MMD


def hedge_exploitability_bound(iterations: ArrayLike, eta: ArrayLike, initial_min_mass: float) -> np.ndarray | float:
    """Exploitability of the uniform mixture of T Hedge/SPPO iterates ≤ 2·(log(1/min π_0)/η + ηT/8)/T [D].

    SPPO's exact update ℓ_{t+1} = ℓ_t + ηPπ_t − log Z_t is Hedge with gains (Pπ_t)_y ∈ [0, 1] and
    prior π_0; Hedge's regret against any arm y is ≤ log(1/π_0(y))/η + ηT/8 (Cesa-Bianchi & Lugosi
    2006, Thm 2.2).  In self-play πᵀPπ = ½, so max_y (Pπ̄_T)_y − ½ ≤ Reg_T/T and the exploitability
    2·max_y(Pπ̄_T)_y − 1 ≤ 2Reg_T/T.  This is the O(1/√T) shape of SPPO's Theorem 4.1 [M] (η = Θ(1/√T)),
    with the standard Hedge constant (SPPO's own constant is not checked).  DNO: η = 1/η_DNO.
    """
    t = np.asarray(iterations, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    return 2.0 * (-math.log(initial_min_mass) / eta + eta * t / 8.0) / t


def hedge_optimal_eta(iterations: ArrayLike, initial_min_mass: float) -> np.ndarray | float:
    """η minimising :func:`hedge_exploitability_bound`: √(8·log(1/min π_0)/T) = Θ(1/√T)."""
    return np.sqrt(8.0 * -math.log(initial_min_mass) / np.asarray(iterations, dtype=np.float64))


def nash_md_kl_bound(
    iterations: ArrayLike, eta: float, tau: float, kl_initial: ArrayLike, constant: float = 2.0
) -> np.ndarray | float:
    """Nash-MD Theorem 1 unrolled: KL(π*‖π_T) ≤ (1 − ητ)^T·KL(π*‖π_0) + 2η²·Σ_{k<T}(1 − ητ)^k [M].

    One step (Munos et al. 2024, Theorem 1, recalled in docs/theory.md §C.6, not re-checked):
    KL(π*_τ, π_{t+1}) ≤ (1 − ητ)KL(π*_τ, π_t) + 2η².  With η = log T/(τT) this gives
    KL(π*, π_T) ≤ (KL(π*, π_0) + 2 log T/τ²)/T (:func:`nash_md_theorem1_eta`).
    """
    t = np.asarray(iterations, dtype=np.float64)
    factor = 1.0 - eta * tau
    with np.errstate(divide="ignore", invalid="ignore"):  # the ητ = 0 branch is taken by np.where
        geometric = np.where(factor == 1.0, t, (1.0 - factor**t) / (1.0 - factor))
    return factor**t * np.asarray(kl_initial, dtype=np.float64) + constant * eta**2 * geometric


def nash_md_theorem1_eta(iterations: int, tau: float) -> float:
    """η = log T/(τT), the step of Nash-MD's Theorem 1 for horizon T [M]."""
    return math.log(iterations) / (tau * iterations)


def mmd_lipschitz(preference: ArrayLike) -> float:
    """L = max_{ij} |P_ij − ½|: Lipschitz constant of the payoff operator π ↦ (P − ½)π from ℓ₁ to ℓ∞."""
    return float(np.max(np.abs(np.asarray(preference, dtype=np.float64) - 0.5)))


def mmd_kl_bound(
    iterations: ArrayLike, eta: float, tau: float, kl_initial: ArrayLike, lipschitz: float
) -> np.ndarray | float:
    """MMD linear rate: KL(π*‖π_t) ≤ KL(π*‖π_0)/(1 + ητ)^t when η ≤ τ/L² (Sokota et al. 2023, Thm 3.4) [M].

    Returns NaN where the step condition η ≤ τ/L² fails (the theorem then says nothing).  L as in
    :func:`mmd_lipschitz` (negative entropy is 1-strongly convex w.r.t. ℓ₁).
    """
    t = np.asarray(iterations, dtype=np.float64)
    if eta > tau / lipschitz**2:
        return np.full_like(t, np.nan)
    return np.asarray(kl_initial, dtype=np.float64) / (1.0 + eta * tau) ** t


# ----------------------------------------------------------------------------------------------
# APO with exact rewards (docs/theory.md §B.3, derived [D✓]; the paper's constants are unknown)


def apo_multiplier_sequence(
    iterations: int, alpha: float = 0.3, schedule: str = "constant"
) -> tuple[np.ndarray, np.ndarray]:
    """(ĉ_t, c_t) for t = 0 … ``iterations``: log π̂_t = log π_ref + ĉ_t·r/β, log π_t = log π_ref + c_t·r/β [D✓].

    Recursion of APO-DPO with exact rewards (docs/theory.md §B.3, sim.rules.apo): x_{t+1} = y_t + 1,
    y_{t+1} = (1 + α_t)x_{t+1} − α_t x_t, x_0 = y_0 = 0, with α_t = α (constant) or t/(t+3)
    (``nesterov``, as :func:`sim.rules.apo.extrapolation_weight`).  For constant α this equals
    :func:`sim.rules.apo.apo_multipliers`.
    """
    steps = jnp.arange(int(iterations), dtype=jnp.float64)
    weights = steps / (steps + 3.0) if schedule == "nesterov" else jnp.full_like(steps, float(alpha))

    def step(carry, weight):
        proximal, extrapolated = carry
        new_proximal = extrapolated + 1.0
        new_extrapolated = (1.0 + weight) * new_proximal - weight * proximal
        return (new_proximal, new_extrapolated), (new_proximal, new_extrapolated)

    _, (proximal, extrapolated) = jax.lax.scan(step, (jnp.zeros(()), jnp.zeros(())), weights)
    zero = np.zeros(1)
    return np.concatenate([zero, np.asarray(proximal)]), np.concatenate([zero, np.asarray(extrapolated)])


def apo_suboptimality_bound(
    iterations: ArrayLike,
    alpha: float,
    beta: float,
    reference: ArrayLike,
    rewards: ArrayLike,
    schedule: str = "constant",
) -> np.ndarray:
    """SubOpt(π_T) ≤ β·log(1/π_ref(y*))/c_T ≈ (1 − α)β·log(1/π_ref(y*))/T [D✓, docs/theory.md §B.3].

    Gibbs variational argument for π_T = softmax(log π_ref + c_T r/β); y* = argmax r (the largest
    π_ref mass among ties).  This is docs/theory.md's exact-reward form of the optimisation term of APO's
    Theorem 4.4, whose constants are unknown (the paper is not public).  α = 0 is iterative DPO.
    """
    reference = np.asarray(reference, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    best = np.flatnonzero(rewards == rewards.max())
    log_inverse = -np.log(reference[best].sum())
    t = np.asarray(iterations, dtype=np.int64)
    multipliers = _multipliers_at(t, alpha, schedule)
    with np.errstate(divide="ignore"):
        return np.where(multipliers > 0, beta * log_inverse / np.where(multipliers > 0, multipliers, 1.0), np.inf)


def _multipliers_at(iterations: np.ndarray, alpha: float, schedule: str) -> np.ndarray:
    if schedule == "constant":
        return np.asarray(apo_multipliers(np.asarray(iterations, dtype=np.float64), float(alpha))[1])
    _, extrapolated = apo_multiplier_sequence(int(np.max(iterations)), alpha, schedule)
    return extrapolated[np.asarray(iterations)]


def apo_exact_policy(
    iterations: int, alpha: float, beta: float, reference: ArrayLike, rewards: ArrayLike, schedule: str = "constant"
) -> np.ndarray:
    """Closed-form π_T = softmax(log π_ref + c_T·r/β) of exact-reward APO-DPO [D✓]."""
    multiplier = float(_multipliers_at(np.asarray([iterations]), alpha, schedule)[0])
    logits = np.log(np.asarray(reference, dtype=np.float64)) + multiplier * np.asarray(rewards, dtype=np.float64) / beta
    logits -= logits.max()
    policy = np.exp(logits)
    return policy / policy.sum()


def reward_gap(rewards: ArrayLike) -> float:
    """Δ = r*_max − max_{y ≠ y*} r_y; 0 when the best arm is not unique."""
    ordered = np.sort(np.asarray(rewards, dtype=np.float64))[::-1]
    return float(ordered[0] - ordered[1])


def apo_tv_bound(
    iterations: ArrayLike,
    alpha: float,
    beta: float,
    reference: ArrayLike,
    rewards: ArrayLike,
    schedule: str = "constant",
) -> np.ndarray | float:
    """TV(π_T, δ_{y*}) = 1 − π_T(y*) ≤ ((1 − π_ref(y*))/π_ref(y*))·exp(−c_T·Δ/β) [D✓, docs/theory.md §B.3].

    Needs a unique best arm (Δ > 0).  Shape of APO's Theorem 4.8 (exact form unknown): the
    semilog slope tends to −Δ/(β(1 − α)) (:func:`apo_tv_log_slope`).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    gap = reward_gap(rewards)
    if not gap > 0:
        raise PrefsimError("apo_tv_bound: needs a unique best arm (reward gap Δ > 0).")
    best_mass = float(np.asarray(reference, dtype=np.float64)[int(np.argmax(rewards))])
    multipliers = _multipliers_at(np.asarray(iterations, dtype=np.int64), alpha, schedule)
    return (1.0 - best_mass) / best_mass * np.exp(-multipliers * gap / beta)


def apo_tv_log_slope(alpha: float, beta: float, rewards: ArrayLike) -> float:
    """Asymptotic semilog slope of TV(π_T, π*) for constant α: −Δ/(β(1 − α)) per iteration [D✓]."""
    return -reward_gap(rewards) / (beta * (1.0 - alpha))


def apo_dpo_lag(iterations: ArrayLike, alpha: float) -> np.ndarray | float:
    """Iteration lag L_T = α²(1 − α^T)/(1 − α): APO(α, β) after T iterations = iterative DPO with
    β_eff = β(1 − α) after T − L_T iterations (exact, docs/theory.md §B.3 [D✓]; L_T → α²/(1 − α))."""
    t = np.asarray(iterations, dtype=np.float64)
    return alpha**2 * (1.0 - alpha**t) / (1.0 - alpha)


def apo_noise_weights(iterations: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of per-step reward errors ε_s (s = 0 … T−1) in the log-policies [D✓, docs/theory.md §B.3].

    Returns ``(proximal, extrapolated)``: ŵ_{T,s} = (1 − α^{T−s})/(1 − α) in log π̂_T and
    w_{T,s} = (1 − α^{T−s+1})/(1 − α) in log π_T, each divided by β in the log-policy; they sum to
    ĉ_T and c_T.  Each error is amplified by up to 1/(1 − α) – the mechanism behind the reviewers'
    1/(1 − α) statistical factor.
    """
    s = np.arange(int(iterations), dtype=np.float64)
    power = int(iterations) - s
    return (1.0 - alpha**power) / (1.0 - alpha), (1.0 - alpha ** (power + 1.0)) / (1.0 - alpha)


def apo_log_ratio_growth(iterations: ArrayLike, alpha: float, beta: float, rewards: ArrayLike) -> np.ndarray | float:
    """Predicted realised B_T ≈ c_T·(r_max − r_min)/β (+O(1)) of exact-reward APO-DPO [D✓, docs/theory.md §B.3]."""
    rewards = np.asarray(rewards, dtype=np.float64)
    multipliers = _multipliers_at(np.asarray(iterations, dtype=np.int64), alpha, "constant")
    return multipliers * (rewards.max() - rewards.min()) / beta


# ----------------------------------------------------------------------------------------------
# runs: realised constants, tightness report, bound curves for figures


def _run_context(spec):
    """Parsed spec, per-seed numpy reference / preference / rewards / initial, and targets."""
    spec = parse_spec(spec)
    games, game_axes, targets, _ = build_games(spec)
    seeds = list(spec.seeds)
    context = {}
    for index, seed in enumerate(seeds):
        leaf = {
            name: np.asarray(getattr(games, name)[index] if getattr(game_axes, name) == 0 else getattr(games, name))
            for name in Game._fields
        }
        context[seed] = {
            "preference": leaf["preference"],
            "reference": np.exp(leaf["log_reference"]),
            "initial": np.exp(leaf["log_initial"]),
            "rewards": leaf["rewards"],
            "tau": float(leaf["tau"]),
            "target": np.asarray(targets[index]),
        }
    return spec, context


def _labels(spec) -> dict:
    """Result label → (rule name, resolved scalar parameters)."""
    labels = {}
    for rule in spec.rules:
        for label, point in rule.grid_labels():
            labels[label] = (rule.name, {**rule.fixed(), **point})
    return labels


def realised_log_ratio(frame: pd.DataFrame, target: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Running realised B_t = max(max_{s ≤ t} max_log_ratio(π_s), max|log π*/π_ref|) for one rule × seed.

    ``frame`` holds one rule and seed, sorted by iteration.  π*'s log-ratio is included because
    Assumption A's policy class must contain π* (docs/theory.md §A.5).  Only recorded iterations are seen.
    """
    running = np.maximum.accumulate(frame["max_log_ratio"].to_numpy(dtype=np.float64))
    return np.maximum(running, policy_log_ratio(target, reference))


def _rows_for(name: str, parameters: dict, frame: pd.DataFrame, game: dict) -> list[pd.DataFrame]:
    """Bound rows (metric, bound, bound_name) for one rule × seed; empty when no bound applies."""
    t = frame["iteration"].to_numpy(dtype=np.int64)
    out = []

    def add(metric, bound, bound_name, mask=None):
        mask = np.ones_like(t, dtype=bool) if mask is None else mask
        observed = frame[metric].to_numpy(dtype=np.float64)
        bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), t.shape)
        out.append(
            pd.DataFrame(
                {
                    "iteration": t[mask],
                    "metric": metric,
                    "bound_name": bound_name,
                    "observed": observed[mask],
                    "bound": bound[mask],
                }
            )
        )

    tau = game["tau"]
    if name == "inpo" and tau > 0 and np.allclose(game["initial"], game["reference"]):
        rule_tau = float(parameters.get("tau", tau))
        if abs(rule_tau - tau) > 1e-12:
            return out  # the metrics measure a different game's Nash; the theorems are about the rule's own τ
        b = realised_log_ratio(frame, game["target"], game["reference"])
        if parameters.get("schedule", "constant") == "theorem4":
            add("kl_to_nash", theorem4_kl_bound(t, tau, b), "INPO Theorem 4: 32C²/(τ²(T+1))", mask=t >= 1)
        else:
            eta = float(parameters["eta"])
            divergence = log_reference_mass_bound(game["reference"])
            add(
                "duality_gap_mixture",
                theorem3_gap_bound(t + 1, eta, tau, b, divergence),
                "INPO Theorem 3: 2Reg_T/T, Reg_T = ηD + (4τ²B²+1)T/η",
            )
    elif (
        name in ("sppo", "dno")
        and parameters.get("normaliser", "exact") == "exact"
        and np.all(np.isfinite(frame["exploitability_mixture"]))
    ):
        eta = float(parameters["eta"]) if name == "sppo" else 1.0 / float(parameters["eta"])
        add(
            "exploitability_mixture",
            hedge_exploitability_bound(t + 1, eta, float(game["initial"].min())),
            "Hedge regret: 2(log(1/min π_0)/η + ηT/8)/T",
        )
    elif name == "nash_md" and tau > 0 and abs(float(parameters.get("tau", tau)) - tau) < 1e-12:
        kl = frame["kl_to_nash"].to_numpy(dtype=np.float64)
        add(
            "kl_to_nash",
            nash_md_kl_bound(t, float(parameters["eta"]), tau, kl[0]),
            "Nash-MD Theorem 1 (unrolled)",
            mask=t >= 1,
        )
    elif name == "mmd" and tau > 0 and abs(float(parameters.get("tau", tau)) - tau) < 1e-12:
        kl = frame["kl_to_nash"].to_numpy(dtype=np.float64)
        bound = mmd_kl_bound(t, float(parameters["eta"]), tau, kl[0], mmd_lipschitz(game["preference"]))
        if np.isfinite(bound).any():
            add("kl_to_nash", bound, "MMD linear rate: KL_0/(1+ητ)^t (η ≤ τ/L²)", mask=t >= 1)
    elif (
        name in ("dpo", "apo")
        and np.all(np.isfinite(game["rewards"]))
        and np.allclose(game["initial"], game["reference"])
    ):
        if name == "apo" and parameters.get("base", "dpo") != "dpo":
            return out
        alpha = 0.0 if name == "dpo" else float(parameters.get("alpha", 0.3))
        schedule = "constant" if name == "dpo" else parameters.get("schedule", "constant")
        beta = float(parameters.get("beta", 1.0))
        add(
            "suboptimality",
            apo_suboptimality_bound(t, alpha, beta, game["reference"], game["rewards"], schedule),
            "APO/DPO exact: β·log(1/π_ref(y*))/c_T",
            mask=t >= 1,
        )
        if reward_gap(game["rewards"]) > 0 and tau == 0:
            add(
                "tv_to_optimum",
                apo_tv_bound(t, alpha, beta, game["reference"], game["rewards"], schedule),
                "APO/DPO exact: (1−π_ref(y*))/π_ref(y*)·exp(−c_TΔ/β)",
            )
    return out


def tightness_report(table: pd.DataFrame, spec: ExperimentSpec | dict | str) -> pd.DataFrame:
    """Observed metric / bound along every trajectory of a run, for every rule a bound applies to.

    Bounds used (see the functions above for formulas and sources): INPO ``theorem4`` schedule →
    Theorem 4 on ``kl_to_nash``; INPO constant η → Theorem 3's 2Reg_T/T (proof inequality with the
    run's η, realised B and D) on ``duality_gap_mixture``; SPPO (exact normaliser) and DNO → the Hedge
    bound on ``exploitability_mixture``; Nash-MD → Theorem 1 unrolled on ``kl_to_nash``; MMD → the
    linear rate when η ≤ τ/L²; iterative DPO and APO-DPO (exact rewards) → β log(1/π_ref(y*))/c_T on
    ``suboptimality`` and the exponential TV bound on ``tv_to_optimum``.

    Args:
      table: the run table of :func:`sim.run` for ``spec``.
      spec: the spec (dict, path or :class:`~sim.spec.ExperimentSpec`) the table came from.

    Returns:
      DataFrame with columns ``rule, seed, iteration, metric, bound_name, observed, bound, ratio,
      holds`` (ratio = observed/bound; holds = observed ≤ bound·(1 + 1e-9) + 1e-12).  Empty (same
      columns) when no bound applies.
    """

    if isinstance(spec, str):
        spec = load_spec(spec)

    spec = parse_spec(spec)
    if spec.run.mode != "exact" and getattr(spec.run, "problem", "game") != "game":
        raise PrefsimError(
            f"tightness_report: run.problem = {spec.run.problem!r} is not the [game] table; the bounds are "
            'computed from the game\'s P, π_ref and rewards, so only problem = "game" can be checked.'
        )
    spec, context = _run_context(spec)
    labels = _labels(spec)
    frames = []
    for (label, seed), frame in table.groupby(["rule", "seed"], sort=False):
        if label not in labels:
            raise PrefsimError(f"tightness_report: rule {label!r} of the table is not in the spec.")
        if seed not in context:
            raise PrefsimError(f"tightness_report: seed {seed} of the table is not in the spec.")
        name, parameters = labels[label]
        for rows in _rows_for(name, parameters, frame.sort_values("iteration"), context[seed]):
            rows.insert(0, "seed", seed)
            rows.insert(0, "rule", label)
            frames.append(rows)
    columns = ["rule", "seed", "iteration", "metric", "bound_name", "observed", "bound", "ratio", "holds"]
    if not frames:
        return pd.DataFrame(columns=columns)
    report = pd.concat(frames, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        report["ratio"] = report["observed"] / report["bound"]
    report["holds"] = report["observed"] <= report["bound"] * (1.0 + 1e-9) + 1e-12
    return report[columns]


def bounds_for_run(table: pd.DataFrame, spec: ExperimentSpec | dict) -> pd.DataFrame:
    """Bound curves for figures: per rule × metric × iteration the largest bound over seeds.

    The max over seeds is a bound on every seed, hence on the mean curve drawn by
    :func:`sim.plotting.plot_metric`.  Columns: ``rule, metric, iteration, bound, label``.  Empty for
    sampled-mode runs: the theorems are about exact (population) updates, and a dashed "bound" next to
    a sampled curve would misstate what they promise (use :func:`tightness_report` to compare anyway).
    """

    columns = ["rule", "metric", "iteration", "bound", "label"]
    if parse_spec(spec).run.mode != "exact":
        return pd.DataFrame(columns=columns)
    report = tightness_report(table, spec)
    if report.empty:
        return pd.DataFrame(columns=columns)
    grouped = report.groupby(["rule", "metric", "bound_name", "iteration"], sort=False)["bound"].max().reset_index()
    grouped["label"] = grouped["bound_name"].str.split(":").str[0] + " bound (" + grouped["rule"] + ")"
    return grouped[["rule", "metric", "iteration", "bound", "label"]]
