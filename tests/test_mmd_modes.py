"""MMD and its preset MPO (magnet moved to π_t every M iterations) in sampled mode and on the LLM bridge.

The loss is INPO's per-pair loss at η_INPO = τ + 1/η with the same τ (:mod:`sim.rules.mmd`, docs/theory.md §C.9).

1. Its population minimiser (pairs y, y′ ~ μ i.i.d., ordered by the oracle) is the MMD step computed here in
   NumPy, for τ > 0 and for τ = 0 (π_{t+1} ∝ π_t·exp(η·Pπ_t)); on pairs from π_ref it is the definition's
   ``offline`` counterpart.
2. Sampled mode on the population pairs follows the NumPy recursion, magnet advancement included; with many
   drawn pairs it tracks exact mode.
3. The loss agrees between JAX and torch (values and gradients, float64), τ = 0 included.
4. The bridge: on the bandit LM the population-weighted loss reproduces exact MMD steps; ``prefsim llm`` trains
   ``mpo`` on a tiny local Llama with its magnet moving; ``prefsim llm --predict`` runs it and its exact column
   is MMD restarted at every advance.
5. ``prefsim rules`` lists both in the three modes.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from bridge_games import random_game
from test_bridge_bandit_lm import _minimise  # LBFGS to a 1e-13 gradient on the weighted bridge loss
from test_bridge_prediction import synthetic_game  # a hand-made candidate game of the prediction study
from test_mnpo import _population_batch  # every ordered pair with its λ_p weight: the loss's expectation

import sim
from llm_bridge import loop as bridge_loop
from llm_bridge.bandit_lm import PROMPT, BanditLM
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.ops import TORCH_OPS
from llm_bridge.pairs import population_pairs
from llm_bridge.prediction import exact_trajectory
from llm_bridge.rules import build_bridge_rule
from llm_bridge.spec import parse_spec as parse_llm_spec
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import PairTensors
from sim.cli import main as prefsim_main
from sim.rules import JAX_OPS, RULES
from sim.sampled import engine as sampled_engine
from sim.sampled.engine import build_iteration
from sim.sampled.experiment import build_sampled_inputs
from sim.spec import parse_spec

torch.set_num_threads(1)
K = 5


def _normalise(log_weights):
    shifted = log_weights - np.max(log_weights, axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _numpy_mmd(preference, log_reference, log_initial, eta, tau, steps, every=None):
    """Independent NumPy MMD (MPO with ``every``): [ℓ_t + ητ·ℓ_magnet + η·Pπ_t]/(1 + ητ) − norm, the magnet
    becoming π_t before the updates t = M, 2M, … (t > 0)."""
    iterates, magnet = [np.asarray(log_initial, float)], np.asarray(log_reference, float)
    for t in range(steps):
        if every is not None and t > 0 and t % every == 0:
            magnet = iterates[-1]
        payoff = np.asarray(preference) @ np.exp(iterates[-1])
        iterates.append(_normalise((iterates[-1] + eta * tau * magnet + eta * payoff) / (1 + eta * tau)))
    return np.array(iterates)


def _population_minimiser(parameters, log_policy, log_reference, preference, source):
    """argmin over log-policies of the loss's expectation on pairs y, y′ ~ ``source`` i.i.d. ordered by P
    (every ordered pair (y_w, y_l) weighted source(y_w)·source(y_l)·P(y_w ≻ y_l)).  The loss reads log π only
    through differences θ_w − θ_l, so it is quadratic in the logits θ: one Newton step (pseudo-inverse, the
    shift direction being flat) from θ = 0 lands on the minimiser."""
    winners, losers = (index.ravel() for index in np.meshgrid(np.arange(K), np.arange(K), indexing="ij"))
    weight = source[winners] * source[losers] * preference[winners, losers]
    loss = RULES["mmd"].loss

    def expected(theta):
        log_pi = theta - jax.scipy.special.logsumexp(theta)
        batch = {
            "policy_w": log_pi[winners],
            "policy_l": log_pi[losers],
            "reference_w": jnp.asarray(log_reference)[winners],
            "reference_l": jnp.asarray(log_reference)[losers],
            "previous_w": jnp.asarray(log_policy)[winners],
            "previous_l": jnp.asarray(log_policy)[losers],
            "step": jnp.asarray(0),
            "both_from_policy": 1.0,
        }
        return jnp.sum(jnp.asarray(weight) * loss(JAX_OPS, batch, parameters))

    theta = jnp.zeros(K)
    theta = theta - jnp.linalg.pinv(jax.hessian(expected)(theta)) @ jax.grad(expected)(theta)
    return _normalise(np.asarray(theta)), float(expected(theta))


# ------------------------------------------------------------------------------- 1. the population minimiser


@pytest.mark.parametrize("tau", [0.4, 0.0], ids=["tau>0", "tau=0"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sampled_loss_is_minimised_by_the_mmd_step(seed, tau):
    game = random_game(seed, False, K, random_initial=True)
    eta = 1.3
    log_policy, log_reference = np.asarray(game.log_initial), np.asarray(game.log_reference)
    preference = np.asarray(game.preference)
    policy = np.exp(log_policy)
    got, _ = _population_minimiser({"eta": eta, "tau": tau}, log_policy, log_reference, preference, policy)
    step = _numpy_mmd(preference, log_reference, log_policy, eta, tau, 1)[-1]
    np.testing.assert_allclose(got, step, rtol=0, atol=1e-10)
    if tau == 0.0:  # multiplicative weights: π_t·exp(η·Pπ_t), no pull toward π_ref
        np.testing.assert_allclose(got, _normalise(log_policy + eta * preference @ policy), rtol=0, atol=1e-10)
    else:
        assert np.max(np.abs(step - _numpy_mmd(preference, log_reference, log_policy, eta, 0.0, 1)[-1])) > 1e-2
    assert np.max(np.abs(step - log_policy)) > 1e-2  # the step moves
    # the exact rule of every mode is that same step
    exact = RULES["mmd"].exact(eta=eta, tau=tau)
    state = exact.update(exact.init(game), game)
    np.testing.assert_allclose(np.asarray(state.log_policy), step, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tau", [0.4, 0.0], ids=["tau>0", "tau=0"])
def test_offline_counterpart_is_the_minimiser_on_pairs_from_the_reference(tau):
    """Pairs from π_ref: the MMD step with Pπ_ref in place of Pπ_t, which ``offline`` states."""
    game = random_game(4, False, K, random_initial=True)
    parameters = {"eta": 0.7, "tau": tau}
    log_policy, log_reference = np.asarray(game.log_initial), np.asarray(game.log_reference)
    preference = np.asarray(game.preference)
    reference = np.exp(log_reference)
    got, _ = _population_minimiser(parameters, log_policy, log_reference, preference, reference)
    expected = _normalise((log_policy + 0.7 * tau * log_reference + 0.7 * preference @ reference) / (1 + 0.7 * tau))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    offline = RULES["mmd"].offline(parameters, log_policy, log_reference, jnp.asarray(preference @ reference), 0)
    np.testing.assert_allclose(_normalise(np.asarray(offline)), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ 2. sampled mode


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("mmd", {"eta": 0.9, "tau": 0.3}),
        ("mmd", {"eta": 0.9, "tau": 0.0}),
        ("mpo", {"eta": 0.9, "tau": 0.3, "reference_every": 2}),
    ],
    ids=["mmd", "mmd-tau0", "mpo-every2"],
)
def test_sampled_mode_on_the_population_pairs_follows_the_numpy_recursion(monkeypatch, name, rule):
    """The sampled engine trained on the loss's expectation (every ordered pair with its λ_p weight) instead of
    draws: each iteration's argmin is the MMD step, so the run is the NumPy recursion; for ``mpo`` the magnet
    the engine carries moves to π_t at t = 2, 4 (a fixed magnet leaves the path by > 1e-2)."""
    monkeypatch.setattr(sampled_engine, "make_pairs", _population_batch)
    steps = 5
    game = {"kind": "random", "arms": 4, "tau": 0.3, "reference": "random", "reference_min_mass": 0.05}
    run = {"mode": "sampled", "policy": "tabular", "optimizer": "sgd", "learning_rate": 0.4}
    run |= {"inner_steps": 60000, "tolerance": 1e-13, "pairs_per_iteration": 16}
    spec = parse_spec(
        {"iterations": steps, "seeds": 1, "game": game | {"initial": "random"}, "rule": [{"name": name, **rule}]}
        | {"run": run}
    )
    inputs = build_sampled_inputs(spec)
    problem = jax.tree_util.tree_map(
        lambda leaf, axis: leaf if axis is None else leaf[0], inputs.problems, inputs.axes, is_leaf=lambda x: x is None
    )
    init, iteration = build_iteration(name, spec.rules[0].parameters, spec.run)
    state, step = init(inputs.keys[0], problem), jax.jit(iteration)
    got = [np.asarray(state.log_policy[0])]
    for _ in range(steps):
        state, _ = step(state, problem, inputs.keys[0])
        got.append(np.asarray(state.log_policy[0]))
    preference, log_reference = np.asarray(problem.preference[0]), np.asarray(problem.log_reference[0])
    every = rule.get("reference_every")
    expected = _numpy_mmd(preference, log_reference, got[0], rule["eta"], rule["tau"], steps, every)
    np.testing.assert_allclose(np.array(got), expected, rtol=0, atol=1e-10)
    if every is not None:
        fixed = _numpy_mmd(preference, log_reference, got[0], rule["eta"], rule["tau"], steps)
        assert np.max(np.abs(expected - fixed)) > 1e-2


def test_sampled_mode_with_many_pairs_tracks_exact_mode():
    """The same spec in both modes (only ``[run]`` differs); mpo's default magnet period 40 is resolved in both."""
    spec = {
        "iterations": 4,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [
            {"name": "mmd", "eta": 0.8, "label": "mmd"},
            {"name": "mmd", "eta": 0.8, "tau": 0.0, "label": "mmd_tau0"},
            {"name": "mpo", "eta": 0.8, "reference_every": 2},
        ],
    }
    exact = sim.run(spec)
    run = {"mode": "sampled", "pairs_per_iteration": 20000, "inner_steps": 300, "learning_rate": 0.05}
    sampled = sim.run({**spec, "run": run})
    keys = ["rule", "seed", "iteration"]
    joined = exact.merge(sampled, on=keys, suffixes=("_exact", "_sampled"))
    assert len(joined) == len(exact) == 3 * 2 * 5
    gap = (joined["kl_to_nash_exact"] - joined["kl_to_nash_sampled"]).abs().max()
    assert gap < 5e-3
    assert joined.loc[joined.iteration > 0, "distance_to_exact"].max() < 0.02
    moved = exact[exact.iteration == 4].set_index(["rule", "seed"])["kl_to_nash"]
    assert (moved - exact[exact.iteration == 0].set_index(["rule", "seed"])["kl_to_nash"]).abs().min() > 1e-3
    assert parse_spec({**spec, "rule": [{"name": "mpo"}]}).rules[0].parameters["reference_every"] == 40


