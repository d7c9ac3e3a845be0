"""Sweeps over ``[game]`` and ``[run]`` fields, and over categorical rule parameters.

A list where a spec expects one number or name is a sweep.  Three kinds, one labelling:

* **numeric rule parameters** (``eta = [2.0, 10.0]``) — one vmapped, jitted call per ``[[rule]]``
  table, as before (:func:`sim.experiment.run_rule`);
* **categorical rule parameters** (``schedule = ["constant", "nesterov"]``, ``form``, ``anchor``,
  APO's ``base``) — the table is split into one rule table per value, each its own compiled run
  (the value changes the traced program), labelled ``apo[schedule=nesterov]``;
* **``[game]`` and ``[run]`` fields** (``arms = [3, 5]``, ``tau = [0.05, 0.1]``,
  ``pairs_per_iteration = [100, 400]``, ``pair_scheme = [...]``) — the spec is expanded into the
  cartesian product of its swept fields; each combination (a *point*) is a complete run of its own
  (:func:`sim.sweep_runs.run_field_sweep`).  Points that differ only in the values of the game's
  arrays (``tau``, ``reference``, ``strength``, …; exact and sampled mode) form a group that runs as one
  vmapped call per rule table (:mod:`sim.point_groups`); fields that change shapes or the program
  (``kind``, ``arms``, ``pairs_per_iteration``, every ``[run]`` field) run separately.  Rules whose τ is not given
  follow each point's ``game.tau``.

Every result label names the values it belongs to, inside one bracket, rule values first:
``inpo[eta=2,game.tau=0.1]``, ``apo[alpha=0.5,schedule=constant,run.pairs_per_iteration=100]``.
Every sweep adds one column per swept value after ``iteration``: ``rule.<parameter>`` for a rule's own
(:mod:`sim.table`), then ``game.<field>`` / ``run.<field>`` in ``metrics.csv``, ``bounds.csv`` and
``headtohead.csv`` (which names both sides' rule parameters, ``rule_a.eta`` / ``rule_b.eta``); the
summary carries them after ``rule``.

With a result directory ``out``, point ``p`` runs in ``out/points/<p>/`` (``<p>`` =
``game.tau=0.1,run.pairs_per_iteration=100``), a complete result directory of its own (parts,
``metrics.csv``, ``manifest.json``); ``--resume`` reuses each point's finished parts (a group's
unfinished points are computed together).  The top-level
``metrics.csv``, ``bounds.csv``, ``headtohead.csv`` and ``manifest.json`` hold all points (the
manifest lists the swept fields and the points).

A ``[game]``/``[run]`` key given explicitly must be read at some point of the sweep (a fixed key that
only some points read, ``scale = 5`` with ``construction = ["lower_triangle", "skew_logits"]``, is left
out of the others), and a swept key at every point (otherwise those points would repeat one run once
per value); :func:`sim.spec_checks.check_unread_keys` refuses the rest.

Fields that cannot be swept are refused naming them: ``iterations``, ``precision``,
``record_every``, ``seeds`` (a list gives the seeds), ``run.mode`` and the deprecated
``run.apo_form`` / ``run.dpo_reference``; the list-valued ``[game]`` fields ``preference``,
``rewards``, ``weights`` and ``reference`` keep their meaning (a list is the value), except that a
list of names (``reference = ["uniform", "random"]``) sweeps ``reference``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

from bandits.errors import PrefsimError
from sim.spec_checks import LABEL_PATTERN, LABEL_RULE

#: [game] fields a list sweeps (the others hold a list as their value).
GAME_SWEEPABLE = (
    "kind",
    "arms",
    "tau",
    "initial",
    "strength",
    "construction",
    "scale",
    "reward_scale",
    "components",
    "reference_scale",
    "reference_min_mass",
)
#: Top-level keys and [run] keys that cannot be swept, with the reason given in the error.
NOT_SWEEPABLE = {
    "iterations": "a run records every iteration up to T, so run the largest T and read the others off its curve",
    "precision": "run the spec once per precision (a float32 and a float64 run do not share a compiled program) "
    "and use `prefsim compare`",
    "record_every": "record the finest grid you need; it holds the coarser ones",
    "run.mode": "exact and sampled runs have different metrics; run the spec once per mode and use `prefsim compare`",
    "run.apo_form": "it is deprecated: give the apo rule's form as a list (form = [...]) instead",
    "run.dpo_reference": "it is deprecated: give the dpo rule's anchor as a list (anchor = [...]) instead",
    "run.seed_block": "it only cuts the same seeds into calls of another size (the results agree to ~1e-15); "
    "choose one block size for the spec",
}


def format_value(value: Any) -> str:
    """A swept value as labels show it: ``0.1``, ``3``, ``nesterov``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_label(stem: str, values: Sequence[tuple[str, Any]]) -> str:
    """``stem[name=value,…]`` (``stem`` alone when nothing is swept)."""
    if not values:
        return stem
    return f"{stem}[{','.join(f'{name}={format_value(value)}' for name, value in values)}]"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def check_sweep_values(where: str, values: list) -> tuple:
    """The values of one swept field: a non-empty list of distinct numbers or names."""
    if not values:
        raise PrefsimError(f"{where}: an empty list sweeps nothing; give one value or a list of values.")
    if not all(_is_scalar(v) for v in values):
        raise PrefsimError(
            f"{where}: a sweep is a list of numbers or names, got {values!r} (lists inside a sweep are not swept)."
        )
    shown = [format_value(v) for v in values]
    repeated = sorted({s for s in shown if shown.count(s) > 1})
    if repeated:
        for label in repeated:
            alike = list(dict.fromkeys(v for v, s in zip(values, shown) if s == label))
            if len(alike) > 1:  # distinct numbers that print alike (3 and 3.0 are one value)
                raise PrefsimError(
                    f"{where}: the values {', '.join(map(repr, alike))} all show as {label} in labels and result "
                    "folders (6 significant digits), so their results could not be told apart; give values that "
                    "differ within 6 significant digits."
                )
        raise PrefsimError(f"{where}: the sweep repeats the value(s) {', '.join(repeated)}; give each value once.")
    return tuple(values)


