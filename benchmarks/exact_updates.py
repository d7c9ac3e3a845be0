"""Exact-mode policy updates per second: prefsim (jitted scan, metrics recorded) vs a NumPy loop.

Run from the repository root::

    python benchmarks/exact_updates.py            # full: the four (K, seeds, T) cases of issue 2
    python benchmarks/exact_updates.py --quick    # smoke run, well under a minute

For each case (K arms, S seeds, T updates) it builds the spec a user would write (a cyclic game with
τ = 0.1 and ``initial = "random"``, so the S seeds differ only in π_0 and share one P; rule ``inpo``
with η = 1, τ = 0.1), builds the games with ``sim.experiment.build_games`` and times, in the same process
and interleaved (so background load hits all of them alike):

* ``prefsim`` — :func:`sim.trajectory.simulate_grid`, the call ``sim.run`` makes: the whole
  trajectory with every metric column recorded at the default log-spaced iterations;
* ``bare`` — a jitted loop of ``rule.update`` alone (no metrics), in the trajectory's layout and on its
  devices (:func:`bare_update_function`: seed-last for K ≤ 12 on a CPU, else a ``lax.scan`` vmapped over seeds);
* ``numpy`` — the same INPO update in NumPy, vectorised over seeds: π as an (S, K) matrix and one
  matrix product with P per step (float64, the loop over t in Python);
* a NumPy checker — that loop plus every metric column at the same iterations, an independent
  implementation that prefsim's metrics and final policies must agree with (not a timed baseline).

It reports updates/s (= S·T / seconds), GFLOP/s of the products with P (2·K²·S·T / seconds),
the ratios to NumPy, metric overhead (prefsim over bare), compile time (first call minus the
steady-state time), whether the compiled program multiplies the shared P as one matrix product,
and for K ≥ 5000 the machine's matrix–vector bandwidth (P·v timed with NumPy and with JAX) and the
fraction of it the updates reach.  Results go to ``benchmarks/results/exact_updates_cpu.{json,md}``
(``--quick`` writes ``*_quick.*`` unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import glob
import importlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sim.cpu_cores import use_cpu_cores  # noqa: E402
from sim.metrics import METRIC_COLUMNS  # noqa: E402
from sim.rules import build_rule  # noqa: E402
from sim.shared_engine import shard_over_seeds, take_seeds  # noqa: E402
from sim.spec import parse_spec  # noqa: E402
from sim.trajectory import (  # noqa: E402
    SeedsMinorView,
    _compiled,
    compiler_options,
    default_record_iterations,
    seed_group,
    seeds_minor_layout,
    simulate_grid,
    trajectory_devices,
    update_with_shared_product,
    varies_by_seed,
    whole_run_schedule,
)

jax.config.update("jax_enable_x64", True)  # exact mode's float64 (importing sim changes no global setting)

run_module = importlib.import_module("sim.experiment")

#: (arms K, seeds S, iterations T) of issue 2.
FULL_CASES = ((10, 1024, 2000), (100, 1024, 2000), (1000, 64, 1000), (10000, 4, 200))
#: Same shapes scaled down for a smoke run.
QUICK_CASES = ((10, 128, 300), (100, 128, 300), (1000, 8, 100), (2000, 2, 50))
ETA = 1.0
TAU = 0.1
#: Cases with at least this many arms also measure the matrix–vector bandwidth limit.
BANDWIDTH_ARMS = 2000
#: Each repeat times prefsim and bare for at least this long each (several calls for short cases).
MIN_BLOCK_S = 1.0

TARGETS = {
    "speedup_vs_numpy_at_K_le_100": 3.0,
    "bandwidth_fraction_at_K_10000": 0.60,
    "metric_overhead_max": 0.25,
}


def benchmark_spec(arms: int, seeds: int, iterations: int) -> dict:
    """The spec a user would write for this case (P shared by all seeds, π_0 random per seed)."""
    return {
        "iterations": iterations,
        "seeds": seeds,
        "precision": "float64",
        "game": {"kind": "cyclic", "arms": arms, "strength": 1.0, "tau": TAU, "initial": "random"},
        "rule": [{"name": "inpo", "eta": ETA, "tau": TAU}],
    }


# ----------------------------------------------------------------------------------------------
# NumPy baseline: the INPO update vectorised over seeds.


def numpy_win_rates(policy, preference, out=None):
    """Row s = P_s·π_s for (S, K) policies: one ``Π @ Pᵀ`` product when P (K, K) is shared, a batched
    ``einsum`` when each seed has its own P (S, K, K)."""
    preference = np.asarray(preference)
    if preference.ndim == 3:
        return np.einsum("sjk,sk->sj", preference, policy, out=out)
    return np.matmul(policy, preference.T, out=out)


def numpy_inpo(preference, log_reference, log_initial, eta, tau, iterations):
    """INPO for S seeds at once in NumPy: ``log_initial`` (S, K) → log π_T (S, K).

    Per step: Π = exp(L) (S, K); W = Π·Pᵀ (one matrix product, row s = P·π_s; with a P per seed,
    (S, K, K), one batched ``einsum``); V = (1 − τ/η)·L + (τ/η)·log π_ref + W/η;
    L = V − max V − log Σ exp(V − max V).
    """
    step = 1.0 / eta
    weight = step * tau
    reference_term = weight * np.asarray(log_reference)
    preference = np.asarray(preference)
    logs = np.array(log_initial, dtype=np.float64, copy=True)
    policy = np.empty_like(logs)
    values = np.empty_like(logs)
    row = np.empty((logs.shape[0], 1))
    for _ in range(iterations):
        np.exp(logs, out=policy)
        numpy_win_rates(policy, preference, out=values)
        values *= step
        logs *= 1.0 - weight
        logs += reference_term
        logs += values
        np.max(logs, axis=1, keepdims=True, out=row)
        logs -= row
        np.exp(logs, out=policy)
        np.sum(policy, axis=1, keepdims=True, out=row)
        np.log(row, out=row)
        logs -= row
    return logs


def _kl_rows(log_p, log_q):
    p = np.exp(log_p)
    return np.sum(np.where(p > 0, p * (log_p - log_q), 0.0), axis=1)


def _normalize_rows(values):
    shifted = values - values.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def numpy_policy_metrics(preference, log_reference, rewards, tau, log_policy, target):
    """Every per-policy metric of :data:`sim.metrics.POLICY_METRICS` for (S, K) log-policies."""
    policy = np.exp(log_policy)
    wins = numpy_win_rates(policy, preference)
    if tau > 0:
        best_response = _normalize_rows(log_reference + wins / tau)
        gap = np.maximum(2.0 * tau * _kl_rows(log_policy, best_response), 0.0)
    else:
        gap = np.full(policy.shape[0], np.nan)
    log_target = np.log(np.where(target > 0, target, 1.0))
    return {
        "duality_gap": gap,
        "exploitability": 2.0 * wins.max(axis=1) - 1.0,
        "kl_to_nash": np.sum(np.where(target > 0, target * (log_target - log_policy), 0.0), axis=1),
        "suboptimality": np.max(rewards, axis=-1) - np.sum(policy * rewards, axis=-1),
        "tv_to_optimum": 0.5 * np.abs(policy - target).sum(axis=1),
        "max_log_ratio": np.abs(log_policy - log_reference).max(axis=1),
        # the benchmark passes no π⁰ to simulate_grid, so prefsim's column is empty (NaN) too
        "kl_to_unregularised_nash": np.full(policy.shape[0], np.nan),
    }


def numpy_inpo_with_metrics(preference, log_reference, rewards, tau_game, log_initial, targets, eta, tau, record):
    """The NumPy INPO loop plus every metric column at ``record`` (an independent check of prefsim).

    Returns column → (S, R), the same layout as one grid point of ``simulate_grid``.
    """
    preference = np.asarray(preference)
    log_reference = np.asarray(log_reference)
    rewards = np.asarray(rewards)
    targets = np.asarray(targets)
    logs = np.array(log_initial, dtype=np.float64, copy=True)
    mixture_sum = np.exp(logs)
    # Empty sum at t = 0: 0 on a Bradley–Terry game, NaN (does not apply) without rewards, as in sim.trajectory.
    regret = np.zeros(logs.shape[0]) * np.sum(np.max(rewards, axis=-1, keepdims=True) - rewards, axis=-1)
    columns = {name: [] for name in METRIC_COLUMNS}
    largest = np.abs(logs - log_reference).max(axis=1)  # max_log_ratio_so_far: every iterate, π_0 included

    def record_row(t):
        last = numpy_policy_metrics(preference, log_reference, rewards, tau_game, logs, targets)
        mixture = numpy_policy_metrics(
            preference, log_reference, rewards, tau_game, np.log(mixture_sum / (t + 1)), targets
        )
        row = dict(last)
        row["regret"] = regret.copy()
        row["max_log_ratio_so_far"] = largest.copy()
        row.update({f"{name}_mixture": value for name, value in mixture.items()})
        for name in METRIC_COLUMNS:
            columns[name].append(row[name])

    record_row(0)
    t = 0
    for target_t in record[1:]:
        for _ in range(int(target_t) - t):
            regret += np.max(rewards, axis=-1) - np.sum(np.exp(logs) * rewards, axis=-1)
            logs = numpy_inpo(preference, log_reference, logs, eta, tau, 1)
            mixture_sum += np.exp(logs)
            largest = np.maximum(largest, np.abs(logs - log_reference).max(axis=1))
        t = int(target_t)
        record_row(t)
    return {name: np.stack(values, axis=1) for name, values in columns.items()}


# ----------------------------------------------------------------------------------------------
# prefsim side.


def build_case(arms, seeds, iterations, spec=None):
    """Spec → games exactly as ``sim.run`` does; returns everything the timings need.

    ``spec`` (a spec dict with one ``inpo`` rule) replaces :func:`benchmark_spec` when given.
    """
    spec = parse_spec(spec if spec is not None else benchmark_spec(arms, seeds, iterations))
    tic = time.perf_counter()
    dtype = jnp.float32 if spec.precision == "float32" else jnp.float64  # as sim.run builds a float32 run's games
    games, game_axes, targets, _ = run_module.build_games(spec, dtype)
    setup = time.perf_counter() - tic
    record = default_record_iterations(spec.iterations, spec.record_every)
    rule_spec = spec.rules[0]
    fixed = rule_spec.fixed()

    def make_rule(point):  # as sim.experiment.run_rule builds it
        return build_rule(rule_spec.name, {**fixed, **point})

    return spec, games, game_axes, targets, record, make_rule, setup


def bare_update_function(rule, game_axes, iterations, arms):
    """jit of ``iterations`` updates of every seed with no metrics: the trajectory's updates alone.

    Compiled with the same XLA options as the trajectory (:func:`sim.trajectory.compiler_options`),
    stepping as the trajectory does (:func:`sim.trajectory.update_with_shared_product`) and in its
    layout: seed-last (:class:`sim.trajectory.SeedsMinorView`) where :func:`sim.trajectory.seeds_minor_layout`
    says so and the rule keeps it, else ``vmap`` over seeds of a plain ``lax.scan``; so that the metric
    overhead measures the metrics and nothing else.  Returns log π_T, (S, K).
    """
    per_seed = varies_by_seed(game_axes)

    def one(game):
        def step(state, _):
            return update_with_shared_product(rule, state, game), None

        state, _ = jax.lax.scan(step, rule.init(game), None, length=iterations)
        return state.log_policy

    def every_seed(games):
        view = SeedsMinorView(rule, games, game_axes)
        if not view.keeps_layout():
            return jax.vmap(one, in_axes=(game_axes,))(games)
        state = jax.lax.fori_loop(0, iterations, lambda _, state: view.update(state, None), view.init())
        return view.seed_first(state.log_policy)

    run = every_seed if per_seed and seeds_minor_layout(arms) else jax.vmap(one, in_axes=(game_axes,))
    return jax.jit(run, compiler_options=compiler_options(arms))


def shared_matrix_product_check(make_rule, games, game_axes, targets, record, seeds, arms):
    """Inspect the compiled program of ``simulate_grid``: P must be multiplied as one matrix product.

    Passes when every dot has no batch dimensions and no (S, K, K) array (P copied per seed) exists.  In
    the seed-last layout (:func:`sim.trajectory.seeds_minor_layout`, K ≤ 12 on a CPU) the updates multiply
    the one P by the seeds' columns in a fused multiply-and-sum (``seed_last_update``) and the recordings
    are the dots.
    """
    run = _compiled(make_rule, (), game_axes, None, False, arms)
    schedule = tuple(jnp.asarray(a) for a in whole_run_schedule(record))
    text = run.lower({"__none__": jnp.zeros(1)}, games, targets, None, schedule).compile().as_text()
    dots = [line.strip() for line in text.splitlines() if re.search(r"\bdot\(", line)]
    per_seed_copy = re.search(rf"\[(1,)?{seeds},{arms},{arms}\]", text) is not None
    batched = [d for d in dots if "lhs_batch_dims" in d]
    signatures = sorted({re.sub(r"%\S+ = ", "", d).split(" dot(")[0] + " = dot" for d in dots})
    seed_last = re.search(rf"= f64\[{arms},{arms},{seeds}\]\S* multiply\(", text) is not None
    return {
        "ok": bool(dots) and not batched and not per_seed_copy,
        "seed_last_update": seed_last,
        "dots": len(dots),
        "dot_output_shapes": signatures[:8],
        "dots_with_batch_dimensions": len(batched),
        "per_seed_copy_of_P": per_seed_copy,
    }


def matrix_vector_bandwidth(preference, repeats=5):
    """Best bytes/s of P·v for the game's P (float64), with NumPy and with jitted JAX.

    A P per seed (S, K, K) is multiplied by S vectors as one batched matrix–vector product: NumPy's
    ``einsum`` and ``matmul`` (the faster counts) and a jitted ``einsum``.  Products of less than
    ~20 MB are timed as a loop of calls (the time per call is the loop's mean).
    """
    matrix = np.asarray(preference)
    rng = np.random.default_rng(0)
    if matrix.ndim == 3:
        vector = rng.random(matrix.shape[:2])
        numpy_products = {
            "einsum": lambda: np.einsum("sjk,sk->sj", matrix, vector),
            "matmul": lambda: np.matmul(matrix, vector[:, :, None]),
        }
        matvec = jax.jit(lambda p, v: jnp.einsum("sjk,sk->sj", p, v))
    else:
        vector = rng.random(matrix.shape[0])
        numpy_products = {"matmul": lambda: matrix @ vector}
        matvec = jax.jit(lambda p, v: p @ v)
    device_matrix = jnp.asarray(matrix)
    device_vector = jnp.asarray(vector)
    functions = {**{f"numpy_{name}": f for name, f in numpy_products.items()}}
    functions["jax"] = lambda: matvec(device_matrix, device_vector).block_until_ready()
    if matrix.ndim == 3 and jax.device_count() > 1 and matrix.shape[0] % jax.device_count() == 0:
        # the seeds split over the devices (each core streams its own P), as prefsim runs them
        (sharded_matrix, sharded_vector), _, _ = shard_over_seeds(
            (device_matrix, device_vector), (0, 0), jnp.zeros(matrix.shape[0]), jax.device_count()
        )
        functions["jax_sharded"] = lambda: matvec(sharded_matrix, sharded_vector).block_until_ready()
    calls = max(1, int(2e7 // matrix.nbytes))
    best = {name: np.inf for name in functions}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            tic = time.perf_counter()
            for _ in range(calls):
                function()
            best[name] = min(best[name], (time.perf_counter() - tic) / calls)
    size = matrix.nbytes
    rates = {name: size / seconds for name, seconds in best.items()}
    numpy_rate = max(rate for name, rate in rates.items() if name.startswith("numpy"))
    return {
        "matrix_bytes": size,
        "numpy_bytes_per_s": numpy_rate,
        "jax_bytes_per_s": rates["jax"],
        "bytes_per_s_by_form": rates,
        "calls_per_timing": calls,
        "limit_bytes_per_s": max(rates.values()),
    }


def batched_product_check(make_rule, games, game_axes, targets, record, seeds, arms):
    """Inspect the compiled program of ``simulate_grid`` when every seed has its own P (S, K, K).

    Passes when the products with P are dots batched over the seeds and P is never copied or
    transposed as a whole (no instruction other than the dots and the parameter produces an
    (S, K, K) array), i.e. each update reads P once.  With seeds in groups (:func:`sim.trajectory.seed_group`)
    the program of one group is inspected, as ``simulate_grid`` runs every group with it.  In the
    seed-last layout (:func:`sim.trajectory.seeds_minor_layout`, K ≤ 12 on a CPU) the recordings' products
    are those dots; the updates read a (K, K, S) copy of P that each block call makes once (reported as
    ``seed_last_copies``), not a copy per update.
    """
    devices = trajectory_devices(1, seeds, arms, game_axes, int(record[-1]))  # as simulate_grid runs it
    group = seed_group(seeds, arms, games, game_axes, devices)
    if group is not None:
        games = take_seeds(games, game_axes, np.arange(group))
        targets = targets[:group]
    run = _compiled(make_rule, (), game_axes, None, False, arms)
    schedule = tuple(jnp.asarray(a) for a in whole_run_schedule(record))
    games, targets, _ = shard_over_seeds(games, game_axes, targets, devices)
    text = run.lower({"__none__": jnp.zeros(1)}, games, targets, None, schedule).compile().as_text()
    dots = [line.strip() for line in text.splitlines() if re.search(r"\bdot\(", line)]
    batched = [d for d in dots if "lhs_batch_dims" in d]
    local = int(targets.shape[0]) // len(targets.sharding.device_set)  # the program holds one device's seeds
    shape = rf"\[(1,)?{local},{arms},{arms}\]"
    copies = [
        line.strip()
        for line in text.splitlines()
        if re.search(rf"= f64{shape}", line) and not re.search(r"\b(parameter|get-tuple-element|tuple|bitcast)\(", line)
    ]
    seed_last_copy = re.compile(rf"^\s*%\S*copy\S* = f64\[{arms},{arms},{local}\]")
    seed_last = [line for line in text.splitlines() if seed_last_copy.search(line)]
    return {
        "ok": bool(batched) and not copies,
        "seed_group": group,
        "seed_last_copies": len(seed_last),
        "dots": len(dots),
        "dots_with_batch_dimensions": len(batched),
        "copies_of_P": [re.sub(r"%\S+ = ", "", c)[:160] for c in copies[:4]],
    }


def _time(function):
    tic = time.perf_counter()
    result = function()
    jax.block_until_ready(result)
    return time.perf_counter() - tic, result


def _rate_block(seconds, arms, seeds, iterations):
    return {
        "seconds": seconds,
        "updates_per_s": seeds * iterations / seconds,
        "gflops": 2.0 * arms * arms * seeds * iterations / seconds / 1e9,
    }


def run_case(arms, seeds, iterations, repeats, say=print, spec=None):
    """Time one (K, S, T) case; returns a dict of results (see the module docstring).

    ``spec`` (one ``inpo`` rule with η = 1, τ = 0.1, K arms, S seeds, T iterations) replaces
    :func:`benchmark_spec`; with a P per seed (e.g. ``kind = "random"``) the NumPy baseline multiplies
    by a batched ``einsum``, the matrix–vector bandwidth is measured in every case (batched) and the
    compiled program is checked by :func:`batched_product_check`.
    """
    load_before = os.getloadavg()
    spec, games, game_axes, targets, record, make_rule, setup = build_case(arms, seeds, iterations, spec)
    per_seed_P = game_axes.preference is not None
    rule = make_rule({})
    preference = np.asarray(games.preference)
    log_reference = np.asarray(games.log_reference)
    log_initial = np.broadcast_to(np.asarray(games.log_initial), (seeds, arms))
    measure_bandwidth = per_seed_P or arms >= BANDWIDTH_ARMS

    def prefsim_call():
        return simulate_grid(make_rule, {}, games, game_axes, targets, record)

    bare = bare_update_function(rule, game_axes, iterations, arms)
    bare_devices = trajectory_devices(1, seeds, arms, game_axes, iterations)  # the devices prefsim uses
    bare_games = shard_over_seeds(games, game_axes, targets, bare_devices)[0]

    def bare_call():
        return bare(bare_games)

    def numpy_call():
        return numpy_inpo(preference, log_reference, log_initial, ETA, TAU, iterations)

    first_prefsim, (metrics, first_nonfinite) = _time(prefsim_call)
    first_bare, bare_final = _time(bare_call)
    times = {"prefsim": [], "bare": [], "numpy": []}
    limits = []  # per repeat, for K ≥ BANDWIDTH_ARMS: the machine's P·v bandwidth right then
    numpy_final = None
    # One call of a short case (K = 10: ~0.15 s) varies by ±30% from call to call on this shared VM,
    # so each repeat times prefsim and bare over a block of ≥ MIN_BLOCK_S each: `calls` pairs,
    # back to back, the order flipping from pair to pair so that neither always runs second.
    steady = _time(prefsim_call)[0]
    calls = max(1, int(np.ceil(MIN_BLOCK_S / steady)))
    per_repeat = {"prefsim": [], "bare": []}
    functions = {"prefsim": prefsim_call, "bare": bare_call}
    for repeat in range(repeats):
        seconds, numpy_final = _time(numpy_call)
        times["numpy"].append(seconds)
        block = {"prefsim": [], "bare": []}
        for call in range(calls):
            order = ("prefsim", "bare") if (repeat * calls + call) % 2 == 0 else ("bare", "prefsim")
            for name in order:
                block[name].append(_time(functions[name])[0])
        for name, values in block.items():
            times[name].extend(values)
            per_repeat[name].append(float(np.mean(values)))
        if measure_bandwidth:
            limits.append(matrix_vector_bandwidth(preference, repeats=3))
    best = {name: min(values) for name, values in times.items()}
    # Per repeat: NumPy's one call, and prefsim's and bare's mean over the repeat's block.
    paired = {"numpy": np.asarray(times["numpy"]), **{name: np.asarray(values) for name, values in per_repeat.items()}}

    # Independent NumPy trajectory with every metric column (checks prefsim; timed once).
    numpy_metrics_seconds, numpy_metrics = _time(
        lambda: numpy_inpo_with_metrics(
            preference,
            log_reference,
            np.asarray(games.rewards),
            float(games.tau),
            log_initial,
            np.asarray(targets),
            ETA,
            TAU,
            record,
        )
    )
    agreement = compare(metrics, first_nonfinite, np.asarray(bare_final), numpy_final, numpy_metrics)

    result = {
        "arms": arms,
        "seeds": seeds,
        "iterations": iterations,
        "recorded_iterations": len(record),
        "setup_s": setup,
        "repeats": repeats,
        "calls_per_repeat": calls,
        "prefsim": {
            **_rate_block(best["prefsim"], arms, seeds, iterations),
            "seconds_all": times["prefsim"],
            "seconds_per_repeat": per_repeat["prefsim"],
            "first_call_s": first_prefsim,
            "compile_s": max(first_prefsim - best["prefsim"], 0.0),
        },
        "bare": {
            **_rate_block(best["bare"], arms, seeds, iterations),
            "seconds_all": times["bare"],
            "seconds_per_repeat": per_repeat["bare"],
            "first_call_s": first_bare,
            "compile_s": max(first_bare - best["bare"], 0.0),
        },
        "numpy": {**_rate_block(best["numpy"], arms, seeds, iterations), "seconds_all": times["numpy"]},
        "numpy_checker_seconds": numpy_metrics_seconds,
        # Ratios: median over repeats of the ratio of the adjacent timings (blocks) of one repeat (paired), so
        # that the slow drifts of a shared machine cancel; the best-of ratios are kept for reference.
        "speedup_prefsim_vs_numpy": float(np.median(paired["numpy"] / paired["prefsim"])),
        "speedup_bare_vs_numpy": float(np.median(paired["numpy"] / paired["bare"])),
        "metric_overhead": float(np.median(paired["prefsim"] / paired["bare"])) - 1.0,
        "best_of_ratios": {
            "speedup_prefsim_vs_numpy": best["numpy"] / best["prefsim"],
            "speedup_bare_vs_numpy": best["numpy"] / best["bare"],
            "metric_overhead": best["prefsim"] / best["bare"] - 1.0,
        },
        "per_seed_P": per_seed_P,
        ("batched_P_product" if per_seed_P else "shared_P_matrix_product"): (
            batched_product_check if per_seed_P else shared_matrix_product_check
        )(make_rule, games, game_axes, targets, record, seeds, arms),
        "agreement": agreement,
    }
    if measure_bandwidth:
        # The limit is measured in every repeat, next to that repeat's timings; fractions are the
        # median over repeats of (bytes read ÷ seconds) ÷ that repeat's limit.
        limit = max(limits, key=lambda entry: entry["limit_bytes_per_s"])
        repeat_limits = np.asarray([entry["limit_bytes_per_s"] for entry in limits])
        needed = preference.nbytes * iterations  # each update reads P once
        # Reads of P prefsim actually makes: one per update, plus the last recording's (each recording
        # reads P once for π_t and π̄_t, and the update after it reuses Pπ_t instead of reading P).
        with_metrics = preference.nbytes * (iterations + 1)
        limit["limit_bytes_per_s_per_repeat"] = repeat_limits.tolist()
        limit["prefsim_fraction"] = float(np.median(needed / paired["prefsim"] / repeat_limits))
        limit["bare_fraction"] = float(np.median(needed / paired["bare"] / repeat_limits))
        limit["prefsim_fraction_counting_metric_reads"] = float(
            np.median(with_metrics / paired["prefsim"] / repeat_limits)
        )
        result["bandwidth"] = limit
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    say(summary_line(result))
    return result


def check_agreement(spec: dict):
    """Run ``spec`` (one ``inpo`` rule with η, τ) through prefsim and through the NumPy checker; compare.

    Used by the smoke test on games the timed cases do not cover (e.g. Bradley–Terry, where
    ``suboptimality`` and ``regret`` are defined).
    """
    parsed, games, game_axes, targets, record, make_rule, _ = build_case(None, None, None, spec)
    parameters = parsed.rules[0].fixed()
    eta, tau = float(parameters["eta"]), float(parameters["tau"])
    metrics, first_nonfinite = simulate_grid(make_rule, {}, games, game_axes, targets, record)
    rule = make_rule({})
    preference = np.asarray(games.preference)
    bare_final = np.asarray(bare_update_function(rule, game_axes, parsed.iterations, preference.shape[0])(games))
    log_reference = np.asarray(games.log_reference)
    log_initial = np.broadcast_to(np.asarray(games.log_initial), (len(parsed.seeds), preference.shape[0]))
    numpy_final = numpy_inpo(preference, log_reference, log_initial, eta, tau, parsed.iterations)
    numpy_metrics = numpy_inpo_with_metrics(
        preference,
        log_reference,
        np.asarray(games.rewards),
        float(games.tau),
        log_initial,
        np.asarray(targets),
        eta,
        tau,
        record,
    )
    return compare(metrics, first_nonfinite, bare_final, numpy_final, numpy_metrics)


def compare(metrics, first_nonfinite, bare_final, numpy_final, numpy_metrics):
    """prefsim vs NumPy: final log-policies (bare scan vs NumPy loop) and every metric column."""
    if np.any(first_nonfinite >= 0):
        raise RuntimeError("prefsim reported a non-finite policy in the benchmark game")
    worst_column, worst = None, 0.0
    nan_mismatch = []
    for name in METRIC_COLUMNS:
        ours = np.asarray(metrics[name])[0]
        theirs = numpy_metrics[name]
        if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
            nan_mismatch.append(name)
            continue
        finite = ~np.isnan(ours)
        if finite.any():
            scale = np.maximum(np.abs(theirs[finite]), 1.0)
            error = float(np.max(np.abs(ours[finite] - theirs[finite]) / scale))
            if error >= worst:
                worst_column, worst = name, error
    final = float(np.max(np.abs(bare_final - numpy_final)))
    return {
        "final_log_policy_max_abs_diff": final,
        "metrics_max_scaled_diff": worst,
        "metrics_worst_column": worst_column,
        "nan_pattern_mismatch": nan_mismatch,
        "ok": bool(final < 1e-9 and worst < 1e-9 and not nan_mismatch),
    }


def summary_line(result):
    text = (
        f"K={result['arms']:>5} S={result['seeds']:>4} T={result['iterations']:>4}: "
        f"prefsim {result['prefsim']['updates_per_s']:.3g}/s ({result['prefsim']['gflops']:.1f} GFLOP/s), "
        f"bare {result['bare']['updates_per_s']:.3g}/s, numpy {result['numpy']['updates_per_s']:.3g}/s; "
        f"x{result['speedup_prefsim_vs_numpy']:.2f} vs numpy (bare x{result['speedup_bare_vs_numpy']:.2f}), "
        f"metrics +{100 * result['metric_overhead']:.0f}%, compile {result['prefsim']['compile_s']:.2f} s, "
        f"agree={result['agreement']['ok']}, "
        + (
            f"batched P read once={result['batched_P_product']['ok']}"
            if result["per_seed_P"]
            else f"matmul={result['shared_P_matrix_product']['ok']}"
        )
    )
    if "bandwidth" in result:
        bw = result["bandwidth"]
        text += (
            f"; P·v limit {bw['limit_bytes_per_s'] / 1e9:.1f} GB/s, prefsim {100 * bw['prefsim_fraction']:.0f}%, "
            f"bare {100 * bw['bare_fraction']:.0f}%"
        )
    return text


# ----------------------------------------------------------------------------------------------
# Environment and output.


def blas_info():
    """OpenBLAS build, the kernel it chose (core type) and its thread count, when it is OpenBLAS."""
    info = {
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    try:
        from threadpoolctl import threadpool_info

        info["threadpoolctl"] = [
            {k: entry.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for entry in threadpool_info()
        ]
        return info
    except ImportError:
        pass
    libraries = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libraries:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            corename = getattr(library, f"{prefix}get_corename{suffix}", None)
            threads = getattr(library, f"{prefix}get_num_threads{suffix}", None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                info["openblas_library"] = os.path.basename(path)
                info["openblas_corename"] = corename().decode()
                if threads is not None:
                    info["openblas_threads"] = int(threads())
                return info
    return info


def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        pass
    from importlib import metadata

    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": metadata.version("jaxlib"),
        "jax_devices": [str(d) for d in jax.devices()],
        "blas": blas_info(),
    }


def check_targets(cases):
    """Issue 2's targets, evaluated on the cases that have the named shapes."""
    small = [c for c in cases if c["arms"] <= 100]
    large = [c for c in cases if c["arms"] >= 10000]
    out = {
        "speedup_vs_numpy_at_K_le_100": {
            "target": f">= {TARGETS['speedup_vs_numpy_at_K_le_100']}x (prefsim with metrics vs NumPy update)",
            "measured": {str(c["arms"]): round(c["speedup_prefsim_vs_numpy"], 2) for c in small},
            "met": all(c["speedup_prefsim_vs_numpy"] >= TARGETS["speedup_vs_numpy_at_K_le_100"] for c in small),
        },
        "metric_overhead": {
            "target": f"<= {100 * TARGETS['metric_overhead_max']:.0f}% over the bare update",
            "measured": {str(c["arms"]): round(100 * c["metric_overhead"], 1) for c in cases},
            "met": all(c["metric_overhead"] <= TARGETS["metric_overhead_max"] for c in cases),
        },
    }
    if large:
        out["bandwidth_fraction_at_K_10000"] = {
            "target": f">= {100 * TARGETS['bandwidth_fraction_at_K_10000']:.0f}% of the measured P·v bandwidth",
            "measured": {str(c["arms"]): round(100 * c["bandwidth"]["prefsim_fraction"], 1) for c in large},
            "met": all(c["bandwidth"]["prefsim_fraction"] >= TARGETS["bandwidth_fraction_at_K_10000"] for c in large),
        }
    return out


def markdown(report):
    machine = report["machine"]
    blas = machine["blas"]
    lines = [
        f"# Exact-mode INPO updates per second ({report['mode']} run)",
        "",
        f"Measured {machine['date_utc']} on {machine['cpu']} ({machine['cores']} cores), {machine['platform']}; "
        f"jax {machine['jax']} / jaxlib {machine['jaxlib']}, numpy {machine['numpy']} "
        f"(OpenBLAS kernel {blas.get('openblas_corename', '?')}, {blas.get('openblas_threads', '?')} threads, "
        f"OPENBLAS_CORETYPE={blas.get('OPENBLAS_CORETYPE')}). float64 throughout. "
        f"Command: `{report['command']}`.",
        "",
        "updates/s = seeds × T / seconds (best single call); GFLOP/s counts the products with P only "
        "(2·K²·S·T). prefsim = `simulate_grid` with every metric recorded at the default log-spaced "
        "iterations; bare = jitted scan of `rule.update` only; NumPy = the same update vectorised over "
        "seeds (one `Π @ Pᵀ` per step). Compile = first call − steady state. Ratios (÷ NumPy, metric "
        "overhead, bandwidth fractions) are the **median over repeats of the ratio within one repeat**: "
        "each repeat times NumPy once, then prefsim and bare back to back in flipping order over a block "
        "of ≥ 1 s each (several calls for the short cases; `calls_per_repeat` in the JSON), and for "
        "K ≥ 2000 P·v, so the slow drifts of this shared machine cancel in the ratio; best-of ratios are in "
        "the JSON (`best_of_ratios`).",
        "",
        "| K | seeds | T | prefsim updates/s | GFLOP/s | bare updates/s | NumPy updates/s | prefsim ÷ NumPy "
        "| bare ÷ NumPy | metric overhead | compile (s) | agrees with NumPy | P as one matmul |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cases"]:
        lines.append(
            f"| {c['arms']} | {c['seeds']} | {c['iterations']} | {c['prefsim']['updates_per_s']:.3g} "
            f"| {c['prefsim']['gflops']:.1f} | {c['bare']['updates_per_s']:.3g} | {c['numpy']['updates_per_s']:.3g} "
            f"| {c['speedup_prefsim_vs_numpy']:.2f}× | {c['speedup_bare_vs_numpy']:.2f}× "
            f"| {100 * c['metric_overhead']:+.0f}% | {c['prefsim']['compile_s']:.2f} "
            f"| {'yes' if c['agreement']['ok'] else 'NO'} "
            f"| {'yes' if c['shared_P_matrix_product']['ok'] else 'NO'} |"
        )
    bandwidth_cases = [c for c in report["cases"] if "bandwidth" in c]
    if bandwidth_cases:
        lines += [
            "",
            "Matrix–vector bandwidth (P·v on the case's P, best of NumPy and JAX, measured in every repeat; "
            "the table shows the best) and the fraction the updates reach (median over repeats against that "
            "repeat's bandwidth), counting one read of P per update:",
            "",
            "| K | P (MB) | NumPy P·v (GB/s) | JAX P·v (GB/s) | prefsim | bare "
            "| prefsim, counting all its reads of P (T + 1) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in bandwidth_cases:
            bw = c["bandwidth"]
            lines.append(
                f"| {c['arms']} | {bw['matrix_bytes'] / 1e6:.0f} | {bw['numpy_bytes_per_s'] / 1e9:.1f} "
                f"| {bw['jax_bytes_per_s'] / 1e9:.1f} | {100 * bw['prefsim_fraction']:.0f}% "
                f"| {100 * bw['bare_fraction']:.0f}% "
                f"| {100 * bw['prefsim_fraction_counting_metric_reads']:.0f}% |"
            )
    lines += ["", "Targets (issue 2):", ""]
    for name, target in report["targets"].items():
        lines.append(
            f"- {name}: target {target['target']}; measured {target['measured']} "
            f"→ {'met' if target['met'] else 'NOT met'}"
        )
    loads = [(c["arms"], c["loadavg_before"][0], c["loadavg_after"][0]) for c in report["cases"]]
    lines += [
        "",
        "Load average (1 min) before/after each case, as a noise indicator on this shared machine: "
        + ", ".join(f"K={k}: {a:.1f}/{b:.1f}" for k, a, b in loads)
        + f". Whole run: {report['total_seconds']:.0f} s (game setup, first calls, repeats, NumPy checker).",
    ]
    busiest = max(max(a, b) for _, a, b in loads)
    if busiest > (machine["cores"] or 1):
        lines += [
            "",
            f"**Caution:** the load average reached {busiest:.1f} on {machine['cores']} cores, i.e. other processes "
            "were competing for the CPU during these timings. Absolute rates are then lower than on an idle "
            "machine, and the ratios carry more noise than on a quiet one.",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, well under a minute (a smoke run)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per variant (default 7, at most 3 for K = 10000; quick 2)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output stem (default benchmarks/results/exact_updates_cpu[_quick])"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    add_cpu_devices_argument(parser)
    args = parser.parse_args(argv)
    use_cpu_cores(args.cpu_devices)  # before JAX computes anything (as the prefsim command does)
    cases = QUICK_CASES if args.quick else FULL_CASES
    repeats = args.repeats or (2 if args.quick else 7)
    out = args.out or ROOT / "benchmarks" / "results" / (
        "exact_updates_cpu_quick" if args.quick else "exact_updates_cpu"
    )

    machine = machine_info()
    print(
        f"{machine['cpu']} ({machine['cores']} cores); OpenBLAS kernel {machine['blas'].get('openblas_corename')}; "
        f"OPENBLAS_CORETYPE={machine['blas'].get('OPENBLAS_CORETYPE')}"
    )
    started = time.perf_counter()
    results = []
    for arms, seeds, iterations in cases:
        case_repeats = repeats if arms < 10000 else min(repeats, 3)
        results.append(run_case(arms, seeds, iterations, case_repeats))
    report = {
        "mode": "quick" if args.quick else "full",
        "command": "python benchmarks/exact_updates.py" + (" --quick" if args.quick else ""),
        "machine": machine,
        "eta": ETA,
        "tau": TAU,
        "cases": results,
        "targets": check_targets(results),
        "total_seconds": time.perf_counter() - started,
    }
    for name, target in report["targets"].items():
        print(
            f"target {name}: {target['target']}; measured {target['measured']} "
            f"-> {'met' if target['met'] else 'NOT met'}"
        )
    print(f"total {report['total_seconds']:.1f} s")
    if not args.no_write:
        write_report(report, out, markdown)
    return report


def add_cpu_devices_argument(parser: argparse.ArgumentParser) -> None:
    """``--cpu-devices N``: the CPU devices JAX runs on (default: the usable cores, as ``prefsim run``;
    in a process where JAX already runs, its devices stay as they are)."""
    parser.add_argument(
        "--cpu-devices",
        default=None,
        metavar="N",
        help="CPU devices for JAX (default: the cores this process may use, as prefsim run)",
    )


def write_report(report: dict, out: Path, markdown: Callable[[dict], str]) -> None:
    """Write ``out.json`` (the report) and ``out.md`` (``markdown(report)``), creating the folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
