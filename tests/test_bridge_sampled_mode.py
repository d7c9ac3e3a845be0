"""The bandit LM through the bridge equals ``sim``'s sampled mode (``sim.sampled.engine``), to 1e-6.

``sim`` runs its own iteration (pairs drawn from π_t with its PRNG, a fresh optax optimiser, full-batch
inner steps, APO parameter extrapolation).  The test re-draws the same pairs with ``sim``'s key
derivation (``split(fold_in(key, t))``, first half) and :func:`bandits.oracles.make_pairs`, gives them
to the bridge (torch: sequence log-probs of the bandit LM, precomputed log π_t / log π_ref, the rule's
torch loss, ``train_on_pairs`` with two accumulated micro-batches per step, ``extrapolate_parameters``)
and compares the parameters after each iteration.
"""

import jax
import numpy as np
import pytest
import torch
from bridge_games import bandit_pair_tensors, matched_settings, random_game

from bandits.oracles import make_pairs
from llm_bridge.apo import extrapolate_parameters
from llm_bridge.bandit_lm import BanditLM
from llm_bridge.rules import build_bridge_rule
from llm_bridge.trainer import make_optimizer, train_on_pairs
from sim.sampled.engine import build_iteration
from sim.sampled.problem import problem_from_game

torch.set_num_threads(1)  # tiny tensors: one thread is far faster than torch's pool on small CI machines

K = 6
PAD = K

# case: (sim rule, sim parameters, bridge rule, bridge parameters, Bradley–Terry game)
CASES = {
    "inpo": ("inpo", {"eta": 1.5, "tau": 0.4}, "inpo", {"eta": 1.5, "tau": 0.4}, False),
    "dpo": ("dpo", {"beta": 0.7}, "dpo", {"beta": 0.7}, True),
    "online_ipo": ("online_ipo", {"tau": 0.8}, "ipo", {"tau": 0.8}, False),
    "sppo": ("sppo", {"eta": 1.2}, "sppo", {"eta": 1.2}, False),
    "dno": ("dno", {"eta": 1.3}, "dno", {"eta": 1.3}, False),
    "apo": ("apo", {"base": "dpo", "beta": 0.7, "alpha": 0.4}, "apo", {"base": "dpo", "beta": 0.7, "alpha": 0.4}, True),
    # α < 0: averaging the last two proximal outputs (outside APO's range), the same hook in both engines
    "apo_averaging": (
        "apo",
        {"base": "dpo", "beta": 0.7, "alpha": -0.4},
        "apo",
        {"base": "dpo", "beta": 0.7, "alpha": -0.4},
        True,
    ),
    # DPO's fixed anchor under APO (no bound is drawn for it, docs/theory.md §B.3) runs in every mode alike
    "apo_fixed_anchor": (
        "apo",
        {"base": "dpo", "beta": 0.7, "alpha": 0.4, "anchor": "reference"},
        "apo",
        {"base": "dpo", "beta": 0.7, "alpha": 0.4, "anchor": "reference"},
        True,
    ),
}


def _game(seed, bradley_terry):
    return random_game(seed, bradley_terry, K, random_initial=False)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bridge_iterations_equal_sims_sampled_mode(case, optimizer):
    sim_rule, sim_params, bridge_name, bridge_params, bradley_terry = CASES[case]
    game = _game(7, bradley_terry)
    problem = problem_from_game(game, np.exp(np.asarray(game.log_reference)))
    pairs, steps, lr = 40, 20, 0.05
    settings, spec = matched_settings(optimizer, pairs, steps, lr, apo_form="parameters", dpo_reference="previous")
    init, iteration = build_iteration(sim_rule, sim_params, settings)
    key = jax.random.PRNGKey(11)
    state = init(jax.random.PRNGKey(0), problem)

    model, reference_model = BanditLM(np.asarray(state.params[0])), BanditLM(np.asarray(game.log_reference))
    rule = build_bridge_rule(bridge_name, dict(bridge_params))
    proximal_previous = {"logits": model.logits.detach().clone()}
    for t in range(2):
        # the pairs sim draws at this iteration
        key_data, _ = jax.random.split(jax.random.fold_in(key, state.step))
        batch, _ = make_pairs(
            "lambda_p", key_data, state.log_policy, problem.preference, problem.rewards, problem.context_probs, pairs
        )
        state, info = iteration(state, problem, key)
        data = bandit_pair_tensors(model, reference_model, batch, PAD)
        train_on_pairs(model, make_optimizer(model.parameters(), spec), data, rule, spec, PAD, seed=t, progress=False)
        if rule.name == "apo":
            proximal_previous = extrapolate_parameters(model, proximal_previous, rule.alpha)
            np.testing.assert_allclose(
                proximal_previous["logits"].numpy(), np.asarray(state.wrapper.previous_params[0]), atol=1e-6, rtol=0
            )

        np.testing.assert_allclose(
            model.logits.detach().numpy(),
            np.asarray(state.params[0]),
            atol=1e-6,
            rtol=0,
            err_msg=f"{case}/{optimizer}: iteration {t + 1}",
        )
        np.testing.assert_allclose(model.log_policy().numpy(), np.asarray(state.log_policy[0]), atol=1e-6, rtol=0)
    assert np.max(np.abs(np.asarray(state.log_policy[0]) - np.asarray(game.log_reference))) > 1e-2