def field_sweeps(data: dict) -> tuple[tuple[str, tuple], ...]:
    """``((field, values), …)``: the ``[game]`` and ``[run]`` fields ``data`` (a raw spec) sweeps.

    Raises for a list at a key that cannot be swept (:data:`NOT_SWEEPABLE`), an empty list, a list
    holding lists, or repeated values.
    """
    for key in ("iterations", "precision", "record_every"):
        if isinstance(data.get(key), list):
            raise PrefsimError(f"{key}: cannot be swept (it is given a list, {data[key]!r}); {NOT_SWEEPABLE[key]}.")
    sweeps = []
    game = data.get("game")
    if isinstance(game, dict):
        for key, value in game.items():
            names = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            if isinstance(value, list) and (key in GAME_SWEEPABLE or (key == "reference" and names)):
                sweeps.append((f"game.{key}", check_sweep_values(f"game.{key}", value)))
    run = data.get("run")
    if isinstance(run, dict):
        for key, value in run.items():
            if not isinstance(value, list):
                continue
            if f"run.{key}" in NOT_SWEEPABLE:
                raise PrefsimError(
                    f"run.{key}: cannot be swept (it is given a list, {value!r}); {NOT_SWEEPABLE[f'run.{key}']}."
                )
            sweeps.append((f"run.{key}", check_sweep_values(f"run.{key}", value)))
    return tuple(sweeps)


def expand_points(data: dict, sweeps: Sequence[tuple[str, tuple]]) -> list[tuple[tuple, dict]]:
    """``[(point, data)]``: one raw spec per combination of the swept values (cartesian product, the
    first field varying slowest), ``point`` = ``((field, value), …)``.  The ``[plot]`` table is left
    out of each point's spec (it names the combined labels, checked against them by the caller)."""
    points = []
    for values in itertools.product(*(values for _, values in sweeps)):
        point = tuple((field, value) for (field, _), value in zip(sweeps, values))
        one = copy.deepcopy({k: v for k, v in data.items() if k != "plot"})
        for field, value in point:
            table, key = field.split(".", 1)
            one[table][key] = value
        points.append((point, one))
    return points


def point_name(point: Sequence[tuple[str, Any]]) -> str:
    """The folder name of a point: ``game.tau=0.1,run.pairs_per_iteration=100``."""
    name = ",".join(f"{field}={format_value(value)}" for field, value in point)
    if not LABEL_PATTERN.fullmatch(name):
        raise PrefsimError(
            f"sweep: the point {name!r} cannot name its result folder ({LABEL_RULE}); sweep fewer fields at once "
            "or use shorter values."
        )
    return name
