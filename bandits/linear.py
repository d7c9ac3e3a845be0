"""Contextual linear bandits (docs/theory.md §C.13): features φ(x, y) and linear preference models.

Shapes: M contexts, K responses per context, d features.  ``features`` is (M, K, d); a
non-contextual linear bandit is M = 1.  Everything is NumPy float64 (problem construction, not the
hot path); the sampled engine turns it into JAX arrays.

* :func:`linear_bradley_terry` — reward r(x, y) = θ*·φ(x, y), P(y ≻ y′ | x) = σ(r(x, y) − r(x, y′)).
  Log-linear policies π_θ ∝ π_ref·exp(θᵀφ) realise the exact DPO step θ̂_{t+1} = θ_t + θ*/β.
* :func:`linear_preference_game` — P(y ≻ y′ | x) = ½ + ½·φ(x, y)ᵀ A φ(x, y′) with A skew-symmetric,
  scaled so that max |φᵀAφ′| = 1 over all contexts and pairs, hence P ∈ [0, 1], and P + Pᵀ = 1 and
  diag(P) = ½ exactly in floating point (the bilinear form is computed as (B − Bᵀ)/2, B = φᵀAφ′, whose
  entries are exactly antisymmetric, so ½ + x and ½ − x round to a pair summing to exactly 1).  The win
  rate P(y ≻ π | x) = ½ + ½·φ(x, y)ᵀ A μ(π, x) is linear in φ, so the exact INPO, online-IPO, SPPO
  (exact normaliser) and DNO updates stay in the log-linear class.
* :func:`random_linear_bandit` — a random instance of either model (unit-norm Gaussian features,
  uniform context distribution).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, check_size, finite_number, real_array

LINEAR_KINDS = ("bradley_terry", "preference_game")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_features(features) -> np.ndarray:
    array = real_array(features, "features", "an (M, K, d) or (K, d) array of numbers")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] < 2 or array.shape[2] < 1:
        raise PrefsimError(f"features: expected an (M, K, d) or (K, d) array with K ≥ 2, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise PrefsimError("features: every feature must be finite.")
    contexts, arms = array.shape[:2]
    check_size(contexts * arms * arms, "features", f"the {contexts}×{arms}×{arms} preference tensor")
    return array


def linear_bradley_terry(features: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Rewards (M, K) = Φθ* and the Bradley–Terry preference tensor (M, K, K); θ* (``weights``) finite."""
    features = _check_features(features)
    weights = real_array(weights, "weights", "the vector θ* of d numbers")
    if weights.shape != (features.shape[2],):
        raise PrefsimError(f"weights: expected shape ({features.shape[2]},), got {weights.shape}.")
    if not np.all(np.isfinite(weights)):
        raise PrefsimError(f"weights: every weight of θ* must be finite (no NaN or inf), got {weights.tolist()}.")
    rewards = features @ weights
    return rewards, _sigmoid(rewards[:, :, None] - rewards[:, None, :])


def linear_preference_game(features: ArrayLike, skew: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Preference tensor (M, K, K) of P = ½ + ½·φᵀAφ′ with A skew-symmetric, rescaled so P ∈ [0, 1].

    φᵀAφ′ is computed as (B − Bᵀ)/2 with B = φᵀAφ′ per context (equal to B for a skew-symmetric A,
    and exactly antisymmetric in floating point), so P + Pᵀ = 1 and diag(P) = ½ hold exactly.
    Returns ``(preference, scaled_skew)``; ``scaled_skew`` is the A actually used, (A − Aᵀ)/2 rescaled.
    """
    features = _check_features(features)
    skew = real_array(skew, "skew", "a d×d skew-symmetric matrix of numbers")
    dim = features.shape[2]
    if skew.shape != (dim, dim):
        raise PrefsimError(f"skew: expected a ({dim}, {dim}) matrix, got shape {skew.shape}.")
    if not np.all(np.isfinite(skew)):
        raise PrefsimError("skew: every entry of A must be finite (no NaN or inf).")
    if np.max(np.abs(skew + skew.T)) > 1e-12:
        raise PrefsimError("skew: the matrix A of a linear preference game must be skew-symmetric (A = −Aᵀ).")
    bilinear = np.einsum("mid,de,mje->mij", features, skew, features)
    bilinear = 0.5 * (bilinear - bilinear.transpose(0, 2, 1))  # fl(b − b′) = −fl(b′ − b): exactly antisymmetric
    largest = np.max(np.abs(bilinear))
    if largest == 0:
        raise PrefsimError("skew: φᵀAφ′ is zero for every pair; the game is trivial (all preferences ½).")
    scaled = 0.5 * (skew - skew.T) / largest
    preference = 0.5 + 0.5 * (bilinear / largest)
    return preference, scaled


def random_linear_bandit(
    arms: int, dim: int, contexts: int = 1, kind: str = "preference_game", seed: int = 0, scale: float = 1.0
) -> dict[str, Any]:
    """A random contextual linear bandit.

    Features φ(x, y) ~ N(0, I_d) normalised to unit length; θ* ~ N(0, I_d)·``scale`` (Bradley–Terry,
    a finite number) or A = (G − Gᵀ)/√2 (preference game, then rescaled).  Context distribution uniform;
    ``seed`` an integer ≥ 0 (the stream ``default_rng([seed, 11])``).

    Returns a dict with ``features`` (M, K, d), ``preference`` (M, K, K), ``rewards`` (M, K) or
    ``None``, ``context_probs`` (M,), and ``weights`` or ``skew``.
    """
    if not isinstance(kind, str) or kind not in LINEAR_KINDS:
        raise PrefsimError(f"linear bandit kind: expected one of {', '.join(LINEAR_KINDS)}, got {kind!r}.")
    arms = check_integer(arms, "arms", 2)
    dim = check_integer(dim, "feature_dim", 1)
    contexts = check_integer(contexts, "contexts", 1)
    seed = check_integer(seed, "seed", 0)
    scale = finite_number(scale, "scale")
    check_size(contexts * arms * (arms + dim), "arms", f"{contexts} context(s) of {arms} arms with {dim} features")
    rng = np.random.default_rng([int(seed), 11])
    features = rng.standard_normal((contexts, arms, dim))
    features /= np.linalg.norm(features, axis=2, keepdims=True)
    out = {"features": features, "context_probs": np.full(contexts, 1.0 / contexts)}
    if kind == "bradley_terry":
        weights = scale * rng.standard_normal(dim)
        rewards, preference = linear_bradley_terry(features, weights)
        out.update(preference=preference, rewards=rewards, weights=weights)
    else:
        if dim < 2:
            raise PrefsimError("feature_dim: a linear preference game needs d ≥ 2 (a non-zero skew-symmetric A).")
        gaussian = rng.standard_normal((dim, dim))
        preference, skew = linear_preference_game(features, (gaussian - gaussian.T) / np.sqrt(2.0))
        out.update(preference=preference, rewards=None, skew=skew)
    return out
