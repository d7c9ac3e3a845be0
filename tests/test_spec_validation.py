"""Spec parsing (sim/spec.py): every malformed spec gives a PrefsimError naming the field."""

import copy
import dataclasses
import json
import re

import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from bandits.games import GameSpec, depends_on_seed
from bandits.pair_schemes import check_candidates, default_scheme
from sim.cli import main
from sim.spec import RunSpec, load_spec, parse_spec
from sim.spec_checks import READ_WHEN

BASE = {
    "iterations": 10,
    "seeds": 2,
    "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
    "rule": [{"name": "inpo", "eta": 1.0}],
}
BT_GAME = {"kind": "bradley_terry", "rewards": [0.0, 1.0, 0.5]}


def _with(**changes):
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def test_a_facet_on_a_swept_field_is_accepted():
    spec = parse_spec(_with(game={"kind": "cyclic", "arms": 3, "tau": [0.1, 0.2]}, plot={"facet": ["game.tau"]}))
    assert spec.plot.facet == ("game.tau",) and len(spec.points) == 2


def test_the_base_spec_is_valid():
    spec = parse_spec(BASE)
    assert spec.iterations == 10 and spec.seeds == (0, 1) and spec.precision == "float64"
    assert spec.rules[0].label == "inpo" and spec.rules[0].parameters == {
        "eta": 1.0,
        "tau": 0.1,
        "schedule": "constant",
    }