# ------------------------------------------------------------------------------------ 3. JAX and torch agree


@pytest.mark.parametrize("name", ["mmd", "mpo"])
@pytest.mark.parametrize("tau", [0.25, 0.0], ids=["tau>0", "tau=0"])
def test_the_loss_agrees_between_jax_and_torch_and_is_inpos_at_the_equivalent_eta(name, tau):
    rng = np.random.default_rng(7)
    n = 12
    arrays = {key: rng.normal(size=n) - 2 for key in ("policy_w", "policy_l", "previous_w", "previous_l")}
    arrays |= {key: rng.normal(size=n) - 2 for key in ("reference_w", "reference_l")}
    parameters = {"eta": 1.7, "tau": tau, "reference_every": 40}
    loss = RULES[name].loss

    def total(policy_w, policy_l):
        batch = {k: jnp.asarray(v) for k, v in arrays.items()} | {"policy_w": policy_w, "policy_l": policy_l}
        return jnp.sum(loss(JAX_OPS, batch | {"step": jnp.asarray(3), "both_from_policy": 1.0}, parameters))

    arguments = (jnp.asarray(arrays["policy_w"]), jnp.asarray(arrays["policy_l"]))
    value, grads = total(*arguments), jax.grad(total, argnums=(0, 1))(*arguments)
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k.startswith("policy")) for k, v in arrays.items()}
    torch_total = loss(TORCH_OPS, tensors | {"step": 3, "both_from_policy": 1.0}, parameters).sum()
    torch_total.backward()
    assert abs(float(value) - torch_total.item()) <= 1e-12 * max(1.0, abs(float(value)))
    np.testing.assert_allclose(tensors["policy_w"].grad.numpy(), np.asarray(grads[0]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tensors["policy_l"].grad.numpy(), np.asarray(grads[1]), rtol=0, atol=1e-12)
    # written out: h = Δℓ − (ητ/(1+ητ))Δℓ_ref − (1/(1+ητ))Δℓ_t, target η/(2(1+ητ))
    eta, a = 1.7, 1.7 * tau / (1 + 1.7 * tau)
    h = (arrays["policy_w"] - arrays["policy_l"]) - a * (arrays["reference_w"] - arrays["reference_l"])
    h -= (1 - a) * (arrays["previous_w"] - arrays["previous_l"])
    assert float(value) == pytest.approx(np.sum((h - eta / (2 * (1 + eta * tau))) ** 2), rel=1e-12)


# ----------------------------------------------------------------------------------------------- 4. the bridge


def _scores(model, winners, losers):
    n = len(winners)
    responses = [[int(y)] for y in winners] + [[int(y)] for y in losers]
    values = batched_sequence_logprobs(model, [PROMPT] * (2 * n), responses, K, batch_size=7)
    return values[:n], values[n:]


@pytest.mark.parametrize("tau", [0.4, 0.0], ids=["tau>0", "tau=0"])
def test_bridge_loss_on_the_bandit_lm_reproduces_three_mpo_steps(tau):
    """MPO with M = 2, as the bridge loop runs it: population pairs from π_t, the loss's reference scored with
    π_ref for t < 2 and with the checkpoint of π_2 from t = 2 on."""
    game = random_game(6, False, K, random_initial=True)
    eta, every, steps = 1.1, 2, 3
    rule = build_bridge_rule("mpo", {"eta": eta, "tau": tau, "reference_every": every})
    assert rule.pairs == "lambda_p"
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    checkpoints = [BanditLM(np.asarray(game.log_initial))]
    for t in range(steps):
        pairs = population_pairs(np.exp(model.log_policy().numpy()), np.asarray(game.preference))
        winners, losers = [p.winner for p in pairs], [p.loser for p in pairs]
        magnet = reference_model if t < every else checkpoints[every]
        previous_w, previous_l = _scores(checkpoints[t], winners, losers)
        reference_w, reference_l = _scores(magnet, winners, losers)
        values = {"previous_w": previous_w, "previous_l": previous_l}
        values |= {"reference_w": reference_w, "reference_l": reference_l}
        for key in ("win_rate_w", "win_rate_l", "preference", "weight"):
            values[key] = torch.tensor([getattr(p, key) for p in pairs], dtype=torch.float64)
        data = PairTensors([PROMPT] * len(pairs), [[y] for y in winners], [[y] for y in losers], values)
        _minimise(model, data, rule.at_step(t))
        checkpoints.append(BanditLM(model.log_policy().numpy()))
    log_initial = np.log(np.exp(np.asarray(game.log_initial)) / np.exp(np.asarray(game.log_initial)).sum())
    expected = _numpy_mmd(game.preference, game.log_reference, log_initial, eta, tau, steps, every)
    np.testing.assert_allclose(model.log_policy().numpy(), expected[-1], atol=1e-6, rtol=0)
    if tau > 0:
        fixed = _numpy_mmd(game.preference, game.log_reference, log_initial, eta, tau, steps)
        assert np.max(np.abs(fixed[-1] - expected[-1])) > 1e-3  # the magnet's move is visible


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


def test_prefsim_llm_trains_mpo_with_its_magnet_moving(tiny_llama, tmp_path):
    """``reference_every = 1``: from iteration 1 on the loss's reference is π_t's checkpoint, so its recorded
    log-probabilities equal those of π_t; ``mmd`` with a fixed magnet keeps π_ref's, which differ."""
    raw = {
        "iterations": 2,
        "seed": 3,
        "tau": 0.3,
        "model": {"path": str(tiny_llama)},
        "prompts": {"train": ["tell me a story", "the movie was"], "heldout": ["what a"], "per_iteration": 2},
        "generation": {"max_new_tokens": 4, "batch_size": 2},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-2, "batch_size": 2, "micro_batch_size": 2, "epochs": 2},
        "rule": [{"name": "mpo", "eta": 1.0, "reference_every": 1}, {"name": "mmd", "eta": 1.0}],
    }
    spec = parse_llm_spec(raw)
    assert [entry.rule.parameters for entry in spec.rules] == [
        {"eta": 1.0, "tau": 0.3, "reference_every": 1},
        {"eta": 1.0, "tau": 0.3},
    ]
    bridge_loop.run_bridge(spec, tmp_path / "out", progress=False)

    def scores(label, iteration):
        lines = (tmp_path / "out" / label / f"iter_{iteration:03d}" / "logprobs.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        return np.array([[r["logp_reference_chosen"], r["logp_previous_chosen"]] for r in rows])

    moving, fixed = scores("mpo", 2), scores("mmd", 2)
    np.testing.assert_allclose(moving[:, 0], moving[:, 1], atol=1e-5)
    assert np.max(np.abs(fixed[:, 0] - fixed[:, 1])) > 1e-4
    metrics = (tmp_path / "out" / "metrics.csv").read_text()
    assert "mpo" in metrics and "mmd" in metrics


def test_prediction_exact_column_of_mpo_is_mmd_with_its_magnet_moving():
    game = synthetic_game(3, prompts=2, k=3)
    game.preference[0] = [[0.5, 0.7, 0.2], [0.3, 0.5, 0.9], [0.8, 0.1, 0.5]]
    eta, tau, every, iterations = 0.8, 0.2, 2, 5
    path = exact_trajectory(build_bridge_rule("mpo", {"eta": eta, "tau": tau, "reference_every": every}), game, 5, tau)
    for m in range(2):
        expected = _numpy_mmd(
            game.preference[m], game.log_reference[m], game.log_reference[m], eta, tau, iterations, every
        )
        np.testing.assert_allclose(path[:, m], np.exp(expected), rtol=0, atol=1e-12)


def test_prefsim_llm_predict_runs_mpo(tiny_llama, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    prompts = ["the movie was", "i love this", "tell me a story"]
    lines = ["iterations = 2", "seed = 0", "tau = 0.1"]
    lines += ["[model]", f'path = "{tiny_llama}"', 'device = "cpu"']
    lines += ["[prompts]", f"train = {json.dumps(prompts)}", 'heldout = ["x"]']
    lines += ["[generation]", "max_new_tokens = 4"]
    lines += ["[training]", "learning_rate = 1e-2", "batch_size = 8", "micro_batch_size = 8"]
    lines += ["[[rule]]", 'name = "mpo"', "eta = 0.8", "reference_every = 1"]
    lines += ["[prediction]", "prompts = 3", "candidates = 3"]
    path.write_text("\n".join(lines) + "\n")
    assert prefsim_main(["llm", str(path), "--out", str(tmp_path / "out"), "--predict"]) == 0
    assert "TV(LM, exact)" in capsys.readouterr().out
    summary = (tmp_path / "out" / "prediction" / "summary.csv").read_text()
    assert "mpo" in summary


# ------------------------------------------------------------------------------------------ 5. the listing


def test_prefsim_rules_lists_mmd_and_mpo_in_every_mode(capsys):
    assert prefsim_main(["rules"]) == 0
    printed = capsys.readouterr().out
    for name in ("mmd", "mpo"):
        (line,) = [line for line in printed.splitlines() if line.startswith(f"{name}: ")]
        assert line.endswith("[exact, sampled, llm]"), line
    assert prefsim_main(["rules", "--json"]) == 0
    rules = {rule["name"]: rule for rule in json.loads(capsys.readouterr().out)}
    for name in ("mmd", "mpo"):
        assert rules[name]["modes"] == ["exact", "sampled", "llm"]
        assert rules[name]["pair_schemes"]["default"] == "lambda_p"
