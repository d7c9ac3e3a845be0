"""Resume commits an iteration atomically; low-precision training keeps float32 master weights (issue 13 §2).

* A run killed between writing an iteration's metrics row and recording it in ``state.json`` resumes
  without a duplicated row, to the uninterrupted result; the files are replaced atomically.
* ``dtype = "bfloat16"`` / ``"float16"`` train float32 master weights (the low-precision copy is only
  the loaded checkpoint), so float16 gives no NaN and a step equals the float32 step on the same weights.
"""

import json
import os
import shutil

import pandas as pd
import pytest
import torch

from llm_bridge import loop as bridge_loop
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import build_tiny_model

torch.set_num_threads(1)  # tiny models: one intra-op thread is far faster on small shared machines

COLUMNS = ["iteration", "win_rate", "kl_reference", "kl_previous", "loss_first", "loss_last", "pairs"]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


def _raw(model_dir, iterations=2, **extra):
    raw = {
        "iterations": iterations,
        "seed": 5,
        "model": {"path": str(model_dir)},
        "prompts": {
            "train": ["tell me a story", "write a review of the film", "the movie was", "i love this"],
            "heldout": ["the weather is", "what a", "she said it was"],
            "per_iteration": 4,
        },
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-3, "batch_size": 2, "micro_batch_size": 1},
        "rule": [{"name": "dpo", "beta": 0.5}],
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def test_kill_between_the_metrics_row_and_the_state_resumes_without_a_duplicate(tiny_llama, tmp_path):
    spec = parse_spec(_raw(tiny_llama))
    full = bridge_loop.run_bridge(spec, tmp_path / "full", progress=False)
    assert list(full["iteration"]) == [0, 1, 2]
    # the files as a kill leaves them after iteration 2's row was written but before state.json recorded it
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "full", crashed)
    (crashed / "dpo" / "state.json").write_text(json.dumps({"finished": 1}))
    resumed = bridge_loop.run_bridge(spec, crashed, resume=True, progress=False)
    assert list(resumed["iteration"]) == [0, 1, 2]
    assert list(pd.read_csv(crashed / "dpo" / "metrics.csv")["iteration"]) == [0, 1, 2]
    pd.testing.assert_frame_equal(full[COLUMNS], resumed[COLUMNS])
    assert json.loads((crashed / "dpo" / "state.json").read_text()) == {"finished": 2}
    assert not list(crashed.rglob("*.tmp"))


def test_state_and_metrics_are_replaced_atomically(tiny_llama, tmp_path, monkeypatch):
    spec = parse_spec(_raw(tiny_llama))
    real_replace = os.replace
    calls = []

    def killed_at_the_state(source, target):  # the process dies while committing iteration 2's state
        calls.append(str(target))
        if str(target).endswith("state.json") and len([c for c in calls if c.endswith("state.json")]) == 2:
            raise KeyboardInterrupt
        return real_replace(source, target)

    monkeypatch.setattr(bridge_loop.os, "replace", killed_at_the_state)
    with pytest.raises(KeyboardInterrupt):
        bridge_loop.run_bridge(spec, tmp_path / "run", progress=False)
    monkeypatch.setattr(bridge_loop.os, "replace", real_replace)
    # the old state is intact (never a partial file) and the metrics table already has iteration 2's row
    assert json.loads((tmp_path / "run" / "dpo" / "state.json").read_text()) == {"finished": 1}
    assert list(pd.read_csv(tmp_path / "run" / "dpo" / "metrics.csv")["iteration"]) == [0, 1, 2]
    resumed = bridge_loop.run_bridge(spec, tmp_path / "run", resume=True, progress=False)
    assert list(resumed["iteration"]) == [0, 1, 2]
    assert list(pd.read_csv(tmp_path / "run" / "dpo" / "metrics.csv")["iteration"]) == [0, 1, 2]