@pytest.mark.parametrize(
    "spec, phrases",
    [
        # top level
        ("not a table", ["spec"]),
        (_with(iteration=10), ["spec", "unknown top-level key", "iteration"]),
        (_with(iterations=0), ["iterations"]),
        (_with(iterations=10.0), ["iterations"]),
        (_with(iterations="10"), ["iterations"]),
        (_with(iterations=True), ["iterations"]),
        ({k: v for k, v in BASE.items() if k != "iterations"}, ["iterations"]),
        (_with(seeds=0), ["seeds"]),
        (_with(seeds=[1, 1]), ["seeds", "repeated"]),
        (_with(seeds=[1, -2]), ["seeds"]),
        (_with(seeds=[]), ["seeds"]),
        (_with(seeds="all"), ["seeds"]),
        (_with(precision="float16"), ["precision"]),
        (_with(record_every=0), ["record_every"]),
        (_with(record_every=2.5), ["record_every"]),
        # game table
        ({k: v for k, v in BASE.items() if k != "game"}, ["game", "needs a [game] table"]),
        (_with(game="cyclic"), ["game", "expected a table"]),
        (_with(game={"kind": "cyclic", "arms": 3, "temperature": 1.0}), ["game", "unknown key", "temperature"]),
        (_with(game={"kind": "polygon", "arms": 3}), ["game.kind"]),
        (_with(game={"kind": "cyclic", "arms": "three"}), ["game.arms"]),
        (_with(game={"kind": "random", "arms": 1}), ["game.arms"]),
        (_with(game={"kind": "cyclic", "arms": 3, "tau": -1.0}), ["game.tau"]),
        (_with(game={"kind": "cyclic", "arms": 3, "strength": 2.0}), ["game.strength"]),
        (_with(game={"kind": "cyclic", "arms": 3, "reference": "skewed"}), ["game.reference"]),
        (_with(game={"kind": "matrix"}), ["game.preference"]),
        # plot metrics are checked before the run (not after it, when the figures are drawn)
        (_with(plot={"metrics": ["kl_to_nashh"]}), ["plot.metrics", "'kl_to_nashh'", "kl_to_nash"]),
        (_with(plot={"metrics": ["queries"]}), ["plot.metrics", "exact mode"]),
        # so are facets: a field the spec does not sweep has no panels to make
        (_with(plot={"facet": ["game.tau"]}), ["plot.facet: game.tau is not swept", "its swept fields are none"]),
        (
            _with(game={"kind": "cyclic", "arms": 3, "tau": [0.1, 0.2]}, plot={"facet": ["game.tau", "run.mode"]}),
            ["plot.facet: run.mode is not swept in this run; its swept fields are game.tau."],
        ),
        # quoted numbers inside lists are refused, as they are as scalars (not converted silently)
        (_with(game={"kind": "matrix", "preference": [["0.5", 0.7], [0.3, 0.5]]}), ["game.preference", "quotes"]),
        (_with(game={"kind": "bradley_terry", "rewards": ["1.0", 0.0]}), ["game.rewards", "'1.0'"]),
        (_with(game={"kind": "cyclic", "arms": 3, "reference": ["0.5", "0.25", 0.25]}), ["game.reference", "quotes"]),
        (_with(game={"kind": "cyclic", "arms": 3, "reference": [True, 0.0, 0.0]}), ["game.reference", "True"]),
        # the run's name names a directory (results/<name>-rerun) and launch jobs; the description is a line
        (_with(name={"a": 1}), ["name: expected", "got {'a': 1}"]),
        (_with(name=3), ["name: expected", "got 3"]),
        (_with(name="../../elsewhere"), ["name: expected", "../../elsewhere"]),
        (_with(name=""), ["name: expected"]),
        (_with(description=[1, 2]), ["description: expected a string", "list"]),
        # run table
        (_with(run="exact"), ["run", "expected a table"]),
        (_with(run={"mode": "approximate"}), ["run.mode"]),
        (_with(run={"modus": "exact"}), ["run", "unknown key", "modus"]),
        # rule tables
        ({k: v for k, v in BASE.items() if k != "rule"}, ["rule", "at least one"]),
        (_with(rule={"name": "inpo", "eta": 1.0}), ["rule", "[[rule]] tables"]),
        (_with(rule=[{"eta": 1.0}]), ["rule #1", "needs a name"]),
        (_with(rule=["inpo"]), ["rule #1", "needs a name"]),
        (_with(rule=[{"name": "ipo"}]), ["unknown rule", "ipo"]),
        (_with(rule=[{"name": ["inpo"]}]), ["rule #1", "name cannot be a list"]),
        (
            _with(rule=[{"name": "inpo", "eta": 1.0, "learning_rate": 0.1}]),
            ["rule #1 (inpo)", "unknown parameter", "learning_rate"],
        ),
        (_with(rule=[{"name": "inpo"}]), ["rule #1 (inpo)", "eta"]),
        (_with(rule=[{"name": "inpo", "eta": "big"}]), ["rule #1 (inpo)", "eta", "number"]),
        (_with(rule=[{"name": "inpo", "eta": True}]), ["rule #1 (inpo)", "eta", "number"]),
        (_with(rule=[{"name": "inpo", "eta": []}]), ["rule #1 (inpo)", "eta"]),
        (_with(rule=[{"name": "inpo", "eta": [1.0, "x"]}]), ["rule #1 (inpo)", "eta"]),
        (_with(rule=[{"name": "inpo", "eta": float("nan")}]), ["rule #1 (inpo)", "eta"]),
        (_with(rule=[{"name": "inpo", "eta": 1.0, "schedule": "cosine"}]), ["rule #1 (inpo)", "schedule"]),
        (
            _with(rule=[{"name": "inpo", "eta": 1.0, "schedule": ["constant", "cosine"]}]),
            ["rule #1 (inpo), inpo[schedule=cosine]", "schedule must be one of"],
        ),
        (_with(rule=[{"name": "inpo", "eta": 0.1}]), ["rule #1 (inpo)", "eta > tau"]),
        (
            _with(rule=[{"name": "inpo", "eta": [1.0, 2.0], "schedule": "theorem4"}]),
            ["rule #1 (inpo)", "eta", "theorem4"],
        ),
        (
            _with(rule=[{"name": "apo", "base": "inpo", "eta": 1.0, "base_schedule": "theorem4"}]),
            ["rule #1 (apo)", "eta", "theorem4"],
        ),
        (_with(rule=[{"name": "inpo", "eta": [0.5, 0.05, 2.0]}]), ["rule #1 (inpo)", "inpo[eta=0.05]", "eta > tau"]),
        (_with(rule=[{"name": "inpo", "eta": 1.0, "tau": [0.5, 1.0]}]), ["inpo[tau=1]", "eta > tau"]),
        (_with(rule=[{"name": "inpo", "eta": 1.0}, {"name": "inpo", "eta": 2.0}]), ["rule #1 (inpo)", "label"]),
        (
            _with(rule=[{"name": "inpo", "eta": 1.0, "label": "a"}, {"name": "mmd", "label": "a"}]),
            ["labels must be distinct", "a"],
        ),
        (_with(rule=[{"name": "inpo", "eta": 1.0, "label": "a/b"}]), ["rule #1 (inpo)", "label"]),
        (_with(rule=[{"name": "inpo", "eta": 1.0, "label": ""}]), ["rule #1 (inpo)", "label"]),
        (_with(rule=[{"name": "mmd", "eta": -1.0}]), ["rule #1 (mmd)", "eta"]),
        (_with(rule=[{"name": "mmd", "tau": float("inf")}]), ["rule #1 (mmd)", "tau"]),
        (_with(rule=[{"name": "nash_md", "eta": 20.0}]), ["rule #1 (nash_md)", "eta·tau"]),
        (_with(rule=[{"name": "extragradient", "eta": [1.0, 20.0]}]), ["extragradient[eta=20]", "eta·tau"]),
        (_with(rule=[{"name": "sppo", "normaliser": "approximate"}]), ["rule #1 (sppo)", "normaliser"]),
        (_with(rule=[{"name": "dno", "eta": 0}]), ["rule #1 (dno)", "eta"]),
        # counts are integers, as iterations is: 3.0 and 1e300 were accepted (only 2.5 was refused)
        (_with(rule=[{"name": "inpo", "eta": 1.0, "reference_every": 3.0}]), ["rule #1 (inpo)", "reference_every"]),
        (_with(rule=[{"name": "comal", "reference_every": 1e300}]), ["rule #1 (comal)", "reference_every", "1e+300"]),
        (_with(rule=[{"name": "mpo", "reference_every": [4, 8.0]}]), ["rule #1 (mpo)", "reference_every"]),
        (_with(rule=[{"name": "mnpo", "history": 2.0}]), ["rule #1 (mnpo)", "history must be an integer ≥ 1"]),
        (_with(rule=[{"name": "online_ipo", "tau": 0.0}]), ["rule #1 (online_ipo)", "tau"]),
        # a rule whose τ defaults to the game's τ = 0 cannot run
        (_with(game={"kind": "cyclic", "arms": 3}, rule=[{"name": "online_ipo"}]), ["rule #1 (online_ipo)", "tau"]),
        (_with(rule=[{"name": "dpo"}]), ["rule #1 (dpo)", "Bradley–Terry", "game.kind"]),
        (_with(rule=[{"name": "apo"}]), ["rule #1 (apo)", "Bradley–Terry", "game.kind"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": "mmd"}]), ["rule #1 (apo)", "base", "proximal"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": "online_ipo"}]), ["rule #1 (apo)", "base", "proximal"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": ["dpo", "nope"]}]), ["rule #1 (apo)", "base"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "alpha": 1.0}]), ["rule #1 (apo)", "alpha"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "alpha": [0.5, -1.5]}]), ["apo[alpha=-1.5]", "alpha"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "schedule": "linear"}]), ["rule #1 (apo)", "schedule"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "eta": 1.0}]), ["rule #1 (apo)", "unknown parameter", "eta"]),
        (_with(rule=[{"name": "apo", "base": "inpo", "eta": [0.05, 1.0]}]), ["apo[eta=0.05]", "eta > tau"]),
        (_with(rule=[{"name": "apo", "base": "inpo"}]), ["rule #1 (apo)", "eta"]),
        (_with(rule=[{"name": "apo", "base": "sppo", "beta": 1.0}]), ["rule #1 (apo)", "unknown parameter", "beta"]),
        (_with(game=BT_GAME, rule=[{"name": "dpo", "beta": [1.0, 0.0]}]), ["dpo[beta=0]", "beta"]),
        (_with(rule=[{"name": "inpo", "eta": [1.0, 2.0, 1]}]), ["rule", "inpo[eta=1]", "twice"]),
        (
            _with(rule=[{"name": "inpo", "eta": [1.0, 2.0]}, {"name": "mmd", "label": "inpo[eta=2]"}]),
            ["inpo[eta=2]", "twice"],
        ),
    ],
)
def test_malformed_spec_raises_naming_the_field(spec, phrases):
    with pytest.raises(PrefsimError) as info:
        parse_spec(spec)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert "\n" not in message.strip()  # one paragraph


def test_a_rule_error_names_the_rule_once():
    """The rule's own message (``rule inpo: …``) is not repeated after the table's ``rule #1 (inpo)``; a
    swept rule adds the point that fails."""
    with pytest.raises(PrefsimError) as caught:
        parse_spec(_with(rule=[{"name": "inpo", "eta": 0.05}]))
    assert str(caught.value).startswith("rule #1 (inpo): needs eta > tau")
    with pytest.raises(PrefsimError) as caught:
        parse_spec(_with(rule=[{"name": "inpo", "eta": [1.0, 0.05]}]))
    assert str(caught.value).startswith("rule #1 (inpo), inpo[eta=0.05]: needs eta > tau")


def test_valid_variants_parse():
    spec = parse_spec(
        _with(
            seeds=[5, 2],
            precision="float32",
            record_every=3,
            name="n",
            description="d",
            game=BT_GAME,
            rule=[
                {
                    "name": "apo",
                    "base": "inpo",
                    "eta": [1.0, 2.0],
                    "alpha": [0.0, 0.5],
                    "tau": 0.2,
                    "label": "apo_inpo",
                },
                {"name": "apo", "base": "sppo", "eta": 0.5, "schedule": "nesterov", "label": "apo_sppo"},
                {"name": "inpo", "schedule": "theorem4", "tau": 0.2},
                {"name": "dpo", "beta": 0.5},
            ],
        )
    )
    assert spec.seeds == (5, 2) and spec.record_every == 3
    swept = spec.rules[0]
    assert swept.swept() == {"eta": [1.0, 2.0], "alpha": [0.0, 0.5]}
    assert [label for label, _ in swept.grid_labels()] == [
        "apo_inpo[eta=1,alpha=0]",
        "apo_inpo[eta=1,alpha=0.5]",
        "apo_inpo[eta=2,alpha=0]",
        "apo_inpo[eta=2,alpha=0.5]",
    ]
    assert spec.rules[1].label == "apo_sppo" and spec.rules[1].parameters["normaliser"] == "exact"
    assert spec.rules[2].parameters["schedule"] == "theorem4" and "eta" not in spec.rules[2].parameters


def test_toml_files(tmp_path):
    with pytest.raises(PrefsimError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("iterations = = 3\n")
    with pytest.raises(PrefsimError, match="not valid TOML"):
        load_spec(broken)
    good = tmp_path / "good.toml"
    good.write_text(
        'iterations = 5\nseeds = 3\n[game]\nkind = "random"\narms = 4\ntau = 0.1\n'
        '[[rule]]\nname = "inpo"\neta = [0.5, 2.0]\n[[rule]]\nname = "online_ipo"\n'
    )
    spec = load_spec(good)
    assert spec.game == GameSpec(kind="random", arms=4, tau=0.1)
    assert spec.rules[1].parameters == {"tau": 0.1}
    bad_rule = tmp_path / "bad.toml"
    bad_rule.write_text(
        'iterations = 5\n[game]\nkind = "random"\narms = 4\ntau = 0.1\n[[rule]]\nname = "inpo"\neta = 0.1\n'
    )
    with pytest.raises(PrefsimError, match=r"rule #1 \(inpo\).*eta > tau"):
        load_spec(bad_rule)


def test_game_spec_accepts_numpy_arrays():
    # arrays (Python API) must not hit "truth value of an array is ambiguous"
    spec = GameSpec(kind="bradley_terry", rewards=np.array([0.0, 1.0]), reference=np.array([0.3, 0.7]))
    assert spec.validate() is spec
    assert depends_on_seed(spec) is False


# ------------------------------------------------------------------------------ keys the run does not read

SAMPLED = {"mode": "sampled", "pairs_per_iteration": 20, "inner_steps": 2}
BT_RANDOM = {"kind": "bradley_terry", "rewards": "random", "arms": 3, "tau": 0.1}


def _sampled(game=None, rule=None, **run):
    return _with(game=game or BASE["game"], rule=rule or BASE["rule"], run={**SAMPLED, **run})


@pytest.mark.parametrize(
    "spec, message",
    [
        # [game]: keys of one kind, construction or reference only
        (
            _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": "uniform", "reference_scale": 2.0}),
            'game.reference_scale = 2 is used only with reference = "random" (this spec has reference = "uniform"); '
            'remove it or set reference = "random".',
        ),
        (
            _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "reference_min_mass": 0.2}),
            'game.reference_min_mass = 0.2 is used only with reference = "random" (this spec has reference = '
            '"uniform")',
        ),
        (
            _with(game={"kind": "random", "arms": 3, "tau": 0.1, "construction": "lower_triangle", "scale": 5.0}),
            'game.scale = 5 is used only with construction = "skew_logits" (this spec has construction = '
            '"lower_triangle"); remove it or set construction = "skew_logits".',
        ),
        (
            _with(game={"kind": "random", "arms": 3, "tau": 0.1, "scale": 5.0}),
            'game.scale = 5 is used only with construction = "skew_logits"',
        ),
        (
            _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "scale": 5.0}),
            'game.scale = 5 is used only with kind = "random" (this spec has kind = "cyclic")',
        ),
        (
            _with(game={**BT_GAME, "reward_scale": 7.0}),
            'game.reward_scale = 7 is used only with rewards = "random" (this spec has rewards = [0, 1, 0.5])',
        ),
        (
            _with(game={"kind": "random", "arms": 3, "tau": 0.1, "reward_scale": 7.0}),
            'game.reward_scale = 7 is used only with kind = "bradley_terry" or "bt_mixture"',
        ),
        (
            _with(game={"kind": "random", "arms": 3, "tau": 0.1, "strength": 0.5}),
            'game.strength = 0.5 is used only with kind = "cyclic" (this spec has kind = "random")',
        ),
        (
            _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "construction": "skew_logits"}),
            'game.construction = "skew_logits" is used only with kind = "random"',
        ),
        # [game]: a sampled problem that builds its own preferences reads τ (and the linear ones K) only
        (
            _sampled(game={"kind": "cyclic", "arms": 3, "tau": 0.1}, problem="ring", ring_grid=3),
            'game.arms = 3 is used only with run.problem = "game", "linear_bradley_terry" or '
            '"linear_preference_game" (this spec has run.problem = "ring")',
        ),
        (
            _sampled(game={"kind": "random", "arms": 3, "tau": 0.1}, problem="linear_preference_game"),
            'game.kind = "random" is used only with run.problem = "game" (this spec has run.problem = '
            '"linear_preference_game")',
        ),
        (
            _sampled(game={"arms": 3, "tau": 0.1, "reference": "random"}, problem="linear_bradley_terry"),
            'game.reference = "random" is used only with run.problem = "game"',
        ),
        (
            _sampled(game={"tau": 0.1, "initial": "random"}, problem="ring"),
            'game.initial = "random" is used only with run.problem = "game"',
        ),
        # [run]: sampled-mode keys in an exact spec (data included: exact mode has none)
        (
            _with(run={"mode": "exact", "pairs_per_iteration": 10}),
            'run.pairs_per_iteration = 10 is used only with mode = "sampled" (this spec has mode = "exact"); '
            'remove it or set mode = "sampled".',
        ),
        (_with(run={"data": "online"}), 'run.data = "online" is used only with mode = "sampled"'),
        # [run]: sampled keys of one pair scheme, policy, problem or data source only
        (
            _sampled(candidates=64),
            'run.candidates = 64 is used only with pair_scheme = "best_worst_by_reward", "tournament", '
            '"sppo_win_rate" or "best_second_by_win_rate" (this spec has pair_scheme = "lambda_p")',
        ),
        (
            _sampled(pair_scheme="tournament", self_comparison=False),
            'run.self_comparison = false is used only with pair_scheme = "sppo_win_rate" (this spec has pair_scheme '
            '= "tournament")',
        ),
        (
            _sampled(mlp_width=999),
            'run.mlp_width = 999 is used only with policy = "mlp" (this spec has policy = "tabular")',
        ),
        (
            _sampled(policy="log_linear", mlp_hidden_layers=2),
            'run.mlp_hidden_layers = 2 is used only with policy = "mlp"',
        ),
        (_sampled(features="random"), 'run.features = "random" is used only with a log_linear or mlp policy'),
        (
            _sampled(policy="log_linear", feature_dim=77),
            'run.feature_dim = 77 is used only with problem = "linear_bradley_terry" or "linear_preference_game", '
            'or features = "random" with a log_linear or mlp policy on problem = "game" (this spec has problem = '
            '"game", policy = "log_linear", features = "one_hot")',
        ),
        (
            _sampled(game={"arms": 3, "tau": 0.1}, problem="linear_bradley_terry", features="random"),
            'run.features = "random" is used only with a log_linear or mlp policy on problem = "game"',
        ),
        (_sampled(contexts=1), 'run.contexts = 1 is used only with problem = "linear_bradley_terry" or'),
        (
            _sampled(ring_grid=9),
            'run.ring_grid = 9 is used only with problem = "ring" (this spec has problem = "game")',
        ),
        (_sampled(offline_pairs=10), 'run.offline_pairs = 10 is used only with data = "offline"'),
        (
            _sampled(data="offline", offline_pairs=100),
            'run.pairs_per_iteration = 20 is used only with data = "online", or without offline_pairs (this spec has '
            'data = "offline", offline_pairs = 100); remove it: with data = "offline", offline_pairs gives',
        ),
        # deprecated [run] defaults of rule parameters that no rule table takes
        (_sampled(apo_form="log_space"), 'run.apo_form = "log_space" is used only with an apo [[rule]] table'),
        (
            _sampled(game=BT_GAME, rule=[{"name": "apo", "base": "dpo", "form": "parameters"}], apo_form="log_space"),
            'run.apo_form = "log_space" is used only with an apo [[rule]] table that does not give its own form',
        ),
        (_sampled(dpo_reference="previous"), 'run.dpo_reference = "previous" is used only with a dpo [[rule]] table'),
    ],
)
def test_a_key_the_run_does_not_read_is_refused_naming_it_its_value_and_why(spec, message):
    with pytest.raises(PrefsimError) as info:
        parse_spec(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_unread_key_of_a_spec_is_named_in_one_error():
    """The reviewer's sampled spec: five keys a tabular λ_p run on the [game] table does not read."""
    spec = _sampled(candidates=64, mlp_width=999, feature_dim=77, ring_grid=9, self_comparison=False)
    with pytest.raises(PrefsimError) as info:
        parse_spec(spec)
    message = str(info.value)
    for key in ("candidates = 64", "mlp_width = 999", "feature_dim = 77", "ring_grid = 9", "self_comparison = false"):
        assert f"run.{key} is used only with" in message, key


@pytest.mark.parametrize(
    "spec",
    [
        _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": "random", "reference_scale": 2.0}),
        _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": "random", "reference_min_mass": 0.1}),
        _with(game={"kind": "random", "arms": 3, "tau": 0.1, "construction": "skew_logits", "scale": 5.0}),
        _with(game={**BT_RANDOM, "reward_scale": 7.0}),
        _with(game={**BT_RANDOM, "kind": "bt_mixture", "components": 2, "reward_scale": 2.0}),
        # defaults given explicitly where they are read
        _with(game={"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": "uniform", "initial": "reference"}),
        _with(run={"mode": "exact", "seed_block": 1}),
        _sampled(data="online", pair_scheme="lambda_p", policy="tabular", problem="game", optimizer="adam"),
        _sampled(pair_scheme="tournament", candidates=4),
        _sampled(game=BT_RANDOM, pair_scheme="best_worst_by_reward", candidates=3),
        _sampled(game=BT_RANDOM, pair_scheme="best_worst_of_k", candidates=3),  # the old name of best_worst_by_reward
        _sampled(rule=[{"name": "sppo"}], pair_scheme="sppo_win_rate", candidates=3, self_comparison=False),
        _sampled(policy="log_linear", features="random", feature_dim=3),
        _sampled(policy="mlp", mlp_width=8, mlp_hidden_layers=2, features="one_hot"),
        _sampled(game={"arms": 2, "tau": 0.1}, problem="linear_bradley_terry", feature_dim=2, contexts=2),
        _sampled(game={"tau": 0.1}, problem="ring", ring_grid=3),
        _sampled(data="offline"),  # pairs_per_iteration sizes the dataset
        {
            **_sampled(data="offline", offline_pairs=50),
            "run": {"mode": "sampled", "data": "offline", "offline_pairs": 50},
        },
        _sampled(game=BT_GAME, rule=[{"name": "apo", "base": "dpo"}], apo_form="log_space"),
        _sampled(game=BT_GAME, rule=[{"name": "dpo"}], dpo_reference="previous"),
    ],
)
def test_keys_the_run_reads_are_accepted(spec):
    parse_spec(spec)


def test_a_problem_of_its_own_reads_only_tau_and_arms_of_the_game_table():
    ring = parse_spec(_sampled(game={"tau": 0.2}, problem="ring", ring_grid=3))
    assert ring.game.tau == 0.2 and ring.game.arms is None
    # K = 2 is a valid linear bandit (the [game] table's default kind, cyclic, needs 3 arms but is not read)
    assert parse_spec(_sampled(game={"arms": 2, "tau": 0.1}, problem="linear_preference_game")).game.arms == 2
    with pytest.raises(PrefsimError, match="game.tau"):
        parse_spec(_sampled(game={"tau": -1.0}, problem="ring"))


def test_read_when_says_when_every_game_and_run_key_is_read():
    """A new [game] or [run] field must say under which settings a run reads it."""
    fields = {f"game.{f.name}" for f in dataclasses.fields(GameSpec)} | {
        f"run.{f.name}" for f in dataclasses.fields(RunSpec)
    }
    assert set(READ_WHEN) == fields


# ---------------------------------------------------------------- unread keys in [game]/[run] sweeps


def test_a_fixed_key_read_at_some_points_of_a_sweep_is_accepted_and_left_out_where_unread():
    spec = parse_spec(
        _with(
            game={
                "kind": "random",
                "arms": 3,
                "tau": 0.1,
                "construction": ["lower_triangle", "skew_logits"],
                "scale": 5.0,
            }
        )
    )
    assert [(p.game.construction, p.game.scale) for p in spec.points] == [("lower_triangle", 1.0), ("skew_logits", 5.0)]
    assert "scale" not in spec.points[0].raw["game"] and spec.points[1].raw["game"]["scale"] == 5.0
    kinds = parse_spec(_with(game={"kind": ["random", "cyclic"], "arms": 3, "tau": 0.1, "strength": 0.5}))
    assert [(p.game.kind, p.game.strength) for p in kinds.points] == [("random", 1.0), ("cyclic", 0.5)]
    schemes = parse_spec(_sampled(pair_scheme=["lambda_p", "tournament"], candidates=4))
    assert [p.run.candidates for p in schemes.points] == [8, 4]


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            _with(game={"kind": "random", "arms": 3, "tau": [0.1, 0.2], "scale": 5.0}),
            'game.scale = 5 is read at no point of the sweep: it is used only with construction = "skew_logits" '
            '(every point has construction = "lower_triangle"); remove it or set construction = "skew_logits".',
        ),
        (
            _with(game={"kind": ["random", "cyclic"], "arms": 3, "tau": 0.1, "scale": 5.0}),
            'game.scale = 5 is read at no point of the sweep: it is used only with construction = "skew_logits" (at '
            'game.kind=random: construction = "lower_triangle") and only with kind = "random" (at game.kind=cyclic: '
            'kind = "cyclic")',
        ),
        (
            _with(game={"kind": "random", "arms": 3, "tau": 0.1, "scale": [1.0, 5.0]}),
            "game.scale = [1, 5] is read at no point of the sweep",
        ),
        (
            _with(
                game={
                    "kind": "random",
                    "arms": 3,
                    "tau": 0.1,
                    "construction": ["lower_triangle", "skew_logits"],
                    "scale": [1.0, 5.0],
                }
            ),
            'game.scale = [1, 5] is swept, but it is used only with construction = "skew_logits", not at the points '
            'with construction = "lower_triangle": each of those points would run the same thing once per value.',
        ),
        (
            _sampled(pair_scheme=["lambda_p", "tournament"], candidates=[4, 8]),
            'run.candidates = [4, 8] is swept, but it is used only with pair_scheme = "best_worst_by_reward", '
            '"tournament", "sppo_win_rate" or "best_second_by_win_rate", not at the points with pair_scheme = '
            '"lambda_p"',
        ),
        (_sampled(pairs_per_iteration=[10, 20], mlp_width=16), "run.mlp_width = 16 is read at no point of the sweep"),
    ],
)
def test_a_sweep_refuses_a_key_no_point_reads_and_a_swept_key_some_point_does_not(spec, message):
    with pytest.raises(PrefsimError) as info:
        parse_spec(spec)
    assert message in str(info.value)


