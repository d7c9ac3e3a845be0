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

A list at a ``[game]`` or ``[run]`` field (``arms = [3, 5]``, ``pairs_per_iteration = [100, 400]``) or
at a categorical rule parameter (``schedule = ["constant", "nesterov"]``) is a sweep too, run as
separate compiled runs labelled with the values (:mod:`sim.field_sweep`).

Unknown keys, wrong types and impossible values raise :class:`~bandits.errors.PrefsimError`
naming the field, and so does a ``[game]`` or ``[run]`` key the run would not read (``scale`` without
``construction = "skew_logits"``, ``candidates`` with ``pair_scheme = "lambda_p"``;
:data:`sim.spec_checks.READ_WHEN` says when each key is read).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from bandits.errors import PrefsimError
from bandits.games import GameSpec
from bandits.inputs import as_path
from bandits.pair_schemes import DEFAULT_SCHEME, SCHEME_ALIASES, resolve_scheme
from sim.field_sweep import check_sweep_values, expand_points, field_sweeps, point_name, sweep_label
from sim.limits import check_counts, check_inner_steps
from sim.metrics import METRIC_COLUMNS
from sim.plot_spec import PlotSpec, check_plot_against_rules, check_plot_facets, check_plot_metrics, parse_plot
from sim.rules import RULES, base_of, base_parameters, build_rule, canonical_name, resolve_parameters, rule_info
from sim.rules.apo import FORMS
from sim.rules.dpo import ANCHORS
from sim.sampled.validation import validate_sampled_spec
from sim.spec_checks import (
    check_game_types,
    check_integer_range,
    check_label,
    check_nesting,
    check_rule_tables,
    check_run_name,
    check_sampled_numbers,
    check_seed_block,
    check_unread_keys,
    load_toml,
    plain_values,
    read_spec_text,
    reads_own_problem,
    regular_file,
    unread_keys,
)
from sim.stats import SAMPLED_COLUMNS

