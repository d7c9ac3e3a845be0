"""The papers' bounds: their formulas, and each as a registered :class:`Bound` that rule definitions list.

Every function states its formula and source with docs/theory.md's provenance tags: [V] checked against
the paper text, [M] recalled from the paper but not re-checked, [D] derived in docs/theory.md (✓ when
also checked numerically), [S] secondary (reviews, rebuttal, abstracts).  APO's paper is **not public**
(docs/theory.md §B): its Theorem 4.4/4.8 constants are unknown, so for APO this module implements
docs/theory.md's exact-reward derivations [D✓], not the paper's statements.  Likewise ONPO's and Nash
Mirror Prox's theorems could not be read beyond their abstracts: their bounds here are derived forms
(docs/theory.md §C.10, §H), and COMAL's monotone KL is checked on the trajectory (§F.1).

Indexing.  A run records π_t after t updates, t = 0 being the initial policy π_0 = π_ref.  The
``*_mixture`` metrics average π_0 … π_t, i.e. **T = t + 1 iterates**; Theorem 3 of INPO (π̄ =
(1/T)Σ_{t=1}^T π_t with π_1 = π_ref) and the Hedge bound are applied with T = t + 1.  INPO's
``theorem4`` schedule uses η_t = τ(t+2)/2 for the update t → t+1, t = 0, 1, … (docs/theory.md §A.5 reading
(a): the first update is BR_τ(π_ref)), and Theorem 4's bound is applied to π_T, T = t ≥ 1.

Realised constants (Assumption A, docs/theory.md §A.5): B must bound |log π/π_ref| for every iterate on the
trajectory **and** π* (Reviewer 4's reading); :func:`realised_log_ratio` takes the
``max_log_ratio_so_far`` column, the running maximum of max_y |log π_s/π_ref| that the run carries
over **every** iterate (:mod:`sim.metrics`), together with π*'s log-ratio, so B does not depend on
``record_every``.  A table written before that column existed gives B from the recorded
``max_log_ratio`` only when it recorded every iteration; otherwise the largest iterate between two
recordings could be missed (too small a B, a bound that "holds" wrongly) and it is refused.
D = max_{π∈Π} KL(π‖π_1) over policies with π_ref's support
is log(1/min_y π_ref(y)) (the point mass on the least likely arm).

Overflow.  A bound whose value exceeds float64's range (≈ 1.8e308: a huge B, 1/η or L) is returned as inf,
silently: it is vacuous there and bounds nothing, and inf is float64's nearest value; the formulas are
arranged so that no intermediate overflows to inf or NaN while the bound itself is finite (Theorem 4 as
32·max(B, 1/τ)²/(T + 1); each product of the INPO bounds and of MMD's ηL² through :func:`_product`, which takes
exp(Σ log) where a partial product left float64's range), and MMD's step condition ηL² ≤ τ reads an ηL² beyond
float64 as failing it.  (One exception: Theorem 4's step bound with η ≪ τ, where (1 − τ/η)·KL and 8C²/η² both
leave float64's range with opposite signs, is NaN; the theorem's steps have η > τ.)

Registry.  A :class:`Bound` names one theorem: its label, source, the metric column it bounds, which
variant of a rule it is about (``selects``), its hypotheses (each returns why it fails, or ``None``) and
the function evaluating it on one recorded trajectory.  Rule definitions list their bounds
(:attr:`sim.rules.definition.RuleDefinition.bounds`); :mod:`sim.theory` and :mod:`sim.bounds_table`
iterate over them and never test a rule's name.  This module imports no rule module.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, check_size, finite_number, real_array
from bandits.preference import validate_preference_matrix
from sim.game import Game
from sim.metrics import RUNNING_LOG_RATIO
from sim.precision import float64

if TYPE_CHECKING:  # rule modules import this one, and importing sim.rules must not load pandas
    import pandas as pd

    #: One rule × seed of a run table, sorted by iteration: its columns by name, each read with
    #: ``np.asarray`` (a ``pd.DataFrame``, or the NumPy column slices :func:`sim.theory.tightness_report`
    #: hands the bounds).
    Trajectory = pd.DataFrame | Mapping[str, np.ndarray]

# ----------------------------------------------------------------------------------------------
# argument checks: each names the function and the argument and says what is expected (the bounds are
# called directly from notebooks), and skips JAX tracers (a traced value is checked where it is concrete)

#: How far from 1 a probability vector may sum, and P + Pᵀ lie from 1: float32 rounding of a policy or a
#: game, far below what a wrong argument (unnormalised weights, a transposed matrix) gives.
INPUT_TOLERANCE = 1e-6

#: The APO extrapolation schedules the closed forms know: constant α, or α_t = t/(t + 3) (``nesterov``).
APO_SCHEDULES = ("constant", "nesterov")


def _traced(value: object) -> bool:
    """Whether ``value`` is a JAX tracer (inside ``jit``/``vmap``/``grad``), whose value cannot be checked."""
    return isinstance(value, jax.core.Tracer)


def _number(value: object, where: str, name: str, least: float | None = None, *, strict: bool = True) -> Any:
    """``value`` as a finite float, > ``least`` (``strict``) or ≥ it; a tracer unchanged."""
    if _traced(value):
        return value
    number = finite_number(value, f"{where}: {name}")
    if least is not None and not (number > least if strict else number >= least):
        raise PrefsimError(f"{where}: {name} must be {'>' if strict else '≥'} {least:g}, got {number:g}.")
    return number


def _numbers(values: object, where: str, name: str, least: float | None = None, *, strict: bool = True) -> Any:
    """``values`` (a number or an array of them) as a non-empty float64 array of finite numbers, each >
    ``least`` (``strict``) or ≥ it; checked whole with NumPy, so a long trajectory costs one pass."""
    if _traced(values):
        return values
    array = real_array(values, f"{where}: {name}", "a number or an array of numbers")
    if array.size == 0:
        raise PrefsimError(f"{where}: {name} is empty; give at least one number.")
    if not np.all(np.isfinite(array)):
        raise PrefsimError(f"{where}: {name} must be finite, got a NaN or infinite entry.")
    if least is not None:
        low = array.min()
        if not (low > least if strict else low >= least):
            raise PrefsimError(f"{where}: {name} must be {'>' if strict else '≥'} {least:g}, got an entry {low:g}.")
    return array


def _counts(values: object, where: str, name: str = "iterations", least: int = 1) -> np.ndarray:
    """Iteration counts (a whole number or an array of them, 10.0 read as 10) ≥ ``least``, as float64; a tracer
    unchanged."""
    if _traced(values):
        return values
    array = _numbers(values, where, name)
    if not np.all(array == np.floor(array)) or array.min() < least:
        wrong = array[(array != np.floor(array)) | (array < least)].flat[0]
        raise PrefsimError(f"{where}: {name} must be whole numbers ≥ {least}, got {wrong:g}.")
    return array


def _count(value: object, where: str, name: str = "iterations", least: int = 1) -> int:
    """One iteration count: an integer ≥ ``least`` (a bool or a float such as 3.0 is refused)."""
    return check_integer(value, f"{where}: {name}", least)


def _probabilities(values: object, where: str, name: str, *, positive: bool = False, size: int | None = None) -> Any:
    """A probability vector: 1-d, non-empty, finite, entries ≥ 0 (> 0 with ``positive``), summing to 1 within
    :data:`INPUT_TOLERANCE`, with ``size`` entries when given; a tracer unchanged."""
    if _traced(values):
        return values
    array = real_array(values, f"{where}: {name}", "a vector of probabilities")
    if array.ndim != 1 or array.size == 0:
        raise PrefsimError(f"{where}: {name} must be a non-empty vector of probabilities, got shape {array.shape}.")
    if size is not None and array.size != size:
        raise PrefsimError(f"{where}: {name} has {array.size} entries, expected {size} (one per arm).")
    if not np.all(np.isfinite(array)):
        raise PrefsimError(f"{where}: {name} must be finite, got a NaN or infinite entry.")
    low = array.min()
    if low < 0 or (positive and low == 0):
        entry = int(np.argmin(array))
        need = "> 0 (its logarithm must be finite)" if positive else "≥ 0"
        raise PrefsimError(f"{where}: every entry of {name} must be {need}; entry {entry} is {low:g}.")
    total = array.sum()
    if abs(total - 1.0) > INPUT_TOLERANCE:
        raise PrefsimError(f"{where}: {name} must sum to 1, it sums to {total:.12g}.")
    return array


def _preference(matrix: object, where: str) -> np.ndarray:
    """A K×K preference matrix (entries in [0, 1], P + Pᵀ = 1 within :data:`INPUT_TOLERANCE`, K ≥ 2)."""
    return validate_preference_matrix(matrix, tolerance=INPUT_TOLERANCE, name=f"{where}: preference")


def _rewards(values: object, where: str, size: int | None = None) -> np.ndarray:
    """A vector of at least two finite rewards (``size`` of them when given)."""
    array = real_array(values, f"{where}: rewards", "a vector of rewards")
    if array.ndim != 1 or array.size < 2:
        raise PrefsimError(f"{where}: rewards must be a vector of at least 2 rewards, got shape {array.shape}.")
    if size is not None and array.size != size:
        raise PrefsimError(f"{where}: rewards has {array.size} entries and reference {size}; give one per arm.")
    if not np.all(np.isfinite(array)):
        raise PrefsimError(f"{where}: rewards must be finite, got a NaN or infinite entry.")
    return array


def _flag(value: object, where: str, name: str) -> bool:
    """A bool (True/False), not a truthy string or number."""
    if not isinstance(value, (bool, np.bool_)):
        raise PrefsimError(f"{where}: {name} must be True or False, got {value!r}.")
    return bool(value)


def _broadcast(where: str, **arrays: Any) -> None:
    """Refuse arrays whose shapes do not broadcast together (NumPy's ``operands could not be broadcast``)."""
    shapes = {name: np.shape(array) for name, array in arrays.items()}
    try:
        np.broadcast_shapes(*shapes.values())
    except ValueError:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise PrefsimError(
            f"{where}: the arrays' shapes do not match ({described}); give one value or one per iteration."
        ) from None


# ----------------------------------------------------------------------------------------------
# realised constants


def log_reference_mass_bound(reference: ArrayLike) -> float:
    """D = max_{π ∈ Π} KL(π ‖ π_ref) = log(1 / min_y π_ref(y)) over policies with π_ref's support [D].

    INPO's Lemma 2 defines D = max_{π∈Π} KL(π‖π_1) with π_1 = π_ref; the supremum over the simplex
    restricted to π_ref's support is attained at the point mass on argmin π_ref.
    """
    reference = _probabilities(reference, "log_reference_mass_bound", "reference", positive=True)
    return float(-np.log(reference.min()))


def policy_log_ratio(policy: ArrayLike, reference: ArrayLike, *, where: str = "policy_log_ratio") -> float:
    """max_y |log π(y)/π_ref(y)| (the quantity Assumption A bounds by B); infinite when π has a zero entry.

    A zero entry is a valid policy (a pure Nash policy has them) whose log-ratio is infinite, so the value
    is ``inf``, with a ``RuntimeWarning`` naming the action: no finite B exists, and a probability that
    underflowed to 0 in float64 (π* of a game with a tiny τ) is the usual cause on a run, where the INPO
    bounds that need B are then not drawn.  ``where``: the function named in errors and the warning
    (:func:`realised_log_ratio` passes its own name)."""
    reference = _probabilities(reference, where, "reference", positive=True)
    name = "policy" if where == "policy_log_ratio" else "target"
    policy = _probabilities(policy, where, name, size=reference.size)
    if policy.min() == 0:
        entry = int(np.argmin(policy))
        warnings.warn(
            f"{where}: {name} gives action {entry} probability 0 (reference {reference[entry]:g}), so "
            "max|log π/π_ref| is infinite and no finite B exists; if that probability underflowed (π* of a game "
            "with a tiny τ), a larger τ keeps it positive.",
            RuntimeWarning,
            stacklevel=2,
        )
    with np.errstate(divide="ignore"):  # log 0 = −inf: no finite B
        return float(np.max(np.abs(np.log(policy) - np.log(reference))))


def realised_log_ratio(frame: Trajectory, target: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Running realised B_t = max(max_{s ≤ t} max_log_ratio(π_s), max|log π*/π_ref|) for one rule × seed.

    ``frame`` holds one rule and seed, sorted by iteration (its columns by name, read with ``np.asarray``).
    π*'s log-ratio is included because Assumption A's policy class must contain π* (docs/theory.md §A.5).
    The max over s runs over every iterate π_0 … π_t, recorded or not: the run's ``max_log_ratio_so_far``
    column.  A table without it (written by an older prefsim) gives the running maximum of
    ``max_log_ratio`` when its ``iteration`` column is 0, 1, 2, … (every iterate recorded); a table that
    skipped iterations is refused (:class:`~bandits.errors.PrefsimError`): the iterates between two
    recordings could exceed every recorded one, and too small a B lets a bound "hold" wrongly.  The column
    is read as recorded (a diverged run's NaN stays NaN).
    """
    where = "realised_log_ratio"
    try:
        carried = frame[RUNNING_LOG_RATIO] if RUNNING_LOG_RATIO in frame else None
        recorded = frame["max_log_ratio"] if carried is None else None
    except (KeyError, TypeError, IndexError):
        raise PrefsimError(
            f"{where}: frame must be one trajectory's table with a {RUNNING_LOG_RATIO} (or max_log_ratio) column "
            f"(a run table of sim.run for one rule and seed), got {type(frame).__name__}."
        ) from None
    name = RUNNING_LOG_RATIO
    if carried is not None:
        carried = real_array(carried, f"{where}: frame[{name!r}]", "a column of numbers")
        if np.isnan(carried).all():  # e.g. an older table's rows concatenated with newer ones
            carried, recorded, name = None, frame["max_log_ratio"], "max_log_ratio"
    if carried is None:
        iterations = np.asarray(frame["iteration"], dtype=np.int64) if "iteration" in frame else None
        if iterations is None or not np.array_equal(iterations, np.arange(len(iterations))):
            raise PrefsimError(
                f"{where}: the table has no {RUNNING_LOG_RATIO} column (it was written by an older "
                "prefsim) and does not record every iteration, so B read from the recorded max_log_ratio could "
                "miss the largest iterate between two recordings and make a bound hold wrongly; run the spec "
                "again with this prefsim (or with record_every = 1)."
            )
        name = "max_log_ratio"
        carried = real_array(recorded, f"{where}: frame['max_log_ratio']", "a column of numbers")
    if carried.ndim != 1:
        raise PrefsimError(f"{where}: frame[{name!r}] must be a column, got shape {carried.shape}.")
    running = np.maximum.accumulate(carried)
    return np.maximum(running, policy_log_ratio(target, reference, where=where))


def omega_max(preference: ArrayLike, target: ArrayLike, *, where: str = "omega_max") -> float:
    """ω_max = the largest |imaginary part| of the eigenvalues of (P − ½)J*, J* = diag π* − π*π*ᵀ [D✓].

    docs/theory.md §A.3: they equal those of the skew-symmetric J*^{½}(P − ½)J*^{½}, whose eigenvalues are
    ±iω_k, so ω_max is its spectral norm.  For the 3-cycle P_c with uniform π*: c/(2√3).  ``where``: the
    function named in errors (:func:`eta_critical`, :func:`inpo_contraction_factor` pass theirs).
    """
    preference = _preference(preference, where)
    target = _probabilities(target, where, "target", size=preference.shape[0])
    jacobian = np.diag(target) - np.outer(target, target)
    values, vectors = np.linalg.eigh(jacobian)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    skew = root @ (preference - 0.5) @ root
    return float(np.linalg.norm(skew, 2))


def eta_critical(preference: ArrayLike, target: ArrayLike, tau: float) -> float:
    """η_crit = (τ² + ω_max²)/(2τ): constant-η INPO converges in the last iterate iff η > η_crit [D✓].

    docs/theory.md §A.3: linearised at π*, the log-space error maps by (1 − τ/η)I + (P − ½)J*/η whose
    eigenvalues are (1 − τ/η) ± iω_k/η; |λ| < 1 ⟺ η > (τ² + ω_k²)/(2τ).  Source: derived in docs/theory.md,
    checked in 48/48 random instances there.  Computed as τ/2 + ω_max²/(2τ), which overflows only where η_crit
    itself exceeds float64 (then inf; module docstring, Overflow).
    """
    tau = _number(tau, "eta_critical", "tau", 0.0)
    omega = omega_max(preference, target, where="eta_critical")
    with np.errstate(over="ignore"):
        return float(tau / 2.0 + np.float64(omega) ** 2 / (2.0 * tau))


def inpo_contraction_factor(preference: ArrayLike, target: ArrayLike, tau: float, eta: float) -> float:
    """Spectral radius ρ = max_k |1 − τ/η ± iω_k/η| = √((1 − τ/η)² + ω_max²/η²) of linearised INPO [D].

    The log-policy error near π* shrinks like ρ^t, so KL(π*‖π_t) (quadratic in the error) has the
    semilog slope 2·log ρ per iteration; ρ < 1 ⟺ η > η_crit.
    """
    tau = _number(tau, "inpo_contraction_factor", "tau", 0.0, strict=False)
    eta = _number(eta, "inpo_contraction_factor", "eta", 0.0)
    omega = omega_max(preference, target, where="inpo_contraction_factor")
    return math.hypot(1.0 - tau / eta, omega / eta)  # no overflow of the squares (module docstring, Overflow)


# ----------------------------------------------------------------------------------------------
# INPO (Zhang et al., ICLR 2025): Lemma 2, Theorem 3, Theorem 4


def inpo_c(log_ratio_bound: float, tau: float) -> float:
    """C = max(Bτ, 1) of Lemma 2 / Theorem 4 [V]; inf where Bτ exceeds float64's range."""
    bound = _numbers(log_ratio_bound, "inpo_c", "log_ratio_bound", 0.0, strict=False)
    tau = _number(tau, "inpo_c", "tau", 0.0, strict=False)
    with np.errstate(over="ignore"):  # Bτ beyond float64 is inf: module docstring, Overflow
        return np.maximum(bound * tau, 1.0)


def lemma2_eta(iterations: ArrayLike, log_ratio_bound: ArrayLike, tau: float, divergence: float) -> np.ndarray | float:
    """Lemma 2's inverse learning rate η = max(Bτ, 1)·√T/√D [V].

    T iterates, D as in :func:`log_reference_mass_bound`.
    """
    t = _counts(iterations, "lemma2_eta")
    bound = _numbers(log_ratio_bound, "lemma2_eta", "log_ratio_bound", 0.0, strict=False)
    tau = _number(tau, "lemma2_eta", "tau", 0.0, strict=False)
    divergence = _number(divergence, "lemma2_eta", "divergence", 0.0)
    _broadcast("lemma2_eta", iterations=t, log_ratio_bound=bound)
    with np.errstate(over="ignore"):  # module docstring, Overflow
        return inpo_c(bound, tau) * np.sqrt(t) / math.sqrt(divergence)


def lemma2_regret_bound(
    iterations: ArrayLike,
    eta: ArrayLike,
    tau: float,
    log_ratio_bound: ArrayLike,
    divergence: float,
    *,
    where: str = "lemma2_regret_bound",
) -> np.ndarray | float:
    """Reg_T ≤ ηD + (4τ²B² + 1)·T/η for OMD (Eq. 4) with constant inverse learning rate η [V, App. A.1].

    This is the explicit inequality of the proof of Lemma 2 (taking B ≥ 1 without loss of generality,
    as the proof does: B is replaced by max(B, 1)); with η = max(Bτ,1)√T/√D it is O(max(Bτ,1)√(TD)).
    It bounds Σ_{t=1}^T ⟨∇ℓ_t(π_t), π_t − u⟩ for every comparator u with KL(u‖π_ref) ≤ D.  ``where``: the
    function named in errors (:func:`theorem3_gap_bound` passes its own name).  A value beyond float64's range
    is inf (module docstring, Overflow).
    """
    t, eta, tau, b, divergence = _lemma2_inputs(where, iterations, eta, tau, log_ratio_bound, divergence, least=0)
    return _lemma2_terms(t, eta, tau, b, divergence, 1.0)


def _lemma2_terms(
    t: np.ndarray, eta: np.ndarray, tau: float, b: np.ndarray, divergence: float, scale: ArrayLike
) -> np.ndarray | float:
    """``scale``·(ηD + T/η + 4τ²B²T/η), Lemma 2's regret bound: each term one product, inf only where it exceeds
    float64 (module docstring, Overflow), so Theorem 3's 2/T times it is finite where the gap is."""
    with np.errstate(divide="ignore", over="ignore"):
        inverse = 1.0 / eta
    return (
        _product(scale, eta, divergence)
        + _product(scale, t, inverse)
        + _product(scale, 4.0, tau, tau, b, b, t, inverse)
    )


def _lemma2_inputs(
    where: str, iterations: object, eta: object, tau: object, log_ratio_bound: object, divergence: object, least: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float]:
    """Lemma 2's T (whole, ≥ ``least``), η > 0, τ ≥ 0, max(B, 1) and D ≥ 0, checked and broadcast-compatible."""
    t = _counts(iterations, where, least=least)
    eta = _numbers(eta, where, "eta", 0.0)
    tau = _number(tau, where, "tau", 0.0, strict=False)
    b = np.maximum(_numbers(log_ratio_bound, where, "log_ratio_bound", 0.0, strict=False), 1.0)
    divergence = _number(divergence, where, "divergence", 0.0, strict=False)
    _broadcast(where, iterations=t, eta=eta, log_ratio_bound=b)
    return t, eta, tau, b, divergence


def _product(*factors: ArrayLike) -> np.ndarray | float:
    """Π factors (numbers ≥ 0, broadcast) in float64, inf only where the product exceeds float64's range: the
    direct product where it is finite and positive, else exp(Σ log factor) (an intermediate product that
    overflowed or underflowed while the whole did not); 0 where a factor is 0 (also against an inf one)."""
    stacked = np.stack(np.broadcast_arrays(*(np.asarray(factor, dtype=np.float64) for factor in factors)))
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        direct = np.prod(stacked, axis=0)
        by_logs = np.exp(np.sum(np.log(stacked), axis=0))
    zero = np.any(stacked == 0, axis=0)
    return np.where(zero, 0.0, np.where(np.isfinite(direct) & (direct > 0), direct, by_logs))[()]


def theorem3_gap_bound(
    iterations: ArrayLike, eta: ArrayLike, tau: float, log_ratio_bound: ArrayLike, divergence: float
) -> np.ndarray | float:
    """DualGap(π̄_T) ≤ 2·Reg_T/T (INPO Theorem 3, App. A.2) with Reg_T of :func:`lemma2_regret_bound` [V].

    π̄_T = (1/T)Σ_{t=1}^T π_t is the mixture of distributions of the first T iterates (π_1 = π_ref).
    The paper states it for η = max(Bτ,1)√T/√D (:func:`lemma2_eta`); the proof's inequality holds for
    any constant η, so this function takes η explicitly.
    """
    where = "theorem3_gap_bound"
    t, eta, tau, b, divergence = _lemma2_inputs(where, iterations, eta, tau, log_ratio_bound, divergence, least=1)
    return _lemma2_terms(t, eta, tau, b, divergence, 2.0 / t)  # 2·Reg_T/T, finite where the gap is


def theorem4_kl_bound(
    iterations: ArrayLike, tau: float, log_ratio_bound: ArrayLike, constant: float = 32.0
) -> np.ndarray | float:
    """KL(π*‖π_T) ≤ 32C²/(τ²(T + 1)), C = max(Bτ, 1), under η_t = τ(t+2)/2 (INPO Theorem 4) [V].

    ``constant`` is the paper's 32 (exposed so tests can check that a wrong constant is caught).
    The bound is loose for exact updates: KL ∝ T⁻⁴ there (docs/theory.md §A.5, [D✓]).  T = 0 (π_0 = π_ref)
    is allowed; τ must be > 0 (the bound divides by τ²).  Computed as 32·max(B, 1/τ)²/(T + 1) (C/τ =
    max(B, 1/τ)), so a large B and τ, or a tiny τ, give the bound's value, or inf where that exceeds float64
    (module docstring, Overflow).
    """
    where = "theorem4_kl_bound"
    t = _counts(iterations, where, least=0)
    tau = _number(tau, where, "tau", 0.0)
    bound = _numbers(log_ratio_bound, where, "log_ratio_bound", 0.0, strict=False)
    constant = _number(constant, where, "constant", 0.0)
    _broadcast(where, iterations=t, log_ratio_bound=bound)
    with np.errstate(over="ignore", divide="ignore"):  # 1/τ of a subnormal τ is inf, as is the bound
        largest = np.maximum(bound, 1.0 / tau)
    return _product(constant, largest, largest, 1.0 / (t + 1.0))


def theorem4_step_bound(
    kl_previous: ArrayLike, eta: ArrayLike, tau: float, log_ratio_bound: ArrayLike, constant: float = 8.0
) -> np.ndarray | float:
    """One step of Theorem 4: KL(π*‖π_{t+1}) ≤ (1 − τ/η_t)·KL(π*‖π_t) + 8C²/η_t² [V]; 8(C/η_t)² is inf where it
    exceeds float64's range (module docstring, Overflow)."""
    where = "theorem4_step_bound"
    kl_previous = _numbers(kl_previous, where, "kl_previous", 0.0, strict=False)
    eta = _numbers(eta, where, "eta", 0.0)
    tau = _number(tau, where, "tau", 0.0, strict=False)
    bound = _numbers(log_ratio_bound, where, "log_ratio_bound", 0.0, strict=False)
    constant = _number(constant, where, "constant", 0.0)
    _broadcast(where, kl_previous=kl_previous, eta=eta, log_ratio_bound=bound)
    with np.errstate(over="ignore", divide="ignore"):  # module docstring, Overflow
        inverse = 1.0 / eta  # inf for a subnormal η, as is 8C²/η²
        scaled = np.maximum(_product(bound, tau, inverse), inverse)  # C/η = max(Bτ/η, 1/η)
        return (1.0 - tau / eta) * kl_previous + _product(constant, scaled, scaled)


def theorem4_eta_schedule(steps: ArrayLike, tau: float) -> np.ndarray | float:
    """η_t = τ(t+2)/2 for the update t → t+1, t = 0, 1, … (reading (a) of docs/theory.md §A.5)."""
    steps = _counts(steps, "theorem4_eta_schedule", "steps", least=0)
    return _number(tau, "theorem4_eta_schedule", "tau", 0.0) * (steps + 2.0) / 2.0


def inpo_linearised_regret(
    game: Game, eta: float | jax.Array, tau: float | jax.Array, iterations: int, comparator: ArrayLike
) -> np.ndarray:
    """Realised Σ_{t=1}^T ⟨∇ℓ_t(π_t), π_t − u⟩ of exact constant-η INPO, for T = 1 … ``iterations`` [D].

    ∇ℓ_t(π_t)_y = −(Pπ_t)_y + τ(log(π_t(y)/π_ref(y)) + 1) (Eq. 4); the constant +τ cancels in
    ⟨·, π_t − u⟩.  Runs its own jitted ``lax.scan`` from π_1 = π_ref (Algorithm 1's indexing).  Returns
    a NumPy array of length ``iterations`` (entry T−1 is the sum over the first T iterates), for the
    comparator ``u`` (probabilities; e.g. π*).  η and τ may be concrete JAX values (the scan closes over them);
    the function cannot itself run under an outer ``jit``/``vmap``, as its result is a NumPy array.
    """
    where = "inpo_linearised_regret"
    if not isinstance(game, Game):
        raise PrefsimError(f"{where}: game must be a sim.game.Game (P, log π_ref, …), got {type(game).__name__}.")
    eta = _number(eta, where, "eta", 0.0)
    tau = _number(tau, where, "tau", 0.0, strict=False)
    iterations = _count(iterations, where)
    check_size(iterations, f"{where}: iterations", "the regret of every horizon", copies=4)
    comparator = _probabilities(comparator, where, "comparator", size=np.shape(game.preference)[-1])
    comparator = jnp.asarray(comparator, dtype=game.preference.dtype)

    def step(log_policy, _):
        policy = jnp.exp(log_policy)
        payoff = game.preference @ policy
        gradient = -payoff + tau * (log_policy - game.log_reference)
        term = jnp.dot(gradient, policy - comparator)
        new = (1.0 - tau / eta) * log_policy + (tau / eta) * game.log_reference + payoff / eta
        new = new - jax.scipy.special.logsumexp(new)
        return new, term

    _, terms = jax.lax.scan(step, game.log_reference, None, length=iterations)
    return np.cumsum(np.asarray(terms))


# ----------------------------------------------------------------------------------------------
# SPPO / DNO (Hedge in self-play), Nash-MD Theorem 1, MMD


def hedge_exploitability_bound(iterations: ArrayLike, eta: ArrayLike, initial_min_mass: float) -> np.ndarray | float:
    """Exploitability of the uniform mixture of T Hedge/SPPO iterates ≤ 2·(log(1/min π_0)/η + ηT/8)/T [D].

    SPPO's exact update ℓ_{t+1} = ℓ_t + ηPπ_t − log Z_t is Hedge with gains (Pπ_t)_y ∈ [0, 1] and
    prior π_0; Hedge's regret against any arm y is ≤ log(1/π_0(y))/η + ηT/8 (Cesa-Bianchi & Lugosi
    2006, Thm 2.2).  In self-play πᵀPπ = ½, so max_y (Pπ̄_T)_y − ½ ≤ Reg_T/T and the exploitability
    2·max_y(Pπ̄_T)_y − 1 ≤ 2Reg_T/T.  This is the O(1/√T) shape of SPPO's Theorem 4.1 [M] (η = Θ(1/√T)),
    with the standard Hedge constant (SPPO's own constant is not checked).  DNO: η = 1/η_DNO.
    """
    where = "hedge_exploitability_bound"
    t = _counts(iterations, where)
    eta = _numbers(eta, where, "eta", 0.0)
    log_inverse = _log_inverse_mass(initial_min_mass, where)
    _broadcast(where, iterations=t, eta=eta)
    return 2.0 * (log_inverse / eta + eta * t / 8.0) / t


def hedge_optimal_eta(iterations: ArrayLike, initial_min_mass: float) -> np.ndarray | float:
    """η minimising :func:`hedge_exploitability_bound`: √(8·log(1/min π_0)/T) = Θ(1/√T)."""
    t = _counts(iterations, "hedge_optimal_eta")
    return np.sqrt(8.0 * _log_inverse_mass(initial_min_mass, "hedge_optimal_eta") / t)


def _log_inverse_mass(mass: float, where: str) -> float:
    """log(1/min π_0), refusing a smallest initial probability outside (0, 1] (no finite bound there)."""
    mass = finite_number(mass, f"{where}: initial_min_mass")
    if not 0.0 < mass <= 1.0:
        raise PrefsimError(
            f"{where}: the smallest initial probability min π_0 must lie in (0, 1], got {mass:g}; the bound "
            "grows with log(1/min π_0) and is infinite for a policy with a zero entry."
        )
    return -math.log(mass)


def nash_md_kl_bound(
    iterations: ArrayLike, eta: float, tau: float, kl_initial: ArrayLike, constant: float = 2.0
) -> np.ndarray | float:
    """Nash-MD Theorem 1 unrolled: KL(π*‖π_T) ≤ (1 − ητ)^T·KL(π*‖π_0) + 2η²·Σ_{k<T}(1 − ητ)^k [M].

    One step (Munos et al. 2024, Theorem 1, recalled in docs/theory.md §C.6, not re-checked):
    KL(π*_τ, π_{t+1}) ≤ (1 − ητ)KL(π*_τ, π_t) + 2η².  With η = log T/(τT) this gives
    KL(π*, π_T) ≤ (KL(π*, π_0) + 2 log T/τ²)/T (:func:`nash_md_theorem1_eta`).  The theorem is about
    Nash-MD's steps, η > 0 with mixture exponent ητ ∈ [0, 1] (rule ``nash_md`` refuses others); outside
    them (1 − ητ)^T changes sign and the formula is no bound, so such η, τ raise :class:`PrefsimError`.
    """
    where = "nash_md_kl_bound"
    eta, tau = _number(eta, where, "eta"), _number(tau, where, "tau")
    if not (eta > 0.0 and tau >= 0.0 and eta * tau <= 1.0):
        raise PrefsimError(
            f"nash_md_kl_bound: Nash-MD's Theorem 1 is about a learning rate η > 0 whose mixture exponent ητ lies "
            f"in [0, 1], got η = {eta:g}, τ = {tau:g} (ητ = {eta * tau:g})."
        )
    t = _counts(iterations, where, least=0)
    kl_initial = _numbers(kl_initial, where, "kl_initial", 0.0, strict=False)
    constant = _number(constant, where, "constant", 0.0)
    _broadcast(where, iterations=t, kl_initial=kl_initial)
    factor = 1.0 - eta * tau
    with np.errstate(divide="ignore", invalid="ignore"):  # the ητ = 0 branch is taken by np.where
        geometric = np.where(factor == 1.0, t, (1.0 - factor**t) / (1.0 - factor))
    return factor**t * kl_initial + constant * eta**2 * geometric


def nash_md_theorem1_eta(iterations: int, tau: float) -> float:
    """η = log T/(τT), the step of Nash-MD's Theorem 1 for horizon T [M]."""
    iterations = _count(iterations, "nash_md_theorem1_eta")
    return math.log(iterations) / (_number(tau, "nash_md_theorem1_eta", "tau", 0.0) * iterations)


def mmd_lipschitz(preference: ArrayLike) -> float:
    """L = max_{ij} |P_ij − ½|: Lipschitz constant of the payoff operator π ↦ (P − ½)π from ℓ₁ to ℓ∞."""
    return float(np.max(np.abs(_preference(preference, "mmd_lipschitz") - 0.5)))


def _linear_rate_inputs(
    where: str, iterations: object, eta: object, tau: object, kl_initial: object, lipschitz: object
) -> tuple[np.ndarray, float, float, np.ndarray, float]:
    """The linear-rate bounds' arguments (:func:`mmd_kl_bound`, :func:`mirror_prox_kl_bound`): iterations
    (whole, ≥ 0), η > 0, τ ≥ 0, KL(π*‖π_0) ≥ 0 (shaped to broadcast with the iterations) and L ≥ 0."""
    t = _counts(iterations, where, least=0)
    eta = _number(eta, where, "eta", 0.0)
    tau = _number(tau, where, "tau", 0.0, strict=False)
    kl_initial = _numbers(kl_initial, where, "kl_initial", 0.0, strict=False)
    lipschitz = _number(lipschitz, where, "lipschitz", 0.0, strict=False)
    _broadcast(where, iterations=t, kl_initial=kl_initial)
    return t, eta, tau, kl_initial, lipschitz


def mmd_kl_bound(
    iterations: ArrayLike, eta: float, tau: float, kl_initial: ArrayLike, lipschitz: float
) -> np.ndarray | float:
    """MMD linear rate: KL(π*‖π_t) ≤ KL(π*‖π_0)/(1 + ητ)^t when η ≤ τ/L² (Sokota et al. 2023, Thm 3.4) [M].

    Returns NaN where the step condition η ≤ τ/L² fails (the theorem then says nothing).  L as in
    :func:`mmd_lipschitz` (negative entropy is 1-strongly convex w.r.t. ℓ₁).  The condition is tested
    as ηL² ≤ τ, so L = 0 (P ≡ ½, e.g. a cyclic game of strength 0) admits every step; an L so large that ηL²
    exceeds float64's range fails it (ηL² = inf > τ) instead of overflowing (module docstring, Overflow).
    """
    t, eta, tau, kl_initial, lipschitz = _linear_rate_inputs(
        "mmd_kl_bound", iterations, eta, tau, kl_initial, lipschitz
    )
    fails = _product(eta, lipschitz, lipschitz) > tau  # inf only where ηL² exceeds float64 (> τ)
    if fails:
        return np.full(np.broadcast_shapes(t.shape, kl_initial.shape), np.nan)
    with np.errstate(over="ignore"):  # (1 + ητ)^t = inf at a huge t: the bound is 0 there
        return kl_initial / (1.0 + eta * tau) ** t


# ----------------------------------------------------------------------------------------------
# APO with exact rewards (docs/theory.md §B.3, derived [D✓]; the paper's constants are unknown)


def apo_multipliers(iterations: ArrayLike, alpha: float) -> tuple[jax.Array, jax.Array]:
    """Closed-form (ĉ_T, c_T) of docs/theory.md §B.3 for exact-reward APO-DPO (constant α).

    log π̂_T = log π_ref + ĉ_T·r/β and log π_T = log π_ref + c_T·r/β with
    ĉ_T = [T − α(1 − α^T)/(1 − α)]/(1 − α),  c_T = [T − α²(1 − α^T)/(1 − α)]/(1 − α).

    JAX arrays in JAX's precision (float32 unless inside ``sim.float64()``), so it can be traced; the bounds
    below compute the same closed form in NumPy float64.
    """
    t = jnp.asarray(_counts(iterations, "apo_multipliers", least=0), dtype=jnp.result_type(float))
    return _closed_multipliers(t, _apo_alpha(alpha, "apo_multipliers"))


def _closed_multipliers(t: Any, alpha: Any) -> tuple[Any, Any]:
    """(ĉ_T, c_T) of :func:`apo_multipliers` for a NumPy or a JAX array ``t``, in its precision."""
    geometric = (1.0 - alpha**t) / (1.0 - alpha)
    return (t - alpha * geometric) / (1.0 - alpha), (t - alpha**2 * geometric) / (1.0 - alpha)


def apo_multiplier_sequence(
    iterations: int, alpha: float = 0.3, schedule: str = "constant"
) -> tuple[np.ndarray, np.ndarray]:
    """(ĉ_t, c_t) for t = 0 … ``iterations``: log π̂_t = log π_ref + ĉ_t·r/β, log π_t = log π_ref + c_t·r/β [D✓].

    Recursion of APO-DPO with exact rewards (docs/theory.md §B.3, sim.rules.apo): x_{t+1} = y_t + 1,
    y_{t+1} = (1 + α_t)x_{t+1} − α_t x_t, x_0 = y_0 = 0, with α_t = α (constant) or t/(t+3)
    (``nesterov``, as :func:`sim.rules.apo.extrapolation_weight`).  For constant α this equals
    :func:`sim.rules.apo.apo_multipliers`.
    """
    where = "apo_multiplier_sequence"
    iterations = _count(iterations, where, least=0)
    check_size(iterations, f"{where}: iterations", "the multiplier sequences", copies=8)
    if _apo_schedule(schedule, where) == "constant":
        alpha = _apo_alpha(alpha, where)

    def step(carry, weight):
        proximal, extrapolated = carry
        new_proximal = extrapolated + 1.0
        new_extrapolated = (1.0 + weight) * new_proximal - weight * proximal
        return (new_proximal, new_extrapolated), (new_proximal, new_extrapolated)

    with float64():  # NumPy out: float64 whatever JAX's setting (float32 lost 4e-5 of c_T at T = 20000)
        steps = jnp.arange(iterations, dtype=jnp.float64)
        weights = steps / (steps + 3.0) if schedule == "nesterov" else jnp.full_like(steps, alpha)
        _, (proximal, extrapolated) = jax.lax.scan(step, (jnp.zeros(()), jnp.zeros(())), weights)
        proximal, extrapolated = np.asarray(proximal), np.asarray(extrapolated)
    zero = np.zeros(1)
    return np.concatenate([zero, proximal]), np.concatenate([zero, extrapolated])


def apo_suboptimality_bound(
    iterations: ArrayLike,
    alpha: float,
    beta: float,
    reference: ArrayLike,
    rewards: ArrayLike,
    schedule: str = "constant",
    iterate: str = "extrapolated",
) -> np.ndarray:
    """SubOpt(π_T) ≤ β·log(1/π_ref(y*))/c_T ≈ (1 − α)β·log(1/π_ref(y*))/T [D✓, docs/theory.md §B.3].

    Gibbs variational argument for π_T = softmax(log π_ref + c_T r/β); with tied best arms π_ref(y*) is
    their summed π_ref mass (the Gibbs argument against π_ref restricted to the argmax set: a tighter
    bound than any single tied arm's).  This is docs/theory.md's exact-reward form of the optimisation term of APO's
    Theorem 4.4, whose constants are unknown (the paper is not public).  α = 0 is iterative DPO; α ∈ (−1, 0)
    (averaging, outside the paper's range) keeps c_T > 0 for T ≥ 1, so the bound holds there too.
    ``iterate = "proximal"`` bounds the proximal iterate π̂_T (multiplier ĉ_T ≤ c_T) instead: the
    iterate that APO's ``implicit_reference`` form records.
    """
    t, beta, reference, rewards = _apo_inputs("apo_suboptimality_bound", iterations, beta, reference, rewards)
    best = np.flatnonzero(rewards == rewards.max())
    log_inverse = -np.log(reference[best].sum())
    multipliers = _multipliers_at(t, alpha, schedule, iterate, "apo_suboptimality_bound")
    with np.errstate(divide="ignore"):
        return np.where(multipliers > 0, beta * log_inverse / np.where(multipliers > 0, multipliers, 1.0), np.inf)


def _apo_inputs(
    where: str, iterations: object, beta: object, reference: object, rewards: object
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The APO bounds' iterations (whole, ≥ 0, as int64), β > 0, π_ref (> 0) and rewards (one per arm)."""
    t = _counts(iterations, where, least=0).astype(np.int64)
    beta = _number(beta, where, "beta", 0.0)
    reference = _probabilities(reference, where, "reference", positive=True)
    return t, beta, reference, _rewards(rewards, where, reference.size)


def _apo_schedule(schedule: object, where: str) -> str:
    """The extrapolation schedule, one of :data:`APO_SCHEDULES` (another name was read as ``constant``)."""
    if not isinstance(schedule, str) or schedule not in APO_SCHEDULES:
        raise PrefsimError(f"{where}: schedule must be one of {', '.join(APO_SCHEDULES)}, got {schedule!r}.")
    return schedule


#: Which of APO's two iterates a bound is about: the proximal π̂_T (multiplier ĉ_T) or π_T (c_T), in the
#: order of both multiplier sequences' pairs (ĉ, c).
APO_ITERATES = ("proximal", "extrapolated")


def _multipliers_at(
    iterations: np.ndarray, alpha: float, schedule: str, iterate: str = "extrapolated", where: str = "APO bounds"
) -> np.ndarray:
    """c_t (``iterate = "extrapolated"``) or ĉ_t (``"proximal"``) at ``iterations`` (whole numbers ≥ 0, int64)."""
    if not isinstance(iterate, str) or iterate not in APO_ITERATES:
        raise PrefsimError(f"{where}: iterate must be one of {', '.join(APO_ITERATES)}, got {iterate!r}.")
    which = APO_ITERATES.index(iterate)
    if _apo_schedule(schedule, where) == "constant":
        alpha = _apo_alpha(alpha, where)
        return _closed_multipliers(np.asarray(iterations, dtype=np.float64), alpha)[which]
    sequences = apo_multiplier_sequence(int(np.max(iterations)), alpha, schedule)
    return sequences[which][np.asarray(iterations)]


def _apo_alpha(alpha: float, where: str) -> float:
    """α as a float, refusing values outside (−1, 1), as rule ``apo`` does: the closed forms divide by 1 − α,
    and α ≤ −1 no longer averages (α = −1 repeats π̂_t); a tracer unchanged.  α ∈ (−1, 0) (averaging, outside
    the paper's range) keeps every multiplier c_T, ĉ_T > 0 for T ≥ 1, so the bounds still hold
    (docs/theory.md §B.3)."""
    if _traced(alpha):
        return alpha
    alpha = finite_number(alpha, f"{where}: alpha")
    if not -1.0 < alpha < 1.0:
        raise PrefsimError(
            f"{where}: the extrapolation α must lie in (−1, 1), got {alpha:g}; the exact-reward closed forms "
            "(docs/theory.md §B.3) divide by 1 − α, and α ≤ −1 does not average the proximal outputs."
        )
    return alpha


def apo_exact_policy(
    iterations: int, alpha: float, beta: float, reference: ArrayLike, rewards: ArrayLike, schedule: str = "constant"
) -> np.ndarray:
    """Closed-form π_T = softmax(log π_ref + c_T·r/β) of exact-reward APO-DPO [D✓]."""
    where = "apo_exact_policy"
    t, beta, reference, rewards = _apo_inputs(where, _count(iterations, where, least=0), beta, reference, rewards)
    multiplier = float(_multipliers_at(t.reshape(1), alpha, schedule, where=where)[0])
    logits = np.log(reference) + multiplier * rewards / beta
    logits -= logits.max()
    policy = np.exp(logits)
    return policy / policy.sum()


def reward_gap(rewards: ArrayLike) -> float:
    """Δ = r*_max − max_{y ≠ y*} r_y; 0 when the best arm is not unique."""
    ordered = np.sort(_rewards(rewards, "reward_gap"))[::-1]
    return float(ordered[0] - ordered[1])


def apo_tv_bound(
    iterations: ArrayLike,
    alpha: float,
    beta: float,
    reference: ArrayLike,
    rewards: ArrayLike,
    schedule: str = "constant",
    iterate: str = "extrapolated",
) -> np.ndarray | float:
    """TV(π_T, δ_{y*}) = 1 − π_T(y*) ≤ ((1 − π_ref(y*))/π_ref(y*))·exp(−c_T·Δ/β) [D✓, docs/theory.md §B.3].

    Needs a unique best arm (Δ > 0).  Shape of APO's Theorem 4.8 (exact form unknown): the
    semilog slope tends to −Δ/(β(1 − α)) (:func:`apo_tv_log_slope`).  ``iterate = "proximal"``: the
    same bound for π̂_T with ĉ_T (as :func:`apo_suboptimality_bound`).
    """
    t, beta, reference, rewards = _apo_inputs("apo_tv_bound", iterations, beta, reference, rewards)
    gap = reward_gap(rewards)
    if not gap > 0:
        raise PrefsimError("apo_tv_bound: needs a unique best arm (reward gap Δ > 0).")
    best_mass = float(reference[int(np.argmax(rewards))])
    multipliers = _multipliers_at(t, alpha, schedule, iterate, "apo_tv_bound")
    return (1.0 - best_mass) / best_mass * np.exp(-multipliers * gap / beta)


def apo_tv_log_slope(alpha: float, beta: float, rewards: ArrayLike) -> float:
    """Asymptotic semilog slope of TV(π_T, π*) for constant α: −Δ/(β(1 − α)) per iteration [D✓]."""
    alpha = _apo_alpha(alpha, "apo_tv_log_slope")
    return -reward_gap(_rewards(rewards, "apo_tv_log_slope")) / (
        _number(beta, "apo_tv_log_slope", "beta", 0.0) * (1.0 - alpha)
    )


def apo_dpo_lag(iterations: ArrayLike, alpha: float) -> np.ndarray | float:
    """Iteration lag L_T = α²(1 − α^T)/(1 − α): APO(α, β) after T iterations = iterative DPO with
    β_eff = β(1 − α) after T − L_T iterations (exact, docs/theory.md §B.3 [D✓]; L_T → α²/(1 − α))."""
    t = _counts(iterations, "apo_dpo_lag", least=0)
    alpha = _apo_alpha(alpha, "apo_dpo_lag")
    return alpha**2 * (1.0 - alpha**t) / (1.0 - alpha)


def apo_noise_weights(iterations: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of per-step reward errors ε_s (s = 0 … T−1) in the log-policies [D✓, docs/theory.md §B.3].

    Returns ``(proximal, extrapolated)``: ŵ_{T,s} = (1 − α^{T−s})/(1 − α) in log π̂_T and
    w_{T,s} = (1 − α^{T−s+1})/(1 − α) in log π_T, each divided by β in the log-policy; they sum to
    ĉ_T and c_T.  Each error is amplified by up to 1/(1 − α) – the mechanism behind the reviewers'
    1/(1 − α) statistical factor; with α < 0 (averaging) every weight lies in [1 + α, 1]: damped.
    """
    iterations = _count(iterations, "apo_noise_weights")
    check_size(iterations, "apo_noise_weights: iterations", "the weights of T errors", copies=4)
    alpha = _apo_alpha(alpha, "apo_noise_weights")
    s = np.arange(iterations, dtype=np.float64)
    power = iterations - s
    return (1.0 - alpha**power) / (1.0 - alpha), (1.0 - alpha ** (power + 1.0)) / (1.0 - alpha)


def apo_log_ratio_growth(iterations: ArrayLike, alpha: float, beta: float, rewards: ArrayLike) -> np.ndarray | float:
    """Predicted realised B_T ≈ c_T·(r_max − r_min)/β (+O(1)) of exact-reward APO-DPO [D✓, docs/theory.md §B.3]."""
    where = "apo_log_ratio_growth"
    t = _counts(iterations, where, least=0).astype(np.int64)
    beta, rewards = _number(beta, where, "beta", 0.0), _rewards(rewards, where)
    multipliers = _multipliers_at(t, alpha, "constant", where=where)
    return multipliers * (rewards.max() - rewards.min()) / beta


# ----------------------------------------------------------------------------------------------
# Extragradient (Nash Mirror Prox) and optimistic MD (ONPO): derived forms (docs/theory.md §C.10)


def proximal_step(eta: ArrayLike, tau: float) -> np.ndarray | float:
    """η_prox = η/(1 − ητ): the proximal step equal to prefsim's explicit mirror step U with learning rate η [D].

    ``(ℓ + η_prox τ ℓ_ref + η_prox Pπ′)/(1 + η_prox τ)`` (the proximal, Nash-MP/MMD form) equals
    U(ℓ; π′) = (1 − ητ)ℓ + ητ ℓ_ref + ηPπ′ exactly when η_prox = η/(1 − ητ); then 1/(1 + η_prox τ) = 1 − ητ.
    Needs ητ ≤ 1 (the mirror step's weight 1 − ητ on ℓ ≥ 0); ητ = 1 is the exact best response, η_prox = ∞.
    """
    eta = _numbers(eta, "proximal_step", "eta", 0.0)
    tau = _number(tau, "proximal_step", "tau", 0.0, strict=False)
    _step_below_one(eta, tau, "proximal_step")
    with np.errstate(divide="ignore"):
        return eta / (1.0 - eta * tau)


def _step_below_one(eta: np.ndarray | float, tau: float, where: str) -> None:
    """Refuse ητ > 1: the mirror step (1 − ητ)ℓ + … would weigh ℓ negatively (and (1 − ητ)^x be NaN)."""
    product = float(np.max(eta)) * tau
    if product > 1.0:
        raise PrefsimError(
            f"{where}: the mirror step needs ητ ≤ 1 (its weight 1 − ητ on ℓ), got "
            f"η = {float(np.max(eta)):g}, τ = {tau:g} (ητ = {product:g})."
        )


def mirror_prox_max_eta(lipschitz: float, tau: float, optimistic: bool = False) -> float:
    """Largest learning rate of the derived linear rates: 1/(L + τ) (extragradient), 1/(3L + τ) (optimistic) [D].

    Equivalently η_prox·L ≤ 1 (resp. ≤ 1/3), L = max|P − ½| (:func:`mmd_lipschitz`, ℓ₁ → ℓ∞).  Infinite
    (every step) when L + τ = 0: P ≡ ½ and τ = 0.
    """
    lipschitz = _number(lipschitz, "mirror_prox_max_eta", "lipschitz", 0.0, strict=False)
    tau = _number(tau, "mirror_prox_max_eta", "tau", 0.0, strict=False)
    optimistic = _flag(optimistic, "mirror_prox_max_eta", "optimistic")
    denominator = (3.0 if optimistic else 1.0) * lipschitz + tau
    return math.inf if denominator == 0 else 1.0 / denominator


def mirror_prox_kl_bound(
    iterations: ArrayLike, eta: float, tau: float, kl_initial: ArrayLike, lipschitz: float, optimistic: bool = False
) -> np.ndarray:
    """KL(π*_τ‖π_t) ≤ (1 − ητ)^t·KL(π*_τ‖π_0) for exact extragradient and optimistic MD [D✓, docs/theory.md §C.10].

    Extragradient (mirror prox; Nash Mirror Prox, arXiv 2505.19731; Cen et al. 2021) for η ≤ 1/(L + τ);
    optimistic MD (the rule ``optimistic``, π̄_0 = π_0) for η ≤ 1/(3L + τ), where the potential
    KL(π*‖π_t) + c·KL(π_t‖π̄_t) contracts and KL(π_0‖π̄_0) = 0.  Returns NaN where the step condition fails.
    In the proximal step η_prox = η/(1 − ητ) the factor is (1 + η_prox τ)^{−1}: Nash-MP's abstract states
    (1 + 2β)^{−N/2} after N queries (two per iteration, η_prox = 2 = 1/L for L = ½), the same form.
    """
    where = "mirror_prox_kl_bound"
    t, eta, tau, kl_initial, lipschitz = _linear_rate_inputs(where, iterations, eta, tau, kl_initial, lipschitz)
    optimistic = _flag(optimistic, where, "optimistic")
    if eta > mirror_prox_max_eta(lipschitz, tau, optimistic) * (1.0 + 1e-12):
        return np.full(np.broadcast_shapes(t.shape, kl_initial.shape), np.nan)
    return kl_initial * (1.0 - eta * tau) ** t


def mirror_prox_query_rate(queries: ArrayLike, eta: float, tau: float) -> np.ndarray | float:
    """(1 + η_prox τ)^{−N/2} = (1 − ητ)^{N/2}: the linear rate in N preference queries (two per iteration) [D].

    Nash Mirror Prox's abstract form (1 + 2β)^{−N/2} [V, abstract] is this with η_prox = 2, β = τ.  Needs ητ ≤ 1.
    """
    queries = _counts(queries, "mirror_prox_query_rate", "queries", least=0)
    eta = _number(eta, "mirror_prox_query_rate", "eta", 0.0)
    tau = _number(tau, "mirror_prox_query_rate", "tau", 0.0, strict=False)
    _step_below_one(eta, tau, "mirror_prox_query_rate")
    return (1.0 - eta * tau) ** (queries / 2.0)


def optimistic_average_gap_bound(
    iterations: ArrayLike, eta: float, tau: float, initial_min_mass: float, lipschitz: float
) -> np.ndarray:
    """DualGap_τ((1/T)Σ_{t=1}^T π̄_t) ≤ 2·log(1/min π_0)/(η_prox·T) for optimistic MD, η ≤ 1/(3L + τ) [D✓].

    The average is over the **leading** iterates π̄_1 … π̄_T (the policies whose win rates the rule
    queries), not over π_t, so no recorded column holds it (the bound is checked on an independent
    trajectory in the tests).  O(D/T), D = log(1/min π_0): the shape of ONPO's O(1/T) average-iterate
    bound (arXiv 2502.16852; its constant "4√D/T" is [S], not verified), derived in docs/theory.md §C.10.
    NaN where the step condition fails.
    """
    where = "optimistic_average_gap_bound"
    t = _counts(iterations, where)
    eta = _number(eta, where, "eta", 0.0)
    tau = _number(tau, where, "tau", 0.0, strict=False)
    log_inverse = _log_inverse_mass(initial_min_mass, where)
    lipschitz = _number(lipschitz, where, "lipschitz", 0.0, strict=False)
    if eta > mirror_prox_max_eta(lipschitz, tau, optimistic=True) * (1.0 + 1e-12):
        return np.full_like(t, np.nan)
    return 2.0 * log_inverse / (proximal_step(eta, tau) * t)


# ----------------------------------------------------------------------------------------------
# reference advancement (COMAL, MPO): monotone KL to the unregularised Nash π⁰ (docs/theory.md §F.1)


def advancement_kl_check(iterations: ArrayLike, kl: ArrayLike, every: int) -> dict[str, np.ndarray]:
    """COMAL's claim KL(π⁰‖π_{kM}) ≤ KL(π⁰‖π_{(k−1)M}) at every recorded advance kM, k ≥ 1 [D for exact inner solves].

    ``iterations``/``kl``: a recorded trajectory's iterations and ``kl_to_unregularised_nash``; only the
    outer iterates t ∈ {0, M, 2M, …} that were recorded are compared, each with the previous recorded
    one (monotone at every advance ⟹ monotone along any sub-sequence).  When the inner solve is exact
    (π_{k+1} the τ-regularised Nash toward π_k) KL(π⁰‖π_{k+1}) + KL(π_{k+1}‖π_k) ≤ KL(π⁰‖π_k) for
    every Nash π⁰ (docs/theory.md §F.1); with M inner steps it is COMAL's claim, checked here.

    Returns arrays ``iteration, previous_iteration, previous, kl, holds`` (holds: kl ≤ previous·(1 +
    1e-9) + 1e-12), one entry per recorded advance that has a recorded predecessor (``pd.DataFrame(...)``
    makes it a table).
    """
    where = "advancement_kl_check"
    t = _counts(iterations, where, least=0).astype(np.int64)
    kl = real_array(kl, f"{where}: kl", "a column of numbers")
    every = _count(every, where, "every")
    if t.ndim != 1 or kl.shape != t.shape:
        raise PrefsimError(
            f"{where}: iterations and kl must be columns of one length (one KL per recorded iteration), got shapes "
            f"{t.shape} and {kl.shape}."
        )
    outer = np.flatnonzero(t % every == 0)
    rows = {"iteration": t[outer[1:]], "previous_iteration": t[outer[:-1]]}
    rows["previous"], rows["kl"] = kl[outer[:-1]], kl[outer[1:]]
    rows["holds"] = rows["kl"] <= rows["previous"] * (1.0 + 1e-9) + 1e-12
    return rows


# ----------------------------------------------------------------------------------------------
# the registry: each bound as an object the rule definitions list


class BoundSetting(NamedTuple):
    """What a bound's hypotheses read: the rule's resolved parameters and facts about the game.

    Built from the spec (:func:`spec_setting`, to explain a missing bound before any data exist) or
    from a seed's game arrays (:func:`game_setting`, when evaluating); the hypotheses are the same
    functions in both cases, so the message and the decision cannot disagree.
    """

    parameters: Mapping[str, Any]
    tau: float
    initial_is_reference: bool
    has_rewards: bool
    initial: str = "reference"


def spec_setting(game: Any, parameters: Mapping[str, Any]) -> BoundSetting:
    """:class:`BoundSetting` from a spec's game table (``kind``, ``tau``, ``initial``)."""
    return BoundSetting(
        parameters, float(game.tau), game.initial == "reference", game.kind == "bradley_terry", str(game.initial)
    )


def game_setting(game: Mapping[str, Any], parameters: Mapping[str, Any]) -> BoundSetting:
    """:class:`BoundSetting` from one seed's arrays (``tau``, ``initial``, ``reference``, ``rewards``)."""
    return BoundSetting(
        parameters,
        game["tau"],
        bool(np.allclose(game["initial"], game["reference"])),
        bool(np.all(np.isfinite(game["rewards"]))),
        "",
    )


#: ``(parameters, frame, game) -> (bound values, mask or None) | None``: a bound along one trajectory
#: (``frame``: one rule × seed sorted by iteration, a ``Trajectory``; ``game``: that seed's arrays
#: and target).
Evaluate = Callable[[Mapping[str, Any], Any, Mapping[str, Any]], Any]

#: Said when a bound's hypotheses hold on the spec but its evaluation on the data returns nothing.
UNMET = "its hypotheses do not hold on the recorded trajectory"


@dataclasses.dataclass(frozen=True)
class Bound:
    """One theorem (or derived bound) and when it applies.

    Attributes:
      label: ``"<short name>: <formula>"``, the ``bound_name`` of :func:`sim.theory.tightness_report`
        (figures label the curve with the part before the colon).
      formula: the function of this module that computes it.
      source: paper, theorem and provenance tag, with the docs/theory.md section.
      metric: the recorded column it bounds; ``None`` when it is stated but not drawn (no column
        holds the quantity, or it is a condition such as η_crit).
      selects: ``parameters -> bool``: the rule variant it is about (INPO's Theorem 4 is about the
        ``theorem4`` schedule); a bound that does not select a variant is not reported missing.
      hypotheses: functions ``BoundSetting -> reason | None``, checked in order; the first reason is
        what the run says when the bound is not drawn.
      evaluate: the bound along one trajectory (:data:`Evaluate`), ``None`` with ``metric = None``.
      unmet: what to say when the hypotheses hold but ``evaluate`` returns ``None`` (a condition the
        data decide, e.g. a step size against the game's Lipschitz constant).
    """

    label: str
    formula: str
    source: str
    metric: str | None = None
    selects: Callable[[Mapping[str, Any]], bool] = lambda parameters: True
    hypotheses: tuple = ()
    evaluate: Evaluate | None = None
    unmet: str = UNMET

    @property
    def short(self) -> str:
        """The label before its colon (``"INPO Theorem 4"``)."""
        return self.label.split(":")[0]

    @property
    def drawn(self) -> bool:
        """Evaluated on runs (has a metric and an evaluation)."""
        return self.metric is not None and self.evaluate is not None

    def reason(self, setting: BoundSetting) -> str | None:
        """Why the bound does not apply (the first failing hypothesis), or ``None``."""
        return next((r for r in (h(setting) for h in self.hypotheses) if r is not None), None)

    def describe(self) -> dict:
        """JSON-ready description (``prefsim rules --json``)."""
        return {
            "name": self.short,
            "label": self.label,
            "formula": self.formula,
            "source": self.source,
            "metric": self.metric,
        }


# hypotheses (each: BoundSetting -> reason | None)


def fixed_reference(setting: BoundSetting) -> str | None:
    every = setting.parameters.get("reference_every")
    if every is None:
        return None
    return (
        f"its theorem is about a fixed reference and this rule moves its reference to π_t every {every:g} "
        "iterations (reference_every)"
    )


def starts_at_reference(setting: BoundSetting) -> str | None:
    if setting.initial_is_reference:
        return None
    return f'its bound starts from π_0 = π_ref and this game has initial = "{setting.initial}"'


def regularised_game(setting: BoundSetting) -> str | None:
    if not setting.tau > 0:
        return "its bound is about the τ-regularised Nash and the game has τ = 0"
    rule_tau = setting.parameters.get("tau", setting.tau)
    if isinstance(rule_tau, (int, float)) and abs(float(rule_tau) - float(setting.tau)) > 1e-12:
        return (
            f"the rule's τ = {float(rule_tau):g} differs from the game's τ = {float(setting.tau):g}, and the "
            "metrics measure the game's Nash (the theorem is about the rule's own τ)"
        )
    return None


def exact_normaliser(setting: BoundSetting) -> str | None:
    if setting.parameters.get("normaliser", "exact") == "exact":
        return None
    return 'the Hedge bound holds for the exact normaliser, not normaliser = "paper"'


def bradley_terry(setting: BoundSetting) -> str | None:
    if setting.has_rewards:
        return None
    return "its bound needs Bradley–Terry rewards and the game is not kind = bradley_terry"


def moving_anchor(setting: BoundSetting) -> str | None:
    if setting.parameters.get("anchor", "previous") != "reference":
        return None
    return (
        "its bound is about the proximal-point reading (anchor = previous); with anchor = reference every "
        "iterate is the one-step DPO optimum softmax(log π_ref + r/β), which does not improve with t"
    )


def dpo_base(setting: BoundSetting) -> str | None:
    base = setting.parameters.get("base", "dpo")
    if base == "dpo":
        return None
    return f"the exact-reward APO bound is derived for base = dpo, not base = {base}"


# evaluations (each: parameters, frame, game -> (values, mask) | None)


def _iterations(frame: Trajectory) -> np.ndarray:
    return np.asarray(frame["iteration"], dtype=np.int64)


def _initial_kl(frame: Trajectory) -> float:
    return float(np.asarray(frame["kl_to_nash"], dtype=np.float64)[0])


def _inpo_theorem4(parameters, frame, game):
    t = _iterations(frame)
    b = realised_log_ratio(frame, game["target"], game["reference"])
    if not np.all(np.isfinite(b)):  # a diverged run, or π* with a zero: no finite B, no bound
        return None
    return theorem4_kl_bound(t, game["tau"], b), t >= 1


def _inpo_theorem3(parameters, frame, game):
    t = _iterations(frame)
    b = realised_log_ratio(frame, game["target"], game["reference"])
    if not np.all(np.isfinite(b)):
        return None
    divergence = log_reference_mass_bound(game["reference"])
    return theorem3_gap_bound(t + 1, float(parameters["eta"]), game["tau"], b, divergence), None


def _hedge(learning_rate: Callable[[Mapping[str, Any]], float]) -> Evaluate:
    def evaluate(parameters, frame, game):
        if not np.all(np.isfinite(frame["exploitability_mixture"])):
            return None
        t = _iterations(frame)
        return hedge_exploitability_bound(t + 1, learning_rate(parameters), float(game["initial"].min())), None

    return evaluate


def _nash_md(parameters, frame, game):
    t = _iterations(frame)
    if not np.isfinite(_initial_kl(frame)):
        return None
    return nash_md_kl_bound(t, float(parameters["eta"]), game["tau"], _initial_kl(frame)), t >= 1


def _mmd(parameters, frame, game):
    t = _iterations(frame)
    if not np.isfinite(_initial_kl(frame)):
        return None
    bound = mmd_kl_bound(
        t, float(parameters["eta"]), game["tau"], _initial_kl(frame), mmd_lipschitz(game["preference"])
    )
    return (bound, t >= 1) if np.isfinite(bound).any() else None


def _mirror_prox(optimistic: bool) -> Evaluate:
    def evaluate(parameters, frame, game):
        t = _iterations(frame)
        if not np.isfinite(_initial_kl(frame)):
            return None
        lipschitz = mmd_lipschitz(game["preference"])
        bound = mirror_prox_kl_bound(
            t, float(parameters["eta"]), game["tau"], _initial_kl(frame), lipschitz, optimistic
        )
        return (bound, t >= 1) if np.isfinite(bound).any() else None

    return evaluate


def _apo_suboptimality(parameters, frame, game):
    t = _iterations(frame)
    return apo_suboptimality_bound(t, *_apo_arguments(parameters, game)), t >= 1


def _apo_tv(parameters, frame, game):
    if not (reward_gap(game["rewards"]) > 0 and game["tau"] == 0):
        return None
    return apo_tv_bound(_iterations(frame), *_apo_arguments(parameters, game)), None


def _apo_arguments(parameters: Mapping[str, Any], game: Mapping[str, Any]) -> tuple:
    """The APO bounds' arguments after ``iterations`` for an exact-reward APO-DPO run (iterative DPO is
    α = 0): α, β, π_ref, r, the extrapolation schedule, and the recorded iterate (APO's
    ``implicit_reference`` form records the proximal π̂_t, the others π_t)."""
    return (
        float(parameters.get("alpha", 0.0)),
        float(parameters.get("beta", 1.0)),
        game["reference"],
        game["rewards"],
        parameters.get("schedule", "constant"),
        "proximal" if parameters.get("form") == "implicit_reference" else "extrapolated",
    )


def _advancement(parameters, frame, game):
    every = parameters.get("reference_every")
    kl = np.asarray(frame["kl_to_unregularised_nash"], dtype=np.float64)
    t = _iterations(frame)
    if every is None or not np.all(np.isfinite(kl)):
        return None
    check = advancement_kl_check(t, kl, every)
    if not len(check["iteration"]):
        return None
    bound = np.full(t.shape, np.nan)
    bound[np.searchsorted(t, check["iteration"])] = check["previous"]
    return bound, np.isfinite(bound)


_REGULARISED = (fixed_reference, regularised_game)

INPO_THEOREM4 = Bound(
    "INPO Theorem 4: 32C²/(τ²(T+1))",
    "theorem4_kl_bound",
    "Zhang et al., INPO (ICLR 2025), Theorem 4 [V]; realised B including π* (docs/theory.md §A.5)",
    "kl_to_nash",
    selects=lambda parameters: parameters.get("schedule", "constant") == "theorem4",
    hypotheses=(fixed_reference, starts_at_reference, regularised_game),
    evaluate=_inpo_theorem4,
    unmet="the realised B is not finite: π* has a zero (underflowed) probability, or the run diverged",
)
#: Same hypotheses as Theorem 4, about the constant-η variant.
INPO_THEOREM3 = dataclasses.replace(
    INPO_THEOREM4,
    label="INPO Theorem 3: 2Reg_T/T, Reg_T = ηD + (4τ²max(B,1)²+1)T/η",
    formula="theorem3_gap_bound",
    source="Zhang et al., INPO (ICLR 2025), Lemma 2 / Theorem 3 proof inequality [V] (docs/theory.md §A.5)",
    metric="duality_gap_mixture",
    selects=lambda parameters: parameters.get("schedule", "constant") != "theorem4",
    evaluate=_inpo_theorem3,
)
ETA_CRITICAL = Bound(
    "η_crit: last-iterate convergence iff η > (τ² + ω_max²)/(2τ)",
    "eta_critical",
    "derived, linearised at π* [D✓] (docs/theory.md §A.3); a condition, not drawn",
)
SPPO_HEDGE = Bound(
    "Hedge regret: 2(log(1/min π_0)/η + ηT/8)/T",
    "hedge_exploitability_bound",
    "Hedge regret (Cesa-Bianchi & Lugosi 2006, Thm 2.2) [D]; the shape of SPPO Theorem 4.1 [M] (§C.7)",
    "exploitability_mixture",
    hypotheses=(exact_normaliser,),
    evaluate=_hedge(lambda parameters: float(parameters["eta"])),
)
#: DNO's η is an inverse learning rate: Hedge with step 1/η, so its label states the bound in DNO's η.
DNO_HEDGE = dataclasses.replace(
    SPPO_HEDGE,
    label="Hedge regret: 2(η·log(1/min π_0) + T/(8η))/T, η inverse",
    source="Hedge regret (Cesa-Bianchi & Lugosi 2006, Thm 2.2) [D] with step 1/η, DNO's η being an inverse "
    "learning rate (§C.8)",
    evaluate=_hedge(lambda parameters: 1.0 / float(parameters["eta"])),
)
NASH_MD_THEOREM1 = Bound(
    "Nash-MD Theorem 1 (unrolled)",
    "nash_md_kl_bound",
    "Munos et al., Nash-MD (ICML 2024), Theorem 1 unrolled [M] (docs/theory.md §C.6)",
    "kl_to_nash",
    hypotheses=_REGULARISED,
    evaluate=_nash_md,
)
MMD_LINEAR = Bound(
    "MMD linear rate: KL_0/(1+ητ)^t (η ≤ τ/L²)",
    "mmd_kl_bound",
    "Sokota et al., MMD (ICLR 2023), Theorem 3.4 [M] (docs/theory.md §C.9)",
    "kl_to_nash",
    hypotheses=_REGULARISED,
    evaluate=_mmd,
    unmet="MMD's linear rate needs the step η ≤ τ/L² (L = max|P − ½|), which this run's η exceeds",
)


def _mirror_prox_bound(optimistic: bool, name: str, source: str) -> Bound:
    """The derived linear rate KL_0(1 − ητ)^t of extragradient (``optimistic=False``) or optimistic MD."""
    limit = "1/(3L+τ)" if optimistic else "1/(L+τ)"
    return Bound(
        f"{name} linear rate: KL_0(1−ητ)^t (η ≤ {limit})",
        "mirror_prox_kl_bound",
        source,
        "kl_to_nash",
        hypotheses=_REGULARISED,
        evaluate=_mirror_prox(optimistic),
        unmet=f"the {name} linear rate needs the step η ≤ {limit} (L = max|P − ½|), which this run's η exceeds",
    )


MIRROR_PROX_LINEAR = _mirror_prox_bound(
    False,
    "Mirror prox",
    "derived for prefsim's extragradient [D✓] (docs/theory.md §C.10); Nash Mirror Prox (arXiv 2505.19731) "
    "states (1 + 2β)^{−N/2} in N queries [V, abstract]; Cen et al. 2021 prove the same shape",
)
OPTIMISTIC_LINEAR = _mirror_prox_bound(
    True,
    "Optimistic MD",
    "derived for prefsim's optimistic MD [D✓] (docs/theory.md §C.10); ONPO (arXiv 2502.16852) claims a "
    "last-iterate linear rate for a unique Nash [S, not verified]",
)
OPTIMISTIC_AVERAGE = Bound(
    "Optimistic MD average gap: 2 log(1/min π_0)/(η_prox T)",
    "optimistic_average_gap_bound",
    "derived [D✓] (docs/theory.md §C.10): the O(D/T) shape of ONPO's average-iterate bound [S]; about the "
    "average of the leading iterates π̄_t, which no column records, so not drawn",
)
APO_SUBOPTIMALITY = Bound(
    "APO/DPO exact SubOpt: β·log(1/π_ref(y*))/c_T",
    "apo_suboptimality_bound",
    "exact-reward derivation [D✓] of APO's Theorem 4.4 shape (docs/theory.md §B.3; the paper is not public)",
    "suboptimality",
    hypotheses=(starts_at_reference, bradley_terry, dpo_base, moving_anchor),
    evaluate=_apo_suboptimality,
)
#: Same hypotheses as the suboptimality bound; the data also need a reward gap Δ > 0 and τ = 0.
APO_TV = dataclasses.replace(
    APO_SUBOPTIMALITY,
    label="APO/DPO exact TV: (1−π_ref(y*))/π_ref(y*)·exp(−c_TΔ/β)",
    formula="apo_tv_bound",
    source="exact-reward derivation [D✓] of APO's Theorem 4.8 shape, with a reward gap Δ > 0 and τ = 0 (§B.3)",
    metric="tv_to_optimum",
    evaluate=_apo_tv,
    unmet=(
        "the TV bound needs a unique best arm (reward gap Δ > 0) and a game with τ = 0, where tv_to_optimum is "
        "the distance to the best arm's point mass"
    ),
)
ADVANCEMENT_MONOTONE = Bound(
    "COMAL monotone KL to π⁰: KL(π⁰‖π_kM) ≤ KL(π⁰‖π_(k−1)M)",
    "advancement_kl_check",
    "Liu et al., COMAL (ICLR 2026, arXiv 2410.23223): KL to the Nash never increases [S]; exact-solve "
    "proof [D] and check at every recorded advance (docs/theory.md §F.1)",
    "kl_to_unregularised_nash",
    selects=lambda parameters: parameters.get("reference_every") is not None,
    evaluate=_advancement,
    unmet="the check needs a unique unregularised Nash π⁰ and recorded iterations at multiples of reference_every",
)