def test_the_cli_refuses_the_reviewers_unread_keys_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "ref_scale_on_uniform.toml"
    path.write_text(
        'iterations = 20\nseeds = 2\n[game]\nkind = "random"\narms = 3\nreference = "uniform"\n'
        'reference_scale = 2.0\ntau = 0.1\n[[rule]]\nname = "inpo"\neta = 0.5\n'
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: game.reference_scale = 2 is used only with reference = "random"')
    assert "Traceback" not in error and not (tmp_path / "out" / "metrics.csv").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            _with(game={"kind": 5, "arms": 3}),
            "game.kind: expected a string (matrix, bradley_terry, bt_mixture, cyclic, random), got int 5.",
        ),
        (
            _sampled(game={"tau": 0.1}, problem="ring", ring_grid=1),
            "run.ring_grid: the ring task needs at least 2 grid points per axis (K = ring_grid²), got 1.",
        ),
        (
            _sampled(
                game={"arms": 3, "tau": 0.1}, problem="linear_preference_game", policy="log_linear", feature_dim=1
            ),
            "run.feature_dim: a linear preference game needs d ≥ 2 (a non-zero skew-symmetric A), got 1.",
        ),
    ],
    ids=["game_kind", "ring_grid", "feature_dim"],
)
def test_kinds_ring_grid_and_feature_dim_are_refused_when_the_spec_is_parsed_naming_the_field(spec, message):
    with pytest.raises(PrefsimError) as info:
        parse_spec(spec)
    assert str(info.value) == message


