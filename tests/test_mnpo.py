"""MNPO (time-dependent Multiplayer Nash Preference Optimization, :mod:`sim.rules.mnpo`) in every mode.

1. Exact mode against an independent NumPy computation over several steps (the population weights
   λ_j ∝ γ^j, renormalised while fewer than m iterates exist), to 1e-12 in float64.
2. Closed forms: m = 1 and γ = 0 are INPO step for step (the paper's two-player case); the regularised
   Nash π*_τ is a fixed point whatever the weights.
3. Sampled mode: after three iterations (so the anchor mixes three different iterates) the sampled
   proximal output approaches the exact update given the same history like N^{-1/2}.
4. The loss with its history anchor agrees between JAX and torch (1e-12); on the bridge's bandit LM the
   population-weighted loss, with the anchor built from the past iterates as the bridge loop builds it,
   reproduces three exact MNPO steps; the bridge loop itself hands the loss that anchor, scored with
   the saved checkpoints, and keeps the checkpoints it needs when pruning.
5. Bad parameters fail with clear errors; ``prefsim rules --json`` lists the rule.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from bridge_games import random_game
from rate_fit import slope_and_interval
from test_bridge_bandit_lm import _minimise  # LBFGS to a 1e-13 gradient on the weighted bridge loss

import sim
from bandits.errors import PrefsimError
from bandits.oracles import PairBatch
from llm_bridge import loop as bridge_loop
from llm_bridge.bandit_lm import PROMPT, BanditLM
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.models import load_causal_lm, load_tokenizer
from llm_bridge.ops import TORCH_OPS
from llm_bridge.pairs import population_pairs
from llm_bridge.rules import build_bridge_rule
from llm_bridge.spec import parse_spec as parse_llm_spec
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import PairTensors
from sim.nash import regularised_nash
from sim.rules import JAX_OPS, RULES, build_rule, resolve_parameters
from sim.rules.mnpo import HISTORY, mixture_weights
from sim.rules.reference import anchor_iteration
from sim.sampled import engine as sampled_engine
from sim.sampled.engine import build_iteration
from sim.sampled.experiment import build_sampled_inputs
from sim.spec import parse_spec

torch.set_num_threads(1)
K = 5


def _numpy_mnpo(game, eta, tau, history, decay, steps):
    """Independent NumPy MNPO: keep every iterate, mix the last m with λ_j ∝ γ^j over those that exist."""
    preference = np.asarray(game.preference)
    log_ref = np.asarray(game.log_reference)
    iterates = [np.asarray(game.log_initial)]
    for t in range(steps):
        available = min(history, t + 1)
        weights = np.array([decay**j for j in range(available)])
        weights /= weights.sum()
        anchor = sum(weights[j] * iterates[t - j] for j in range(available))
        payoff = preference @ np.exp(iterates[t])
        logits = (1 - tau / eta) * anchor + (tau / eta) * log_ref + payoff / eta
        logits = logits - logits.max()
        iterates.append(logits - np.log(np.exp(logits).sum()))
    return np.array(iterates)


def _exact(name, parameters, game, steps):
    rule = build_rule(name, parameters)
    state = rule.init(game)
    out = [np.asarray(state.log_policy)]
    for _ in range(steps):
        state = rule.update(state, game)
        out.append(np.asarray(state.log_policy))
    return np.array(out)


@pytest.mark.parametrize(("history", "decay"), [(2, 1.0), (3, 0.5), (4, 0.8)])
def test_exact_update_equals_an_independent_numpy_computation(history, decay):
    game = random_game(11, False, K, random_initial=True)
    parameters = {"eta": 0.8, "tau": 0.3, "history": history, "decay": decay}
    got = _exact("mnpo", parameters, game, 8)
    expected = _numpy_mnpo(game, 0.8, 0.3, history, decay, 8)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    inpo = _numpy_mnpo(game, 0.8, 0.3, 1, 1.0, 8)
    assert np.max(np.abs(expected - inpo)) > 1e-2  # the history weights matter on this trajectory


@pytest.mark.parametrize("parameters", [{"history": 1, "decay": 1.0}, {"history": 3, "decay": 0.0}])
def test_one_iterate_in_the_population_is_inpo_step_for_step(parameters):
    game = random_game(12, False, K, random_initial=True)
    got = _exact("mnpo", {"eta": 1.1, "tau": 0.4, **parameters}, game, 6)
    inpo = _exact("inpo", {"eta": 1.1, "tau": 0.4}, game, 6)
    np.testing.assert_allclose(got, inpo, rtol=0, atol=1e-13)


def test_the_regularised_nash_policy_is_a_fixed_point():
    """With π_0 = π*_τ every iterate stays π*_τ: A_t = log π*_τ and INPO's step fixes π*_τ."""
    game = random_game(13, False, K, tau=0.4)
    nash, gap, _ = regularised_nash(game)
    assert float(gap) < 1e-10
    game = game._replace(log_initial=nash)
    got = _exact("mnpo", {"eta": 0.9, "tau": 0.4, "history": 3, "decay": 0.7}, game, 5)
    np.testing.assert_allclose(got, np.broadcast_to(np.asarray(nash), got.shape), rtol=0, atol=1e-8)


