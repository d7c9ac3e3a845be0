"""An exact trajectory as jitted ``lax.scan`` blocks, vmapped over seeds and a parameter grid.

:func:`simulate` runs one rule on one game: an outer ``scan`` over the recorded iterations with an
inner ``fori_loop`` over the updates between two recordings, so metrics (one product of P with the
last iterate and the mixture, which the next update reuses) are paid only at recorded iterations
while the per-step bookkeeping (running mixture, regret, finiteness, the running maximum of
max_y |log π_t/π_ref| that the bounds read as B) costs O(K).
:func:`simulate_grid` vmaps it over seeds (inner) and over the values of swept parameters (outer).
On a CPU, for small games (K ≤ :data:`SMALL_ARMS`) with a state per seed, the seeds are not vmapped
around the loop but inside it, seed-last (:func:`simulate_seeds_block`): the same rule, the same
pieces, the reductions over the arms done as element-wise work over rows of seeds.
A game leaf shared by all seeds (e.g. P) is not batched, so S policies multiply one P as a matrix
product (:func:`shared_win_rates` picks its form).  When several devices are visible the seed axis
is sharded over them with ``jax.sharding`` (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
on a CPU, or a multi-GPU host) and the same code runs unchanged.

A run longer than :func:`block_updates` (about a second of work) goes in blocks
(:func:`simulate_block`, :func:`sim.shared_engine.run_blocks`): each block is one compiled call on the
state the previous one returned (rule state, running mixture sum, first bad iteration, the last
recording's Pπ_t), a segment between two recordings may be cut by a block boundary, and the host
reports progress and can stop between blocks.  The blocks' schedules are arrays, not static
arguments, so a run of any length compiles two programs (its first block and the rest) and no host
callback enters them (JAX's persistent cache keeps them, so a repeated run compiles nothing); the
numbers are the same to the bit for every block size (``tests/test_block_progress.py``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr
from jax.typing import ArrayLike, DTypeLike

from sim.checkpoint import TrajectoryCheckpoint
from sim.game import Game
from sim.headtohead import FINAL_POLICY
from sim.metrics import METRIC_COLUMNS, RUNNING_LOG_RATIO, log_ratio, log_target_policy, metrics_from_win_rates
from sim.program_cache import SourceKey
from sim.rules.base import ExactRule, ExactState, current_policy
from sim.shared_engine import (
    COMPILED_RUNS,
    Schedule,
    compile_over_grid_and_seeds,
    grid_arrays,
    options_key,
    padded_seed_rows,
    regret_from_mixture_sum,
    run_blocks_locating,
    seed_device_count,
    seed_tile,
    seeds_on_host,
    shard_over_seeds,
    take_seeds,
    whole_run_schedule,
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

    Cost (what the benchmarks in ``benchmarks/`` measure): each update adds two O(K) passes to the
    rule's own step, and no exp:

    * the running mixture sum Σ_{s≤t} π_s adds the probabilities ``state.policy`` that the rule's
      normalisation produced (:func:`sim.rules.base.advance`), and the next update reads the same
      probabilities for P·π_t, so one exp per step serves the rule and the bookkeeping;
    * ``max_log_ratio_so_far`` is a running maximum of max_y |log π_t(y) − log π_ref(y)| carried
      through every update (one subtraction and reduction over the K arms), so the B of the bounds
      (:func:`sim.theorems.realised_log_ratio`) covers the iterates that are not recorded;
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
    schedule = whole_run_schedule(record_iterations)
    _, out = simulate_block(rule, game, target, schedule, None, locate_nonfinite, unregularised_target)
    keep = np.asarray(schedule.measures)
    metrics = {name: jnp.concatenate([out["first"][name][None], out["rows"][name][keep]]) for name in METRIC_COLUMNS}
    metrics[FINAL_POLICY] = out["final"]  # π_T, for the head-to-head table
    if locate_nonfinite:
        return metrics, out["first_bad"]
    return metrics, first_seen(out["seen"][keep])


def first_seen(seen: jax.Array) -> jax.Array:
    """The first recorded iteration whose check saw a non-finite value (``seen`` is −1 before it), or −1."""
    if seen.shape[-1] == 0:
        return jnp.asarray(-1, jnp.int32)
    return jnp.where(jnp.any(seen >= 0), seen[jnp.argmax(seen >= 0)], -1).astype(jnp.int32)


def simulate_block(
    rule: ExactRule,
    game: Game,
    target: jax.Array,
    schedule: Schedule,
    carry: tuple | None = None,
    locate_nonfinite: bool = False,
    unregularised_target: jax.Array | None = None,
) -> tuple[tuple, dict]:
    """One block of :func:`simulate`'s trajectory: ``(carry, out)`` after the pieces of ``schedule``.

    ``carry`` is ``(state, mixture_sum, first_bad, measured_win_rates, largest_log_ratio)`` as the previous
    block returned it (the last: max_{s≤t} max_y |log π_s/π_ref| over every update so far, π_0 included,
    which recordings write as ``max_log_ratio_so_far``), or ``None``: the block starts the run (``rule.init``)
    and measures iteration 0 (``out["first"]``).
    A piece that starts at a recorded iteration (``schedule.fresh``) hands its first update Pπ_t from
    that recording, then ``fori_loop``s over the rest; a piece that continues a segment cut by a block
    boundary does all its updates in the ``fori_loop``; a piece that ends at a recorded iteration
    (``schedule.measures``) measures it.  So each update and each recording is the same computation
    whether the run is one block or many, and the numbers are the same to the bit.  ``out``: ``rows``
    (column → (n,), zeros where a piece does not measure), ``seen`` ((n,), see ``locate_nonfinite`` of
    :func:`simulate`; −1 where nothing is measured), ``first_bad`` (the exact first bad iteration so far
    when ``locate_nonfinite``), ``final`` (π after the block).
    """
    return _run_pieces(_OneSeed(rule, game, target, unregularised_target), schedule, carry, locate_nonfinite)


def simulate_seeds_block(
    rule: ExactRule,
    games: Game,
    game_axes: Game,
    targets: jax.Array,
    schedule: Schedule,
    carry: tuple | None = None,
    locate_nonfinite: bool = False,
    unregularised_targets: jax.Array | None = None,
) -> tuple[tuple, dict]:
    """:func:`simulate_block` of every seed at once (``targets`` (S, K), game leaves batched on axis 0 where
    ``game_axes`` is 0), the outputs with the seed on axis 0 as ``vmap`` of :func:`simulate_block` gives.

    The updates run with the seed on the **last** axis of every per-seed array (:class:`SeedsMinorView`):
    the rule's update is ``vmap``-ed inside the loop with ``in_axes=-1``, so its reductions over K arms
    become element-wise operations over rows of S seeds, which the CPU runs in full SIMD vectors; with
    the seed first (``vmap`` outside the loop, as :func:`simulate_block`) a row of K ≤ 12 arms fills a
    vector badly.  The recordings run seed-first, through :func:`simulate_block`'s own ``measure``.
    When the rule's update multiplies P itself or would move a per-seed P seed-first (its traced step:
    :func:`keeps_seeds_minor`), the block is ``vmap`` of :func:`simulate_block` instead; the carry then
    has that layout in every block of the run.
    """
    view = SeedsMinorView(rule, games, game_axes, targets, unregularised_targets)
    if view.keeps_layout():
        return _run_pieces(view, schedule, carry, locate_nonfinite)

    def one(game, target, unregularised, carried):
        return simulate_block(rule, game, target, schedule, carried, locate_nonfinite, unregularised)

    unregularised_axis = None if unregularised_targets is None else 0
    carry_axis = None if carry is None else 0
    return jax.vmap(one, in_axes=(game_axes, 0, unregularised_axis, carry_axis))(
        games, targets, unregularised_targets, carry
    )


def _measure(
    game: Game, references: tuple, state: ExactState, mixture_sum: jax.Array, largest_log_ratio: jax.Array
) -> tuple[dict, jax.Array]:
    """The row of iterate t of one seed, and Pπ_t (which the next update reuses).

    ``references``: (π*, log π*, π⁰ or None, log π⁰ or None); ``largest_log_ratio``: the carried
    max_{s≤t} max_y |log π_s/π_ref| (``max_log_ratio_so_far``).
    """
    # mixture_sum = Σ_{s≤t} π_s, so π̄_t = mixture_sum / (t + 1) and Σ_{s<t} π_s = mixture_sum − π_t.
    policy = current_policy(state)
    mixture = mixture_sum / (state.step.astype(state.log_policy.dtype) + 1.0)
    # One product of P with both policies, so P is read once per recording, stacked as rows
    # [π_t; π̄_t] (see shared_win_rates for the form of the product).
    products = shared_win_rates(game.preference, jnp.stack([policy, mixture]))
    last = metrics_from_win_rates(game, policy, state.log_policy, products[0], *references)
    mean = metrics_from_win_rates(game, mixture, jnp.log(mixture), products[1], *references)
    row = dict(last)
    row.update({f"{name}_mixture": value for name, value in mean.items()})
    row["regret"] = regret_from_mixture_sum(mixture_sum, policy, game.rewards, state.step)
    row[RUNNING_LOG_RATIO] = largest_log_ratio
    return {name: row[name] for name in METRIC_COLUMNS}, products[0]


def _references(target: jax.Array, unregularised_target: jax.Array | None) -> tuple:
    log_unregularised = None if unregularised_target is None else log_target_policy(unregularised_target)
    return target, log_target_policy(target), unregularised_target, log_unregularised


class _OneSeed:
    """One seed's trajectory as :func:`_run_pieces` steps it (:func:`simulate_block`; a caller's ``vmap``
    adds the seeds)."""

    def __init__(self, rule: ExactRule, game: Game, target: jax.Array, unregularised_target: jax.Array | None):
        self.rule, self.game = rule, game
        self.references = _references(target, unregularised_target)

    def init(self) -> ExactState:
        return self.rule.init(self.game)

    def update(self, state: ExactState, win_rates: jax.Array | None) -> ExactState:
        return update_with_shared_product(self.rule, state, self.game, win_rates)

    def product(self, state: ExactState) -> jax.Array:
        return shared_win_rates(self.game.preference, current_policy(state)[None])[0]

    def log_ratio(self, state: ExactState) -> jax.Array:
        """max_y |log π_t(y)/π_ref(y)| (a scalar), for the running ``max_log_ratio_so_far``."""
        return log_ratio(self.game, state.log_policy)

    def measure(
        self, state: ExactState, mixture_sum: jax.Array, largest_log_ratio: jax.Array
    ) -> tuple[dict, jax.Array]:
        return _measure(self.game, self.references, state, mixture_sum, largest_log_ratio)

    @staticmethod
    def all_finite(values: jax.Array) -> jax.Array:
        return jnp.all(jnp.isfinite(values))

    @staticmethod
    def seed_first(values: jax.Array) -> jax.Array:
        """An output as the caller's ``vmap`` returns it (nothing to move: the seed is not here)."""
        return values


