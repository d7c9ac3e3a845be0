"""Run an experiment spec: spec → games → rules → trajectories → metrics table (→ files, plots).

:func:`run` is the Python entry point (``sim.run(spec)``) and what ``prefsim run`` calls.  It returns
a pandas DataFrame with columns ``rule, seed, iteration`` and one column per metric
(:data:`sim.metrics.METRIC_COLUMNS`), one row per rule label × seed × recorded iteration.

With ``out``: the directory is checked before anything is computed and locked while the run writes
(:mod:`sim.results_io`); each ``[[rule]]`` table's results are written as soon as they are computed,
atomically and with a checksum, to ``out/parts/<label>.csv`` (parts of labels no longer in the spec are
removed; a part's fingerprint covers the spec without the other rules and the code that computes it,
see :func:`part_fingerprint` and :func:`code_identity`),
and its final policies to ``out/final_policies/<label>.npz``; with ``[run] seed_block`` each seed block
of a table is its own part, ``<label>@block-<i>`` (:class:`sim.shards.WorkPart`), and the table's rows are
its blocks' rows in the unblocked order (:func:`assemble_parts`); ``metrics.csv`` (all rows), ``bounds.csv``
(the theory bounds that apply, :mod:`sim.bounds_table`), ``headtohead.csv`` (:mod:`sim.headtohead`) and
``manifest.json`` (spec, seeds, package versions, git commit and dirty flag, the target's duality gap,
the degenerate-run warnings of :mod:`sim.diagnostics`) replace the previous files together at the end, so
a run that fails leaves the last complete results intact (the running manifest is
``parts/manifest.json``).  With ``resume=True`` a part whose spec fingerprint and checksum match is loaded
instead of recomputed, so an interrupted sweep continues where it stopped and nothing computed is lost.
Before allocating, the memory the run needs is estimated and compared with what the machine has
(:mod:`sim.limits`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from sim.bounds_table import compute_bounds, missing_bound_notes
from sim.checkpoint import TrajectoryCheckpoint, checkpoint_machine
from sim.diagnostics import absent_metrics_to_nan, report_warnings, run_warnings
from sim.game import Game
from sim.headtohead import FINAL_POLICY, column_record, headtohead_table, skipped_because, with_rule_values
from sim.limits import check_memory, describe_memory
from sim.metrics import metric_tau
from sim.point_groups import run_rule_over_points
from sim.precision import in_float64
from sim.program_cache import SourceKey
from sim.provenance import git_dirty, installed_versions, source_digest
from sim.results_io import (
    PROGRESS_SUFFIX,
    RUNNING_MANIFEST,
    check_output_directory,
    json_bytes,
    output_lock_until,
    read_manifest,
    read_part,
    remove_stale_parts,
    signals_held,
    write_files_atomic,
    write_part,
    write_run_results,
)
from sim.rules import build_rule, uses_built_in_code
from sim.sampled.experiment import SampledInputs, build_sampled_inputs, run_sampled_rule
from sim.sampled.validation import biased_loss_notes
from sim.seed_games import build_game, build_games, unregularised_targets  # noqa: F401  (re-exported)
from sim.shards import (
    WorkPart,
    check_shard,
    check_shard_count,
    check_shard_directory,
    shard_record,
    shard_work,
    work_parts,
)
from sim.shared_engine import padded_seed_rows, raise_if_diverged, take_seeds
from sim.spec import ExperimentSpec, RuleSpec, load_spec, parse_spec
from sim.spec_checks import plain_values, reads_own_problem
from sim.stats import field_values_by_rule
from sim.sweep_runs import remove_stale_points, run_field_sweep
from sim.table import order_columns, results_table
from sim.trajectory import default_record_iterations, simulate_grid

ID_COLUMNS = ("rule", "seed", "iteration")


@in_float64
def run(
    spec: ExperimentSpec | dict | str | os.PathLike,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: Callable[[str], object] | None = None,
    shard: tuple[int, int] | None = None,
    keep_locked: contextlib.ExitStack | None = None,
) -> pd.DataFrame:
    """Run ``spec`` (an :class:`ExperimentSpec`, a dict, or a path to TOML); return the metrics table.

    Args:
      spec: the experiment.
      out: optional result directory (created); see the module docstring for its contents.
      resume: reuse finished parts in ``out`` whose fingerprint matches this spec.
      progress: optional callable receiving one-line progress messages; when it has a ``stage``
        method (:class:`sim.progress.Progress`) it is also told when each part starts, and with a
        ``within`` method how far a rule run in time blocks has got (between blocks).
      shard: ``(I, N)``: run only the parts (rule tables, or seed blocks of them) of shard I of N
        (:mod:`sim.shards`); ``out`` then holds a shard directory (parts, final policies, its rows in
        ``metrics.csv`` and a manifest naming the shard) for ``prefsim merge``, and no bounds or
        head-to-head table.
      keep_locked: with ``out``, the directory's lock (:func:`sim.results_io.output_lock`) is entered into
        this stack and held until the caller closes it, not released when the run returns: ``prefsim run``
        writes ``summary.csv`` and the figures under it, so no other run can replace the results between.
        Without it the lock is held while the run writes.
    """
    if not isinstance(resume, (bool, np.bool_)):
        raise PrefsimError(f"resume: expected True or False, got {resume!r}.")
    if progress is not None and not callable(progress):
        raise PrefsimError(
            f"progress: expected None or a callable taking one message (e.g. print), got {type(progress).__name__}."
        )
    if keep_locked is not None and not isinstance(keep_locked, contextlib.ExitStack):
        raise PrefsimError(f"keep_locked: expected None or a contextlib.ExitStack, got {type(keep_locked).__name__}.")
    shard = check_shard(shard)
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    spec = parse_spec(spec)
    say = progress or (lambda message: None)
    if shard is not None:  # before anything is created: a refused count leaves no directory behind
        check_shard_count(spec, shard[1])
    parts = work_parts(spec) if shard is None or spec.points else shard_work(spec, *shard)
    estimate = check_memory(spec)
    if not spec.points:  # a sweep says what each group of points needs (sim.sweep_runs.run_field_sweep)
        say(describe_memory(estimate))
    if out is None:
        return _run_checked(spec, None, resume, say, progress, shard)
    out = check_output_directory(out, [work.name for work in parts])
    with output_lock_until(out, keep_locked):
        check_shard_directory(out, _existing_manifest(out), shard)
        return _run_checked(spec, out, resume, say, progress, shard)


def _existing_manifest(out: Path) -> dict | None:
    """The manifest (finished, else running) of result directory ``out``; ``None`` without one, or when it
    cannot be read (then it is replaced like any file of an earlier run)."""
    try:
        return read_manifest(out)
    except (PrefsimError, OSError):
        return None


class GivenWork(NamedTuple):
    """What a ``[game]`` sweep hands :func:`_run_checked` for one point of a group (:func:`run_point_group`)."""

    inputs: RunInputs
    frames: dict
    """Rule label → results frame the group computed (the point's other tables are loaded or computed)."""
    rules: tuple | None
    """The rule tables to run (a shard's), ``None``: all."""
    shard: dict | None
    """The point's manifest entry ``shard`` in a sharded sweep, else ``None``."""


class RunInputs(NamedTuple):
    """What a run computes before its rules (and ``prefsim merge`` again before writing the merged results).

    ``games``, ``game_axes`` and ``targets`` are ``None`` in a sampled run of a problem that builds its own
    preferences and targets (``run.problem`` ring or linear: ``sampled`` holds them)."""

    games: Game | None
    game_axes: Game | None
    targets: jax.Array | None
    unregularised: jax.Array | None
    sampled: SampledInputs | None
    record: np.ndarray
    manifest: dict


def prepare_run(spec: ExperimentSpec) -> RunInputs:
    """Games and targets per seed (sampled problems in sampled mode), recorded iterations and the manifest."""
    dtype = jnp.float64 if spec.precision == "float64" else jnp.float32
    if reads_own_problem(spec.run.mode, spec.run.problem):
        # the ring and the linear bandits build their own games (sim.sampled.experiment); [game] gives τ (and K)
        games = game_axes = targets = None
        target_gaps = []
    else:
        games, game_axes, targets, target_gaps = build_games(spec, dtype)
    sampled = build_sampled_inputs(spec, dtype) if spec.run.mode == "sampled" else None
    unregularised = None if sampled is not None else unregularised_targets(games, game_axes, len(spec.seeds), dtype)
    record = default_record_iterations(spec.iterations, spec.record_every)
    manifest = _manifest(spec, spec_fingerprint(spec), record, target_gaps)
    return RunInputs(games, game_axes, targets, unregularised, sampled, record, manifest)


def _run_checked(
    spec: ExperimentSpec,
    out: Path | None,
    resume: bool,
    say: Callable[[str], object],
    progress: Callable[[str], object] | None = None,
    shard: tuple[int, int] | None = None,
    given: GivenWork | None = None,
) -> pd.DataFrame:
    """:func:`run` after the checks, with ``out`` validated and locked (or None).  Warnings go through
    ``progress`` when the caller gave one, else they are Python warnings (:func:`sim.diagnostics.report_warnings`).
    ``given``: a point of a sweep's group (:func:`run_point_group`)."""
    if spec.points:  # a [game]/[run] sweep: one run per point (or group), tables combined with the swept values
        fingerprint = "+".join(spec_fingerprint(point) for point in spec.points)
        return run_field_sweep(spec, out, resume, say, progress, run_point_group, shard, fingerprint)
    started = time.time()
    inputs = prepare_run(spec) if given is None else given.inputs
    record, manifest = inputs.record, inputs.manifest
    parts = work_parts(spec) if shard is None else shard_work(spec, *shard)
    if given is not None and given.rules is not None:
        parts = work_parts(spec, given.rules)
    if shard is not None:
        manifest["shard"] = shard_record(spec, *shard)
    if given is not None and given.shard is not None:
        manifest["shard"] = given.shard
    if out is not None:
        write_files_atomic({out / RUNNING_MANIFEST: json_bytes(manifest)})
        # a shard keeps the parts of the spec's other shards (a directory that held another shard is refused)
        for path in remove_stale_parts(out, [work.name for work in work_parts(spec)]):
            say(f"removed {path}: its rule (or seed block) is no longer in the spec")
        for path in remove_stale_points(out, []) if given is None else []:  # folders of an earlier sweep's points
            say(f"removed {path}: the spec no longer sweeps [game]/[run] fields")

    frames, finals, loaded = [], [], []
    stage = getattr(say, "stage", None)  # a sim.progress.Progress shows a bar / a line per part
    for index, work in enumerate(parts):
        if stage is not None:
            stage(index, len(parts), f"running {work.name}")
        part = out / "parts" / f"{work.name}.csv" if out is not None else None
        saved_progress = out / "parts" / f"{work.name}{PROGRESS_SUFFIX}" if out is not None else None
        rule_fingerprint = part_fingerprint(spec, work.rule)
        if resume and part is not None:
            stored, reason = read_part(part, rule_fingerprint, expected_part_rows(spec, work, record))
            if stored is not None:
                say(f"{work.name}: already computed, loaded from {part}")
                saved_progress.unlink(missing_ok=True)  # left by a stop just after the part was written
                frames.append(stored)
                finals.append(load_final_policies(out, work.name, rule_fingerprint))
                loaded.append(work.name)
                continue
            if reason:
                say(f"{work.name}: recomputing: {reason}")
        tic = time.time()
        grouped = given is not None and work.name in given.frames
        if grouped:  # run_point_group has written its part already
            frame = given.frames[work.name]
            say(f"{work.name}: {len(frame)} rows, computed with the other points of its group")
        else:
            within = getattr(say, "within", None)  # a Progress also reports inside a rule run in time blocks
            blocks = None if within is None else functools.partial(within, work.name)
            checkpoint = None
            if saved_progress is not None:  # a long rule keeps its state between time blocks (sim.checkpoint)
                checkpoint = TrajectoryCheckpoint(
                    saved_progress,
                    f"{rule_fingerprint}:{work.name}:{checkpoint_machine()}",
                    resume,
                    lambda message, name=work.name: say(f"{name}: {message}"),
                )
            frame = run_part(work, spec, inputs, blocks, checkpoint)
            say(f"{work.name}: {len(frame)} rows in {time.time() - tic:.1f} s")
        if part is not None and not grouped:
            save_part(out, work.name, rule_fingerprint, frame)
            saved_progress.unlink(missing_ok=True)
        finals.append(frame.attrs.pop(FINAL_POLICY))  # out of attrs: pandas compares attrs when concatenating
        frames.append(frame)
    tables, policies = assemble_parts(parts, frames, finals)
    if loaded:  # the run's seconds are this process's: say which parts an earlier one computed
        inputs.manifest["loaded_parts"] = loaded
    sharded = shard is not None or (given is not None and given.shard is not None)
    return finish_run(spec, out, inputs, tables, policies, started, progress, sharded)


def run_point_group(
    specs: list[ExperimentSpec],
    outs: list[Path | None],
    resume: bool,
    say: Callable[[str], object],
    progress: Callable[[str], object] | None = None,
    tables: tuple[int, ...] | None = None,
    shard: list[dict] | None = None,
) -> list[pd.DataFrame]:
    """The points ``specs`` of one group of a ``[game]`` sweep (:mod:`sim.point_groups`), each written to its
    ``outs`` entry as a run of its own; return each point's table.

    Each rule table (of ``tables``, indices into the points' rules; default all) runs for the points that
    need it (all, or with ``resume`` those without a finished part) in one vmapped call, and each point's
    part of it (rows and final policies) is written to its ``outs`` entry as soon as the call returns, so an
    interruption before the group's last table loses no finished table; then each point is finished by
    :func:`_run_checked` with those frames (the other parts, ``metrics.csv``, manifest).
    ``shard``: each point's manifest entry ``shard`` in a sharded sweep.
    """
    inputs = [prepare_run(spec) for spec in specs]
    indices = range(len(specs[0].rules)) if tables is None else tables
    computed: list[dict] = [{} for _ in specs]
    for index in indices:
        needed = []
        for point, (spec, out) in enumerate(zip(specs, outs)):
            rule = spec.rules[index]
            if resume and out is not None:
                part = out / "parts" / f"{rule.label}.csv"
                expected = expected_part_rows(spec, rule, inputs[point].record)
                if read_part(part, part_fingerprint(spec, rule), expected)[0] is not None:
                    continue
            needed.append(point)
        if len(needed) > 1:  # one point alone runs as a plain run (run_rule) in _run_checked
            tic = time.time()
            rules = [specs[point].rules[index] for point in needed]
            points = [specs[p] for p in needed]
            stem = rules[0].stem or rules[0].label
            within = getattr(say, "within", None)  # a Progress reports between a long run's time blocks
            blocks = None if within is None else functools.partial(within, stem)
            checkpoint, kept_in = None, outs[needed[0]]  # a long group keeps its state in its first point
            if kept_in is not None:
                checkpoint = TrajectoryCheckpoint(
                    kept_in / "parts" / f"{rules[0].label}{PROGRESS_SUFFIX}",
                    "+".join(part_fingerprint(spec, rule) for spec, rule in zip(points, rules))
                    + f":group:{checkpoint_machine()}",
                    resume,
                    lambda message, name=stem: say(f"{name}: {message}"),
                )
            frames = run_rule_over_points(
                rules, points, [inputs[p] for p in needed], inputs[0].record, blocks, checkpoint
            )
            with signals_held():  # every point's part of the call, or none: then the group's saved progress goes
                for point, rule, frame in zip(needed, rules, frames):
                    computed[point][rule.label] = frame
                    if outs[point] is not None:
                        save_part(outs[point], rule.label, part_fingerprint(specs[point], rule), frame)
            if checkpoint is not None:
                checkpoint.path.unlink(missing_ok=True)
            say(f"{stem}: {len(needed)} points in one vmapped call, {time.time() - tic:.1f} s")
    chosen = None if tables is None else [tuple(spec.rules[i] for i in tables) for spec in specs]
    return [
        _run_checked(
            spec,
            out,
            resume,
            say,
            progress,
            given=GivenWork(
                inputs[point],
                computed[point],
                None if chosen is None else chosen[point],
                None if shard is None else shard[point],
            ),  # fmt: skip
        )
        for point, (spec, out) in enumerate(zip(specs, outs))
    ]


def run_part(
    work: WorkPart,
    spec: ExperimentSpec,
    inputs: RunInputs,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> pd.DataFrame:
    """The rows of one part: a whole rule table, or one seed block of it.

    A block runs on the whole spec's inputs cut to its seeds (:func:`block_inputs`).  A last block shorter
    than the others is padded to their size with copies of its last seed, whose rows and final policies are
    dropped, so every block of a table is a call of one compiled function (a seed's numbers do not depend on
    the seeds beside it in a call of a given size, only on that size: tests/test_shards.py checks it).
    ``progress(done, total)``: called between the time blocks of a long run (:func:`run_rule`), which keeps
    its state in ``checkpoint`` (:mod:`sim.checkpoint`)."""
    if work.block is None:
        return _run_seeds(work.rule, spec, inputs, progress, checkpoint)
    size = min(spec.run.seed_block, len(spec.seeds))
    real = work.stop - work.start
    index = padded_seed_rows(work.start, size, work.stop)
    spec = dataclasses.replace(spec, seeds=tuple(spec.seeds[i] for i in index))
    frame = _run_seeds(work.rule, spec, block_inputs(inputs, index), progress, checkpoint)
    if real == size:
        return frame
    keep = (np.arange(len(frame)) // len(inputs.record)) % size < real  # rows: grid point, seed, iteration
    finals = {label: policies[:real] for label, policies in frame.attrs[FINAL_POLICY].items()}
    frame = frame[keep].reset_index(drop=True)
    frame.attrs[FINAL_POLICY] = finals
    return frame


def _run_seeds(
    rule: RuleSpec,
    spec: ExperimentSpec,
    inputs: RunInputs,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> pd.DataFrame:
    """One rule table on the seeds of ``spec`` and ``inputs`` (exact or sampled mode) in one vmapped run."""
    if inputs.sampled is None:
        games, axes, targets, record = inputs.games, inputs.game_axes, inputs.targets, inputs.record
        return run_rule(rule, spec, games, axes, targets, record, inputs.unregularised, progress, checkpoint)
    return run_sampled_rule(rule, spec, inputs.sampled, inputs.record, progress, checkpoint)


def block_inputs(inputs: RunInputs, index: np.ndarray) -> RunInputs:
    """The inputs of the seeds at positions ``index``: leaves batched over seeds taken, shared leaves kept.
    Every block is cut from the whole spec's games, targets and keys, so a block holds exactly what the
    unblocked run gives its seeds (π*_τ of all seeds comes from one batched solve, :func:`build_games`)."""
    sampled = inputs.sampled
    if sampled is not None:
        sampled = SampledInputs(take_seeds(sampled.problems, sampled.axes, index), sampled.axes, sampled.keys[index])
    own_problem = inputs.games is None
    return inputs._replace(
        games=None if own_problem else take_seeds(inputs.games, inputs.game_axes, index),
        targets=None if own_problem else inputs.targets[index],
        unregularised=None if inputs.unregularised is None else inputs.unregularised[index],
        sampled=sampled,
    )


def assemble_parts(
    parts: Sequence[WorkPart], frames: Sequence[pd.DataFrame], finals: Sequence[dict]
) -> tuple[list[pd.DataFrame], dict]:
    """``(tables, final policies)`` from the parts' rows and final policies: one table per rule, in the order
    of ``parts``, its blocks' rows in the unblocked table's order (grid point, seed, iteration), and each grid
    label's π_T of every seed run (a rule with a block whose final policies are missing is left out)."""
    grouped: dict[str, tuple[RuleSpec, list, list]] = {}
    for work, frame, final in zip(parts, frames, finals):
        grouped.setdefault(work.rule.label, (work.rule, [], []))
        grouped[work.rule.label][1].append(frame)
        grouped[work.rule.label][2].append(final)
    tables, policies = [], {}
    for rule, blocks, block_finals in grouped.values():
        if len(blocks) == 1:
            tables.append(blocks[0])
        else:
            frame = pd.concat(blocks, ignore_index=True)
            position = {label: i for i, (label, _) in enumerate(rule.grid_labels())}
            order = np.argsort(frame["rule"].map(position).to_numpy(), kind="stable")  # blocks are in seed order
            tables.append(frame.iloc[order].reset_index(drop=True))
        if all(block_finals):
            policies.update(
                {label: np.concatenate([np.asarray(f[label]) for f in block_finals]) for label in block_finals[0]}
            )
    return tables, policies


def expected_part_rows(spec: ExperimentSpec, work: RuleSpec | WorkPart, record: np.ndarray) -> int:
    """Rows of one part: grid points × its seeds (a rule table: all the spec's) × recorded iterations."""
    if isinstance(work, WorkPart):
        return work.cost * len(record)
    return len(work.grid_labels()) * len(spec.seeds) * len(record)


def finish_run(
    spec: ExperimentSpec,
    out: Path | None,
    inputs: RunInputs,
    frames: list,
    finals: dict,
    started: float,
    progress: Callable[[str], object] | None = None,
    shard: bool = False,
) -> pd.DataFrame:
    """The table of the rule tables' ``frames`` (in spec order) with its head-to-head table, warnings and,
    with ``out``, ``metrics.csv``, ``bounds.csv``, ``headtohead.csv`` and ``manifest.json`` written together.
    A ``shard`` writes ``metrics.csv`` and ``manifest.json`` only: bounds and head-to-head need every rule."""
    manifest = inputs.manifest
    table = order_columns(absent_metrics_to_nan(pd.concat(frames, ignore_index=True)))
    if inputs.sampled is None:
        preference = seed_preferences(inputs.games.preference, inputs.game_axes.preference, len(spec.seeds))
        weights = None
    else:
        sampled = inputs.sampled
        preference = seed_preferences(sampled.problems.preference, sampled.axes.preference, len(spec.seeds))
        weights = np.asarray(sampled.problems.context_probs)
    wanted = bool(finals) and not shard
    skipped = skipped_because(len(finals), len(spec.seeds)) if wanted else None
    if wanted and skipped is None and len(finals) > 50 and progress is not None:
        progress(f"head-to-head table: {len(finals)}² pairs of rule labels over {len(spec.seeds)} seeds")
    headtohead = headtohead_table(finals, preference, weights) if wanted and skipped is None else None
    if headtohead is not None:
        headtohead = with_rule_values(headtohead, field_values_by_rule(table))
    # a shared record of plain values: pandas compares attrs when tables are concatenated, and copies them often
    table.attrs["headtohead"] = None if headtohead is None else column_record(headtohead)
    messages = run_warnings(table, spec) + ([skipped] if skipped is not None else [])
    if spec.run.mode == "sampled":
        messages += biased_loss_notes(spec.run, spec.rules)
    bounds = None
    if out is not None and not shard:
        # a float64 run's games and targets are those the bounds need: not built and solved again
        games = inputs[:3] if spec.precision == "float64" and inputs.sampled is None else None
        bounds = compute_bounds(table, spec, games)
        messages += missing_bound_notes(spec, bounds)
    report_warnings(messages, progress)
    if out is not None:
        manifest["warnings"] = messages
        manifest["seconds"] = round(time.time() - started, 3)
        manifest["complete"] = True
        write_run_results(out, table, bounds, manifest, headtohead)
    return table


def run_rule(
    rule: RuleSpec,
    spec: ExperimentSpec,
    games: Game,
    game_axes: Game,
    targets: jax.Array,
    record: np.ndarray,
    unregularised: jax.Array | None = None,
    progress: Callable[[int, int], object] | None = None,
    checkpoint: TrajectoryCheckpoint | None = None,
) -> pd.DataFrame:
    """All grid points × seeds of one ``[[rule]]`` table, vmapped and jitted (``unregularised``: π⁰ per
    seed from :func:`unregularised_targets`, or ``None`` for an empty ``kl_to_unregularised_nash``).  A
    long run goes in blocks (:func:`sim.trajectory.simulate_grid`), ``progress(updates done, T)`` between them,
    its state kept in ``checkpoint`` (:mod:`sim.checkpoint`)."""
    labels = rule.grid_labels()
    fixed = rule.fixed()
    swept_names = list(rule.swept())
    dtype = np.float64 if spec.precision == "float64" else np.float32
    grid = {name: np.array([point[name] for _, point in labels], dtype=dtype) for name in swept_names}

    def make_rule(point):
        return build_rule(rule.name, {**fixed, **point})

    cache_key = (rule.name, spec.precision, tuple(sorted((k, repr(v)) for k, v in fixed.items())))
    if uses_built_in_code(rule.name, fixed):  # its compiled programs may be kept between processes
        cache_key = SourceKey(cache_key)
    metrics, first_nonfinite = simulate_grid(
        make_rule,
        grid,
        games,
        game_axes,
        targets,
        record,
        cache_key=cache_key,
        unregularised_targets=unregularised,
        progress=progress,
        checkpoint=checkpoint,
    )
    raise_if_diverged(
        first_nonfinite,
        labels,
        spec.seeds,
        "produced non-finite values (NaN or inf) in its policy",
        f"its step is too large for {spec.precision} or a parameter is degenerate.",
    )
    frame = results_table(labels, spec.seeds, record, metrics, rule.categorical())
    return frame


def seed_preferences(preference: ArrayLike, axis: int | None, seeds: int) -> np.ndarray:
    """P of every seed, (S, K, K) or (S, M, K, K), from a leaf stacked over seeds (axis 0) or shared."""
    preference = np.asarray(preference, np.float64)
    return preference if axis == 0 else np.broadcast_to(preference, (seeds,) + preference.shape)


#: Folder of a result directory holding each rule's final policies (for the head-to-head table on --resume).
FINAL_POLICIES = "final_policies"


def save_part(out: Path, name: str, fingerprint: str, frame: pd.DataFrame) -> None:
    """Write part ``name`` of ``out``: its rows (``parts/<name>.csv``) and its final policies (from the
    frame's attrs), both or neither: a Ctrl-C or SIGTERM is acted on once both are written."""
    with signals_held():
        save_final_policies(out, name, fingerprint, frame.attrs[FINAL_POLICY])
        write_part(out / "parts" / f"{name}.csv", frame, fingerprint)


def save_final_policies(out: Path, label: str, fingerprint: str, finals: dict) -> None:
    """Store a rule's final policies (grid label → (S, K) array) atomically, tagged with its part's fingerprint."""
    buffer = io.BytesIO()
    arrays = {f"label_{i}": np.asarray(v) for i, v in enumerate(finals.values())}
    np.savez(buffer, labels=np.asarray(list(finals)), fingerprint=np.asarray(fingerprint), **arrays)
    (out / FINAL_POLICIES).mkdir(exist_ok=True)
    write_files_atomic({out / FINAL_POLICIES / f"{label}.npz": buffer.getvalue()})


def load_final_policies(out: Path, label: str, fingerprint: str) -> dict:
    """The final policies stored for a reused part; ``{}`` when missing, unreadable or from another spec
    (that rule is then left out of the head-to-head table)."""
    path = out / FINAL_POLICIES / f"{label}.npz"
    try:
        with np.load(path) as stored:
            if str(stored["fingerprint"]) != fingerprint:
                return {}
            return {str(name): stored[f"label_{i}"] for i, name in enumerate(stored["labels"])}
    except (OSError, ValueError, KeyError):
        return {}


def spec_fingerprint(spec: ExperimentSpec) -> str:
    """A hash of the spec's content, used to decide whether a stored part is still valid.

    Hashes the parsed spec (every field that affects results, defaults filled), not ``spec.raw``: an
    :class:`ExperimentSpec` built in Python has an empty ``raw``, which made every such spec share one
    fingerprint, so ``resume=True`` reused parts computed for a different spec.  The code that computes
    is part of it too (:func:`computing_code`: prefsim's version and source files, and the JAX, jaxlib and
    NumPy versions): results computed by other code, committed or not, are recomputed by ``--resume`` and
    refused by ``prefsim merge``, not reused.  The git commit and dirty flag are not: an edit to a README or
    a spec file in the checkout, or a commit that leaves the source alone, changes no result.
    """
    content = {"spec": parsed_spec(spec), "code": computing_code()}
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
    """The parsed spec (defaults filled) as plain JSON-able data, without ``[plot]`` (figures only)."""
    omitted = ("raw", "plot", "points")  # points: a [game]/[run] sweep's specs, each fingerprinted on its own
    return _plain({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in omitted})


def _plain(value):
    """JSON-ready copy of a spec value (dataclasses, tuples and NumPy arrays in full, no repr)."""
    return plain_values(value, _plain_other)


def _plain_other(value):
    """A dataclass as the dict of its fields (:func:`_plain` converts them further), anything else as its repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
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
        **{key: code_identity()[key] for key in ("git_commit", "git_dirty", "source_digest")},
        "metric_tau": metric_tau(spec.game.tau),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "complete": False,
    }


#: The packages whose versions are part of :func:`code_identity`: they compute a run's numbers.
COMPUTING_PACKAGES = ("jax", "jaxlib", "numpy")


def computing_code() -> dict:
    """The part of :func:`code_identity` that decides a run's numbers: prefsim's version, the SHA-256 of its
    source files and the versions of :data:`COMPUTING_PACKAGES` (not the git commit and dirty flag, which
    change with files that compute nothing)."""
    return {key: value for key, value in code_identity().items() if key not in ("git_commit", "git_dirty")}


def code_record() -> dict:
    """:func:`code_identity` laid out as a manifest records it (``versions`` of prefsim and
    :data:`COMPUTING_PACKAGES`, ``git_commit``, ``git_dirty``, ``source_digest``): what
    :func:`sim.provenance.code_differences` compares a manifest with."""
    code = code_identity()
    return {
        "versions": {name: code[name] for name in ("prefsim", *COMPUTING_PACKAGES)},
        **{key: code[key] for key in ("git_commit", "git_dirty", "source_digest")},
    }


@functools.cache
def code_identity() -> dict:
    """What, besides the spec, decides a run's numbers, as it is when first asked in this process: prefsim's
    version, the git commit, whether the tree has uncommitted changes (``None`` outside a git checkout),
    the SHA-256 of prefsim's source files (:func:`sim.provenance.source_digest`: uncommitted changes,
    or an installed copy's code) and the versions of :data:`COMPUTING_PACKAGES`.  Recorded in the manifest;
    :func:`computing_code`, its part without the commit and dirty flag, is part of every fingerprint
    (:func:`spec_fingerprint`)."""
    versions = package_versions()
    return {
        "prefsim": versions["prefsim"],
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "source_digest": source_digest(),
        **{name: versions[name] for name in COMPUTING_PACKAGES},
    }


def package_versions() -> dict:
    """Versions of Python, prefsim and the packages results depend on."""
    return installed_versions(("prefsim", "jax", "jaxlib", "numpy", "scipy", "pandas", "optax", "matplotlib"))


def git_commit() -> str | None:
    """The commit of the source tree prefsim runs from, if it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
