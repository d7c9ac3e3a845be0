"""A seed's JAX key (sim.precision.seed_key) is the same in and out of JAX's 64-bit mode, so distinct seeds give
distinct keys wherever the sampled inputs are built; seeds that no key can hold are refused with a clear error."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from sim.precision import seed_key
from sim.sampled.experiment import build_sampled_inputs
from sim.spec import parse_spec

SPEC = {
    "iterations": 2,
    "seeds": [5, 2**32 + 5],
    "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
    "rule": [{"name": "inpo", "eta": 1.0, "tau": 0.1}],
    "run": {
        "mode": "sampled",
        "pairs_per_iteration": 8,
        "policy": "tabular",
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "inner_steps": 1,
    },
}


def test_seeds_2_to_the_32_apart_get_different_keys_outside_64_bit_mode():
    """Outside 64-bit mode jax.random.PRNGKey keeps a seed's low 32 bits: seeds 5 and 2³² + 5 were one stream."""
    spec = parse_spec(SPEC)
    with jax.enable_x64(True):
        inside = np.asarray(build_sampled_inputs(spec).keys)
    with jax.enable_x64(False):
        outside = np.asarray(build_sampled_inputs(spec).keys)
    np.testing.assert_array_equal(outside, inside)
    assert not np.array_equal(outside[0], outside[1])
    with jax.enable_x64(False):  # small seeds keep the keys they had
        np.testing.assert_array_equal(seed_key(7), jax.random.PRNGKey(7))
    assert np.asarray(seed_key(2**63 - 1)).tolist() == [2**31 - 1, 2**32 - 1]


@pytest.mark.parametrize("mode", ["sampled", "exact"])
def test_a_built_spec_with_a_seed_beyond_63_bits_is_refused_not_an_overflow_error(mode):
    """A TOML file cannot give such a seed (the parser refuses it); a spec built in Python was PRNGKey's
    OverflowError traceback in sampled mode, and ran in exact mode."""
    spec = parse_spec({**SPEC, "run": {**SPEC["run"], "mode": mode}} if mode == "sampled" else {**SPEC, "run": {}})
    with pytest.raises(PrefsimError, match=r"^seeds: expected a non-empty tuple of integers ≥ 0 and below 2⁶³"):
        sim.run(dataclasses.replace(spec, seeds=(2**63, 7)))
    with pytest.raises(PrefsimError, match=r"^seed: expected an integer ≥ 0 and below 2⁶³"):
        seed_key(-1)
