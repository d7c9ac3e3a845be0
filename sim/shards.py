"""Deterministic shards of a spec's work, for sweeps that outgrow one machine (``prefsim run --shard I/N``).

The unit of work is one ``[[rule]]`` table: all its grid points × seeds run as one vmapped, jitted call,
and a shard holds whole tables.  Seeds and grid points are not split: XLA computes a batch as a whole,
and the last bits of a seed's numbers depend on what else is in its batch (measured: a seed run alone,
or in a block of 3 seeds instead of 7, differs from the full batch by up to 2e-15 in exact and 2e-16 in
sampled mode), so a merge of seed blocks would not reproduce the unsharded ``metrics.csv`` byte for
byte.  Tables are independent (each is its own call, with per-seed PRNG keys and games), so the parts of
a sharded run are the unsharded run's parts, bit for bit.  To spread one large table over more
machines, split it into several tables (e.g. one per value of a swept parameter) in the spec itself.

:func:`shard_plan` deals the tables out to N shards by cost, longest first, each to the shard with the
least work so far (ties: the lower index), so the plan depends on the spec and N only and every machine
computes the same one.  The cost of a table is its number of grid points (every table runs the same
seeds and iterations).  Shards count from 0, like ``SLURM_ARRAY_TASK_ID`` and a Kubernetes indexed job's
``JOB_COMPLETION_INDEX``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bandits.errors import PrefsimError

if TYPE_CHECKING:  # annotations only: sim.spec imports JAX, and `prefsim --version` reads this module
    from sim.spec import ExperimentSpec, RuleSpec

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with 0 ≤ I < N, or a :class:`PrefsimError` naming the option."""
    match = _SHARD.match(text or "")
    if not match:
        raise PrefsimError(f"--shard: expected I/N (shard I of N, counting from 0, e.g. 0/4), got {text!r}.")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise PrefsimError(
            f"--shard {text}: needs N ≥ 1 and 0 ≤ I < N (shards count from 0, like SLURM_ARRAY_TASK_ID), "
            f"got I = {index}, N = {count}."
        )
    return index, count


def check_shard_count(spec: ExperimentSpec, count: int) -> None:
    """Refuse more shards than the spec has ``[[rule]]`` tables (a shard holds whole tables)."""
    tables = len(spec.rules)
    if count > tables:
        raise PrefsimError(
            f"{count} shards: this spec has {tables} [[rule]] table(s), and a shard holds whole tables (a table's "
            "grid points and seeds run as one batch, and splitting that batch changes the last bits of the "
            f"numbers), so use at most {tables} shards, or split a large table into several tables in the spec."
        )


def shard_plan(spec: ExperimentSpec, count: int) -> list[tuple[RuleSpec, ...]]:
    """The rule tables of each of ``count`` shards (each in spec order); deterministic and balanced by cost."""
    check_shard_count(spec, count)
    plan = deal([len(rule.grid_labels()) for rule in spec.rules], count)
    return [tuple(spec.rules[i] for i in chosen) for chosen in plan]


def deal(costs: list[int], count: int) -> list[list[int]]:
    """Indices of ``costs`` dealt out to ``count`` shards: longest first, each to the shard with the least
    work so far (ties: the lower shard); each shard's indices in increasing order.  Equal costs give
    index i to shard i mod N."""
    loads = [0] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        target = min(range(count), key=lambda shard: (loads[shard], shard))
        members[target].append(item)
        loads[target] += costs[item]
    return [sorted(chosen) for chosen in members]


def shard_rules(spec: ExperimentSpec, index: int, count: int) -> tuple[RuleSpec, ...]:
    """The rule tables of shard ``index`` of ``count``."""
    if not 0 <= index < count:
        raise PrefsimError(f"shard {index}/{count}: needs 0 ≤ I < N (shards count from 0).")
    return shard_plan(spec, count)[index]


def shard_record(spec: ExperimentSpec, index: int, count: int) -> dict:
    """What a shard's manifest says about it: its index, the shard count and its rule tables' labels."""
    return {
        "index": index,
        "count": count,
        "labels": [rule.label for rule in shard_rules(spec, index, count)],
        "tables": len(spec.rules),
    }


def order_shards(shards: Sequence[tuple[Path, int]], count: int, holds: Callable[[int], str], rerun: str) -> list[Path]:
    """The directory of each shard index 0 … count − 1 from ``(directory, index)`` pairs: a clear error when
    an index is given twice or missing (``holds(i)`` says what shard i holds; ``rerun`` how to compute it)."""
    by_index: dict[int, Path] = {}
    for path, index in shards:
        if index in by_index:
            raise PrefsimError(
                f"shard {index}/{count} is given twice: {str(by_index[index])!r} and {str(path)!r}; give each once."
            )
        by_index[index] = path
    missing = [index for index in range(count) if index not in by_index]
    if missing:
        described = "; ".join(f"{i}/{count} ({holds(i)})" for i in missing)
        raise PrefsimError(f"missing shard(s): {described}; run them with {rerun} and merge every shard.")
    return [by_index[index] for index in range(count)]
