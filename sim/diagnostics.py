"""Degenerate-run checks: what a run's numbers cannot show, said once, in the output and the manifest.

:func:`run_warnings` looks at a finished run table and its spec and returns one message per problem:

* the initial policy π_0 is already the target π* (e.g. a cyclic game with a uniform reference):
  every rule starts at its fixed point and every curve is flat;
* all seeds give identical results (nothing in the game is drawn at random in exact mode), so the
  confidence bands have zero width;
* fewer than :data:`FEW_SEEDS` seeds: the percentile-bootstrap 95% bands cover markedly less than 95%
  (one seed: no band at all);
* a rule's τ differs from the game's τ, while the metrics measure the game's τ-regularised Nash;
* a metric reaches its rounding floor (:func:`metric_floor`: the precision's, or for ``tv_to_optimum`` the
  accuracy of π* at the game's τ when that is higher): values there are rounding, not convergence (figures stop their
  fits there, summaries print "≈ 0");
* a metric holds ±inf (a number left the precision's range): its means and bands are infinite;
* a metric that ``[plot] metrics`` asks for has no value in the run, so no figure is drawn for it;
* a rule's ``reference_every`` is at least the run's iterations: its reference never moves.

:func:`absent_metrics_to_nan` enforces "a metric applies to the whole run or is absent": a metric
that is NaN at every iteration after 0 of a rule × seed is NaN at iteration 0 too (sampled mode
recorded ``regret`` = 0.0 at t = 0 on games without rewards).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from sim.nash_tolerance import STEP_TOLERANCE
from sim.reference_schedule import never_advances
from sim.stats import has_data, is_field_column, metric_columns

if TYPE_CHECKING:  # a type only: figure processes import this module without the rules and JAX
    from sim.spec import ExperimentSpec

#: Multiples of machine epsilon below which a metric's value is taken as rounding.
FLOOR_EPSILONS = 100.0
#: Metrics that measure a distance to convergence (≥ 0, 0 at the target): the floor applies to them, and
#: figures fit their rates (:func:`sim.plotting.choose_fit`).  ``kl_to_unregularised_nash`` is one too:
#: rules whose reference moves (comal, mpo) approach π⁰, the others level off at KL(π⁰‖π*_τ) > 0.
CONVERGENCE_METRICS = (
    "duality_gap",
    "exploitability",
    "kl_to_nash",
    "suboptimality",
    "tv_to_optimum",
    "distance_to_exact",
    "kl_to_unregularised_nash",
)
#: τ at which :func:`metric_floor` takes π*'s error when it is not told the game's τ: the bound of
#: :func:`target_error` there is 1.01e-12 (the floor of ``tv_to_optimum`` before it depended on τ).  It is
#: conservative for τ ≥ 0.01 (above π*'s error, so a converging TV is called floored early rather than π*'s
#: error fitted as a rate) and too low below; every caller that knows the game's τ passes it.
DEFAULT_FLOOR_TAU = 0.01
#: π*'s error at τ = 0 (the LP Nash π⁰, not derived here): the floor kept from before floors depended on τ.
TARGET_ERROR = 1e-12
#: Metrics linear in π*'s error (and their ``_mixture`` twins): their floor is at least :func:`target_error`.
TARGET_LINEAR_METRICS = ("tv_to_optimum",)


def target_error(tau: float | None = None) -> float:
    """How far, in total variation, the computed π*_τ can be from the exact one: STEP_TOLERANCE·(τ + 1)/τ.

    :func:`sim.nash.regularised_nash` stops once one extragradient step moves log π by
    δ = Σ_y π(y)|Δ log π(y)| ≤ :data:`sim.nash_tolerance.STEP_TOLERANCE` (1e-14).  Its step s = 1/(τ + 2L),
    L = max|P − ½| ≤ ½, contracts toward π* by a factor 1 − sτ per step (the regularised game is τ-strongly
    monotone), so the steps still to come sum to at most δ/(sτ) = δ(τ + 2L)/τ ≤ δ(τ + 1)/τ, and
    TV = ½Σ|π − π*| ≈ ½Σ π|log π − log π*| ≤ ½·δ(τ + 1)/τ.  Measured against π* refined by 2×10⁵ further steps
    (K = 10 random games, two seeds each), the error is 3–4e-15 at τ = 1, 3–5e-14 at 0.1, 1.6–3.6e-13 at
    0.01 and up to 2.45e-12 at 0.002: up to 0.49·δ(τ + 1)/τ, at the ½ of the estimate.  The bound drops
    that ½, a safety factor of 2 over every measurement (2.04 at τ = 0.002): 2e-14 at τ = 1, 1.1e-13 at
    0.1, 1.01e-12 at 0.01, 5.01e-12 at 0.002 (docs/theory.md §C.1).

    ``tau``: the game's τ; ``None``: :data:`DEFAULT_FLOOR_TAU`; τ ≤ 0 (π* is the LP Nash): :data:`TARGET_ERROR`.
    """
    tau = DEFAULT_FLOOR_TAU if tau is None else float(tau)
    if not tau > 0.0:
        return TARGET_ERROR
    return STEP_TOLERANCE * (tau + 1.0) / tau


def precision_floor(precision: str) -> float:
    """Values at or below ``FLOOR_EPSILONS`` × machine epsilon of ``precision`` are rounding (2.2e-14 in float64)."""
    return float(FLOOR_EPSILONS * np.finfo(np.float32 if precision == "float32" else np.float64).eps)


def metric_floor(metric: str, precision: str, tau: float | None = None) -> float:
    """The level at or below which ``metric``'s values are rounding, not convergence: :func:`precision_floor`,
    raised to π*'s error :func:`target_error` at the game's ``tau`` for ``tv_to_optimum`` (and its
    ``_mixture`` twin), which measures |π − π*| linearly and so cannot resolve distances below π*'s own
    error: in float64 2.2e-14 at τ = 1 (the precision's, above 2e-14), 1.1e-13 at τ = 0.1, 5.01e-12 at
    τ = 0.002 (the float32 floor, 1.2e-5, is higher than any of these).  ``tau`` ``None``: the game's τ is
    unknown, :data:`DEFAULT_FLOOR_TAU` is assumed.  A rule that converges reaches the exact fixed point to
    rounding, so its TV to the computed π* stops at π*'s error: in examples/default.toml (τ = 0.1) every
    converged rule of a seed sits at the same 2.9e-14 to 5.8e-14, seed by seed, far above the rounding of
    the sum (~K·eps = 2e-15), which would differ between rules and iterations.  KL(π*‖π) and the duality
    gap are quadratic in that error and keep the precision's floor."""
    floor = precision_floor(precision)
    if metric.removesuffix("_mixture") in TARGET_LINEAR_METRICS:
        return max(floor, target_error(tau))
    return floor


def rule_taus(table: pd.DataFrame, tau: float | None = None) -> dict[str, float | None]:
    """Rule label → the game's τ of its rows (the τ its metrics measure against): the table's ``game.tau``
    column where a sweep of it put one (each label names its value), else ``tau`` (``None``: unknown)."""
    if "game.tau" not in table.columns:
        return {str(rule): tau for rule in pd.unique(table["rule"])}
    values = table.drop_duplicates("rule").set_index("rule")["game.tau"]
    return {str(rule): (float(value) if pd.notna(value) else tau) for rule, value in values.items()}


def floor_note(
    precision: str, metrics: list[str] | tuple[str, ...] = (), tau: float | Iterable[float] | None = None
) -> str:
    """The floor in words: "the float64 rounding floor (2.2e-14)", naming the higher floor of any of ``metrics``
    that has one (:func:`metric_floor`) at the game's ``tau`` (one τ, the τs of a sweep, or ``None``, unknown):
    "the float64 rounding floor (2.2e-14; tv_to_optimum: 1.1e-13, the accuracy of π*)"; several τs give the
    range of floors, an unknown τ the formula ("1e-14·(τ + 1)/τ")."""
    floor = precision_floor(precision)
    taus = [tau] if tau is None or isinstance(tau, (int, float)) else list(dict.fromkeys(tau)) or [None]
    raised = {}
    for metric in dict.fromkeys(metrics):
        values = sorted({metric_floor(metric, precision, t) for t in taus})
        if values[-1] <= floor:
            continue
        if None in taus:
            raised[metric] = f"{STEP_TOLERANCE:.0e}·(τ + 1)/τ"
        elif len(values) == 1:
            raised[metric] = f"{values[0]:.1e}"
        else:
            raised[metric] = f"{values[0]:.1e} to {values[-1]:.1e} by τ"
    extra = "".join(f"; {m}: {value}" for m, value in raised.items())
    return f"the {precision} rounding floor ({floor:.1e}{extra}{', the accuracy of π*' if raised else ''})"


#: A curve below the floor that keeps falling steadily, by this factor overall, is not at the floor.
FLOOR_ESCAPE = 1e-2
#: "Steadily": at least this fraction of its steps below the floor go down (rounding noise jitters).
FLOOR_ESCAPE_MONOTONE = 0.9
#: ... over at least this many recorded values from the crossing on: three or four values of rounding noise
#: (a seed mean of 1e-16, 4e-17, 0) fall "steadily" by chance, and a sweep records few iterations.
FLOOR_ESCAPE_POINTS = 5


def floor_iteration(iterations: ArrayLike, values: ArrayLike, floor: float) -> int | None:
    """First iteration > 0 from which a curve sits at the rounding floor, or ``None``.

    The curve is at the floor from the first iteration where it is ≤ ``floor`` (or exactly 0),
    unless from there on it keeps falling steadily (over at least :data:`FLOOR_ESCAPE_POINTS` recorded values,
    at least :data:`FLOOR_ESCAPE_MONOTONE` of its steps go down, and it ends below :data:`FLOOR_ESCAPE` × where
    it crossed): a metric computed without cancellation (e.g. TV to a point mass, a sum of tiny
    probabilities) can legitimately go far below machine epsilon, while rounding noise jitters around it.
    """
    iterations = np.asarray(iterations, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    below = (iterations > 0) & np.isfinite(values) & (values <= floor)
    if not below.any():
        return None
    first = int(np.argmax(below))
    after = values[first:]
    after = after[np.isfinite(after)]
    if after.size >= FLOOR_ESCAPE_POINTS and np.all(after > 0):
        falling = np.mean(np.diff(after) < 0)
        if falling >= FLOOR_ESCAPE_MONOTONE and after[-1] < FLOOR_ESCAPE * after[0]:
            return None
    return int(iterations[first])


def is_convergence_metric(metric: str) -> bool:
    """Whether ``metric`` (or its ``_mixture`` twin) measures a distance to convergence."""
    return metric.removesuffix("_mixture") in CONVERGENCE_METRICS


def absent_metrics_to_nan(table: pd.DataFrame) -> pd.DataFrame:
    """Set iteration 0 to NaN for metrics that are NaN at every later iteration of a rule × seed."""
    ids = {"rule", "seed", "iteration"}
    metrics = [
        c for c in table.columns if c not in ids and not is_field_column(c) and pd.api.types.is_float_dtype(table[c])
    ]
    if not metrics or "iteration" not in table.columns:
        return table
    later = table[table["iteration"] > 0]
    if later.empty:
        return table
    # absent: no finite-or-infinite value after iteration 0, i.e. no non-NaN one (one cythonised any per group)
    absent = ~later[metrics].notna().groupby([later["rule"], later["seed"]], sort=False).any()
    table = table.copy()
    start = table["iteration"] == 0
    keys = pd.MultiIndex.from_frame(table.loc[start, ["rule", "seed"]])
    for metric in metrics:
        mask = absent[metric].reindex(keys).fillna(False).to_numpy(dtype=bool)
        rows = table.index[start][mask]
        table.loc[rows, metric] = np.nan
    return table


def _initial_is_target(table: pd.DataFrame, floor: float) -> bool:
    if "kl_to_nash" not in table.columns:
        return False
    first = table.loc[table["iteration"] == 0, "kl_to_nash"].to_numpy(dtype=np.float64)
    return bool(first.size) and bool(np.all(np.isfinite(first) & (first <= floor)))


def _seeds_identical(table: pd.DataFrame, metrics: list[str]) -> bool:
    if table["seed"].nunique() < 2 or not metrics:
        return False
    extremes = table.groupby(["rule", "iteration"], sort=False)[metrics].agg(["max", "min"])
    for metric in metrics:
        spread = (extremes[(metric, "max")] - extremes[(metric, "min")]).to_numpy(dtype=np.float64)
        if np.any(np.isfinite(spread) & (spread != 0)):
            return False
    return True


def floor_reached(table: pd.DataFrame, precision: str, tau: float | None = None) -> dict[str, list[str]]:
    """Metric → rule labels whose mean last-iterate curve reaches the metric's floor (:func:`metric_floor`, at
    each rule's game τ: :func:`rule_taus` of ``table`` and ``tau``) at some iteration > 0."""
    reached: dict[str, list[str]] = {}
    later = table[table["iteration"] > 0]
    taus = rule_taus(table, tau)
    for metric in [c for c in table.columns if c in CONVERGENCE_METRICS]:
        means = later.groupby(["rule", "iteration"], sort=False)[metric].mean()
        rules = [
            rule
            for rule, curve in means.groupby(level="rule", sort=False)
            if floor_iteration(
                curve.index.get_level_values("iteration"),
                curve.to_numpy(),
                metric_floor(metric, precision, taus.get(str(rule), tau)),
            )
            is not None
        ]
        if rules:
            reached[metric] = rules
    return reached


#: Fewer seeds than this get a warning: with S seeds a percentile-bootstrap 95% interval of a mean covers
#: it about 51% of the time at S = 2, 79% at 4, 89% at 8, 91% at 10 and 93% at 20 (normal data; measured
#: in tests/test_stats.py, docs/theory.md §D.1).
FEW_SEEDS = 10


def few_seeds(seeds: int) -> str | None:
    """The warning for a run over ``seeds`` seeds (``None`` from :data:`FEW_SEEDS` on); a sweep says it once,
    not once per point (:func:`sim.sweep_runs.run_field_sweep`)."""
    if seeds == 1:
        return (
            "a single seed: the figures and the summary show that seed's values with no interval, so nothing "
            f"estimates the spread over games and sampling; use ≥ {FEW_SEEDS} seeds."
        )
    if seeds < FEW_SEEDS:
        return (
            f"{seeds} seeds: the 95% bands and intervals are percentile bootstraps over seeds, which with few "
            "seeds cover less than they say (a normal mean: ≈ 79% at 4 seeds, 89% at 8, 91% at 10, 93% at 20); "
            f"use ≥ {FEW_SEEDS} seeds, better 20, before reading an interval as 95%."
        )
    return None


def plot_metric_warnings(table: pd.DataFrame, plot: Any) -> list[str]:
    """The warning for ``[plot] metrics`` (``plot``: a :class:`sim.plot_spec.PlotSpec` or ``None``) that have
    no value after iteration 0 in ``table``, so no figure is drawn for them (empty when all have values).
    A sweep checks its combined table (its points' specs do not carry the ``[plot]`` table)."""
    chosen = [] if plot is None else list(plot.metrics or ())
    empty = [metric for metric in chosen if not has_data(table, metric)]
    if not empty:
        return []
    return [
        f"plot.metrics: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no value after iteration 0 in "
        "this run (not every metric applies to every game: suboptimality needs rewards), so no figure is drawn for "
        f"{'it' if len(empty) == 1 else 'them'}; metrics with values: "
        f"{', '.join(m for m in metric_columns(table) if has_data(table, m)) or 'none'}."
    ]


def run_warnings(table: pd.DataFrame, spec: ExperimentSpec) -> list[str]:
    """The degenerate-run messages of the module docstring for a finished run (empty when none)."""
    messages = []
    floor = precision_floor(spec.precision)
    problem = getattr(spec.run, "problem", "game")
    at_target = problem == "game" and _initial_is_target(table, floor)
    if at_target:
        messages.append(
            "the initial policy π_0 is already the target π* on every seed (KL(π*‖π_0) ≤ "
            f"{floor:.1e}): every rule starts at its fixed point, so every curve is flat and every rate "
            'meaningless (e.g. a cyclic game with a uniform reference); set game.reference = "random" or '
            'game.initial = "random".'
        )
    identical = False
    if spec.run.mode == "exact":
        metrics = [m for m in ("exploitability", "kl_to_nash", "max_log_ratio") if m in table.columns]
        identical = _seeds_identical(table, metrics)
        if identical:
            messages.append(
                f"all {table['seed'].nunique()} seeds give identical results (exact mode draws nothing at random "
                "and this game has a fixed P, reference and initial policy), so the confidence bands have zero "
                'width; use a random game (kind = "random", reference = "random" or initial = "random") to '
                "vary the instance over seeds."
            )
    few = None if identical or at_target or getattr(spec, "point", ()) else few_seeds(len(spec.seeds))
    if few is not None:
        messages.append(few)
    for rule in spec.rules:
        tau = rule.parameters.get("tau")
        if isinstance(tau, list):
            messages.append(
                f"rule {rule.label} sweeps its τ over {', '.join(f'{float(t):g}' for t in tau)} but the game has "
                f"τ = {float(spec.game.tau):g}: duality_gap, kl_to_nash and tv_to_optimum of every point measure the "
                "game's τ-regularised Nash, not the point's τ; to score each τ against its own Nash policy, sweep "
                "game.tau instead (rules whose tau is not given follow it)."
            )
        elif (
            isinstance(tau, (int, float))
            and not isinstance(tau, bool)
            and abs(float(tau) - float(spec.game.tau)) > 1e-12
        ):
            messages.append(
                f"rule {rule.label} has τ = {float(tau):g} but the game has τ = {float(spec.game.tau):g}: "
                "duality_gap, kl_to_nash and tv_to_optimum measure the game's τ-regularised Nash, not the rule's."
            )
    for rule in spec.rules:
        every = rule.parameters.get("reference_every")
        values = every if isinstance(every, list) else [] if every is None else [every]
        still = sorted({int(value) for value in values if never_advances(value, spec.iterations)})
        if still:
            messages.append(
                f"rule {rule.label}: reference_every = {', '.join(map(str, still))} ≥ iterations = {spec.iterations}, "
                "so its reference never moves in this run: it runs as the same rule with a fixed reference."
            )
    messages += plot_metric_warnings(table, getattr(spec, "plot", None))
    infinite = _infinite_metrics(table)
    if infinite:
        listed = "; ".join(f"{rule}: {', '.join(metrics)}" for rule, metrics in infinite.items())
        messages.append(
            f"these curves hold ±inf values: {listed}. A number left the {spec.precision} range (rewards or "
            "1/η too large, or a reference mass too small for its logarithm); their means and bands are "
            "infinite where a seed is, so rescale the game or the rule's parameters."
        )
    game_tau = float(spec.game.tau)
    reached = {} if at_target else floor_reached(table, spec.precision, game_tau)
    if reached:
        by_rule: dict[str, list[str]] = {}
        for metric, rules in reached.items():
            for rule in rules:
                by_rule.setdefault(rule, []).append(metric)
        listed = "; ".join(f"{rule}: {', '.join(metrics)}" for rule, metrics in by_rule.items())
        advice = ' Use precision = "float64" to measure rates further.' if spec.precision == "float32" else ""
        taus = rule_taus(table, game_tau)
        note = floor_note(spec.precision, list(reached), [taus[rule] for rules in reached.values() for rule in rules])
        messages.append(
            f"these curves reach {note}: {listed}. Values there are "
            f"rounding, not convergence; figures stop their fits at the floor and summaries print them as ≈ 0.{advice}"
        )
    return messages


def _infinite_metrics(table: pd.DataFrame) -> dict[str, list[str]]:
    """Rule label → the metric columns with a ±inf value in its rows (empty when there is none)."""
    found: dict[str, list[str]] = {}
    for column in metric_columns(table):
        for rule in pd.unique(table.loc[np.isinf(table[column].to_numpy()), "rule"]):
            found.setdefault(str(rule), []).append(column)
    return found


class DegenerateRunWarning(UserWarning):
    """A run whose numbers cannot show what they seem to (see :func:`run_warnings`)."""


#: What :func:`report_warnings` puts before a message it hands to ``progress``.
WARNING_PREFIX = "warning: "


def report_warnings(messages: list[str], progress: Callable[[str], object] | None = None) -> None:
    """Say each message once: through ``progress`` (the CLI prints ``warning: …``) or as a Python warning."""
    for message in messages:
        if progress is not None:
            progress(f"{WARNING_PREFIX}{message}")
        else:
            warnings.warn(message, DegenerateRunWarning, stacklevel=3)
