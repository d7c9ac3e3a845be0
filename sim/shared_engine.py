"""The machinery both JAX engines share: exact mode (:mod:`sim.trajectory`) and sampled mode
(:mod:`sim.sampled.engine`) each supply a function of one seed; everything around it is here, once.

* :func:`stack_over_seeds` — per-seed items (a :class:`~sim.game.Game` or a sampled
  :class:`~sim.sampled.problem.Problem`) stacked leaf by leaf, a leaf equal in every seed kept once
  (``None`` axis), so seeds that share P multiply one P;
* :func:`compile_over_grid_and_seeds` — ``vmap`` over seeds (inner) and over the swept parameter grid
  (outer), ``jit``, and one bounded cache of compiled functions, so a repeated run does not recompile;
* :func:`plan_blocks` and :func:`run_blocks` — a trajectory cut into blocks of at most B updates, each
  one compiled call on the state the previous block returned (the schedule of a block is data, not a
  static argument, so every block of a run reuses one compiled function), with the host reporting
  progress and honouring a stop request between blocks;
* :func:`shard_over_seeds` — the seed axis split over the visible devices with ``jax.sharding``
  (padding to a multiple of the device count); a no-op on one device;
* :func:`seed_tile` — how many seeds with a P each a device runs at a time so that their P stay in its
  core's cache (exact trajectories and regularised Nash solves run in such groups);
* :func:`first_divergence` and :func:`divergence_error` — the first (grid point, seed) whose run went
  non-finite, and the one error that names rule, seed and iteration;
* :func:`regret_from_mixture_sum` — the running regret Σ_{s<t}(max r − π_s·r) read off the running
  mixture sum, a running metric both engines record.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.typing import ArrayLike

from bandits.errors import PrefsimError
from sim.checkpoint import BlockState, CheckpointScope, block_plan
from sim.precision import on_device
from sim.program_cache import KeptProgram, kept_jit

#: Compiled whole-run functions kept (oldest dropped first).
COMPILED_MAX = 64
#: The one cache of compiled whole-run functions of both engines (key → jitted function).
COMPILED_RUNS: dict = {}


def stack_over_seeds(items: Iterable) -> tuple[Any, Any]:
    """``(stacked, axes)`` from one NamedTuple of arrays per seed (a list, or a generator that builds them).

    A leaf equal (NaN-aware) in every seed is kept once with axis ``None``; the others are stacked on
    a new leading axis 0 (NumPy leaves stay NumPy arrays).  ``axes`` is the same NamedTuple type with
    0 / ``None`` per leaf (``vmap``'s ``in_axes``).  Items are consumed one at a time and a leaf equal to
    the first seed's is not kept again, so seeds that share one game hold one K×K matrix, not S, even
    while they are being built.
    """
    first = None
    per_seed: list = []  # per leaf: None while every seed so far equals the first, else its values
    for count, item in enumerate(items):
        if first is None:
            first, per_seed = item, [None] * len(item)
            continue
        for index, leaf in enumerate(item):
            if per_seed[index] is not None:
                per_seed[index].append(leaf)
            elif not np.array_equal(np.asarray(leaf), np.asarray(first[index]), equal_nan=True):
                per_seed[index] = [first[index]] * count + [leaf]
    if first is None:
        raise PrefsimError("stack_over_seeds: needs at least one seed.")
    kind = type(first)
    stacked = kind(*(first[i] if values is None else _stack(values) for i, values in enumerate(per_seed)))
    return stacked, kind(*(None if values is None else 0 for values in per_seed))


def _stack(values: list) -> Any:
    """One leaf's per-seed values on a new axis 0: NumPy arrays by NumPy (one array, not one per seed, then
    goes to the device), anything else by ``jnp.stack``."""
    if all(isinstance(value, np.ndarray) for value in values):
        return np.stack(values)
    return jnp.stack(values)


def options_key(compiler_options: dict | None) -> tuple | None:
    """XLA compiler options as a hashable key: their ``(name, value)`` pairs sorted (``None`` stays ``None``)."""
    return None if compiler_options is None else tuple(sorted(compiler_options.items()))


def compile_over_grid_and_seeds(
    one: Callable,
    item_axes: tuple,
    cache_key: Hashable,
    compiler_options: dict | None = None,
    blocks: bool = False,
    carry_per_seed: bool = True,
    point_axes: tuple | None = None,
    seeds_inside: bool = False,
    kept_as: str | None = None,
) -> Callable:
    """``jit(vmap_grid(vmap_seeds(one)))``, cached under ``cache_key`` and ``compiler_options``.

    ``one(point, item, per_seed)`` runs one seed at one grid point: ``point`` a dict of scalars (the
    swept parameters), ``item`` the seed's game / problem (leaves batched where ``item_axes`` is 0),
    ``per_seed`` an array with the seed on axis 0 (exact: π*; sampled: the PRNG key).  The compiled
    function takes ``(grid, items, per_seed)`` with ``grid`` a dict of arrays of shape (G,) (a dummy
    entry ``__none__`` when nothing is swept; it is removed before ``one`` sees the point) and returns
    ``one``'s outputs with leading axes (G, S).

    With ``blocks=True`` the function runs one block of a trajectory (:func:`run_blocks`):
    ``one(point, item, per_seed, carry, schedule)`` and the compiled function takes
    ``(grid, items, per_seed, carry, schedule)``, where ``carry`` is the state a previous block returned
    (leading axes (G, S); ``None`` for the first block, which starts the run) and ``schedule`` the block's
    :data:`Schedule` arrays, shared by every grid point and seed.  jit keeps one compiled program per
    argument structure, so a run compiles two: its first block and the rest.  ``carry_per_seed=False``
    says the carried state does not depend on the seed (exact mode on a game every seed shares: only
    the metrics against each seed's π* differ); it is then held once per grid point, not per seed,
    as the one-call run holds it (vmap does not batch what does not depend on the seed).

    ``point_axes``: the items are several points' (a group of a ``[game]`` sweep), stacked on a leading
    point axis where ``point_axes`` is 0 (``item_axes``: the seed axes within a point), and ``per_seed``
    is (P, S, …), and ``grid`` holds each point's grid, (P, G) (its own rule parameters can be entries of
    it, batched like the grid's values and not over its seeds, as in the point's own run): a third
    ``vmap`` over the points runs outermost, and the compiled function returns (and with ``blocks``
    takes the carry with) point × seed on one axis of P·S entries (point-major), like a run of P·S
    seeds (``carry_per_seed`` must then be true).

    ``seeds_inside``: ``one`` runs every seed itself (``item`` with its seed axes, ``per_seed`` and the
    carry with the seed on axis 0) and returns its outputs with the seed on axis 0, as the ``vmap`` over
    seeds would (exact mode's seed-last updates, :func:`sim.trajectory.simulate_seeds_block`); only the
    grid is ``vmap``-ed here.

    ``kept_as``: a name under which the compiled programs are also kept between processes
    (:class:`sim.program_cache.KeptProgram`, keyed by ``cache_key`` and the options above), for a caller
    whose ``cache_key`` is plain data that, with prefsim's source, identifies ``one``; ``None`` keeps
    them in this process only.
    """
    options = options_key(compiler_options)
    key = (cache_key, item_axes, options, blocks, carry_per_seed, point_axes, seeds_inside, kept_as)
    if key in COMPILED_RUNS:
        return COMPILED_RUNS[key]

    def without_dummy(point, item, *rest):
        return one({k: v for k, v in point.items() if k != "__none__"}, item, *rest)

    seed_axes, grid_axes, seed_out = (None, item_axes, 0), (0, None, None), 0
    if blocks:
        carry_axis = 0 if carry_per_seed else None
        seed_axes, grid_axes, seed_out = seed_axes + (carry_axis, None), grid_axes + (0, None), (carry_axis, 0)
    over_seeds = without_dummy if seeds_inside else jax.vmap(without_dummy, in_axes=seed_axes, out_axes=seed_out)
    over_grid = jax.vmap(over_seeds, in_axes=grid_axes)
    if point_axes is not None:
        over_grid = _points_outermost(over_grid, point_axes, blocks)
    if kept_as is None:
        compiled = jax.jit(over_grid, compiler_options=compiler_options)
    else:
        compiled = KeptProgram(over_grid, kept_as, key=key, jit_options={"compiler_options": compiler_options})
    if len(COMPILED_RUNS) >= COMPILED_MAX:
        COMPILED_RUNS.pop(next(iter(COMPILED_RUNS)))
    COMPILED_RUNS[key] = compiled
    return compiled


def _points_outermost(over_grid: Callable, point_axes: tuple, blocks: bool) -> Callable:
    """``over_grid`` vmapped over points (outermost), its (P, G, S, …) results as (G, P·S, …)."""
    over_points = jax.vmap(over_grid, in_axes=(0, point_axes, 0) + ((0, None) if blocks else ()))

    def run(grid, items, per_seed, *rest):
        points, seeds = per_seed.shape[:2]

        def merge(x):
            x = jnp.moveaxis(x, 0, 1)
            return x.reshape((x.shape[0], points * seeds) + x.shape[3:])

        def split(x):
            return jnp.moveaxis(x.reshape((x.shape[0], points, seeds) + x.shape[2:]), 1, 0)

        if blocks:
            rest = (jax.tree_util.tree_map(split, rest[0]), rest[1])
        return jax.tree_util.tree_map(merge, over_points(grid, items, per_seed, *rest))

    return run


class Schedule(NamedTuple):
    """The pieces of one block, each a run of updates (arrays of shape (n,), n the same for every block).

    Attributes:
      lengths: updates in the piece (0 for a padding piece, which does nothing).
      fresh: the piece starts at a recorded iteration (exact mode hands its first update the win rates
        measured there, as a segment's first update always did); ``False`` for a piece that continues
        a segment cut by a block boundary, and for padding.
      measures: the piece ends at a recorded iteration, which it measures (its row is kept).
    """

    lengths: np.ndarray
    fresh: np.ndarray
    measures: np.ndarray


def _window_pieces(record: np.ndarray, start: int, end: int) -> Schedule:
    """The pieces of the updates start+1 … end, cut at the recorded iterations inside (unpadded)."""
    low, high = np.searchsorted(record, start, side="right"), np.searchsorted(record, end, side="right")
    inside = record[low:high]
    starts_recorded = low > 0 and record[low - 1] == start
    ends_recorded = inside.size > 0 and inside[-1] == end
    bounds = np.concatenate([[start], inside, [] if ends_recorded else [end]]).astype(np.int64)
    recorded = np.concatenate([[starts_recorded], np.ones(inside.size, bool), [] if ends_recorded else [False]])
    lengths = np.diff(bounds)
    return Schedule(lengths, recorded[:-1].astype(bool) & (lengths > 0), recorded[1:].astype(bool) & (lengths > 0))


def plan_blocks(
    record_iterations: ArrayLike, block_size: int, pad_first: bool = False
) -> tuple[int, Iterator[Schedule]]:
    """``(blocks, schedules)``: the trajectory 0 → T cut into blocks of at most ``block_size`` updates.

    Block b holds the updates b·B + 1 … min((b + 1)·B, T); the recorded iterations inside it cut it into
    pieces (a segment between two recordings longer than what is left of the block continues in the
    next one).  The first block's :class:`Schedule` has exactly its pieces (``pad_first``: it is padded
    too); every later block's is padded to the same number of pieces (the most any of them has), so
    they all share one compiled function.  With T ≤ B the run is one block whose pieces are exactly the
    recorded segments.  ``schedules`` yields the blocks lazily (a long run with a small B has many).
    T = 0 is one block of one padding piece (the run only measures π_0).
    """
    record = np.asarray(record_iterations, np.int64)
    total = int(record[-1])
    size = max(1, min(int(block_size), max(total, 1)))
    blocks = max(1, -(-total // size))
    pieces = 1  # a block without a recorded iteration inside is one piece
    for window in np.unique((record[1:] - 1) // size).tolist():
        if window > 0 or pad_first:
            pieces = max(pieces, len(_window_pieces(record, window * size, min((window + 1) * size, total)).lengths))

    def schedules() -> Iterator[Schedule]:
        for block in range(blocks):
            found = _window_pieces(record, block * size, min((block + 1) * size, total))
            pad = 0 if block == 0 and not pad_first else pieces - len(found.lengths)
            yield Schedule(
                np.concatenate([found.lengths, np.zeros(pad, np.int64)]).astype(np.int32),
                np.concatenate([found.fresh, np.zeros(pad, bool)]),
                np.concatenate([found.measures, np.zeros(pad, bool)]),
            )

    return blocks, schedules()


def whole_run_schedule(record_iterations: ArrayLike) -> Schedule:
    """The :class:`~sim.shared_engine.Schedule` of a run done as one block: one piece per recorded segment."""
    record = np.asarray(record_iterations, np.int64)
    return next(plan_blocks(record, max(int(record[-1]), 1))[1])


def run_blocks(
    compiled: Callable,
    arguments: tuple,
    record_iterations: ArrayLike,
    block_size: int,
    progress: Callable[[int, int], object] | None = None,
    stop_on_nonfinite: bool = False,
    separate_start: bool = False,
    checkpoint: CheckpointScope | None = None,
) -> tuple[Any, dict, np.ndarray, bool]:
    """Run a trajectory block by block (:func:`plan_blocks`); ``compiled(*arguments, carry, schedule)``.

    ``compiled`` returns ``(carry, out)`` with ``out`` a dict of ``rows`` (column → (G, S, n) one per
    piece), ``seen`` ((G, S, n): the iteration a measuring piece found non-finite, else −1), ``final``
    (π after the block) and, from the first block, ``first`` (column → (G, S), the row of iteration 0).
    With ``separate_start`` the run is started by a call with an empty schedule (it only initialises
    and measures iteration 0), and every block, the first included, is padded to one size and gets
    its state as an argument: one compiled program runs every update (the sampled engine needs this
    to round its loss alike in every block).  Between blocks the host calls
    ``progress(updates done, T)`` (only when there is more than one
    block; an exception it raises, e.g. a stop request, ends the run there) and, with
    ``stop_on_nonfinite``, stops once a recording saw a non-finite value.  With a ``checkpoint``
    (:mod:`sim.checkpoint`) it saves what it has computed between blocks (now and then) and, when that
    holds the state of this run's plan, starts from it: the first call is made (for the carry's
    structure and devices), then the saved carry and rows replace its own and the saved blocks are skipped.

    Returns ``(carry, metrics, seen, stopped)``: the last carry; column → (G, S, R) NumPy (iteration 0
    first, then the measured rows in order, plus ``final``); ``seen`` (G, S, R − 1); ``stopped`` True
    when it stopped early on a non-finite value (the tables are then incomplete).
    """
    total = int(np.asarray(record_iterations)[-1])
    blocks, schedules = plan_blocks(record_iterations, block_size, pad_first=separate_start)
    carry, parts, seen, first, final, done = None, [], [], None, None, 0
    if separate_start:
        empty = Schedule(np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, bool))
        schedules = itertools.chain([empty], schedules)
    calls = blocks + int(separate_start)
    plan = None if checkpoint is None else block_plan(record_iterations, block_size, separate_start, arguments[-1])
    saved = None if checkpoint is None else checkpoint.state(plan)
    for index, schedule in enumerate(schedules):
        if saved is not None and 0 < index < saved.blocks:
            continue  # done before the interruption
        carry, out = compiled(*arguments, carry, tuple(schedule))
        if saved is not None and index == 0:
            restored = checkpoint.restore(carry, saved) if saved.blocks > 1 else None
            if restored is not None:
                carry, first, parts, seen, done = restored, saved.first, [saved.rows], [saved.seen], saved.done
                if progress is not None:
                    progress(done, total)
                continue
            saved = None  # not used: this call's results stand
        keep = schedule.measures
        if first is None:
            first = {name: value[:, :, None] for name, value in _to_host(out["first"]).items()}
        parts.append({name: value[:, :, keep] for name, value in _to_host(out["rows"]).items()})
        seen.append(np.asarray(out["seen"])[:, :, keep])
        final = out["final"]
        done += int(schedule.lengths.sum())
        if stop_on_nonfinite and np.any(seen[-1] >= 0):
            return carry, {}, np.concatenate(seen, axis=2), True
        if checkpoint is not None and index + 1 < calls:
            checkpoint.keep(plan, functools.partial(_block_state, index + 1, done, carry, first, parts, seen))
        if progress is not None and blocks > 1 and len(schedule.lengths):
            progress(done, total)
    metrics = {name: np.concatenate([first[name]] + [part[name] for part in parts], axis=2) for name in first}
    return carry, {**metrics, "final": final}, np.concatenate(seen, axis=2), False


def run_blocks_locating(
    compiled: Callable[[bool], Callable],
    arguments: tuple,
    record_iterations: ArrayLike,
    block_size: int,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: CheckpointScope | None = None,
    seeds: int | None = None,
) -> tuple[dict, np.ndarray]:
    """An exact trajectory in blocks: :func:`run_blocks` of ``compiled(False)`` (finiteness checked at the
    recordings, stopping at the first that saw a non-finite value) and, only then, again with
    ``compiled(True)`` (every step checked, no checkpoint) to name the exact iteration.  Returns the
    metrics of :func:`run_blocks` and the first non-finite iteration (G, S) (−1: none; a state shared by
    the ``seeds`` seeds holds one per grid point, repeated for each)."""
    _, metrics, seen, stopped = run_blocks(
        compiled(False), arguments, record_iterations, block_size, progress, True, checkpoint=checkpoint
    )
    if not stopped and not np.any(seen >= 0):
        return metrics, np.full(seen.shape[:2], -1, np.int32)
    carry, metrics, _, _ = run_blocks(compiled(True), arguments, record_iterations, block_size, progress)
    first_bad = np.asarray(carry[2])
    if first_bad.ndim == 1:  # a state shared by the seeds
        first_bad = np.repeat(first_bad[:, None], seeds, axis=1)
    return metrics, first_bad


def _block_state(blocks: int, done: int, carry: Any, first: dict, parts: list, seen: list) -> BlockState:
    """:func:`run_blocks`'s state after ``blocks`` calls, on the host (a :class:`sim.checkpoint.BlockState`)."""
    rows = {name: np.concatenate([part[name] for part in parts], axis=2) for name in first}
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(carry)]
    return BlockState(blocks, done, leaves, first, rows, np.concatenate(seen, axis=2))


