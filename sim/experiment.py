"""Run an experiment spec: spec → games → rules → trajectories → metrics table (→ files, plots).

:func:`run` is the Python entry point (``sim.run(spec)``) and what ``prefsim run`` calls.  It returns
a pandas DataFrame with columns ``rule, seed, iteration`` and one column per metric
(:data:`sim.metrics.METRIC_COLUMNS`), one row per rule label × seed × recorded iteration.

With ``out``: each ``[[rule]]`` table's results are written as soon as they are computed, atomically,
to ``out/parts/<label>.csv``; ``metrics.csv`` (all rows), ``bounds.csv`` (the theory bounds that apply,
:mod:`sim.bounds_table`) and ``manifest.json`` (spec, seeds, package versions, git commit, the
target's duality gap, the degenerate-run warnings of :mod:`sim.diagnostics`) follow.  With
``resume=True`` a part whose spec fingerprint matches is loaded instead of recomputed, so an
interrupted sweep continues where it stopped and nothing computed is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bandits.errors import PrefsimError
from bandits.games import build_game
from sim.bounds_file import BOUNDS_FILE
from sim.bounds_table import compute_bounds, missing_bound_notes
from sim.diagnostics import absent_metrics_to_nan, report_warnings, run_warnings
from sim.game import Game, game_from_instance
from sim.metrics import METRIC_COLUMNS
from sim.nash import target_policy
from sim.provenance import default_file_mode, git_dirty
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
      progress: optional callable receiving one-line progress messages; when it has a ``stage``
        method (:class:`sim.progress.Progress`) it is also told when each rule table starts.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    spec = parse_spec(spec)
    say = progress or (lambda message: None)
    out = Path(out) if out is not None else None
    if out is not None:
        (out / "parts").mkdir(parents=True, exist_ok=True)

    dtype = jnp.float64 if spec.precision == "float64" else jnp.float32
    started = time.time()
    games, game_axes, targets, target_gaps = build_games(spec, dtype)
    record = default_record_iterations(spec.iterations, spec.record_every)
    fingerprint = spec_fingerprint(spec)
    manifest = _manifest(spec, fingerprint, record, target_gaps)
    if out is not None:
        write_json_atomic(out / "manifest.json", manifest)

    sampled = None
    if spec.run.mode == "sampled":
        from sim.sampled.experiment import build_sampled_inputs, run_sampled_rule

        sampled = build_sampled_inputs(spec, dtype)
    frames = []
    stage = getattr(progress, "stage", None)  # a sim.progress.Progress shows a bar / a line per rule
    for index, rule in enumerate(spec.rules):
        if stage is not None:
            stage(index, len(spec.rules), f"running {rule.label}")
        part = out / "parts" / f"{rule.label}.csv" if out is not None else None
        if resume and part is not None and _part_is_current(part, fingerprint):
            say(f"{rule.label}: already computed, loaded from {part}")
            frames.append(pd.read_csv(part, comment="#"))
            continue
        tic = time.time()
        if sampled is None:
            frame = run_rule(rule, spec, games, game_axes, targets, record)
        else:
            frame = run_sampled_rule(rule, spec, sampled, record)
        say(f"{rule.label}: {len(frame)} rows in {time.time() - tic:.1f} s")
        if part is not None:
            write_csv_atomic(part, frame, header_comment=f"fingerprint={fingerprint}")
        frames.append(frame)

    table = absent_metrics_to_nan(pd.concat(frames, ignore_index=True))
    messages = run_warnings(table, spec)
    if out is not None:
        write_csv_atomic(out / "metrics.csv", table)
        bounds = compute_bounds(table, spec)
        write_csv_atomic(out / BOUNDS_FILE, bounds)
        messages += missing_bound_notes(spec, bounds)
    report_warnings(messages, progress)
    if out is not None:
        manifest["warnings"] = messages
        manifest["seconds"] = round(time.time() - started, 3)
        manifest["complete"] = True
        write_json_atomic(out / "manifest.json", manifest)
    return table


def build_games(spec: ExperimentSpec, dtype=jnp.float64):
    """Games and targets per seed.

    Returns ``(games, game_axes, targets, target_gaps)``: a :class:`Game` whose leaves are stacked over
    seeds only where they differ between seeds (``game_axes`` holds 0 or None per leaf), π* per seed
    (S, K) and the duality gap each π* was solved to.
    """
    instances = [game_from_instance(build_game(spec.game, seed), dtype) for seed in spec.seeds]
    first = instances[0]
    axes = []
    leaves = []
    for index, leaf in enumerate(first):
        same = all(np.array_equal(np.asarray(g[index]), np.asarray(leaf), equal_nan=True) for g in instances[1:])
        axes.append(None if same else 0)
        leaves.append(leaf if same else jnp.stack([g[index] for g in instances]))
    games = Game(*leaves)
    game_axes = Game(*axes)
    # The target depends on P, π_ref, rewards and τ only (not on π_0).
    cache = {}
    targets, gaps = [], []
    for g in instances:
        key = tuple(np.asarray(g[i]).tobytes() for i in (0, 1, 3, 4))
        if key not in cache:
            cache[key] = target_policy(
                g._replace(
                    preference=g.preference.astype(jnp.float64), log_reference=g.log_reference.astype(jnp.float64)
                )
            )
        targets.append(cache[key][0])
        gaps.append(cache[key][1])
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


def parsed_spec(spec: ExperimentSpec) -> dict:
    """The parsed spec (defaults filled) as plain JSON-able data, without ``[plot]`` (figures only)."""
    return _plain({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in ("raw", "plot")})


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


def _part_is_current(path: Path, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip() == f"# fingerprint={fingerprint}"


def write_csv_atomic(path: Path, frame: pd.DataFrame, header_comment: str | None = None) -> None:
    """Write a CSV via a temporary file and ``os.replace`` (never a half-written file)."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        if header_comment:
            handle.write(f"# {header_comment}\n")
        frame.to_csv(handle, index=False, float_format="%.17g")
        name = handle.name
    os.chmod(name, default_file_mode())  # tempfile creates 0600; give the user's umask instead
    os.replace(name, path)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temporary file and ``os.replace``."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        name = handle.name
    os.chmod(name, default_file_mode())
    os.replace(name, path)


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
        "git_dirty": git_dirty(),
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
