"""Every draw of the bridge has a random stream of its own (llm_bridge.seeds): no two draws share the seeds torch's
generator gets, whatever the spec seed and iteration.

The seeds used to be derived arithmetically ((seed·1000 + t + 1)·16 + stream, ×101 for evaluation, seed·1 000 003 +
batch per generation batch, taken mod 2⁶⁴), which made unrelated draws share their seeds.  These tests record the
seeds ``torch.manual_seed`` receives while the loop draws on a tiny model.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

# Tiny models: one intra-op thread is far faster than torch's thread pool on small CI machines.
torch.set_num_threads(1)

from bandits.errors import PrefsimError  # noqa: E402
from llm_bridge import loop as bridge_loop  # noqa: E402
from llm_bridge.generation import SamplingSpec, encode_prompts  # noqa: E402
from llm_bridge.models import load_causal_lm, load_tokenizer  # noqa: E402
from llm_bridge.seeds import CARRIED_STREAM, Purpose, stage_stream, stream_seed  # noqa: E402
from llm_bridge.tiny import build_tiny_model  # noqa: E402
from sim.rules import RULES  # noqa: E402

PROMPTS = ["tell me a story", "the movie was", "what a"]


class _Stop(Exception):
    """Raised by the fake oracle: the evaluation's responses are drawn, the rest is not needed."""


class _StopOracle:
    queries = 0

    def probabilities(self, *args):
        raise _Stop


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    directory = build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)
    return load_causal_lm(str(directory)), load_tokenizer(str(directory))


def _session(model_and_tokenizer, seed):
    model, tokenizer = model_and_tokenizer
    spec = SimpleNamespace(
        seed=seed, sampling=SamplingSpec(max_new_tokens=2, batch_size=2), prompts=SimpleNamespace(heldout=PROMPTS)
    )
    accelerator = SimpleNamespace(process_index=0, num_processes=1)
    return SimpleNamespace(
        spec=spec, policy=model, tokenizer=tokenizer, accelerator=accelerator, progress=False, autocast=None
    )


def _torch_seeds(monkeypatch, call) -> list:
    """The seeds ``torch.manual_seed`` gets while ``call()`` runs (one per generation batch)."""
    seeds, original = [], torch.manual_seed

    def record(value):
        seeds.append(int(value))
        return original(value)

    monkeypatch.setattr(torch, "manual_seed", record)
    try:
        call()
    except _Stop:
        pass
    finally:
        monkeypatch.setattr(torch, "manual_seed", original)
    assert seeds
    return seeds


def _draw(model_and_tokenizer, monkeypatch, seed, t, stream=0):
    session = _session(model_and_tokenizer, seed)
    entry = SimpleNamespace(label="dpo", rule=SimpleNamespace(opponent=None, samples=2))
    prompt_ids = encode_prompts(session.tokenizer, PROMPTS, False)
    return _torch_seeds(monkeypatch, lambda: bridge_loop._draw_responses(session, entry, t, prompt_ids, stream))


def _evaluation(model_and_tokenizer, monkeypatch, seed, iteration):
    session = _session(model_and_tokenizer, seed)
    session.oracle = _StopOracle()
    reference = {"prompt_ids": encode_prompts(session.tokenizer, PROMPTS, False), "texts": PROMPTS}
    return _torch_seeds(monkeypatch, lambda: bridge_loop._evaluate(session, reference, iteration, previous=None))


def test_spec_seeds_s_and_s_plus_1_do_not_share_the_samples_of_iterations_1000_apart(model_and_tokenizer, monkeypatch):
    """(seed·1000 + t + 1)·16: seed 3 at iteration 1000 drew what seed 4 drew at iteration 0."""
    late = _draw(model_and_tokenizer, monkeypatch, 3, 1000)
    early = _draw(model_and_tokenizer, monkeypatch, 4, 0)
    assert not set(late) & set(early)
    # the same draw gives the same seeds (resume, common random numbers), and batches of one draw differ
    assert _draw(model_and_tokenizer, monkeypatch, 3, 1000) == late
    assert len(set(late)) == len(late) == 3  # 3 prompts × 2 samples in batches of 2


