"""Equilibria to measure against: the τ-regularised Nash policy and the unregularised Nash (LP).

* :func:`regularised_nash` — π*_τ = BR_τ(π*_τ), π* ∝ π_ref·exp(Pπ*/τ) (docs/theory.md §A.2, §C.1), unique for
  τ > 0.  Solved in JAX by extragradient (mirror-prox) with step s = 1/(τ + 2·max|P − ½|), which
  contracts linearly, iterated until the closed-form duality gap is below ``tolerance`` (default
  1e-14, well inside the gap < 1e-12 the metrics require) **and** one step moves log π by at most
  ``STEP_TOLERANCE`` on average under π (Σ_y π(y)·|Δ log π(y)|).  The second condition matters: the gap
  is quadratic in the error, so a gap of 1e-14 alone leaves π* wrong by ~1e-7, which floors ``kl_to_nash``
  near 1e-13 and biases convergence-rate fits; the step condition makes π* accurate to
  ~1e-14·(τ + 1)/τ in total variation (:func:`sim.diagnostics.target_error`: 2e-14 at τ = 1, 1e-12 at
  τ = 0.01, 5e-12 at τ = 0.002).
* :func:`unregularised_nash` — a maximin strategy of the symmetric zero-sum game P − ½ by linear
  programming (SciPy ``linprog``): maximise v subject to (Pᵀπ)_y ≥ v, π in the simplex.  Its value is
  ½.  Not unique in general (it is for odd cyclic games and for Bradley–Terry games with a unique
  best arm, where it is the point mass on argmax r).
* :func:`unique_unregularised_nash` — π⁰, the unregularised Nash policy when it is unique, else NaN
  (the ``kl_to_unregularised_nash`` column).  Because P + Pᵀ = 1 the game's value is ½ and the set of
  Nash policies is the polytope F = {π ∈ Δ : (Pπ)_y ≤ ½ for every arm y} (no arm beats π; (Pᵀπ)_y =
  1 − (Pπ)_y).  Uniqueness is decided in two steps:

  1. a **Condorcet winner** i (P[i, j] > ½ for every j ≠ i) gives F = {e_i} exactly: any π with mass
     off i has (Pπ)_i = ½π_i + Σ_{j≠i} P[i, j]π_j > ½.  No LP is needed (every Bradley–Terry game
     with a unique best arm is this case);
  2. otherwise (K ≤ :data:`UNREGULARISED_NASH_MAX_ARMS`) the LP's Nash policy x is tested against an
     exact characterisation of uniqueness (:func:`certified_unique_nash`: x strictly complementary
     and the linear system on its support non-singular), one LP and one SVD.  Many large per-seed games
     (:data:`LEMKE_HOWSON_MIN_ENTRIES`) first test the x of :func:`lemke_howson_policies`, one batched
     complementary pivoting of every game in JAX, and solve the LP only where that x is not certified;
  3. when that certificate fails (a non-unique or a degenerate game), 2K linear programs (HiGHS) give the range
     [min_F π_k, max_F π_k] of every coordinate over F; F is a single point iff every range is
     empty, and π⁰ is called unique when every range is at most :data:`UNIQUENESS_TOLERANCE` (1e-6;
     the LPs are solved to feasibility 1e-10, so a genuine second Nash policy further than 1e-6 in
     some coordinate is always detected, and a unique π⁰ always passes).  The unique π⁰ is then
     polished to ~1e-15 by solving (P_SS − ½)x = 0, Σx = 1 on its support S (least squares), kept
     only if it stays within the tolerance of the LP point and in F; else the LP point is used.

  Games without a Condorcet winner and with more than :data:`UNREGULARISED_NASH_MAX_ARMS` arms get
  NaN (not computed: 2K LPs of K variables).  Steps 2–3 read the constant-sum game nearest P,
  (P + 1 − Pᵀ)/2 (:func:`constant_sum`): a float32 game rounds P(i ≻ j) and P(j ≻ i) apart (their sum
  ~3e-8 from 1), its value is then not exactly ½, and F of the rounded matrix can be empty.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from sim.game import Game, normalize, win_rates
from sim.metrics import duality_gap
from sim.nash_tolerance import DEFAULT_TOLERANCE, STEP_TOLERANCE
from sim.program_cache import kept_jit
from sim.rules.base import mirror_step
from sim.shared_engine import seed_tile, seeds_on_host, solve_in_device_groups, take_seeds

# DEFAULT_TOLERANCE (the gap) and STEP_TOLERANCE (the largest π-weighted change Σ_y π(y)|Δ log π(y)| in one
# extragradient step) at which :func:`regularised_nash` stops: in a light module, since tv_to_optimum's floor
# (:func:`sim.diagnostics.target_error`) is derived from them
MAX_ITERATIONS = 500_000


def regularised_nash(
    game: Game, tolerance: float = DEFAULT_TOLERANCE, max_iterations: int = MAX_ITERATIONS
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Return ``(log π*_τ, duality_gap(π*_τ), iterations)`` for a game with τ > 0 (jit/vmap-able)."""
    tau = game.tau
    lipschitz = jnp.max(jnp.abs(game.preference - 0.5))
    step = 1.0 / (tau + 2.0 * lipschitz)

    def gap(log_policy):
        return duality_gap(game, log_policy, tau)

    def cond(carry):
        log_policy, iteration, current_gap, change = carry
        moving = change > STEP_TOLERANCE
        return ((current_gap > tolerance) | moving) & (iteration < max_iterations)

    def body(carry):
        log_policy, iteration, _, _ = carry
        half = mirror_step(log_policy, game.log_reference, win_rates(game, jnp.exp(log_policy)), step, tau)
        new = mirror_step(log_policy, game.log_reference, win_rates(game, jnp.exp(half)), step, tau)
        # the move of log π weighted by π: arms of negligible mass may keep drifting in log space
        return new, iteration + 1, gap(new), jnp.sum(jnp.exp(new) * jnp.abs(new - log_policy))

    start = game.log_reference
    initial = (start, jnp.zeros((), jnp.int32), gap(start), jnp.asarray(jnp.inf, start.dtype))
    log_policy, iterations, final_gap, _ = jax.lax.while_loop(cond, body, initial)
    return log_policy, final_gap, iterations


