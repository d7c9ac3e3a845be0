"""Proof of equivalence on the bandit LM (one-token responses, tabular logits).

1. Given the same pairs, optimiser and steps, one bridge iteration (torch: sequence log-probs, the
   rule's loss, ``train_on_pairs`` with gradient accumulation) produces the same logits as the same
   iteration computed in JAX/optax from ``sim.rules``' per-pair losses, and as ``sim``'s sampled mode
   (``sim.sampled.engine``), to 1e-6.
2. With the population-weighted loss (every ordered pair, weight π_t(y)π_t(y′)P(y ≻ y′)), minimising
   the bridge loss reproduces ``sim``'s exact updates (INPO, DPO, online IPO, SPPO with the paper's
   η/2 target, DNO), and APO's parameter-space and implicit-reference forms reproduce ``sim``'s exact
   APO.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

# Tiny models: one intra-op thread is far faster than torch's thread pool on small CI machines.
torch.set_num_threads(1)

from bridge_games import random_game  # noqa: E402

from bandits.errors import PrefsimError  # noqa: E402
from llm_bridge.apo import extrapolate_parameters, implicit_reference  # noqa: E402
from llm_bridge.bandit_lm import PROMPT, BanditLM  # noqa: E402
from llm_bridge.logprobs import batched_sequence_logprobs  # noqa: E402
from llm_bridge.pairs import population_pairs  # noqa: E402
from llm_bridge.rules import build_bridge_rule  # noqa: E402
from llm_bridge.trainer import PairTensors, TrainingSpec, make_optimizer, train_on_pairs, weighted_loss_sum  # noqa: E402
from sim.game import normalize  # noqa: E402
from sim.rules import build_rule  # noqa: E402
from sim.rules.base import ExactState  # noqa: E402

jdno = importlib.import_module("sim.rules.dno")
jdpo = importlib.import_module("sim.rules.dpo")
jinpo = importlib.import_module("sim.rules.inpo")
jipo = importlib.import_module("sim.rules.online_ipo")
jnash_md = importlib.import_module("sim.rules.nash_md")
jsppo = importlib.import_module("sim.rules.sppo")

K = 5
PAD = K  # never scored


def _game(seed, bradley_terry):
    return random_game(seed, bradley_terry, K, random_initial=True)


# bridge rule table, the matching sim name and parameters
RULES = {
    "inpo": ({"eta": 1.5, "tau": 0.4}, "inpo", {"eta": 1.5, "tau": 0.4}),
    "dpo": ({"beta": 0.7}, "dpo", {"beta": 0.7}),
    "ipo": ({"tau": 0.8}, "online_ipo", {"tau": 0.8}),
    "sppo": ({"eta": 1.2}, "sppo", {"eta": 1.2, "normaliser": "paper"}),
    "dno": ({"eta": 1.3}, "dno", {"eta": 1.3}),
}


def _sampled_pairs(game, n, seed):
    """λ_p pairs from π_t: y, y′ i.i.d., order from a Bernoulli label, win-rate estimates 1/0 (as sim)."""
    rng = np.random.default_rng(seed)
    policy = np.exp(np.asarray(game.log_initial))
    preference = np.asarray(game.preference)
    first, second = rng.choice(K, n, p=policy), rng.choice(K, n, p=policy)
    label = rng.random(n) < preference[first, second]
    winner, loser = np.where(label, first, second), np.where(label, second, first)
    return winner, loser, np.ones(n), np.zeros(n), np.ones(n)


def _bridge_data(model, reference_model, winner, loser, win_w, win_l, weight, preference):
    """Pairs in the trainer's form, log π_t and log π_ref precomputed with the bridge's scorer."""
    n = len(winner)
    prompts = [PROMPT] * n
    responses = [[int(y)] for y in winner] + [[int(y)] for y in loser]
    previous = batched_sequence_logprobs(model, prompts + prompts, responses, PAD, batch_size=7)
    reference = batched_sequence_logprobs(reference_model, prompts + prompts, responses, PAD, batch_size=7)
    values = {
        "previous_w": previous[:n],
        "previous_l": previous[n:],
        "reference_w": reference[:n],
        "reference_l": reference[n:],
        "win_rate_w": torch.as_tensor(win_w, dtype=torch.float64),
        "win_rate_l": torch.as_tensor(win_l, dtype=torch.float64),
        "preference": torch.as_tensor(preference, dtype=torch.float64),
        "weight": torch.as_tensor(weight, dtype=torch.float64),
    }
    return PairTensors(prompts, [[int(y)] for y in winner], [[int(y)] for y in loser], values)


def _jax_loss(rule, params):
    """The same rule's weighted loss in JAX from sim.rules' per-pair losses (explicit computation)."""

    def loss(theta, log_t, log_ref, w, l, win_w, win_l, weight):
        log_pi = theta - jax.scipy.special.logsumexp(theta)
        pw, pl, tw, tl, rw, rl = log_pi[w], log_pi[l], log_t[w], log_t[l], log_ref[w], log_ref[l]
        if rule == "inpo":
            per = jinpo.inpo_loss(pw, pl, rw, rl, tw, tl, params["eta"], params["tau"])
        elif rule == "dpo":
            per = jdpo.dpo_loss(pw, pl, tw, tl, params["beta"])
        elif rule == "ipo":
            per = jipo.ipo_loss(pw, pl, rw, rl, params["tau"])
        elif rule == "sppo":
            per = jsppo.sppo_code_loss(pw, tw, win_w, pl, tl, win_l, params["eta"])
        else:
            per = jdno.dno_loss(pw, pl, tw, tl, win_w - win_l, params["eta"])
        return jnp.sum(weight * per) / jnp.sum(weight)

    return loss


def _optax(name, lr):
    if name == "adamw":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    return optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)  # torch RMSprop: ε outside the root


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop", "sgd"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_one_bridge_iteration_equals_the_jax_optax_iteration(rule, optimizer):
    bridge_params, _, _ = RULES[rule]
    game = _game(1, bradley_terry=(rule == "dpo"))
    winner, loser, win_w, win_l, weight = _sampled_pairs(game, 48, seed=2)
    lr, steps = 0.05, 25

    # JAX / optax, full batch, fresh optimiser
    loss = _jax_loss(rule, bridge_params)
    args = (
        game.log_initial,
        game.log_reference,
        jnp.asarray(winner),
        jnp.asarray(loser),
        jnp.asarray(win_w),
        jnp.asarray(win_l),
        jnp.asarray(weight),
    )
    transform = _optax(optimizer, lr)

    @jax.jit
    def step(theta, state):
        updates, state = transform.update(jax.grad(loss)(theta, *args), state, theta)
        return optax.apply_updates(theta, updates), state

    theta = jnp.asarray(game.log_initial)
    state = transform.init(theta)
    for _ in range(steps):
        theta, state = step(theta, state)
    expected = np.asarray(theta - jax.scipy.special.logsumexp(theta))

    # bridge: one iteration, 4 micro-batches of 12 pairs accumulated into each full-batch step
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    data = _bridge_data(model, reference_model, winner, loser, win_w, win_l, weight, np.full(len(winner), 0.5))
    spec = TrainingSpec(
        optimizer=optimizer,
        learning_rate=lr,
        epochs=steps,
        batch_size=48,
        micro_batch_size=12,
        rmsprop_alpha=0.99,
        eps=1e-8,
    )
    bridge_rule = build_bridge_rule(rule, dict(bridge_params))
    stats = train_on_pairs(
        model, make_optimizer(model.parameters(), spec), data, bridge_rule, spec, PAD, seed=0, progress=False
    )
    got = model.log_policy().numpy()
    assert stats.steps == steps
    assert np.max(np.abs(got - np.asarray(game.log_initial))) > 1e-2  # the iteration moved the policy
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def _minimise(model, data, rule, tolerance=1e-13):
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=2000,
        tolerance_grad=tolerance,
        tolerance_change=1e-300,
        history_size=50,
        line_search_fn="strong_wolfe",
    )
    total = float(data.values["weight"].sum())
    index = list(range(len(data)))

    def closure():
        optimizer.zero_grad()
        value = weighted_loss_sum(model, data, index, rule, PAD, torch.float64) / total
        value.backward()
        return value

    for _ in range(5):
        optimizer.step(closure)


def _population_data(model, reference_model, game, log_policy):
    pairs = population_pairs(np.exp(np.asarray(log_policy)), np.asarray(game.preference))
    return _bridge_data(
        model,
        reference_model,
        [p.winner for p in pairs],
        [p.loser for p in pairs],
        [p.win_rate_w for p in pairs],
        [p.win_rate_l for p in pairs],
        [p.weight for p in pairs],
        [p.preference for p in pairs],
    )


@pytest.mark.parametrize("rule", sorted(RULES))
def test_population_weighted_bridge_loss_reproduces_the_exact_update(rule):
    bridge_params, sim_name, sim_params = RULES[rule]
    game = _game(3, bradley_terry=(rule == "dpo"))
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    data = _population_data(model, reference_model, game, game.log_initial)
    _minimise(model, data, build_bridge_rule(rule, dict(bridge_params)))
    exact = (
        build_rule(sim_name, sim_params)
        .update(ExactState(game.log_initial, jnp.zeros((), jnp.int32), ()), game)
        .log_policy
    )
    moved = np.max(np.abs(np.asarray(exact) - np.asarray(game.log_initial)))
    assert moved > 0.05
    np.testing.assert_allclose(model.log_policy().numpy(), np.asarray(exact), atol=1e-6, rtol=0)


def test_population_nash_md_pg_gradient_is_the_exact_policy_gradient():
    """Population pairs of the opponent form — every (y, y′), weight π(y)·π^μ(y′), P̂(y ≻ π^μ) = P(y≻y′) — give
    the weighted mean Σ_y π(y)·L(y; P(y≻π^μ)) (L is linear in the win rate), whose gradient is the exact
    tabular PG against the geometric mixture π^μ ∝ π^{1−ητ}π_ref^{ητ} (C.6)."""
    game = _game(4, bradley_terry=False)
    eta, tau = 2.0, 0.2
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    policy = np.exp(np.asarray(game.log_initial))
    mixture = np.exp(
        np.asarray(normalize(jnash_md.opponent(game.log_initial, game.log_reference, {"eta": eta, "tau": tau})))
    )
    preference = np.asarray(game.preference)
    first, second = [y for y in range(K) for _ in range(K)], [y for _ in range(K) for y in range(K)]
    wins = [preference[y, z] for y, z in zip(first, second)]
    weights = [policy[y] * mixture[z] for y, z in zip(first, second)]
    data = _bridge_data(model, reference_model, first, second, wins, [1 - w for w in wins], weights, wins)
    rule = build_bridge_rule("nash_md_pg", {"eta": eta, "tau": tau})
    value = weighted_loss_sum(model, data, list(range(len(data))), rule, PAD, torch.float64) / float(
        data.values["weight"].sum()
    )
    value.backward()

    def exact(theta):
        log_pi = theta - jax.scipy.special.logsumexp(theta)
        pi = jax.lax.stop_gradient(jnp.exp(log_pi))
        advantage = jax.lax.stop_gradient(game.preference @ mixture - 0.5 - tau * (log_pi - game.log_reference))
        return -jnp.sum(pi * advantage * log_pi)

    expected = jax.grad(exact)(jnp.asarray(game.log_initial))
    np.testing.assert_allclose(model.logits.grad.numpy(), np.asarray(expected), atol=1e-12)
    assert np.max(np.abs(np.asarray(expected))) > 1e-3
    assert np.max(np.abs(mixture - policy)) > 1e-2  # the opponent is not π_t


@pytest.mark.parametrize("alpha", [0.4, -0.4])  # −0.4: averaging the last two proximal outputs
@pytest.mark.parametrize("form", ["parameter", "implicit"])
def test_apo_forms_reproduce_sims_exact_apo_on_the_bandit_lm(form, alpha):
    """Three APO-DPO iterations: parameter extrapolation of tabular logits is exact (log-linear class);
    the implicit reference is exact for DPO, whose population argmin does not depend on the sampling weights."""
    game = _game(5, bradley_terry=True)
    game = game._replace(log_initial=game.log_reference)
    beta, iterations = 0.8, 3
    rule = build_bridge_rule("apo", {"base": "dpo", "beta": beta, "alpha": alpha, "extrapolation": form})
    reference_model = BanditLM(np.asarray(game.log_reference))
    model = BanditLM(np.asarray(game.log_reference))
    proximal_previous = {"logits": model.logits.detach().clone()}
    proximal_logps = [torch.log_softmax(model.logits.detach(), -1)]
    for t in range(iterations):
        sampling = model.log_policy()
        data = _population_data(model, reference_model, game, sampling)
        if form == "implicit" and t > 0:
            n = len(data)
            responses_w = torch.tensor([ids[0] for ids in data.winner_ids])
            responses_l = torch.tensor([ids[0] for ids in data.loser_ids])
            shifted = implicit_reference(proximal_logps[-1], proximal_logps[-2], alpha)
            data.values["previous_w"], data.values["previous_l"] = shifted[responses_w], shifted[responses_l]
            assert n == K * K
        _minimise(model, data, rule)
        if form == "parameter":
            proximal_previous = extrapolate_parameters(model, proximal_previous, alpha)
        proximal_logps.append(model.log_policy())
    exact_rule = build_rule("apo", {"base": "dpo", "beta": beta, "alpha": alpha})
    state = exact_rule.init(game)
    for _ in range(iterations):
        state = exact_rule.update(state, game)
    if form == "parameter":
        got = model.log_policy().numpy()
    else:  # the model holds π̂_T; APO's π_T is its log-space extrapolation
        got = torch.log_softmax(implicit_reference(proximal_logps[-1], proximal_logps[-2], alpha), -1).numpy()
    np.testing.assert_allclose(got, np.asarray(state.log_policy), atol=1e-6, rtol=0)
    plain = build_rule("dpo", {"beta": beta})
    dpo_state = plain.init(game)
    for _ in range(iterations):
        dpo_state = plain.update(dpo_state, game)
    assert np.max(np.abs(np.asarray(state.log_policy) - np.asarray(dpo_state.log_policy))) > 0.05  # APO ≠ DPO here


@pytest.mark.parametrize("alpha", [-1.0, 1.0])
def test_bridge_apo_refuses_alpha_outside_minus_one_one(alpha):
    with pytest.raises(PrefsimError, match=r"alpha must lie in \(−1, 1\)"):
        build_bridge_rule("apo", {"base": "dpo", "alpha": alpha})
    model = BanditLM(np.zeros(3))
    with pytest.raises(PrefsimError, match=r"alpha must lie in \(−1, 1\)"):
        extrapolate_parameters(model, {"logits": model.logits.detach().clone()}, alpha)