PRECISIONS = ("float64", "float32")
MODES = ("exact", "sampled")


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """One ``[[rule]]`` table."""

    name: str
    """Registry name (``prefsim rules`` lists them)."""
    label: str
    """Label in results; defaults to ``name``; required when two rules share a name."""
    parameters: dict
    """Resolved parameters (defaults filled); list values are sweeps."""
    stem: str = ""
    """The ``[[rule]]`` table's own label when ``label`` also names fixed sweep values (``point``)."""
    point: tuple = ()
    """``((field, value), …)``: values of a sweep that runs separately (a categorical rule parameter
    such as ``schedule``, or a ``[game]`` / ``[run]`` field, :mod:`sim.field_sweep`), shown in the labels."""

    def swept(self) -> dict:
        """Parameters given as lists (the grid)."""
        return {k: v for k, v in self.parameters.items() if isinstance(v, list)}

    def fixed(self) -> dict:
        return {k: v for k, v in self.parameters.items() if not isinstance(v, list)}

    def categorical(self) -> tuple:
        """``((parameter, name), …)``: the rule table's own categorical sweep values (``point`` without the
        ``[game]``/``[run]`` fields)."""
        return tuple((key, value) for key, value in self.point if "." not in key)

    def grid_labels(self) -> list[tuple[str, dict]]:
        """``[(label, {swept param: value})]`` over the cartesian product of the swept values."""
        swept = self.swept()
        if not swept:
            return [(self.label, {})]
        names = list(swept)
        out = []
        for values in itertools.product(*(swept[n] for n in names)):
            point = dict(zip(names, values))
            out.append((sweep_label(self.stem or self.label, [*point.items(), *self.point]), point))
        return out


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The ``[run]`` table."""

    mode: str = "exact"
    """``exact``: population updates in closed form; ``sampled``: N labelled pairs per iteration, a
    parametric policy and an optax inner loop (:mod:`sim.sampled`; the keys below apply to it only)."""
    pairs_per_iteration: int = 1000
    """Sampled: number of training pairs N drawn from π_t each iteration (≥ 1), ``data = "online"``.
    With ``data = "offline"`` it only sets the default dataset size (below), so it is refused alongside
    ``offline_pairs``."""
    data: str = "online"
    """Sampled: where the pairs come from (docs/theory.md §D.10, :mod:`sim.sampled.offline`).  ``online``:
    N fresh pairs from the current policy π_t at every iteration.  ``offline``: one dataset of
    ``offline_pairs`` labelled pairs drawn once per seed from π_ref (y, y′ ~ π_ref i.i.d., one
    Bernoulli label, i.e. ``lambda_p``), reused by every iteration; rules ``online_ipo``, ``inpo`` and
    ``mnpo`` only, ``pair_scheme = "lambda_p"`` only.  Its exact counterpart (``distance_to_exact``) is the
    loss's population minimiser on pairs from π_ref: BR_τ(π_ref) ∝ π_ref·exp(Pπ_ref/τ) for
    ``online_ipo``, (1 − τ/η)ℓ_t + (τ/η)ℓ_ref + Pπ_ref/η − norm for ``inpo`` (``mnpo``: ℓ_t replaced by
    its anchor, the mixture of its last iterates)."""
    offline_pairs: int | None = None
    """Sampled, ``data = "offline"``: labelled pairs in the offline dataset (≥ 1); unset:
    ``pairs_per_iteration × iterations``, the number of labels the online run of the same spec uses
    (``queries`` of an offline run: 0 at iteration 0, ``offline_pairs`` from iteration 1 on).  Must
    be left out with ``data = "online"``."""
    pair_scheme: str = DEFAULT_SCHEME
    """Sampled (the same default as an LLM rule table's ``pairs``): ``lambda_p`` (i.i.d. pairs from π_t,
    Bernoulli label; population-correct),
    ``best_worst_by_reward`` (formerly ``best_worst_of_k``), ``tournament``, ``sppo_win_rate``,
    ``best_second_by_win_rate`` (COMAL's best vs second best), ``exact_win_rates`` or ``uniform_opponent``
    (:mod:`bandits.oracles`)."""
    candidates: int = 8
    """Sampled: K ≥ 2 candidates per pair for ``best_worst_by_reward`` / ``tournament`` (byes when K is not a
    power of 2, as in the bridge) / ``sppo_win_rate`` / ``best_second_by_win_rate`` (COMAL's code: 5)."""
    self_comparison: bool = True
    """Sampled, ``sppo_win_rate``: include P̂[i][i] = ½ in the win-rate average (the SPPO code)."""
    policy: str = "tabular"
    """Sampled: ``tabular`` logits, ``log_linear`` (π ∝ π_ref·exp(θᵀφ)) or ``mlp``."""
    problem: str = "game"
    """Sampled: ``game`` (the [game] table), ``linear_bradley_terry`` / ``linear_preference_game``
    (a random contextual linear bandit per seed, :mod:`bandits.linear`; K = game.arms, τ = game.tau)
    or ``ring`` (the APO rebuttal's ring task, :mod:`bandits.continuous`; τ = game.tau)."""
    features: str = "one_hot"
    """Sampled, ``problem = "game"``: features φ(y) for log-linear/MLP policies: ``one_hot`` (d = K)
    or ``random`` (unit-norm Gaussian, d = feature_dim, drawn per seed)."""
    feature_dim: int = 4
    """Sampled: feature dimension d of ``random`` features and of the linear problems."""
    contexts: int = 1
    """Sampled, linear problems: number of contexts M (uniform context distribution)."""
    ring_grid: int = 25
    """Sampled, ``problem = "ring"``: grid points per axis (K = ring_grid²)."""
    optimizer: str = "adam"
    """Sampled: inner optimiser ``sgd``, ``adam`` or ``rmsprop`` (optax defaults; fresh state each
    iteration)."""
    learning_rate: float = 0.01
    """Sampled: inner optimiser learning rate (> 0)."""
    inner_steps: int = 50
    """Sampled: inner optimiser steps per iteration; the maximum when ``tolerance`` is set."""
    tolerance: float | None = None
    """Sampled: stop the inner loop when max |∂loss/∂θ| ≤ tolerance (full batch); unset: exactly
    ``inner_steps`` steps."""
    minibatch_size: int | None = None
    """Sampled: pairs per inner step (one shuffle per iteration, blocks in turn; at most the
    iteration's pairs: ``pairs_per_iteration`` online, ``offline_pairs`` offline); unset: full batch."""
    apo_form: str | None = None
    """Deprecated: APO's ``form`` is a rule parameter now (the same in every mode); when set, it is the
    ``form`` of every ``apo`` rule that does not give its own (with a deprecation note)."""
    dpo_reference: str | None = None
    """Deprecated: DPO's ``anchor`` is a rule parameter now; when set, it is the ``anchor`` of every
    ``dpo`` rule (and APO-DPO base) that does not give its own (with a deprecation note)."""
    mlp_width: int = 256
    """Sampled, ``policy = "mlp"``: hidden width."""
    mlp_hidden_layers: int = 1
    """Sampled, ``policy = "mlp"``: number of tanh hidden layers (1 = a two-layer network)."""
    seed_block: int | None = None
    """Both modes: run each ``[[rule]]`` table's seeds as consecutive blocks of this many seeds, one vmapped
    call per block, in every run of the spec, sharded or not (the last block holds the rest, padded with
    copies of its last seed so that it reuses the compiled call); unset: all seeds in one call.  A block is
    also a unit of work: ``--resume`` reuses finished blocks (``parts/<label>@block-<i>.csv``), ``--shard
    I/N`` deals (table, block) parts (:mod:`sim.shards`), and the memory estimate counts one block's
    trajectories.  A seed's numbers depend on the block size (XLA computes a batch as a whole: ~1e-15 from
    the unblocked run), never on the shard split.  An integer ≥ 1; the number of seeds or more gives one
    block, the unblocked run's numbers."""


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
    plot: PlotSpec = dataclasses.field(default_factory=PlotSpec, compare=False)
    """The ``[plot]`` table (:mod:`sim.plot_spec`); figures only, not part of the fingerprint."""
    field_sweep: tuple = ()
    """``((field, values), …)``: the ``[game]``/``[run]`` fields given as lists (:mod:`sim.field_sweep`);
    the spec's game, run and rules are then those of its first point."""
    points: tuple = dataclasses.field(default=(), compare=False)
    """With ``field_sweep``: one spec per combination of the swept values, each run on its own."""
    point: tuple = ()
    """In a point's spec: ``((field, value), …)``, the swept values it runs."""


TOP_LEVEL_KEYS = {
    "iterations",
    "seeds",
    "precision",
    "record_every",
    "game",
    "rule",
    "run",
    "name",
    "description",
    "plot",
}


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a TOML spec file, or the ``manifest.json`` of a run (its ``spec`` is rerun)."""
    return load_spec_and_manifest(path)[0]


def load_spec_and_manifest(path: str | Path) -> tuple[ExperimentSpec, dict | None]:
    """:func:`load_spec`, and for a run's ``manifest.json`` the manifest the spec was read from (else None).

    The file is read once: a rerun that also reads the manifest's record of the code that computed it
    (``prefsim run manifest.json`` compares it with this code) reads it from the same text as the spec it
    reruns, not from a second read that a file changed meanwhile would make disagree with the run."""
    path = as_path(path, "spec file")
    if path.suffix == ".json":
        if not regular_file(path, "spec file"):
            raise PrefsimError(f"spec file {str(path)!r} does not exist.")
        manifest = read_run_manifest(path)
        return parse_spec(manifest["spec"]), manifest
    try:
        data = load_toml(read_spec_text(path), f"spec file {str(path)!r}")
    except tomllib.TOMLDecodeError as exc:
        raise PrefsimError(f"spec file {str(path)!r} is not valid TOML: {exc}.") from None
    return parse_spec(data), None


def read_run_manifest(path: Path) -> dict:
    """A ``manifest.json`` written by ``prefsim run``, read once, with its spec (a table with ``[[rule]]`` entries)
    checked to be there."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrefsimError(
            f"{str(path)!r} is not valid JSON ({exc}); give a spec TOML or a run's manifest.json."
        ) from None
    except RecursionError:  # Python's JSON parser recurses once per level of nesting
        raise PrefsimError(
            f"{str(path)!r} nests arrays or objects hundreds of levels deep, so it is not a run's manifest.json; "
            "give a spec TOML or a run's manifest.json."
        ) from None
    spec = manifest.get("spec") if isinstance(manifest, dict) else None
    if not isinstance(spec, dict) or "rule" not in spec:
        raise PrefsimError(
            f"{str(path)!r} is not the manifest.json of a `prefsim run` with its spec (no spec table with "
            "[[rule]] entries in it); give the spec TOML instead."
        )
    return manifest


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a spec given as a dict (as from ``tomllib``); return an :class:`ExperimentSpec` (one given is
    returned after :func:`check_built_spec`)."""
    if isinstance(data, ExperimentSpec):
        return check_built_spec(data)
    if not isinstance(data, dict):
        raise PrefsimError("spec: expected a table of keys (a TOML document or a dict).")
    check_nesting(data)  # before the recursive walks below, which a table nested hundreds of levels would overflow
    data = plain_values(data)  # NumPy numbers and arrays of a spec built in Python: as TOML gives them
    check_integer_range(data)
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise PrefsimError(
            f"spec: unknown top-level key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}."
        )
    check_run_name(data)

    sweeps = field_sweeps(data)
    if sweeps:
        return _parse_field_sweep(data, sweeps)
    spec = _parse_point(data)
    check_plot_facets(spec.plot, [])
    return spec


def check_built_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` unchanged, after checking the fields of an :class:`ExperimentSpec` built in Python (not parsed from
    a table) as the parser checks a table's: an iteration count of -1 or "3", no seeds or no rules, an unknown
    precision or a dict for the game were otherwise met by NumPy's, pandas' or an attribute error deep in the run,
    or ran.  Its game is validated when it is built (:func:`bandits.games.build_game`), its rules' parameters when
    the rules are."""
    _check_iterations(spec.iterations)
    seeds = spec.seeds
    if not isinstance(seeds, tuple) or not seeds or not all(_is_int(seed) and 0 <= seed < 2**63 for seed in seeds):
        raise PrefsimError(
            "seeds: expected a non-empty tuple of integers ≥ 0 and below 2⁶³ (as a TOML file's; e.g. "
            f"tuple(range(20))), got {seeds!r}."
        )
    if len(set(seeds)) != len(seeds):
        raise PrefsimError("seeds: the tuple has repeated seeds.")
    check_counts(spec.iterations, len(seeds))
    _check_precision(spec.precision)
    _check_record_every(spec.record_every)
    for field, kind in (("game", GameSpec), ("run", RunSpec)):
        if not isinstance(getattr(spec, field), kind):
            raise PrefsimError(
                f"{field}: expected a {kind.__module__}.{kind.__name__} (or give the spec as a dict), got "
                f"{type(getattr(spec, field)).__name__}."
            )
    if not isinstance(spec.rules, tuple) or not spec.rules or not all(isinstance(r, RuleSpec) for r in spec.rules):
        raise PrefsimError(
            "rules: expected a non-empty tuple of sim.spec.RuleSpec (as parse_spec makes them from [[rule]] tables), "
            f"got {spec.rules!r}."
        )
    return spec


def _check_iterations(iterations: object) -> None:
    """``iterations``: an integer ≥ 1 (a table's key or an :class:`ExperimentSpec`'s field)."""
    if not _is_int(iterations) or iterations < 1:
        raise PrefsimError(f"iterations: expected an integer ≥ 1, got {iterations!r}.")


def _check_precision(precision: object) -> None:
    """``precision``: one of :data:`PRECISIONS`."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise PrefsimError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}.")


def _check_record_every(record_every: object) -> None:
    """``record_every``: absent (None: the default recording) or an integer ≥ 1."""
    if record_every is not None and (not _is_int(record_every) or record_every < 1):
        raise PrefsimError(f"record_every: expected an integer ≥ 1, got {record_every!r}.")


def _parse_point(data: dict) -> ExperimentSpec:
    """A spec without ``[game]``/``[run]`` sweeps (whole, or one point of a sweep), its top-level keys checked."""
    iterations = data.get("iterations")
    _check_iterations(iterations)
    seeds = data.get("seeds", 1)
    check_counts(iterations, seeds if _is_int(seeds) else len(seeds) if isinstance(seeds, list) else 0)
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
    _check_precision(precision)
    record_every = data.get("record_every")
    _check_record_every(record_every)

    game_table = _game_table(data.get("game"))
    run = _parse_run(data.get("run", {}))
    given, settings = _key_settings(data)
    check_unread_keys(given, [("", unread_keys(given, settings))])
    game = _parse_game(game_table, run)
    check_seed_block(run.seed_block)
    if run.mode == "sampled":
        run = dataclasses.replace(run, pair_scheme=resolve_scheme(run.pair_scheme, "sampled", "run.pair_scheme"))
    check_rule_tables(data.get("rule"))
    rules = _parse_rules(data.get("rule"), game, run.mode, _run_level_rule_defaults(run))
    plot = parse_plot(data.get("plot"))
    check_plot_against_rules(plot, [label for rule in rules for label, _ in rule.grid_labels()])
    check_plot_metrics(plot, METRIC_COLUMNS + (SAMPLED_COLUMNS if run.mode == "sampled" else ()), run.mode)
    if (
        run.mode == "sampled"
        and run.data == "offline"
        and run.offline_pairs is None
        and _is_int(run.pairs_per_iteration)
    ):
        # the offline dataset holds as many labels as the online run of the same spec draws
        run = dataclasses.replace(run, offline_pairs=run.pairs_per_iteration * int(iterations))
    if run.mode == "sampled":
        validate_sampled_spec(run, game, rules)
        check_sampled_numbers(run)
        check_inner_steps(int(iterations), run.inner_steps)
    _check_history_windows(rules, int(iterations))
    return ExperimentSpec(
        iterations=int(iterations),
        seeds=seeds,
        game=game,
        rules=rules,
        precision=precision,
        record_every=record_every,
        run=run,
        raw=data,
        plot=plot,
    )


def _parse_field_sweep(data: dict, sweeps: tuple) -> ExperimentSpec:
    """A spec whose ``[game]``/``[run]`` tables sweep fields: every point parsed on its own, its rules
    labelled with the point's values (``inpo[game.tau=0.1]``); the first point stands for the spec."""
    expanded = [(point, point_name(point), one) for point, one in expand_points(data, sweeps)]
    # a key given explicitly must be read at some point (a swept one at every point); the points that do
    # not read a fixed key run without it
    unread = [(name, unread_keys(*_key_settings(one))) for _, name, one in expanded]
    drops = check_unread_keys(_key_settings(data)[0], unread, {field for field, _ in sweeps})
    points = []
    for (point, name, one), drop in zip(expanded, drops):
        for key in drop:
            table, field = key.split(".", 1)
            del one[table][field]
        try:
            parsed = _parse_point(one)
        except PrefsimError as exc:
            raise PrefsimError(f"sweep point {name}: {exc}") from None
        rules = []
        for index, rule in enumerate(parsed.rules):
            stem = rule.stem or rule.label
            label = check_label(sweep_label(stem, rule.point + point), f"rule #{index + 1} ({rule.name}) at {name}")
            rules.append(dataclasses.replace(rule, label=label, stem=stem, point=rule.point + point))
        points.append(dataclasses.replace(parsed, rules=tuple(rules), point=point))
    plot = parse_plot(data.get("plot"))
    check_plot_against_rules(plot, [label for p in points for rule in p.rules for label, _ in rule.grid_labels()])
    check_plot_facets(plot, [field for field, _ in sweeps])
    return dataclasses.replace(points[0], raw=data, plot=plot, field_sweep=sweeps, points=tuple(points), point=())


def _game_table(table) -> dict:
    """The ``[game]`` table with its keys and the type of ``kind`` checked (:func:`_parse_game` checks the values)."""
    if table is None:
        raise PrefsimError(
            "game: the spec needs a [game] table (kind = matrix | bradley_terry | bt_mixture | cyclic | random)."
        )
    if not isinstance(table, dict):
        raise PrefsimError("game: expected a table.")
    fields = {f.name for f in dataclasses.fields(GameSpec)}
    unknown = set(table) - fields
    if unknown:
        raise PrefsimError(f"game: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}.")
    check_game_types(table)
    return table


def _parse_game(table: dict, run: RunSpec) -> GameSpec:
    """The :class:`GameSpec` of a checked ``[game]`` table; a sampled run of a problem that builds its own
    preferences (the ring, the linear bandits) reads only τ and K of it, so only they are validated."""
    try:
        spec = GameSpec(**table)
    except TypeError as exc:
        raise PrefsimError(f"game: {exc}.") from None
    if reads_own_problem(run.mode, run.problem):
        return spec.validate_tau_and_arms()
    return spec.validate()


def _parse_run(table) -> RunSpec:
    if not isinstance(table, dict):
        raise PrefsimError("run: expected a table.")
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    unknown = set(table) - fields
    if unknown:
        raise PrefsimError(f"run: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}.")
    mode = table.get("mode", "exact")
    if not isinstance(mode, str) or mode not in MODES:
        raise PrefsimError(f"run.mode: expected one of {', '.join(MODES)}, got {mode!r}.")
    return RunSpec(**table)


#: The deprecated ``[run]`` keys that give a rule parameter's default: ``(run key, rule parameter)``.
RUN_LEVEL_RULE_DEFAULTS = (("apo_form", "form"), ("dpo_reference", "anchor"))


def _key_settings(data: dict) -> tuple[dict, dict]:
    """``(given, settings)`` of a raw spec (or one point of a sweep) for :func:`sim.spec_checks.unread_keys`:
    the ``[game]`` and ``[run]`` keys it gives (``{"game.scale": 5.0}``), and every setting by name with the
    defaults filled (the pair scheme by its current name), plus the rule parameters some ``[[rule]]`` table
    takes from the deprecated ``[run]`` keys (``"rule.run_defaults"``)."""
    tables = {name: data.get(name) if isinstance(data.get(name), dict) else {} for name in ("game", "run")}
    given = {f"{name}.{key}": value for name, table in tables.items() for key, value in table.items()}
    settings = {f"game.{f.name}": tables["game"].get(f.name, f.default) for f in dataclasses.fields(GameSpec)}
    settings.update({f"run.{f.name}": tables["run"].get(f.name, f.default) for f in dataclasses.fields(RunSpec)})
    scheme = settings["run.pair_scheme"]
    settings["run.pair_scheme"] = SCHEME_ALIASES.get(scheme, scheme) if isinstance(scheme, str) else scheme
    taken = set()
    for table in data.get("rule") if isinstance(data.get("rule"), list) else []:
        name = table.get("name") if isinstance(table, dict) else None
        if isinstance(name, str) and name in RULES:
            rest = {k: v for k, v in table.items() if k != "name"}
            taken.update(
                p for _, p in RUN_LEVEL_RULE_DEFAULTS if p not in rest and _takes_parameter(RULES[name], rest, p)
            )
    settings["rule.run_defaults"] = frozenset(taken)
    return given, settings


def _run_level_rule_defaults(run) -> dict:
    """Rule parameters given by the deprecated ``[run]`` keys: ``{rule-table key: value}``."""
    defaults = {}
    for key, parameter in RUN_LEVEL_RULE_DEFAULTS:
        value = getattr(run, key)
        choices = FORMS if key == "apo_form" else ANCHORS
        if value is not None and value not in choices:
            raise PrefsimError(f"run.{key}: expected one of {', '.join(choices)}, got {value!r}.")
        if value is not None:
            print(
                f"note: run.{key} is deprecated: give each rule's {parameter!r} parameter instead (the same in "
                f"exact, sampled and LLM specs); run.{key} = {value!r} applies to the rules that have that parameter.",
                file=sys.stderr,
            )
            defaults[parameter] = value
    return defaults


def _parse_rules(tables, game: GameSpec, mode: str = "exact", run_defaults: dict | None = None) -> tuple:
    if tables is None or isinstance(tables, list) and not tables:
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
        if isinstance(table["name"], list):
            raise PrefsimError(
                f"{where}: name cannot be a list ({table['name']!r}); each [[rule]] table is one rule: write one "
                "table per rule (their parameters may be lists)."
            )
        if not isinstance(table["name"], str):
            raise PrefsimError(f"{where}: name must be a rule's name in quotes, got {table['name']!r}.")
        name = canonical_name(table.pop("name"), f"rule #{index + 1}", mode)
        info = rule_info(name)
        where = f"rule #{index + 1} ({name})"
        for key, value in (run_defaults or {}).items():
            if _takes_parameter(info, table, key) and key not in table:
                table[key] = {"reference": "reference"}.get(value, value) if key == "anchor" else value
        label = table.pop("label", None)
        if label is None:
            if names.count(name) > 1:
                raise PrefsimError(f"{where}: two rules are named {name!r}; give each a distinct label.")
            label = name
        check_label(label, where)
        for point in _categorical_points(table, where):
            rule = _parse_rule(name, label, {**table, **dict(point)}, point, game, mode, where)
            for grid_label, grid_point in rule.grid_labels():
                try:
                    build_rule(name, {**rule.fixed(), **grid_point})
                except PrefsimError as exc:
                    # the rule's own message starts "rule <name>: ", which ``where`` says already
                    context = where if grid_label == rule.label else f"{where}, {grid_label}"
                    raise PrefsimError(f"{context}: {str(exc).removeprefix(f'rule {name}: ')}") from None
            rules.append(rule)
    labels = [r.label for r in rules]
    duplicates = {l for l in labels if labels.count(l) > 1}
    if duplicates:
        raise PrefsimError(f"rule: labels must be distinct; repeated: {', '.join(sorted(duplicates))}.")
    # the result table's rule column: a sweep that repeats a value (eta = [1, 1.0]) or a label that
    # equals another rule's grid label would give two runs the same rows
    results = [label for r in rules for label, _ in r.grid_labels()]
    repeated = {l for l in results if results.count(l) > 1}
    if repeated:
        raise PrefsimError(
            f"rule: each run needs its own label in the results, but {', '.join(sorted(repeated))} appears twice "
            f"(a sweep list repeats a value, or a label equals another rule's sweep label)."
        )
    return tuple(rules)


def _categorical_points(table: dict, where: str) -> list[tuple]:
    """``[((parameter, name), …)]``: one point per combination of the parameters ``table`` gives as lists
    of names (``schedule = ["constant", "nesterov"]``), which run as separate rule tables; ``[()]`` when
    none is (numeric lists stay in the table: they are vmapped)."""
    swept = [
        (key, check_sweep_values(f"{where}: {key}", value))
        for key, value in table.items()
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    ]
    keys = [key for key, _ in swept]
    return [tuple(zip(keys, values)) for values in itertools.product(*(values for _, values in swept))]


def _parse_rule(name: str, label: str, table: dict, point: tuple, game: GameSpec, mode: str, where: str) -> RuleSpec:
    """One rule table (at one point of its categorical sweep) with its parameters resolved."""
    rule_label = check_label(sweep_label(label, point), where)
    if point:
        where = f"{where}, {rule_label}"
    parameters = resolve_parameters(name, table, game.tau, where)
    rule = RuleSpec(name=name, label=rule_label, parameters=parameters, stem=label if point else "", point=point)
    needs_rewards = rule_info(base_of(name, parameters)).needs_rewards
    if needs_rewards and game.kind != "bradley_terry" and mode != "sampled":
        raise PrefsimError(
            f'{where}: the proximal DPO step needs a Bradley–Terry game (game.kind = "bradley_terry" '
            f"with rewards), got game.kind = {game.kind!r}."
        )
    return rule


def _check_history_windows(rules: tuple, iterations: int) -> None:
    """Refuse a rule whose window of past iterates (MNPO's ``history``) is longer than the run: at most
    T + 1 iterates exist, and a longer window costs memory and time per iteration for nothing."""
    for index, rule in enumerate(rules):
        definition = rule_info(base_of(rule.name, rule.parameters))
        history = definition.data.history if definition.data is not None else None
        if history is None:
            continue
        points = [{**rule.fixed(), **point} for _, point in rule.grid_labels()]  # concrete values at every point
        length = max(history.length(base_parameters(rule.name, parameters)) for parameters in points)
        if length > iterations + 1:
            raise PrefsimError(
                f"rule #{index + 1} ({rule.label}): a window of {length} past iterates is longer than the run "
                f"(iterations = {iterations}: π_0 … π_T are {iterations + 1}); use at most {iterations + 1}."
            )


def _takes_parameter(info, table: dict, key: str) -> bool:
    """Whether the rule (or a wrapper's base named in ``table``) has parameter ``key``."""
    if info.parameter(key) is not None:
        return True
    base = table.get("base", "dpo")
    return info.wrapper and isinstance(base, str) and base in RULES and RULES[base].parameter(key) is not None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