def unregularised_nash(preference: ArrayLike) -> np.ndarray:
    """A maximin (Nash) policy of the symmetric game P by linear programming (NumPy in, NumPy out)."""
    from scipy.optimize import linprog

    matrix = np.asarray(preference, dtype=np.float64)
    arms = matrix.shape[0]
    # variables (π_1..π_K, v); maximise v  <=>  minimise −v
    cost = np.zeros(arms + 1)
    cost[-1] = -1.0
    # v − (Pᵀπ)_y ≤ 0 for every y
    inequality = np.hstack([-matrix.T, np.ones((arms, 1))])
    equality = np.hstack([np.ones((1, arms)), np.zeros((1, 1))])
    result = linprog(
        cost,
        A_ub=inequality,
        b_ub=np.zeros(arms),
        A_eq=equality,
        b_eq=[1.0],
        bounds=[(0, None)] * arms + [(None, None)],
        method="highs",
        # a dense LP presolve cannot shrink: off, HiGHS solves it ~20% sooner at K = 100 (the same policy
        # to the bit on 380 random and cyclic games, K = 3–150)
        options={"presolve": False},
    )
    if not result.success:
        raise PrefsimError(f"unregularised Nash: the linear program failed ({result.message}).")
    policy = np.clip(result.x[:arms], 0.0, None)
    return policy / policy.sum()


#: Largest spread max_F π_k − min_F π_k of a coordinate over the Nash polytope F at which π⁰ counts as
#: unique (:func:`unique_unregularised_nash`).
UNIQUENESS_TOLERANCE = 1e-6
#: Games with more arms and no Condorcet winner get π⁰ = NaN (the 2K uniqueness LPs are not solved).
UNREGULARISED_NASH_MAX_ARMS = 200
_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def condorcet_winner(preference: ArrayLike) -> int | None:
    """The arm i with P[i, j] > ½ for every j ≠ i (it is unique when it exists), else ``None``."""
    matrix = np.asarray(preference)
    # One pass keeps the only possible winner: an arm that does not beat j cannot be it, and the winner,
    # once the candidate, is never replaced.  Then its row is checked: O(K) memory even for K = 10⁴.
    candidate = 0
    for j in range(1, matrix.shape[0]):
        if not matrix[candidate, j] > 0.5:
            candidate = j
    row = np.array(matrix[candidate], dtype=np.float64)
    row[candidate] = 1.0
    return candidate if bool(np.all(row > 0.5)) else None


