"""Resume commits an iteration atomically; low-precision training keeps float32 master weights (issue 13 §2).

* A run killed between writing an iteration's metrics row and recording it in ``state.json`` resumes
  without a duplicated row, to the uninterrupted result; the files are replaced atomically.
* ``dtype = "bfloat16"`` / ``"float16"`` train float32 master weights under autocast, so a small step
  moves every weight and float16 gives no NaN; low-precision trainable weights are refused clearly.
"""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from bandits.errors import PrefsimError
from llm_bridge import loop as bridge_loop
from llm_bridge.models import load_causal_lm, read_weights
from llm_bridge.precision import precision_for
from llm_bridge.rules import build_bridge_rule
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import PairTensors, TrainingSpec, make_optimizer, train_on_pairs

torch.set_num_threads(1)  # tiny models: one intra-op thread is far faster on small shared machines

KEYS = ("reference_w", "reference_l", "previous_w", "previous_l", "win_rate_w", "win_rate_l", "preference")
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

    monkeypatch.setattr(os, "replace", killed_at_the_state)  # the atomic writer's rename
    with pytest.raises(KeyboardInterrupt):
        bridge_loop.run_bridge(spec, tmp_path / "run", progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    # the old state is intact (never a partial file) and the metrics table already has iteration 2's row
    assert json.loads((tmp_path / "run" / "dpo" / "state.json").read_text()) == {"finished": 1}
    assert list(pd.read_csv(tmp_path / "run" / "dpo" / "metrics.csv")["iteration"]) == [0, 1, 2]
    resumed = bridge_loop.run_bridge(spec, tmp_path / "run", resume=True, progress=False)
    assert list(resumed["iteration"]) == [0, 1, 2]
    assert list(pd.read_csv(tmp_path / "run" / "dpo" / "metrics.csv")["iteration"]) == [0, 1, 2]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_dtypes_train_float32_master_weights(tiny_llama, tmp_path, dtype):
    raw = _raw(tiny_llama, iterations=1, model={"dtype": dtype}, training={"learning_rate": 1e-5})
    table = bridge_loop.run_bridge(parse_spec(raw), tmp_path / "run", progress=False)
    row = table[table["iteration"] == 1].iloc[0]
    assert np.isfinite(row[["loss_first", "loss_last", "win_rate", "kl_reference"]].to_numpy(dtype=float)).all()
    assert abs(row["loss_first"] - np.log(2.0)) < 0.02  # DPO at π_θ = π_t, up to the low-precision compute
    reference = read_weights(tmp_path / "run" / "reference" / "policy.safetensors")
    trained = read_weights(tmp_path / "run" / "dpo" / "iter_001" / "policy.safetensors")
    assert {t.dtype for t in trained.values()} == {torch.float32}
    # a 1e-5 AdamW step moves (nearly) every weight: none is lost to rounding in a low-precision copy
    # (embedding rows of tokens absent from the pairs get no gradient, so the embedding is left out)
    names = [k for k in reference if "embed_tokens" not in k]
    changed = sum(int((reference[k] != trained[k]).sum()) for k in names)
    assert changed > 0.99 * sum(reference[k].numel() for k in names)


def test_lora_on_a_bfloat16_base_trains_a_float32_adapter(tiny_llama, tmp_path):
    raw = _raw(tiny_llama, iterations=1, model={"dtype": "bfloat16", "lora": {"r": 2, "alpha": 4.0}})
    spec = parse_spec(raw)
    session = bridge_loop.open_session(spec, tmp_path / "run", progress=False)
    dtypes = {(p.requires_grad, p.dtype) for p in session.policy.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    table = bridge_loop.run_bridge(spec, tmp_path / "run", progress=False, session=session)
    assert np.isfinite(table["loss_last"].iloc[-1])


def test_training_low_precision_weights_is_refused_with_the_fix_named(tiny_llama):
    model = load_causal_lm(str(tiny_llama), "bfloat16")
    data = PairTensors([[2, 5]], [[6, 3]], [[7, 3]], {k: torch.zeros(1, dtype=torch.float64) for k in KEYS})
    data.values["weight"] = torch.ones(1, dtype=torch.float64)
    optimizer = make_optimizer(model.parameters(), TrainingSpec())
    with pytest.raises(PrefsimError, match="float32 master weights"):
        train_on_pairs(model, optimizer, data, build_bridge_rule("dpo", {}), TrainingSpec(), 1, seed=0, progress=False)


def test_a_step_whose_pairs_all_weigh_zero_has_loss_zero_not_a_nan_error(tiny_llama):
    """Population pairs weigh π(y)π(y′)P(y ≻ y′), 0 where P is: a step of such pairs has loss 0 and no
    gradient (sampled mode's Σ w ℓ / max(Σ w, 1)); it was 0 / 0, reported as a diverging loss."""
    model = load_causal_lm(str(tiny_llama), "float32")
    values = {key: torch.zeros(2, dtype=torch.float64) for key in (*KEYS, "weight")}
    data = PairTensors([[2, 5], [2, 6]], [[6, 3], [5, 4]], [[7, 3], [3, 4]], values)
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    optimizer = make_optimizer(model.parameters(), TrainingSpec())
    stats = train_on_pairs(
        model, optimizer, data, build_bridge_rule("dpo", {}), TrainingSpec(), 1, seed=0, progress=False
    )
    assert all(torch.equal(value, before[name]) for name, value in model.named_parameters())
    assert stats.loss_first == stats.loss_last == 0.0 and stats.steps >= 1


def test_float16_loss_scaling_skips_an_overflowing_step():
    precision = precision_for("float16", "cpu", bf16=False)
    assert precision.load_dtype == "float32" and precision.autocast_dtype is torch.float16
    assert precision_for("bfloat16", "cpu", bf16=False).grad_scaler() is None
    assert precision_for("float32", "cpu", bf16=True).autocast is None  # CPU float32: no autocast (as before)
    layer = torch.nn.Linear(2, 1)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    scaler = precision.grad_scaler()
    with precision.autocast():
        loss = layer(torch.tensor([[6e4, 6e4]])).float().sum() * 1e4  # gradients overflow in float16 scaled
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(layer.weight, before) and scaler.get_scale() < 65536.0
