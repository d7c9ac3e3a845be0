"""A new rule is one definition plus one registration: it then runs in every mode.

The toy rule below, ``anchored_ipo``, is the IPO loss anchored at the previous iterate π_t instead of
π_ref: per pair (h − 1/(2η))² with h = (log π − log π_t)(y_w) − (log π − log π_t)(y_l).  On λ_p pairs from
π_t its population minimiser is π_{t+1} ∝ π_t·exp(Pπ_t/η) (the IPO argument with π_ref replaced by π_t
and τ by η), which is its exact update — the same update as DNO with inverse learning rate η, an
independent implementation to compare with.  Everything the rule is lives in this file; the test
registers it with one call and runs it in exact mode, sampled mode (tabular) and on the bridge's
bandit LM, and checks that its loss gives the same values and gradients under JAX and torch.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from bridge_games import random_game

import sim
from llm_bridge.bandit_lm import PROMPT, BanditLM
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.ops import TORCH_OPS
from llm_bridge.pairs import population_pairs
from llm_bridge.rules import build_bridge_rule
from llm_bridge.trainer import PairTensors, weighted_loss_sum
from sim.rules import JAX_OPS, RULES, PairData, Parameter, RuleDefinition, register_rule, unregister_rule
from sim.rules.base import ExactRule, ExactState, advance, current_win_rates, initial_state, require_positive
from sim.rules.catalogue import describe_rules

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------- the whole rule


def anchored_ipo(eta=1.0) -> ExactRule:
    """Exact update: log π_{t+1} = log π_t + Pπ_t/η − log Z."""
    require_positive("anchored_ipo", "eta", eta)

    def update(state, game):
        return advance(state, state.log_policy + current_win_rates(state, game) / eta)

    return ExactRule("anchored_ipo", initial_state, update)


def anchored_ipo_loss(ops, batch, parameters):
    """(h − 1/(2η))², h = (log π − log π_t)(y_w) − (log π − log π_t)(y_l)."""
    h = (batch["policy_w"] - batch["previous_w"]) - (batch["policy_l"] - batch["previous_l"])
    return (h - 1.0 / (2.0 * parameters["eta"])) ** 2


TOY = RuleDefinition(
    name="anchored_ipo",
    paper="a test rule (IPO anchored at π_t)",
    summary="IPO's loss anchored at the previous iterate; exact update π_t·exp(Pπ_t/η)",
    parameters=(Parameter("eta", "IPO scale η (target 1/(2η))", 1.0, constraint="> 0", symbol="η"),),
    exact=anchored_ipo,
    loss=anchored_ipo_loss,
    data=PairData(),
)

# ----------------------------------------------------------------------------------------- the tests


@pytest.fixture
def toy_rule():
    register_rule(TOY)
    try:
        yield TOY
    finally:
        unregister_rule(TOY.name)


def _spec(rule, **run):
    spec = {
        "iterations": 20,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.1},
        "rule": [rule],
    }
    if run:
        spec["run"] = run
    return spec


def test_a_registered_rule_is_listed_with_its_modes_and_schemes(toy_rule):
    entry = next(rule for rule in describe_rules() if rule["name"] == "anchored_ipo")
    assert entry["modes"] == ["exact", "sampled", "llm"]
    assert entry["parameters"][0]["name"] == "eta" and entry["parameters"][0]["default"] == 1.0
    assert "lambda_p" in entry["pair_schemes"]["sampled"] and entry["pair_schemes"]["default"] == "lambda_p"
    json.dumps(entry)  # JSON-ready
    unregister_rule("anchored_ipo")
    assert "anchored_ipo" not in RULES
    register_rule(TOY)


def test_exact_mode_runs_the_new_rule_and_equals_the_independent_dno_update(toy_rule):
    toy = sim.run(_spec({"name": "anchored_ipo", "eta": 0.7}))
    dno = sim.run(_spec({"name": "dno", "eta": 0.7}))
    columns = [c for c in toy.columns if c not in ("rule",)]
    np.testing.assert_allclose(toy[columns].to_numpy(float), dno[columns].to_numpy(float), rtol=0, atol=1e-12)


def test_sampled_mode_runs_the_new_rule_and_approaches_its_exact_update(toy_rule):
    run = {
        "mode": "sampled",
        "pairs_per_iteration": 20000,
        "inner_steps": 400,
        "optimizer": "adam",
        "learning_rate": 0.05,
    }
    spec = _spec({"name": "anchored_ipo", "eta": 2.0}, **run)
    spec["iterations"] = 2
    table = sim.run(spec)
    distance = table[table.iteration > 0]["distance_to_exact"].to_numpy()
    # N = 20000 pairs: the sampled minimiser is within a few 1/√N of the exact update
    assert np.isfinite(distance).all() and distance.max() < 0.1
    loss = table[table.iteration > 0]["loss"].to_numpy()
    assert np.isfinite(loss).all()


def test_the_new_rule_trains_on_the_bandit_lm_to_its_exact_update(toy_rule):
    """Population-weighted bridge loss (every ordered pair, weight π_t(y)π_t(y′)P(y≻y′)) → exact update."""
    arms, pad = 5, 5
    game = random_game(3, False, arms, random_initial=True)
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    pairs = population_pairs(np.exp(np.asarray(game.log_initial)), np.asarray(game.preference))
    n = len(pairs)
    prompts = [PROMPT] * n
    responses = [[p.winner] for p in pairs] + [[p.loser] for p in pairs]
    previous = batched_sequence_logprobs(model, prompts + prompts, responses, pad, batch_size=7)
    reference = batched_sequence_logprobs(reference_model, prompts + prompts, responses, pad, batch_size=7)
    values = {
        "previous_w": previous[:n],
        "previous_l": previous[n:],
        "reference_w": reference[:n],
        "reference_l": reference[n:],
        "win_rate_w": torch.tensor([p.win_rate_w for p in pairs], dtype=torch.float64),
        "win_rate_l": torch.tensor([p.win_rate_l for p in pairs], dtype=torch.float64),
        "preference": torch.tensor([p.preference for p in pairs], dtype=torch.float64),
        "weight": torch.tensor([p.weight for p in pairs], dtype=torch.float64),
    }
    data = PairTensors(prompts, [[p.winner] for p in pairs], [[p.loser] for p in pairs], values)
    rule = build_bridge_rule("anchored_ipo", {"eta": 1.4})
    assert rule.pairs == "lambda_p" and rule.samples == 2
    optimizer = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=2000, tolerance_grad=1e-13, tolerance_change=1e-300,
        history_size=50, line_search_fn="strong_wolfe",
    )  # fmt: skip
    total = float(values["weight"].sum())

    def closure():
        optimizer.zero_grad()
        value = weighted_loss_sum(model, data, list(range(n)), rule, pad, torch.float64) / total
        value.backward()
        return value

    for _ in range(5):
        optimizer.step(closure)
    exact = anchored_ipo(1.4).update(ExactState(game.log_initial, jnp.zeros((), jnp.int32), ()), game).log_policy
    assert np.max(np.abs(np.asarray(exact) - np.asarray(game.log_initial))) > 0.05
    np.testing.assert_allclose(model.log_policy().numpy(), np.asarray(exact), atol=1e-6, rtol=0)


def test_the_one_loss_agrees_between_jax_and_torch_in_float64(toy_rule):
    rng = np.random.default_rng(7)
    keys = ("policy_w", "policy_l", "previous_w", "previous_l", "reference_w", "reference_l")
    arrays = {k: rng.normal(size=32) for k in keys}
    parameters = {"eta": 0.9}

    def jax_total(policy_w, policy_l):
        batch = {k: jnp.asarray(v) for k, v in arrays.items()} | {"policy_w": policy_w, "policy_l": policy_l}
        return jnp.sum(TOY.loss(JAX_OPS, batch, parameters))

    jax_value = jax_total(jnp.asarray(arrays["policy_w"]), jnp.asarray(arrays["policy_l"]))
    jax_grads = jax.grad(jax_total, argnums=(0, 1))(jnp.asarray(arrays["policy_w"]), jnp.asarray(arrays["policy_l"]))
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k.startswith("policy")) for k, v in arrays.items()}
    torch_value = TOY.loss(TORCH_OPS, tensors, parameters).sum()
    torch_value.backward()
    assert abs(float(jax_value) - torch_value.item()) <= 1e-12 * max(1.0, abs(float(jax_value)))
    np.testing.assert_allclose(tensors["policy_w"].grad.numpy(), np.asarray(jax_grads[0]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tensors["policy_l"].grad.numpy(), np.asarray(jax_grads[1]), rtol=0, atol=1e-12)


def test_every_registered_loss_agrees_between_jax_and_torch_in_float64():
    """The same check for every built-in rule's loss (the one definition each mode evaluates)."""
    rng = np.random.default_rng(3)
    n = 16
    base = {
        "policy_w": rng.normal(size=n) - 2,
        "policy_l": rng.normal(size=n) - 2,
        "previous_w": rng.normal(size=n) - 2,
        "previous_l": rng.normal(size=n) - 2,
        "reference_w": rng.normal(size=n) - 2,
        "reference_l": rng.normal(size=n) - 2,
        "win_rate_w": rng.uniform(size=n),
        "win_rate_l": rng.uniform(size=n),
    }
    parameters = {"eta": 1.3, "tau": 0.4, "beta": 0.6, "schedule": "constant", "anchor": "previous"}
    checked = 0
    for definition in RULES.values():
        if definition.loss is None:
            continue
        for both in (0.0, 1.0):

            def jax_total(policy_w, policy_l, definition=definition, both=both):
                batch = {k: jnp.asarray(v) for k, v in base.items()}
                batch.update(policy_w=policy_w, policy_l=policy_l, step=jnp.asarray(3), both_from_policy=both)
                return jnp.sum(definition.loss(JAX_OPS, batch, parameters))

            arguments = (jnp.asarray(base["policy_w"]), jnp.asarray(base["policy_l"]))
            value = jax_total(*arguments)
            grads = jax.grad(jax_total, argnums=(0, 1))(*arguments)
            tensors = {
                k: torch.tensor(v, dtype=torch.float64, requires_grad=k.startswith("policy")) for k, v in base.items()
            }
            total = definition.loss(TORCH_OPS, tensors | {"step": 3, "both_from_policy": both}, parameters).sum()
            total.backward()
            assert abs(float(value) - total.item()) <= 1e-12 * max(1.0, abs(float(value))), definition.name
            np.testing.assert_allclose(tensors["policy_w"].grad.numpy(), np.asarray(grads[0]), rtol=0, atol=1e-12)
            np.testing.assert_allclose(tensors["policy_l"].grad.numpy(), np.asarray(grads[1]), rtol=0, atol=1e-12)
            checked += 1
    assert checked == 2 * sum(d.loss is not None for d in RULES.values()) >= 12


def test_importing_prefsim_changes_no_global_setting_and_stays_light():
    """``import sim, llm_bridge.rules`` leaves JAX in 32-bit mode and loads neither pandas nor SciPy;
    ``sim.run`` computes in float64 inside its own scope and leaves the setting as it was."""
    code = (
        "import sys, jax\n"
        "import sim, llm_bridge.rules\n"
        "assert not jax.config.jax_enable_x64, 'x64 switched on by an import'\n"
        "assert 'pandas' not in sys.modules and 'scipy' not in sys.modules, 'heavy import'\n"
        "table = sim.run({'iterations': 5, 'game': {'kind': 'cyclic', 'arms': 3, 'tau': 0.1},"
        " 'rule': [{'name': 'inpo', 'eta': 0.5}]})\n"
        "assert table['kl_to_nash'].dtype == 'float64'\n"
        "assert not jax.config.jax_enable_x64, 'x64 left on by sim.run'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
