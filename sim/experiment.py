"""Run an experiment spec: spec → games → rules → trajectories → metrics table (→ files, plots).

:func:`run` is the Python entry point (``sim.run(spec)``) and what ``prefsim run`` calls.  It returns
a pandas DataFrame with columns ``rule, seed, iteration`` and one column per metric
(:data:`sim.metrics.METRIC_COLUMNS`), one row per rule label × seed × recorded iteration.

With ``out``: the directory is checked before anything is computed and locked while the run writes
(:mod:`sim.results_io`); each ``[[rule]]`` table's results are written as soon as they are computed,
atomically and with a checksum, to ``out/parts/<label>.csv`` (parts of labels no longer in the spec are
removed; a part's fingerprint covers the spec without the other rules, see :func:`part_fingerprint`);
``metrics.csv`` (all rows) and ``manifest.json`` (spec, seeds, package versions, git commit,
the target's duality gap) replace the previous pair together at the end, so a run that fails leaves the
last complete results intact (the running manifest is ``parts/manifest.json``).  With ``resume=True`` a
part whose spec fingerprint and checksum match is loaded instead of recomputed, so an interrupted sweep
continues where it stopped and nothing computed is lost.  Before allocating, the memory the run needs is
estimated and compared with what the machine has (:mod:`sim.limits`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bandits.errors import PrefsimError
from bandits.games import build_game
from sim.game import Game, game_from_instance
from sim.limits import check_memory, describe_memory
from sim.metrics import METRIC_COLUMNS
from sim.nash import target_policy
from sim.results_io import (
    RUNNING_MANIFEST,
    check_output_directory,
    csv_bytes,
    json_bytes,
    output_lock,
    read_part,
    remove_stale_parts,
    write_files_atomic,
    write_part,
)
from sim.rules import build_rule
from sim.spec import ExperimentSpec, RuleSpec, load_spec, parse_spec
from sim.trajectory import default_record_iterations, simulate_grid

ID_COLUMNS = ("rule", "seed", "iteration")


def run(spec, out=None, resume: bool = False, progress=None) -> pd.DataFrame:
    """Run ``spec`` (an :class:`ExperimentSpec`, a dict, or a path to TOML); return the metrics table.

    Args:
      spec: the experiment.
      out: optional result directory (created); see the module docstring for its contents.
      resume: reuse finished parts in ``out`` whose fingerprint matches this spec.
      progress: optional callable receiving one-line progress messages.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    spec = parse_spec(spec)
    say = progress or (lambda message: None)
    say(describe_memory(check_memory(spec)))
    if out is None:
        return _run_checked(spec, None, resume, say)
    out = check_output_directory(out, [rule.label for rule in spec.rules])
    with output_lock(out):
        return _run_checked(spec, out, resume, say)


def _run_checked(spec: ExperimentSpec, out: Path | None, resume: bool, say) -> pd.DataFrame:
    """:func:`run` after the checks, with ``out`` validated and locked (or None)."""
    dtype = jnp.float64 if spec.precision == "float64" else jnp.float32
    started = time.time()
    games, game_axes, targets, target_gaps = build_games(spec, dtype)
    record = default_record_iterations(spec.iterations, spec.record_every)
    fingerprint = spec_fingerprint(spec)
    manifest = _manifest(spec, fingerprint, record, target_gaps)
    if out is not None:
        write_files_atomic({out / RUNNING_MANIFEST: json_bytes(manifest)})
        for path in remove_stale_parts(out, [rule.label for rule in spec.rules]):
            say(f"removed {path}: its rule is no longer in the spec")

    sampled = None
    if spec.run.mode == "sampled":
        from sim.sampled.experiment import build_sampled_inputs, run_sampled_rule

        sampled = build_sampled_inputs(spec, dtype)
    frames = []
    for rule in spec.rules:
        part = out / "parts" / f"{rule.label}.csv" if out is not None else None
        rule_fingerprint = part_fingerprint(spec, rule)
        if resume and part is not None:
            expected_rows = len(rule.grid_labels()) * len(spec.seeds) * len(record)
            stored, reason = read_part(part, rule_fingerprint, expected_rows)
            if stored is not None:
                say(f"{rule.label}: already computed, loaded from {part}")
                frames.append(stored)
                continue
            if reason:
                say(f"{rule.label}: recomputing: {reason}")
        tic = time.time()
        if sampled is None:
            frame = run_rule(rule, spec, games, game_axes, targets, record)
        else:
            frame = run_sampled_rule(rule, spec, sampled, record)
        say(f"{rule.label}: {len(frame)} rows in {time.time() - tic:.1f} s")
        if part is not None:
            write_part(part, frame, rule_fingerprint)
        frames.append(frame)

    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        manifest["seconds"] = round(time.time() - started, 3)
        manifest["complete"] = True
        write_files_atomic({out / "metrics.csv": csv_bytes(table), out / "manifest.json": json_bytes(manifest)})
        with contextlib.suppress(OSError):
            (out / RUNNING_MANIFEST).unlink()
    return table


