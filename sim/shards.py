"""Deterministic shards of a spec's work, for sweeps that outgrow one machine (``prefsim run --shard I/N``).

The unit of work is a *part* (:class:`WorkPart`): one ``[[rule]]`` table, or with ``[run] seed_block = B``
one block of B consecutive seeds of a table (the last block holds the rest and runs padded to B seeds with
copies of its last seed, so one compiled function serves every block of a table;
:func:`sim.experiment.run_part`).  A part's grid points × seeds run as one vmapped, jitted call.  XLA
computes a batch as a whole, and the last bits of a seed's numbers depend on its batch (measured: a seed
run alone, or in a block of 3 seeds instead of 7, differs from the full batch by up to 2e-15 in exact and
2e-16 in sampled mode).  So seeds are split only where the spec itself says so: ``seed_block`` sets the
blocks of *every* run of the spec, the unsharded one too, and a shard runs some of those same blocks.
Parts are independent (each is its own call; games, targets and PRNG keys are built per seed for the
whole spec and cut, :func:`sim.experiment.block_inputs`), so the parts of a sharded run are the unsharded
run's parts, bit for bit, and a merge reproduces its ``metrics.csv`` byte for byte.  Without
``seed_block`` a shard holds whole tables; to spread a spec with few, large tables over more machines,
set ``seed_block``.

:func:`shard_parts` deals the parts out to N shards by cost, longest first, each to the shard with the
least work so far (ties: the lower index), so the plan depends on the spec and N only and every machine
computes the same one.  The cost of a part is its grid points × seeds (every part runs the same
iterations).  Shards count from 0, like ``SLURM_ARRAY_TASK_ID`` and a Kubernetes indexed job's
``JOB_COMPLETION_INDEX``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bandits.errors import PrefsimError
from bandits.inputs import check_integer
from sim.point_plan import check_sweep_shard_count, point_groups

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


def check_shard(shard: object) -> tuple[int, int] | None:
    """The ``shard`` argument of :func:`sim.run`: ``None``, or ``(I, N)``, two integers with N ≥ 1 and
    0 ≤ I < N, returned as a tuple; a :class:`PrefsimError` for anything else."""
    if shard is None:
        return None
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise PrefsimError(f"shard: expected (I, N), shard I of N counting from 0 (e.g. (0, 4)), got {shard!r}.")
    index, count = check_integer(shard[0], "shard I", 0), check_integer(shard[1], "shard N", 1)
    _check_index(index, count)
    return index, count


class WorkPart(NamedTuple):
    """One unit of a run's work: a rule table, or one seed block of it (seeds ``start`` … ``stop − 1`` by index)."""

    rule: RuleSpec
    block: int | None
    """Index of the seed block; ``None`` when the spec sets no ``seed_block`` (the whole table)."""
    start: int
    stop: int

    @property
    def name(self) -> str:
        """The part's file stem in ``out/parts``: the rule label, with ``@block-<i>`` for a seed block."""
        return self.rule.label if self.block is None else f"{self.rule.label}@block-{self.block}"

    @property
    def cost(self) -> int:
        """Grid points × seeds: what the part runs (every part runs the same iterations)."""
        return len(self.rule.grid_labels()) * (self.stop - self.start)


def seed_blocks(spec: ExperimentSpec) -> list[tuple[int, int]]:
    """``[(start, stop)]``: the seed-index ranges of the spec's blocks (``[run] seed_block``; unset: one)."""
    seeds, size = len(spec.seeds), spec.run.seed_block
    if size is None:
        return [(0, seeds)]
    return [(start, min(start + size, seeds)) for start in range(0, seeds, size)]


def work_parts(spec: ExperimentSpec, rules: Sequence[RuleSpec] | None = None) -> list[WorkPart]:
    """The parts of ``rules`` (default: every table of the spec) in run order: table by table, blocks in order."""
    blocked = spec.run.seed_block is not None
    return [
        WorkPart(rule, index if blocked else None, start, stop)
        for rule in (spec.rules if rules is None else rules)
        for index, (start, stop) in enumerate(seed_blocks(spec))
    ]


def part_count(spec: ExperimentSpec) -> int:
    """How many shards the spec's work can be dealt to at most: its parts (tables × seed blocks), or for a
    ``[game]``/``[run]`` sweep its units (group of points × rule table)."""
    if spec.points:
        return len(point_groups(spec)) * len(spec.rules)
    return len(spec.rules) * len(seed_blocks(spec))


