"""``prefsim merge``: the shards of one spec (``prefsim run --shard I/N``) → the unsharded run's results.

Checks, each failing with a :class:`~bandits.errors.PrefsimError` that names the directory:

* every directory holds a finished shard (``manifest.json`` with ``complete = true`` and a ``shard`` entry);
* all shards have the spec fingerprint of the first (same spec, seeds and code: prefsim, JAX, jaxlib and
  NumPy versions and source files, :func:`sim.experiment.computing_code`) and the
  same shard count N, and this prefsim computes that fingerprint too (the code that merges is the code
  that ran them; an error names what differs);
* the shards cover shards 0 … N−1 exactly once (a missing one is named with its rule tables, a
  duplicated one with both directories), and each holds the parts :func:`sim.shards.shard_parts` gives it
  (rule tables, or with ``[run] seed_block`` seed blocks of them);
* every part passes the checks of ``--resume`` (fingerprint, checksum, row count).

The merged directory is then written by the code that ends an unsharded run
(:func:`sim.experiment.finish_run`): the parts in spec order, seed blocks assembled as the unsharded run
assembles them (:func:`sim.experiment.assemble_parts`), give ``metrics.csv`` (the same bytes as the
unsharded run), and ``bounds.csv``, ``headtohead.csv`` and the run warnings are computed from the
merged table and the final policies of every rule.  The parts and final policies are copied too, so
``prefsim run --resume`` on the merged directory reuses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bandits.errors import PrefsimError
from sim.experiment import (
    COMPUTING_PACKAGES,
    FINAL_POLICIES,
    assemble_parts,
    code_record,
    expected_part_rows,
    finish_run,
    load_final_policies,
    part_fingerprint,
    prepare_run,
    spec_fingerprint,
)
from sim.precision import in_float64
from sim.provenance import code_differences
from sim.results_io import (
    RUNNING_MANIFEST,
    check_output_directory,
    output_lock_until,
    read_part,
    remove_stale_parts,
    write_files_atomic,
)
from sim.shards import WorkPart, order_shards, shard_parts, work_parts
from sim.spec import ExperimentSpec, parse_spec
from sim.sweep_runs import remove_stale_points


def shard_manifest(directory: Path) -> dict:
    """The manifest of a finished shard directory, or an error saying what the directory is instead."""
    path = directory / "manifest.json"
    if not directory.is_dir():
        raise PrefsimError(f"{str(directory)!r} is not a directory; give the --out directories of the shards.")
    if not path.is_file():
        running = (directory / RUNNING_MANIFEST).is_file()
        what = "an unfinished shard" if running else "no finished shard (no manifest.json)"
        raise PrefsimError(
            f"{str(directory)!r} holds {what}; finish it with `prefsim run SPEC --out {directory} --shard I/N "
            "--resume` before merging."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrefsimError(f"{str(path)!r} is not a manifest written by prefsim ({exc}).") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
        raise PrefsimError(f"{str(path)!r} is not a manifest written by prefsim.")
    shard = manifest.get("shard")
    if not isinstance(shard, dict) or not {"index", "count", "labels"} <= set(shard):
        raise PrefsimError(
            f"{str(directory)!r} is not a shard: its manifest names no shard (it was written by `prefsim run` "
            "without --shard, or by `prefsim merge`)."
        )
    if manifest.get("complete") is not True:
        raise PrefsimError(f"{str(directory)!r} holds an unfinished shard; finish it with --resume before merging.")
    return manifest


def _why_foreign(manifest: dict, reference: dict) -> str:
    """Which of spec, versions, commit and uncommitted source differ between two shards' manifests."""
    reasons = [] if manifest.get("parsed_spec") == reference.get("parsed_spec") else ["another spec"]
    computing = code_differences(manifest, reference, ("prefsim", *COMPUTING_PACKAGES))
    return ", ".join(reasons + computing) or "another spec or code"


def check_same_split(paths: Sequence[Path], manifests: Sequence[dict]) -> None:
    """Every shard has the first one's spec fingerprint and shard count, else an error naming the odd one."""
    first, reference = paths[0], manifests[0]
    for path, manifest in zip(paths[1:], manifests[1:]):
        if manifest.get("fingerprint") != reference.get("fingerprint"):
            raise PrefsimError(
                f"{str(path)!r} is foreign: its spec fingerprint {manifest.get('fingerprint')} differs from "
                f"{reference.get('fingerprint')} of {str(first)!r} ({_why_foreign(manifest, reference)}); merge the "
                "shards of one spec run by one prefsim."
            )
        if manifest["shard"]["count"] != reference["shard"]["count"]:
            raise PrefsimError(
                f"{str(path)!r} is shard {manifest['shard']['index']}/{manifest['shard']['count']} but {str(first)!r} "
                f"is shard {reference['shard']['index']}/{reference['shard']['count']}: the shards of one merge must "
                "split the spec into the same number of parts."
            )