def test_the_smallest_ring_grid_and_preference_game_dimension_are_accepted():
    parse_spec(_sampled(game={"tau": 0.1}, problem="ring", ring_grid=2))
    parse_spec(
        _sampled(game={"arms": 3, "tau": 0.1}, problem="linear_preference_game", policy="log_linear", feature_dim=2)
    )
    parse_spec(
        _sampled(game={"arms": 3, "tau": 0.1}, problem="linear_bradley_terry", policy="log_linear", feature_dim=1)
    )


@pytest.mark.parametrize(
    "scheme, candidates, message",
    [
        ("tournament", 1, "run.candidates: scheme tournament needs an integer number of candidates ≥ 2, got 1."),
        ("sppo_win_rate", 1, "run.candidates: scheme sppo_win_rate needs an integer number of candidates ≥ 2, got 1."),
    ],
)
def test_candidates_a_scheme_cannot_use_are_refused_when_the_spec_is_parsed(scheme, candidates, message):
    """Before any result directory is made (it was refused only when the run drew its first pairs)."""
    with pytest.raises(PrefsimError) as info:
        parse_spec(_sampled(pair_scheme=scheme, candidates=candidates))
    assert str(info.value) == message
    parse_spec(_sampled(pair_scheme=scheme, candidates=4))
    parse_spec(_sampled(pair_scheme=scheme, candidates=3))  # the tournament gives byes: any K ≥ 2, as the bridge
    parse_spec(_sampled(pair_scheme=scheme, candidates=2))  # the least K: one match, or one pair of draws


