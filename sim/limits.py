"""Sizes a run may have: caps on counts, and a memory estimate checked before anything is allocated.

* :data:`MAX_ITERATIONS` = 2³¹ − 1: the trajectory counts updates in 32-bit integers (the rules'
  step counters and the recording segments), so a larger T would wrap around and silently run a
  different, short experiment; a larger T is refused, not run (T = 10¹² would also take more than a
  day per rule and seed at 10⁷ updates per second, a small game on one CPU core).
* :data:`MAX_SEEDS` = 10⁶ seeds: each seed is its own game and trajectory; the spec parser would
  otherwise build a list of all of them before anything else.
* :func:`memory_estimate` — bytes a run holds at once, by part: the preference matrices P, the
  policies and state of the vmapped trajectories (``grid·B·K`` per vector, B the seeds of one call:
  ``[run] seed_block``, else all S), the recordings (``grid·B·R`` per metric, plus the table of all S
  seeds), and in sampled mode the labelled pairs of one iteration (``grid·B·N``, times the candidates a
  scheme compares per pair: :func:`_scheme_numbers`), the policy features and activations (``4·K·w`` per
  hidden layer of an MLP of width w) and the parameters of a ``log_linear`` or ``mlp`` policy
  (:data:`PARAMETER_COPIES` copies per grid point and seed of ``d``, or of ``d·w + (L − 1)·w² + (L + 1)·w + 1``
  for L hidden layers: so a thousand-layer MLP is refused here, not met by an allocation failure or a
  network XLA compiles for hours).  One seed's P holds
  ``M·K²`` numbers (M = ``run.contexts`` of a linear problem, else 1; K of a ``bt_mixture`` is the length
  of its reward vectors): P counts once when every seed shares it, and ``2·S·M·K²`` when it differs
  between seeds (the per-seed matrices and their stack: :func:`bandits.games.preference_depends_on_seed`,
  and the linear problems, drawn per seed), plus ``B·K²`` for the seed-last copy of exact mode's small
  games (K ≤ :data:`sim.trajectory.SMALL_ARMS`, :func:`sim.trajectory.simulate_seeds_block`), plus one
  float64 copy (``M·K²``) while a game is built.  Writing ``metrics.csv`` holds the text of every cell of the
  table at once (:func:`sim.results_io.csv_bytes`: one Python string per field, then the joined text), counted
  as :data:`CSV_FIELD_BYTES` per cell (``table_text``); with ``record_every = 1`` it is the largest part.  It is a
  lower bound of the peak (XLA's workspace comes on top), so a run it refuses cannot fit; :func:`check_memory`
  compares it with the memory the machine has available (``MemAvailable`` of ``/proc/meminfo``, else
  ``sysconf``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bandits.errors import PrefsimError
from bandits.games import preference_depends_on_seed
from bandits.inputs import available_memory
from sim.spec_checks import LINEAR_PROBLEMS
from sim.trajectory import SMALL_ARMS, default_record_iterations

MAX_ITERATIONS = 2**31 - 1
MAX_SEEDS = 1_000_000
#: Vectors of length K held per (grid point, seed) by an exact trajectory: log π_t, the mixture sum,
#: Pπ_t, the mixture's win rates, π*, π_ref / π_0 and a rule's extra state (APO, extragradient).
STATE_VECTORS = 8
#: Metric columns of a table (exact and sampled), counted for the recordings and the pandas table.
TABLE_COLUMNS = 20
#: Bytes per sampled pair: two arm indices, a label, the loss terms and their gradient.
PAIR_BYTES = 48
#: Bytes per cell of the results table while its CSV text is built (:func:`sim.results_io.csv_bytes`): a
#: float's 17-digit field as a Python string (49 + 17 B) and its list slot (8 B), less the cells whose field
#: is empty or one character (shared strings); ~90 B measured on an exact run's table (tests/test_memory_estimate.py).
CSV_FIELD_BYTES = 64
#: Copies of a parametric policy's parameters held per grid point and seed during an inner step: θ, its
#: gradient, the optimiser's two moments (Adam) and the previous θ (APO's extrapolation).
PARAMETER_COPIES = 5


def check_counts(iterations: int, seed_count: int) -> None:
    """Refuse iteration and seed counts that would wrap a counter or cannot be held (:class:`PrefsimError`)."""
    if iterations > MAX_ITERATIONS:
        raise PrefsimError(
            f"iterations: {iterations} is more than prefsim can run (at most {MAX_ITERATIONS} = 2³¹ − 1): the "
            "trajectory counts updates in 32-bit integers, which would wrap around; and at 10⁷ updates per second "
            f"that many would take {_duration(iterations / 1e7)} per rule and seed. Use a smaller T (rates show on a "
            "log scale: 10⁴–10⁶ iterations are usually enough)."
        )
    if seed_count > MAX_SEEDS:
        raise PrefsimError(
            f"seeds: {seed_count} seeds is more than prefsim runs at once (at most {MAX_SEEDS}); every seed is a "
            "game and a trajectory held in memory. Split the seeds over several runs (seeds = [list])."
        )


#: Inner gradient steps one seed of a sampled run may take (T × inner_steps): 10¹¹, hours at 10⁷ steps per
#: second; a jitted inner loop cannot be interrupted until its iteration ends.
MAX_INNER_STEPS_TOTAL = 10**11


def check_inner_steps(iterations: int, inner_steps: int) -> None:
    """Refuse ``inner_steps`` that would wrap the loop's 32-bit counter, or a run whose inner loops add up
    to more than :data:`MAX_INNER_STEPS_TOTAL` steps per seed (:class:`PrefsimError`)."""
    if inner_steps > MAX_ITERATIONS:
        raise PrefsimError(
            f"run.inner_steps: {inner_steps} is more than the inner loop can count (at most {MAX_ITERATIONS} = "
            "2³¹ − 1); 10²–10⁴ steps reach the loss's minimiser (use run.tolerance to stop earlier)."
        )
    total = iterations * inner_steps
    if total > MAX_INNER_STEPS_TOTAL:
        raise PrefsimError(
            f"run.inner_steps: {iterations} iterations × {inner_steps} inner steps = {total:.3g} gradient steps per "
            f"seed, more than prefsim runs (at most {MAX_INNER_STEPS_TOTAL:.0e}; at 10⁷ steps per second "
            f"{_duration(total / 1e7)}, and an iteration cannot be interrupted before it ends). Use fewer inner "
            "steps (run.tolerance stops at the minimiser) or fewer iterations."
        )


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"about {seconds / size:.3g} {unit}"
    return f"about {seconds:.3g} seconds"


def _problem(spec) -> str:
    """The sampled ``run.problem`` (``game`` in exact mode: the ``[game]`` table's)."""
    return getattr(spec.run, "problem", "game") if spec.run.mode == "sampled" else "game"


def _arms(spec) -> int:
    """K of the spec's problem (the ring's K = ring_grid², a bt_mixture's K = the length of one of its
    reward vectors), without building it."""
    if _problem(spec) == "ring":
        return int(spec.run.ring_grid) ** 2
    game = spec.game
    if game.arms is not None:
        return int(game.arms)
    if game.kind == "bt_mixture" and isinstance(game.rewards, (list, tuple)):
        first = game.rewards[0] if game.rewards else None
        return len(first) if isinstance(first, (list, tuple)) else 2
    for values in (game.preference, game.rewards):
        if isinstance(values, (list, tuple)):
            return len(values)
    return 2


def recorded_count(iterations: int, record_every: int | None) -> int:
    """len(default_record_iterations(T, k)) without building the list (0, k, 2k, …, and T)."""
    if record_every is None:
        return len(default_record_iterations(iterations))
    return iterations // record_every + 1 + (1 if iterations % record_every else 0)


def _contexts(spec) -> int:
    """M, the contexts of the problem: ``run.contexts`` for the linear problems, else 1."""
    return int(spec.run.contexts) if _problem(spec) in LINEAR_PROBLEMS else 1


def _preference_per_seed(spec) -> bool:
    """Whether P differs between seeds, so that S copies are stacked: a ``[game]`` table's P when
    :func:`bandits.games.preference_depends_on_seed` says so (what :func:`sim.seed_games.build_games`
    builds), a linear problem's always (drawn per seed), the ring's never."""
    if len(spec.seeds) < 2:
        return False
    problem = _problem(spec)
    if problem == "game":
        return preference_depends_on_seed(spec.game)
    return problem in LINEAR_PROBLEMS


def memory_estimate(spec: Any) -> dict:
    """Bytes by part (``preference``, ``policies``, ``recordings``, ``table_text``, ``pairs``, ``features``,
    ``parameters``) for ``spec``.

    ``spec`` is a parsed :class:`sim.spec.ExperimentSpec`; see the module docstring for the formulas.
    The grid is the largest ``[[rule]]`` table's (rules run one after another); with ``[run] seed_block``
    the trajectories, pairs and features are one block's (blocks run one after another), while the games
    and the results table hold every seed.
    """
    itemsize = 8 if spec.precision == "float64" else 4
    arms = _arms(spec)
    seeds = len(spec.seeds)
    block = seeds if spec.run.seed_block is None else min(seeds, int(spec.run.seed_block))
    grid = max(len(rule.grid_labels()) for rule in spec.rules)
    labels = sum(len(rule.grid_labels()) for rule in spec.rules)
    recorded = recorded_count(spec.iterations, spec.record_every)
    matrix = _contexts(spec) * arms * arms  # numbers in one seed's P: M·K²
    per_seed = _preference_per_seed(spec)
    # exact mode's small games also hold one call's P seed-last (sim.trajectory.simulate_seeds_block)
    seed_last = per_seed and spec.run.mode == "exact" and arms <= SMALL_ARMS
    estimate = {
        "preference": (2 * seeds * matrix * itemsize if per_seed else matrix * itemsize)
        + (block * arms * arms * itemsize if seed_last else 0)
        + matrix * 8,
        "policies": STATE_VECTORS * grid * block * arms * itemsize,
        "recordings": TABLE_COLUMNS * (grid * block * recorded * itemsize + 2 * labels * seeds * recorded * 8),
        "table_text": TABLE_COLUMNS * labels * seeds * recorded * CSV_FIELD_BYTES,
        "pairs": 0,
        "features": 0,
        "parameters": 0,
    }
    run = spec.run
    if run.mode == "sampled":
        pairs = int(run.offline_pairs or 0) if run.data == "offline" else int(run.pairs_per_iteration)
        estimate["pairs"] = grid * block * pairs * (PAIR_BYTES + _scheme_numbers(run) * itemsize)
        if run.policy != "tabular":
            dimension = arms if run.features == "one_hot" and run.problem == "game" else int(run.feature_dim)
            width = int(run.mlp_width) if run.policy == "mlp" else 1
            layers = int(run.mlp_hidden_layers) if run.policy == "mlp" else 1
            estimate["features"] = grid * block * (arms * dimension + 4 * arms * width * layers) * itemsize
            parameters = (
                dimension * width + (layers - 1) * width * width + (layers + 1) * width + 1
                if run.policy == "mlp"
                else dimension
            )
            estimate["parameters"] = grid * block * PARAMETER_COPIES * parameters * itemsize
    return estimate


def _scheme_numbers(run) -> int:
    """Numbers a pair scheme holds per pair while it draws one (uniforms, candidates, win-rate estimates),
    by the candidates C it compares: SPPO's pipeline 2C² + 2C, best vs second best 4C² + 4C (the judged
    probabilities, the same-response mask and two sums over C × C), the tournament and best-of-C 4C; else 0."""
    candidates = int(run.candidates)
    if run.pair_scheme == "sppo_win_rate":
        return 2 * candidates * candidates + 2 * candidates
    if run.pair_scheme == "best_second_by_win_rate":
        return 4 * candidates * candidates + 4 * candidates
    if run.pair_scheme in ("tournament", "best_worst_by_reward"):
        return 4 * candidates
    return 0


def _gib(value: float) -> str:
    return f"{value / 2**30:.3g} GiB"


def describe_memory(estimate: dict, available: int | None = None) -> str:
    """One line for progress output: the estimate's total and the memory available."""
    available = available_memory() if available is None else available
    there = f", {_gib(available)} available" if available is not None else ""
    return f"memory: at least {_gib(sum(estimate.values()))} needed{there}"


def check_memory(spec: Any, available: int | None = None) -> dict:
    """Refuse a run whose :func:`memory_estimate` exceeds the available memory; return the estimate."""
    estimate = memory_estimate(spec)
    available = available_memory() if available is None else available
    total = sum(estimate.values())
    if available is not None and total > available:
        parts = ", ".join(f"{name} {_gib(value)}" for name, value in estimate.items() if value)
        one_seed = sum(memory_estimate(_one_seed_blocks(spec)).values())
        blocks = (
            ", or set [run] seed_block to run each rule table's seeds in blocks of that many"
            if one_seed <= available
            else f" (blocks of seeds would not help: with seed_block = 1 it still needs {_gib(one_seed)})"
        )
        raise PrefsimError(
            f"memory: this run needs at least {_gib(total)} ({parts}; K = {_arms(spec)} arms, "
            f"{len(spec.seeds)} seed(s)), but the machine has {_gib(available)} available. Reduce game.arms, "
            f"the seeds, the sweep, pairs_per_iteration or the recorded iterations (record_every){blocks}."
        )
    return estimate


def _one_seed_blocks(spec: Any) -> Any:
    """``spec`` with ``[run] seed_block = 1``: the least memory blocks of seeds can give."""
    return dataclasses.replace(spec, run=dataclasses.replace(spec.run, seed_block=1))