def _minor(values: jax.Array) -> jax.Array:
    return jnp.moveaxis(values, 0, -1)


def _major(values: jax.Array) -> jax.Array:
    return jnp.moveaxis(values, -1, 0)


def _state_axes(state: ExactState, axis: int) -> ExactState:
    """``vmap`` axes of a state of every seed: ``axis`` for each per-seed leaf, none for the step (all seeds
    step together)."""
    return jax.tree_util.tree_map(lambda _: axis, state)._replace(step=None)


class SeedsMinorView:
    """Every seed of a batch at once, per-seed arrays with the seed on the last axis during the updates
    (:func:`simulate_seeds_block`; the benchmarks' bare scan steps the same way); a recording moves the
    state seed-first and measures it as :class:`_OneSeed` does.  States: ``log_policy``/``policy`` (K, S),
    ``extra`` leaves with the seed last, ``step`` one scalar (every seed steps together)."""

    def __init__(
        self,
        rule: ExactRule,
        games: Game,
        game_axes: Game,
        targets: jax.Array | None = None,
        unregularised_targets: jax.Array | None = None,
    ):
        """``games``: leaves batched over seeds on axis 0 where ``game_axes`` is 0; ``targets``: π* per seed
        (S, K), needed by :meth:`measure` only (``unregularised_targets``: π⁰, or ``None``)."""
        self.rule, self.games, self.game_axes = rule, games, game_axes
        self.references = None if targets is None else jax.vmap(_references)(targets, unregularised_targets)
        self.minor_games = jax.tree_util.tree_map(
            lambda leaf, axis: leaf if axis is None else _minor(leaf), games, game_axes
        )
        self.minor_axes = jax.tree_util.tree_map(lambda axis: None if axis is None else -1, game_axes)

    def init(self) -> ExactState:
        state = jax.vmap(self.rule.init, in_axes=(self.game_axes,))(self.games)
        return jax.tree_util.tree_map(_minor, state._replace(step=None))._replace(step=state.step[0])

    def _rule_update(self, state: ExactState, win_rates: jax.Array) -> ExactState:
        axes = _state_axes(state, -1)
        return jax.vmap(
            lambda one, game, products: update_with_shared_product(self.rule, one, game, products),
            in_axes=(axes, self.minor_axes, -1),
            out_axes=axes,
        )(state, self.minor_games, win_rates)

    def update(self, state: ExactState, win_rates: jax.Array | None) -> ExactState:
        """One update of every seed; Pπ_t (``win_rates``, (K, S)) computed here, seed-last, when not given."""
        return self._rule_update(state, self.product(state) if win_rates is None else win_rates)

    def product(self, state: ExactState) -> jax.Array:
        """Pπ_t of every seed, (K, S), as a sum of products over P's columns: Σ_j P[i, j, s]·π[j, s] for a
        P per seed, Σ_j P[i, j]·π[j, s] for a shared one.  A matrix product would be a dot, which XLA
        wants seed-first (batched) or lays out so that the loop's arrays become seed-first; this is
        one fused loop over K ≤ 12 columns."""
        preference, policy = self.minor_games.preference, current_policy(state)
        if self.game_axes.preference is None:
            preference = preference[..., None]
        return jnp.sum(preference * policy[None], axis=1)

    def log_ratio(self, state: ExactState) -> jax.Array:
        """max_y |log π_t(y)/π_ref(y)| of every seed, (S,): a reduction over the arms' axis 0."""
        reference = self.minor_games.log_reference
        if self.game_axes.log_reference is None:
            reference = reference[..., None]
        return jnp.max(jnp.abs(state.log_policy - reference), axis=0)

    def measure(
        self, state: ExactState, mixture_sum: jax.Array, largest_log_ratio: jax.Array
    ) -> tuple[dict, jax.Array]:
        seed_first = jax.tree_util.tree_map(_major, state._replace(step=None))._replace(step=state.step)
        row, win_rates = jax.vmap(_measure, in_axes=(self.game_axes, 0, _state_axes(seed_first, 0), 0, 0))(
            self.games, self.references, seed_first, _major(mixture_sum), largest_log_ratio
        )
        return row, _minor(win_rates)

    @staticmethod
    def all_finite(values: jax.Array) -> jax.Array:
        return jnp.all(jnp.isfinite(values), axis=tuple(range(values.ndim - 1)))

    #: An output (seed last: rows (n, S), π (K, S)) with the seed moved to the front.
    seed_first = staticmethod(_major)

    def keeps_layout(self) -> bool:
        """Whether the rule's traced update keeps the seed axis last (:func:`keeps_seeds_minor`)."""
        state = jax.eval_shape(self.init)
        products = jax.ShapeDtypeStruct(state.log_policy.shape, state.log_policy.dtype)
        return keeps_seeds_minor(jax.make_jaxpr(self._rule_update)(state, products).jaxpr)


