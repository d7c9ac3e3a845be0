"""Bounds are registered objects the rule definitions list; the bounds table and reports dispatch on them only."""

import inspect
import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import sim
from sim import bounds_table, theorems, theory
from sim.metrics import METRIC_COLUMNS
from sim.rules import RULES
from sim.spec import parse_spec
from sim.theorems import Bound

#: COMAL's game (arms a, b, c): P(b≻a) = P(c≻b) = 0.9, P(a≻c) = 0.8; π⁰ = (4/11, 3/11, 4/11).
COMAL_GAME = [[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]]


def test_every_listed_bound_is_a_registered_object_with_source_metric_and_formula():
    for name, definition in RULES.items():
        for bound in definition.bounds:
            assert isinstance(bound, Bound), name
            assert callable(getattr(theorems, bound.formula)), (name, bound.formula)
            assert bound.source and bound.short
            if bound.drawn:
                assert bound.metric in METRIC_COLUMNS, (name, bound.metric)
    assert [b.short for b in RULES["comal"].bounds] == [b.short for b in RULES["inpo"].bounds]  # a preset inherits
    assert theorems.ADVANCEMENT_MONOTONE in RULES["mpo"].bounds
    assert theorems.OPTIMISTIC_LINEAR in RULES["optimistic"].bounds
    assert theorems.MIRROR_PROX_LINEAR in RULES["extragradient"].bounds


def test_bound_code_dispatches_on_no_rule_name():
    names = "|".join(RULES)
    comparison = re.compile(rf'(==|!=|\bin\b)\s*\(?\s*"({names})"|"({names})"\s*(==|!=|\bin\b)')
    for module in (theory, bounds_table, theorems):
        source = inspect.getsource(module)
        hits = [m.group(0) for m in comparison.finditer(source)]
        # the one literal left is APO's *parameter* base = "dpo" (its derivation is for that base)
        assert hits in ([], ['== "dpo"']), (module.__name__, hits)
        assert "RULES_WITH_BOUNDS" not in source and "_TAU_RULES" not in source


def test_a_registered_rule_gets_its_bounds_without_any_name_check():
    """A rule registered from outside with an existing bound gets it drawn: no list of names to extend."""
    definition = RULES["mmd"]
    toy = sim.rules.register_rule(type(definition)(**{**definition.__dict__, "name": "toy_mmd", "aliases": ()}))
    try:
        spec = {
            "iterations": 20,
            "seeds": 1,
            "record_every": 1,
            "game": {"kind": "random", "arms": 4, "tau": 0.5},
            "rule": [{"name": toy.name, "eta": 0.5}],
        }
        table = sim.run(spec)
        bounds = bounds_table.compute_bounds(table, parse_spec(spec))
        assert set(bounds["label"]) == {"MMD linear rate bound (toy_mmd)"}
    finally:
        sim.rules.unregister_rule("toy_mmd")