def test_a_second_stage_draw_does_not_reuse_an_evaluations_samples(model_and_tokenizer, monkeypatch):
    """×101 for evaluation: extragradient's or optimistic MD's second draw (stream 1) at iteration t = 131 reused the
    seeds of π_0's evaluation (spec seed 0)."""
    evaluation = _evaluation(model_and_tokenizer, monkeypatch, 0, 0)
    second = _draw(model_and_tokenizer, monkeypatch, 0, 131, stream=1)
    assert not set(evaluation) & set(second)


def test_spec_seeds_2_to_the_57_apart_draw_different_samples(model_and_tokenizer, monkeypatch):
    """Taken mod 2⁶⁴, seed·16 000 gave one seed for spec seeds 2⁵⁷ apart (both below 2⁶³, the parser's limit)."""
    assert not set(_draw(model_and_tokenizer, monkeypatch, 5, 0)) & set(
        _draw(model_and_tokenizer, monkeypatch, 5 + 2**57, 0)
    )
    assert not set(_draw(model_and_tokenizer, monkeypatch, 5, 0)) & set(
        _draw(model_and_tokenizer, monkeypatch, 5 + 2**32, 0)
    )


def test_stream_seed_tells_apart_what_a_seed_sequence_of_the_list_would_not():
    """SeedSequence pads short entropy with zeros and splits large integers into 32-bit words: [a, b] and [a, b, 0],
    [2³² + a] and [a, 1] would be one stream."""
    assert np.random.SeedSequence([1, 2]).generate_state(1)[0] == np.random.SeedSequence([1, 2, 0]).generate_state(1)[0]
    pairs = [((1, 2), (1, 2, 0)), ((2**32 + 5,), (5, 1)), ((-1,), (1,)), ((0,), ()), ((2**64,), (0,))]
    for first, second in pairs:
        assert stream_seed(*first) != stream_seed(*second), (first, second)
    seeds = {
        stream_seed(s, t, purpose, stream)
        for s in range(3)
        for t in range(40)
        for purpose in Purpose
        for stream in (0, 1, 7)
    }
    assert len(seeds) == 3 * 40 * len(Purpose) * 3
    assert all(0 <= seed < 2**64 for seed in seeds)
    assert stream_seed(3, 1, Purpose.TRAIN, 0) == stream_seed(np.int64(3), 1, Purpose.TRAIN, 0)
    with pytest.raises(PrefsimError, match="named by integers"):
        stream_seed(3, 1.0)


def test_a_carried_stages_own_draw_has_the_named_stream_7_and_no_stage_index_reaches_it():
    """The bridge and --predict wrote the carried draw's stream as a literal 7: it is CARRIED_STREAM now, still 7 in
    the same slot of the hashed tuple, so every seed (and --predict's documented numbers) is the one it was; a
    stage index of 7 or more, which would share it, is refused."""
    assert CARRIED_STREAM == 7 and [stage_stream(i, False) for i in range(3)] == [0, 1, 2]
    assert stage_stream(0, True) == stage_stream(1, True) == CARRIED_STREAM
    for s, t, m, r in ((0, 0, 0, 0), (3, 5, 2, 1)):
        assert stream_seed(s, t, Purpose.LABELS, stage_stream(0, True), m, r) == stream_seed(s, t, 3, 7, m, r)
        assert stream_seed(s, t, Purpose.SAMPLE, stage_stream(0, True)) == stream_seed(s, t, 1, 7)
    assert max(len(rule.data.stages) for rule in RULES.values() if rule.data is not None) <= CARRIED_STREAM
    with pytest.raises(PrefsimError, match="stage 7: a rule has at most 7 stages"):
        stage_stream(7, False)
