"""Experiment specs: TOML (or a dict) → validated dataclasses.

A spec is data (bsuite's habit): top-level keys, one ``[game]`` table, one or more ``[[rule]]``
tables and a ``[run]`` table.  Example::

    iterations = 1000
    seeds = 20
    precision = "float64"

    [game]
    kind = "random"
    arms = 10
    tau = 0.1

    [[rule]]
    name = "inpo"
    eta = [2.0, 10.0]      # a list is swept: labels inpo[eta=2], inpo[eta=10], one vmapped run
    tau = 0.1

    [run]
    mode = "exact"

Unknown keys, wrong types and impossible values raise :class:`~bandits.errors.PrefsimError`
naming the field.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path
from typing import Any

from bandits.errors import PrefsimError
from bandits.games import GameSpec
from sim.rules import build_rule, resolve_parameters, rule_info

PRECISIONS = ("float64", "float32")
MODES = ("exact",)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """One ``[[rule]]`` table."""

    name: str
    """Registry name (``prefsim rules`` lists them)."""
    label: str
    """Label in results; defaults to ``name``; required when two rules share a name."""
    parameters: dict
    """Resolved parameters (defaults filled); list values are sweeps."""

    def swept(self) -> dict:
        """Parameters given as lists (the grid)."""
        return {k: v for k, v in self.parameters.items() if isinstance(v, list)}

    def fixed(self) -> dict:
        return {k: v for k, v in self.parameters.items() if not isinstance(v, list)}

    def grid_labels(self) -> list[tuple[str, dict]]:
        """``[(label, {swept param: value})]`` over the cartesian product of the swept values."""
        swept = self.swept()
        if not swept:
            return [(self.label, {})]
        names = list(swept)
        out = []
        for values in itertools.product(*(swept[n] for n in names)):
            point = dict(zip(names, values))
            inside = ",".join(f"{n}={_fmt(v)}" for n, v in point.items())
            out.append((f"{self.label}[{inside}]", point))
        return out


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The ``[run]`` table."""

    mode: str = "exact"
    """``exact``: population updates in closed form."""


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment."""

    iterations: int
    """Number of updates T (iteration 0 is the initial policy)."""
    seeds: tuple
    """Seeds: ``seeds = 20`` means 0…19; a list gives them explicitly."""
    game: GameSpec
    """The ``[game]`` table."""
    rules: tuple
    """The ``[[rule]]`` tables."""
    precision: str = "float64"
    """``float64`` (default in exact mode) or ``float32``."""
    record_every: int | None = None
    """Record every k iterations; default: log-spaced (always 0 and T)."""
    run: RunSpec = RunSpec()
    """The ``[run]`` table."""
    raw: dict = dataclasses.field(default_factory=dict, compare=False)
    """The spec as given (written to the manifest)."""


TOP_LEVEL_KEYS = {"iterations", "seeds", "precision", "record_every", "game", "rule", "run", "name", "description"}


def load_spec(path) -> ExperimentSpec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    if not path.is_file():
        raise PrefsimError(f"spec file {str(path)!r} does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PrefsimError(f"spec file {str(path)!r} is not valid TOML: {exc}.") from None
    return parse_spec(data)


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a spec given as a dict (as from ``tomllib``); return an :class:`ExperimentSpec`."""
    if isinstance(data, ExperimentSpec):
        return data
    if not isinstance(data, dict):
        raise PrefsimError("spec: expected a table of keys (a TOML document or a dict).")
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise PrefsimError(f"spec: unknown top-level key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}.")

    iterations = data.get("iterations")
    if not _is_int(iterations) or iterations < 1:
        raise PrefsimError(f"iterations: expected an integer ≥ 1, got {iterations!r}.")
    seeds = data.get("seeds", 1)
    if _is_int(seeds):
        if seeds < 1:
            raise PrefsimError(f"seeds: expected a count ≥ 1 or a list of integers, got {seeds!r}.")
        seeds = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds and all(_is_int(s) and s >= 0 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise PrefsimError("seeds: the list has repeated seeds.")
        seeds = tuple(seeds)
    else:
        raise PrefsimError(f"seeds: expected a count ≥ 1 or a list of distinct integers ≥ 0, got {seeds!r}.")
    precision = data.get("precision", "float64")
    if precision not in PRECISIONS:
        raise PrefsimError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}.")
    record_every = data.get("record_every")
    if record_every is not None and (not _is_int(record_every) or record_every < 1):
        raise PrefsimError(f"record_every: expected an integer ≥ 1, got {record_every!r}.")

    game = _parse_game(data.get("game"))
    run = _parse_run(data.get("run", {}))
    rules = _parse_rules(data.get("rule"), game)
    return ExperimentSpec(
        iterations=int(iterations),
        seeds=seeds,
        game=game,
        rules=rules,
        precision=precision,
        record_every=record_every,
        run=run,
        raw=data,
    )