def _run(spec, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim.run(spec, out=tmp_path, progress=lambda message: None)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    return pd.read_csv(tmp_path / "bounds.csv"), manifest["warnings"]


def test_presets_and_reference_every_get_the_advancement_check_and_say_which_bounds_do_not_apply(tmp_path):
    spec = {
        "iterations": 200,
        "record_every": 10,
        "game": {"kind": "matrix", "preference": COMAL_GAME, "tau": 0.1},
        "rule": [
            {"name": "comal", "reference_every": 20},
            {"name": "mpo", "eta": 0.8},
            {"name": "inpo", "label": "inpo_m50", "eta": 1.0, "reference_every": 50},
            {"name": "inpo", "label": "inpo_fixed", "eta": 1.0},
        ],
    }
    bounds, notes = _run(spec, tmp_path)
    drawn = bounds.groupby("rule")["metric"].apply(set).to_dict()
    assert drawn["comal"] == drawn["mpo"] == drawn["inpo_m50"] == {"kl_to_unregularised_nash"}
    assert drawn["inpo_fixed"] == {"duality_gap_mixture"}
    # the check sits at the recorded advances only: multiples of M, from the first advance on
    assert bounds.loc[bounds.rule == "comal", "iteration"].tolist() == list(range(20, 201, 20))
    assert bounds.loc[bounds.rule == "mpo", "iteration"].tolist() == [40, 80, 120, 160, 200]
    fixed = "its theorem is about a fixed reference and this rule moves its reference to π_t every"
    assert f"no INPO Theorem 3 bound drawn for comal: {fixed} 20 iterations (reference_every)." in notes
    assert f"no MMD linear rate bound drawn for mpo: {fixed} 40 iterations (reference_every)." in notes
    assert any(n.startswith(f"no INPO Theorem 3 bound drawn for inpo_m50: {fixed} 50") for n in notes)
    assert not any("bound drawn for inpo_fixed" in n for n in notes)
    report = theory.tightness_report(sim.run(spec), spec)
    monotone = report[report.metric == "kl_to_unregularised_nash"]
    assert len(monotone) == 10 + 5 + 4 and monotone["holds"].all()  # COMAL's claim on its own game


def test_a_moving_reference_on_a_game_without_a_unique_nash_says_why_the_check_is_missing(tmp_path):
    spec = {
        "iterations": 20,
        "game": {"kind": "matrix", "preference": [[0.5, 0.5], [0.5, 0.5]], "tau": 0.1},
        "rule": [{"name": "mpo", "reference_every": 5}],
    }
    bounds, notes = _run(spec, tmp_path)
    assert bounds.empty
    (note,) = [n for n in notes if n.startswith("no theory bound drawn for mpo")]
    assert "moves its reference" in note and "unique unregularised Nash" in note


def test_extragradient_and_optimistic_bounds_are_drawn_or_explained(tmp_path):
    spec = {
        "iterations": 30,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [
            {"name": "extragradient", "eta": [0.5, 5.0]},
            {"name": "optimistic", "label": "optimistic", "eta": 0.5},
            {"name": "optimistic", "label": "optimistic_fast", "eta": 1.5},
        ],
    }
    bounds, notes = _run(spec, tmp_path)
    assert set(bounds["rule"]) == {"extragradient[eta=0.5]", "optimistic"}
    assert set(bounds["metric"]) == {"kl_to_nash"}
    assert "no theory bound drawn for extragradient[eta=5]: the Mirror prox linear rate needs the step" in " ".join(
        notes
    )
    assert any(n.startswith("no theory bound drawn for optimistic_fast: the Optimistic MD linear rate") for n in notes)


def test_each_bound_of_a_rule_has_its_own_name():
    """The run's notes and the figure legends name a bound by its short name: two bounds of one rule sharing it
    would make a missing curve look drawn."""
    for name, definition in RULES.items():
        shorts = [bound.short for bound in definition.bounds]
        assert len(shorts) == len(set(shorts)), (name, shorts)


def test_a_missing_apo_tv_bound_is_explained_when_the_suboptimality_bound_is_drawn():
    """DPO on a Bradley–Terry game: both APO bounds at τ = 0 with a reward gap; with τ > 0 (tv_to_optimum then
    measures π*_τ) or tied best arms only the suboptimality bound, and a note says why the TV bound is missing."""
    reason = (
        "no APO/DPO exact TV bound drawn for dpo: the TV bound needs a unique best arm (reward gap Δ > 0) and a "
        "game with τ = 0, where tv_to_optimum is the distance to the best arm's point mass."
    )
    for tau, rewards, metrics in (
        (0.0, [1.0, 0.0, 0.5], {"suboptimality", "tv_to_optimum"}),
        (0.3, [1.0, 0.0, 0.5], {"suboptimality"}),
        (0.0, [1.0, 1.0, 0.5], {"suboptimality"}),
    ):
        spec = parse_spec(
            {
                "iterations": 10,
                "seeds": 1,
                "record_every": 1,
                "game": {"kind": "bradley_terry", "rewards": rewards, "tau": tau},
                "rule": [{"name": "dpo"}],
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = sim.run(spec)
        bounds = bounds_table.compute_bounds(table, spec)
        assert set(bounds["metric"]) == metrics, (tau, rewards)
        notes = bounds_table.missing_bound_notes(spec, bounds)
        assert notes == ([] if len(metrics) == 2 else [reason]), (tau, rewards)


def test_the_hedge_bound_of_dno_states_its_formula_in_dnos_inverse_eta():
    """DNO's η is an inverse learning rate (Hedge with step 1/η): its label, which the tightness report and
    ``prefsim rules`` print, must read the bound in that η, not SPPO's (whose η is the step)."""
    frame = {"iteration": np.array([0, 3]), "exploitability_mixture": np.array([0.1, 0.1])}
    game = {"initial": np.array([0.5, 0.25, 0.25])}
    # DNO η = 2 (step ½), T = t + 1 = 4 iterates, min π_0 = ¼: 2(η·log 4 + T/(8η))/T = 2(2 log 4 + 4/16)/4
    values, _ = theorems.DNO_HEDGE.evaluate({"eta": 2.0}, frame, game)
    assert values[1] == pytest.approx(2 * (2 * math.log(4) + 4 / 16) / 4, rel=1e-14)
    assert theorems.DNO_HEDGE.label.split(": ", 1)[1].startswith("2(η·log(1/min π_0) + T/(8η))/T")
    # SPPO's η is the step: 2(log(1/min π_0)/η + ηT/8)/T = 2(log 4/2 + 2·4/8)/4
    values, _ = theorems.SPPO_HEDGE.evaluate({"eta": 2.0}, frame, game)
    assert values[1] == pytest.approx(2 * (math.log(4) / 2 + 1) / 4, rel=1e-14)
    assert theorems.SPPO_HEDGE.label.split(": ", 1)[1] == "2(log(1/min π_0)/η + ηT/8)/T"
    assert theorems.DNO_HEDGE.short == theorems.SPPO_HEDGE.short  # one legend entry for both (sim.plotting)


def test_inpo_theorem3_label_states_the_max_b_one_its_value_uses():
    """Lemma 2's proof takes B ≥ 1 without loss of generality, so the bound uses max(B, 1); the label printed
    beside the values (tightness report, ``prefsim rules``) said (4τ²B² + 1), which a realised B < 1 contradicts."""
    frame = {
        "iteration": np.array([0, 3]),
        "max_log_ratio": np.array([0.1, 0.2]),
        "max_log_ratio_so_far": np.array([0.1, 0.2]),
    }
    reference = np.array([0.5, 0.25, 0.25])
    game = {"target": reference, "reference": reference, "tau": 0.5}
    values, _ = theorems.INPO_THEOREM3.evaluate({"eta": 2.0}, frame, game)
    # B = 0.2 → max(B, 1) = 1; T = t + 1 = 4, D = log 4: 2(η·D + (4τ²·1 + 1)T/η)/T = 2(2 log 4 + 2·4/2)/4
    assert values[1] == pytest.approx(2 * (2 * math.log(4) + 4) / 4, rel=1e-14)
    assert "(4τ²max(B,1)²+1)" in theorems.INPO_THEOREM3.label
