"""Reference advancement (``reference_every = M``; presets ``comal`` and ``mpo``) in every mode.

The contract: before the update t → t+1, whenever t > 0 and t mod M = 0, the rule's own reference
becomes π_t; the game's π_ref and τ (the metrics') stay.  Checked against the base rule restarted
every M steps with reference π_t (step for step, 1e-12), on COMAL's 3-action game against the numbers
of docs/theory.md §F.1, in sampled mode and on the LLM bridge.
"""

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import torch
from bridge_games import random_game

import sim
from bandits.errors import PrefsimError
from sim.bounds_table import compute_bounds, missing_bound_notes
from sim.rules import RULES, build_rule, resolve_parameters
from sim.rules.reference import anchor_iteration
from sim.spec import parse_spec

torch.set_num_threads(1)

#: COMAL's game (arms a, b, c): P(b≻a) = P(c≻b) = 0.9, P(a≻c) = 0.8; π⁰ = (4/11, 3/11, 4/11).
COMAL_GAME = [[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]]

ANCHORED = [
    ("inpo", {"eta": 1.0, "tau": 0.2}),
    ("mmd", {"eta": 0.8, "tau": 0.2}),
    ("nash_md", {"eta": 0.5, "tau": 0.2}),
    ("online_ipo", {"tau": 0.6}),
    ("extragradient", {"eta": 0.5, "tau": 0.2}),
    ("optimistic", {"eta": 0.5, "tau": 0.2}),
    ("mnpo", {"eta": 0.8, "tau": 0.2, "history": 3, "decay": 0.5}),  # its population restarts too
]