def _numpy_mnpo_advancing(game, eta, tau, history, decay, every, steps):
    """Independent NumPy MNPO with reference advancement: at t = kM (k ≥ 1) π_ref ← π_t and the rule restarts,
    so the population is the iterates since kM, weighted λ_j ∝ γ^j over those that exist."""
    preference = np.asarray(game.preference)
    log_ref = np.asarray(game.log_reference)
    iterates, start = [np.asarray(game.log_initial)], 0
    for t in range(steps):
        if t > 0 and t % every == 0:
            log_ref, start = iterates[t], t
        available = min(history, t - start + 1)
        weights = np.array([decay**j for j in range(available)])
        weights /= weights.sum()
        anchor = sum(weights[j] * iterates[t - j] for j in range(available))
        logits = (1 - tau / eta) * anchor + (tau / eta) * log_ref + preference @ np.exp(iterates[t]) / eta
        logits = logits - logits.max()
        iterates.append(logits - np.log(np.exp(logits).sum()))
    return np.array(iterates)


@pytest.mark.parametrize(("history", "decay", "every"), [(3, 0.5, 2), (4, 1.0, 3), (2, 0.8, 1)])
def test_reference_advancement_restarts_the_population_as_an_independent_numpy_computation(history, decay, every):
    """MNPO with ``reference_every``: COMAL's outer loop with MNPO as inner solver (docs/theory.md §F.4)."""
    game = random_game(15, False, K, random_initial=True)
    parameters = {"eta": 0.8, "tau": 0.3, "history": history, "decay": decay}
    got = _exact("mnpo", {**parameters, "reference_every": every}, game, 10)
    expected = _numpy_mnpo_advancing(game, 0.8, 0.3, history, decay, every, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # the population restarts: keeping the iterates before the advance would be another trajectory
    fixed = _exact("mnpo", parameters, game, 10)
    assert np.max(np.abs(expected - fixed)) > 1e-2
    # one iterate in the population is COMAL (INPO with the same advancing reference) step for step
    comal = _exact("comal", {"eta": 0.8, "tau": 0.3, "reference_every": every}, game, 10)
    single = _exact("mnpo", {**parameters, "history": 1, "reference_every": every}, game, 10)
    np.testing.assert_allclose(single, comal, rtol=0, atol=1e-13)


def test_mixture_weights_are_normalised_over_the_iterates_that_exist():
    assert mixture_weights(3, 0.5, 0) == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(mixture_weights(3, 0.5, 1), [2 / 3, 1 / 3, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(mixture_weights(3, 0.5, 5), [4 / 7, 2 / 7, 1 / 7], rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------------------ sampled mode

PAIRS = (400, 6400)
SEEDS = 24
ITERATIONS = 3


def _sampled_distances(pairs=PAIRS, offline=False):
    game = {"kind": "random", "arms": K, "tau": 0.5, "reference": "random", "reference_min_mass": 0.05}
    rule = {"name": "mnpo", "eta": 2.0, "tau": 0.5, "history": 3, "decay": 0.6}
    run = {"mode": "sampled", "policy": "tabular", "learning_rate": 1.0, "optimizer": "sgd"}
    run |= {"inner_steps": 3000, "tolerance": 1e-9, "data": "offline" if offline else "online"}
    spec = parse_spec({"iterations": ITERATIONS, "seeds": SEEDS, "game": game, "rule": [rule], "run": run})
    inputs = build_sampled_inputs(spec)
    out = []
    for count in pairs:
        field = "offline_pairs" if offline else "pairs_per_iteration"
        settings = dataclasses.replace(spec.run, **{field: count})
        init, iteration = build_iteration("mnpo", spec.rules[0].parameters, settings)

        def one(problem, key, init=init, iteration=iteration):
            state = init(key, problem)
            for _ in range(ITERATIONS):
                state, info = iteration(state, problem, key)
            spread = jnp.max(jnp.abs(state.history[0] - state.history[1]))
            return info.distance_to_exact, spread

        distance, spread = jax.jit(jax.vmap(one, in_axes=(inputs.axes, 0)))(inputs.problems, inputs.keys)
        assert np.all(np.asarray(spread) > 1e-2)  # π_{t−1} ≠ π_{t−2}: the anchor mixes different iterates
        out.append(np.asarray(distance))
    return np.stack(out)


def _population_batch(scheme, key, log_policy, preference, rewards, context_probs, pairs, *settings):
    """Every ordered pair (winner y, loser y′) of one context with its λ_p probability 2π(y)π(y′)P(y ≻ y′):
    the sampled loss's expectation, so its argmin is the exact update."""
    arms = log_policy.shape[-1]
    first, second = (index.ravel() for index in jnp.meshgrid(jnp.arange(arms), jnp.arange(arms), indexing="ij"))
    policy = jnp.exp(log_policy[0])
    weight = 2 * policy[first] * policy[second] * preference[0][first, second]
    nan = jnp.full(weight.shape, jnp.nan)
    return PairBatch(jnp.zeros_like(first), first, second, nan, nan, weight), 0


@pytest.mark.parametrize("every", [None, 2], ids=["fixed", "advancing"])
def test_sampled_mnpo_on_the_population_pairs_follows_the_independent_recursion(monkeypatch, every):
    """The sampled engine builds MNPO's anchor A_t = Σ_j λ_j log π_{t−j} from its own history; trained on the
    population batch instead of draws, it must follow the independent NumPy recursion (its
    ``distance_to_exact`` is measured against that same anchor, so it cannot see a wrong one: with the
    anchor replaced by π_t, i.e. INPO, this test fails by 0.1).  With ``reference_every`` the population
    restarts at each advance (weighing the iterates before it fails the advancing case)."""
    monkeypatch.setattr(sampled_engine, "make_pairs", _population_batch)
    steps, eta, tau, history, decay = 5, 0.9, 0.3, 3, 0.5
    game = {"kind": "random", "arms": 4, "tau": tau, "reference": "random", "reference_min_mass": 0.05}
    run = {"mode": "sampled", "policy": "tabular", "optimizer": "sgd", "learning_rate": 0.4}
    run |= {"inner_steps": 60000, "tolerance": 1e-13, "pairs_per_iteration": 16}
    rule = {"name": "mnpo", "eta": eta, "tau": tau, "history": history, "decay": decay}
    if every is not None:
        rule["reference_every"] = every
    spec = parse_spec(
        {"iterations": steps, "seeds": 1, "game": game | {"initial": "random"}, "rule": [rule], "run": run}
    )
    inputs = build_sampled_inputs(spec)
    problem = jax.tree_util.tree_map(
        lambda leaf, axis: leaf if axis is None else leaf[0], inputs.problems, inputs.axes, is_leaf=lambda x: x is None
    )
    init, iteration = build_iteration("mnpo", spec.rules[0].parameters, spec.run)
    state, step = init(inputs.keys[0], problem), jax.jit(iteration)
    got = [np.asarray(state.log_policy[0])]
    for _ in range(steps):
        state, _ = step(state, problem, inputs.keys[0])
        got.append(np.asarray(state.log_policy[0]))
    exact_game = types.SimpleNamespace(
        preference=problem.preference[0], log_reference=problem.log_reference[0], log_initial=got[0]
    )
    if every is None:
        expected = _numpy_mnpo(exact_game, eta, tau, history, decay, steps)
    else:
        expected = _numpy_mnpo_advancing(exact_game, eta, tau, history, decay, every, steps)
    np.testing.assert_allclose(np.array(got), expected, rtol=0, atol=1e-10)
    inpo = _numpy_mnpo(exact_game, eta, tau, 1, 1.0, steps)
    assert np.max(np.abs(expected - inpo)) > 1e-2  # the anchor's history matters on this trajectory


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_sampled_mnpo_approaches_its_exact_update_at_root_n(offline):
    """Offline (one fixed set of pairs from π_ref): the counterpart is the INPO step from A_t with Pπ_ref."""
    errors = _sampled_distances(offline=offline)
    assert np.all(np.isfinite(errors))
    fitted, (low, high) = slope_and_interval(errors, PAIRS)
    assert low <= -0.5 <= high, f"slope {fitted:.3f}, 95% CI [{low:.3f}, {high:.3f}] excludes −1/2"
    assert high - low < 0.4
    assert errors[-1].mean() < 0.1


# ------------------------------------------------------------------------------ one loss, JAX and torch


def test_loss_with_its_history_anchor_agrees_between_jax_and_torch():
    rng = np.random.default_rng(5)
    n, m = 16, 3
    past_w, past_l = rng.normal(size=(m, n)) - 2, rng.normal(size=(m, n)) - 2
    arrays = {k: rng.normal(size=n) - 2 for k in ("policy_w", "policy_l", "reference_w", "reference_l")}
    parameters = {"eta": 1.3, "tau": 0.4, "history": m, "decay": 0.7}
    loss = RULES["mnpo"].loss
    for step in (0, 1, 4):

        def jax_total(policy_w, policy_l, step=step):
            batch = {k: jnp.asarray(v) for k, v in arrays.items()} | {"policy_w": policy_w, "policy_l": policy_l}
            batch["previous_w"] = HISTORY.combine([jnp.asarray(x) for x in past_w], jnp.asarray(step), parameters)
            batch["previous_l"] = HISTORY.combine([jnp.asarray(x) for x in past_l], jnp.asarray(step), parameters)
            return jnp.sum(loss(JAX_OPS, batch | {"step": step, "both_from_policy": 1.0}, parameters))

        arguments = (jnp.asarray(arrays["policy_w"]), jnp.asarray(arrays["policy_l"]))
        value = jax_total(*arguments)
        grads = jax.grad(jax_total, argnums=(0, 1))(*arguments)
        tensors = {k: torch.tensor(v, requires_grad=k.startswith("policy")) for k, v in arrays.items()}
        tensors["previous_w"] = HISTORY.combine([torch.tensor(x) for x in past_w], step, parameters)
        tensors["previous_l"] = HISTORY.combine([torch.tensor(x) for x in past_l], step, parameters)
        total = loss(TORCH_OPS, tensors | {"step": step, "both_from_policy": 1.0}, parameters).sum()
        total.backward()
        assert abs(float(value) - total.item()) <= 1e-12 * max(1.0, abs(float(value)))
        np.testing.assert_allclose(tensors["policy_w"].grad.numpy(), np.asarray(grads[0]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(tensors["policy_l"].grad.numpy(), np.asarray(grads[1]), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------ bridge, bandit LM


def _scores(model, winners, losers):
    n = len(winners)
    responses = [[int(y)] for y in winners] + [[int(y)] for y in losers]
    values = batched_sequence_logprobs(model, [PROMPT] * (2 * n), responses, K, batch_size=7)
    return values[:n], values[n:]


def test_bridge_loss_on_the_bandit_lm_reproduces_three_exact_mnpo_steps():
    """Each iteration: population pairs from π_t, the anchor from the stored iterates' log-probs (before π_0:
    π_0), combined by the definition's ``HISTORY`` exactly as ``llm_bridge.loop`` does."""
    game = random_game(14, False, K, random_initial=True)
    bridge_parameters = {"eta": 1.2, "tau": 0.4, "history": 3, "decay": 0.5}
    rule = build_bridge_rule("mnpo", dict(bridge_parameters))
    assert rule.pairs == "lambda_p" and rule.samples == 2
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    checkpoints = [BanditLM(np.asarray(game.log_initial))]
    for t in range(3):
        pairs = population_pairs(np.exp(model.log_policy().numpy()), np.asarray(game.preference))
        winners, losers = [p.winner for p in pairs], [p.loser for p in pairs]
        past = [_scores(checkpoints[max(t - j, 0)], winners, losers) for j in range(3)]
        reference_w, reference_l = _scores(reference_model, winners, losers)
        values = {
            "previous_w": HISTORY.combine([w for w, _ in past], t, rule.parameters),
            "previous_l": HISTORY.combine([lo for _, lo in past], t, rule.parameters),
            "reference_w": reference_w,
            "reference_l": reference_l,
        }
        for key in ("win_rate_w", "win_rate_l", "preference", "weight"):
            values[key] = torch.tensor([getattr(p, key) for p in pairs], dtype=torch.float64)
        data = PairTensors([PROMPT] * len(pairs), [[y] for y in winners], [[y] for y in losers], values)
        _minimise(model, data, rule.at_step(t))
        checkpoints.append(BanditLM(model.log_policy().numpy()))
    exact = _exact("mnpo", bridge_parameters, game, 3)
    inpo = _exact("inpo", {"eta": 1.2, "tau": 0.4}, game, 3)
    assert np.max(np.abs(exact[-1] - inpo[-1])) > 1e-2  # the population differs from INPO's π_t here
    np.testing.assert_allclose(model.log_policy().numpy(), exact[-1], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------- errors and the listing


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"eta": 0.3, "tau": 0.3}, "needs eta > tau"),
        ({"history": 0}, "history must be an integer ≥ 1"),
        ({"history": 1.5}, "history must be an integer ≥ 1"),
        ({"history": float("inf")}, "history must be an integer ≥ 1"),  # once an OverflowError (int(inf))
        ({"decay": 1.5}, "decay must lie in [0, 1]"),
        ({"decay": -0.1}, "decay must lie in [0, 1]"),
        ({"eta": -1.0}, "eta must be a finite number > 0"),
    ],
)
def test_bad_parameters_fail_clearly(given, message):
    # a float history is refused by resolve_parameters (a count, as iterations), the other values by the rule
    with pytest.raises(PrefsimError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_rule("mnpo", resolve_parameters("mnpo", given, 0.1))
    with pytest.raises(PrefsimError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_bridge_rule("mnpo", given)


def test_a_swept_history_is_refused_with_a_reason():
    spec = {
        "iterations": 3,
        "seeds": 1,
        "game": {"kind": "random", "arms": 3, "tau": 0.2},
        "rule": [{"name": "mnpo", "eta": 1.0, "history": [1, 2]}],
    }
    with pytest.raises(PrefsimError, match="cannot be swept"):
        sim.run(spec)


def test_prefsim_rules_json_lists_mnpo_with_modes_and_schemes():
    out = subprocess.run(
        [sys.executable, "-m", "sim.cli", "rules", "--json"], capture_output=True, text=True, check=True
    ).stdout
    entry = next(rule for rule in json.loads(out) if rule["name"] == "mnpo")
    assert entry["modes"] == ["exact", "sampled", "llm"]
    assert "2509.23102" in entry["paper"]
    assert [p["name"] for p in entry["parameters"]] == ["eta", "tau", "history", "decay", "reference_every"]
    assert entry["pair_schemes"]["default"] == "lambda_p" and "lambda_p" in entry["pair_schemes"]["sampled"]


@pytest.mark.parametrize("every", [None, 2], ids=["fixed", "advancing"])
def test_the_bridge_loop_anchors_at_the_mixed_checkpoints_and_keeps_them(tmp_path, monkeypatch, every):
    """``prefsim llm`` wiring: at iteration t the loss's ``previous`` is Σ_j λ_j log π_{t−j} scored with the
    saved checkpoints (π_0 before the start; with ``reference_every`` the population restarts at the last
    advance), and pruning to 2 checkpoints still keeps the m = 3 needed."""
    model_dir = build_tiny_model(tmp_path / "llama", "llama", seed=0)
    raw = {
        "iterations": 4,
        "seed": 3,
        "model": {"path": str(model_dir)},
        "prompts": {"train": ["tell me a story", "the movie was"], "heldout": ["what a"], "per_iteration": 2},
        "generation": {"max_new_tokens": 4, "batch_size": 2},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-2, "batch_size": 2, "micro_batch_size": 2, "epochs": 1},
        "run": {"keep_checkpoints": 2},
        "rule": [{"name": "mnpo", "eta": 1.0, "tau": 0.3, "history": 3, "decay": 0.5}],
    }
    if every is not None:
        raw["rule"][0]["reference_every"] = every
    seen, weights = {}, {}
    train = bridge_loop.train_on_pairs

    def recording(model, optimizer, data, rule, *args, **kwargs):
        seen[rule.step] = data  # the model holds π_t now: keep a copy of its weights
        weights[rule.step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return train(model, optimizer, data, rule, *args, **kwargs)

    monkeypatch.setattr(bridge_loop, "train_on_pairs", recording)
    out = tmp_path / "run"
    bridge_loop.run_bridge(parse_llm_spec(raw), out, progress=False)
    assert sorted(seen) == [0, 1, 2, 3]
    assert not (out / "mnpo" / "iter_001" / "policy.safetensors").exists()  # pruned once no longer needed
    tokenizer = load_tokenizer(str(model_dir))
    scorer = load_causal_lm(str(model_dir))

    def scored(t, j, key):
        scorer.load_state_dict(weights[max(t - j, anchor_iteration(t, every))])
        data = seen[t]
        return batched_sequence_logprobs(scorer, data.prompt_ids, getattr(data, key), tokenizer.pad_token_id)

    for t in (1, 3):
        lambdas = mixture_weights(3, 0.5, t - anchor_iteration(t, every))
        for key, column in (("winner_ids", "previous_w"), ("loser_ids", "previous_l")):
            expected = sum(lambdas[j] * scored(t, j, key) for j in range(3))
            np.testing.assert_allclose(seen[t].values[column].numpy(), expected.numpy(), rtol=0, atol=1e-5)
    spread = scored(3, 0, "winner_ids") - scored(3, 2, "winner_ids")
    assert float(spread.abs().max()) > 1e-3  # the mixed checkpoints differ: the test can tell them apart