def _parse_game(table) -> GameSpec:
    if table is None:
        raise PrefsimError("game: the spec needs a [game] table (kind = matrix | bradley_terry | cyclic | random).")
    if not isinstance(table, dict):
        raise PrefsimError("game: expected a table.")
    fields = {f.name for f in dataclasses.fields(GameSpec)}
    unknown = set(table) - fields
    if unknown:
        raise PrefsimError(f"game: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}.")
    try:
        spec = GameSpec(**table)
    except TypeError as exc:
        raise PrefsimError(f"game: {exc}.") from None
    return spec.validate()


def _parse_run(table) -> RunSpec:
    if not isinstance(table, dict):
        raise PrefsimError("run: expected a table.")
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    unknown = set(table) - fields
    if unknown:
        raise PrefsimError(f"run: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}.")
    mode = table.get("mode", "exact")
    if mode not in MODES:
        raise PrefsimError(f"run.mode: expected one of {', '.join(MODES)}, got {mode!r}.")
    return RunSpec(**table)


def _parse_rules(tables, game: GameSpec) -> tuple:
    if not tables:
        raise PrefsimError("rule: the spec needs at least one [[rule]] table with a name.")
    if not isinstance(tables, list):
        raise PrefsimError("rule: write rules as [[rule]] tables (an array of tables).")
    rules = []
    names = [t.get("name") if isinstance(t, dict) else None for t in tables]
    for index, table in enumerate(tables):
        where = f"rule #{index + 1}"
        if not isinstance(table, dict) or "name" not in table:
            raise PrefsimError(f"{where}: each [[rule]] needs a name.")
        table = dict(table)
        name = table.pop("name")
        rule_info(name)
        where = f"rule #{index + 1} ({name})"
        label = table.pop("label", None)
        if label is None:
            if names.count(name) > 1:
                raise PrefsimError(f"{where}: two rules are named {name!r}; give each a distinct label.")
            label = name
        if not isinstance(label, str) or not label or any(c in label for c in "/\\\n"):
            raise PrefsimError(f"{where}: label must be a non-empty string without slashes, got {label!r}.")
        parameters = resolve_parameters(name, table, game.tau, where)
        rule = RuleSpec(name=name, label=label, parameters=parameters)
        needs_rewards = rule_info(name).needs_rewards or (name == "apo" and parameters.get("base") == "dpo")
        if needs_rewards and game.kind != "bradley_terry":
            raise PrefsimError(
                f"{where}: the proximal DPO step needs a Bradley–Terry game (game.kind = \"bradley_terry\" "
                f"with rewards), got game.kind = {game.kind!r}."
            )
        for grid_label, point in rule.grid_labels():
            try:
                build_rule(name, {**rule.fixed(), **point})
            except PrefsimError as exc:
                raise PrefsimError(f"{where}, {grid_label}: {exc}") from None
        rules.append(rule)
    labels = [r.label for r in rules]
    duplicates = {l for l in labels if labels.count(l) > 1}
    if duplicates:
        raise PrefsimError(f"rule: labels must be distinct; repeated: {', '.join(sorted(duplicates))}.")
    return tuple(rules)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