@pytest.mark.parametrize("name, parameters", ANCHORED)
def test_advancing_equals_the_base_rule_restarted_with_the_new_reference(name, parameters):
    game = random_game(5, False, 5, random_initial=True)
    every, blocks = 4, 3
    advancing = build_rule(name, {**parameters, "reference_every": every})
    state = advancing.init(game)
    run = [state.log_policy]
    for _ in range(every * blocks + 2):
        state = advancing.update(state, game)
        run.append(state.log_policy)

    base = build_rule(name, parameters)
    expected = [game.log_initial]
    restart_game = game
    base_state = base.init(game)
    for t in range(every * blocks + 2):
        if t > 0 and t % every == 0:  # restart: reference and start = π_t
            restart_game = game._replace(log_reference=expected[-1], log_initial=expected[-1])
            base_state = base.init(restart_game)._replace(step=base_state.step)
        base_state = base.update(base_state, restart_game)
        expected.append(base_state.log_policy)
    moved = max(float(jnp.max(jnp.abs(r - game.log_initial))) for r in run)
    assert moved > 1e-2
    for t, (got, want) in enumerate(zip(run, expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-12, rtol=0, err_msg=f"t = {t}")
    # the advancing run differs from the fixed-reference run after the first advance
    fixed = build_rule(name, parameters)
    fixed_state = fixed.init(game)
    for _ in range(every + 1):
        fixed_state = fixed.update(fixed_state, game)
    assert np.max(np.abs(np.asarray(fixed_state.log_policy) - np.asarray(run[every + 1]))) > 1e-6


def test_comal_game_numbers_of_the_theory_document():
    spec = {
        "iterations": 1500,
        "record_every": 500,
        "game": {"kind": "matrix", "preference": COMAL_GAME, "tau": 0.1},
        "rule": [
            {"name": "inpo", "eta": 1.0, "label": "fixed"},
            {"name": "inpo", "eta": 1.0, "reference_every": 50, "label": "m50"},
            {"name": "mpo", "eta": 0.8},
        ],
    }
    table = sim.run(spec).set_index(["rule", "iteration"])["exploitability"]
    # a fixed reference stalls at π*_τ's exploitability
    np.testing.assert_allclose([table["fixed", t] for t in (500, 1000, 1500)], 0.0244898, atol=5e-7)
    assert table["m50", 1000] < 2e-9 and table["m50", 1500] < 1e-12
    assert table["mpo", 1500] < 1e-13
    assert RULES["mpo"].parameter("reference_every").default == 40


def test_comal_defaults_are_its_scripts_eta_three_tau_and_m_twelve_and_its_errors_name_it():
    """COMAL's public script fixes τ/η = 1/3 and updates the reference every 12 iterations."""
    assert resolve_parameters("comal", {}, 0.2) == pytest.approx(
        {"tau": 0.2, "schedule": "constant", "reference_every": 12, "eta": 0.6}
    )
    assert resolve_parameters("comal", {"tau": 0.1}, 0.2)["eta"] == pytest.approx(0.3)
    assert resolve_parameters("comal", {"tau": 0.1, "eta": 0.5}, 0.2)["eta"] == 0.5
    with pytest.raises(PrefsimError, match=r"^rule comal \(inpo's update\): parameter tau must be a finite number > 0"):
        build_rule("comal", resolve_parameters("comal", {"tau": 0.0}, 0.2))


def test_comal_with_the_theorem4_schedule_is_inpo_theorem4_with_its_reference_moving():
    """Under schedule = "theorem4" (η_t = τ(t+2)/2) comal's eta default 3·tau is no default: it was filled in and
    then refused by INPO's factory ("eta is not used with schedule = theorem4; remove it"), an eta the user never
    gave, so a spec that ran before could not run."""
    assert "eta" not in resolve_parameters("comal", {"schedule": "theorem4"}, 0.2)
    base = {"iterations": 30, "seeds": 2, "game": {"kind": "random", "arms": 4, "tau": 0.2}}
    comal = sim.run({**base, "rule": [{"name": "comal", "schedule": "theorem4", "reference_every": 10}]})
    inpo = sim.run({**base, "rule": [{"name": "inpo", "schedule": "theorem4", "reference_every": 10}]})
    columns = [c for c in inpo.columns if c != "rule"]
    np.testing.assert_allclose(comal[columns].to_numpy(float), inpo[columns].to_numpy(float), rtol=0, atol=1e-15)


def test_kl_to_the_unregularised_nash_never_increases_at_an_advance():
    """COMAL's claim, on its game, with π⁰ = (4/11, 3/11, 4/11) (checked: Pπ⁰ = ½)."""
    preference = np.asarray(COMAL_GAME)
    nash = np.array([4, 3, 4]) / 11
    np.testing.assert_allclose(preference @ nash, 0.5, atol=1e-15)
    game = random_game(0, False, 3, random_initial=False)
    game = game._replace(
        preference=jnp.asarray(preference),
        log_reference=jnp.log(jnp.full(3, 1 / 3)),
        log_initial=jnp.log(jnp.full(3, 1 / 3)),
        tau=jnp.asarray(0.1),
    )
    every = 12
    rule = build_rule("comal", resolve_parameters("comal", {"eta": 0.3, "tau": 0.1}, 0.1))
    state = rule.init(game)
    kls = []
    for t in range(12 * every + 1):
        if t % every == 0:
            policy = np.exp(np.asarray(state.log_policy))
            kls.append(float(np.sum(nash * np.log(nash / policy))))
        state = rule.update(state, game)
    assert np.all(np.diff(kls) <= 1e-15), kls
    assert kls[-1] < 0.1 * kls[1]


def test_a_sweep_over_reference_every_is_one_run_equal_to_separate_runs():
    base = {
        "iterations": 200,
        "seeds": 2,
        "game": {"kind": "random", "arms": 5, "tau": 0.1},
    }
    swept = sim.run({**base, "rule": [{"name": "inpo", "eta": 0.6, "reference_every": [10, 25]}]})
    for every in (10, 25):
        alone = sim.run({**base, "rule": [{"name": "inpo", "eta": 0.6, "reference_every": every}]})
        part = swept[swept.rule == f"inpo[reference_every={every}]"].reset_index(drop=True)
        columns = [c for c in alone.columns if c != "rule"]
        np.testing.assert_allclose(part[columns].to_numpy(float), alone[columns].to_numpy(float), atol=1e-12)


def test_sampled_mode_moves_the_rules_anchor():
    """Sampled INPO on COMAL's game: with the reference moving every 20 iterations the exploitability
    falls far below the fixed-reference stall at π*_τ (0.0245), as in exact mode."""
    spec = {
        "iterations": 80,
        "seeds": 2,
        "record_every": 20,
        "game": {"kind": "matrix", "preference": COMAL_GAME, "tau": 0.1},
        "rule": [
            {"name": "inpo", "eta": 1.0, "label": "fixed"},
            {"name": "inpo", "eta": 1.0, "reference_every": 20, "label": "moving"},
        ],
        "run": {"mode": "sampled", "pairs_per_iteration": 20000, "inner_steps": 200, "learning_rate": 0.05},
    }
    table = sim.run(spec)
    final = table[table.iteration == 80].groupby("rule")["exploitability"].mean()
    assert final["fixed"] > 0.015
    assert final["moving"] < 0.3 * final["fixed"]
    assert table[table.iteration > 0]["distance_to_exact"].max() < 0.1


def test_sampled_optimistic_restarts_its_leading_iterate_at_an_advance():
    """Optimistic MD with M = 2 on COMAL's game (η = 3, τ = 0.2): at an advance the rule restarts from π_t,
    leading iterate included, so the leading step's pairs are drawn anew from π_t.  With 2·10⁵ pairs the
    sampled run follows exact mode (exploitability 0.0232 at t = 4, 0.0139 at t = 6), not the variant that
    keeps the old leading iterate's pairs (0.0135 and 0.0069); the fresh draws are counted in ``queries``."""
    spec = {
        "iterations": 6,
        "seeds": 2,
        "record_every": 1,
        "game": {"kind": "matrix", "preference": COMAL_GAME, "reference": "uniform", "tau": 0.2},
        "rule": [{"name": "optimistic", "eta": 3.0, "tau": 0.2, "reference_every": 2}],
    }
    exact = sim.run(spec).groupby("iteration")["exploitability"].mean()  # the same game for both seeds
    assert exact[4] == pytest.approx(0.02315, abs=1e-4) and exact[6] == pytest.approx(0.01393, abs=1e-4)
    run = {"mode": "sampled", "pairs_per_iteration": 200_000, "inner_steps": 600, "learning_rate": 0.05}
    sampled = sim.run({**spec, "run": run})
    mean = sampled.groupby("iteration")["exploitability"].mean()
    for t in (4, 6):
        assert abs(mean[t] - exact[t]) < 0.004, (t, mean[t], exact[t])
    assert sampled[sampled.iteration > 0]["distance_to_exact"].max() < 0.02
    # one draw per iteration, one before t = 0, and one more at each advance (updates from t = 2, 4)
    queries = sampled[sampled.seed == sampled.seed.iloc[0]].set_index("iteration")["queries"]
    assert list(queries) == [200_000 * q for q in (0, 2, 3, 5, 6, 8, 9)]


def test_bad_reference_every_is_a_clear_error():
    game = {"kind": "cyclic", "arms": 3, "tau": 0.1}
    # inf (a TOML literal) once crashed the check with OverflowError (int(inf)) instead of this message
    for value, phrase in (
        (0, "integer ≥ 1"),
        (2.5, "integer ≥ 1"),
        (float("inf"), "integer ≥ 1"),
        ([2, float("inf")], "integer ≥ 1"),
    ):
        with pytest.raises(PrefsimError, match=phrase):
            parse_spec(
                {"iterations": 5, "game": game, "rule": [{"name": "inpo", "eta": 1.0, "reference_every": value}]}
            )
    # the preset's message names the rule once (it read "rule #1 (comal): rule: reference_every …")
    with pytest.raises(PrefsimError, match=r"^rule #1 \(comal\): reference_every must be an integer ≥ 1"):
        parse_spec({"iterations": 5, "game": game, "rule": [{"name": "comal", "reference_every": 0}]})
    with pytest.raises(PrefsimError, match="unknown parameter 'reference_every'"):
        parse_spec({"iterations": 5, "game": game, "rule": [{"name": "sppo", "reference_every": 3}]})
    with pytest.raises(PrefsimError, match="offline"):
        parse_spec(
            {
                "iterations": 5,
                "game": game,
                "rule": [{"name": "online_ipo", "reference_every": 3}],
                "run": {"mode": "sampled", "data": "offline"},
            }
        )


def test_anchor_iteration_is_the_last_advance():
    assert [anchor_iteration(t, 3) for t in range(8)] == [0, 0, 0, 3, 3, 3, 6, 6]
    assert anchor_iteration(7, None) == 0


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from llm_bridge.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


def test_the_bridge_scores_the_loss_reference_with_the_checkpoint_of_the_last_advance(tiny_llama, tmp_path):
    """INPO with reference_every = 1: from iteration 2 on the loss's reference is π_t itself, so its
    recorded log-probabilities equal those of π_t; with a fixed reference they are π_ref's and differ."""
    from llm_bridge import loop as bridge_loop
    from llm_bridge.spec import parse_spec as parse_llm_spec

    raw = {
        "iterations": 2,
        "seed": 3,
        "model": {"path": str(tiny_llama)},
        "prompts": {"train": ["tell me a story", "the movie was"], "heldout": ["what a"], "per_iteration": 2},
        "generation": {"max_new_tokens": 4, "batch_size": 2},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-2, "batch_size": 2, "micro_batch_size": 2, "epochs": 2},
        "rule": [
            {"name": "inpo", "eta": 1.0, "tau": 0.3, "label": "moving", "reference_every": 1},
            {"name": "inpo", "eta": 1.0, "tau": 0.3, "label": "fixed"},
        ],
    }
    bridge_loop.run_bridge(parse_llm_spec(raw), tmp_path / "out", progress=False)

    def scores(label, iteration):
        lines = (tmp_path / "out" / label / f"iter_{iteration:03d}" / "logprobs.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        return np.array([[r["logp_reference_chosen"], r["logp_previous_chosen"]] for r in rows])

    moving, fixed = scores("moving", 2), scores("fixed", 2)
    np.testing.assert_allclose(moving[:, 0], moving[:, 1], atol=1e-5)
    assert np.max(np.abs(fixed[:, 0] - fixed[:, 1])) > 1e-4
    first = scores("moving", 1)
    np.testing.assert_allclose(first[:, 0], first[:, 1], atol=1e-5)  # t = 0: π_0 = π_ref


def test_a_reference_every_no_run_reaches_gets_the_fixed_reference_rules_bounds():
    """M ≥ T: the first advance would come before the update M → M+1, which a T-update run never makes, so
    the run is INPO's and so are its bounds (the same curves as for the rule without reference_every); with
    M = T − 1 the reference moves once and INPO's fixed-reference theorems are not drawn."""
    base = {"iterations": 20, "seeds": 2, "game": {"kind": "random", "arms": 5, "tau": 0.1}}

    def bounds(**advancement):
        spec = parse_spec({**base, "rule": [{"name": "inpo", "label": "r", "eta": 1.0, **advancement}]})
        table = sim.run(spec)
        return compute_bounds(table, spec), missing_bound_notes(spec, compute_bounds(table, spec))

    fixed, fixed_notes = bounds()
    assert set(fixed["label"]) == {"INPO Theorem 3 bound (r)"} and not fixed_notes
    for every in (20, 50):
        idle, notes = bounds(reference_every=every)
        pd.testing.assert_frame_equal(idle, fixed)
        assert not notes
    moving, notes = bounds(reference_every=19)
    assert moving.empty
    assert notes == [
        "no theory bound drawn for r: its theorem is about a fixed reference and this rule moves its reference to "
        "π_t every 19 iterations (reference_every); the check needs a unique unregularised Nash π⁰ and recorded "
        "iterations at multiples of reference_every."
    ]
