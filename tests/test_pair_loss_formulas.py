"""Each rule's pair-batch loss (``RuleDefinition.loss``, what sampled mode and the bridge train on) against
its formula written out here in NumPy from docs/theory.md and the rule papers, on a random batch.

The bridge's conformance tests compare the torch and JAX evaluations of the *same* function, and the exact
tests read the per-pair loss functions directly, so a batch key routed to the wrong argument (winner and
loser swapped, π_ref in place of π_t) would pass both; these values would not."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from sim.rules import JAX_OPS, RULES

PAIRS = 6
_RNG = np.random.default_rng(20240617)
BATCH = {key: _RNG.normal(size=PAIRS) for key in ("policy_w", "policy_l", "reference_w", "reference_l")}
BATCH |= {key: _RNG.normal(size=PAIRS) for key in ("previous_w", "previous_l")}
BATCH |= {"win_rate_w": _RNG.uniform(size=PAIRS), "win_rate_l": _RNG.uniform(size=PAIRS)}


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _log_ratio(anchor):
    """Δ = (log π − log π_A)(y_w) − (log π − log π_A)(y_l) for the anchor A (``reference`` or ``previous``)."""
    b = BATCH
    return (b["policy_w"] - b[f"{anchor}_w"]) - (b["policy_l"] - b[f"{anchor}_l"])


def _inpo(eta, tau):
    """INPO Eq. (8): (h − 1/(2η))², h = Δlog π − (τ/η)Δlog π_ref − ((η − τ)/η)Δlog π_t."""
    b = BATCH
    h = (
        (b["policy_w"] - b["policy_l"])
        - tau / eta * (b["reference_w"] - b["reference_l"])
        - (eta - tau) / eta * (b["previous_w"] - b["previous_l"])
    )
    return (h - 1.0 / (2.0 * eta)) ** 2


def _nash_md(tau, both):
    """Nash-MD-PG value: −[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y), averaged over both responses
    when both are samples of π_t."""
    b = BATCH
    first = -(b["win_rate_w"] - 0.5 - tau * (b["policy_w"] - b["reference_w"])) * b["policy_w"]
    second = -(b["win_rate_l"] - 0.5 - tau * (b["policy_l"] - b["reference_l"])) * b["policy_l"]
    return (first + second) / 2.0 if both else first


def _sppo(eta):
    """uclaml/SPPO's loss: ½[(Δ_w − η(P̂_w − ½))² + (Δ_l − η(P̂_l − ½))²], Δ = log π − log π_t."""
    b = BATCH
    w = (b["policy_w"] - b["previous_w"] - eta * (b["win_rate_w"] - 0.5)) ** 2
    l = (b["policy_l"] - b["previous_l"] - eta * (b["win_rate_l"] - 0.5)) ** 2
    return 0.5 * (w + l)


def _dno(eta):
    """DNO's soft-label loss: −[σ(Δr)log σ(ηΔ) + σ(−Δr)log σ(−ηΔ)], Δr = P̂_w − P̂_l, Δ against π_t."""
    margin = BATCH["win_rate_w"] - BATCH["win_rate_l"]
    delta = _log_ratio("previous")
    return -(_sigmoid(margin) * _log_sigmoid(eta * delta) + _sigmoid(-margin) * _log_sigmoid(-eta * delta))


CASES = [
    ("inpo", {"eta": 0.7, "tau": 0.2}, 0, lambda: _inpo(0.7, 0.2)),
    ("inpo", {"tau": 0.2, "schedule": "theorem4"}, 3, lambda: _inpo(0.2 * (3 + 2) / 2, 0.2)),
    ("mmd", {"eta": 0.8, "tau": 0.3}, 0, lambda: _inpo(0.3 + 1 / 0.8, 0.3)),
    ("online_ipo", {"tau": 0.4}, 0, lambda: (_log_ratio("reference") - 1.0 / (2 * 0.4)) ** 2),
    ("dpo", {"beta": 0.6}, 0, lambda: -_log_sigmoid(0.6 * _log_ratio("previous"))),
    ("dpo", {"beta": 0.6, "anchor": "reference"}, 0, lambda: -_log_sigmoid(0.6 * _log_ratio("reference"))),
    ("dno", {"eta": 1.7}, 0, lambda: _dno(1.7)),
    ("sppo", {"eta": 1.3}, 0, lambda: _sppo(1.3)),
]


@pytest.mark.parametrize(("name", "parameters", "step", "expected"), CASES)
def test_pair_loss_equals_its_formula(name, parameters, step, expected):
    batch = {key: jnp.asarray(value) for key, value in BATCH.items()} | {"step": step, "both_from_policy": 1}
    value = RULES[name].loss(JAX_OPS, batch, parameters)
    np.testing.assert_allclose(np.asarray(value), expected(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("both", [0, 1])
def test_nash_md_pair_loss_equals_its_formula(both):
    batch = {key: jnp.asarray(value) for key, value in BATCH.items()} | {"step": 0, "both_from_policy": both}
    value = RULES["nash_md"].loss(JAX_OPS, batch, {"eta": 0.5, "tau": 0.3})
    np.testing.assert_allclose(np.asarray(value), _nash_md(0.3, both), rtol=1e-12, atol=1e-12)