def build_games(spec: ExperimentSpec, dtype=jnp.float64):
    """Games and targets per seed.

    Returns ``(games, game_axes, targets, target_gaps)``: a :class:`Game` whose leaves are stacked over
    seeds only where they differ between seeds (``game_axes`` holds 0 or None per leaf), π* per seed
    (S, K) and the duality gap each π* was solved to.  Games are built one seed at a time and a leaf
    equal to the first seed's is not kept again, so seeds sharing one game hold one K×K matrix, not S.
    """
    first = None
    per_seed = []  # per leaf: None while every seed so far equals the first, else the list of its values
    # The target depends on P, π_ref, rewards and τ only (not on π_0).
    cache = {}
    targets, gaps = [], []
    for count, seed in enumerate(spec.seeds):
        g = game_from_instance(build_game(spec.game, seed), dtype)
        if first is None:
            first = g
            per_seed = [None] * len(g)
        else:
            for index, leaf in enumerate(g):
                if per_seed[index] is not None:
                    per_seed[index].append(leaf)
                elif not np.array_equal(np.asarray(leaf), np.asarray(first[index]), equal_nan=True):
                    per_seed[index] = [first[index]] * count + [leaf]
        key = hashlib.sha256(b"".join(np.asarray(g[i]).tobytes() for i in (0, 1, 3, 4))).digest()  # not P itself
        if key not in cache:
            cache[key] = target_policy(
                g._replace(
                    preference=g.preference.astype(jnp.float64), log_reference=g.log_reference.astype(jnp.float64)
                )
            )
        targets.append(cache[key][0])
        gaps.append(cache[key][1])
        del g, key
    games = Game(*(first[i] if values is None else jnp.stack(values) for i, values in enumerate(per_seed)))
    game_axes = Game(*(None if values is None else 0 for values in per_seed))
    return games, game_axes, jnp.asarray(np.stack(targets), dtype), gaps


def run_rule(rule: RuleSpec, spec: ExperimentSpec, games, game_axes, targets, record) -> pd.DataFrame:
    """All grid points × seeds of one ``[[rule]]`` table in one vmapped, jitted call."""
    labels = rule.grid_labels()
    fixed = rule.fixed()
    swept_names = list(rule.swept())
    dtype = np.float64 if spec.precision == "float64" else np.float32
    grid = {name: np.array([point[name] for _, point in labels], dtype=dtype) for name in swept_names}

    def make_rule(point):
        return build_rule(rule.name, {**fixed, **point})

    cache_key = (rule.name, spec.precision, tuple(sorted((k, repr(v)) for k, v in fixed.items())))
    metrics, first_nonfinite = simulate_grid(make_rule, grid, games, game_axes, targets, record, cache_key=cache_key)
    bad = np.argwhere(first_nonfinite >= 0)
    if bad.size:
        grid_index, seed_index = bad[0]
        raise PrefsimError(
            f"rule {labels[grid_index][0]!r} produced non-finite values (NaN or inf) in its policy at seed "
            f"{spec.seeds[seed_index]}, iteration {int(first_nonfinite[grid_index, seed_index])}; "
            f"its step is too large for {spec.precision} or a parameter is degenerate."
        )
    return results_table(labels, spec.seeds, record, metrics)


def results_table(labels, seeds, record, metrics) -> pd.DataFrame:
    """Rows ``rule, seed, iteration`` + :data:`METRIC_COLUMNS` from arrays shaped (grid, seeds, recorded).

    ``labels`` is :meth:`RuleSpec.grid_labels` (one ``(label, point)`` per grid point).
    """
    grid_size, seed_count, recorded = metrics[METRIC_COLUMNS[0]].shape
    frame = pd.DataFrame(
        {
            "rule": np.repeat([label for label, _ in labels], seed_count * recorded),
            "seed": np.tile(np.repeat(np.asarray(seeds), recorded), grid_size),
            "iteration": np.tile(record, grid_size * seed_count),
        }
    )
    for name in METRIC_COLUMNS:
        frame[name] = metrics[name].reshape(-1)
    return frame


def spec_fingerprint(spec: ExperimentSpec) -> str:
    """A hash of the spec's content, used to decide whether a stored part is still valid.

    Hashes the parsed spec (every field that affects results, defaults filled), not ``spec.raw``: an
    :class:`ExperimentSpec` built in Python has an empty ``raw``, which made every such spec share one
    fingerprint, so ``resume=True`` reused parts computed for a different spec.  The prefsim version
    and git commit are part of it too: results computed by other code are recomputed, not reused.
    """
    content = {
        "spec": parsed_spec(spec),
        "code": {"prefsim": package_versions()["prefsim"], "git_commit": git_commit()},
    }
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def part_fingerprint(spec: ExperimentSpec, rule: RuleSpec) -> str:
    """The fingerprint of one rule's part: :func:`spec_fingerprint` of the spec with that rule alone.

    A rule's results depend on the game, seeds, iterations, recording, run settings and its own
    parameters, not on the other rules (PRNG keys are per seed), so adding or removing a rule keeps
    the other rules' parts valid for ``--resume``.
    """
    return spec_fingerprint(dataclasses.replace(spec, rules=(rule,)))


def parsed_spec(spec: ExperimentSpec) -> dict:
    """The parsed spec (defaults filled) as plain JSON-able data."""
    return _plain({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "raw"})


def _plain(value):
    """JSON-ready copy of a spec value (dataclasses, tuples and NumPy arrays in full, no repr)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _manifest(spec: ExperimentSpec, fingerprint: str, record, target_gaps) -> dict:
    return {
        "spec": spec.raw or parsed_spec(spec),
        "parsed_spec": parsed_spec(spec),
        "fingerprint": fingerprint,
        "seeds": list(spec.seeds),
        "recorded_iterations": [int(i) for i in record],
        "target_duality_gap_max": float(np.nanmax(target_gaps)) if np.any(np.isfinite(target_gaps)) else None,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "complete": False,
    }


def package_versions() -> dict:
    """Versions of prefsim and the packages results depend on."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("prefsim", "jax", "jaxlib", "numpy", "scipy", "pandas", "optax", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the source tree prefsim runs from, if it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
