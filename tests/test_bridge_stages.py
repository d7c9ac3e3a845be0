"""Extragradient (EGPO) and optimistic MD (ONPO) in the LLM bridge: the definition's two stages per iteration.

* On the bandit LM, :func:`llm_bridge.stages.run_stages` with the bridge's trainer equals ``sim``'s sampled
  engine iteration for iteration (to 1e-6): the half step trains from θ_t on pairs from π_t, the full step
  draws its pairs from the half-step policy the model holds and trains from θ_t again; optimistic MD trains
  its leading step on the pairs carried from the previous iteration (at t = 0: drawn from π_0) and keeps
  the main step's fresh pairs.  Pairs are re-drawn with sim's key derivation from the policy the bridge's
  model holds at the time of the draw, so a draw from the wrong policy changes the pairs.
* Through the loop on a tiny Llama: the oracle queries per iteration add up to sampled mode's ``queries``
  column for the same number of pairs per draw, the copy of θ_t read back for each stage is released, and
  an interrupted optimistic run resumes (with its carried pairs) to the uninterrupted result.
"""

import gc
import json
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from bridge_games import bandit_pair_tensors, matched_settings, random_game

import sim
from bandits.errors import PrefsimError
from bandits.oracles import make_pairs
from llm_bridge import loop as bridge_loop
from llm_bridge.bandit_lm import BanditLM
from llm_bridge.models import read_weights
from llm_bridge.rules import build_bridge_rule
from llm_bridge.spec import parse_spec
from llm_bridge.stages import run_stages
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import make_optimizer, train_on_pairs
from sim.sampled.engine import CARRY_KEY, build_iteration
from sim.sampled.problem import problem_from_game

torch.set_num_threads(1)

K = 6
PAD = K


def _bridge_iteration(model, reference_model, rule, spec, problem, settings, key_data, key_init, carried, t):
    """One bridge iteration of ``rule`` on the bandit LM, each stage's pairs drawn as sim draws them."""
    pairs = settings.pairs_per_iteration
    theta_t = model.logits.detach().clone()
    sources = []

    def draw(index, initial):
        key = jax.random.fold_in(key_init, CARRY_KEY) if initial else key_data
        if index > 0:
            key = jax.random.fold_in(key_data, index)
        source = model.log_policy()  # the policy the model holds when the stage draws
        sources.append(source)
        batch, queries = make_pairs(
            "lambda_p",
            key,
            jnp.asarray(source.numpy())[None],
            problem.preference,
            problem.rewards,
            problem.context_probs,
            pairs,
            settings.candidates,
            settings.self_comparison,
        )
        return batch, queries

    def restore():
        with torch.no_grad():
            model.logits.copy_(theta_t)

    def train(index, batch):
        data = bandit_pair_tensors(model, reference_model, batch, PAD)
        optimizer = make_optimizer(model.parameters(), spec)
        return train_on_pairs(model, optimizer, data, rule.at_step(t), spec, PAD, seed=t, progress=False)

    return run_stages(rule.stages, draw, restore, train, carried), sources, theta_t


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("name", ["extragradient", "optimistic"])
def test_two_stage_bridge_iterations_equal_sims_sampled_mode(name, optimizer):
    parameters = {"eta": 0.8, "tau": 0.5}
    game = random_game(7, False, K, random_initial=False)
    problem = problem_from_game(game, np.exp(np.asarray(game.log_reference)))
    # lr 0.02: at 0.05 Adam oscillates on the full step's loss and amplifies the last-digit differences of
    # torch's and optax's arithmetic to 1e-5 in 20 steps (the half step and the pairs still agree to 1e-15)
    pairs, steps, lr = 40, 20, 0.02
    settings, spec = matched_settings(optimizer, pairs, steps, lr)
    init, iteration = build_iteration(name, parameters, settings)
    key, key_init = jax.random.PRNGKey(11), jax.random.PRNGKey(0)
    state = init(key_init, problem)

    model, reference_model = BanditLM(np.asarray(state.params[0])), BanditLM(np.asarray(game.log_reference))
    rule = build_bridge_rule(name, dict(parameters))
    assert [(s.pairs_from, s.carry) for s in rule.stages] == (
        [("iterate", False), ("previous_stage", False)]
        if name == "extragradient"
        else [("carried", False), ("previous_stage", True)]
    )
    carried, queries = None, []
    for t in range(3):
        key_data, _ = jax.random.split(jax.random.fold_in(key, state.step))
        outcome, sources, theta_t = _bridge_iteration(
            model, reference_model, rule, spec, problem, settings, key_data, key_init, carried, t
        )
        state, _ = iteration(state, problem, key)
        carried = outcome.carried
        queries.append(outcome.queries)

        # the second stage drew from the first stage's output, not from π_t
        log_t = torch.log_softmax(theta_t, -1)
        assert float((sources[-1] - log_t).abs().max()) > 1e-3
        if name == "extragradient" or t == 0:
            torch.testing.assert_close(sources[0], log_t, rtol=0, atol=0)
        np.testing.assert_allclose(
            model.logits.detach().numpy(), np.asarray(state.params[0]), atol=1e-6, rtol=0, err_msg=f"{name} it {t + 1}"
        )
        np.testing.assert_allclose(model.log_policy().numpy(), np.asarray(state.log_policy[0]), atol=1e-6, rtol=0)
        if name == "optimistic":  # the kept pairs are sim's carried pairs
            np.testing.assert_array_equal(np.asarray(carried.first), np.asarray(state.carried.batch.first))
    # sampled mode's count: two fresh draws per extragradient iteration; one per optimistic iteration plus the
    # π_0 draw bought before the first update
    assert queries == ([2 * pairs] * 3 if name == "extragradient" else [2 * pairs, pairs, pairs])
    assert np.max(np.abs(np.asarray(state.log_policy[0]) - np.asarray(game.log_reference))) > 1e-2


