"""One rule, one definition: the same rule table runs in exact, sampled and LLM mode; old names are
aliases or clear errors; APO is one hook whose forms agree with their closed forms in every engine."""

import copy

import jax.numpy as jnp
import numpy as np
import pytest
from bridge_games import random_game

import sim
from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game
from llm_bridge.spec import parse_spec as parse_llm_spec
from sim.game import game_from_instance
from sim.rules import RULES, build_rule, resolve_parameters
from sim.rules.apo import FORMS, apo_multipliers
from sim.rules.base import ExactState
from sim.spec import parse_spec

RULE_TABLE = [
    {"name": "inpo", "eta": 0.5},
    {"name": "online_ipo"},
    {"name": "sppo", "eta": 1.0},
    {"name": "dno", "eta": 2.0},
    {"name": "nash_md", "eta": 0.5},
    {"name": "apo", "label": "apo_inpo", "base": "inpo", "eta": 0.5, "alpha": 0.3, "form": "parameters"},
]


def _exact_spec():
    return {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.1},
        "rule": copy.deepcopy(RULE_TABLE),
    }


def test_an_exact_spec_runs_in_sampled_mode_by_changing_only_run():
    exact_spec = _exact_spec()
    exact = sim.run(exact_spec)
    sampled_spec = _exact_spec()
    sampled_spec["run"] = {"mode": "sampled", "pairs_per_iteration": 300, "inner_steps": 20}
    sampled = sim.run(sampled_spec)
    assert list(dict.fromkeys(exact["rule"])) == list(dict.fromkeys(sampled["rule"]))
    # iteration 0 is π_0 in both modes: the same metrics
    first = [c for c in exact.columns if c not in ("rule", "seed", "iteration", "regret")]
    np.testing.assert_allclose(
        exact[exact.iteration == 0][first].to_numpy(float),
        sampled[sampled.iteration == 0][first].to_numpy(float),
        rtol=0,
        atol=1e-12,
    )
    # and the resolved rule parameters are identical
    assert [r.parameters for r in parse_spec(exact_spec).rules] == [
        r.parameters for r in parse_spec(sampled_spec).rules
    ]


def test_the_same_rule_tables_run_under_prefsim_llm_with_the_same_parameters():
    exact = parse_spec(_exact_spec())
    llm = parse_llm_spec(
        {
            "iterations": 1,
            "tau": 0.1,
            "model": {"path": "unused-until-the-run"},
            "prompts": {"train": ["a"], "heldout": ["b"]},
            "rule": copy.deepcopy(RULE_TABLE),
        }
    )
    assert [e.rule.name for e in llm.rules] == [r.name for r in exact.rules]
    assert [e.rule.parameters for e in llm.rules] == [r.parameters for r in exact.rules]
    assert [e.label for e in llm.rules] == [r.label for r in exact.rules]


def test_defaults_are_the_same_in_every_mode():
    """DPO's β, SPPO's and DNO's η, Nash-MD's η, APO's α and form come from one definition."""
    from llm_bridge.rules import build_bridge_rule

    for name, given in (("dpo", {}), ("sppo", {}), ("dno", {}), ("nash_md", {}), ("apo", {"base": "sppo"})):
        exact = resolve_parameters(name, given, 0.1)
        assert build_bridge_rule(name, dict(given), tau=0.1).parameters == exact
    assert RULES["dpo"].parameter("beta").default == 1.0
    assert RULES["apo"].parameter("form").default == "parameters"


def test_old_llm_names_are_aliases_with_a_note_and_errors_in_exact_specs(capsys):
    from llm_bridge.rules import build_bridge_rule

    rule = build_bridge_rule("ipo", {"tau": 0.3})
    assert rule.name == "online_ipo"
    rule = build_bridge_rule("nash_md_pg", {"tau": 0.3, "pairs": "iid"})
    assert rule.name == "nash_md" and rule.pairs == "lambda_p"
    rule = build_bridge_rule("apo", {"base": "dpo", "extrapolation": "implicit", "pairs": "best_worst"})
    assert rule.form == "implicit_reference" and rule.pairs == "best_worst_by_win_rate"
    rule = build_bridge_rule("dpo", {"reference": "initial"})
    assert rule.parameters["anchor"] == "reference"
    notes = capsys.readouterr().err
    for old in ("'ipo'", "'nash_md_pg'", "'iid'", "extrapolation", "'best_worst'", "reference"):
        assert old in notes
    with pytest.raises(PrefsimError, match="online_ipo"):
        parse_spec({"iterations": 2, "game": {"kind": "cyclic", "arms": 3, "tau": 0.1}, "rule": [{"name": "ipo"}]})


