"""Nash-MD's opponent in the bridge: the token-level geometric mixture π^μ ∝ π^{1−ητ}·π_ref^{ητ}.

* Bandit LM (one-token responses, where the token-level mixture is the mixture): the logits processor's
  distribution equals ``sim.rules.nash_md``'s normalised opponent to 1e-12, and a bridge iteration on the
  opponent's pairs (y ~ π_t, y′ ~ the processor's distribution, drawn with sampled mode's keys;
  ``both_from_policy = 0``) equals sampled mode's Nash-MD iteration to 1e-6.
* Tiny Llamas (two tokens): every generation step samples from softmax[(1 − β)·log π + β·log π_ref]
  renormalised per token (checked against full forwards of both models, so π_ref's key/value cache is
  checked too); the last token's conditional is that of the sequence-level mixture and the first token's is
  not — the per-token normalisation the docstring states.
* The loop: one pair and one query per prompt, and the reference's copy of the model is released.
"""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from bridge_games import bandit_pair_tensors, matched_settings, random_game
from test_bridge_exact_sampling import _recording_generate

from bandits.oracles import mixture_opponent_pairs
from llm_bridge import loop as bridge_loop
from llm_bridge.bandit_lm import PROMPT, BanditLM
from llm_bridge.generation import GeometricMixture, GeometricMixtureProcessor, SamplingSpec, generate
from llm_bridge.models import load_causal_lm, load_tokenizer
from llm_bridge.rules import build_bridge_rule, surrogate_note
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import make_optimizer, train_on_pairs
from sim.game import normalize
from sim.rules import nash_md
from sim.sampled.engine import build_iteration
from sim.sampled.problem import problem_from_game

torch.set_num_threads(1)

K = 6
PAD = K
PARAMETERS = {"eta": 2.0, "tau": 0.25}  # mixture exponent β = ητ = 0.5


def _bandit_mixture(model, reference_model, rule):
    """log q over the K one-token responses, from the bridge's processor."""
    processor = GeometricMixtureProcessor(GeometricMixture(reference_model, rule.opponent), torch.ones((1, 1)))
    with torch.no_grad():
        scores = model(torch.tensor([PROMPT])).logits[:, -1, :]
        return processor(torch.tensor([PROMPT]), scores)[0]


def test_the_processor_gives_sims_geometric_mixture_on_the_bandit_lm():
    game = random_game(2, False, K, random_initial=True)
    model, reference_model = BanditLM(np.asarray(game.log_initial)), BanditLM(np.asarray(game.log_reference))
    rule = build_bridge_rule("nash_md", dict(PARAMETERS))
    got = _bandit_mixture(model, reference_model, rule)
    expected = normalize(nash_md.opponent(game.log_initial, game.log_reference, PARAMETERS))
    np.testing.assert_allclose(got.numpy(), np.asarray(expected), rtol=0, atol=1e-12)
    by_hand = 0.5 * np.asarray(game.log_initial) + 0.5 * np.asarray(game.log_reference)
    np.testing.assert_allclose(got.numpy(), by_hand - np.logaddexp.reduce(by_hand), rtol=0, atol=1e-12)
    assert np.max(np.abs(got.numpy() - np.asarray(normalize(game.log_initial)))) > 0.05  # not π_t


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_bridge_nash_md_iterations_equal_sims_sampled_mode(optimizer):
    game = random_game(7, False, K, random_initial=True)  # π_0 ≠ π_ref: the mixture is not π_t
    problem = problem_from_game(game, np.exp(np.asarray(game.log_reference)))
    pairs, steps, lr = 40, 20, 0.02
    settings, spec = matched_settings(optimizer, pairs, steps, lr)
    init, iteration = build_iteration("nash_md", PARAMETERS, settings)
    key = jax.random.PRNGKey(11)
    state = init(jax.random.PRNGKey(0), problem)
    start = np.asarray(state.params[0])
    model, reference_model = BanditLM(start), BanditLM(np.asarray(game.log_reference))
    rule = build_bridge_rule("nash_md", dict(PARAMETERS))
    for t in range(2):
        key_data, _ = jax.random.split(jax.random.fold_in(key, state.step))
        opponent = _bandit_mixture(model, reference_model, rule)  # the bridge's opponent distribution
        batch, _ = mixture_opponent_pairs(
            key_data,
            jnp.asarray(model.log_policy().numpy())[None],
            jnp.asarray(opponent.numpy())[None],
            problem.preference,
            problem.context_probs,
            pairs,
        )
        state, _ = iteration(state, problem, key)
        data = bandit_pair_tensors(model, reference_model, batch, PAD)  # y first, the opponent's y′ second
        train_on_pairs(model, make_optimizer(model.parameters(), spec), data, rule.at_step(t), spec, PAD, seed=t)
        np.testing.assert_allclose(
            model.logits.detach().numpy(), np.asarray(state.params[0]), atol=1e-6, rtol=0, err_msg=f"iteration {t + 1}"
        )
    assert np.max(np.abs(np.asarray(state.log_policy[0]) - np.asarray(normalize(start)))) > 1e-2


# --------------------------------------------------------------------------------------------- tiny Llamas


@pytest.fixture(scope="module")
def two_llamas(tmp_path_factory):
    """A policy and a reference: tiny Llamas of different seeds with peaked next-token distributions."""
    models = []
    for seed in (0, 5):
        directory = build_tiny_model(tmp_path_factory.mktemp("models") / f"llama{seed}", "llama", seed=seed)
        model = load_causal_lm(str(directory), "float64").eval()
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(40.0)
        models.append(model)
    return models[0], models[1], load_tokenizer(str(directory))