def check_shards(directories: Sequence[str | os.PathLike]) -> tuple[ExperimentSpec, list[Path], dict]:
    """``(spec, shard directory per shard index, manifest of the first)`` after every check of the module."""
    if not directories:
        raise PrefsimError("merge: give the result directories of the shards.")
    paths = [Path(d) for d in directories]
    manifests = [shard_manifest(path) for path in paths]
    check_same_split(paths, manifests)
    reference = manifests[0]
    spec = parse_spec(reference["spec"])
    if spec_fingerprint(spec) != reference.get("fingerprint"):
        raise PrefsimError(other_code_message(reference, f"fingerprint {reference.get('fingerprint')}"))
    count = int(reference["shard"]["count"])
    plan = shard_parts(spec, count)
    for path, manifest in zip(paths, manifests):
        index = int(manifest["shard"]["index"])
        expected = [work.name for work in plan[index]]
        held = manifest["shard"].get("parts", manifest["shard"]["labels"])
        if list(held) != expected:
            raise PrefsimError(
                f"{str(path)!r} holds {_parts_text(held)} as shard {index}/{count}, but that shard holds "
                f"{_parts_text(expected)}; it was not written by this prefsim's `--shard`."
            )
    ordered = order_shards(
        [(path, int(manifest["shard"]["index"])) for path, manifest in zip(paths, manifests)],
        count,
        lambda i: _parts_text([work.name for work in plan[i]]),
        "`prefsim run SPEC --out DIR --shard I/N`",
    )
    return spec, ordered, reference


def other_code_message(reference: dict, what: str) -> str:
    """The error of a merge whose shards were computed by other code than this prefsim (their ``what``)."""
    differences = code_differences(reference, code_record()) or ["other code"]
    return (
        f"the shards were computed by prefsim {reference.get('versions', {}).get('prefsim')} at git commit "
        f"{reference.get('git_commit')} ({what}), and this prefsim differs: {', '.join(differences)}; their "
        "parts are not this code's results. Merge with the code that ran them, or rerun the shards with this "
        "code (--resume recomputes every part)."
    )


def _parts_text(names: Sequence[str]) -> str:
    """``rule tables a, b`` (or ``parts a@block-0, …`` with seed blocks) for the merge's errors."""
    what = "parts" if any("@block-" in name for name in names) else "rule tables"
    return f"{what} {', '.join(names)}"


@in_float64
def merge_target(out: str | os.PathLike, shards: Sequence[Path]) -> Path:
    """``out`` as a path, or an error when it is one of the shard directories being merged."""
    out_path = Path(out)
    if any(out_path.resolve() == shard.resolve() for shard in shards):
        raise PrefsimError(f"--out {str(out)!r} is one of the shard directories; merge into another directory.")
    return out_path


def merged_from(shards: Sequence[Path]) -> list[dict]:
    """The manifest entry ``merged_from``: each shard's directory and index, in shard order."""
    return [{"directory": str(shard), "shard": f"{index}/{len(shards)}"} for index, shard in enumerate(shards)]


def read_shard_part(
    directory: Path, spec: ExperimentSpec, work: WorkPart, record: np.ndarray
) -> tuple[pd.DataFrame, dict, dict[Path, bytes]]:
    """One finished part of a shard: its rows, its final policies and the bytes of its two files (paths
    relative to a run directory, to copy into the merged run), or an error saying to resume that shard."""
    fingerprint = part_fingerprint(spec, work.rule)
    part = directory / "parts" / f"{work.name}.csv"
    frame, reason = read_part(part, fingerprint, expected_part_rows(spec, work, record))
    if frame is None:
        raise PrefsimError(
            f"{reason or f'{part} is missing'}; rerun that shard with --resume (it recomputes only this part)."
        )
    stored = load_final_policies(directory, work.name, fingerprint)
    policies = Path(FINAL_POLICIES) / f"{work.name}.npz"
    if not stored:
        raise PrefsimError(
            f"{str(directory / policies)!r} is missing or not from this spec; rerun that shard with --resume."
        )
    files = {Path("parts") / part.name: part.read_bytes(), policies: (directory / policies).read_bytes()}
    return frame, stored, files


def merge_shards(
    directories: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    progress: Callable[[str], object] | None = None,
    keep_locked: contextlib.ExitStack | None = None,
) -> tuple[pd.DataFrame, ExperimentSpec]:
    """Merge the shard ``directories`` into ``out``; return the merged table and the spec.  ``keep_locked``:
    ``out``'s lock is entered into this stack and held until the caller closes it (as :func:`sim.experiment.run`
    does: ``prefsim merge`` writes ``summary.csv`` and the figures under it)."""
    say = progress or (lambda message: None)
    spec, shards, _ = check_shards(directories)
    out_path = merge_target(out, shards)
    started = time.time()
    plan = shard_parts(spec, len(shards))
    owner = {work.name: shards[index] for index, chosen in enumerate(plan) for work in chosen}
    inputs = prepare_run(spec)
    parts = work_parts(spec)
    frames, finals, copies = [], [], {}
    for work in parts:
        directory = owner[work.name]
        frame, stored, files = read_shard_part(directory, spec, work, inputs.record)
        frames.append(frame)
        finals.append(stored)
        copies.update(files)
        say(f"{work.name}: {len(frame)} rows from {directory}")
    tables, policies_by_label = assemble_parts(parts, frames, finals)
    out_path = check_output_directory(out_path, [work.name for work in parts])
    with output_lock_until(out_path, keep_locked):
        for path in remove_stale_parts(out_path, [work.name for work in parts]):
            say(f"removed {path}: its rule (or seed block) is not in the spec")
        for path in remove_stale_points(out_path, []):  # folders of an earlier sweep's points
            say(f"removed {path}: the spec does not sweep [game]/[run] fields")
        (out_path / FINAL_POLICIES).mkdir(exist_ok=True)
        write_files_atomic({out_path / name: data for name, data in copies.items()})
        inputs.manifest["merged_from"] = merged_from(shards)
        table = finish_run(spec, out_path, inputs, tables, policies_by_label, started, progress)
    return table, spec