def check_shard_count(spec: ExperimentSpec, count: int) -> None:
    """Refuse more shards than the spec has parts (tables × seed blocks): a shard would be empty.  For a
    ``[game]``/``[run]`` sweep the parts are units of (group of points × rule table) (:mod:`sim.sweep_runs`)."""
    if spec.points:
        check_sweep_shard_count(spec, count)
        return
    tables, blocks = len(spec.rules), len(seed_blocks(spec))
    if count <= tables * blocks:
        return
    if spec.run.seed_block is None:
        raise PrefsimError(
            f"{count} shards: this spec has {tables} [[rule]] table(s), and without [run] seed_block a shard holds "
            "whole tables (a table's grid points and seeds run as one batch, and splitting that batch changes the "
            f"last bits of the numbers), so use at most {tables} shards, or set [run] seed_block = B to run every "
            f"table's {len(spec.seeds)} seeds as blocks of B (in the unsharded run too), which gives tables × blocks "
            "parts to deal out."
        )
    raise PrefsimError(
        f"{count} shards: this spec has {tables} [[rule]] table(s) × {blocks} seed block(s) of [run] seed_block = "
        f"{spec.run.seed_block} = {tables * blocks} parts, so use at most {tables * blocks} shards, or a smaller "
        "seed_block."
    )


def shard_parts(spec: ExperimentSpec, count: int) -> list[tuple[WorkPart, ...]]:
    """The parts of each of ``count`` shards (each in run order); deterministic and balanced by cost."""
    check_shard_count(spec, count)
    parts = work_parts(spec)
    plan = deal([part.cost for part in parts], count)
    return [tuple(parts[i] for i in chosen) for chosen in plan]


def shard_plan(spec: ExperimentSpec, count: int) -> list[tuple[RuleSpec, ...]]:
    """The rule tables each of ``count`` shards runs some part of (each in spec order); without
    ``seed_block`` every table is in exactly one shard."""
    plan = shard_parts(spec, count)
    return [tuple(rule for rule in spec.rules if any(part.rule is rule for part in chosen)) for chosen in plan]


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
    """The rule tables shard ``index`` of ``count`` runs (some seed blocks of, with ``seed_block``)."""
    _check_index(index, count)
    return shard_plan(spec, count)[index]


def shard_work(spec: ExperimentSpec, index: int, count: int) -> tuple[WorkPart, ...]:
    """The parts of shard ``index`` of ``count``."""
    _check_index(index, count)
    return shard_parts(spec, count)[index]


def _check_index(index: int, count: int) -> None:
    if not 0 <= index < count:
        raise PrefsimError(f"shard {index}/{count}: needs 0 ≤ I < N (shards count from 0).")


def shard_record(spec: ExperimentSpec, index: int, count: int) -> dict:
    """What a shard's manifest says about it: its index, the shard count, its rule tables' labels and its
    parts (file stems in ``parts/``)."""
    return {
        "index": index,
        "count": count,
        "labels": [rule.label for rule in shard_rules(spec, index, count)],
        "parts": [part.name for part in shard_work(spec, index, count)],
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


def check_shard_directory(out: Path, manifest: dict | None, shard: tuple[int, int] | None) -> None:
    """Refuse to run shard ``shard = (I, N)`` into ``out`` when its ``manifest`` (finished or running) is of
    another shard, another shard count or an unsharded run: that run's results and manifest would be
    replaced by this shard's.  A directory without a manifest, and any unsharded run, pass."""
    if shard is None or not isinstance(manifest, dict):
        return
    held = manifest.get("shard")
    if isinstance(held, dict) and (held.get("index"), held.get("count")) == tuple(shard):
        return
    what = (
        f"shard {held.get('index')}/{held.get('count')}"
        if isinstance(held, dict)
        else "the results of an unsharded run (or a merge)"
    )
    raise PrefsimError(
        f"--out {str(out)!r} holds {what} (its manifest says so), and this is shard {shard[0]}/{shard[1]}: running "
        "it there would replace those results and that manifest. Give each shard its own --out (by default "
        f"results/<spec name>/shard-{shard[0]}-of-{shard[1]}), or remove {str(out)!r} first to reuse it."
    )