def _full_logits(model, prompt, responses):
    """Next-token logits after prompt + each response prefix, by one plain forward per sequence."""
    rows = []
    for response in responses:
        ids = torch.tensor([list(prompt) + list(response)])
        rows.append(model(input_ids=ids).logits[0, -1])
    return torch.stack(rows)


def test_generation_samples_the_per_token_mixture_and_the_last_token_matches_the_sequence_mixture(two_llamas):
    policy, reference, tokenizer = two_llamas
    rule = build_bridge_rule("nash_md", dict(PARAMETERS))
    beta = PARAMETERS["eta"] * PARAMETERS["tau"]
    prompts = [tokenizer(p)["input_ids"] for p in ("tell me a story", "the movie was", "i love this wonderful")]
    record = []
    _recording_generate(policy, record)
    try:
        out = generate(
            policy,
            tokenizer,
            prompts,
            8,
            SamplingSpec(max_new_tokens=2, batch_size=8),
            seed=0,
            progress=False,
            mixture=GeometricMixture(reference, rule.opponent),
        )
    finally:
        del policy.generate  # the model's own method again
    with torch.no_grad():
        for i, output in enumerate(record):  # one batch per prompt (8 samples, batch size 8)
            width = output.sequences.shape[1] - len(output.scores)
            for step, (scores, logits) in enumerate(zip(output.scores, output.logits)):
                prefixes = [row[width : width + step].tolist() for row in output.sequences]
                log_ref = torch.log_softmax(_full_logits(reference, prompts[i], prefixes).double(), -1)
                log_pi = torch.log_softmax(logits.double(), -1)
                expected = torch.log_softmax((1 - beta) * log_pi + beta * log_ref, -1)
                torch.testing.assert_close(torch.log_softmax(scores.double(), -1), expected, rtol=0, atol=1e-5)
            assert all(len(r) <= 2 for r in out.response_ids[i])

        # per-token normalisation: over all responses of ≤ 2 tokens of one prompt
        prompt, eos = prompts[0], tokenizer.eos_token_id
        vocabulary = policy.config.vocab_size
        first_pi = torch.log_softmax(_full_logits(policy, prompt, [[]])[0].double(), -1)
        first_ref = torch.log_softmax(_full_logits(reference, prompt, [[]])[0].double(), -1)
        seconds = [[a] for a in range(vocabulary)]
        second_pi = torch.log_softmax(_full_logits(policy, prompt, seconds).double(), -1)
        second_ref = torch.log_softmax(_full_logits(reference, prompt, seconds).double(), -1)
        q_first = torch.log_softmax((1 - beta) * first_pi + beta * first_ref, -1)
        q_second = torch.log_softmax((1 - beta) * second_pi + beta * second_ref, -1)
        # sequence-level weights π(y)^{1−β}π_ref(y)^β of y = (a, b), and of y = (EOS) which ends at one token
        sequence = (1 - beta) * (first_pi[:, None] + second_pi) + beta * (first_ref[:, None] + second_ref)
        sequence[eos] = -torch.inf
        ends = (1 - beta) * first_pi[eos] + beta * first_ref[eos]
        log_z = torch.logaddexp(torch.logsumexp(sequence.flatten(), 0), ends)
        marginal = torch.logsumexp(sequence, 1) - log_z
        marginal[eos] = ends - log_z
        rows = [a for a in range(vocabulary) if a != eos]
        conditional = sequence[rows] - torch.logsumexp(sequence[rows], 1, keepdim=True)
        torch.testing.assert_close(conditional, q_second[rows], rtol=0, atol=1e-10)  # the last token: equal
        assert float((marginal - q_first).abs().max()) > 0.05  # the first token: per-token ≠ sequence-level
        total = torch.logaddexp(torch.logsumexp((q_first[rows, None] + q_second[rows]).flatten(), 0), q_first[eos])
        torch.testing.assert_close(total, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-10)


def test_the_loop_draws_one_opponent_pair_per_prompt_and_releases_the_reference_copy(tmp_path, monkeypatch):
    directory = build_tiny_model(tmp_path / "llama", "llama", seed=0)
    copies = []
    real = bridge_loop.GeometricMixture

    def recording(reference, combine):
        copies.append(weakref.ref(reference))
        return real(reference, combine)

    monkeypatch.setattr(bridge_loop, "GeometricMixture", recording)
    raw = {
        "iterations": 2,
        "seed": 3,
        "model": {"path": str(directory)},
        "prompts": {
            "train": ["tell me a story", "the movie was", "i love this"],
            "heldout": ["what a"],
            "per_iteration": 3,
        },
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-3, "batch_size": 3, "micro_batch_size": 3},
        "rule": [{"name": "nash_md", **PARAMETERS}],
    }
    table = bridge_loop.run_bridge(parse_spec(raw), tmp_path / "run", progress=False)
    gc.collect()
    assert len(copies) == 2 and all(ref() is None for ref in copies)
    trained = table[table["iteration"] > 0]
    assert (trained["pairs"] == 3).all() and (trained["oracle_queries"] == 3).all()


def test_nash_md_says_its_loss_is_a_step_surrogate_and_other_rules_say_nothing():
    """The definition's PairData.minimiser reaches the bridge: a training run prints the note for Nash-MD (what
    minimising its policy-gradient surrogate for the epochs reaches), and for no rule whose loss is an argmin."""
    note = surrogate_note("x", build_bridge_rule("nash_md", {"eta": 0.5, "tau": 0.1}))
    assert note.startswith("rule 'x': nash_md's loss is a gradient step's surrogate, not an argmin")
    assert "regularised best response to the mixture" in note and "[training] epochs" in note
    for name, given in (("inpo", {"eta": 1.0}), ("dpo", {"beta": 0.1}), ("extragradient", {"eta": 1.0})):
        assert surrogate_note("y", build_bridge_rule(name, given)) is None