def keeps_seeds_minor(jaxpr: Jaxpr) -> bool:
    """False when ``jaxpr`` (or one inside it) has a matrix product (a rule that multiplies P itself:
    with a P per seed XLA would copy P seed-first at every update; with a shared P the dot made XLA lay
    the loop's arrays out seed-first, extragradient 87 → 95 ms at K = 10, 1024 seeds) or transposes an
    array of three or more axes (a P per seed).  The small transposes ``vmap`` puts around a reduction
    over the arms (keepdims puts the reduced row's seed axis first) do not count: XLA folds them into
    the fused loops, and the compiled step moves no data."""
    for equation in jaxpr.eqns:
        if equation.primitive.name == "transpose" and equation.invars[0].aval.ndim >= 3:
            return False
        if equation.primitive.name == "dot_general":
            return False
        for inner in _inner_jaxprs(equation.params):
            if not keeps_seeds_minor(inner):
                return False
    return True


def _inner_jaxprs(params: dict):
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, Jaxpr):
                yield item


def _run_pieces(view, schedule: Schedule, carry: tuple | None, locate_nonfinite: bool) -> tuple[tuple, dict]:
    """:func:`simulate_block`'s pieces for ``view`` (:class:`_OneSeed` or :class:`SeedsMinorView`)."""

    def one_update(_, carry, measured_win_rates=None):
        state, mixture_sum, first_bad, largest = carry
        state = view.update(state, measured_win_rates)
        mixture_sum = mixture_sum + current_policy(state)
        # max_log_ratio_so_far: every iterate's log-ratio, recorded or not (O(K), next to the O(K²) of Pπ)
        largest = jnp.maximum(largest, view.log_ratio(state))
        if locate_nonfinite:
            bad = ~view.all_finite(state.log_policy)
            first_bad = jnp.where((first_bad < 0) & bad, state.step, first_bad)
        return state, mixture_sum, first_bad, largest

    def piece(carry, item):
        length, fresh, measures = item
        state, mixture_sum, first_bad, measured_win_rates, largest = carry
        # The first update of a segment multiplies P by the iterate just measured: hand it Pπ_t
        # (ExactState.win_rates), so that a recording costs no extra read of P; a piece that continues
        # a segment computes Pπ_t as an update does.  The first update is not inside a cond (XLA would
        # compile it apart from the rest and round differently, e.g. Nash-MD's last bits); a padding
        # piece (length 0) discards it.
        win_rates = jax.lax.cond(fresh, lambda: measured_win_rates, lambda: view.product(state))
        before = (state, mixture_sum, first_bad, largest)
        updates = one_update(0, before, win_rates)
        updates = jax.tree_util.tree_map(lambda new, old: jnp.where(length > 0, new, old), updates, before)
        updates = jax.lax.fori_loop(1, length, one_update, updates)
        state, mixture_sum, first_bad, largest = updates

        def recording(_):
            finite = view.all_finite(mixture_sum) & view.all_finite(state.log_policy)
            seen = first_bad if locate_nonfinite else jnp.where(finite, -1, state.step)
            row, win_rates = view.measure(state, mixture_sum, largest)
            return row, seen.astype(jnp.int32), win_rates

        def no_recording(_):
            shapes = jax.eval_shape(recording, None)
            row = {name: jnp.zeros(value.shape, value.dtype) for name, value in shapes[0].items()}
            return row, jnp.full(shapes[1].shape, -1, jnp.int32), measured_win_rates

        row, seen, measured_win_rates = jax.lax.cond(measures, recording, no_recording, None)
        return (state, mixture_sum, first_bad, measured_win_rates, largest), (row, seen)

    out = {}
    if carry is None:
        state = view.init()
        policy = current_policy(state)
        largest = view.log_ratio(state)  # π_0's
        out["first"], first_win_rates = view.measure(state, policy, largest)
        carry = (state, policy, jnp.full(view.all_finite(policy).shape, -1, jnp.int32), first_win_rates, largest)
    items = tuple(jnp.asarray(values) for values in schedule)
    carry, (rows, seen) = jax.lax.scan(piece, carry, items)
    out["rows"] = {name: view.seed_first(values) for name, values in rows.items()}
    out["seen"] = view.seed_first(seen)
    out["first_bad"] = carry[2]
    out["final"] = view.seed_first(current_policy(carry[0]))
    return carry, out