def nash_coordinate_ranges(preference: ArrayLike) -> np.ndarray:
    """``(K, 2)``: min and max of π_k over the Nash polytope F = {π ∈ Δ : Pπ ≤ ½} (2K HiGHS LPs)."""
    from scipy.optimize import linprog  # SciPy is imported lazily, as in unregularised_nash

    matrix = np.asarray(preference, dtype=np.float64)
    arms = matrix.shape[0]
    ranges = np.empty((arms, 2))
    for k in range(arms):
        for column, sign in ((0, 1.0), (1, -1.0)):
            cost = np.zeros(arms)
            cost[k] = sign
            result = linprog(
                cost,
                A_ub=matrix,
                b_ub=np.full(arms, 0.5),
                A_eq=np.ones((1, arms)),
                b_eq=[1.0],
                bounds=[(0, None)] * arms,
                method="highs",
                options=_LP_OPTIONS,
            )
            if not result.success:
                raise PrefsimError(f"unregularised Nash: the uniqueness linear program failed ({result.message}).")
            ranges[k, column] = sign * result.fun
    return ranges


def _solve_on_support(matrix, support):
    """x with (P_SS − ½)x = 0, Σx = 1 on ``support`` (least squares, zero elsewhere) and the smallest
    singular value of that (|S| + 1) × |S| system (> 0 iff it has one solution)."""
    system = np.vstack([matrix[np.ix_(support, support)] - 0.5, np.ones((1, support.size))])
    right = np.r_[np.zeros(support.size), 1.0]
    solution = np.linalg.lstsq(system, right, rcond=None)[0]
    policy = np.zeros(matrix.shape[0])
    policy[support] = solution
    return policy, float(np.linalg.svd(system, compute_uv=False).min())


def certified_unique_nash(preference: ArrayLike, candidate: np.ndarray | None = None) -> np.ndarray | None:
    """π⁰ when a sufficient condition for uniqueness holds at a Nash policy, else ``None``: the LP's, or
    ``candidate`` where given (a Nash policy found otherwise, :func:`lemke_howson_policies`).

    With A = P − ½ (skew-symmetric), π is Nash iff Aπ ≤ 0.  For two Nash policies x, π′:
    xᵀAπ′ ≤ 0 and π′ᵀAx ≤ 0 with xᵀAπ′ = −π′ᵀAx, so both are 0, hence (Aπ′)_y = 0 on supp x and
    π′_y = 0 wherever (Ax)_y < 0.  So if x is **strictly complementary** ((Ax)_y < 0 off its support
    S) and the system A_SS x = 0, Σx = 1 has **one solution** (full column rank), every Nash π′ lives
    on S and solves it: π′ = x.  Conversely a unique π⁰ satisfies both (Goldman–Tucker: some Nash
    policy is strictly complementary; a null direction of the system would give a second Nash policy).
    Checked in floating point with margins: support = LP entries > 1e-9, (Ax)_y ≤ −1e-9 off S,
    smallest singular value ≥ 1e-9, x_S > 0, |A_SS x| ≤ 1e-12.  The polished x is the answer.  Only the
    support S is read from the policy the test starts from: whichever way that was found, a certified
    answer is the unique π⁰, solved on its support.
    """
    matrix = np.asarray(preference, dtype=np.float64)
    start = unregularised_nash(matrix) if candidate is None else np.asarray(candidate, dtype=np.float64)
    support = np.flatnonzero(start > 1e-9)
    if support.size == 0:  # a candidate that is not a policy (NaN: its pivoting failed)
        return None
    policy, smallest = _solve_on_support(matrix, support)
    advantage = matrix @ policy - 0.5
    off = np.ones(matrix.shape[0], bool)
    off[support] = False
    if (
        smallest >= 1e-9
        and policy[support].min() > 0
        and np.all(advantage[off] <= -1e-9)
        and np.max(np.abs(advantage[support])) <= 1e-12
    ):
        return policy / policy.sum()
    return None


