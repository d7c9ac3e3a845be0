"""MLP policies and the APO rebuttal's ring task in sampled mode (small shapes)."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from bandits.continuous import ring_reward, ring_task, segment_regret
from bandits.errors import PrefsimError


def test_ring_reward_peaks_on_the_ring_and_decays_exponentially():
    assert ring_reward(np.array([1.0, 0.0])) == pytest.approx(1.0)
    assert ring_reward(np.array([0.0, 1.5])) == pytest.approx(np.exp(-0.5 / 0.25))
    task = ring_task(grid=9)
    assert task["preference"].shape == (1, 81, 81)
    np.testing.assert_allclose(task["preference"] + np.swapaxes(task["preference"], 1, 2), 1.0, atol=1e-15)
    np.testing.assert_allclose(segment_regret(np.arange(10.0), 5), [2.0, 7.0])
    with pytest.raises(PrefsimError, match="ring grid"):
        ring_task(grid=1)


def _ring_spec(form: str, rules=None):
    rules = rules or [{"name": "dpo", "beta": 1.0}, {"name": "apo", "base": "dpo", "beta": 1.0, "alpha": 0.3}]
    return {
        "iterations": 6,
        "seeds": 2,
        "record_every": 1,
        "game": {"tau": 0.0},  # the ring reads only τ of the [game] table
        "rule": [{**rule, "form": form} if rule["name"] == "apo" else rule for rule in rules],
        "run": {
            "mode": "sampled",
            "problem": "ring",
            "ring_grid": 9,
            "policy": "mlp",
            "mlp_width": 32,
            "pairs_per_iteration": 300,
            "optimizer": "adam",
            "learning_rate": 0.02,
            "inner_steps": 40,
        },
    }


def test_mlp_dpo_and_apo_reduce_ring_regret():
    table = sim.run(_ring_spec("parameters"))
    assert np.all(np.isfinite(table[["suboptimality", "regret", "distance_to_exact"]].dropna().to_numpy()))
    mean = table.groupby(["rule", "iteration"]).suboptimality.mean()
    for rule in ("dpo", "apo"):
        assert mean[rule, 6] < mean[rule, 0] - 0.05
    # regret column = cumulative suboptimality of the data-collecting policies
    one = table[(table.rule == "dpo") & (table.seed == 0)].sort_values("iteration")
    np.testing.assert_allclose(one.regret.to_numpy()[1:], np.cumsum(one.suboptimality.to_numpy()[:-1]), rtol=1e-10)


def test_mlp_parameter_extrapolation_differs_from_log_space():
    rules = [{"name": "apo", "base": "dpo", "beta": 1.0, "alpha": 0.3}]
    by_parameters = sim.run(_ring_spec("parameters", rules))
    in_log_space = sim.run(_ring_spec("log_space", rules))
    late = by_parameters.iteration >= 2
    difference = np.abs(by_parameters[late].suboptimality.to_numpy() - in_log_space[late].suboptimality.to_numpy())
    assert difference.max() > 0.01  # ≈ 0.05 on average, up to ≈ 0.13, on suboptimality ≈ 0.6