def test_the_bridge_refuses_the_uniform_estimator():
    with pytest.raises(PrefsimError, match="uniform_opponent.*sampled mode only"):
        build_bridge_rule("extragradient", {"estimator": "uniform"})
    rule = build_bridge_rule("optimistic", {"eta": 0.5})
    assert rule.pairs == "lambda_p" and rule.parameters["estimator"] == "ipo"


# --------------------------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


def _raw(model_dir, rules, iterations=2):
    return {
        "iterations": iterations,
        "seed": 3,
        "model": {"path": str(model_dir)},
        "prompts": {
            "train": ["tell me a story", "write a review of the film", "the movie was", "i love this"],
            "heldout": ["the weather is", "what a"],
            "per_iteration": 4,
        },
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-3, "batch_size": 4, "micro_batch_size": 2, "epochs": 2},
        "rule": rules,
    }


def test_loop_runs_both_stages_counts_queries_as_sampled_mode_and_releases_the_copy(tiny_llama, tmp_path, monkeypatch):
    read = []
    real_read = bridge_loop.read_weights

    def recording(path):
        state = real_read(path)
        read.extend(weakref.ref(tensor) for tensor in state.values())
        return state

    monkeypatch.setattr(bridge_loop, "read_weights", recording)
    rules = [{"name": "extragradient", "eta": 0.5}, {"name": "optimistic", "eta": 0.5}]
    out = tmp_path / "run"
    table = bridge_loop.run_bridge(parse_spec(_raw(tiny_llama, rules, iterations=3)), out, progress=False)
    gc.collect()
    assert read and all(ref() is None for ref in read)  # every θ_t read back for a stage was released

    prompts = 4  # one λ_p pair (one query) per prompt and draw
    for name in ("extragradient", "optimistic"):
        rows = table[table["rule"] == name].sort_values("iteration")
        sampled = sim.run(
            {
                "iterations": 3,
                "seeds": 1,
                "record_every": 1,
                "game": {"kind": "random", "arms": 3, "tau": 0.5},
                "rule": [{"name": name, "eta": 0.5}],
                "run": {"mode": "sampled", "pairs_per_iteration": prompts, "inner_steps": 2},
            }
        )
        assert list(rows["oracle_queries"].cumsum()) == list(sampled.sort_values("iteration")["queries"])
        trained = rows[rows["iteration"] > 0]
        assert (trained["pairs"] == 2 * prompts).all() and (trained["optimizer_steps"] == 2 * 2).all()
        for t in (1, 2, 3):
            directory = out / name / f"iter_{t:03d}"
            first = [json.loads(line) for line in (directory / "pairs.jsonl").read_text().splitlines()]
            second = [json.loads(line) for line in (directory / "stage_1" / "pairs.jsonl").read_text().splitlines()]
            assert len(first) == len(second) == prompts
            if name == "optimistic" and t > 1:  # the leading step trains on the pairs the last main step drew
                before = out / name / f"iter_{t - 1:03d}" / "stage_1" / "pairs.jsonl"
                assert [r["chosen"] for r in first] == [
                    json.loads(x)["chosen"] for x in before.read_text().splitlines()
                ]
    first = read_weights(out / "extragradient" / "iter_001" / "policy.safetensors")
    reference = read_weights(out / "reference" / "policy.safetensors")
    assert any(not torch.equal(first[k], reference[k]) for k in first)


