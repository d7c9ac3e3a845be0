"""Reference policies π_ref over K arms.

All constructors return a float64 probability vector with every entry > 0 (the policy class of
INPO is "policies with the same support as π_ref", docs/theory.md §A.2, so a zero would make log π_ref
infinite).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.inputs import check_rng, check_size, finite_number, real_array
from bandits.preference import check_arms

#: How far from 1 the sum of a user-given reference may be.
SUM_TOLERANCE = 1e-9


def validate_reference(reference: ArrayLike, arms: int | None = None, *, name: str = "reference") -> np.ndarray:
    """Check a reference policy: a finite vector of K positive entries summing to 1 (±1e-9)."""
    policy = real_array(reference, name, 'a list of probabilities or "uniform"')
    if policy.ndim != 1:
        raise PrefsimError(f"{name}: expected a vector of probabilities, got shape {policy.shape}.")
    if arms is not None and policy.shape[0] != check_arms(arms, least=1):
        raise PrefsimError(f"{name}: has {policy.shape[0]} entries but the game has {arms} arms.")
    if not np.all(np.isfinite(policy)):
        raise PrefsimError(f"{name}: has non-finite entries.")
    if np.any(policy <= 0):
        index = int(np.argmin(policy))
        raise PrefsimError(
            f"{name}: every arm needs positive reference mass (log π_ref must be finite); "
            f"entry {index} is {policy[index]:g}."
        )
    total = float(policy.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise PrefsimError(f"{name}: probabilities must sum to 1, they sum to {total:.12g}.")
    return policy / total


def uniform(arms: int) -> np.ndarray:
    """The uniform policy 1/K."""
    arms = check_arms(arms, least=1)
    check_size(arms, "arms", f"a policy over {arms} arms")
    return np.full(arms, 1.0 / arms)


def random_logits(arms: int, rng: np.random.Generator, scale: float = 1.0, min_mass: float = 0.0) -> np.ndarray:
    """softmax(scale·g), g standard normal, then mixed with uniform so that min_y π(y) ≥ ``min_mass``.

    The mixture ``(1 − K·m)·softmax + m`` keeps every arm's mass at least ``m = min_mass``
    (requires ``K·m ≤ 1``).
    """
    arms = check_arms(arms, least=1)
    check_size(arms, "arms", f"a policy over {arms} arms")
    min_mass = finite_number(min_mass, "min_mass")
    if not (0.0 <= min_mass <= 1.0 / arms):
        raise PrefsimError(f"min_mass: must lie in [0, 1/K] = [0, {1.0 / arms:g}], got {min_mass:g}.")
    logits = finite_number(scale, "scale") * check_rng(rng).standard_normal(arms)
    policy = np.exp(logits - logits.max())
    policy /= policy.sum()
    policy = (1.0 - arms * min_mass) * policy + min_mass
    return validate_reference(policy / policy.sum(), arms, name="random reference")
