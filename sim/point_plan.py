"""Which points of a ``[game]`` sweep run together as one vmapped call (a *group*, in exact and sampled
mode; with ``[run] seed_block`` every point runs alone, in its blocks), and the shard units of a sweep
(group × ``[[rule]]`` table).  :mod:`sim.point_groups` runs a group; this module only reads
the parsed spec, so shard plans and ``prefsim launch`` need no JAX.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from bandits.errors import PrefsimError

if TYPE_CHECKING:  # annotations only: sim.spec imports JAX
    from sim.spec import ExperimentSpec, RuleSpec

#: [game] fields whose values change only the numbers in the game's arrays (not their shapes).
GROUPED_GAME_FIELDS = (
    "game.tau",
    "game.initial",
    "game.reference",
    "game.strength",
    "game.construction",
    "game.scale",
    "game.reward_scale",
    "game.reference_scale",
    "game.reference_min_mass",
)


def _static_rule(rule: RuleSpec) -> tuple:
    """What of a rule table fixes its compiled program (float parameters are traced values instead)."""
    fixed = tuple(sorted((k, repr(v)) for k, v in rule.fixed().items() if not isinstance(v, float)))
    swept = tuple(sorted((k, tuple(v)) for k, v in rule.swept().items()))
    return rule.name, rule.stem or rule.label, rule.categorical(), swept, fixed


def _group_key(point: ExperimentSpec) -> Hashable:
    separate = tuple((field, value) for field, value in point.point if field not in GROUPED_GAME_FIELDS)
    return separate, tuple(_static_rule(rule) for rule in point.rules)


def point_groups(spec: ExperimentSpec) -> list[tuple[int, ...]]:
    """Indices into ``spec.points`` per group (module docstring), in the order of each group's first point."""
    if spec.run.seed_block is not None:  # seed blocks: each point runs in its blocks
        return [(index,) for index in range(len(spec.points))]
    groups: dict = {}
    for index, point in enumerate(spec.points):
        groups.setdefault(_group_key(point), []).append(index)
    return [tuple(members) for members in groups.values()]


def check_sweep_shard_count(spec: ExperimentSpec, count: int) -> None:
    """Refuse more shards than a sweep has units of work (group × rule table, :func:`sim.sweep_runs.sweep_plan`)."""
    units = len(point_groups(spec)) * len(spec.rules)
    if count > units:
        raise PrefsimError(
            f"{count} shards: this sweep has {units} unit(s) of work (each group of points that runs as one "
            "vmapped call, times each [[rule]] table), and a shard holds whole units (splitting one changes the last "
            f"bits of its numbers), so use at most {units} shards."
        )
