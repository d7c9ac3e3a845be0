"""The games of a run, one per seed, and the policies its metrics measure against.

:func:`build_games` builds every seed's game, stacks the leaves that differ between seeds (a leaf equal in
every seed is kept once, :func:`sim.shared_engine.stack_over_seeds`) and solves each seed's target π*
(τ > 0: all seeds' regularised Nash policies in one batched solve, :func:`sim.nash.regularised_targets`);
:func:`unregularised_targets` gives π⁰ per seed, certified on a thread per usable CPU from one batched
Lemke–Howson pivoting when the games are many and large, else from one linear program per seed.  Both
:mod:`sim.experiment` (the run) and :mod:`sim.theory` (the bounds of a run) read the games from here.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from bandits.games import build_game
from sim.game import Game, game_arrays
from sim.machine import usable_cores
from sim.nash import (
    LEMKE_HOWSON_MIN_ENTRIES,
    UNIQUENESS_TOLERANCE,
    UNREGULARISED_NASH_MAX_ARMS,
    condorcet_winner,
    lemke_howson_policies,
    regularised_targets,
    target_policy,
    unique_unregularised_nash,
)
from sim.precision import on_device
from sim.shared_engine import stack_over_seeds
from sim.spec import ExperimentSpec


def build_games(spec: ExperimentSpec, dtype: DTypeLike = jnp.float64) -> tuple[Game, Game, jax.Array, list[float]]:
    """Games and targets per seed.

    Returns ``(games, game_axes, targets, target_gaps)``: a :class:`Game` whose leaves are stacked over
    seeds only where they differ between seeds (``game_axes`` holds 0 or None per leaf), π* per seed
    (S, K) and the duality gap each π* was solved to.  Games are built one seed at a time and a leaf
    equal to the first seed's is not kept again, so seeds sharing one game hold one K×K matrix, not S.
    """
    stacked, game_axes = stack_over_seeds(game_arrays(build_game(spec.game, seed), dtype) for seed in spec.seeds)
    games = Game(*(on_device(leaf) for leaf in stacked))
    if float(spec.game.tau) > 0:
        # every seed's π*_τ in one batched solve (the target depends on P, π_ref, rewards and τ, not π_0)
        targets, gaps = regularised_targets(games, game_axes, len(spec.seeds))
        return games, game_axes, on_device(targets, dtype), gaps
    cache = {}
    targets, gaps = [], []
    for index in range(len(spec.seeds)):
        g = Game(*(leaf if axis is None else leaf[index] for leaf, axis in zip(games, game_axes)))
        # P, π_ref, rewards and τ: every leaf but π_0, which the target does not depend on
        key = hashlib.sha256(b"".join(np.asarray(g[i]).tobytes() for i in (0, 1, 3, 4))).digest()
        if key not in cache:
            cache[key] = target_policy(g._replace(preference=g.preference.astype(jnp.float64)))
        targets.append(cache[key][0])
        gaps.append(cache[key][1])
    return games, game_axes, on_device(np.stack(targets), dtype), gaps


def unregularised_targets(games: Game, game_axes: Game, seeds: int, dtype: DTypeLike = jnp.float64) -> jax.Array:
    """π⁰ per seed, shape (S, K): the unregularised Nash policy of each seed's P (from
    :func:`build_games`' games), rows of NaN where it is not unique
    (:func:`sim.nash.unique_unregularised_nash`); solved once when all seeds share one P."""
    if game_axes.preference is None:
        nash = unique_unregularised_nash(np.asarray(games.preference))
        return on_device(np.tile(nash, (seeds, 1)), dtype)
    # Each seed's π⁰ is certified (or its LPs solved: HiGHS and LAPACK release the GIL) on the CPUs this
    # process may use; each is deterministic and independent, so the rows are those of a serial loop.
    matrices = np.asarray(games.preference)
    candidates = lemke_howson_candidates(matrices)
    with ThreadPoolExecutor(max_workers=max(1, min(len(matrices), usable_cores()))) as pool:
        try:
            rows = list(pool.map(unique_unregularised_nash, matrices, repeat(UNIQUENESS_TOLERANCE), candidates))
        except BaseException:  # an error, Ctrl-C or SIGTERM: the seeds not started yet are dropped, not solved
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return on_device(np.stack(rows), dtype)


def lemke_howson_candidates(matrices: np.ndarray) -> list[np.ndarray | None]:
    """A candidate π⁰ per seed for :func:`sim.nash.unique_unregularised_nash`, from one batched
    :func:`sim.nash.lemke_howson_policies` of the seeds' games that have no Condorcet winner (those need
    no candidate), when they are many enough to gain (:data:`sim.nash.LEMKE_HOWSON_MIN_ENTRIES` numbers,
    K within :data:`sim.nash.UNREGULARISED_NASH_MAX_ARMS`); ``None`` for every other seed (its LP)."""
    candidates: list[np.ndarray | None] = [None] * len(matrices)
    arms = matrices.shape[-1]
    if matrices.size < LEMKE_HOWSON_MIN_ENTRIES or arms > UNREGULARISED_NASH_MAX_ARMS:
        return candidates
    open_games = [index for index, matrix in enumerate(matrices) if condorcet_winner(matrix) is None]
    if len(open_games) * arms * arms >= LEMKE_HOWSON_MIN_ENTRIES:
        for index, policy in zip(open_games, lemke_howson_policies(matrices[open_games])):
            candidates[index] = policy
    return candidates