@pytest.mark.parametrize("scheme", ["best_worst_by_reward", "tournament", "sppo_win_rate"])
def test_check_candidates_takes_an_integer_from_two_and_nothing_else(scheme):
    """Called directly (the samplers call it): K = 2 is the least accepted; True (a bool is an int in Python),
    2.0 and 1 are refused naming the scheme; a scheme that draws no candidates ignores the value."""
    check_candidates(scheme, 2)
    for bad in (True, 2.0, 1, "2"):
        with pytest.raises(PrefsimError, match=f"scheme {scheme} needs an integer number of candidates ≥ 2, got"):
            check_candidates(scheme, bad)
    check_candidates("lambda_p", 1)


def test_a_rule_whose_loss_refuses_lambda_p_gets_the_first_scheme_it_accepts_by_default():
    """No built-in rule refuses lambda_p, so only an extension rule's PairData.schemes reaches this branch."""
    assert default_scheme() == "lambda_p"
    assert default_scheme(("tournament", "lambda_p")) == "lambda_p"
    assert default_scheme(("tournament", "exact_win_rates")) == "tournament"
    assert default_scheme(("exact_win_rates", "tournament")) == "exact_win_rates"


def test_numpy_values_in_a_python_spec_are_read_as_toml_values_and_recorded_as_numbers(tmp_path):
    """A spec dict built with NumPy: iterations = np.int64(3) was refused while game.arms = np.int64(3) was
    accepted, and the manifest then recorded arms as the text '3', so rerunning the run from its manifest
    failed (game.arms: expected an integer).  NumPy scalars and arrays now read as the TOML values."""
    spec = {
        "iterations": np.int64(3),
        "seeds": np.arange(2),
        "game": {"kind": "matrix", "preference": np.array([[0.5, 0.7], [0.3, 0.5]]), "tau": np.float64(0.2)},
        "rule": [{"name": "inpo", "eta": np.float32(1.0)}],
        "run": {"mode": "exact"},
    }
    parsed = parse_spec(spec)
    assert parsed.iterations == 3 and parsed.seeds == (0, 1) and type(parsed.raw["game"]["tau"]) is float
    assert parsed.raw["game"]["preference"] == [[0.5, 0.7], [0.3, 0.5]]
    assert isinstance(spec["seeds"], np.ndarray)  # the caller's dict is left as it was
    sim.run(spec, out=tmp_path / "first")
    manifest = tmp_path / "first" / "manifest.json"
    recorded = json.loads(manifest.read_text())["spec"]
    assert recorded["iterations"] == 3 and recorded["game"]["tau"] == 0.2 and recorded["seeds"] == [0, 1]
    assert main(["run", str(manifest), "--no-plots", "--out", str(tmp_path / "again")]) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        # Python's TOML parser recurses once per level of array or inline table
        ("a = " + "[" * 3000 + "]" * 3000 + "\n", "nests arrays or inline tables hundreds of levels deep"),
        ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "nests arrays or inline tables hundreds of levels deep"),
        # table headers parse without recursion; the spec's checks then walked the table recursively
        ("[x" + ".y" * 3000 + "]\n", "x.y.y.y.y.y.y.y.y.y.y.y.y.y.y.y: tables and arrays nest more than 16 levels"),
    ],
    ids=["arrays", "inline_tables", "table_header"],
)
def test_a_spec_nested_hundreds_of_levels_deep_is_refused_without_a_recursion_error(tmp_path, capsys, text, message):
    """Was a RecursionError traceback from tomllib or from sim.spec_checks.plain_values (exit status 1)."""
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(PrefsimError, match=re.escape(message)):
        load_spec(path)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error


def test_a_manifest_nested_hundreds_of_levels_deep_is_refused_without_a_recursion_error(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PrefsimError, match="nests arrays or objects hundreds of levels deep"):
        load_spec(path)


def test_a_spec_dict_nested_deeper_than_a_spec_can_be_is_refused_naming_the_path():
    deep = 1.0
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(PrefsimError, match=r"^game\.preference\[0\]\[0\].*nest more than 16 levels deep"):
        parse_spec(_with(game={"kind": "matrix", "preference": deep}))
    # a matrix per seed (a list of lists of lists) is well within the limit
    matrices = [[[0.5, 0.7], [0.3, 0.5]], [[0.5, 0.6], [0.4, 0.5]]]
    assert parse_spec(_with(game={"kind": "matrix", "preference": matrices, "tau": 0.1})).game.preference == matrices