#: Per-seed games with at least this many numbers in all (seeds · K²) get their π⁰ candidates from batched
#: Lemke–Howson pivoting (:func:`lemke_howson_policies`) rather than one LP each: K = 100, 256 seeds
#: (2.6·10⁶), 2 devices: ≈ 0.3 s instead of ≈ 1.0 s of LPs on 2 threads (2-core CI machine,
#: 2026-12-06).  Below it the LPs take less than the pivoting's first compilation (≈ 0.4 s).
LEMKE_HOWSON_MIN_ENTRIES = 10**6
#: Most complementary pivots per game, per arm (K = 100 random games take 250–460 in all); a game not
#: done by then gets a NaN candidate, hence its LP.
LEMKE_HOWSON_PIVOTS_PER_ARM = 20
#: Smallest tableau entry a ratio test pivots on.
PIVOT_TOLERANCE = 1e-12


def lemke_howson_policies(matrices: ArrayLike) -> np.ndarray:
    """A Nash policy of each game P (``(S, K, K)``), ``(S, K)`` float64 NumPy, by Lemke–Howson pivoting of
    all games at once in JAX; a row is NaN where the pivoting failed (no pivot, or too many pivots).

    R = P + ½ > 0 makes the symmetric bimatrix game (R, Rᵀ) constant-sum (R − 1 = P − ½ is
    skew-symmetric), so its symmetric equilibria are the Nash policies of P: z ≥ 0 with w = 1 − Rz ≥ 0
    and zᵀw = 0, z ≠ 0, gives π = z/Σz with (Rπ)_y ≤ 1/Σz = πᵀRπ = 1, i.e. (Pπ)_y ≤ ½ for every arm y
    (docs/theory.md §C.1).  Pivoting starts from z = 0 with label 0 missing (Lemke & Howson 1964; von
    Stengel 2002, §3.5).  Floating-point pivots can end at a support that is not exact; the answer is a
    candidate for :func:`certified_unique_nash`, which certifies it or leaves the game to its LP.

    Games are pivoted in groups that fit a core's cache (:func:`sim.shared_engine.seed_tile` of the
    tableau, K × (2K + 1)), dealt to the devices in turn, in float64 whatever the caller's precision.
    """
    with jax.enable_x64(True):
        matrices = constant_sum(np.asarray(matrices, dtype=np.float64))  # as unique_unregularised_nash reads P
        seeds, arms = matrices.shape[0], matrices.shape[-1]
        group = seed_tile(seeds, arms, itemsize=16) or seeds
        max_pivots = LEMKE_HOWSON_PIVOTS_PER_ARM * arms
        parts = solve_in_device_groups(
            lambda part: _lemke_howson_group(part, max_pivots), lambda rows: matrices[rows], seeds, group
        )
        return np.concatenate([np.asarray(part) for part in parts])[:seeds]


@functools.partial(kept_jit, static_argnums=(1,))
def _lemke_howson_group(matrices: jax.Array, max_pivots: int) -> jax.Array:
    """:func:`lemke_howson_policies` of one group of games, vmapped (the group pivots until its last game
    is done; a finished game is left as it is)."""
    return jax.vmap(lambda matrix: _lemke_howson(matrix, max_pivots))(matrices)