def _to_host(columns: dict) -> dict:
    """``columns`` (name → device array, one shape and dtype) as NumPy arrays, moved in one transfer: one
    stack on the device, then one copy (a copy per column costs ~20 µs each, per block and seed group)."""
    names = list(columns)
    stacked = np.asarray(_stack_columns(tuple(columns[name] for name in names)))
    return {name: stacked[index] for index, name in enumerate(names)}


@kept_jit
def _stack_columns(columns: tuple) -> jax.Array:
    return jnp.stack(columns)


def grid_arrays(grid: dict) -> dict:
    """The swept values as JAX arrays, or the dummy one-point grid when nothing is swept."""
    return {name: on_device(values) for name, values in grid.items()} or {"__none__": on_device(np.zeros(1))}


#: Bytes of per-seed P a device may hold in one seed group (:func:`seed_tile`): well inside one core's L2
#: cache (2 MiB on the CI machine's Xeon), so that its games stay there while the group's trajectory
#: runs.  K = 100, 256 seeds, 20000 updates, 2 devices: groups of 8 seeds a device (640 kB) 3.0 s,
#: 16 (1.3 MB) 3.8 s, all at once 10.3 s (2026-12-06, benchmarks/README.md).
SEED_TILE_BYTES = 768 * 1024


def seed_tile(seeds: int, arms: int, itemsize: int = 8) -> int | None:
    """Seeds a device runs at a time (:func:`sim.trajectory.seed_group`, :func:`sim.nash.regularised_targets`)
    when it holds ``seeds`` seeds, each with its own K × K P of ``itemsize``-byte numbers; ``None`` (all
    of them at once) when their P together fit in twice :data:`SEED_TILE_BYTES` (a core's cache holds
    them already: groups would only add a loop) or one seed's alone does not fit in it.

    The tile is the size B ≤ ⌊SEED_TILE_BYTES / (K²·itemsize)⌋, and ≥ half that, that pads the seeds
    least (B·⌈S/B⌉ smallest; the larger B on a tie): 128 seeds at K = 100 → 8 (16 tiles, no padding).
    """
    per_seed = arms * arms * itemsize
    largest = SEED_TILE_BYTES // per_seed
    if largest < 1 or seeds * per_seed <= 2 * SEED_TILE_BYTES:
        return None
    candidates = range(largest, max(1, (largest + 1) // 2) - 1, -1)
    return min(candidates, key=lambda size: (size * -(-seeds // size), -size))


#: On a CPU, a run is split over the CPU devices (:mod:`sim.cpu_cores`) only when it has at least this much
#: work, in the units of :data:`sim.trajectory.BLOCK_WORK` (multiply-adds; 10¹⁰ ≈ a second on 2 cores).
#: A split program costs ~0.15 s more to load in a new process (the trivial spec of benchmarks/run_all.py,
#: 6·10⁶: 1.95 → 2.1 s whole process) and then halves every call: from 10⁹ (~0.1 s of work) on it is
#: split, so a new process may lose up to ~0.1 s on runs of 1–3·10⁹ while every later call in the same
#: process gains.  Runs whose work the caller does not give (sampled mode, grouped sweep points) stay on
#: one CPU device: splitting the sampled program made it compile in 5.2 s instead of 2.6 s (issue 3's
#: case), more than its run gained (1.9 → 1.6 s).
CPU_SHARD_WORK = 1e9


def padded_seed_rows(start: int, size: int, end: int) -> np.ndarray:
    """The seed positions ``start … start + size − 1``, those from ``end`` on replaced by ``end − 1``: a group
    (or block) of ``size`` seeds whose last one is padded with copies of its last seed, so that every
    group is a call of one compiled function (the padded rows are dropped from its results)."""
    return np.minimum(np.arange(start, start + size), end - 1)


def solve_in_device_groups(
    solve: Callable[[Any], Any], take: Callable[[np.ndarray], Any], seeds: int, group: int
) -> list:
    """``solve(take(rows))`` for the seed positions in groups of ``group`` (the last padded,
    :func:`padded_seed_rows`), each group put on the next device in turn; JAX dispatches asynchronously,
    so the devices solve side by side.  Returns the outputs in group order (padded rows included)."""
    devices = jax.devices()
    return [
        solve(jax.device_put(take(padded_seed_rows(start, group, seeds)), devices[index % len(devices)]))
        for index, start in enumerate(range(0, seeds, group))
    ]


def take_seeds(stacked: Any, axes: Any, rows: ArrayLike) -> Any:
    """The seeds at positions ``rows`` of items stacked by :func:`stack_over_seeds`: leaves batched over
    seeds (axis 0) taken, shared leaves (axis ``None``) kept."""
    return type(stacked)(*(leaf if axis is None else leaf[rows] for leaf, axis in zip(stacked, axes)))


def seeds_on_host(stacked: Any, axes: Any) -> Any:
    """Items stacked by :func:`stack_over_seeds` with their batched leaves copied to NumPy arrays (shared
    leaves kept), so that :func:`take_seeds` cuts groups of seeds by NumPy slicing: a JAX gather per
    leaf and group cost ~2 ms a group (16 groups at K = 100, 256 seeds)."""
    return type(stacked)(*(leaf if axis is None else np.asarray(leaf) for leaf, axis in zip(stacked, axes)))


def seed_device_count(seeds: int, work: float | None = None) -> int:
    """The devices a run of ``seeds`` seeds and ``work`` multiply-adds is split over: every visible device
    (on a CPU only from :data:`CPU_SHARD_WORK` on, and never for an unknown ``work``), but with at least 2
    seeds on each (so 2 seeds run on one device; 3 on two, padded to 4).  XLA compiles a block of a
    trajectory whose device holds a single seed differently in a run's first block and its later ones
    (1e-16 apart), so a run in time blocks would not equal its one-call run bit for bit."""
    if jax.default_backend() == "cpu" and (work is None or work < CPU_SHARD_WORK):
        return 1
    return _two_seeds_a_device(seeds, len(jax.devices()))


def _two_seeds_a_device(seeds: int, devices: int) -> int:
    """At most ``devices`` devices, and at most one for every 2 of ``seeds`` seeds (at least one)."""
    return min(devices, max(1, -(-int(seeds) // 2)))


def shard_over_seeds(
    items: tuple, item_axes: tuple, per_seed: ArrayLike, devices: int | None = None
) -> tuple[Any, jax.Array, int]:
    """``(items, per_seed, padded)``: the seed axis padded to a multiple of the device count and sharded.

    Leaves batched over seeds (axis 0) and ``per_seed`` are split over ``devices`` devices (default:
    :func:`seed_device_count` of the seeds, without a known work), at most half the seeds; shared
    leaves are replicated; ``padded`` seeds (copies of the last) are appended and must be dropped from
    the results.  On one device nothing moves and ``padded`` is 0.
    """
    per_seed = per_seed if isinstance(per_seed, jax.Array) else np.asarray(per_seed)
    seeds = per_seed.shape[0]
    count = seed_device_count(seeds) if devices is None else _two_seeds_a_device(seeds, devices)
    if count == 1:
        return items, on_device(per_seed), 0
    devices = jax.devices()[:count]
    padded = (-seeds) % count

    def pad(x):  # host arrays stay on the host: device_put then cuts them there, with no JAX program
        if not padded:
            return x
        stack = np if isinstance(x, np.ndarray) else jnp
        return stack.concatenate([x, stack.repeat(x[-1:], padded, axis=0)])

    mesh = Mesh(np.array(devices), ("seeds",))
    batched = NamedSharding(mesh, PartitionSpec("seeds"))
    replicated = NamedSharding(mesh, PartitionSpec())
    items = jax.tree_util.tree_map(
        lambda leaf, axis: jax.device_put(pad(leaf), batched) if axis == 0 else jax.device_put(leaf, replicated),
        items,
        item_axes,
    )
    return items, jax.device_put(pad(per_seed), batched), padded


def raise_if_diverged(first_nonfinite: ArrayLike, labels: list, seeds: Sequence, what: str, advice: str) -> None:
    """Raise the error of the first diverged run (``first_nonfinite`` (G, S) ≥ 0), naming its rule label,
    seed and iteration: ``rule <label> <what> at seed S, iteration T; <advice>``.  ``labels`` are the grid
    points' ``(label, point)`` pairs, ``seeds`` the run's seeds."""
    values = np.asarray(first_nonfinite)
    bad = np.argwhere(values >= 0)
    if bad.size:
        grid_index, seed_index = bad[0]
        raise PrefsimError(
            f"rule {labels[grid_index][0]!r} {what} at seed {seeds[seed_index]}, "
            f"iteration {int(values[grid_index, seed_index])}; {advice}"
        )


def regret_from_mixture_sum(
    mixture_sum: jax.Array, policy: jax.Array, rewards: jax.Array, step: int | jax.Array
) -> jax.Array:
    """Σ_{s<t}(max r − π_s·r) from the running sum Σ_{s≤t} π_s (last axis: arms; leading axes kept).

    Each π_s sums to one, so the sum over s < t equals Σ_y (Σ_{s<t} π_s(y))·(max r − r_y) with
    Σ_{s<t} π_s = ``mixture_sum − policy``.  At t = 0 it is the empty sum: 0 on a game with rewards,
    NaN (does not apply) without them, like ``suboptimality``.
    """
    weights = jnp.max(rewards, axis=-1, keepdims=True) - rewards
    earlier = jnp.sum((mixture_sum - policy) * weights, axis=-1)
    return jnp.where(step > 0, earlier, 0.0 * jnp.sum(weights, axis=-1))
