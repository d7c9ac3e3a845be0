"""Statistics over seeds for a run table: bootstrap confidence intervals, paired differences, rate fits.

Every function reads the long table of :func:`sim.run` (columns ``rule, seed, iteration`` and one
column per metric) and treats **seeds as the independent replicates** (docs/theory.md §D.1: S ≥ 20 seeds,
mean ± 95% CI, paired differences on the same seeds).

Conventions:

* Confidence intervals are **percentile bootstrap** intervals over seeds: draw ``resamples`` sets of
  S seeds with replacement (one integer matrix of shape (resamples, S), so the whole bootstrap is
  one vectorised NumPy gather), compute the statistic (mean or median) of each resample and report
  the (1 − c)/2 and (1 + c)/2 quantiles, c = ``confidence`` (0.95 by default).  The generator is
  ``numpy.random.default_rng(seed)`` with a fixed ``seed`` (default :data:`DEFAULT_SEED`), so the
  same table gives the same interval every time.
* NaN entries (a metric that does not apply, or a seed without a value) are ignored by the
  statistic (``nanmean`` / ``nanmedian``); a cell with no finite value at all is NaN.
* With a single seed, or when every seed gives the same value (a deterministic game), the interval
  collapses to the point estimate; that is the honest answer, not an error.
* Rate fits (:func:`fit_rate`) regress log(metric) on log(iteration) (``scale="loglog"``, a
  polynomial rate t^slope) or on iteration (``scale="semilog"``, a linear rate e^{slope·t}) per
  seed over a declared window, ignoring points below ``floor`` (the solver's precision: π* is solved
  to a duality gap below 1e-12, so smaller distances are rounding), and bootstrap the mean slope
  over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError

#: Seed of the bootstrap generator (fixed so that intervals are reproducible).
DEFAULT_SEED = 20250101
#: Number of bootstrap resamples.
DEFAULT_RESAMPLES = 2000
#: Default confidence level.
DEFAULT_CONFIDENCE = 0.95
#: Values at or below this are excluded from log-scale rate fits (rounding level of the metrics).
DEFAULT_FLOOR = 1e-12
#: Columns that identify a row rather than measure something.
ID_COLUMNS = ("rule", "seed", "iteration")
#: The columns sampled mode adds (:mod:`sim.sampled.experiment`): oracle queries so far, the distance of the
#: trained policy to the exact update, the inner loop's final loss and its largest gradient entry there.
SAMPLED_COLUMNS = ("queries", "distance_to_exact", "loss", "inner_gradient")
STATISTICS = ("mean", "median")
SCALES = ("loglog", "semilog")


# ----------------------------------------------------------------------------------------------
# bootstrap core


def _statistic(values: np.ndarray, statistic: str, axis: int) -> np.ndarray:
    if statistic not in STATISTICS:
        raise PrefsimError(f"statistic: expected one of {', '.join(STATISTICS)}, got {statistic!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices → NaN, on purpose
        return np.nanmean(values, axis=axis) if statistic == "mean" else np.nanmedian(values, axis=axis)


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.integer, np.floating)):
        raise PrefsimError(f"confidence: expected a level in (0, 1), e.g. 0.95, got {confidence!r}.")
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise PrefsimError(f"confidence: expected a level in (0, 1), e.g. 0.95, got {confidence:g}.")
    return confidence


def _check_resampling(resamples: int, seed: int) -> tuple[int, int]:
    """``(resamples, seed)`` as ints: the number B of bootstrap resamples (an integer ≥ 1) and the generator's
    seed (an integer ≥ 0, what ``numpy.random.default_rng`` takes)."""
    for name, value, least in (("resamples", resamples, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise PrefsimError(f"bootstrap {name}: expected an integer ≥ {least}, got {value!r}.")
    return int(resamples), int(seed)


#: Bootstrap replicates are computed in blocks of about this many gathered numbers (values[indices] of
#: 2000 resamples × 256 seeds × 55 iterations is 225 MB at once; blocks stay in the CPU's caches).
REPLICATE_BLOCK_NUMBERS = 1 << 20


#: The replicates of at most this many numbers (resamples × columns) are held at once: 2000 resamples of
#: a 100-rule head-to-head table's 10 000 cells would be 160 MB, of 400 rules' 2.6 GB.
PERCENTILE_BLOCK_NUMBERS = 1 << 22


def _replicates(
    values: np.ndarray, indices: np.ndarray, statistic: str, counts: np.ndarray | None = None
) -> np.ndarray:
    """``_statistic(values[indices], statistic, axis=1)``, the same numbers, computed block by block.

    Each replicate reduces its own (S, ...) slice along the seeds, so blocks of resamples give results
    identical to one gather.  Without NaNs the mean is ``np.mean`` (``np.nanmean`` sums the same
    numbers in the same order after copying the array to replace NaNs, and divides by the same count).
    ``counts``: :func:`_draw_counts` of ``indices`` when the caller has it.
    """
    per_resample = max(1, int(np.prod(values.shape, dtype=np.int64)))
    block = max(1, REPLICATE_BLOCK_NUMBERS // per_resample)
    if statistic == "mean" and np.all(np.isfinite(values)):
        # The mean of resample b is Σ_s c_bs·v_s / S with c_bs the times seed s was drawn: one matrix
        # product, equal to the gathered means up to rounding (~1e-15 relative), ~20× faster at 256 seeds
        # (a seed of value ±inf not drawn would add 0·inf = NaN, so those take the gather below).
        counts = _draw_counts(indices, values.shape[0]) if counts is None else counts
        flat = values.reshape(values.shape[0], -1)
        return (counts @ flat / values.shape[0]).reshape((indices.shape[0],) + values.shape[1:])
    plain_mean = statistic == "mean" and not np.isnan(values).any()
    parts = []
    for start in range(0, indices.shape[0], block):
        gathered = values[indices[start : start + block]]
        parts.append(np.mean(gathered, axis=1) if plain_mean else _statistic(gathered, statistic, axis=1))
    return np.concatenate(parts, axis=0)


def _draw_counts(indices: np.ndarray, count: int) -> np.ndarray:
    """(B, S) float64: how many times each of the ``count`` seeds is in each resample (row) of ``indices``."""
    rows = indices.shape[0]
    flat = (np.arange(rows)[:, None] * count + indices).ravel()
    return np.bincount(flat, minlength=rows * count).reshape(rows, count).astype(np.float64)


@functools.lru_cache(maxsize=8)
def resample_draws(count: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap's resamples of ``count`` seeds: ``(indices, counts)``, read-only.

    ``indices`` (B, S): the seeds of each resample, drawn with replacement by ``default_rng(seed)``;
    ``counts`` (B, S): how many times each seed is in each resample (:func:`_draw_counts`).  Every
    curve of a figure (and every figure of a run) has the same S, B and seed, so they are drawn once
    per process, not once per curve (~6 ms each at 256 seeds, 2000 resamples).
    """
    indices = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    counts = _draw_counts(indices, count)
    indices.flags.writeable = False
    counts.flags.writeable = False
    return indices, counts


