"""The machinery both JAX engines share: exact mode (:mod:`sim.trajectory`) and sampled mode
(:mod:`sim.sampled.engine`) each supply a function of one seed; everything around it is here, once.

* :func:`stack_over_seeds` — per-seed items (a :class:`~sim.game.Game` or a sampled
  :class:`~sim.sampled.problem.Problem`) stacked leaf by leaf, a leaf equal in every seed kept once
  (``None`` axis), so seeds that share P multiply one P;
* :func:`compile_over_grid_and_seeds` — ``vmap`` over seeds (inner) and over the swept parameter grid
  (outer), ``jit``, and one bounded cache of compiled functions, so a repeated run does not recompile;
* :func:`shard_over_seeds` — the seed axis split over the visible devices with ``jax.sharding``
  (padding to a multiple of the device count); a no-op on one device;
* :func:`first_divergence` and :func:`divergence_error` — the first (grid point, seed) whose run went
  non-finite, and the one error that names rule, seed and iteration;
* :func:`regret_from_mixture_sum` — the running regret Σ_{s<t}(max r − π_s·r) read off the running
  mixture sum, a running metric both engines record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.typing import ArrayLike

from bandits.errors import PrefsimError

#: Compiled whole-run functions kept (oldest dropped first).
COMPILED_MAX = 64
#: The one cache of compiled whole-run functions of both engines (key → jitted function).
COMPILED_RUNS: dict = {}


def stack_over_seeds(items: Iterable) -> tuple[Any, Any]:
    """``(stacked, axes)`` from one NamedTuple of arrays per seed (a list, or a generator that builds them).

    A leaf equal (NaN-aware) in every seed is kept once with axis ``None``; the others are stacked on
    a new leading axis 0.  ``axes`` is the same NamedTuple type with 0 / ``None`` per leaf (``vmap``'s
    ``in_axes``).  Items are consumed one at a time and a leaf equal to the first seed's is not kept
    again, so seeds that share one game hold one K×K matrix, not S, even while they are being built.
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
    stacked = kind(*(first[i] if values is None else jnp.stack(values) for i, values in enumerate(per_seed)))
    return stacked, kind(*(None if values is None else 0 for values in per_seed))


def compile_over_grid_and_seeds(
    one: Callable, item_axes: tuple, cache_key: Hashable, compiler_options: dict | None = None
) -> Callable:
    """``jit(vmap_grid(vmap_seeds(one)))``, cached under ``cache_key``.

    ``one(point, item, per_seed)`` runs one seed at one grid point: ``point`` a dict of scalars (the
    swept parameters), ``item`` the seed's game / problem (leaves batched where ``item_axes`` is 0),
    ``per_seed`` an array with the seed on axis 0 (exact: π*; sampled: the PRNG key).  The compiled
    function takes ``(grid, items, per_seed)`` with ``grid`` a dict of arrays of shape (G,) (a dummy
    entry ``__none__`` when nothing is swept; it is removed before ``one`` sees the point) and returns
    ``one``'s outputs with leading axes (G, S).
    """
    key = (cache_key, item_axes, compiler_options is not None)
    if key in COMPILED_RUNS:
        return COMPILED_RUNS[key]

    def without_dummy(point, item, per_seed):
        return one({k: v for k, v in point.items() if k != "__none__"}, item, per_seed)

    over_seeds = jax.vmap(without_dummy, in_axes=(None, item_axes, 0))
    compiled = jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None)), compiler_options=compiler_options)
    if len(COMPILED_RUNS) >= COMPILED_MAX:
        COMPILED_RUNS.pop(next(iter(COMPILED_RUNS)))
    COMPILED_RUNS[key] = compiled
    return compiled


def grid_arrays(grid: dict) -> dict:
    """The swept values as JAX arrays, or the dummy one-point grid when nothing is swept."""
    return {name: jnp.asarray(values) for name, values in grid.items()} or {"__none__": jnp.zeros(1)}


def shard_over_seeds(items: tuple, item_axes: tuple, per_seed: ArrayLike) -> tuple[Any, jax.Array, int]:
    """``(items, per_seed, padded)``: the seed axis padded to a multiple of the device count and sharded.

    Leaves batched over seeds (axis 0) and ``per_seed`` are split over the devices, shared leaves are
    replicated; ``padded`` seeds (copies of the last) are appended and must be dropped from the
    results.  On one device nothing moves and ``padded`` is 0.
    """
    devices = jax.devices()
    per_seed = jnp.asarray(per_seed)
    if len(devices) == 1:
        return items, per_seed, 0
    count = len(devices)
    padded = (-per_seed.shape[0]) % count

    def pad(x):
        return jnp.concatenate([x, jnp.repeat(x[-1:], padded, axis=0)]) if padded else x

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
