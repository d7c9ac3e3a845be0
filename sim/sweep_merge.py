"""``prefsim merge`` of a sharded ``[game]``/``[run]`` sweep, and the dispatch of ``prefsim merge``.

A sweep is sharded by units of (group of points × ``[[rule]]`` table), one vmapped call each
(:func:`sim.sweep_runs.sweep_plan`); a shard directory holds ``points/<p>/`` with the parts of its units
and a top-level manifest whose ``shard`` entry lists them.  :func:`merge_sweep_shards` checks the shards
as :mod:`sim.merge` does (finished, same fingerprint and shard count, each index once, each holding the
units the plan gives it, every part valid), then writes each point's folder with the code that ends a
run (:func:`sim.experiment.finish_run`: its ``metrics.csv``, bounds, head-to-head and manifest) and the
top-level files with the code that ends a sweep (:func:`sim.sweep_runs.combine_points`).  A unit's
numbers come from one vmapped call over the same points in the shard as in the unsharded sweep, so the
merged ``metrics.csv``, ``bounds.csv`` and ``headtohead.csv`` are the unsharded sweep's, byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bandits.errors import PrefsimError
from sim import merge
from sim.experiment import (
    FINAL_POLICIES,
    assemble_parts,
    finish_run,
    prepare_run,
    spec_fingerprint,
)
from sim.field_sweep import point_name
from sim.point_plan import point_groups
from sim.precision import in_float64
from sim.results_io import (
    check_output_directory,
    output_lock_until,
    read_json_object,
    remove_stale_parts,
    write_files_atomic,
)
from sim.shards import order_shards, work_parts
from sim.spec import ExperimentSpec, parse_spec
from sim.sweep_runs import POINTS_DIR, combine_points, remove_stale_points, sweep_plan, sweep_shard_record


def is_sweep_shard(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds (the manifest of) a shard of a ``[game]``/``[run]`` sweep."""
    manifest = read_json_object(Path(directory) / "manifest.json")
    shard = manifest.get("shard") if manifest is not None else None
    return isinstance(shard, dict) and shard.get("points") is True


def merge_shards(
    directories: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    progress: Callable[[str], object] | None = None,
    keep_locked: contextlib.ExitStack | None = None,
) -> tuple[pd.DataFrame, ExperimentSpec]:
    """``prefsim merge``: :func:`merge_sweep_shards` for a sweep's shards, else :func:`sim.merge.merge_shards`
    (``keep_locked``: as there, ``out``'s lock is held until the caller closes this stack)."""
    if directories and is_sweep_shard(directories[0]):
        return merge_sweep_shards(directories, out, progress, keep_locked)
    return merge.merge_shards(directories, out, progress, keep_locked)


def check_sweep_shards(directories: Sequence[str | os.PathLike]) -> tuple[ExperimentSpec, list[Path], str]:
    """``(spec, shard directory per shard index, fingerprint)`` after the checks of the module docstring."""
    paths = [Path(d) for d in directories]
    manifests = [merge.shard_manifest(path) for path in paths]
    first, reference = paths[0], manifests[0]
    for path, manifest in zip(paths, manifests):
        if manifest["shard"].get("points") is not True:
            raise PrefsimError(
                f"{str(path)!r} is a shard of a spec without a [game]/[run] sweep, and {str(first)!r} a shard of a "
                "sweep; merge the shards of one spec."
            )
    merge.check_same_split(paths, manifests)
    spec = parse_spec(reference["spec"])
    fingerprint = "+".join(spec_fingerprint(point) for point in spec.points)
    if fingerprint != reference.get("fingerprint"):
        raise PrefsimError(merge.other_code_message(reference, "their sweep's fingerprint"))
    count = int(reference["shard"]["count"])
    records = [sweep_shard_record(spec, index, count) for index in range(count)]
    for path, manifest in zip(paths, manifests):
        index = int(manifest["shard"]["index"])
        if manifest["shard"].get("units") != records[index]["units"]:
            raise PrefsimError(
                f"{str(path)!r} does not hold the units of shard {index}/{count} that this prefsim plans; it was not "
                "written by this prefsim's `--shard`."
            )
    ordered = order_shards(
        [(path, int(manifest["shard"]["index"])) for path, manifest in zip(paths, manifests)],
        count,
        lambda i: f"{len(records[i]['units'])} unit(s) of group × rule table",
        "`prefsim run SPEC --out DIR --shard I/N`",
    )
    return spec, ordered, fingerprint


@in_float64
def merge_sweep_shards(
    directories: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    progress: Callable[[str], object] | None = None,
    keep_locked: contextlib.ExitStack | None = None,
) -> tuple[pd.DataFrame, ExperimentSpec]:
    """Merge the shards of a sweep into ``out``; return the merged table and the spec (``keep_locked``: as
    :func:`sim.merge.merge_shards`)."""
    say = progress or (lambda message: None)
    spec, shards, fingerprint = check_sweep_shards(directories)
    out_path = merge.merge_target(out, shards)
    started = time.time()
    groups = point_groups(spec)
    group_of = {point: number for number, members in enumerate(groups) for point in members}
    owner = {unit: shards[index] for index, units in enumerate(sweep_plan(spec, len(shards))) for unit in units}
    names = [point_name(point.point) for point in spec.points]
    merged_from = merge.merged_from(shards)
    out_path = check_output_directory(out_path)
    tables = []
    with output_lock_until(out_path, keep_locked):
        for stale in remove_stale_points(out_path, names):
            say(f"removed {stale}: its point is not in the spec's sweep")
        for stale in remove_stale_parts(out_path, []):  # a run without sweeps wrote its parts at the top
            say(f"removed {stale}: the spec sweeps, and each point keeps its parts in its folder")
        for number, (name, point_spec) in enumerate(zip(names, spec.points)):
            inputs = prepare_run(point_spec)
            parts, frames, finals, copies = [], [], [], {}
            for table, rule in enumerate(point_spec.rules):
                directory = owner[(group_of[number], table)] / POINTS_DIR / name
                for work in work_parts(point_spec, [rule]):  # the table, or its seed blocks ([run] seed_block)
                    frame, stored, files = merge.read_shard_part(directory, point_spec, work, inputs.record)
                    parts.append(work)
                    frames.append(frame)
                    finals.append(stored)
                    copies.update(files)
            names_of_parts = [work.name for work in parts]
            point_out = check_output_directory(out_path / POINTS_DIR / name, names_of_parts)
            remove_stale_parts(point_out, names_of_parts)
            (point_out / FINAL_POLICIES).mkdir(exist_ok=True)
            write_files_atomic({point_out / path: data for path, data in copies.items()})
            inputs.manifest["merged_from"] = merged_from
            rule_tables, policies_by_label = assemble_parts(parts, frames, finals)
            tables.append(finish_run(point_spec, point_out, inputs, rule_tables, policies_by_label, started, progress))
            say(f"{name}: {len(point_spec.rules)} rule table(s) merged")
        table = combine_points(spec, out_path, tables, started, fingerprint, extra={"merged_from": merged_from})
    return table, spec