def test_pair_scheme_names_are_one_per_algorithm_across_modes(capsys):
    spec = _exact_spec()
    spec["game"] = {"kind": "bradley_terry", "rewards": "random", "arms": 4, "tau": 0.1}
    spec["rule"] = [{"name": "online_ipo"}]
    spec["run"] = {"mode": "sampled", "pair_scheme": "best_worst_of_k"}
    assert parse_spec(spec).run.pair_scheme == "best_worst_by_reward"
    assert "best_worst_of_k" in capsys.readouterr().err
    spec["run"] = {"mode": "sampled", "pair_scheme": "best_worst_by_win_rate"}
    with pytest.raises(PrefsimError, match="llm mode only"):
        parse_spec(spec)
    from llm_bridge.rules import build_bridge_rule

    with pytest.raises(PrefsimError, match="sampled mode only"):
        build_bridge_rule("dpo", {"pairs": "best_worst_by_reward"})


def _bt_game():
    instance = build_game(GameSpec(kind="bradley_terry", rewards=[0.0, 1.0, 0.4, -0.5], tau=0.0).validate())
    return game_from_instance(instance, jnp.float64)


def _iterate(rule, game, steps):
    state = rule.init(game)
    states = [state]
    for _ in range(steps):
        state = rule.update(state, game)
        states.append(state)
    return states


@pytest.mark.parametrize("alpha", [0.3, 0.6])
def test_exact_apo_forms_follow_the_closed_form(alpha):
    """Exact APO-DPO: log π̂_T = log π_ref + ĉ_T·r/β and log π_T = log π_ref + c_T·r/β (docs/theory.md §B.3)
    in the ``parameters``/``log_space`` forms; ``implicit_reference`` keeps π̂_T as its iterate, with the
    same proximal outputs."""
    game, beta, steps = _bt_game(), 0.8, 8
    log_reference = np.asarray(game.log_reference)
    rewards = np.asarray(game.rewards)

    def normalised(v):
        return v - np.log(np.sum(np.exp(v)))

    runs = {
        form: _iterate(build_rule("apo", {"base": "dpo", "beta": beta, "alpha": alpha, "form": form}), game, steps)
        for form in FORMS
    }
    for t in range(1, steps + 1):
        hat, full = apo_multipliers(t, alpha)
        expected_iterate = normalised(log_reference + float(full) * rewards / beta)
        expected_proximal = normalised(log_reference + float(hat) * rewards / beta)
        for form in ("parameters", "log_space"):
            np.testing.assert_allclose(np.asarray(runs[form][t].log_policy), expected_iterate, atol=1e-12, rtol=0)
        np.testing.assert_allclose(
            np.asarray(runs["implicit_reference"][t].log_policy), expected_proximal, atol=1e-12, rtol=0
        )


def test_sampled_apo_implicit_reference_follows_the_closed_form():
    """Sampled APO-DPO with the implicit reference, many pairs: the trained π̂_T ≈ π_ref·exp(ĉ_T·r/β)
    (the closed form with +α; the sign of α changes ĉ_T by far more than the sampling error)."""
    alpha, beta, iterations = 0.5, 1.0, 3
    spec = {
        "iterations": iterations,
        "seeds": 2,
        "game": {"kind": "bradley_terry", "rewards": [0.0, 1.0, 0.4, -0.5], "tau": 0.0},
        "rule": [{"name": "apo", "base": "dpo", "beta": beta, "alpha": alpha, "form": "implicit_reference"}],
        "run": {
            "mode": "sampled",
            "pairs_per_iteration": 40000,
            "inner_steps": 300,
            "optimizer": "adam",
            "learning_rate": 0.05,
        },
        "record_every": 1,
    }
    table = sim.run(spec)
    game = _bt_game()
    rewards = np.asarray(game.rewards)
    hat, _ = apo_multipliers(iterations, alpha)
    # the same recursion with −α (x_{t+1} = y_t + 1, y_{t+1} = (1 + a)x_{t+1} − a·x_t; ĉ_T = x_T), written out:
    # apo_multipliers refuses α outside [0, 1)
    previous, extrapolated, wrong = 0.0, 0.0, 0.0
    for _ in range(iterations):
        wrong = extrapolated + 1.0
        extrapolated, previous = (1.0 - alpha) * wrong + alpha * previous, wrong
    expected = np.exp(np.asarray(game.log_reference) + float(hat) * rewards / beta)
    expected /= expected.sum()
    # suboptimality = max r − E_π r identifies the distribution along this one-parameter family
    final = table[table.iteration == iterations]["suboptimality"].to_numpy()
    target = rewards.max() - expected @ rewards
    other = np.exp(np.asarray(game.log_reference) + float(wrong) * rewards / beta)
    other /= other.sum()
    assert abs(target - (rewards.max() - other @ rewards)) > 0.05
    np.testing.assert_allclose(final, target, atol=0.02)


def test_exact_apo_state_is_its_own_named_state():
    game = random_game(1, True, 4, random_initial=False)
    state = build_rule("apo", {"base": "dpo", "beta": 1.0}).init(game)
    assert type(state.extra).__name__ == "ApoState"
    assert hasattr(state.extra, "previous_proximal")
    state = build_rule("dpo", {"beta": 1.0}).update(ExactState(game.log_initial, jnp.zeros((), jnp.int32), ()), game)
    assert state.extra == ()