def _lemke_howson(matrix: jax.Array, max_pivots: int) -> jax.Array:
    """One game's Lemke–Howson policy (NaN on failure).  The tableau is stored by column, ``(2K + 1, K)``:
    rows 0…K−1 the columns of w, K…2K−1 those of z, the last the right-hand side; variable v < K is w_v,
    v ≥ K is z_{v−K}.  A pivot on (entering column e, row r) is one rank-1 update of every column."""
    arms = matrix.shape[0]
    payoff = matrix + 0.5
    tableau = jnp.concatenate([jnp.eye(arms, dtype=payoff.dtype), payoff.T, jnp.ones((1, arms), payoff.dtype)])
    rows = jnp.arange(arms)

    def pivoting(carry):
        _, _, _, pivots, finished, stuck = carry
        return ~finished & ~stuck & (pivots < max_pivots)

    def pivot(carry):
        tableau, basis, entering, pivots, _, _ = carry
        column = tableau[entering]
        positive = column > PIVOT_TOLERANCE
        ratios = jnp.where(positive, jnp.maximum(tableau[-1], 0.0) / jnp.where(positive, column, 1.0), jnp.inf)
        row = jnp.argmin(ratios)
        stuck = ~jnp.isfinite(ratios[row])  # no positive entry: rounding took the path off the polytope
        leaving = basis[row]
        scaled = tableau[:, row] / column[row]  # the pivot row, in every column
        tableau = tableau - scaled[:, None] * (column - (rows == row))[None, :]
        basis = basis.at[row].set(entering)
        complement = jnp.where(leaving < arms, leaving + arms, leaving - arms)
        finished = (leaving == 0) | (leaving == arms)  # label 0 is back: a complementary solution
        return tableau, basis, complement, pivots + 1, finished, stuck

    false = jnp.asarray(False)
    start = (tableau, rows, jnp.asarray(arms), jnp.asarray(0), false, false)
    tableau, basis, _, _, finished, stuck = jax.lax.while_loop(pivoting, pivot, start)
    values = jnp.zeros(2 * arms, payoff.dtype).at[basis].set(jnp.maximum(tableau[-1], 0.0))[arms:]
    total = values.sum()
    found = finished & ~stuck & (total > 0) & jnp.all(jnp.isfinite(values))
    return jnp.where(found, values / total, jnp.nan)