def simulate_grid(
    make_rule: Callable[[dict], ExactRule],
    grid: dict,
    games: Game,
    game_axes: Game,
    targets: ArrayLike,
    record_iterations: np.ndarray,
    cache_key: Hashable | None = None,
    unregularised_targets: jax.Array | None = None,
    progress: Callable[[int, int], object] | None = None,
    block_size: int | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """vmap :func:`simulate` over seeds (axis 0 of batched game leaves and of ``targets``) and a grid.

    Args:
      make_rule: builds the rule from a dict of scalar (possibly traced) swept parameters.
      grid: swept parameter name → array of shape (G,); may be empty (G = 1).
      games: the games, leaves batched over seeds where ``game_axes`` says 0, shared where ``None``.
      game_axes: a :class:`Game` of ``0``/``None`` per leaf.
      targets: π* per seed, shape (S, K).
      record_iterations: recorded iterations (0 first).
      cache_key: optional hashable that identifies what ``make_rule`` builds (e.g. the rule name and its
        fixed parameters); calls with the same key, grid names and batching reuse one jitted function
        instead of compiling again (the recorded iterations are data, so runs of other lengths reuse it
        too).  ``None``: the ``make_rule`` object itself is the key (reuse it across calls to avoid
        recompiling).  A :class:`sim.program_cache.SourceKey` (``sim.run``'s, for prefsim's own rules)
        also keeps the compiled programs between processes while :func:`sim.program_cache.keep_programs`
        names a directory.
      unregularised_targets: π⁰ per seed, shape (S, K), rows all-NaN where π⁰ is not unique
        (``kl_to_unregularised_nash``); ``None``: that column is NaN.  It travels with π* as one
        per-seed array of shape (S, 2, K).
      progress: called with ``(updates done, T)`` between blocks when the run takes more than one
        (an exception it raises, e.g. a stop request, ends the run between two blocks).
      block_size: updates per block; ``None``: :func:`block_updates` of the run's size.
      checkpoint: where the run keeps its state between blocks and finds it again (:mod:`sim.checkpoint`):
        one scope per seed group, a group's result once it is finished.

    The trajectory runs in blocks of at most ``block_size`` updates (:func:`sim.shared_engine.plan_blocks`),
    each one compiled call of :func:`simulate_block` on the state the last one returned, so the host
    can report progress and stop between blocks; a run of at most ``block_size`` updates (the common
    case) is one call.  The numbers do not depend on the block size (bit for bit).

    Returns:
      metrics: column → array (G, S, R);  first_nonfinite: array (G, S), the first iteration whose
      log-policy had a NaN/±inf entry, or −1.  The run checks finiteness only at recorded
      iterations; when that finds a problem the grid is run once more with a check at every step
      (:func:`simulate`'s ``locate_nonfinite``), so the iteration reported is exact.
    """
    record = np.asarray(record_iterations, np.int64)
    arms = int(np.shape(targets)[-1])
    # π* and π⁰ stacked on the host: they go to the devices with their seeds (no JAX program to load)
    targets = np.asarray(targets)
    if unregularised_targets is None:
        unregularised_targets = np.full(targets.shape, np.nan, targets.dtype)
    targets = np.stack([targets, np.asarray(unregularised_targets, targets.dtype)], axis=1)
    grid_values = grid_arrays(grid)
    seeds = int(targets.shape[0])
    devices = trajectory_devices(len(next(iter(grid_values.values()))), seeds, arms, game_axes, int(record[-1]))
    group = seed_group(seeds, arms, games, game_axes, devices)
    run = functools.partial(
        _simulate_seeds,
        make_rule,
        grid_values,
        game_axes=game_axes,
        record=record,
        cache_key=cache_key,
        block_size=block_size,
        devices=devices,
    )
    if group is None:
        return run(games, targets, progress, None if checkpoint is None else checkpoint.scope("seeds"))
    # Seeds in groups of a few per device, each group's whole trajectory before the next one's, so
    # that its games stay in the cores' caches (K = 100, 256 seeds: ~3× faster than all seeds at once).
    # Every group has the same size (the last padded with copies of its last seed), so they share one
    # compiled program; numbers equal the one-batch run up to rounding (~1e-14).
    groups, total = -(-seeds // group), int(record[-1])
    games = seeds_on_host(games, game_axes)  # groups cut by NumPy slicing
    parts = []
    for index in range(groups):
        layout = f"group-{index}-of-{groups}x{group}@{devices}"  # a finished group is reused only in its layout
        scope = None if checkpoint is None else checkpoint.scope(layout)
        finished = None if scope is None else scope.finished()
        if finished is not None:
            parts.append(finished)
            continue
        chosen = padded_seed_rows(index * group, group, seeds)
        part_games = take_seeds(games, game_axes, chosen)

        def group_progress(done, _, offset=index * total):
            progress(offset + done, groups * total)

        parts.append(run(part_games, targets[chosen], None if progress is None else group_progress, scope))
        if scope is not None:
            scope.finish(*parts[-1])
        if progress is not None and index + 1 < groups:
            progress((index + 1) * total, groups * total)
    metrics = {name: np.concatenate([part[0][name] for part in parts], axis=1)[:, :seeds] for name in parts[0][0]}
    return metrics, np.concatenate([part[1] for part in parts], axis=1)[:, :seeds]


def _simulate_seeds(
    make_rule, grid_values, games, targets, progress, checkpoint, *, game_axes, record, cache_key, block_size, devices
):
    """:func:`simulate_grid` on one batch of seeds (``targets``: π* and π⁰ stacked, (S, 2, K)), sharded over
    (at most) ``devices`` devices and run in time blocks (``checkpoint``: a scope of :mod:`sim.checkpoint`;
    the second run that locates a divergence keeps none)."""
    arms = int(targets.shape[-1])
    grid_names = tuple(sorted(name for name in grid_values if name != "__none__"))
    games, targets, padded = shard_over_seeds(games, game_axes, targets, devices)
    if block_size is None:  # a state shared by the seeds (see _compiled) is updated once, not per seed
        seeds = int(targets.shape[0]) if varies_by_seed(game_axes) else 1
        shared_preference = game_axes.preference is None
        block_size = block_updates(len(next(iter(grid_values.values()))), seeds, arms, shared_preference)
    arguments = (grid_values, games, targets)

    def compiled(locate: bool):
        return _compiled(make_rule, grid_names, game_axes, cache_key, locate, arms, targets.dtype)

    metrics, first_bad = run_blocks_locating(
        compiled, arguments, record, block_size, progress, checkpoint, int(targets.shape[0])
    )
    seeds = targets.shape[0] - padded
    metrics[FINAL_POLICY] = metrics.pop("final")
    return {k: np.asarray(v)[:, :seeds] for k, v in metrics.items()}, np.asarray(first_bad)[:, :seeds]


def seed_group(seeds: int, arms: int, games: Game, game_axes: Game, devices: int = 1) -> int | None:
    """Seeds per group of :func:`simulate_grid` (``None``: all at once): with a P per seed, the
    :func:`seed_tile` of each device's seeds on each of the ``devices`` devices that run them."""
    if game_axes.preference is None:
        return None
    tile = seed_tile(-(-seeds // devices), arms, jnp.dtype(games.preference.dtype).itemsize)
    return None if tile is None else tile * devices


#: Work one block may do, in units of one multiply-add of a per-seed P·π (memory-bound: each reads
#: 8 bytes of P): an update of one seed at one grid point counts K² (the product P·π, divided by
#: :data:`SHARED_PRODUCT_SPEEDUP` when every seed shares P) + :data:`BLOCK_ARM_COST`·K (the exp,
#: normalisation and bookkeeping of K arms).  About 10¹⁰ is about a second of a 2-core CPU (per-seed
#: K = 10, 1024 seeds: ~1.3·10⁴ updates; per-seed K = 1000, 16 seeds: ~600 updates; shared K = 1000,
#: 64 seeds: ~1200 updates), so the calls between blocks cost little: at shared K = 1000, 64 seeds,
#: 1000 updates, blocks of ~30 updates made the run ~15% slower than one call, and blocks of ~500
#: still ~5% (measured on the 2-core CI machine, 2026-12-06).  A GPU is faster still.
BLOCK_WORK = 1e10
#: Per arm cost of an update besides P·π (see :data:`BLOCK_WORK`).
BLOCK_ARM_COST = 64
#: How much faster a multiply-add of P·π runs when the seeds share P (one matrix product, compute-bound)
#: than when each seed has its own P (a batched matrix-vector product, memory-bound): ~15× measured on
#: this project's 2-core CI machine (benchmarks/README.md: 103 vs 6.9 GFLOP/s at K = 1000).
SHARED_PRODUCT_SPEEDUP = 16


def update_work(grid_points: int, seeds: int, arms: int, shared_preference: bool = False) -> float:
    """The work of one update of every grid point and seed in :data:`BLOCK_WORK`'s units:
    G·S·(K²/c + BLOCK_ARM_COST·K), c = :data:`SHARED_PRODUCT_SPEEDUP` when the seeds share P (else 1)."""
    product = arms * arms / (SHARED_PRODUCT_SPEEDUP if shared_preference else 1)
    return max(1, grid_points) * max(1, seeds) * (product + BLOCK_ARM_COST * arms)


def varies_by_seed(game_axes: Game) -> bool:
    """Whether some game leaf differs between seeds (``game_axes`` has a 0): then every seed has its own
    trajectory state; else the seeds share it (only the metrics against each seed's π* differ)."""
    return any(axis == 0 for axis in jax.tree_util.tree_leaves(game_axes))


def trajectory_devices(grid_points: int, seeds: int, arms: int, game_axes: Game, updates: int) -> int:
    """The devices :func:`simulate_grid` splits a run's seeds over: :func:`seed_device_count` of its work,
    ``updates`` × :func:`update_work` (per seed where some game leaf differs between seeds)."""
    batched = varies_by_seed(game_axes)
    work = update_work(grid_points, seeds if batched else 1, arms, game_axes.preference is None) * updates
    return seed_device_count(seeds, work)


def block_updates(grid_points: int, seeds: int, arms: int, shared_preference: bool = False) -> int:
    """Updates per block (at least 1): :data:`BLOCK_WORK` / :func:`update_work`.  A run of at most this many
    updates is one compiled call; a longer one reports progress between blocks."""
    return max(1, int(BLOCK_WORK // update_work(grid_points, seeds, arms, shared_preference)))


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


#: Above :data:`SMALL_ARMS`, float64 trajectories on a CPU compile without XLA's tree reduction
#: rewriter.  That pass cuts every reduction over more than 32 numbers into a reduce-window over windows
#: of 32 and a reduce of the window results (for float32 accuracy over long rows), so each row max or
#: sum of an update becomes two kernels, the row padded to a multiple of 32.  In float64 a plain sum of
#: K numbers is accurate to ~K·1e-16 relative at worst (1e-12 at K = 10⁴), far inside what any metric
#: resolves, and one plain reduce per row is faster than the padded pair: K = 100, 256 per-seed games, 2000
#: updates, every metric, 2 devices, seed groups of 8 per device: 324–342 → 291–294 ms (medians of 7
#: calls, two processes each, interleaved); K = 40, 64, 200, 1000 and a shared K = 100 game unchanged
#: within noise (2-core Xeon, 2026-12-06).  float32 runs keep the pass.
LONG_ROWS_FLOAT64_CPU_OPTIONS = {"xla_disable_hlo_passes": "tree_reduction_rewriter"}


def compiler_options(arms: int, dtype: DTypeLike = jnp.float64) -> dict | None:
    """XLA options for a trajectory over ``arms`` arms computed in ``dtype``, on a CPU when this jaxlib
    knows them: :data:`SMALL_ARMS_CPU_OPTIONS` for K ≤ :data:`SMALL_ARMS`, :data:`LONG_ROWS_FLOAT64_CPU_OPTIONS`
    for larger float64 games; else ``None`` (XLA's defaults)."""
    if jax.default_backend() != "cpu":
        return None
    if arms <= SMALL_ARMS:
        options = SMALL_ARMS_CPU_OPTIONS
    elif jnp.dtype(dtype) == jnp.float64:
        options = LONG_ROWS_FLOAT64_CPU_OPTIONS
    else:
        return None
    return dict(options) if _cpu_options_supported(options_key(options)) else None


@functools.cache
def _cpu_options_supported(options: tuple) -> bool:
    """Whether this jaxlib compiles with ``options`` (:func:`sim.shared_engine.options_key` of them)."""
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=dict(options)).lower(1.0).compile()
    except (RuntimeError, ValueError):  # an unknown or renamed option in another jaxlib: keep XLA's defaults
        return False
    return True


def seeds_minor_layout(arms: int) -> bool:
    """Whether a trajectory of per-seed states over ``arms`` arms runs its updates seed-last
    (:func:`simulate_seeds_block`): on a CPU for K ≤ :data:`SMALL_ARMS`.  Measured on the 2-core Xeon
    (benchmarks/README.md, 2026-12-06), INPO, K = 10, 1024 seeds, one core: 55 → 40 µs an update with a P
    per seed, 47 → 27 µs with a shared P; from K ≈ 16 on rows fill SIMD vectors and the seed-first
    batched product is the faster one."""
    return arms <= SMALL_ARMS and jax.default_backend() == "cpu"


def _compiled(make_rule, grid_names, game_axes, cache_key, locate_nonfinite=False, arms=None, dtype=jnp.float64):
    """The jitted grid × seeds block of the trajectory (:func:`simulate_block`, or
    :func:`simulate_seeds_block` where :func:`seeds_minor_layout`, through
    :func:`sim.shared_engine.compile_over_grid_and_seeds` with ``blocks=True``): called as
    ``(grid, games, targets, carry, schedule)``."""
    options = None if arms is None else compiler_options(arms, dtype)
    # The trajectory depends on the game and the grid point only (π* enters the metrics): on a game
    # every seed shares it is carried once per grid point, as vmap keeps it in the one-call run.
    per_seed = varies_by_seed(game_axes)
    seeds_inside = per_seed and arms is not None and seeds_minor_layout(arms)
    key = ("exact", make_rule if cache_key is None else cache_key, grid_names, locate_nonfinite, seeds_inside)

    def one(parameters, game, target, carry, schedule):
        # target: π* (K,), or π* and π⁰ stacked (2, K) as simulate_grid passes them (shapes are static)
        rule, schedule = make_rule(parameters), Schedule(*schedule)
        if target.ndim == 2:
            return simulate_block(rule, game, target[0], schedule, carry, locate_nonfinite, target[1])
        return simulate_block(rule, game, target, schedule, carry, locate_nonfinite)

    def every_seed(parameters, games, targets, carry, schedule):
        # targets: π* (S, K), or π* and π⁰ stacked (S, 2, K)
        rule, schedule = make_rule(parameters), Schedule(*schedule)
        unregularised = targets[:, 1] if targets.ndim == 3 else None
        targets = targets[:, 0] if targets.ndim == 3 else targets
        return simulate_seeds_block(rule, games, game_axes, targets, schedule, carry, locate_nonfinite, unregularised)

    # kept between processes when the caller's key, with prefsim's source, names the rule's code
    kept_as = "sim.trajectory.block" if isinstance(cache_key, SourceKey) else None
    if seeds_inside:
        return compile_over_grid_and_seeds(
            every_seed, game_axes, key, options, blocks=True, seeds_inside=True, kept_as=kept_as
        )
    return compile_over_grid_and_seeds(
        one, game_axes, key, options, blocks=True, carry_per_seed=per_seed, kept_as=kept_as
    )