def test_optimistic_restarts_its_leading_step_at_a_reference_advance(tiny_llama, tmp_path):
    """reference_every = 2: the update from t = 2 restarts the rule from π_t (sim.rules.reference), so its
    leading step trains on pairs drawn anew from π_t, not on those the last main step drew; the extra
    draw is counted as sampled mode counts it."""
    rules = [{"name": "optimistic", "eta": 0.5, "reference_every": 2}]
    out = tmp_path / "run"
    table = bridge_loop.run_bridge(parse_spec(_raw(tiny_llama, rules, iterations=3)), out, progress=False)
    prompts = 4
    sampled = sim.run(
        {
            "iterations": 3,
            "seeds": 1,
            "record_every": 1,
            "game": {"kind": "random", "arms": 3, "tau": 0.5},
            "rule": rules,
            "run": {"mode": "sampled", "pairs_per_iteration": prompts, "inner_steps": 2},
        }
    )
    queries = list(table.sort_values("iteration")["oracle_queries"].cumsum())
    assert queries == list(sampled.sort_values("iteration")["queries"]) == [0, 2 * prompts, 3 * prompts, 5 * prompts]

    def chosen(path):
        return [json.loads(line)["chosen"] for line in path.read_text().splitlines()]

    # t = 1 (no advance) carries iteration 1's main-step pairs; t = 2 (an advance) does not carry
    assert chosen(out / "optimistic" / "iter_002" / "pairs.jsonl") == chosen(
        out / "optimistic" / "iter_001" / "stage_1" / "pairs.jsonl"
    )
    assert chosen(out / "optimistic" / "iter_003" / "pairs.jsonl") != chosen(
        out / "optimistic" / "iter_002" / "stage_1" / "pairs.jsonl"
    )


def test_interrupted_optimistic_run_resumes_with_its_carried_pairs(tiny_llama, tmp_path, monkeypatch):
    spec = parse_spec(_raw(tiny_llama, [{"name": "optimistic", "eta": 0.5}], iterations=3))
    full = bridge_loop.run_bridge(spec, tmp_path / "full", progress=False)
    real_update = bridge_loop._update

    def interrupted(session, entry, t):
        if t == 2:
            raise KeyboardInterrupt
        return real_update(session, entry, t)

    monkeypatch.setattr(bridge_loop, "_update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bridge_loop.run_bridge(spec, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(bridge_loop, "_update", real_update)
    resumed = bridge_loop.run_bridge(spec, tmp_path / "resumed", resume=True, progress=False)
    columns = ["iteration", "win_rate", "kl_reference", "loss_first", "loss_last", "oracle_queries"]
    np.testing.assert_allclose(resumed[columns].to_numpy(float), full[columns].to_numpy(float), rtol=0, atol=1e-6)
    final = read_weights(tmp_path / "full" / "optimistic" / "iter_003" / "policy.safetensors")
    again = read_weights(tmp_path / "resumed" / "optimistic" / "iter_003" / "policy.safetensors")
    assert all(torch.equal(final[k], again[k]) for k in final)
    (tmp_path / "resumed" / "optimistic" / "iter_002" / "carried.json").unlink()
    (tmp_path / "resumed" / "optimistic" / "state.json").write_text(json.dumps({"finished": 2}))
    with pytest.raises(PrefsimError, match="carried.json.*missing"):
        bridge_loop.run_bridge(spec, tmp_path / "resumed", resume=True, progress=False)
