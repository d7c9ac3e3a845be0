"""Run an experiment spec: spec → games → rules → trajectories → metrics table (→ files, plots).

:func:`run` is the Python entry point (``sim.run(spec)``) and what ``prefsim run`` calls.  It returns
a pandas DataFrame with columns ``rule, seed, iteration`` and one column per metric
(:data:`sim.metrics.METRIC_COLUMNS`), one row per rule label × seed × recorded iteration.

With ``out``: each ``[[rule]]`` table's results are written as soon as they are computed, atomically,
to ``out/parts/<label>.csv``; ``metrics.csv`` (all rows) and ``manifest.json`` (spec, seeds, package
versions, git commit, the target's duality gap) follow.  With ``resume=True`` a part whose spec
fingerprint matches is loaded instead of recomputed, so an interrupted sweep continues where it
stopped and nothing computed is lost.
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

from bandits.games import build_game
from sim.game import game_from_instance
from sim.headtohead import FINAL_POLICY, headtohead_table
from sim.nash import target_policy, unique_unregularised_nash
from sim.precision import in_float64
from sim.rules import build_rule
from sim.sampled.experiment import build_sampled_inputs, run_sampled_rule
from sim.shared_engine import divergence_error, first_divergence, stack_over_seeds
from sim.spec import ExperimentSpec, RuleSpec, load_spec, parse_spec
from sim.table import results_table
from sim.trajectory import default_record_iterations, simulate_grid

ID_COLUMNS = ("rule", "seed", "iteration")


@in_float64
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
    out = Path(out) if out is not None else None
    if out is not None:
        (out / "parts").mkdir(parents=True, exist_ok=True)

    dtype = jnp.float64 if spec.precision == "float64" else jnp.float32
    started = time.time()
    games, game_axes, targets, target_gaps = build_games(spec, dtype)
    sampled_mode = spec.run.mode == "sampled"
    unregularised = None if sampled_mode else unregularised_targets(games, game_axes, len(spec.seeds), dtype)
    record = default_record_iterations(spec.iterations, spec.record_every)
    fingerprint = spec_fingerprint(spec)
    manifest = _manifest(spec, fingerprint, record, target_gaps)
    if out is not None:
        write_json_atomic(out / "manifest.json", manifest)

    sampled = None
    if spec.run.mode == "sampled":
        sampled = build_sampled_inputs(spec, dtype)
    frames = []
    finals = {}
    for rule in spec.rules:
        part = out / "parts" / f"{rule.label}.csv" if out is not None else None
        if resume and part is not None and _part_is_current(part, fingerprint):
            say(f"{rule.label}: already computed, loaded from {part}")
            frames.append(pd.read_csv(part, comment="#"))
            finals.update(load_final_policies(part))
            continue
        tic = time.time()
        if sampled is None:
            frame = run_rule(rule, spec, games, game_axes, targets, record, unregularised)
        else:
            frame = run_sampled_rule(rule, spec, sampled, record)
        say(f"{rule.label}: {len(frame)} rows in {time.time() - tic:.1f} s")
        if part is not None:
            write_csv_atomic(part, frame, header_comment=f"fingerprint={fingerprint}")
            save_final_policies(part, frame.attrs[FINAL_POLICY])
        finals.update(frame.attrs[FINAL_POLICY])
        frames.append(frame)

    table = pd.concat(frames, ignore_index=True)
    if sampled is None:
        preference, weights = seed_preferences(games.preference, game_axes.preference, len(spec.seeds)), None
    else:
        preference = seed_preferences(sampled.problems.preference, sampled.axes.preference, len(spec.seeds))
        weights = np.asarray(sampled.problems.context_probs)
    headtohead = headtohead_table(finals, preference, weights) if finals else None
    table.attrs["headtohead"] = headtohead
    if out is not None:
        write_csv_atomic(out / "metrics.csv", table)
        if headtohead is not None:
            write_csv_atomic(out / "headtohead.csv", headtohead)
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
    games, game_axes = stack_over_seeds(instances)
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


def unregularised_targets(games, game_axes, seeds: int, dtype=jnp.float64):
    """π⁰ per seed, shape (S, K): the unregularised Nash policy of each seed's P (from
    :func:`build_games`' games), rows of NaN where it is not unique
    (:func:`sim.nash.unique_unregularised_nash`); solved once when all seeds share one P."""
    if game_axes.preference is None:
        nash = unique_unregularised_nash(np.asarray(games.preference))
        return jnp.asarray(np.tile(nash, (seeds, 1)), dtype)
    rows = [unique_unregularised_nash(np.asarray(matrix)) for matrix in games.preference]
    return jnp.asarray(np.stack(rows), dtype)


def run_rule(
    rule: RuleSpec, spec: ExperimentSpec, games, game_axes, targets, record, unregularised=None
) -> pd.DataFrame:
    """All grid points × seeds of one ``[[rule]]`` table in one vmapped, jitted call (``unregularised``:
    π⁰ per seed from :func:`unregularised_targets`, or ``None`` for an empty ``kl_to_unregularised_nash``)."""
    labels = rule.grid_labels()
    fixed = rule.fixed()
    swept_names = list(rule.swept())
    dtype = np.float64 if spec.precision == "float64" else np.float32
    grid = {name: np.array([point[name] for _, point in labels], dtype=dtype) for name in swept_names}

    def make_rule(point):
        return build_rule(rule.name, {**fixed, **point})

    cache_key = (rule.name, spec.precision, tuple(sorted((k, repr(v)) for k, v in fixed.items())))
    metrics, first_nonfinite = simulate_grid(
        make_rule, grid, games, game_axes, targets, record, cache_key=cache_key, unregularised_targets=unregularised
    )
    diverged = first_divergence(first_nonfinite)
    if diverged is not None:
        grid_index, seed_index, iteration = diverged
        raise divergence_error(
            labels[grid_index][0],
            "produced non-finite values (NaN or inf) in its policy",
            spec.seeds[seed_index],
            iteration,
            f"its step is too large for {spec.precision} or a parameter is degenerate.",
        )
    frame = results_table(labels, spec.seeds, record, metrics)
    frame.attrs[FINAL_POLICY] = {label: metrics[FINAL_POLICY][index] for index, (label, _) in enumerate(labels)}
    return frame


def seed_preferences(preference, axis, seeds: int) -> np.ndarray:
    """P of every seed, (S, K, K) or (S, M, K, K), from a leaf stacked over seeds (axis 0) or shared."""
    preference = np.asarray(preference, np.float64)
    return preference if axis == 0 else np.broadcast_to(preference, (seeds,) + preference.shape)


def save_final_policies(part: Path, finals: dict) -> None:
    """Store a part's final policies (label → (S, K) array) beside it, atomically (``<part>.final.npz``)."""
    path = part.with_suffix(".final.npz")
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **{f"label_{i}": np.asarray(v) for i, v in enumerate(finals.values())},
                     labels=np.asarray(list(finals)))  # fmt: skip
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_final_policies(part: Path) -> dict:
    """The final policies stored beside a reused part (``{}`` when a part from an older run has none)."""
    path = part.with_suffix(".final.npz")
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        return {str(label): stored[f"label_{i}"] for i, label in enumerate(stored["labels"])}


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
    os.replace(name, path)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temporary file and ``os.replace``."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        name = handle.name
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
