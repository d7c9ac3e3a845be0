"""A whole exact trajectory as one jitted ``lax.scan``, vmapped over seeds and a parameter grid.

:func:`simulate` runs one rule on one game: an outer ``scan`` over the recorded iterations with an
inner ``fori_loop`` over the updates between two recordings, so metrics (one product of P with the
last iterate and the mixture, which the next update reuses) are paid only at recorded iterations
while the per-step bookkeeping (running mixture, regret, finiteness) costs O(K).
:func:`simulate_grid` vmaps it over seeds (inner) and over the values of swept parameters (outer).
A game leaf shared by all seeds (e.g. P) is not batched, so S policies multiply one P as a matrix
product (:func:`shared_win_rates` picks its form).  When several devices are visible the seed axis
is sharded over them with ``jax.sharding`` (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
on a CPU, or a multi-GPU host) and the same code runs unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sim.game import Game
from sim.headtohead import FINAL_POLICY
from sim.metrics import METRIC_COLUMNS, log_target_policy, metrics_from_win_rates
from sim.rules.base import ExactRule, ExactState, current_policy
from sim.shared_engine import (
    COMPILED_RUNS,
    compile_over_grid_and_seeds,
    grid_arrays,
    regret_from_mixture_sum,
    shard_over_seeds,
)

#: The compiled runs of both engines (:data:`sim.shared_engine.COMPILED_RUNS`).
_COMPILED = COMPILED_RUNS

#: On a shared P of at least this many arms ...
MEMORY_BOUND_ARMS = 512
#: ... :func:`shared_win_rates` multiplies P by the policies as columns when there is at most one
#: policy per this many arms (so at least 64 policies at K = 512).
ARMS_PER_COLUMN_POLICY = 8


def takes_column_product(policies: int, arms: int) -> bool:
    """Whether :func:`shared_win_rates` multiplies P by ``policies`` rows of ``arms`` arms as columns."""
    return arms >= MEMORY_BOUND_ARMS and policies * ARMS_PER_COLUMN_POLICY <= arms


def _rows_times_transposed_preference(rows, preference):
    """``rows · Pᵀ`` for rows of shape (N, K): row n is P·rows[n] (XLA's default form of the product)."""
    return jax.lax.dot_general(rows, preference, (((1,), (1,)), ((), ())))


@jax.custom_batching.custom_vmap
def shared_win_rates(preference: jax.Array, policies: jax.Array) -> jax.Array:
    """``(P·π)`` for each row π of ``policies`` (shape (R, K) → (R, K)); what the trajectory uses for P·π.

    The value is ``policies @ Pᵀ``.  The custom batching rule chooses how seeds that share one P are
    multiplied by it: XLA turns the vmapped product into one (N, K)·Pᵀ dot (N = seeds × R), which is
    fast when N is large but, with few policies and a large P (memory-bound), runs at ~55% of the
    matrix–vector bandwidth (K = 10000, N = 4, measured on the 2-core machine: 18 GB/s, vs 28 GB/s
    for P·[π_1 … π_N] with the policies as columns).  The column form is also the faster matrix
    product when it is compute-bound with up to about K/8 policies (INPO trajectory, 2-core Xeon,
    paired: K = 1000, N = 64: ~1.1×; K = 2000, N = 32: ~1.3×; K = 600, N = 100: ~0.93×).  So it
    computes ``(P @ Πᵀ)ᵀ`` when :func:`takes_column_product` says so (K ≥ :data:`MEMORY_BOUND_ARMS`
    and N ≤ K / :data:`ARMS_PER_COLUMN_POLICY`); the optimisation barrier stops XLA from folding the
    transposes back into the slow form.  The transposes move N·K numbers, nothing next to the N·K²
    multiply-adds.  A batched P (one per seed) is a batched matrix product as usual.
    """
    return _rows_times_transposed_preference(policies, preference)


@shared_win_rates.def_vmap
def _shared_win_rates_vmap(axis_size, in_batched, preference, policies):
    preference_batched, policies_batched = in_batched
    if preference_batched:
        policies_axis = 0 if policies_batched else None
        return jax.vmap(_rows_times_transposed_preference, in_axes=(policies_axis, 0))(policies, preference), True
    arms = policies.shape[-1]
    rows = policies.reshape(-1, arms)
    if takes_column_product(rows.shape[0], arms):
        products = jax.lax.optimization_barrier(preference @ rows.T).T
    else:
        products = _rows_times_transposed_preference(rows, preference)
    return products.reshape(policies.shape), True


def update_with_shared_product(
    rule: ExactRule, state: ExactState, game: Game, win_rates: jax.Array | None = None
) -> ExactState:
    """One ``rule.update`` with Pπ_t handed over in ``state.win_rates``.

    ``win_rates`` is Pπ_t when the caller already has it (a recording's product), else it is computed
    here by :func:`shared_win_rates`.  XLA drops that product for rules that do not read it (Nash-MD,
    optimistic MD, DPO).  The trajectory's updates and the benchmark's bare scan both step this way.
    """
    if win_rates is None:
        win_rates = shared_win_rates(game.preference, current_policy(state)[None])[0]
    return rule.update(state._replace(win_rates=win_rates), game)


def default_record_iterations(iterations: int, record_every: int | None = None) -> np.ndarray:
    """Iterations at which metrics are written: always 0 and ``iterations``.

    Default: log-spaced like bsuite (1, 1.2, 1.4, 1.7, 2, 2.5, 3, 4, … × 10^k), which includes t = 3, the
    iteration count of the papers' LLM experiments.  With ``record_every = k``: 0, k, 2k, …, T.
    """
    iterations = int(iterations)
    if record_every is not None:
        points = set(range(0, iterations + 1, int(record_every)))
    else:
        mantissas = (1, 1.2, 1.4, 1.7, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)
        points = {0}
        scale = 1
        while scale <= iterations:
            points.update(int(round(m * scale)) for m in mantissas if round(m * scale) <= iterations)
            scale *= 10
    points.add(iterations)
    return np.array(sorted(points), dtype=np.int64)


def is_recorded(iteration: int, iterations: int, record_every: int | None = None) -> bool:
    """Whether :func:`default_record_iterations` records ``iteration`` (without building the list, which
    has T + 1 entries with ``record_every = 1``)."""
    iteration, iterations = int(iteration), int(iterations)
    if not 0 <= iteration <= iterations:
        return False
    if iteration in (0, iterations):
        return True
    if record_every is not None:
        return iteration % int(record_every) == 0
    return iteration in set(default_record_iterations(min(iterations, 10 * iteration)).tolist())


def simulate(
    rule: ExactRule,
    game: Game,
    target: jax.Array,
    record_iterations: np.ndarray,
    locate_nonfinite: bool = False,
    unregularised_target: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Run ``rule`` on ``game`` and return ``(metrics, first_nonfinite)``.

    Args:
      rule: the exact rule.
      game: one game (unbatched leaves).
      target: π* as probabilities, shape (K,) (see :func:`sim.nash.target_policy`).
      record_iterations: sorted iterations to record, starting at 0 (static).
      locate_nonfinite: how ``first_nonfinite`` is found (static).  ``False`` (the fast path): only
        at recorded iterations, from the log-policy and the running mixture sum, and
        ``first_nonfinite`` is the **recorded iteration** that first saw a non-finite value.  That
        loses nothing: a NaN or +inf entry of log π_s makes the normalisation's max-shift NaN, so
        all of π_s and the mixture sum turn NaN for good; a −inf entry (π_s(y) underflowed to 0)
        persists in log π_{s+1}, because the rules' next log-weights contain log π_s with a
        positive coefficient (or multiply it by 0, which gives NaN), except online IPO's
        log π_ref + Pπ_s/τ, which is bounded below by log π_ref and so never −inf.  ``True``: every step's
        log-policy is checked and ``first_nonfinite`` is the exact first bad iteration
        (:func:`simulate_grid` re-runs in this mode only when the fast path found something).
      unregularised_target: π⁰, shape (K,), all-NaN where not unique (see
        :func:`sim.nash.unique_unregularised_nash`), for ``kl_to_unregularised_nash``; ``None``: NaN.

    Returns:
      metrics: dict column → array of shape (len(record_iterations),).
      first_nonfinite: see ``locate_nonfinite``; −1 when every log-policy stayed finite.

    Cost (what the benchmarks in ``benchmarks/`` measure): each update adds one O(K) addition to
    the rule's own step, and no exp:

    * the running mixture sum Σ_{s≤t} π_s adds the probabilities ``state.policy`` that the rule's
      normalisation produced (:func:`sim.rules.base.advance`), and the next update reads the same
      probabilities for P·π_t, so one exp per step serves the rule and the bookkeeping;
    * the finiteness check runs only at recorded iterations (see ``locate_nonfinite``);
    * ``regret`` is not summed per step: Σ_{s<t} (max r − π_s·r) = Σ_y (Σ_{s<t} π_s(y))·(max r − r_y)
      because each π_s sums to one, so it is read off the mixture sum at recorded iterations;
    * at a recorded iteration the last iterate and the mixture are measured together (one product
      of P with both), and the next update reuses Pπ_t from it (``ExactState.win_rates``, read by
      the rules through :func:`sim.rules.base.current_win_rates`), so a recording costs no extra
      read of P for every rule whose update starts from Pπ_t (all but Nash-MD, whose opponent is
      a geometric mixture, optimistic MD, which carries its own leading product, and DPO, which
      reads rewards); the metrics themselves add one exp and one log of K numbers per policy
      (:func:`sim.metrics.metrics_from_win_rates`).
    """
    record_iterations = np.asarray(record_iterations)
    segment_lengths = jnp.asarray(np.diff(record_iterations), dtype=jnp.int32)

    state = rule.init(game)
    dtype = state.log_policy.dtype
    log_target = log_target_policy(target)
    log_unregularised = None if unregularised_target is None else log_target_policy(unregularised_target)

    def measure(state, mixture_sum):
        """The row of iterate t, and Pπ_t (which the next update reuses)."""
        # mixture_sum = Σ_{s≤t} π_s, so π̄_t = mixture_sum / (t + 1) and Σ_{s<t} π_s = mixture_sum − π_t.
        policy = current_policy(state)
        mixture = mixture_sum / (state.step.astype(dtype) + 1.0)
        # One product of P with both policies, so P is read once per recording, stacked as rows
        # [π_t; π̄_t] (see shared_win_rates for the form of the product).
        products = shared_win_rates(game.preference, jnp.stack([policy, mixture]))
        references = (target, log_target, unregularised_target, log_unregularised)
        last = metrics_from_win_rates(game, policy, state.log_policy, products[0], *references)
        mean = metrics_from_win_rates(game, mixture, jnp.log(mixture), products[1], *references)
        row = dict(last)
        row.update({f"{name}_mixture": value for name, value in mean.items()})
        row["regret"] = regret_from_mixture_sum(mixture_sum, policy, game.rewards, state.step)
        return {name: row[name] for name in METRIC_COLUMNS}, products[0]

    def one_update(_, carry, measured_win_rates=None):
        state, mixture_sum, first_bad = carry
        state = update_with_shared_product(rule, state, game, measured_win_rates)
        mixture_sum = mixture_sum + current_policy(state)
        if locate_nonfinite:
            bad = ~jnp.all(jnp.isfinite(state.log_policy))
            first_bad = jnp.where((first_bad < 0) & bad, state.step, first_bad)
        return state, mixture_sum, first_bad

    def segment(carry, length):
        state, mixture_sum, first_bad, measured_win_rates = carry
        # The first update of a segment multiplies P by the iterate just measured: hand it Pπ_t
        # (ExactState.win_rates), so that a recording costs no extra read of P.  Segments have
        # length ≥ 1 (recorded iterations are strictly increasing).
        carry = one_update(0, (state, mixture_sum, first_bad), measured_win_rates)
        carry = jax.lax.fori_loop(1, length, one_update, carry)
        state, mixture_sum, first_bad = carry
        finite = jnp.all(jnp.isfinite(mixture_sum)) & jnp.all(jnp.isfinite(state.log_policy))
        seen = first_bad if locate_nonfinite else jnp.where(finite, -1, state.step)
        row, measured_win_rates = measure(state, mixture_sum)
        return (state, mixture_sum, first_bad, measured_win_rates), (row, seen)

    policy = current_policy(state)
    first, first_win_rates = measure(state, policy)
    start = (state, policy, jnp.asarray(-1, jnp.int32), first_win_rates)
    (final, _, first_bad, _), (rows, seen) = jax.lax.scan(segment, start, segment_lengths)
    metrics = {name: jnp.concatenate([first[name][None], rows[name]]) for name in METRIC_COLUMNS}
    metrics[FINAL_POLICY] = current_policy(final)  # π_T, for the head-to-head table
    if locate_nonfinite:
        return metrics, first_bad
    # The first recorded iteration whose mixture sum was non-finite (seen is −1 before it).
    return metrics, jnp.where(jnp.any(seen >= 0), seen[jnp.argmax(seen >= 0)], -1).astype(jnp.int32)


def simulate_grid(
    make_rule: Callable[[dict], ExactRule],
    grid: dict,
    games: Game,
    game_axes: Game,
    targets: ArrayLike,
    record_iterations: np.ndarray,
    cache_key: Hashable | None = None,
    unregularised_targets: jax.Array | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """vmap :func:`simulate` over seeds (axis 0 of batched game leaves and of ``targets``) and a grid.

    Args:
      make_rule: builds the rule from a dict of scalar (possibly traced) swept parameters.
      grid: swept parameter name → array of shape (G,); may be empty (G = 1).
      games: the games, leaves batched over seeds where ``game_axes`` says 0, shared where ``None``.
      game_axes: a :class:`Game` of ``0``/``None`` per leaf.
      targets: π* per seed, shape (S, K).
      record_iterations: static recorded iterations.
      cache_key: optional hashable that identifies what ``make_rule`` builds (e.g. the rule name and its
        fixed parameters); calls with the same key, grid names, batching and recorded iterations reuse
        one jitted function instead of compiling again.  ``None``: the ``make_rule`` object itself is
        the key (reuse it across calls to avoid recompiling).
      unregularised_targets: π⁰ per seed, shape (S, K), rows all-NaN where π⁰ is not unique
        (``kl_to_unregularised_nash``); ``None``: that column is NaN.  It travels with π* as one
        per-seed array of shape (S, 2, K).

    Returns:
      metrics: column → array (G, S, R);  first_nonfinite: array (G, S), the first iteration whose
      log-policy had a NaN/±inf entry, or −1.  The run checks finiteness only at recorded
      iterations; when that finds a problem the grid is run once more with a check at every step
      (:func:`simulate`'s ``locate_nonfinite``), so the iteration reported is exact.
    """
    record_iterations = tuple(int(i) for i in record_iterations)
    arms = int(np.shape(targets)[-1])
    targets = jnp.asarray(targets)
    if unregularised_targets is None:
        unregularised_targets = jnp.full(targets.shape, jnp.nan, targets.dtype)
    targets = jnp.stack([targets, jnp.asarray(unregularised_targets, targets.dtype)], axis=1)
    run = _compiled(make_rule, tuple(sorted(grid)), game_axes, record_iterations, cache_key, False, arms)
    grid_values = grid_arrays(grid)
    games, targets, padded = shard_over_seeds(games, game_axes, targets)
    metrics, first_bad = run(grid_values, games, targets)
    if np.any(np.asarray(first_bad) >= 0):
        # Something went non-finite: run again checking every step, to name the exact iteration.
        locate = _compiled(make_rule, tuple(sorted(grid)), game_axes, record_iterations, cache_key, True, arms)
        metrics, first_bad = locate(grid_values, games, targets)
    seeds = targets.shape[0] - padded
    return {k: np.asarray(v)[:, :seeds] for k, v in metrics.items()}, np.asarray(first_bad)[:, :seeds]


#: At most this many arms, XLA:CPU compiles the trajectory with :data:`SMALL_ARMS_CPU_OPTIONS`.
SMALL_ARMS = 12
#: XLA:CPU hands reductions and elementwise chains to YNNPACK fusions by default; for rows of a few
#: arms that are not a multiple of the SIMD width those kernels are slow (K = 10: ~7e6 vs ~1.2e7
#: updates/s with only dots fused, 1024 seeds, measured with benchmarks/exact_updates.py's case),
#: while from K ≈ 16 on the default is as fast or faster.  So small games keep YNNPACK for dots only.
#: They also prefer 512-bit vectors (a preference: LLVM uses narrower ones where the CPU has no
#: AVX-512): the per-step exp and row reductions over 1024 × 10 numbers then take ~10% less time
#: (K = 10, S = 1024: bare scan 49 → 42 µs per update of all seeds, 2-core Xeon with AVX-512).
SMALL_ARMS_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
    "xla_cpu_prefer_vector_width": 512,
}


def compiler_options(arms: int) -> dict | None:
    """XLA options for a trajectory over ``arms`` arms: :data:`SMALL_ARMS_CPU_OPTIONS` on a CPU for
    K ≤ :data:`SMALL_ARMS` when this jaxlib knows the option, else ``None`` (XLA's defaults)."""
    if arms > SMALL_ARMS or jax.default_backend() != "cpu" or not _cpu_options_supported():
        return None
    return dict(SMALL_ARMS_CPU_OPTIONS)


@functools.cache
def _cpu_options_supported() -> bool:
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=SMALL_ARMS_CPU_OPTIONS).lower(1.0).compile()
    except (RuntimeError, ValueError):  # an unknown or renamed option in another jaxlib: keep XLA's defaults
        return False
    return True


def _compiled(make_rule, grid_names, game_axes, record_iterations, cache_key, locate_nonfinite=False, arms=None):
    """The jitted grid × seeds trajectory (:func:`sim.shared_engine.compile_over_grid_and_seeds`)."""
    options = None if arms is None else compiler_options(arms)
    key = ("exact", make_rule if cache_key is None else cache_key, grid_names, record_iterations, locate_nonfinite)
    record = np.asarray(record_iterations)

    def one(parameters, game, target):
        # target: π* (K,), or π* and π⁰ stacked (2, K) as simulate_grid passes them (shapes are static)
        if target.ndim == 2:
            return simulate(make_rule(parameters), game, target[0], record, locate_nonfinite, target[1])
        return simulate(make_rule(parameters), game, target, record, locate_nonfinite)

    return compile_over_grid_and_seeds(one, game_axes, key, options)
