"""Running a sweep over ``[game]``/``[run]`` fields: one complete run per point, tables combined.

Points run a group at a time (:mod:`sim.point_groups`: one vmapped call per group × rule table, a
*unit*); a sharded sweep (``--shard I/N``) runs the units :func:`sweep_plan` deals to shard I, and
:mod:`sim.sweep_merge` puts the shards back together.

The spec side (which fields, the points, the labels) is :mod:`sim.field_sweep`; this module runs the
points of a parsed spec (:attr:`sim.spec.ExperimentSpec.points`) with the runner of one spec that
:mod:`sim.experiment` passes in, and writes the combined files: ``metrics.csv``, ``bounds.csv`` and
``headtohead.csv`` with one column per swept field (``game.arms``, ``run.pair_scheme``) after
``iteration`` / ``rule`` / ``rule_b``, and ``manifest.json`` (the first point's provenance, the spec
as given, ``field_sweep``, ``points``, every point's warnings prefixed by its name, and
``metric_tau``: which τ each metric is scored at).  Point ``p`` runs in ``out/points/<p>/``, a
complete result directory of its own, so ``--resume`` reuses each point's finished parts; point
folders of an earlier sweep that the spec no longer has are removed, like stale parts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bandits.errors import PrefsimError
from sim.bounds_file import BOUND_COLUMNS, read_bounds
from sim.diagnostics import WARNING_PREFIX, few_seeds, plot_metric_warnings, report_warnings
from sim.field_sweep import point_name
from sim.headtohead import column_record
from sim.limits import check_memory, describe_memory
from sim.metrics import metric_tau
from sim.point_plan import check_sweep_shard_count, point_groups
from sim.results_io import (
    RUNNING_MANIFEST,
    check_output_directory,
    json_bytes,
    read_manifest,
    remove_stale_parts,
    write_files_atomic,
    write_run_results,
)
from sim.shards import deal, work_parts
from sim.spec import ExperimentSpec
from sim.table import order_columns

#: Folder of a result directory holding one complete run per point of a [game]/[run] sweep.
POINTS_DIR = "points"


def with_point_columns(frame: pd.DataFrame, point: Sequence[tuple[str, Any]], after: str) -> pd.DataFrame:
    """``frame`` with one column per swept field (its value at ``point``), inserted after column ``after``."""
    frame = frame.copy()
    frame.attrs = {}
    position = list(frame.columns).index(after) + 1 if after in frame.columns else len(frame.columns)
    for offset, (field, value) in enumerate(point):
        frame.insert(position + offset, field, [value] * len(frame))
    return frame


# ----------------------------------------------------------------------------------------------
# running the points


def sweep_units(spec: ExperimentSpec) -> list[tuple[int, int]]:
    """The units of work of a sweep, ``(group, rule table)``: one vmapped call each (group order, then tables)."""
    return [(group, table) for group in range(len(point_groups(spec))) for table in range(len(spec.rules))]


def sweep_plan(spec: ExperimentSpec, count: int) -> list[list[tuple[int, int]]]:
    """The units of each of ``count`` shards, dealt by cost (points × grid points) with :func:`sim.shards.deal`."""
    groups = point_groups(spec)
    units = sweep_units(spec)
    check_sweep_shard_count(spec, count)
    costs = [len(groups[g]) * len(spec.points[groups[g][0]].rules[t].grid_labels()) for g, t in units]
    return [[units[i] for i in chosen] for chosen in deal(costs, count)]


def sweep_shard_record(spec: ExperimentSpec, index: int, count: int) -> dict:
    """The top-level manifest entry ``shard`` of shard ``index`` of a sweep: its units by point names and rule stems."""
    groups = point_groups(spec)
    names = [point_name(point.point) for point in spec.points]
    units = sweep_plan(spec, count)[index]
    return {
        "index": index,
        "count": count,
        "units": [[[names[i] for i in groups[g]], spec.rules[t].stem or spec.rules[t].label] for g, t in units],
        "labels": [],
        "points": True,
    }


def run_field_sweep(
    spec: ExperimentSpec,
    out: Path | None,
    resume: bool,
    say: Callable[[str], object],
    progress: Callable[[str], object] | None,
    run_group: Callable[..., list[pd.DataFrame]],
    shard: tuple[int, int] | None = None,
    fingerprint: str = "",
) -> pd.DataFrame:
    """Run every point of ``spec.points``, a group of points at a time (:func:`sim.point_groups.point_groups`)
    with ``run_group`` (:func:`sim.experiment.run_point_group`); return the combined table.

    ``out`` (validated and locked by the caller) receives ``points/<point>/`` per point and the
    combined files of the module docstring, replaced together at the end.  ``shard = (I, N)``: only the
    units (group × rule table) of shard I (:func:`sweep_plan`); ``out`` then holds a shard for ``prefsim merge``.
    ``fingerprint``: the sweep's (its points' spec fingerprints joined by ``+``), written to the manifest.
    The memory of every group it runs is checked (:func:`group_memory`) before anything is written or run.
    """
    started = time.time()
    names = [point_name(point.point) for point in spec.points]
    groups = point_groups(spec)
    mine = None if shard is None else sweep_plan(spec, shard[1])[shard[0]]
    # each group's rule tables this process runs (None: all of them); a shard may run none of a group's
    chosen_tables = [
        None if mine is None else tuple(t for g, t in mine if g == number) for number in range(len(groups))
    ]
    to_run = [number for number, chosen in enumerate(chosen_tables) if chosen != ()]
    # every group this process runs is checked before anything is written or run: a group that cannot fit is
    # refused at the start, not after the groups before it have run
    memory = {number: group_memory(spec, groups, number, names) for number in to_run}
    if out is not None:
        running = _sweep_fields(spec, names, complete=False)
        if shard is not None:
            running["shard"] = sweep_shard_record(spec, *shard)
        write_files_atomic({out / RUNNING_MANIFEST: json_bytes(running)})
        for stale in remove_stale_points(out, names):
            say(f"removed {stale}: its point is no longer in the spec's sweep")
        for stale in remove_stale_parts(out, []):  # a run without sweeps wrote its parts at the top
            say(f"removed {stale}: the spec now sweeps, and each point keeps its parts in its folder")
    calls = len(groups) * len(spec.rules) if mine is None else len(mine)
    say(f"sweep: {len(names)} point(s) in {len(groups)} group(s), {calls} vmapped call(s) (group × rule table)")
    report_warnings(sweep_warnings(spec), progress)  # said once for the sweep, not by each point
    tables: list = [None] * len(names)
    point_warnings = PointWarnings(progress, names)  # said once each at the end, with the points they hold at
    for number in to_run:
        members, chosen = groups[number], chosen_tables[number]
        say(f"sweep group {number + 1}/{len(groups)}: {', '.join(names[i] for i in members)}")
        say(memory[number])
        outs, entries = [], []
        for i in members:
            point_spec = spec.points[i]
            rules = point_spec.rules if chosen is None else [point_spec.rules[t] for t in chosen]
            entries.append(
                None if shard is None else {"index": shard[0], "count": shard[1], "labels": [r.label for r in rules]}
            )
            if out is not None:
                parts = [work.name for work in work_parts(point_spec, rules)]  # label@block-i with seed_block
                outs.append(check_output_directory(out / POINTS_DIR / names[i], parts))
            else:
                outs.append(None)
        results = run_group([spec.points[i] for i in members], outs, resume, say, point_warnings, chosen,
                            None if shard is None else entries)  # fmt: skip
        for i, table in zip(members, results):
            tables[i] = table
    record = None if shard is None else sweep_shard_record(spec, *shard)
    table = combine_points(spec, out, tables, started, fingerprint, record)
    report_warnings(point_warnings.merged(), progress)
    report_warnings(plot_metric_warnings(table, spec.plot), progress)  # of the combined table: once, at the end
    return table


def group_memory(spec: ExperimentSpec, groups: Sequence[tuple[int, ...]], number: int, names: Sequence[str]) -> str:
    """The memory line of group ``number`` (:func:`sim.limits.describe_memory`), or an error naming its points
    when it needs more memory than the machine has (:func:`sim.limits.check_memory`).  A group of several
    points runs their point × seed games as one batch, so it is estimated as that many seeds."""
    members = groups[number]
    try:
        for i in members:
            estimate = check_memory(spec.points[i])
        if len(members) == 1:
            return describe_memory(estimate)
        batch = dataclasses.replace(spec.points[members[0]], seeds=tuple(range(len(members) * len(spec.seeds))))
        return f"group of {len(members)} points × {len(spec.seeds)} seeds: {describe_memory(check_memory(batch))}"
    except PrefsimError as exc:
        raise PrefsimError(
            f"sweep group {number + 1}/{len(groups)} ({', '.join(names[i] for i in members)}): {exc}"
        ) from None


def sweep_warnings(spec: ExperimentSpec) -> list[str]:
    """The warnings about the whole sweep (its points do not repeat them): too few seeds."""
    few = few_seeds(len(spec.seeds))
    return [] if few is None else [few]


class PointWarnings:
    """The warnings of a sweep's points, kept until the sweep ends and then said once each with the points
    they hold at (:meth:`merged`), instead of once per point with only the point's values changed.

    Called like the ``progress`` it wraps (``None``: warnings become Python warnings at the end and other
    messages are dropped), it keeps messages starting ``warning: `` and passes the rest on; other
    attributes (a :class:`sim.progress.Progress`'s ``stage``, ``within``) are the wrapped object's.  The
    messages kept are those :func:`sim.diagnostics.report_warnings` says (its :data:`WARNING_PREFIX`)."""

    def __init__(self, progress: Callable[[str], object] | None, names: Sequence[str]) -> None:
        self.progress, self.names = progress, list(names)
        self.said: dict[str, list[str]] = {}  # the message without its point's values → those points' names

    def __call__(self, message: str) -> None:
        if not message.startswith(WARNING_PREFIX):
            if self.progress is not None:
                self.progress(message)
            return
        text, points = message[len(WARNING_PREFIX) :], []
        for name in self.names:  # a label ``mmd[eta=2,game.arms=4]`` of point game.arms=4 → ``mmd[eta=2]``
            stripped = text
            for before, after in ((f"[{name}]", ""), (f"[{name},", "["), (f",{name}]", "]"), (f",{name},", ",")):
                stripped = stripped.replace(before, after)
            if stripped != text:
                text = stripped
                points.append(name)
        found = self.said.setdefault(text, [])
        found.extend(point for point in points if point not in found)

    def __getattr__(self, name: str) -> Any:
        if self.progress is None:
            raise AttributeError(name)
        return getattr(self.progress, name)

    def merged(self) -> list[str]:
        """Each kept message once: ``at every point of the sweep: <message>`` or ``at <point>; <point>:
        <message>`` where its labels named points, as it was said where they named none."""
        out = []
        for text, points in self.said.items():
            if not points:
                out.append(text)
            elif len(points) == len(self.names) > 1:
                out.append(f"at every point of the sweep: {text}")
            else:
                out.append(f"at {'; '.join(p for p in self.names if p in points)}: {text}")
        return out


def combine_points(
    spec: ExperimentSpec,
    out: Path | None,
    tables: Sequence,
    started: float,
    fingerprint: str,
    shard: dict | None = None,
    extra: dict | None = None,
) -> pd.DataFrame:
    """The combined table of the points' ``tables`` (``None`` for a point a shard did not run) and, with
    ``out``, the top-level files written from them and the points' folders (bounds, manifests);
    ``extra``: more manifest entries (a merge's ``merged_from``)."""
    names = [point_name(point.point) for point in spec.points]
    frames, bounds, headtohead, warnings, manifests, loaded = [], [], [], [], [], []
    for name, point_spec, table in zip(names, spec.points, tables):
        if table is None:
            continue
        duel = table.attrs.get("headtohead")
        frames.append(with_point_columns(table, point_spec.point, _last(table.columns, "rule.", "iteration")))
        if duel is not None:
            duel = pd.DataFrame(duel)
            after = _last(duel.columns, ("rule_a.", "rule_b."), "rule_b")
            headtohead.append(with_point_columns(duel, point_spec.point, after))
        if out is not None:
            point_out = out / POINTS_DIR / name
            point_bounds = read_bounds(point_out)
            if point_bounds is not None and not point_bounds.empty:
                bounds.append(with_point_columns(point_bounds, point_spec.point, "rule"))
            manifest = read_manifest(point_out) or {}
            manifests.append(manifest)
            warnings.extend(f"{name}: {message}" for message in manifest.get("warnings") or [])
            loaded.extend(manifest.get("loaded_parts") or [])  # labels with the point's values
    table = order_columns(pd.concat(frames, ignore_index=True))
    warnings = sweep_warnings(spec) + warnings + plot_metric_warnings(table, spec.plot)
    duels = pd.concat(headtohead, ignore_index=True) if headtohead else None
    table.attrs["headtohead"] = None if duels is None else column_record(duels)
    if out is not None:
        combined_bounds = pd.concat(bounds, ignore_index=True) if bounds else pd.DataFrame(columns=BOUND_COLUMNS)
        manifest = {**manifests[0], **_sweep_fields(spec, names, complete=True)}
        manifest["fingerprint"] = fingerprint
        manifest.update(extra or {})
        manifest["parsed_spec"] = _parsed_with_sweeps(manifests[0].get("parsed_spec"), spec)
        manifest["warnings"] = warnings
        manifest["seconds"] = round(time.time() - started, 3)
        manifest.pop("loaded_parts", None)  # the first point's: the sweep's are every point's
        if loaded:
            manifest["loaded_parts"] = loaded
        manifest.pop("shard", None)
        if shard is not None:  # a shard: its rows and manifest only; bounds and head-to-head need every point
            manifest["shard"] = shard
            write_run_results(out, table, None, manifest, None)
        else:
            write_run_results(out, table, combined_bounds, manifest, duels)
    return table


def shard_contents(spec: ExperimentSpec, index: int, count: int) -> str:
    """What shard ``index`` of a sweep holds, for the CLI's messages."""
    units = sweep_plan(spec, count)[index]
    return f"{len(units)} unit(s) of {len(sweep_units(spec))}: " + "; ".join(
        f"group {group + 1} × {spec.rules[table].stem or spec.rules[table].label}" for group, table in units
    )


def _last(columns, prefix, default: str) -> str:
    """The last column starting with ``prefix``, else ``default``: where the swept fields' columns go."""
    matching = [c for c in columns if isinstance(c, str) and c.startswith(prefix)]
    return matching[-1] if matching else default


def _sweep_fields(spec: ExperimentSpec, names: list[str], complete: bool) -> dict:
    """The manifest entries of a [game]/[run] sweep."""
    taus = sorted({float(point.game.tau) for point in spec.points})
    groups = point_groups(spec)
    return {
        "spec": spec.raw,
        "seeds": list(spec.seeds),
        "point_groups": [[names[i] for i in members] for members in groups],
        "vmapped_calls": len(groups) * len(spec.rules),
        "field_sweep": [{"field": field, "values": list(values)} for field, values in spec.field_sweep],
        "points": [
            {"name": name, "directory": f"{POINTS_DIR}/{name}", "values": dict(point.point)}
            for name, point in zip(names, spec.points)
        ],
        "metric_tau": metric_tau("game.tau" if len(taus) > 1 else taus[0]),
        "complete": complete,
    }


def _parsed_with_sweeps(parsed: Any, spec: ExperimentSpec) -> Any:
    """The first point's parsed spec with each swept field holding its list of values."""
    if not isinstance(parsed, dict):
        return parsed
    parsed = copy.deepcopy(parsed)
    for field, values in spec.field_sweep:
        table, key = field.split(".", 1)
        if isinstance(parsed.get(table), dict):
            parsed[table][key] = list(values)
    parsed["field_sweep"] = [[field, list(values)] for field, values in spec.field_sweep]
    return parsed


def remove_stale_points(out: Path, names: list[str]) -> list[Path]:
    """Delete the point folders of an earlier sweep in ``out`` that this spec does not have (they hold
    ``parts/``; ``names`` empty: every point folder, for a run without sweeps, and then their folder when it is
    left empty); return the removed paths."""
    folder = out / POINTS_DIR
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in names and (p / "parts").is_dir())
    for path in stale:
        shutil.rmtree(path)
    if not names:
        with contextlib.suppress(OSError):  # not empty: something else is kept there
            folder.rmdir()
    return stale
