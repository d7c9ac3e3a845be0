"""Oracles behind one interface and the pair schemes (iid / best_worst / tournament / population)."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging as transformers_logging

from bandits.errors import PrefsimError
from llm_bridge.oracles import BradleyTerryOracle, CallableOracle, RewardModelOracle, build_oracle, vader_oracle
from llm_bridge.pairs import build_pairs, population_pairs
from llm_bridge.tiny import build_tiny_model, build_tiny_reward_model

torch.set_num_threads(1)


def _length_rewards(prompts, responses):
    return [float(len(r)) for r in responses]


def test_bradley_terry_oracle_is_sigmoid_of_reward_margin_and_counts_queries():
    oracle = BradleyTerryOracle(_length_rewards, scale=2.0)
    p = oracle.probabilities(["x", "x"], ["aaaa", "a"], ["a", "aaa"])
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-np.array([3.0, -2.0]) / 2.0)), rtol=1e-12)
    assert oracle.queries == 2
    np.testing.assert_allclose(oracle.rewards(["x"], ["abc"]), [3.0])


def test_callable_oracle_and_out_of_range_probabilities():
    oracle = CallableOracle(lambda x, a, b: 0.9 if a > b else 0.1)
    np.testing.assert_allclose(oracle.probabilities(["x"], ["b"], ["a"]), [0.9])
    assert oracle.rewards(["x"], ["a"]) is None
    bad = CallableOracle(lambda x, a, b: 1.5, name="bad")
    with pytest.raises(PrefsimError, match="bad.*\\[0, 1\\]"):
        bad.probabilities(["x"], ["a"], ["b"])


def test_vader_oracle_prefers_positive_text_offline():
    oracle = vader_oracle(scale=0.25)
    p = oracle.probabilities(["How was it?"], ["It was wonderful, I loved it!"], ["It was awful and I hated it."])
    assert p[0] > 0.99
    assert oracle.rewards(["q"], ["great"])[0] > 0 > oracle.rewards(["q"], ["terrible"])[0]


def test_reward_model_oracle_from_a_local_sequence_classifier(tmp_path):
    path = build_tiny_reward_model(tmp_path / "rm")
    oracle = build_oracle("reward_model", path=str(path), scale=1.0)
    assert isinstance(oracle, RewardModelOracle)
    rewards = oracle.rewards(["the movie was ", "the movie was "], ["good", "bad"])
    p = oracle.probabilities(["the movie was "], ["good"], ["bad"])
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-(rewards[0] - rewards[1]))), rtol=1e-10)
    assert rewards[0] != rewards[1]
    with pytest.raises(PrefsimError, match="oracle.path"):
        build_oracle("reward_model", path=str(tmp_path / "missing"))
    with pytest.raises(PrefsimError, match="module:function"):
        build_oracle("reward_function", function="no_colon")


def test_a_causal_lm_given_as_reward_model_is_refused_for_its_missing_classification_head(tmp_path, monkeypatch):
    # transformers would load it with a randomly initialised score head: random rewards, no error
    path = build_tiny_model(tmp_path / "lm", "llama", seed=0)
    verbosity, load, seen = transformers_logging.get_verbosity(), AutoModelForSequenceClassification.from_pretrained, []

    def load_and_record_verbosity(*args, **kwargs):
        seen.append(transformers_logging.get_verbosity())
        return load(*args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", load_and_record_verbosity)
    with pytest.raises(PrefsimError) as caught:
        build_oracle("reward_model", path=str(path))
    # only our message: transformers' load report (MISSING score.weight …) is held back, its verbosity restored
    assert seen == [transformers_logging.ERROR] and transformers_logging.get_verbosity() == verbosity
    message = str(caught.value)
    assert message.startswith(f"oracle.path {str(path)!r} is not a trained reward model: its checkpoint")
    assert (
        "(LlamaForCausalLM) lacks weights that a sequence classifier needs (score.weight), which transformers"
        in message
    )


def _raises_value_error(prompts, responses):
    raise ValueError("no rewards\ntoday")


def test_a_user_function_that_raises_is_reported_with_the_call_it_got():
    reward = build_oracle("reward_function", function="os.path:join", scale=1.0)  # takes strings, gets lists
    with pytest.raises(PrefsimError) as caught:
        reward.probabilities(["x"], ["a"], ["b"])
    assert str(caught.value) == (
        "oracle.function 'os.path:join' failed when called as f(prompts, responses) with two lists of strings, "
        "expecting one reward per response: TypeError: expected str, bytes or os.PathLike object, not list. Fix "
        "the function or point oracle.function at one that takes these arguments."
    )
    assert isinstance(caught.value.__cause__, TypeError)
    preference = build_oracle("preference_function", function=f"{__name__}:_raises_value_error")
    with pytest.raises(PrefsimError, match=r"called as f\(prompt, response, response′\) with three strings") as caught:
        preference.probabilities(["x"], ["a"], ["b"])
    assert "TypeError: _raises_value_error() takes 2 positional arguments but 3 were given" in str(caught.value)
    raising = build_oracle("reward_function", function=f"{__name__}:_raises_value_error")
    with pytest.raises(PrefsimError, match=r"ValueError: no rewards today\. Fix the function") as caught:
        raising.rewards(["x"], ["a"])
    assert isinstance(caught.value.__cause__, ValueError)
    # what a function returns is checked as well: a string is not a list of rewards, nor a probability
    with pytest.raises(PrefsimError, match="must return one finite number per response .*got str 'a'"):
        BradleyTerryOracle(lambda prompts, responses: "a", name="texts").rewards(["x"], ["y"])
    with pytest.raises(PrefsimError, match=r"must return one probability in \[0, 1\] per pair .*got str 'yes'"):
        CallableOracle(lambda x, a, b: "yes", name="words").probabilities(["x"], ["a"], ["b"])


def test_iid_pairs_follow_the_bernoulli_label():
    oracle = CallableOracle(lambda x, a, b: 0.8 if a == "good" else 0.2)
    rng = np.random.default_rng(0)
    pairs = build_pairs("iid", ["x"] * 4000, [["good", "bad"]] * 4000, oracle, rng)
    assert len(pairs) == 4000 and oracle.queries == 4000
    first_wins = np.mean([p.winner == 0 for p in pairs])
    assert abs(first_wins - 0.8) < 0.03  # 3.2 standard errors
    for p in pairs[:50]:
        assert p.preference == pytest.approx(0.8 if p.winner == 0 else 0.2)
        assert p.win_rate_w + p.win_rate_l == pytest.approx(1.0)


def test_best_worst_picks_the_extremes_of_the_estimated_win_rate():
    oracle = BradleyTerryOracle(_length_rewards)
    pairs = build_pairs("best_worst", ["x"], [["aa", "aaaa", "a", "aaa"]], oracle, np.random.default_rng(0))
    assert (pairs[0].winner, pairs[0].loser) == (1, 2) and oracle.queries == 6
    assert pairs[0].win_rate_w > 0.5 > pairs[0].win_rate_l


def test_tournament_uses_3k_over_2_minus_1_queries_and_keeps_only_won_finals():
    k = 8
    certain = BradleyTerryOracle(_length_rewards, scale=1e-3)  # the longer response always wins
    responses = ["a" * (i + 1) for i in range(k)]
    pairs = build_pairs("tournament", ["x"] * 20, [responses] * 20, certain, np.random.default_rng(1))
    assert certain.queries == 20 * (3 * k // 2 - 1)
    assert all((p.winner, p.loser) == (k - 1, 0) for p in pairs) and len(pairs) == 20
    coin = CallableOracle(lambda x, a, b: 0.5)
    kept = build_pairs("tournament", ["x"] * 400, [responses] * 400, coin, np.random.default_rng(2))
    assert 150 < len(kept) < 250  # the final is a coin flip: about half the pairs are dropped


def test_population_pairs_weights_are_the_iid_distribution():
    rng = np.random.default_rng(3)
    policy = rng.dirichlet(np.ones(4))
    skew = rng.normal(size=(4, 4))
    preference = 0.5 + 0.5 * np.tanh(skew - skew.T)
    pairs = population_pairs(policy, preference)
    assert len(pairs) == 16
    assert sum(p.weight for p in pairs) == pytest.approx(0.5)  # π'Pπ = ½
    by = {(p.winner, p.loser): p for p in pairs}
    assert by[(1, 2)].weight == pytest.approx(policy[1] * policy[2] * preference[1, 2])
    assert by[(1, 2)].win_rate_w == pytest.approx((preference @ policy)[1])
