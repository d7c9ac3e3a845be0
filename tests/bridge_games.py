"""Random small games shared by the bridge equivalence tests (bandit LM vs sim)."""

import jax.numpy as jnp
import numpy as np

from sim.game import Game


def random_game(seed: int, bradley_terry: bool, arms: int, random_initial: bool = False, tau: float = 0.3) -> Game:
    """A seeded game: Dirichlet(2) π_ref; BT with U[0, 2] rewards, or P = ½ + ½ tanh(G − Gᵀ).

    ``random_initial``: π_0 ~ Dirichlet(3) (so π_t ≠ π_ref and both anchors matter); else π_0 = π_ref.
    """
    rng = np.random.default_rng(seed)
    reference = rng.dirichlet(np.ones(arms) * 2.0)
    if bradley_terry:
        rewards = rng.uniform(0.0, 2.0, arms)
        preference = 1.0 / (1.0 + np.exp(-(rewards[:, None] - rewards[None, :])))
    else:
        skew = rng.normal(0.0, 1.0, (arms, arms))
        preference = 0.5 + 0.5 * np.tanh(skew - skew.T)
        rewards = np.full(arms, np.nan)
    initial = rng.dirichlet(np.ones(arms) * 3.0) if random_initial else reference
    return Game(
        jnp.asarray(preference),
        jnp.asarray(np.log(reference)),
        jnp.asarray(np.log(initial)),
        jnp.asarray(rewards),
        jnp.asarray(tau),
    )