def constant_sum(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` itself when P + Pᵀ = 1 holds exactly in floating point, else (P + 1 − Pᵀ)/2, the nearest
    matrix for which it does up to rounding (a P rounded to float32, whose pair sums are ~3e-8 off).  A
    stack of games (``(S, K, K)``) is kept as it is only when every game is."""
    transposed = np.swapaxes(matrix, -1, -2)
    if np.array_equal(matrix + transposed, np.ones_like(matrix)):
        return matrix
    return 0.5 * (matrix + (1.0 - transposed))


def unique_unregularised_nash(
    preference: ArrayLike, tolerance: float = UNIQUENESS_TOLERANCE, candidate: np.ndarray | None = None
) -> np.ndarray:
    """π⁰, the unregularised Nash policy of P, when it is unique; otherwise K NaNs (NumPy in and out).

    See the module docstring for how uniqueness is decided (a Condorcet winner; else the certificate
    of :func:`certified_unique_nash`; else the coordinate ranges over the Nash polytope F within
    ``tolerance``) and for the cap on K.  ``candidate``: a Nash policy of P found beforehand
    (:func:`lemke_howson_policies`), certified first; the LP is solved only when it is not certified.
    """
    # the Condorcet pass and the cap read P as it is (no float64 copy of a large float32 matrix)
    arms = np.shape(preference)[0]
    winner = condorcet_winner(preference)
    if winner is not None:
        point_mass = np.zeros(arms)
        point_mass[winner] = 1.0
        return point_mass
    if arms > UNREGULARISED_NASH_MAX_ARMS:
        return np.full(arms, np.nan)
    matrix = constant_sum(np.asarray(preference, dtype=np.float64))
    certified = None if candidate is None else certified_unique_nash(matrix, candidate)
    if certified is None:
        certified = certified_unique_nash(matrix)
    if certified is not None:
        return certified
    ranges = nash_coordinate_ranges(matrix)
    if np.max(ranges[:, 1] - ranges[:, 0]) > tolerance:
        return np.full(arms, np.nan)
    point = np.clip(ranges.mean(axis=1), 0.0, None)
    point /= point.sum()
    polished, _ = _solve_on_support(matrix, np.flatnonzero(point > tolerance))
    if (
        polished.min() >= 0
        and np.max(np.abs(polished - point)) <= tolerance
        and np.max(matrix @ polished) <= 0.5 + 1e-12
        and abs(polished.sum() - 1.0) <= 1e-12
    ):
        return polished / polished.sum()
    return point


def target_policy(game: Game, tolerance: float = DEFAULT_TOLERANCE) -> tuple[np.ndarray, float]:
    """The policy the metrics measure distance to, as probabilities (NumPy), and its duality gap.

    τ > 0: the regularised Nash π*_τ.  τ = 0: for a Bradley–Terry game the point mass on argmax r
    (APO's target, the Condorcet winner); otherwise the LP Nash policy.
    """
    if float(game.tau) > 0:
        policy, gap = _regularised_target(game, tolerance)
        return np.asarray(policy), float(gap)
    rewards = np.asarray(game.rewards)
    if np.all(np.isfinite(rewards)):
        policy = (rewards == rewards.max()).astype(np.float64)
        return policy / policy.sum(), float("nan")
    return unregularised_nash(np.asarray(game.preference)), float("nan")


def regularised_targets(
    games: Game, game_axes: Game, seeds: int, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[np.ndarray, list[float]]:
    """π*_τ of every seed in **one** batched solve: ``(targets (S, K) NumPy, gaps list)`` for τ > 0.

    ``games`` has its leaves stacked over seeds where ``game_axes`` is 0 (as :func:`sim.experiment.build_games`
    builds them); the mirror-prox iteration of :func:`regularised_nash` runs vmapped over the seeds that
    differ (a batched ``while_loop`` keeps iterating until every seed has converged, leaving converged
    seeds unchanged), so it returns what S separate solves return.  Seeds sharing every leaf the target
    depends on (P, π_ref, rewards, τ) are solved once.  Computed in float64 whatever the run's precision.
    """
    games = games._replace(
        preference=games.preference.astype(jnp.float64), log_reference=games.log_reference.astype(jnp.float64)
    )
    relevant = (game_axes.preference, game_axes.log_reference, game_axes.rewards, game_axes.tau)
    if all(axis is None for axis in relevant):
        target, gap = _regularised_target(games, tolerance)
        return np.tile(np.asarray(target), (seeds, 1)), [float(gap)] * seeds
    axes = game_axes._replace(log_initial=None)
    # π_0 does not enter π*_τ: one seed's (a host row, not a JAX slice of the stack) stands for all
    initial = games.log_initial if game_axes.log_initial is None else np.asarray(games.log_initial)[0]
    games = games._replace(log_initial=initial)
    group = None if game_axes.preference is None else seed_tile(seeds, games.preference.shape[-1])
    if group is None:
        policy, gap = _batched_regularised_targets(games, axes, tolerance)
    else:
        # A P per seed that does not fit in a core's cache: groups of seeds whose P do, dealt to the devices
        # in turn (dispatch is asynchronous, so the devices solve side by side).  Each group keeps its P in
        # cache for all its iterations and stops when its own seeds have converged (K = 100, 256 seeds:
        # 0.79 s → 0.34 s on one device).  The last group is padded with copies of its last seed.
        games = seeds_on_host(games, axes)  # groups cut by NumPy slicing
        solved = solve_in_device_groups(
            lambda part: _batched_regularised_targets(part, axes, tolerance),
            lambda rows: take_seeds(games, axes, rows),
            seeds,
            group,
        )
        policy = np.concatenate([np.asarray(entry[0]) for entry in solved])[:seeds]
        gap = np.concatenate([np.asarray(entry[1]) for entry in solved])[:seeds]
    return np.asarray(policy), [float(g) for g in np.asarray(gap)]


@functools.partial(kept_jit, static_argnums=(1,))
def _regularised_target(game: Game, tolerance: float) -> tuple[jax.Array, jax.Array]:
    """``(π*_τ, duality gap)`` of one game: :func:`regularised_nash`'s log-policy normalised and
    exponentiated in the same program (as separate JAX operations each would be one more program to
    trace and load in every process)."""
    log_policy, gap, _ = regularised_nash(game, tolerance)
    return jnp.exp(normalize(log_policy)), gap


@functools.partial(kept_jit, static_argnums=(1, 2))
def _batched_regularised_targets(games: Game, axes: Game, tolerance: float) -> tuple[jax.Array, jax.Array]:
    """:func:`_regularised_target` vmapped over the seeds (``axes``: 0 or None per leaf), jitted once per
    batching and tolerance (a function built per call would be traced and compiled again every call)."""
    return jax.vmap(lambda game: _regularised_target(game, tolerance), in_axes=(axes,))(games)
