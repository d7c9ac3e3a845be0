"""llm_bridge.prediction: the candidate game, the simulator's trajectories on it, the LM restricted to it,
the comparison, and ``prefsim llm --predict`` (tiny local model, VADER oracle; nothing downloads)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import torch

from bandits.errors import PrefsimError
from llm_bridge import prediction
from llm_bridge.cli import _predict
from llm_bridge.loop import open_session
from llm_bridge.prediction import (
    CandidateGame,
    compare_trajectories,
    exact_trajectory,
    format_summary,
    restrict,
    rule_ordering,
    run_prediction,
    sampled_trajectory,
    summarise,
    total_variation,
    win_rate_against,
)
from llm_bridge.rules import LLM_TAU, build_bridge_rule
from llm_bridge.run_layout import PREDICTION_DIR
from llm_bridge.spec import PredictionSpec, parse_spec
from llm_bridge.tiny import PROMPTS as TINY_PROMPTS
from llm_bridge.tiny import build_tiny_model
from sim.cli import main as prefsim_main
from sim.results_io import output_lock
from sim.stats import bootstrap_ci

PROMPTS = list(TINY_PROMPTS[:6])


def tiny_spec(model_dir, **prediction) -> dict:
    return {
        "iterations": 2,
        "seed": 0,
        "model": {"path": str(model_dir), "device": "cpu"},
        "prompts": {"train": PROMPTS, "heldout": ["x"], "per_iteration": 2},
        "generation": {"max_new_tokens": 4, "batch_size": 32},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 3e-3, "epochs": 4, "batch_size": 8, "micro_batch_size": 8},
        "rule": [
            {"label": "inpo", "name": "inpo", "eta": 0.5, "tau": 0.1},
            {"label": "dpo", "name": "dpo", "beta": 0.1, "pairs": "best_worst_by_win_rate", "samples": 2},
        ],
        "run": {"threads": 1},
        "prediction": {"prompts": 6, "candidates": 4, "pairs_per_prompt": 8, **prediction},
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), hidden_size=32)


#: The study's prompts: the six training prompts and six more, the last six of llm_bridge.tiny.PROMPTS (12 prompts ×
#: 4 candidates).
STUDY_PROMPTS = [*PROMPTS, *TINY_PROMPTS[-6:]]
#: The study's spec seed.  The study is sized (12 prompts, 32 pairs per prompt, batches of 64: 24 optimiser steps
#: per iteration as with 6 × 8 pairs in batches of 8) and test_tiny_lm_follows_the_simulator_on_the_candidates
#: asserts what its intervals support, so that it passes for every spec seed tried (0–9), with margins (worst
#: seed): win_lm_low ≥ 0.540 against 0.5, INPO's gain_exact_low ≥ 0.055 against 0, INPO's paired interval of
#: win_lm − win_exact within [−0.023, +0.011] against ±0.05.  The former study (6 prompts × 8 pairs, asserting
#: gain_exact_low > 0.05 and |win_lm − win_exact| < 0.05 for DPO as well) passed for seeds 2 and 5 of 0–9 only.
STUDY_SEED = 0


def test_the_notebook_and_this_file_read_their_prompts_from_one_list():
    """Notebook 08's 16 prompts and this file's 6 + 6 were one list written twice: both are llm_bridge.tiny.PROMPTS."""
    notebook = (pathlib.Path(__file__).parents[1] / "notebooks" / "08_simulator_predicts_lm.py").read_text()
    assert "TRAIN = list(TINY_PROMPTS)" in notebook
    assert not [prompt for prompt in TINY_PROMPTS if f'"{prompt}"' in notebook]
    assert len(TINY_PROMPTS) == len(set(TINY_PROMPTS)) == 16 and len(set(STUDY_PROMPTS)) == 12


def study_spec(model_dir, seed: int = STUDY_SEED) -> dict:
    """The spec of the ``study`` fixture with spec seed ``seed``."""
    raw = tiny_spec(model_dir, prompts=len(STUDY_PROMPTS), pairs_per_prompt=32)
    raw["prompts"]["train"] = STUDY_PROMPTS
    raw["training"].update(batch_size=64, micro_batch_size=64)
    return {**raw, "seed": seed}


@pytest.fixture(scope="module")
def study(model_dir, tmp_path_factory):
    spec = parse_spec(study_spec(model_dir))
    out = tmp_path_factory.mktemp("prediction")
    session = open_session(spec, out, progress=False)
    return spec, session, run_prediction(spec, session, out, progress=False), out


def synthetic_game(seed=0, prompts=2, k=3) -> CandidateGame:
    rng = np.random.default_rng(seed)
    upper = rng.uniform(0.05, 0.95, (prompts, k, k))
    preference = np.triu(upper, 1) + np.tril(1 - np.transpose(upper, (0, 2, 1)), -1) + 0.5 * np.eye(k)
    logps = rng.normal(-6.0, 1.5, (prompts, k))
    texts = [[f"r{m}{i}" for i in range(k)] for m in range(prompts)]
    ids = [[[i + 1] for i in range(k)] for _ in range(prompts)]
    return CandidateGame(
        [f"p{m}" for m in range(prompts)], [[0]] * prompts, ids, texts, preference, np.full((prompts, k), np.nan), logps
    )


def test_candidate_game_is_the_oracle_game_with_pi_ref_restricted(study, model_dir):
    _, session, result, _ = study
    game = result.game
    m, k = game.shape
    assert (m, k) == (len(STUDY_PROMPTS), 4)
    assert all(len(set(row)) == k for row in game.texts)  # distinct candidates
    np.testing.assert_allclose(game.preference + np.transpose(game.preference, (0, 2, 1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(game.log_reference).sum(axis=1), 1.0, atol=1e-12)
    # VADER is Bradley–Terry: the rewards (vader / scale) reproduce P
    implied = 1 / (1 + np.exp(-(game.rewards[:, :, None] - game.rewards[:, None, :])))
    np.testing.assert_allclose(implied, game.preference, atol=1e-9)
    # π_ref's sequence log-probability of one candidate, computed here from the model's full logits
    model = session.policy
    prompt, response = game.prompt_ids[1], game.response_ids[1][2]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0].double().log_softmax(-1)
    direct = sum(float(logits[len(prompt) - 1 + i, token]) for i, token in enumerate(response))
    assert game.reference_logps[1, 2] == pytest.approx(direct, abs=1e-4)


def test_exact_trajectory_is_inpo_closed_form():
    game = synthetic_game()
    rule = build_bridge_rule("inpo", {"eta": 0.5, "tau": 0.1})
    path = exact_trajectory(rule, game, iterations=3, tau=0.1)
    log_ref = game.log_reference
    log_pi = log_ref.copy()
    for t in range(3):
        payoff = np.einsum("mij,mj->mi", game.preference, np.exp(log_pi))
        log_pi = restrict((1 - 0.1 / 0.5) * log_pi + (0.1 / 0.5) * log_ref + payoff / 0.5)
        np.testing.assert_allclose(path[t + 1], np.exp(log_pi), atol=1e-12)
    np.testing.assert_allclose(path[0], np.exp(log_ref), atol=1e-12)


def test_sampled_trajectory_approaches_exact_with_many_pairs():
    game = synthetic_game(1)
    rule = build_bridge_rule("inpo", {"eta": 0.5, "tau": 0.1})
    exact = exact_trajectory(rule, game, 2, 0.1)
    settings = PredictionSpec(sampled_learning_rate=0.05, sampled_inner_steps=400)
    many = sampled_trajectory(rule, game, 2, 0.1, pairs=20_000, spec=settings, seed=0)
    few = sampled_trajectory(rule, game, 2, 0.1, pairs=10, spec=settings, seed=0)
    assert total_variation(many[1:], exact[1:]).max() < 0.03
    assert total_variation(few[1:], exact[1:]).max() > 2 * total_variation(many[1:], exact[1:]).max()


def test_comparison_metrics_on_hand_made_trajectories():
    game = synthetic_game(2, prompts=2, k=2)
    game.preference[:] = np.array([[0.5, 0.8], [0.2, 0.5]])
    game.reference_logps[:] = np.log([0.5, 0.5])
    lm = np.array([[[0.5, 0.5]] * 2, [[0.7, 0.3], [0.9, 0.1]]])
    exact = np.array([[[0.5, 0.5]] * 2, [[0.8, 0.2], [0.8, 0.2]]])
    table = compare_trajectories(game, {"a": {"lm": lm, "exact": exact, "sampled": exact}})
    last = table[table["iteration"] == 1].sort_values("prompt")
    np.testing.assert_allclose(last["tv_lm_exact"], [0.1, 0.1])
    np.testing.assert_allclose(last["tv_lm_reference"], [0.2, 0.4])
    # win rate against π_ref = (½, ½), by hand: Pπ_ref = (0.65, 0.35), so πᵀPπ_ref = 0.56 and 0.62
    np.testing.assert_allclose(last["win_lm"], [0.56, 0.62])
    assert win_rate_against(exact[1], game.preference, np.full((2, 2), 0.5))[0] == pytest.approx(0.59)
    summary = summarise(table, resamples=200)
    row = summary[summary["iteration"] == 1].iloc[0]
    assert (
        row["win_lm"] == pytest.approx(0.59)
        and 0.56 - 1e-12 <= row["win_lm_low"] <= 0.59 <= row["win_lm_high"] <= 0.62 + 1e-12
    )
    # ordering: rule b = π_ref throughout loses to a under every engine
    still = {"lm": lm[:1].repeat(2, 0), "exact": exact[:1].repeat(2, 0), "sampled": exact[:1].repeat(2, 0)}
    both = compare_trajectories(game, {"a": {"lm": lm, "exact": exact, "sampled": exact}, "b": still})
    order = rule_ordering(both, resamples=200).iloc[0]
    assert order["lm_difference"] == pytest.approx(0.09) and order["exact_difference"] == pytest.approx(0.09)
    assert order["agrees_exact"] and order["agrees_sampled"]


def check_study(spec, result) -> None:
    """What the study of ``study_spec`` supports at its size (12 prompts; 95% bootstrap intervals over prompts).

    * the exact column is exact mode on the study's game (not the sampled column, not another rule's);
    * the LM improved on π_ref: its win rate's interval lies above ½, for both rules;
    * INPO, whose loss's population minimiser is exact mode's step: the exact prediction beats the null
      prediction "the LM stays at π_ref" (paired over prompts, gain_exact_low > 0), and the paired interval of
      win_lm − win_exact lies within ±0.05 (the win rates' own intervals are about ±0.04 wide);
    * the ordering of the rules by win rate is the simulator's.  DPO's exact step, log π += r/β with β = 0.1,
      is near deterministic, and the LM's 24 optimiser steps per iteration on sampled pairs reach only part of
      it (its win rate falls 0.01–0.17 short, seeds 0–9): the study asserts DPO's direction, not its size.
    """
    last_iteration = spec.iterations
    tau = float(spec.raw.get("tau", LLM_TAU))
    for entry in spec.rules:
        expected = exact_trajectory(entry.rule, result.game, spec.iterations, tau)
        np.testing.assert_allclose(result.trajectories[entry.label]["exact"], expected, rtol=0, atol=1e-12)
    summary = result.summary
    last = summary[summary["iteration"] == last_iteration].set_index("rule")
    for rule in ("inpo", "dpo"):
        assert last.loc[rule, "win_lm_low"] > 0.5, rule
    assert last.loc["inpo", "gain_exact_low"] > 0
    final = result.per_prompt[
        (result.per_prompt["iteration"] == last_iteration) & (result.per_prompt["rule"] == "inpo")
    ]
    difference = (final["win_lm"] - final["win_exact"]).to_numpy()
    _, low, high = bootstrap_ci(difference, resamples=spec.prediction.resamples, seed=spec.seed)
    assert -0.05 < low and high < 0.05, (low, high)
    assert result.ordering["agrees_exact"].all() and result.ordering["agrees_sampled"].all()


def test_tiny_lm_follows_the_simulator_on_the_candidates(study):
    spec, _, result, out = study
    check_study(spec, result)
    m = len(STUDY_PROMPTS)
    assert len(result.lm_stats["inpo"]) == 2 and all(s["pairs"] == m * 32 for s in result.lm_stats["inpo"])
    files = {p.name for p in (out / "prediction").iterdir()}
    assert files == {"per_prompt.csv", "summary.csv", "ordering.csv", "game.json"}
    stored = pd.read_csv(out / "prediction" / "per_prompt.csv")
    assert set(stored["rule"]) == {"inpo", "dpo"} and len(stored) == 2 * 3 * m
    assert "lm_mass_change" in stored and stored[stored["iteration"] == 0]["lm_mass_change"].abs().max() == 0
    assert json.loads((out / "prediction" / "game.json").read_text())["candidates"] == result.game.texts


def test_lm_column_is_the_lm(model_dir, tmp_path):
    """With a negligible learning rate the LM stays at π_ref while exact mode moves: the columns are not shared."""
    raw = tiny_spec(model_dir)
    raw["training"]["learning_rate"] = 1e-9
    raw["iterations"] = 1
    raw["rule"] = raw["rule"][:1]
    spec = parse_spec(raw)
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    last = result.summary.iloc[-1]
    assert last["tv_lm_reference"] < 1e-4 and last["tv_exact_reference"] > 0.05


def test_prefsim_llm_predict_cli(model_dir, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    raw = tiny_spec(model_dir, prompts=3)
    raw["iterations"] = 1
    raw["rule"] = raw["rule"][:1]
    lines = [f"iterations = {raw['iterations']}", "seed = 0"]
    lines += ["[model]", f'path = "{model_dir}"', 'device = "cpu"']
    lines += ["[prompts]", f"train = {json.dumps(PROMPTS)}", 'heldout = ["x"]']
    lines += ["[generation]", "max_new_tokens = 4"]
    lines += ["[training]", "learning_rate = 1e-2", "batch_size = 8", "micro_batch_size = 8"]
    lines += ["[[rule]]", 'name = "inpo"', "eta = 0.5"]
    lines += ["[prediction]", "prompts = 3", "candidates = 3"]
    path.write_text("\n".join(lines) + "\n")
    assert prefsim_main(["llm", str(path), "--out", str(tmp_path / "out"), "--predict"]) == 0
    printed = capsys.readouterr().out
    assert "TV(LM, exact)" in printed and (tmp_path / "out" / "prediction" / "summary.csv").is_file()
    # the same directory again: a clear error, exit 2
    assert prefsim_main(["llm", str(path), "--out", str(tmp_path / "out"), "--predict"]) == 2
    assert "already holds a prediction study" in capsys.readouterr().err


@pytest.mark.parametrize(
    "prediction, message",
    [
        ({"candidates": 1}, "prediction.candidates: expected an integer ≥ 2, got 1."),
        ({"pairs": 3}, "prediction: unknown key(s) pairs"),
        ({"sampled_optimizer": "lbfgs"}, "prediction.sampled_optimizer"),
        ({"prompts": 0}, "prediction.prompts: expected an integer ≥ 1, got 0."),
    ],
)
def test_bad_prediction_table(model_dir, prediction, message):
    with pytest.raises(PrefsimError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(tiny_spec(model_dir, **prediction))


def test_unsupported_rules_and_sizes_are_refused(model_dir, tmp_path):
    raw = tiny_spec(model_dir)
    raw["rule"] = [
        {"name": "apo", "base": "dpo", "alpha": 0.3, "form": "implicit_reference", "pairs": "best_worst_by_win_rate"}
    ]
    spec = parse_spec(raw)
    with pytest.raises(PrefsimError, match="parameter form only"):
        run_prediction(spec, None, None, progress=False)
    # reference_every is run, not refused (the tests of the moving reference below): comal, mpo and an anchored
    # rule given it pass the study's rule check
    for rule in (
        {"name": "inpo", "eta": 0.5, "tau": 0.1, "reference_every": 2},
        {"name": "comal", "tau": 0.1},
        {"name": "mpo", "tau": 0.1},
    ):
        raw["rule"] = [rule]
        assert prediction._check_rule(parse_spec(raw).rules[0].rule, "rule") is None
    raw = tiny_spec(model_dir, prompts=7)
    spec = parse_spec(raw)
    with pytest.raises(PrefsimError, match="exceeds the 6 training prompts"):
        run_prediction(spec, None, None, progress=False)


def test_a_repeated_prompt_gives_the_sampled_column_the_lm_budget(model_dir, monkeypatch, tmp_path):
    """The game keeps a repeated training prompt once, so the LM trains on (distinct prompts) × pairs_per_prompt
    pairs; sampled mode was given prediction.prompts × pairs_per_prompt (32 pairs against the LM's 24 here)."""
    raw = tiny_spec(model_dir, prompts=4)
    raw["iterations"] = 1
    raw["prompts"]["train"] = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[2]]
    raw["rule"] = raw["rule"][:1]
    spec = parse_spec(raw)
    budgets = []
    sampled = prediction.sampled_trajectory
    monkeypatch.setattr(prediction, "sampled_trajectory", lambda *args: budgets.append(args[4]) or sampled(*args))
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    assert result.game.shape[0] == 3 and result.lm_stats["inpo"][0]["pairs"] == 3 * 8
    assert budgets == [3 * 8]


class Recorded:
    """The LM column's scorings of the candidates ("score", log π) and training calls ("train", where, pairs,
    log π of the policy the model held when it trained), in order; and the candidate game."""

    def __init__(self, monkeypatch):
        self.events, self.game = [], None
        score, train, build = prediction.score_candidates, prediction.train_on_pairs, prediction.build_candidate_game

        def scoring(*args, **kwargs):
            self.events.append(("score", score(*args, **kwargs)))
            return self.events[-1][1]

        def training(model, optimizer, data, rule, training_spec, pad_id, **kwargs):
            self.events.append(("train", kwargs["where"], data, score(model, self.game, pad_id)))
            return train(model, optimizer, data, rule, training_spec, pad_id, **kwargs)

        def building(*args, **kwargs):
            self.game = build(*args, **kwargs)
            return self.game

        monkeypatch.setattr(prediction, "score_candidates", scoring)
        monkeypatch.setattr(prediction, "train_on_pairs", training)
        monkeypatch.setattr(prediction, "build_candidate_game", building)


@pytest.mark.parametrize("name", ["extragradient", "optimistic"])
def test_two_stage_rules_train_both_stages_from_pi_t_as_the_bridge_orders_them(model_dir, monkeypatch, tmp_path, name):
    """Extragradient and optimistic MD run their two proximal stages in the LM column (llm_bridge.stages): both
    train from θ_t with the anchor log π_t; the second draws from the first's output (π_{t+½}, π̄_{t+1}), and
    optimistic MD's first stage trains on the pairs its second stage drew the iteration before.  The column once
    trained one INPO-like stage of pairs from π_t, while the exact and sampled columns ran the rule itself."""
    raw = tiny_spec(model_dir)
    raw["rule"] = [{"label": "x", "name": name, "eta": 2.0, "tau": 0.1}]
    spec = parse_spec(raw)
    seen = Recorded(monkeypatch)
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    assert [s["pairs"] for s in result.lm_stats["x"]] == [2 * 6 * 8] * 2  # two stages of prompts × pairs each
    first_train = next(i for i, event in enumerate(seen.events) if event[0] == "train")
    events = seen.events[first_train - 1 :]  # from the scoring of π_0 at the start of iteration 1
    assert [event[0] for event in events] == ["score", "train", "score", "train"] * 2 + ["score"]
    for t in range(2):
        (_, start), first, (_, drawn_from), second = events[4 * t : 4 * t + 4]
        for where, data, held in (first[1:], second[1:]):
            assert f"iteration {t + 1} " in where
            np.testing.assert_allclose(held, start, rtol=0, atol=1e-9, err_msg=where)  # trained from θ_t
            values = data.values["previous_w"].numpy()
            assert np.abs(values[:, None] - start.ravel()[None, :]).min(axis=1).max() < 1e-9  # anchored at π_t
        assert ", stage 1" in second[1] and ", stage 1" not in first[1]
        assert np.abs(drawn_from - start).max() > 1e-3  # the second stage drew from the first stage's output
    if name == "optimistic":  # t = 1's first stage trains on the pairs t = 0's second stage drew
        carried, reused, fresh = events[3][2], events[5][2], events[1][2]
        assert reused.winner_ids == carried.winner_ids and reused.loser_ids == carried.loser_ids
        assert fresh.winner_ids != carried.winner_ids


def test_nash_md_lm_column_draws_the_second_response_from_its_opponent(model_dir, monkeypatch, tmp_path):
    """Nash-MD's pairs are y ~ π_t and y′ ~ its opponent, both restricted to the candidates, kept in that order
    (the bridge's opponent pairs): with an opponent that puts all its mass on the first candidate, every y′ is
    that candidate, while the y vary."""
    raw = tiny_spec(model_dir)
    raw["rule"] = [{"label": "x", "name": "nash_md", "eta": 0.5, "tau": 0.1}]
    spec = parse_spec(raw)
    first_only = property(lambda self: lambda log_policy, log_reference: np.where(np.arange(4) == 0, 0.0, -np.inf))
    monkeypatch.setattr(prediction.BridgeRule, "opponent", first_only)
    asked = []
    pairs = prediction.opponent_pairs
    monkeypatch.setattr(prediction, "opponent_pairs", lambda p, texts, o: asked.append(texts[0]) or pairs(p, texts, o))
    seen = Recorded(monkeypatch)
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    # its loss is a surrogate of a step: the study says what its LM and sampled columns then compare with exact mode
    assert len(result.notes) == 1 and "not an argmin" in result.notes[0] and "rule 'x'" in result.notes[0]
    assert format_summary(result)[-1] == f"note: {result.notes[0]}"
    position = {text: i for row in seen.game.texts for i, text in enumerate(row)}
    assert len(asked) == 2 * 6 * 8  # one pair per draw, two iterations
    assert all(position[second] == 0 for _, second in asked)  # y′ from the opponent
    assert len({position[first] for first, _ in asked}) == 4  # y from π_t, over the candidates
    # the pair keeps its order (y first, y′ second) and is labelled P(y ≻ y′) from the game
    game = seen.game
    for data in (event[2] for event in seen.events if event[0] == "train"):
        prompts = [m for m in range(6) for _ in range(8)]
        assert [ids for ids in data.loser_ids] == [game.response_ids[m][0] for m in prompts]
        winners = [game.response_ids[m].index(ids) for m, ids in zip(prompts, data.winner_ids)]
        expected = [game.preference[m, w, 0] for m, w in zip(prompts, winners)]
        np.testing.assert_allclose(data.values["preference"].numpy(), expected, rtol=0, atol=1e-12)


def test_mnpo_lm_column_anchors_at_the_mixture_of_its_last_iterates(model_dir, monkeypatch, tmp_path):
    """MNPO's LM column trains with ``previous`` = ½ log π_t + ½ log π_{t−1} (history 2, uniform; π_0 alone at
    t = 0), computed here from the candidates' scores at each iteration; it once used log π_t, which made its LM
    trajectory INPO's to the last bit."""
    raw = tiny_spec(model_dir)
    raw["rule"] = [{"label": "m", "name": "mnpo", "eta": 0.5, "tau": 0.1, "history": 2}]
    spec = parse_spec(raw)
    scored, anchors = [], []
    score, train = prediction.score_candidates, prediction.train_on_pairs

    def scoring(*args, **kwargs):
        scored.append(score(*args, **kwargs))
        return scored[-1]

    def training(model, optimizer, data, *args, **kwargs):
        anchors.append(data.values["previous_w"].numpy())
        return train(model, optimizer, data, *args, **kwargs)

    monkeypatch.setattr(prediction, "score_candidates", scoring)
    monkeypatch.setattr(prediction, "train_on_pairs", training)
    run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    first, second = scored[-3], scored[-2]  # the LM's π_0 and π_1 on the candidates (π_2 is scored last)
    assert len(anchors) == 2 and not np.allclose(first, second)

    def within(values, allowed):
        return np.abs(values[:, None] - allowed.ravel()[None, :]).min(axis=1).max()

    assert within(anchors[0], first) < 1e-9
    assert within(anchors[1], 0.5 * (first + second)) < 1e-9
    assert within(anchors[1], second) > 1e-6  # not log π_1 alone


def test_a_prediction_into_a_directory_another_run_holds_is_refused_at_once(tmp_path):
    """The study takes the directory's lock first, as a training run does (the spec is not even read)."""
    held = tmp_path / "held"
    held.mkdir()
    with output_lock(held):
        with pytest.raises(PrefsimError, match=r"another prefsim run \(process \d+\) is writing to this directory"):
            _predict(None, held, quiet=True)
    assert not (held / PREDICTION_DIR).exists()


@pytest.mark.parametrize("variable", ["WORLD_SIZE", "OMPI_COMM_WORLD_SIZE"])
def test_a_prediction_under_accelerate_launch_is_refused_before_the_lock(tmp_path, monkeypatch, variable):
    """Under ``accelerate launch`` every process took the directory's lock, so all but one were refused as
    "another prefsim run (process <sibling>)" instead of being told to run without the launcher.  Here the
    test holds the lock (the sibling) and the environment says two processes: no model is loaded."""
    monkeypatch.setenv(variable, "2")
    held = tmp_path / "held"
    held.mkdir()
    with output_lock(held):
        with pytest.raises(PrefsimError, match=r"^prefsim llm --predict runs in one process; run it without accel"):
            _predict(None, held, quiet=True)
    assert not (held / PREDICTION_DIR).exists()


# --------------------------------------------------------------------------------------- a moving reference


def test_exact_column_of_comal_is_inpo_restarted_at_every_advance():
    """COMAL's exact column, recomputed here in NumPy on a hand-made game: INPO steps (η = 3τ, its default)
    toward a reference that becomes π_t before the updates t = M, 2M, … (t > 0); π_ref of the game stays."""
    game = synthetic_game(0, prompts=2, k=3)
    game.preference[0] = [[0.5, 0.7, 0.2], [0.3, 0.5, 0.9], [0.8, 0.1, 0.5]]  # a cycle: the Nash is mixed
    game.preference[1] = [[0.5, 0.6, 0.65], [0.4, 0.5, 0.55], [0.35, 0.45, 0.5]]
    game.reference_logps[:] = np.log([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]) - 5.0
    tau, every, iterations = 0.1, 2, 7
    rule = build_bridge_rule("comal", {"tau": tau, "reference_every": every})
    path = exact_trajectory(rule, game, iterations, tau)
    eta = 3 * tau
    log_pi = np.log([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    log_ref = log_pi.copy()
    expected = [np.exp(log_pi)]
    for t in range(iterations):
        if t > 0 and t % every == 0:
            log_ref = log_pi.copy()
        payoff = np.einsum("mij,mj->mi", game.preference, np.exp(log_pi))
        log_pi = (1 - tau / eta) * log_pi + (tau / eta) * log_ref + payoff / eta
        log_pi -= np.log(np.exp(log_pi).sum(axis=1, keepdims=True))
        expected.append(np.exp(log_pi))
    np.testing.assert_allclose(path, np.stack(expected), rtol=0, atol=1e-12)
    # the advance matters here: INPO with a fixed reference leaves the path after t = M
    fixed = exact_trajectory(build_bridge_rule("inpo", {"tau": tau, "eta": eta}), game, iterations, tau)
    np.testing.assert_allclose(fixed[: every + 1], path[: every + 1], rtol=0, atol=1e-12)
    assert total_variation(fixed[every + 1 :], path[every + 1 :]).max() > 1e-3


def pair_indices(game, data) -> tuple[list, list, list]:
    """Prompt, winner and loser candidate indices of a training batch."""
    prompts = [game.prompt_ids.index(ids) for ids in data.prompt_ids]
    winners = [game.response_ids[m].index(ids) for m, ids in zip(prompts, data.winner_ids)]
    losers = [game.response_ids[m].index(ids) for m, ids in zip(prompts, data.loser_ids)]
    return prompts, winners, losers


def lm_iterates_and_batches(seen) -> tuple[list, list]:
    """The LM column's scores of π_0 … π_T and its training batches, from a one-stage rule's recording."""
    events = seen.events[1:]  # the first scoring built the game
    scores = [event[1] for event in events if event[0] == "score"]
    batches = [event[2] for event in events if event[0] == "train"]
    assert [event[0] for event in events] == ["score", "train"] * len(batches) + ["score"]
    return scores, batches


def test_lm_column_reference_moves_to_the_lm_at_each_advance(model_dir, monkeypatch, tmp_path):
    """With reference_every = M = 2 the loss's log π_ref of a pair is π_ref's for t = M − 1 and the LM's own log π
    of the candidates at iteration M for t = M and t = M + 1 (the bridge's loop reads the checkpoint of π_M),
    while its ``previous`` stays log π_t; the metrics' π_ref is the original one."""
    raw = tiny_spec(model_dir)
    raw["iterations"] = 4
    raw["rule"] = [{"label": "c", "name": "comal", "tau": 0.1, "reference_every": 2}]
    spec = parse_spec(raw)
    seen = Recorded(monkeypatch)
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    game = seen.game
    scores, batches = lm_iterates_and_batches(seen)
    assert len(batches) == 4 and not np.allclose(scores[2], game.reference_logps, atol=1e-3)
    for t, data in enumerate(batches):
        prompts, winners, losers = pair_indices(game, data)
        anchor = game.reference_logps if t < 2 else scores[2]
        for column, chosen in (("w", winners), ("l", losers)):
            np.testing.assert_allclose(
                data.values[f"reference_{column}"].numpy(), anchor[prompts, chosen], rtol=0, atol=1e-9, err_msg=t
            )
            np.testing.assert_allclose(
                data.values[f"previous_{column}"].numpy(), scores[t][prompts, chosen], rtol=0, atol=1e-9
            )
    # the comparison's π_ref is the game's: at t = 0 every engine is at it
    first = result.per_prompt[result.per_prompt["iteration"] == 0]
    assert first[["tv_lm_reference", "tv_exact_reference", "tv_sampled_reference"]].abs().max().max() < 1e-9
    np.testing.assert_allclose(result.trajectories["c"]["lm"], np.exp(restrict(np.stack(scores))), atol=1e-12)


def test_mnpo_with_reference_every_restarts_its_history_at_an_advance(model_dir, monkeypatch, tmp_path):
    """MNPO (history 2) with reference_every = 2, end to end: the LM's ``previous`` is ½ log π_t + ½ log π_{t−1}
    except at the advance t = 2, where the population restarts from π_2 (log π_2 alone), and its reference is
    π_2's from t = 2 on; the exact and sampled columns are the advancing rule's (they leave the fixed-reference
    rule's path after t = 2, exactly as far as t = 2)."""
    raw = tiny_spec(model_dir)
    raw["iterations"] = 4
    raw["rule"] = [{"label": "m", "name": "mnpo", "eta": 0.5, "tau": 0.1, "history": 2, "reference_every": 2}]
    spec = parse_spec(raw)
    seen = Recorded(monkeypatch)
    result = run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    game = seen.game
    scores, batches = lm_iterates_and_batches(seen)
    previous = [scores[0], 0.5 * (scores[1] + scores[0]), scores[2], 0.5 * (scores[3] + scores[2])]
    references = [game.reference_logps, game.reference_logps, scores[2], scores[2]]
    for t, data in enumerate(batches):
        prompts, winners, _ = pair_indices(game, data)
        values = data.values
        np.testing.assert_allclose(values["previous_w"].numpy(), previous[t][prompts, winners], rtol=0, atol=1e-9)
        np.testing.assert_allclose(values["reference_w"].numpy(), references[t][prompts, winners], rtol=0, atol=1e-9)
    assert np.abs(scores[2] - scores[1]).max() > 1e-3  # the restart is visible
    runs = result.trajectories["m"]
    for engine in ("exact", "sampled"):
        assert np.all(np.isfinite(runs[engine])) and np.allclose(runs[engine].sum(-1), 1.0)
    fixed_rule = build_bridge_rule("mnpo", {"eta": 0.5, "tau": 0.1, "history": 2})
    moving_rule = spec.rules[0].rule
    fixed = exact_trajectory(fixed_rule, game, 4, 0.1)
    np.testing.assert_allclose(runs["exact"], exact_trajectory(moving_rule, game, 4, 0.1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fixed[:3], runs["exact"][:3], rtol=0, atol=1e-12)
    assert total_variation(fixed[3:], runs["exact"][3:]).max() > 1e-4
    sampled_fixed = sampled_trajectory(fixed_rule, game, 4, 0.1, 6 * 8, spec.prediction, spec.seed)
    np.testing.assert_allclose(sampled_fixed[:3], runs["sampled"][:3], rtol=0, atol=1e-12)
    assert total_variation(sampled_fixed[3:], runs["sampled"][3:]).max() > 1e-4


def test_nash_md_opponent_mixes_the_moved_reference(model_dir, monkeypatch, tmp_path):
    """Nash-MD with reference_every = 1: its opponent mixes π_t with π_ref at t = 0 and with the moved reference,
    π_t itself, at t = 1 (the bridge's loop samples the opponent with the checkpoint of the last advance)."""
    raw = tiny_spec(model_dir)
    raw["rule"] = [{"label": "n", "name": "nash_md", "eta": 0.5, "tau": 0.1, "reference_every": 1}]
    spec = parse_spec(raw)
    asked = []
    opponent = prediction.BridgeRule.opponent

    def recording(self):
        mix = opponent.fget(self)
        return lambda log_policy, log_reference: (
            asked.append((log_policy, log_reference)) or mix(log_policy, log_reference)
        )

    monkeypatch.setattr(prediction.BridgeRule, "opponent", property(recording))
    seen = Recorded(monkeypatch)
    run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    assert len(asked) == 2 * 6 * 8
    game = seen.game
    for index, (log_policy, log_reference) in enumerate(asked):
        t, m = divmod(index, 6 * 8)[0], divmod(index, 8)[0] % 6
        expected = game.log_reference[m] if t == 0 else log_policy
        np.testing.assert_allclose(log_reference, expected, rtol=0, atol=1e-12)
    assert np.abs(asked[-1][0] - game.log_reference[5]).max() > 1e-3  # π_1 ≠ π_ref: the two cases differ


def test_optimistic_restarts_at_an_advance_without_its_carried_pairs(model_dir, monkeypatch, tmp_path):
    """Optimistic MD with reference_every = 1: at the advance t = 1 the rule restarts from π_1, so its leading
    stage draws fresh pairs from π_1 instead of training on those its second stage drew at t = 0 (the bridge's
    loop and sampled mode alike), and both stages take π_1 as the reference."""
    raw = tiny_spec(model_dir)
    raw["rule"] = [{"label": "o", "name": "optimistic", "eta": 2.0, "tau": 0.1, "reference_every": 1}]
    spec = parse_spec(raw)
    seen = Recorded(monkeypatch)
    run_prediction(spec, open_session(spec, tmp_path, progress=False), None, progress=False)
    events = seen.events[1:]
    assert [event[0] for event in events] == ["score", "train", "score", "train"] * 2 + ["score"]
    carried, leading = events[3][2], events[5][2]
    assert leading.winner_ids != carried.winner_ids or leading.loser_ids != carried.loser_ids
    start = events[4][1]  # the scores of π_1
    for data in (events[5][2], events[7][2]):
        prompts, winners, _ = pair_indices(seen.game, data)
        np.testing.assert_allclose(data.values["reference_w"].numpy(), start[prompts, winners], rtol=0, atol=1e-9)
