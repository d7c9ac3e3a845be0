"""Spec parsing (sim/spec.py): every malformed spec gives a PrefsimError naming the field."""

import copy

import numpy as np
import pytest

from bandits.errors import PrefsimError
from bandits.games import GameSpec, depends_on_seed
from sim.spec import load_spec, parse_spec

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
        (_with(rule=[{"name": "online_ipo", "tau": 0.0}]), ["rule #1 (online_ipo)", "tau"]),
        # a rule whose τ defaults to the game's τ = 0 cannot run
        (_with(game={"kind": "cyclic", "arms": 3}, rule=[{"name": "online_ipo"}]), ["rule #1 (online_ipo)", "tau"]),
        (_with(rule=[{"name": "dpo"}]), ["rule #1 (dpo)", "Bradley–Terry", "game.kind"]),
        (_with(rule=[{"name": "apo"}]), ["rule #1 (apo)", "Bradley–Terry", "game.kind"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": "mmd"}]), ["rule #1 (apo)", "base", "proximal"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": "online_ipo"}]), ["rule #1 (apo)", "base", "proximal"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "base": ["dpo", "nope"]}]), ["rule #1 (apo)", "base"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "alpha": 1.0}]), ["rule #1 (apo)", "alpha"]),
        (_with(game=BT_GAME, rule=[{"name": "apo", "alpha": [0.5, -0.5]}]), ["apo[alpha=-0.5]", "alpha"]),
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
