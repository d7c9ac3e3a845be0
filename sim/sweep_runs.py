"""Running a sweep over ``[game]``/``[run]`` fields: one complete run per point, tables combined.

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

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sim.bounds_file import BOUND_COLUMNS, read_bounds
from sim.field_sweep import point_name
from sim.limits import check_memory, describe_memory
from sim.metrics import metric_tau
from sim.results_io import (
    RUNNING_MANIFEST,
    check_output_directory,
    json_bytes,
    read_manifest,
    write_files_atomic,
    write_run_results,
)
from sim.spec import ExperimentSpec

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


def run_field_sweep(
    spec: ExperimentSpec,
    out: Path | None,
    resume: bool,
    say: Callable[[str], object],
    progress: Callable[[str], object] | None,
    run_one: Callable[..., pd.DataFrame],
) -> pd.DataFrame:
    """Run every point of ``spec.points`` with ``run_one`` (:func:`sim.experiment` 's runner of one
    spec: ``run_one(point_spec, point_out, resume, say, progress)``); return the combined table.

    ``out`` (validated and locked by the caller) receives ``points/<point>/`` per point and the
    combined files of the module docstring, replaced together at the end.
    """
    started = time.time()
    names = [point_name(point.point) for point in spec.points]
    if out is not None:
        write_files_atomic({out / RUNNING_MANIFEST: json_bytes(_sweep_fields(spec, names, complete=False))})
        for stale in _stale_points(out, names):
            shutil.rmtree(stale)
            say(f"removed {stale}: its point is no longer in the spec's sweep")
    frames, bounds, headtohead, warnings, manifests = [], [], [], [], []
    for index, (name, point_spec) in enumerate(zip(names, spec.points)):
        say(f"sweep point {index + 1}/{len(names)}: {name}")
        say(describe_memory(check_memory(point_spec)))
        point_out = None
        if out is not None:
            point_out = check_output_directory(out / POINTS_DIR / name, [rule.label for rule in point_spec.rules])
        table = run_one(point_spec, point_out, resume, say, progress)
        duel = table.attrs.get("headtohead")
        frames.append(with_point_columns(table, point_spec.point, "iteration"))
        if duel is not None:
            headtohead.append(with_point_columns(pd.DataFrame(duel), point_spec.point, "rule_b"))
        if point_out is not None:
            point_bounds = read_bounds(point_out)
            if point_bounds is not None and not point_bounds.empty:
                bounds.append(with_point_columns(point_bounds, point_spec.point, "rule"))
            manifest = read_manifest(point_out) or {}
            manifests.append(manifest)
            warnings.extend(f"{name}: {message}" for message in manifest.get("warnings") or [])
    table = pd.concat(frames, ignore_index=True)
    duels = pd.concat(headtohead, ignore_index=True) if headtohead else None
    table.attrs["headtohead"] = None if duels is None else duels.to_dict("list")
    if out is not None:
        combined_bounds = pd.concat(bounds, ignore_index=True) if bounds else pd.DataFrame(columns=BOUND_COLUMNS)
        manifest = {**manifests[0], **_sweep_fields(spec, names, complete=True)}
        manifest["fingerprint"] = "+".join(str(m.get("fingerprint")) for m in manifests)
        manifest["parsed_spec"] = _parsed_with_sweeps(manifests[0].get("parsed_spec"), spec)
        manifest["warnings"] = warnings
        manifest["seconds"] = round(time.time() - started, 3)
        write_run_results(out, table, combined_bounds, manifest, duels)
    return table


def _sweep_fields(spec: ExperimentSpec, names: list[str], complete: bool) -> dict:
    """The manifest entries of a [game]/[run] sweep."""
    taus = sorted({float(point.game.tau) for point in spec.points})
    return {
        "spec": spec.raw,
        "seeds": list(spec.seeds),
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


def _stale_points(out: Path, names: list[str]) -> list[Path]:
    """Point folders of an earlier sweep in ``out`` that this spec does not have (they hold ``parts/``)."""
    folder = out / POINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in names and (p / "parts").is_dir())
