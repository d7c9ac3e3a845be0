"""Preference models over K arms (docs/theory.md §1).

A preference matrix ``P`` has ``P[i, j] = Pr(i ≻ j)``, entries in [0, 1], ``P + Pᵀ = 1`` and hence
``diag(P) = ½``.  Every constructor here returns a validated float64 NumPy array; random
instances are drawn from an explicit ``numpy.random.Generator`` so one seed gives one game.

Constructors
------------
* :func:`general_matrix` – any user matrix, validated.
* :func:`bradley_terry` – ``P[i, j] = σ(r_i − r_j)``.
* :func:`bradley_terry_mixture` – ``P[i, j] = Σ_k w_k σ(r_k(i) − r_k(j))``, a mixture of n
  Bradley–Terry models (COMAL's oracle mixes two, MNPO's several); not transitive in general: three
  components ranking a ≻ b ≻ c, b ≻ c ≻ a and c ≻ a ≻ b with equal weights and large reward gaps give
  the Condorcet paradox, a 3-cycle of majorities.
* :func:`cyclic` – the non-transitive family ``P = ½ + (c/2)·A`` with ``A[i, i+1 mod K] = 1``,
  ``A[i+1 mod K, i] = −1`` (rock–paper–scissors for K = 3, docs/theory.md §A.3), strength ``c ∈ [0, 1]``.
* :func:`random_lower_triangle` – lower triangle i.i.d. U[0, 1], upper triangle ``1 − Pᵀ``
  (EGPO's ``gen_preference_matrix(..., "random")``, docs/theory.md §C.10).
* :func:`random_skew_logits` – ``P = σ(S)`` with ``S = (G − Gᵀ)·scale/√2`` skew-symmetric, ``G``
  standard normal, so ``σ(S) + σ(Sᵀ) = 1`` exactly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, check_rng, check_size, finite_number, real_array

#: Tolerance for ``P + Pᵀ = 1`` and for entries slightly outside [0, 1] due to rounding.
DEFAULT_TOLERANCE = 1e-9


def validate_preference_matrix(
    matrix: ArrayLike, *, tolerance: float = DEFAULT_TOLERANCE, name: str = "preference"
) -> np.ndarray:
    """Return ``matrix`` as a float64 array after checking it is a valid preference matrix.

    Checks: square 2-D with K ≥ 2, finite, entries in [0, 1], ``P + Pᵀ = 1`` within ``tolerance``
    (which implies a diagonal of ½).  Raises :class:`PrefsimError` naming ``name`` otherwise.
    """
    if finite_number(tolerance, "tolerance") < 0:  # a NaN tolerance once accepted any matrix
        raise PrefsimError(f"tolerance: expected a number ≥ 0, got {tolerance!r}.")
    array = real_array(matrix, name, "a square matrix of numbers")
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise PrefsimError(f"{name}: expected a square K×K matrix, got shape {array.shape}.")
    if array.shape[0] < 2:
        raise PrefsimError(f"{name}: a preference game needs at least 2 arms, got {array.shape[0]}.")
    if not np.all(np.isfinite(array)):
        raise PrefsimError(f"{name}: the matrix has non-finite entries (NaN or inf).")
    if array.min() < -tolerance or array.max() > 1 + tolerance:
        i, j = np.unravel_index(np.argmax(np.maximum(array - 1, -array)), array.shape)
        raise PrefsimError(f"{name}: entries must be probabilities in [0, 1]; P[{i},{j}] = {array[i, j]:g}.")
    residual = np.abs(array + array.T - 1.0)
    if residual.max() > tolerance:
        i, j = np.unravel_index(np.argmax(residual), array.shape)
        raise PrefsimError(
            f"{name}: a preference matrix needs P + Pᵀ = 1 (so a diagonal of ½); "
            f"P[{i},{j}] + P[{j},{i}] = {array[i, j] + array[j, i]:.12g}."
        )
    return np.clip(array, 0.0, 1.0)


def general_matrix(matrix: ArrayLike, *, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """A user-supplied preference matrix, validated (see :func:`validate_preference_matrix`)."""
    return validate_preference_matrix(matrix, tolerance=tolerance)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_reward_spread(rewards: np.ndarray, name: str) -> None:
    """Refuse finite rewards whose spread max r − min r overflows float64 (the differences r_i − r_j would
    be ±inf and P NaN, with only NumPy's overflow warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        spread = rewards.max() - rewards.min()
    if not np.isfinite(spread):
        raise PrefsimError(
            f"{name}: the largest minus the smallest reward, {rewards.max():g} − ({rewards.min():g}), overflows "
            "float64; rescale the rewards (P saturates at 0 and 1 once two rewards differ by more than about 40)."
        )


def bradley_terry(rewards: ArrayLike, *, name: str = "rewards") -> np.ndarray:
    """Bradley–Terry preferences ``P[i, j] = σ(r_i − r_j)`` from a reward vector ``r`` (length K ≥ 2).

    ``σ(x) = ½(1 + tanh(x/2))`` keeps ``P + Pᵀ = 1`` exact in floating point.  ``name``: the field named
    in errors (the spec passes ``game.rewards``).
    """
    r = real_array(rewards, name, "a list of numbers")
    if r.ndim != 1 or r.shape[0] < 2:
        raise PrefsimError(f"{name}: expected a vector of at least 2 rewards, got shape {r.shape}.")
    if not np.all(np.isfinite(r)):
        raise PrefsimError(f"{name}: every reward must be finite.")
    _check_reward_spread(r, name)
    check_size(r.shape[0] ** 2, name, f"the {r.shape[0]}×{r.shape[0]} preference matrix")
    return validate_preference_matrix(_sigmoid(r[:, None] - r[None, :]), name="bradley_terry")


def validate_mixture_weights(
    weights: ArrayLike, components: int | None = None, *, tolerance: float = DEFAULT_TOLERANCE, name: str = "weights"
) -> np.ndarray:
    """Return mixture ``weights`` as float64 after checking them: a flat list of ``components``
    (if given) finite numbers ≥ 0 that sum to 1 within ``tolerance``.  The result is divided by its
    sum, which removes the rounding of decimal input (e.g. three times 0.3333333333333333)."""
    array = real_array(weights, name, "a list of mixture weights (numbers)")
    if array.ndim != 1 or array.shape[0] < 1:
        raise PrefsimError(f"{name}: expected a flat, non-empty list of mixture weights, got shape {array.shape}.")
    if components is not None and array.shape[0] != check_integer(components, "components", 1):
        raise PrefsimError(
            f"{name}: {array.shape[0]} weight(s) for {components} mixture component(s); give one weight per component."
        )
    if not np.all(np.isfinite(array)):
        raise PrefsimError(f"{name}: every mixture weight must be finite (no NaN or inf), got {array.tolist()}.")
    if array.min() < 0:
        raise PrefsimError(f"{name}: mixture weights must be ≥ 0, got {array.tolist()}.")
    if abs(array.sum() - 1.0) > tolerance:
        raise PrefsimError(f"{name}: mixture weights must sum to 1, they sum to {array.sum():.12g}.")
    return array / array.sum()


def bradley_terry_mixture(
    rewards: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    rewards_name: str = "rewards",
    weights_name: str = "weights",
) -> np.ndarray:
    """Mixture of Bradley–Terry models ``P[i, j] = Σ_k w_k σ(r_k(i) − r_k(j))``.

    Args:
      rewards: n reward vectors, shape (n, K) (n ≥ 1 components, K ≥ 2 arms), all finite, each with a
        finite spread max r_k − min r_k (as :func:`bradley_terry`'s rewards).
      weights: n mixture weights ≥ 0 summing to 1 (:func:`validate_mixture_weights`); ``None`` =
        uniform 1/n.
      rewards_name, weights_name: the fields named in errors (the spec passes ``game.rewards`` and
        ``game.weights``).

    Each component satisfies σ(x) + σ(−x) = 1, so P + Pᵀ = Σ_k w_k = 1 and diag(P) = ½.  One component
    is :func:`bradley_terry`; several are in general **not** transitive (see the module docstring), so
    the game may have no Condorcet winner and a mixed Nash policy.
    """
    r = real_array(rewards, rewards_name, "a list of reward vectors (one list of K numbers per mixture component)")
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 2:
        raise PrefsimError(
            f"{rewards_name}: expected n ≥ 1 reward vectors of K ≥ 2 numbers each (shape (n, K)), got shape {r.shape}."
        )
    if not np.all(np.isfinite(r)):
        raise PrefsimError(f"{rewards_name}: every reward must be finite (no NaN or inf).")
    for index, row in enumerate(r):
        _check_reward_spread(row, f"{rewards_name}[{index}]")
    check_size(
        r.shape[0] * r.shape[1] ** 2, rewards_name, f"{r.shape[0]} component(s) of a {r.shape[1]}×{r.shape[1]} matrix"
    )
    w = (
        np.full(r.shape[0], 1.0 / r.shape[0])
        if weights is None
        else validate_mixture_weights(weights, r.shape[0], name=weights_name)
    )
    matrix = np.einsum("k,kij->ij", w, _sigmoid(r[:, :, None] - r[:, None, :]))
    return validate_preference_matrix(matrix, name=rewards_name)


def cyclic(arms: int, strength: float = 1.0) -> np.ndarray:
    """Non-transitive cyclic preferences ``P = ½ + (c/2)·A`` on ``arms`` arms (docs/theory.md §A.3).

    ``A[i, i+1 mod K] = 1`` and ``A[i+1 mod K, i] = −1``: arm i beats arm i+1 with probability
    ``(1 + c)/2``.  K = 3 with c = 1 is rock–paper–scissors.  For K = 2 the "cycle" is a single
    pair and is rejected.  ``strength`` c must lie in [0, 1].
    """
    arms = _matrix_arms(arms)
    if arms < 3:
        raise PrefsimError(f"arms: a cyclic game needs at least 3 arms, got {arms}.")
    strength = finite_number(strength, "strength")
    if not (0.0 <= strength <= 1.0):
        raise PrefsimError(f"strength: the cyclic strength c must be in [0, 1], got {strength:g}.")
    skew = np.zeros((arms, arms))
    for i in range(arms):
        skew[i, (i + 1) % arms] = 1.0
        skew[(i + 1) % arms, i] = -1.0
    return validate_preference_matrix(0.5 + 0.5 * strength * skew, name="cyclic")


def random_lower_triangle(arms: int, rng: np.random.Generator) -> np.ndarray:
    """Random instance: ``P[i, j] ~ U[0, 1]`` i.i.d. for i > j, ``P[j, i] = 1 − P[i, j]``, diag ½."""
    arms = _matrix_arms(arms)
    lower = np.tril(check_rng(rng).uniform(size=(arms, arms)), k=-1)
    matrix = lower + np.triu(1.0 - lower.T, k=1) + 0.5 * np.eye(arms)
    return validate_preference_matrix(matrix, name="random_lower_triangle")


def random_skew_logits(arms: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Random instance ``P = σ(S)``, ``S = scale·(G − Gᵀ)/√2`` with ``G`` i.i.d. standard normal."""
    arms = _matrix_arms(arms)
    gaussian = check_rng(rng).standard_normal((arms, arms))
    skew = finite_number(scale, "scale") * (gaussian - gaussian.T) / np.sqrt(2.0)
    return validate_preference_matrix(_sigmoid(skew), name="random_skew_logits")


def check_arms(arms: object, least: int = 2) -> int:
    """``arms`` as an int; a clear error unless it is an integer ≥ ``least`` (2 for a game, 1 for a policy)."""
    return check_integer(arms, "arms", least, "an integer number of arms")


def _matrix_arms(arms: object) -> int:
    """``arms`` as an int (:func:`check_arms`) whose K×K preference matrix fits in memory (:func:`check_size`)."""
    arms = check_arms(arms)
    check_size(arms * arms, "arms", f"the {arms}×{arms} preference matrix")
    return arms