def bootstrap_ci(
    samples: ArrayLike,
    statistic: str = "mean",
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
    """Percentile-bootstrap interval of ``statistic`` over axis 0 (the seeds) of ``samples``.

    Args:
      samples: array of shape (S, ...) – S replicates (seeds) of any trailing shape; NaN marks a
        missing value (±inf is a value: a mean with an infinite seed is infinite).
      statistic: ``"mean"`` or ``"median"``.
      confidence: level c of the two-sided interval (default 0.95).
      resamples: number B of bootstrap resamples.
      seed: seed of the NumPy generator (fixed for reproducibility).

    Returns:
      ``(centre, lower, upper)``, each of the trailing shape: the statistic of the data and the
      (1−c)/2, (1+c)/2 quantiles of the statistic over B resamples, with replacement, of the n seeds
      that have a value (not NaN).  Entries with the same seeds present (without NaNs: every entry, e.g.
      every iteration of a curve) share one (B, n) index matrix, so the bands of one curve are jointly
      consistent.  NaN where no seed has a value; ``lower = upper = centre`` for one seed.
    """
    confidence = _check_confidence(confidence)
    resamples, seed = _check_resampling(resamples, seed)
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise PrefsimError("bootstrap_ci: needs at least one sample along axis 0 (the seeds).")
    centre = _statistic(values, statistic, axis=0)
    flat = values.reshape(values.shape[0], -1)
    lower, upper = np.full(flat.shape[1], np.nan), np.full(flat.shape[1], np.nan)
    for columns, rows in _seed_groups(~np.isnan(flat)):
        group = flat if len(rows) * len(columns) == flat.size else flat[np.ix_(rows, columns)]
        if len(rows) == 1:
            lower[columns], upper[columns] = group[0], group[0]
            continue
        indices, counts = resample_draws(len(rows), resamples, seed)
        width = max(1, PERCENTILE_BLOCK_NUMBERS // resamples)  # columns whose replicates fit one block
        for start in range(0, len(columns), width):
            replicates = _replicates(group[:, start : start + width], indices, statistic, counts)  # (B, width)
            lower[columns[start : start + width]], upper[columns[start : start + width]] = _percentiles(
                replicates, confidence
            )
    shape = values.shape[1:]
    return centre, lower.reshape(shape)[()], upper.reshape(shape)[()]


def _seed_groups(present: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(columns, rows), …]``: the columns of an (S, N) mask grouped by which rows (seeds) are present
    in them, each with those rows; columns without any present row are left out."""
    if present.all():
        return [(np.arange(present.shape[1]), np.arange(present.shape[0]))]
    patterns, inverse = np.unique(present.T, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return [
        (np.flatnonzero(inverse == index), np.flatnonzero(pattern))
        for index, pattern in enumerate(patterns)
        if pattern.any()
    ]


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The (1−c)/2 and (1+c)/2 quantiles (linear interpolation) over axis 0 of ``replicates``.  Between two
    equal infinities, where interpolation gives inf − inf = NaN, the quantile is that infinity."""
    levels = [(1 - confidence) / 2, (1 + confidence) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # inf − inf in the interpolation
        # without NaNs (resamples of present seeds have none unless +inf meets −inf) np.quantile gives the same
        # numbers as np.nanquantile in half the time
        quantile = np.nanquantile if np.isnan(replicates).any() else np.quantile
        bounds = quantile(replicates, levels, axis=0)
        if np.isinf(replicates).any():
            below = quantile(replicates, levels, axis=0, method="lower")
            above = quantile(replicates, levels, axis=0, method="higher")
            bounds = np.where(np.isnan(bounds) & np.isinf(below) & (below == above), below, bounds)
    return bounds[0], bounds[1]


# ----------------------------------------------------------------------------------------------
# table helpers


#: Prefixes of the columns a sweep adds to a run table: a ``[game]``/``[run]`` field (``game.tau``;
#: :mod:`sim.field_sweep`) or a rule parameter (``rule.eta``, empty in rows of rules that do not sweep it).
FIELD_PREFIXES = ("rule.", "game.", "run.")


def has_data(table: pd.DataFrame, metric: str) -> bool:
    """Whether ``metric`` is a column with a finite value at some iteration > 0 (a curve to draw)."""
    if metric not in table.columns:
        return False
    values = table.loc[table["iteration"] > 0, metric].to_numpy(dtype=np.float64)
    return bool(np.isfinite(values).any())


def is_field_column(name: object) -> bool:
    """Whether a table column holds a swept field's or rule parameter's value (not a metric)."""
    return isinstance(name, str) and name.startswith(FIELD_PREFIXES)


def field_columns(table: pd.DataFrame) -> list[str]:
    """The swept-value columns of a run table, in table order."""
    return [c for c in table.columns if is_field_column(c)]


def field_values_by_rule(table: pd.DataFrame) -> pd.DataFrame:
    """One row per rule label (index ``rule``) with the values of the table's swept-value columns
    (a label names its values, so every row of one label holds the same ones)."""
    columns = field_columns(table)
    return table.drop_duplicates("rule").set_index("rule")[columns]


def metric_columns(table: pd.DataFrame) -> list[str]:
    """Numeric metric columns of a run table (everything but ``rule, seed, iteration`` and swept fields)."""
    return [
        c
        for c in table.columns
        if c not in ID_COLUMNS and not is_field_column(c) and pd.api.types.is_numeric_dtype(table[c])
    ]


def _check_table(table: pd.DataFrame, metric: str | None = None) -> None:
    if not isinstance(table, pd.DataFrame):
        raise PrefsimError("table: expected the pandas DataFrame returned by sim.run.")
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise PrefsimError(f"table: missing column(s) {', '.join(missing)}; expected the output of sim.run.")
    if metric is not None and metric not in table.columns:
        raise PrefsimError(
            f"metric: {metric!r} is not a column of the table; columns: {', '.join(metric_columns(table))}."
        )


def _check_rule(table: pd.DataFrame, rule: str) -> None:
    if rule not in set(table["rule"].unique()):  # unique() first: iterating a pyarrow column is slow
        raise PrefsimError(
            f"rule: {rule!r} is not in the table; rules: {', '.join(map(str, pd.unique(table['rule'])))}."
        )


def seed_matrix(table: pd.DataFrame, metric: str, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rule's metric as a (seeds × iterations) matrix.

    Returns ``(values, seeds, iterations)``; missing (seed, iteration) cells are NaN.
    """
    _check_table(table, metric)
    _check_rule(table, rule)
    frame = table.loc[table["rule"] == rule, ["seed", "iteration", metric]]
    if frame.duplicated(["seed", "iteration"]).any():
        raise PrefsimError(f"table: rule {rule!r} has repeated (seed, iteration) rows; expected one row each.")
    wide = frame.set_index(["seed", "iteration"])[metric].unstack("iteration").sort_index().sort_index(axis=1)
    return wide.to_numpy(dtype=np.float64), wide.index.to_numpy(), wide.columns.to_numpy()


def rules_of(table: pd.DataFrame) -> list[str]:
    """Rule labels in order of first appearance."""
    return [str(r) for r in pd.unique(table["rule"])]


# ----------------------------------------------------------------------------------------------
# curves and summary table


def curve_summary(
    table: pd.DataFrame,
    metric: str,
    statistic: str = "mean",
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Per rule × iteration: centre (``statistic`` over seeds) and its bootstrap CI.

    Returns a DataFrame with columns ``rule, iteration, center, lower, upper, seeds`` (``seeds`` =
    number of seeds with a finite value), rules in order of appearance, iterations ascending.
    """
    _check_table(table, metric)
    frames = []
    for rule in rules_of(table):
        values, _, iterations = seed_matrix(table, metric, rule)
        centre, lower, upper = bootstrap_ci(values, statistic, confidence, resamples, seed)
        frames.append(
            pd.DataFrame(
                {
                    "rule": rule,
                    "iteration": iterations.astype(np.int64),
                    "center": centre,
                    "lower": lower,
                    "upper": upper,
                    "seeds": np.isfinite(values).sum(axis=0).astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def summary_table(
    table: pd.DataFrame,
    iteration: int | None = None,
    metrics: str | Iterable[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Mean and bootstrap CI over seeds at one iteration, one row per rule × metric (for printing).

    Args:
      table: the run table.
      iteration: the iteration to report; ``None`` = each rule's last recorded iteration.  A rule
        that did not record ``iteration`` raises :class:`PrefsimError`.
      metrics: metric names to report; ``None`` = every metric column with at least one finite
        value (all-NaN metrics, e.g. ``suboptimality`` on a non-Bradley–Terry game, are skipped).
      confidence, resamples, seed: as in :func:`bootstrap_ci`.

    Returns:
      DataFrame with columns ``rule, metric, iteration, mean, ci_lower, ci_upper, seeds``.
    """
    _check_table(table)
    if metrics is None:
        metrics = [m for m in metric_columns(table) if table[m].notna().any()]
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        for metric in metrics:
            _check_table(table, metric)
    rows = []
    for rule in rules_of(table):
        frame = table[table["rule"] == rule]
        at = int(frame["iteration"].max()) if iteration is None else int(iteration)
        chosen = frame[frame["iteration"] == at].sort_values("seed")
        if chosen.empty:
            raise PrefsimError(
                f"summary_table: rule {rule!r} has no recorded iteration {at}; recorded: "
                f"{', '.join(map(str, sorted(frame['iteration'].unique())[:12]))}…"
            )
        for metric in metrics:
            values = chosen[metric].to_numpy(dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            centre, lower, upper = bootstrap_ci(values, "mean", confidence, resamples, seed)
            rows.append(
                {
                    "rule": rule,
                    "metric": metric,
                    "iteration": at,
                    "mean": float(centre),
                    "ci_lower": float(lower),
                    "ci_upper": float(upper),
                    "seeds": int(np.isfinite(values).sum()),
                }
            )
    return pd.DataFrame(rows, columns=["rule", "metric", "iteration", "mean", "ci_lower", "ci_upper", "seeds"])


# ----------------------------------------------------------------------------------------------
# paired comparisons


def paired_difference(
    table: pd.DataFrame,
    metric: str,
    rule_a: str,
    rule_b: str,
    iteration: int | None = None,
    lower_is_better: bool = True,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Paired comparison of two rules on the same seeds (docs/theory.md §D.1).

    For each iteration both rules recorded (or only ``iteration``), on the seeds both have finite
    values for: the mean difference d = metric(a) − metric(b) with its bootstrap CI, and the
    probability of improvement P(a better than b) = fraction of seeds where a is better (strictly
    smaller metric when ``lower_is_better``; ties count ½), with its bootstrap CI.  An ordering is
    supported only if the CI of the difference excludes 0.  ``mean_a`` and ``mean_b`` are each rule's mean
    over the same paired seeds (so ``mean_a − mean_b`` is the difference; NaN where no seed pairs).

    Returns:
      DataFrame with columns ``iteration, difference, difference_lower, difference_upper,
      probability_of_improvement, probability_lower, probability_upper, seeds, mean_a, mean_b``.
    """
    _check_table(table, metric)
    values_a, seeds_a, iterations_a = seed_matrix(table, metric, rule_a)
    values_b, seeds_b, iterations_b = seed_matrix(table, metric, rule_b)
    seeds = np.intersect1d(seeds_a, seeds_b)
    iterations = np.intersect1d(iterations_a, iterations_b)
    if iteration is not None:
        if int(iteration) not in set(iterations.tolist()):
            raise PrefsimError(
                f"paired_difference: iteration {iteration} was not recorded for both {rule_a!r} and {rule_b!r}."
            )
        iterations = np.array([int(iteration)])
    if seeds.size == 0 or iterations.size == 0:
        raise PrefsimError(f"paired_difference: rules {rule_a!r} and {rule_b!r} share no seeds/iterations to pair.")
    a = values_a[np.searchsorted(seeds_a, seeds)][:, np.searchsorted(iterations_a, iterations)]
    b = values_b[np.searchsorted(seeds_b, seeds)][:, np.searchsorted(iterations_b, iterations)]
    paired = np.isfinite(a) & np.isfinite(b)  # a seed where either rule is NaN or ±inf is left out of both
    difference = np.where(paired, a - b, np.nan)
    better = (a < b) if lower_is_better else (a > b)
    wins = np.where(paired, better + 0.5 * (a == b), np.nan)
    d_centre, d_lower, d_upper = bootstrap_ci(difference, "mean", confidence, resamples, seed)
    p_centre, p_lower, p_upper = bootstrap_ci(wins, "mean", confidence, resamples, seed)
    count = paired.sum(axis=0)

    def paired_mean(values: np.ndarray) -> np.ndarray:
        total = np.where(paired, values, 0.0).sum(axis=0)
        return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)

    return pd.DataFrame(
        {
            "iteration": iterations.astype(np.int64),
            "difference": d_centre,
            "difference_lower": d_lower,
            "difference_upper": d_upper,
            "probability_of_improvement": p_centre,
            "probability_lower": p_lower,
            "probability_upper": p_upper,
            "seeds": count.astype(np.int64),
            "mean_a": paired_mean(a),
            "mean_b": paired_mean(b),
        }
    )


# ----------------------------------------------------------------------------------------------
# rate fits


@dataclasses.dataclass(frozen=True)
class RateFit:
    """A fitted convergence rate with a bootstrap CI over seeds.

    ``scale = "loglog"``: metric ≈ a·t^slope (slope −1 is a 1/t rate).  ``scale = "semilog"``:
    metric ≈ a·e^{slope·t} (a linear rate with contraction factor e^{slope} per iteration).
    """

    rule: str
    """Rule label."""
    metric: str
    """Metric column."""
    scale: str
    """``loglog`` or ``semilog``."""
    window: tuple
    """Inclusive iteration window (first, last) of the fit."""
    slope: float
    """Mean over seeds of the per-seed least-squares slope."""
    lower: float
    """Lower end of the bootstrap CI of the mean slope."""
    upper: float
    """Upper end of the bootstrap CI of the mean slope."""
    intercept: float
    """Mean over seeds of the per-seed intercept (log metric at log t = 0 or t = 0)."""
    seed_slopes: np.ndarray = dataclasses.field(repr=False)
    """Per-seed slopes (NaN where a seed had fewer than 2 usable points)."""
    points: int
    """Median number of usable points per seed."""
    confidence: float = DEFAULT_CONFIDENCE
    """Level of the CI."""
    span: tuple | None = None
    """First and last recorded iterations the fit used (a value above the floor on a seed with a slope):
    inside ``window``, narrower where the run records sparsely or values in the window are at the floor."""

    def contains(self, exponent: float, tolerance: float = 0.0) -> bool:
        """Whether ``exponent`` lies within the CI widened by ``tolerance`` on each side."""
        return self.lower - tolerance <= exponent <= self.upper + tolerance

    def faster_than(self, exponent: float) -> bool:
        """Whether the whole CI lies below ``exponent`` (decays at least as fast, significantly)."""
        return self.upper < exponent

    def slower_than(self, exponent: float) -> bool:
        """Whether the whole CI lies above ``exponent``."""
        return self.lower > exponent

    def label(self) -> str:
        """Short text for a legend: ``slope −1.02 [−1.05, −0.99]`` (per iteration for semilog)."""
        unit = "" if self.scale == "loglog" else "/iter"
        return f"slope {self.slope:.3g}{unit} [{self.lower:.3g}, {self.upper:.3g}]"


def _per_seed_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope/intercept per row of y (NaN = missing point); vectorised over rows."""
    mask = np.isfinite(y)
    count = mask.sum(axis=1)
    xs = np.where(mask, x[None, :], 0.0)
    ys = np.where(mask, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = xs.sum(axis=1) / count
        mean_y = ys.sum(axis=1) / count
        dx = np.where(mask, x[None, :] - mean_x[:, None], 0.0)
        dy = np.where(mask, y - mean_y[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * dy).sum(axis=1) / sxx
        intercept = mean_y - slope * mean_x
    bad = (count < 2) | ~(sxx > 0)
    return np.where(bad, np.nan, slope), np.where(bad, np.nan, intercept), count


def fit_rate(
    table: pd.DataFrame,
    metric: str,
    rule: str,
    window: tuple | None = None,
    scale: str = "loglog",
    floor: float = DEFAULT_FLOOR,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> RateFit:
    """Fit the convergence rate of ``metric`` for ``rule`` over an iteration ``window``.

    Per seed, ordinary least squares of log(metric) on log(t) (``loglog``) or on t (``semilog``)
    over the recorded iterations t with first ≤ t ≤ last (``window``; default: the last decade,
    [max(1, T/10), T]), ignoring points with metric ≤ ``floor`` or non-finite; the reported slope
    is the mean of the per-seed slopes with a percentile-bootstrap CI over seeds.  ``span`` of the result
    says which recorded iterations were used.

    Raises :class:`PrefsimError` when no seed has two usable points in the window (name the rule,
    metric and window).
    """
    if scale not in SCALES:
        raise PrefsimError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}.")
    values, _, iterations = seed_matrix(table, metric, rule)
    if window is None:
        last = int(iterations.max())
        window = (max(1, last // 10), last)
    if (
        not isinstance(window, (tuple, list))
        or len(window) != 2
        or not all(isinstance(end, (int, np.integer)) and not isinstance(end, bool) for end in window)
    ):
        raise PrefsimError(f"fit_rate: window must be a pair of iterations (first, last), got {window!r}.")
    if isinstance(floor, bool) or not isinstance(floor, (int, float, np.integer, np.floating)) or np.isnan(floor):
        raise PrefsimError(f"fit_rate: floor must be a number (the rounding level of the metric), got {floor!r}.")
    first, last = int(window[0]), int(window[1])
    if scale == "loglog" and first < 1:
        raise PrefsimError(f"fit_rate: a log-log window must start at iteration ≥ 1, got {window}.")
    inside = (iterations >= first) & (iterations <= last)
    if inside.sum() < 2:
        raise PrefsimError(
            f"fit_rate: rule {rule!r}, metric {metric!r}: fewer than 2 recorded iterations in window {window}."
        )
    t = iterations[inside].astype(np.float64)
    y = values[:, inside]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.where(np.isfinite(y) & (y > floor), np.log(np.where(y > 0, y, 1.0)), np.nan)
    x = np.log(t) if scale == "loglog" else t
    slopes, intercepts, counts = _per_seed_fit(x, log_y)
    if not np.isfinite(slopes).any():
        raise PrefsimError(
            f"fit_rate: rule {rule!r}, metric {metric!r}: no seed has two values above the floor {floor:g} "
            f"in window {window}; the metric has converged to rounding level or is not positive there."
        )
    centre, lower, upper = bootstrap_ci(slopes[np.isfinite(slopes)], "mean", confidence, resamples, seed)
    used = t[np.isfinite(log_y[np.isfinite(slopes)]).any(axis=0)]
    return RateFit(
        rule=rule,
        metric=metric,
        scale=scale,
        window=(first, last),
        slope=float(centre),
        lower=float(lower),
        upper=float(upper),
        intercept=float(np.nanmean(intercepts)),
        seed_slopes=slopes,
        points=int(np.median(counts)),
        confidence=confidence,
        span=(int(used.min()), int(used.max())),
    )


def compare_rate(fit: RateFit, exponent: float, tolerance: float = 0.0) -> dict:
    """Compare a fitted slope with a theoretical exponent (e.g. −1 for O(1/T), −0.5 for O(1/√T)).

    Returns a dict with the fit, the exponent, ``consistent`` (exponent inside the CI ± tolerance),
    ``faster`` (the whole CI below the exponent: decays significantly faster than the theory) and
    ``slower`` (the whole CI above it: the theory's rate is not attained).
    """
    return {
        "rule": fit.rule,
        "metric": fit.metric,
        "scale": fit.scale,
        "window": fit.window,
        "slope": fit.slope,
        "lower": fit.lower,
        "upper": fit.upper,
        "exponent": float(exponent),
        "consistent": fit.contains(exponent, tolerance),
        "faster": fit.faster_than(exponent),
        "slower": fit.slower_than(exponent),
    }
