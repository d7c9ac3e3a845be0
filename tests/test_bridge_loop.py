"""The outer loop on tiny, randomly initialised Llama / GPT-2 models built offline (fast, CPU).

Parameters change, checkpoints reload, an interrupted run resumes to the same result as an
uninterrupted one, LoRA + APO extrapolate only the adapter, bad paths and specs fail clearly.
"""

import argparse
import dataclasses
import errno
import json
import os
import re
import resource
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

# Tiny models: one intra-op thread is far faster than torch's thread pool on small CI machines.
torch.set_num_threads(1)

from bandits.errors import PrefsimError  # noqa: E402
from llm_bridge import loop as bridge_loop  # noqa: E402
from llm_bridge import models as models_module  # noqa: E402
from llm_bridge import trainer as trainer_module  # noqa: E402
from llm_bridge.cli import command  # noqa: E402
from llm_bridge.cli import main as cli_main  # noqa: E402
from llm_bridge.generation import SamplingSpec, encode_prompts, generate, position_limit, torch_seed  # noqa: E402
from llm_bridge.logprobs import batched_sequence_logprobs  # noqa: E402
from llm_bridge.models import (  # noqa: E402
    LoraSpec,
    export_pretrained,
    load_causal_lm,
    load_tokenizer,
    load_weights,
    read_weights,
    resolve_model_path,
)
from llm_bridge.provenance import changed_models, model_identity  # noqa: E402
from llm_bridge.run_layout import RUN_LEVEL_NAMES  # noqa: E402
from llm_bridge.spec import TRAINING_KEYS_READ_BY, PredictionSpec, PromptSpec, parse_spec  # noqa: E402
from llm_bridge.tiny import build_tiny_model  # noqa: E402
from llm_bridge.trainer import TrainingSpec  # noqa: E402
from sim import results_io, stop_request  # noqa: E402
from sim.doc_tables import REQUIRED, llm_spec_keys_table  # noqa: E402
from sim.experiment import git_commit  # noqa: E402
from sim.provenance import default_file_mode, git_dirty, prefsim_version, source_digest  # noqa: E402
from sim.rules import RULES  # noqa: E402


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "gpt2", "gpt2", seed=1)


#: A spec file of one rule on two prompts (``iterations``, ``model``: the model folder, ``rule``: its table's lines).
SMALL_SPEC = """
iterations = {iterations}
[model]
path = "{model}"
[prompts]
train = ["tell me a story", "the movie was"]
heldout = ["what a", "i love this"]
per_iteration = 2
[generation]
max_new_tokens = 4
[training]
learning_rate = 1e-2
batch_size = 2
micro_batch_size = 2
[[rule]]
{rule}
"""


def _raw(model_dir, rules, iterations=2, **extra):
    raw = {
        "iterations": iterations,
        "seed": 3,
        "model": {"path": str(model_dir)},
        "prompts": {
            "train": ["tell me a story", "write a review of the film", "the movie was", "i love this"],
            "heldout": ["the weather is", "what a", "she said it was", "this is the"],
            "per_iteration": 4,
        },
        "generation": {"max_new_tokens": 5, "batch_size": 4},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-3, "batch_size": 2, "micro_batch_size": 1, "epochs": 2},
        "rule": rules,
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def test_loop_trains_writes_rows_and_checkpoints_reload(tiny_llama, tmp_path):
    rules = [{"name": "inpo", "eta": 1.0, "tau": 0.3}, {"name": "dpo", "beta": 0.5, "pairs": "best_worst_by_win_rate"}]
    spec = parse_spec(_raw(tiny_llama, rules))
    out = tmp_path / "run"
    table = bridge_loop.run_bridge(spec, out, progress=False)
    assert list(table.groupby("rule").size()) == [3, 3]
    assert set(table.columns) >= {
        "win_rate",
        "win_rate_low",
        "win_rate_high",
        "mean_reward",
        "kl_reference",
        "kl_previous",
        "loss_first",
        "oracle_queries",
        "generation_tokens_per_s",
        "train_tokens_per_s",
    }
    trained = table[table["iteration"] > 0]
    assert (trained["pairs"] == 4).all() and (
        trained["oracle_queries"] == np.where(trained["rule"] == "inpo", 4, 4 * 6)
    ).all()
    # what the update cost: counts (0 for π_0, whose row has no update) and the wall time of each part, which the
    # row's seconds holds (and more: checkpoints, the restore of θ_t); K = 2 (λ_p) and 4 samples of ≤ 5 tokens
    clocks = [f"{phase}_seconds" for phase in bridge_loop.PHASES]
    start = table[table["iteration"] == 0]
    assert (start[["generation_tokens", "train_tokens"]] == 0).all(axis=None) and start[clocks].isna().all(axis=None)
    samples = np.where(trained["rule"] == "inpo", 2, 4)
    assert ((trained["generation_tokens"] > 0) & (trained["generation_tokens"] <= 4 * samples * 5)).all()
    assert (trained["train_tokens"] >= 2 * 4 * 2 * 2).all()  # 2 epochs × 4 pairs × 2 prompts of ≥ 2 tokens (<s> w)
    assert (trained[clocks] > 0).all(axis=None) and (trained[clocks].sum(axis=1) <= trained["seconds"]).all()
    assert np.isfinite(trained[["win_rate", "kl_reference", "kl_previous", "loss_last"]].to_numpy()).all()
    # INPO's first loss is exactly (1/(2η))² since π_θ = π_t at step 0; iterative DPO's is log 2
    inpo = trained[trained["rule"] == "inpo"]
    np.testing.assert_allclose(inpo["loss_first"].iloc[0], 0.25, rtol=1e-5)
    np.testing.assert_allclose(trained[trained["rule"] == "dpo"]["loss_first"], np.log(2.0), rtol=1e-5)
    assert (out / "win_rate.png").is_file() and (out / "metrics.csv").is_file() and (out / "curves.png").is_file()
    assert len((out / "inpo" / "iter_001" / "pairs.jsonl").read_text().splitlines()) == 4
    # the per-prompt terms of the KL estimate are kept, and average to the recorded KL(π_1‖π_ref)
    terms = json.loads((out / "inpo" / "iter_001" / "heldout.json").read_text())["log_ratio_reference"]
    np.testing.assert_allclose(np.mean(terms), inpo["kl_reference"].iloc[0], rtol=1e-9, atol=1e-12)

    reference = read_weights(out / "reference" / "policy.safetensors")
    final = read_weights(out / "inpo" / "iter_002" / "policy.safetensors")
    changed = [name for name in reference if not torch.equal(reference[name], final[name])]
    assert len(changed) == len(reference)  # every trainable tensor moved

    # a fresh model loaded with the checkpoint scores responses exactly as the trained one did
    tokenizer = load_tokenizer(str(tiny_llama))
    fresh = load_causal_lm(str(tiny_llama))
    load_weights(fresh, out / "inpo" / "iter_002" / "policy.safetensors")
    prompts = [tokenizer("the movie was")["input_ids"]] * 2
    responses = [
        tokenizer("good", add_special_tokens=False)["input_ids"],
        tokenizer("bad day", add_special_tokens=False)["input_ids"],
    ]
    other = load_causal_lm(str(tiny_llama))
    before = batched_sequence_logprobs(other, prompts, responses, tokenizer.pad_token_id)
    after = batched_sequence_logprobs(fresh, prompts, responses, tokenizer.pad_token_id)
    assert not torch.allclose(before, after)
    for name, tensor in fresh.named_parameters():
        assert torch.equal(tensor.detach(), final[name])


def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny_llama, tmp_path, monkeypatch):
    raw = _raw(
        tiny_llama,
        [{"name": "apo", "base": "dpo", "beta": 0.5, "alpha": 0.3, "pairs": "best_worst_by_win_rate", "samples": 3}],
        iterations=3,
    )
    spec = parse_spec(raw)
    full = bridge_loop.run_bridge(spec, tmp_path / "full", progress=False)

    real_update = bridge_loop._update
    calls = {"n": 0}

    def interrupted(session, entry, t):
        calls["n"] += 1
        if t == 2 and calls["n"] == 3:
            raise KeyboardInterrupt
        return real_update(session, entry, t)

    monkeypatch.setattr(bridge_loop, "_update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bridge_loop.run_bridge(spec, tmp_path / "resumed", progress=False)
    assert json.loads((tmp_path / "resumed" / "apo" / "state.json").read_text()) == {"finished": 2}
    with pytest.raises(PrefsimError, match="--resume"):
        bridge_loop.run_bridge(spec, tmp_path / "resumed", progress=False)
    # the rows an older prefsim wrote lack the columns added since (here two of them): resumed, the table has
    # every column in the order of a fresh run's, the old rows' unmeasured values NaN
    metrics_file = tmp_path / "resumed" / "apo" / "metrics.csv"
    pd.read_csv(metrics_file).drop(columns=["generation_tokens", "eval_seconds"]).to_csv(metrics_file, index=False)
    resumed = bridge_loop.run_bridge(spec, tmp_path / "resumed", resume=True, progress=False)
    assert list(resumed.columns) == list(full.columns)
    assert resumed.generation_tokens.iloc[1:3].isna().all() and resumed.generation_tokens.iloc[3] > 0

    columns = [
        "iteration",
        "win_rate",
        "kl_reference",
        "kl_previous",
        "loss_first",
        "loss_last",
        "pairs",
        "oracle_queries",
    ]
    pd.testing.assert_frame_equal(full[columns], resumed[columns])
    for kind in ("policy", "proximal"):
        a = read_weights(tmp_path / "full" / "apo" / "iter_003" / f"{kind}.safetensors")
        b = read_weights(tmp_path / "resumed" / "apo" / "iter_003" / f"{kind}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    # APO's extrapolated policy differs from its proximal output
    a = read_weights(tmp_path / "full" / "apo" / "iter_003" / "policy.safetensors")
    b = read_weights(tmp_path / "full" / "apo" / "iter_003" / "proximal.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)

    changed = dict(raw, seed=4)
    with pytest.raises(PrefsimError, match="spec differs"):
        bridge_loop.run_bridge(parse_spec(changed), tmp_path / "resumed", resume=True, progress=False)


def test_implicit_reference_apo_through_the_loop_shifts_the_reference_by_its_closed_form(
    tiny_llama, tmp_path, monkeypatch
):
    """APO's implicit-reference form through run_bridge: the log π_t the loss sees for each pair at
    iteration t ≥ 1 is (1+α)·log π̂_t − α·log π̂_{t−1} (Eq. 3.6 before normalisation, written out here),
    with π̂_t the iterate checkpointed by the loop (π̂_0 = π_ref), re-scored from the checkpoints; at
    t = 0 it is log π_ref.  α → −α, or the two checkpoints' scores swapped, fails by far more than the
    float32 scoring noise (asserted)."""
    alpha = 0.5
    rule = {
        "name": "apo",
        "base": "dpo",
        "beta": 0.5,
        "alpha": alpha,
        "form": "implicit_reference",
        "pairs": "best_worst_by_win_rate",
        "samples": 3,
    }
    spec = parse_spec(_raw(tiny_llama, [rule], iterations=3, training={"learning_rate": 5e-2}))
    seen = []
    real = bridge_loop.records_to_tensors
    monkeypatch.setattr(bridge_loop, "records_to_tensors", lambda records: seen.append(records) or real(records))
    out = tmp_path / "run"
    bridge_loop.run_bridge(spec, out, progress=False)
    assert len(seen) == 3 and all(seen)

    tokenizer = load_tokenizer(str(tiny_llama))
    model = load_causal_lm(str(tiny_llama))

    def scores(checkpoint, records):
        load_weights(model, checkpoint)
        prompts = [r["prompt_ids"] for r in records] * 2
        responses = [r["winner_ids"] for r in records] + [r["loser_ids"] for r in records]
        with torch.no_grad():
            return batched_sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id).double().numpy()

    checkpoints = [out / "reference" / "policy.safetensors"] + [
        out / "apo" / f"iter_{t:03d}" / "policy.safetensors" for t in (1, 2)
    ]
    for t, records in enumerate(seen):
        used = np.array([r["previous_w"] for r in records] + [r["previous_l"] for r in records])
        reference = np.array([r["reference_w"] for r in records] + [r["reference_l"] for r in records])
        np.testing.assert_allclose(reference, scores(checkpoints[0], records), atol=1e-4, rtol=0)
        now = scores(checkpoints[t], records)
        if t == 0:
            np.testing.assert_allclose(used, now, atol=1e-4, rtol=0)
            continue
        before = scores(checkpoints[t - 1], records)
        np.testing.assert_allclose(used, (1 + alpha) * now - alpha * before, atol=1e-4, rtol=0)
        # what a flipped α or swapped checkpoints would give is far from it
        assert np.abs(used - ((1 - alpha) * now + alpha * before)).max() > 1e-2
        assert np.abs(used - ((1 + alpha) * before - alpha * now)).max() > 1e-2


def test_gpt2_lora_apo_extrapolates_only_the_adapter(tiny_gpt2, tmp_path):
    raw = _raw(
        tiny_gpt2,
        [
            {"name": "apo", "base": "inpo", "eta": 1.0, "tau": 0.3, "alpha": 0.5, "pairs": "iid"},
            {
                "name": "apo",
                "label": "apo_implicit",
                "base": "inpo",
                "eta": 1.0,
                "tau": 0.3,
                "alpha": 0.5,
                "pairs": "tournament",
                "samples": 4,
                "extrapolation": "implicit",
            },
        ],
        model={"lora": {"r": 2, "alpha": 4.0, "target_modules": ["c_attn"]}},
    )
    raw["training"]["learning_rate"] = 5e-2
    spec = parse_spec(raw)
    table = bridge_loop.run_bridge(spec, tmp_path / "run", progress=False)
    saved = read_weights(tmp_path / "run" / "apo" / "iter_002" / "policy.safetensors")
    proximal = read_weights(tmp_path / "run" / "apo" / "iter_002" / "proximal.safetensors")
    previous = read_weights(tmp_path / "run" / "apo" / "iter_001" / "proximal.safetensors")
    assert saved and all("lora_" in name for name in saved)  # only the adapter is trainable and saved
    for name in saved:  # θ_2 = θ̂_2 + α(θ̂_2 − θ̂_1)
        torch.testing.assert_close(
            saved[name], proximal[name] + 0.5 * (proximal[name] - previous[name]), rtol=1e-6, atol=1e-7
        )
    assert not (tmp_path / "run" / "apo_implicit" / "iter_001" / "proximal.safetensors").exists()
    implicit = table[(table["rule"] == "apo_implicit") & (table["iteration"] > 0)]
    assert (implicit["oracle_queries"] <= 4 * 5).all()  # tournament: 3K/2 − 1 = 5 queries per prompt
    assert np.isfinite(implicit["loss_last"]).all()


def test_bad_paths_and_specs_fail_clearly(tiny_llama, tiny_gpt2, tmp_path):
    with pytest.raises(PrefsimError, match="does not exist.*never downloads"):
        resolve_model_path(str(tmp_path / "nowhere"))
    with pytest.raises(PrefsimError, match="does not exist"):
        bridge_loop.run_bridge(
            parse_spec(_raw(tmp_path / "missing", [{"name": "dpo"}])), tmp_path / "a", progress=False
        )
    with pytest.raises(PrefsimError, match="without config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(PrefsimError, match="eta > tau"):
        parse_spec(_raw(tiny_llama, [{"name": "inpo", "eta": 0.2, "tau": 0.3}]))
    with pytest.raises(PrefsimError, match="unknown parameter 'beta'"):
        parse_spec(_raw(tiny_llama, [{"name": "ipo", "beta": 0.1}]))
    with pytest.raises(PrefsimError, match="implicit"):
        parse_spec(_raw(tiny_llama, [{"name": "apo", "base": "sppo", "extrapolation": "implicit"}]))
    with pytest.raises(PrefsimError, match="training.learning_rate"):
        parse_spec(_raw(tiny_llama, [{"name": "dpo"}], training={"learning_rate": 0.0}))
    with pytest.raises(PrefsimError, match="generation: unknown key"):
        parse_spec(_raw(tiny_llama, [{"name": "dpo"}], generation={"max_tokens": 3}))
    # the tiny models read 128 positions: the longest training prompt and 129 − its length new tokens is one too many
    too_long = _raw(tiny_gpt2, [{"name": "dpo"}])
    tokenizer = load_tokenizer(str(tiny_gpt2))
    longest = max(len(ids) for ids in encode_prompts(tokenizer, too_long["prompts"]["train"], False))
    too_long["generation"]["max_new_tokens"] = 129 - longest
    expected = (
        rf"prompts.train: the longest prompt has {longest} tokens and generation.max_new_tokens = {129 - longest}, "
        r"129 positions in all, but the model reads at most 128 \(config max_position_embeddings\); lower "
        rf"generation.max_new_tokens to {128 - longest}"
    )
    with pytest.raises(PrefsimError, match=expected):
        bridge_loop.run_bridge(parse_spec(too_long), tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()
    with pytest.raises(PrefsimError, match="oracle.path"):
        bridge_loop.run_bridge(
            parse_spec(
                _raw(tiny_llama, [{"name": "dpo"}], oracle={"kind": "reward_model", "path": str(tmp_path / "rm")})
            ),
            tmp_path / "b",
            progress=False,
        )


def test_the_position_limit_reads_learned_tables_and_rotary_scaling():
    def model(**fields):
        return argparse.Namespace(config=argparse.Namespace(**fields))

    assert position_limit(model(n_positions=1024)) == (1024, "n_positions")
    assert position_limit(model(max_position_embeddings=2048, n_positions=1024)) == (2048, "max_position_embeddings")
    assert position_limit(model(vocab_size=10)) is None
    # Llama 3.1 states the scaled context; a YaRN config the original one; Gemma 3 the scaled one, no original
    gemma = {"rope_type": "linear", "factor": 8.0}
    assert position_limit(model(max_position_embeddings=131072, rope_scaling=gemma)) == (
        131072,
        "max_position_embeddings",
    )
    llama = {"factor": 8.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}
    assert position_limit(model(max_position_embeddings=131072, rope_scaling=llama))[0] == 131072
    yarn = {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}
    assert position_limit(model(max_position_embeddings=32768, rope_scaling=yarn)) == (
        131072,
        "max_position_embeddings with rope_scaling factor 4",
    )


def test_cli_command_runs_a_spec_file_and_rejects_bad_input(tiny_llama, tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SMALL_SPEC.format(iterations=1, model=tiny_llama, rule='name = "sppo"\neta = 2.0'))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.name == "llm" and isinstance(command.help, str)
    assert command.run(parser.parse_args([str(spec_file), "--out", str(tmp_path / "out"), "--quiet"])) == 0
    assert (tmp_path / "out" / "win_rate.png").is_file()
    assert len(pd.read_csv(tmp_path / "out" / "sppo" / "metrics.csv")) == 2
    with pytest.raises(PrefsimError, match="does not exist"):
        command.run(parser.parse_args([str(tmp_path / "nope.toml"), "--out", str(tmp_path / "x")]))


def _one_step_raw(model_dir, rules, **extra):
    """One iteration of one optimiser step (4 λ_p pairs, batch 4): its last step is its only one."""
    return _raw(model_dir, rules, iterations=1, training={"batch_size": 4, "micro_batch_size": 2, "epochs": 1}, **extra)


class _DivergingSGD(torch.optim.SGD):
    """SGD whose every step ends as a diverging step does: ``overflow`` fills the last parameter (a Llama's output
    head) with 1e38, finite weights whose logits overflow; else one NaN goes into the first parameter."""

    def __init__(self, parameters, lr, overflow):
        super().__init__(parameters, lr=lr)
        self.overflow = overflow

    def step(self, closure=None):
        super().step(closure)
        with torch.no_grad():
            if self.overflow:
                self.param_groups[0]["params"][-1].fill_(1e38)
            else:
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")


def test_a_diverging_loss_names_the_rule_the_seed_and_the_iteration(tiny_llama, tmp_path):
    raw = _raw(
        tiny_llama,
        [{"name": "inpo", "eta": 1.0, "tau": 0.3}],
        iterations=1,
        training={"learning_rate": 1e30, "optimizer": "sgd", "epochs": 1},
    )
    with pytest.raises(
        PrefsimError, match=r"^rule inpo, seed 3, iteration 1 \(update π_0 → π_1\): the inpo loss became nan"
    ):
        bridge_loop.run_bridge(parse_spec(raw), tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("overflow", "message"),
    [(False, "trainable parameter tensors are not finite"), (True, "the dpo loss on its pairs is nan")],
)
def test_a_last_step_that_diverges_stops_the_run_before_its_checkpoint_is_saved(
    tiny_llama, tmp_path, monkeypatch, overflow, message
):
    monkeypatch.setattr(
        bridge_loop,
        "make_optimizer",
        lambda parameters, spec: _DivergingSGD(
            [p for p in parameters if p.requires_grad], lr=spec.learning_rate, overflow=overflow
        ),
    )
    out = tmp_path / "run"
    with pytest.raises(PrefsimError, match=rf"^rule dpo, seed 3, iteration 1 \(update π_0 → π_1\): .*{message}"):
        bridge_loop.run_bridge(parse_spec(_one_step_raw(tiny_llama, [{"name": "dpo"}])), out, progress=False)
    assert (out / "reference" / "policy.safetensors").is_file()
    assert not (out / "dpo" / "iter_001" / "policy.safetensors").exists()


def test_sampling_from_weights_that_overflow_is_a_clear_error(tiny_llama):
    # NaN logits, as the finite but huge weights of one SGD step at lr 1e30 give on prompts it did not train on
    model, tokenizer = load_causal_lm(str(tiny_llama)), load_tokenizer(str(tiny_llama))
    with torch.no_grad():
        model.get_output_embeddings().weight.fill_(float("nan"))
    prompts = encode_prompts(tokenizer, ["the weather is"], False)
    with pytest.raises(PrefsimError, match=r"^inpo eval π_1: the policy's next-token logits are NaN or infinite"):
        generate(
            model,
            tokenizer,
            prompts,
            1,
            SamplingSpec(max_new_tokens=2),
            seed=0,
            progress=False,
            description="inpo eval π_1",
        )


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("training", "adam_betas", [1.5, 0.999], "adam_betas must be two numbers in"),
        ("training", "adam_betas", [0.9], "adam_betas must be two numbers in"),
        ("training", "adam_betas", ["a", "b"], "adam_betas must be two numbers in"),
        ("training", "adam_betas", [0.9, float("nan")], "adam_betas must be two numbers in"),
        ("training", "eps", float("nan"), "eps must be a finite number > 0"),
        ("training", "eps", -1.0, "eps must be a finite number > 0"),
        ("training", "eps", "small", r"training.eps: expected a number, got 'small'"),
        ("training", "rmsprop_alpha", -2.0, r"rmsprop_alpha must be a number in \[0, 1\)"),
        ("training", "rmsprop_alpha", 1.0, r"rmsprop_alpha must be a number in \[0, 1\)"),
        ("training", "weight_decay", float("nan"), "weight_decay must be a finite number ≥ 0"),
        ("training", "weight_decay", float("inf"), "weight_decay must be a finite number ≥ 0"),
        ("training", "max_grad_norm", float("nan"), "max_grad_norm must be a finite number ≥ 0"),
        ("training", "max_grad_norm", -1.0, "max_grad_norm must be a finite number ≥ 0"),
        ("training", "learning_rate", float("inf"), "learning_rate must be a finite number > 0"),
        ("generation", "temperature", float("inf"), "temperature must be a finite number > 0"),
        ("generation", "temperature", float("nan"), "temperature must be a finite number > 0"),
        ("generation", "temperature", 0.0, "temperature must be a finite number > 0"),
        ("generation", "top_p", float("nan"), r"top_p must be in \(0, 1\]"),
        ("prediction", "sampled_learning_rate", float("inf"), "sampled_learning_rate must be a finite number > 0"),
        # what the oracle's kind needs (build_oracle asked only once the model was hashed and loaded)
        ("oracle", "kind", "reward_model", r'oracle.kind = "reward_model" needs oracle.path'),
        ("oracle", "kind", "reward_function", r'oracle.kind = "reward_function" needs oracle.function'),
        ("oracle", "kind", "preference_function", r'oracle.kind = "preference_function" needs oracle.function'),
    ],
)
def test_optimiser_and_sampling_settings_are_checked_before_the_model_loads(table, key, value, message):
    # the model path does not exist: the spec is refused before anything tries to load it
    with pytest.raises(PrefsimError, match=message):
        parse_spec(_raw("/nonexistent/model", [{"name": "dpo"}], **{table: {key: value}}))


def test_the_training_checks_take_numbers_as_bandits_inputs_does():
    """TrainingSpec.validate asks bandits.inputs.is_finite_number (its own twin of it called math.isfinite, an
    OverflowError for an integer too large for a float); the messages are the trainer's."""
    with pytest.raises(PrefsimError, match=r"^training.adam_betas must be two numbers in \[0, 1\)"):
        TrainingSpec(adam_betas=(10**400, 0.9)).validate()
    with pytest.raises(PrefsimError, match=r"^training.learning_rate must be a finite number > 0, got 10{400}\.$"):
        TrainingSpec(learning_rate=10**400).validate()
    assert not hasattr(trainer_module, "_is_finite_number")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"dtype": "int8"}, "model.dtype must be one of float32, float64, bfloat16, float16, got 'int8'."),
        ({"lora": {"r": 0}}, "model.lora.r: expected an integer ≥ 1, got 0."),
        ({"lora": {"alpha": float("nan")}}, "model.lora.alpha must be a finite number > 0"),
        ({"lora": {"dropout": 1.0}}, "model.lora.dropout must be a number in [0, 1), got 1.0."),
        ({"lora": {"target_modules": [1, 2]}}, "model.lora.target_modules must be a non-empty list of module names"),
        ({"lora": {"target_modules": []}}, "model.lora.target_modules must be a non-empty list of module names"),
    ],
)
def test_model_dtype_and_lora_settings_are_checked_before_the_model_loads(model, message):
    """They were checked only once the model was hashed and loaded, some not at all: a NaN alpha stopped the run as
    'training diverged; lower training.learning_rate', and target_modules = [1, 2] was an AttributeError."""
    with pytest.raises(PrefsimError) as caught:
        parse_spec(_raw("/nonexistent/model", [{"name": "dpo"}], model=model))
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("value", [0, True, 2.0, 2.5, "2", None])
def test_lora_rank_and_the_other_integer_fields_refuse_and_word_alike(value):
    """LoraSpec checked r by hand ("model.lora.r must be an integer ≥ 1 (the rank of the adapter)") and the training,
    prediction and spec fields each by their own copy: all go through bandits.inputs.check_integer now, so a bool or a
    float such as 2.0 is refused by each, in the same words as the parser's type errors ("<field>: expected …")."""
    checks = {
        "model.lora.r": lambda v: LoraSpec(r=v).validate(),
        "training.epochs": lambda v: TrainingSpec(epochs=v).validate(),
        "prediction.resamples": lambda v: PredictionSpec(resamples=v).validate(),
    }
    for field, check in checks.items():
        with pytest.raises(PrefsimError) as caught:
            check(value)
        assert str(caught.value) == f"{field}: expected an integer ≥ 1, got {value!r}."
        check(np.int64(4))  # a NumPy integer is an integer, as everywhere else in prefsim


def test_lora_spec_validated_directly_stores_plain_values_as_the_parser_does():
    """LoraSpec(r=np.int64(4)).validate() kept the NumPy integer (the parser converts it): the spec was not JSON
    (dataclasses.asdict → json.dumps raised), a list of modules left it unhashable, and a string "c_attn" passed
    as the modules c, _, a, … (peft then found none of them)."""
    lora = LoraSpec(r=np.int64(4), alpha=np.int32(8), dropout=np.float32(0.5), target_modules=["c_attn"])
    lora.validate()
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (4, 8.0, 0.5, ("c_attn",))
    assert [type(v) for v in (lora.r, lora.alpha, lora.dropout)] == [int, float, float]
    assert json.loads(json.dumps(dataclasses.asdict(lora)))["r"] == 4 and hash(lora) == hash(
        LoraSpec(4, 8.0, 0.5, ("c_attn",))
    )
    with pytest.raises(PrefsimError, match=r"^model\.lora\.target_modules must be a non-empty list of module names"):
        LoraSpec(target_modules="c_attn").validate()


def test_training_and_prediction_specs_validated_directly_store_plain_values_as_the_parser_does():
    """TrainingSpec(epochs=np.int64(2)).validate() and PredictionSpec(prompts=np.int64(3)).validate() kept the
    NumPy values (the parser converts them), as LoraSpec did: the specs were not JSON and a list of betas left
    TrainingSpec unhashable."""
    training = TrainingSpec(
        learning_rate=np.float32(0.5), epochs=np.int64(2), batch_size=np.int32(4), micro_batch_size=np.int64(2)
    )
    object.__setattr__(training, "adam_betas", [np.float32(0.5), 0.25])  # a list, as a user might build it
    training.validate()
    expected = {"learning_rate": 0.5, "epochs": 2, "batch_size": 4, "micro_batch_size": 2, "adam_betas": (0.5, 0.25)}
    assert {name: getattr(training, name) for name in expected} == expected
    assert [type(training.epochs), type(training.learning_rate), type(training.adam_betas[0])] == [int, float, float]
    assert json.loads(json.dumps(dataclasses.asdict(training)))["epochs"] == 2 and hash(training) == hash(
        TrainingSpec(learning_rate=0.5, epochs=2, batch_size=4, micro_batch_size=2, adam_betas=(0.5, 0.25))
    )
    prediction = PredictionSpec(prompts=np.int64(3), candidates=np.int32(5), sampled_learning_rate=np.float32(0.25))
    prediction.validate()
    assert (prediction.prompts, prediction.candidates, prediction.sampled_learning_rate) == (3, 5, 0.25)
    assert [type(prediction.prompts), type(prediction.candidates), type(prediction.sampled_learning_rate)] == [
        int,
        int,
        float,
    ]
    json.dumps(dataclasses.asdict(prediction))
    with pytest.raises(PrefsimError, match=r"^prediction\.candidates: expected an integer ≥ 2, got 1\.$"):
        PredictionSpec(candidates=1).validate()


def test_spec_tables_take_numpy_integers_as_integers(tiny_llama):
    """A NumPy integer in a table field (a spec dict built from arrays) was refused as "expected an integer, got
    np.int64(4)" while the same value was taken for iterations and by check_integer; it is stored as an int."""
    raw = _raw(
        tiny_llama,
        [{"name": "dpo"}],
        iterations=np.int64(2),
        prompts={"per_iteration": np.int64(4)},
        generation={"max_new_tokens": np.int32(5)},
        training={"epochs": np.int64(3), "learning_rate": np.int64(1)},
        model={"lora": {"r": np.int64(4)}},
    )
    spec = parse_spec(raw)
    values = (spec.iterations, spec.prompts.per_iteration, spec.sampling.max_new_tokens, spec.training.epochs)
    assert values == (2, 4, 5, 3) and all(type(value) is int for value in values)
    assert type(spec.model.lora.r) is int and spec.training.learning_rate == 1.0
    assert type(spec.training.learning_rate) is float
    with pytest.raises(PrefsimError, match=r"training\.epochs: expected an integer, got np\.True_"):
        parse_spec(_raw(tiny_llama, [{"name": "dpo"}], training={"epochs": np.True_}))


def test_labels_may_not_take_a_name_the_run_writes_at_the_top_of_out():
    assert {"reference", "metrics.csv", "tensorboard", "win_rate.png", "curves.png", "manifest.json"} <= RUN_LEVEL_NAMES
    for label in sorted(RUN_LEVEL_NAMES) + ["Metrics.CSV", "TensorBoard"]:
        with pytest.raises(PrefsimError, match=rf"rule #2: label {re.escape(repr(label))} is the name of a file or"):
            parse_spec(_raw("/m", [{"name": "inpo", "eta": 1.0, "tau": 0.3}, {"name": "dpo", "label": label}]))
    with pytest.raises(PrefsimError, match="rule #2: label 'dpo' must be unique"):
        parse_spec(_raw("/m", [{"name": "dpo"}, {"name": "dpo"}]))
    with pytest.raises(PrefsimError, match=r"rule #2: name must be a string.*got 3\."):
        parse_spec(_raw("/m", [{"name": "dpo"}, {"name": 3, "beta": 0.5}]))
    assert [e.label for e in parse_spec(_raw("/m", [{"name": "dpo", "label": "metrics"}])).rules] == ["metrics"]


def test_resume_refuses_a_changed_prompt_file_and_accepts_a_manifest_without_hashes(tiny_llama, tmp_path):
    prompts = tmp_path / "train.txt"
    prompts.write_text("tell me a story\nthe movie was\n")
    raw = _raw(tiny_llama, [{"name": "dpo"}], iterations=1)
    raw["prompts"] = {"train_file": "train.txt", "heldout": ["what a"], "per_iteration": 2}
    out = tmp_path / "run"
    bridge_loop.run_bridge(parse_spec(raw, base=tmp_path), out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["prompt_files"]) == {"prompts.train_file"}
    bridge_loop.run_bridge(parse_spec(raw, base=tmp_path), out, resume=True, progress=False)  # same file: fine
    prompts.write_text("i hate this\nwhat a\n")
    with pytest.raises(PrefsimError, match=r"--resume: prompts.train_file '.*train.txt' has changed since the run"):
        bridge_loop.run_bridge(parse_spec(raw, base=tmp_path), out, resume=True, progress=False)
    # a run written before prompt files were hashed: their contents are unknown, the resume goes on
    del manifest["prompt_files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    table = bridge_loop.run_bridge(parse_spec(raw, base=tmp_path), out, resume=True, progress=False)
    assert table["iteration"].tolist() == [0, 1]


def test_prompt_files_that_are_not_text_files_of_prompts_are_refused_saying_what_they_are(tmp_path, capsys):
    def refused(value, key="train"):
        raw = _raw("/m", [{"name": "dpo"}])
        del raw["prompts"][key]
        raw["prompts"][f"{key}_file"] = value
        with pytest.raises(PrefsimError) as caught:
            parse_spec(raw, base=tmp_path)
        return str(caught.value)

    (tmp_path / "binary.txt").write_bytes(bytes([0xC9, 0x55, 0xE2, 0x32, 0xAF]))
    assert refused("binary.txt") == (
        f"prompts.train_file: {str(tmp_path / 'binary.txt')!r} is not UTF-8 text (byte 0xc9 at offset 0); save it "
        "as UTF-8, one prompt per line."
    )
    (tmp_path / "nul.txt").write_bytes(b"ab\x00cd")
    assert "is not a text file (a NUL byte at offset 2)" in refused("nul.txt", "heldout")
    assert refused(42) == (
        "prompts.train_file must be a non-empty string: give the path of a UTF-8 text file with one prompt per "
        "line; got 42."
    )
    assert "prompts.heldout_file must be a non-empty string" in refused(["a.txt"], "heldout")
    (tmp_path / "folder").mkdir()
    assert f"{str(tmp_path / 'folder')!r} is a directory, not a file" in refused("folder")
    assert "does not exist" in refused("missing.txt")
    assert "is not a regular file" in refused("/dev/null", "heldout")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n   \n\n")
    for name in ("empty.txt", "blank.txt"):
        message = refused(name)
        assert (
            "holds no prompts (it is empty or has only blank lines)" in message and "prompts.train must" not in message
        )
    # a list and a file for the same prompts: one of them would be ignored
    raw = _raw("/m", [{"name": "dpo"}])
    raw["prompts"]["train_file"] = "blank.txt"
    with pytest.raises(PrefsimError, match=r"give either prompts.train \(a list of prompts\) or prompts.train_file"):
        parse_spec(raw, base=tmp_path)
    # through the CLI: one error line, exit status 2, no traceback
    (tmp_path / "spec.toml").write_text(
        '[model]\npath = "/m"\n[prompts]\ntrain_file = "binary.txt"\nheldout = ["b"]\n[[rule]]\nname = "dpo"\n'
    )
    assert cli_main([str(tmp_path / "spec.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: prompts.train_file: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("model", "path", 42, "model.path: expected a string, got 42."),
        ("prompts", "train", "tell me", "prompts.train: expected a list of strings, got 'tell me'."),
        ("prompts", "chat_template", 1, "prompts.chat_template: expected true or false, got 1."),
        ("prompts", "per_iteration", 2.5, "prompts.per_iteration: expected an integer, got 2.5."),
        ("training", "adam_betas", 0.9, "training.adam_betas: expected a list of 2 numbers, got 0.9."),
        ("oracle", "path", 3, "oracle.path: expected a string, got 3."),
    ],
)
def test_a_value_of_the_wrong_type_is_named_in_words_not_as_a_python_type(table, key, value, message):
    with pytest.raises(PrefsimError) as caught:
        parse_spec(_raw("/m", [{"name": "dpo"}], **{table: {key: value}}))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("table", "key", "value", "where"),
    [
        ("training", "learning_rate", 10**400, "training.learning_rate"),
        ("oracle", "scale", 10**400, "oracle.scale"),
        ("training", "adam_betas", [10**400, 0], "training.adam_betas[0]"),
        ("run", "threads", 2**63, "run.threads"),
    ],
)
def test_an_integer_beyond_64_bits_is_refused_naming_the_key_not_an_overflow_error(table, key, value, where):
    """Python's TOML parser reads integers of any size; converting one to a float was an OverflowError traceback."""
    with pytest.raises(PrefsimError, match=rf"^{re.escape(where)}: the integer \d+ does not fit in 64 bits"):
        parse_spec(_raw("/m", [{"name": "dpo"}], **{table: {key: value}}))
    with pytest.raises(PrefsimError, match=r"^rule\[0\]\.beta: the integer"):
        parse_spec(_raw("/m", [{"name": "dpo", "beta": 10**400}]))


def test_the_largest_spec_seed_runs(tiny_llama, tmp_path):
    """The seeds once derived arithmetically from the spec's passed 2⁶⁴ for any spec seed above ~10⁷: torch's
    ValueError part-way through the run.  They are hashed into [0, 2⁶⁴) now (llm_bridge.seeds.stream_seed); a
    caller's seed of the trainer is taken mod 2⁶⁴ (llm_bridge.generation.torch_seed)."""
    raw = _raw(tiny_llama, [{"name": "dpo"}], iterations=1)
    raw["seed"] = 2**63 - 1  # the largest a TOML file can give
    table = bridge_loop.run_bridge(parse_spec(raw), tmp_path / "run", progress=False)
    assert table["iteration"].tolist() == [0, 1] and table["pairs"].iloc[-1] == 4
    assert torch_seed(2**64 + 5) == 5 and torch_seed(2**64 - 1) == 2**64 - 1


def test_the_progress_line_calls_the_kl_a_sample_estimate_that_can_be_negative():
    row = {"win_rate": 0.5, "win_rate_low": 0.4, "win_rate_high": 0.6, "kl_reference": -0.314}
    line = bridge_loop.iteration_line("inpo", 2, 3, {**row, "loss_first": 0.7, "loss_last": 0.6, "seconds": 4.0})
    assert "KL(π_2‖π_ref) ≈ -0.314 (sample estimate, can be < 0)," in line


def test_the_stand_alone_cli_reports_a_file_system_error_without_a_traceback(tmp_path, monkeypatch, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('[model]\npath = "/m"\n[prompts]\ntrain = ["a"]\nheldout = ["b"]\n[[rule]]\nname = "dpo"\n')

    def vanished(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/proc/out")

    monkeypatch.setattr(bridge_loop, "run_bridge", vanished)
    assert cli_main([str(spec_file), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: No such file or directory (/proc/out)\n" in err and "Traceback" not in err


def test_the_checkpoint_note_counts_the_checkpoints_a_rule_reads():
    rules = [{"name": "mnpo", "eta": 1.0, "tau": 0.3, "history": 3}, {"name": "dpo"}]
    spec = parse_spec(_raw("/m", rules, iterations=6, run={"keep_checkpoints": 2}))
    note = bridge_loop.checkpoint_note(spec, 2**20)
    # the reference, MNPO's 3 iterates + 1, DPO's 2 + 1
    assert "keeps up to 8 MB" in note and "the last 2 per rule" in note and "MNPO's last `history` iterates" in note
    everything = bridge_loop.checkpoint_note(dataclasses.replace(spec, keep_checkpoints=0), 2**20)
    assert (
        "keeps up to 13 MB" in everything and "keeps the last two per rule, and more where a rule reads" in everything
    )


def test_the_checkpoint_note_says_how_large_a_small_checkpoint_is():
    """A tiny model's checkpoint (the README's quick start: about 90 KB) is given in KB, not as "0 MB"."""
    spec = parse_spec(_raw("/m", [{"name": "dpo"}], iterations=2, run={"keep_checkpoints": 2}))
    note = bridge_loop.checkpoint_note(spec, 90_000)
    # the reference and DPO's two iterations: 3 × 90 000 bytes = 264 KB
    assert note.startswith("checkpoints: 88 KB each") and "keeps up to 264 KB" in note, note
    assert "0 MB" not in note
    assert bridge_loop.checkpoint_note(spec, 3 * 2**29).startswith("checkpoints: 1.5 GB each")


def test_the_docs_rule_table_lists_every_rule_the_bridge_runs():
    docs = (Path(__file__).parent.parent / "docs" / "llm_bridge.md").read_text()
    table = [line for line in docs.splitlines() if line.startswith("| `")]
    named = {name for line in table for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert {name for name, rule in RULES.items() if "llm" in rule.modes} <= named


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_whose_exception_was_dropped_still_ends_the_run_at_the_next_step(
    tiny_llama, tmp_path, monkeypatch, capsys, number
):
    """Python drops an exception raised while a garbage-collection callback runs (JAX registers one): 2 of 8
    SIGTERMs were ignored and the run trained to its end.  The handler's record stops it at the next optimiser
    step (sim.stop_request), before that iteration is committed, and --resume then finishes it."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SMALL_SPEC.format(iterations=3, model=tiny_llama, rule='name = "inpo"\neta = 1.0'))
    real = bridge_loop._update

    def dropped_at_the_second_iteration(session, entry, t):
        if t == 1:
            stop_request.request_stop(number)  # what the handler records; its exception is lost
        return real(session, entry, t)

    monkeypatch.setattr(bridge_loop, "_update", dropped_at_the_second_iteration)
    out = tmp_path / "out"
    status = cli_main([str(spec_file), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 128 + number and "Traceback" not in err, err
    said = "terminated (SIGTERM)" if number == signal.SIGTERM else "interrupted"
    assert f"\n{said}: finished iterations are saved" in f"\n{err}"
    assert json.loads((out / "inpo" / "state.json").read_text()) == {"finished": 1}
    monkeypatch.setattr(bridge_loop, "_update", real)
    assert cli_main([str(spec_file), "--out", str(out), "--quiet", "--resume"]) == 0
    assert json.loads((out / "inpo" / "state.json").read_text()) == {"finished": 3}


def test_an_atomic_write_leaves_another_writers_temporary_file_alone(tmp_path):
    # a temporary file of its own (was the fixed `<file>.tmp`: a second run renamed the first one's away)
    target = tmp_path / "metrics.csv"
    other = tmp_path / "metrics.csv.tmp"
    other.write_text("another writer's half-written table")
    bridge_loop._write_atomic(target, "iteration\n0\n")
    assert target.read_text() == "iteration\n0\n"
    assert other.read_text() == "another writer's half-written table"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.csv.tmp"]


def test_a_run_into_a_directory_another_run_holds_is_refused_at_once(tiny_llama, tmp_path):
    spec = parse_spec(_raw(tiny_llama, [{"name": "dpo"}], iterations=1))
    out = tmp_path / "run"
    bridge_loop.run_bridge(spec, out, progress=False)

    def written():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".prefsim.lock"}

    before = written()
    with results_io.output_lock(out):  # another run (a --resume of it, say) holds the directory
        with pytest.raises(PrefsimError, match=rf"--out '.*run': another prefsim run \(process {os.getpid()}\)"):
            bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    assert written() == before  # nothing written
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with results_io.output_lock(fresh), pytest.raises(PrefsimError, match="another prefsim run"):
        bridge_loop.run_bridge(spec, fresh, progress=False)
    assert [p.name for p in fresh.iterdir()] == [".prefsim.lock"]


def test_the_manifest_records_code_and_model_and_resume_refuses_another_model(tmp_path, capsys):
    model = build_tiny_model(tmp_path / "model", "llama", seed=0)
    spec = parse_spec(_raw(model, [{"name": "dpo"}], iterations=1))
    out = tmp_path / "run"
    bridge_loop.run_bridge(spec, out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["git_commit"] == git_commit() and manifest["git_dirty"] == git_dirty()
    assert manifest["source_digest"] == source_digest(("llm_bridge", "sim", "bandits"))
    assert manifest["versions"]["prefsim"] == prefsim_version() and manifest["seed"] == 3
    assert re.fullmatch("[0-9a-f]{64}", manifest["model"]["sha256"]) and manifest["reward_model"] is None
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["model"]["files"])
    # the run holds its directory only while it runs
    bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    assert [start["model"]["sha256"] for start in json.loads((out / "manifest.json").read_text())["resumed"]] == [
        manifest["model"]["sha256"]
    ]

    # other weights at the same path
    build_tiny_model(model, "llama", seed=1)
    with pytest.raises(PrefsimError, match=r"--resume: model.path '.*model' \(SHA-256 .* files that differ: "):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    # a manifest written before models were hashed: the model is unknown, the resume goes on
    old = {key: value for key, value in manifest.items() if key not in ("model", "reward_model")}
    (out / "manifest.json").write_text(json.dumps(old))
    bridge_loop.run_bridge(spec, out, resume=True, progress=False)

    # another commit and uncommitted changes with the same source files (a README edit): the resume goes on,
    # silently; the start records its commit and dirty flag
    (out / "manifest.json").write_text(json.dumps({**old, "git_commit": "0" * 40, "git_dirty": True}))
    capsys.readouterr()
    bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    assert "warning" not in capsys.readouterr().err
    resumed = json.loads((out / "manifest.json").read_text())["resumed"]
    assert len(resumed) == 1 and resumed[0]["git_commit"] == git_commit() and "allowed_other_code" not in resumed[0]
    assert resumed[0]["source_digest"] == manifest["source_digest"] and resumed[0]["git_dirty"] == git_dirty()


def _finished_run(tmp_path, name="run"):
    """``(spec, out, manifest)``: a one-iteration DPO run of a tiny Llama of its own, finished."""
    model = build_tiny_model(tmp_path / "model", "llama", seed=0)
    spec = parse_spec(_raw(model, [{"name": "dpo"}], iterations=1))
    out = tmp_path / name
    bridge_loop.run_bridge(spec, out, progress=False)
    return spec, out, json.loads((out / "manifest.json").read_text())


def test_resume_compares_the_source_files_and_versions_of_every_start_not_the_commit(tmp_path, capsys):
    """--resume refused any other commit (a README-only commit locked the run; a rebased-away one forever)
    and ignored a dirty start recorded under ``resumed``: it compares the code that computes (the source
    files of llm_bridge, sim and bandits, the package versions) with every start the manifest records."""
    spec, out, manifest = _finished_run(tmp_path)
    path = out / "manifest.json"
    other = {**manifest, "git_commit": "1" * 40, "git_dirty": False}
    # another commit whose source files are this code's: the resume goes on
    path.write_text(json.dumps(other))
    bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    # other source files at the start: refused, naming the commits; --allow-other-code: a warning, recorded
    path.write_text(json.dumps({**other, "source_digest": "0" * 64}))
    with pytest.raises(
        PrefsimError, match=r"other source files \(git commit 1{40} \(clean\) instead of .*checkout of 1{40}"
    ):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    with pytest.raises(PrefsimError, match="pass --allow-other-code"):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    capsys.readouterr()
    bridge_loop.run_bridge(spec, out, resume=True, progress=False, allow_other_code=True)
    assert "warning: --resume --allow-other-code:" in capsys.readouterr().err
    (start,) = json.loads(path.read_text())["resumed"]
    assert start["allowed_other_code"] == [
        f"other source files (git commit {'1' * 40} (clean) instead of "
        f"git commit {git_commit()}{' with uncommitted changes' if git_dirty() else ' (clean)'})"
    ]
    # an earlier start by other code, recorded under 'resumed', counts as well
    dirty = {
        **manifest,
        "resumed": [{**manifest, "git_commit": "2" * 40, "git_dirty": True, "source_digest": "3" * 64}],
    }
    path.write_text(json.dumps(dirty))
    with pytest.raises(PrefsimError, match=r"git commit 2{40} with uncommitted changes instead of"):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    # other package versions
    versions = {**manifest["versions"], "torch": "0.0.1"}
    path.write_text(json.dumps({**manifest, "versions": versions}))
    with pytest.raises(
        PrefsimError, match=rf"other code than this prefsim: torch 0\.0\.1 instead of {re.escape(torch.__version__)} \("
    ):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    # a manifest written before the source digest was recorded: not compared on it
    older = {key: value for key, value in other.items() if key != "source_digest"}
    path.write_text(json.dumps({**older, "resumed": [{"git_commit": "4" * 40, "git_dirty": True}]}))
    bridge_loop.run_bridge(spec, out, resume=True, progress=False)


def test_resume_checks_what_needs_no_model_hash_before_hashing(tmp_path, monkeypatch):
    """A fresh run into an existing run's directory hashed the model (10–20 s for 7B) before it was refused."""
    spec, out, _ = _finished_run(tmp_path)

    def hashed(spec):
        raise AssertionError("the model was hashed")

    monkeypatch.setattr(bridge_loop, "run_provenance", hashed)
    with pytest.raises(PrefsimError, match="already holds a bridge run; pass --resume"):
        bridge_loop.run_bridge(spec, out, progress=False)
    changed = parse_spec({**spec.raw, "seed": 4})
    with pytest.raises(PrefsimError, match="the spec differs"):
        bridge_loop.run_bridge(changed, out, resume=True, progress=False)


@pytest.mark.parametrize("text", ['{"spec": {"iterations"', "[]", "", '"a run"'])
def test_resume_of_an_unreadable_manifest_names_the_file(tmp_path, text):
    spec, out, _ = _finished_run(tmp_path)
    (out / "manifest.json").write_text(text)
    message = r"--resume: '.*run' holds no bridge run \(no readable manifest.json: '.*manifest.json' is not a JSON"
    with pytest.raises(PrefsimError, match=message):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)


def test_a_chat_template_file_is_part_of_the_model_identity(tmp_path):
    """transformers 5 saves the chat template as chat_template.jinja (and named ones under
    additional_chat_templates/), which the tokenizer reads: editing only the template changed no SHA-256."""
    model = build_tiny_model(tmp_path / "model", "llama", seed=0)
    (Path(model) / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert load_tokenizer(str(model)).chat_template.startswith("{% for m in messages %}")
    before = model_identity(str(model))
    assert "chat_template.jinja" in before["files"]
    (Path(model) / "chat_template.jinja").write_text("{% for m in messages %}say: {{ m['content'] }}{% endfor %}")
    after = model_identity(str(model))
    assert after["sha256"] != before["sha256"]
    assert changed_models({"model": before}, {"model": after})[0].endswith("files that differ: chat_template.jinja)")
    (Path(model) / "additional_chat_templates").mkdir()
    (Path(model) / "additional_chat_templates" / "tool_use.jinja").write_text("{{ messages }}")
    named = model_identity(str(model))
    assert named["sha256"] != after["sha256"] and "additional_chat_templates/tool_use.jinja" in named["files"]


def test_the_docs_key_table_calls_required_exactly_the_prompts_keys_the_parser_requires():
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| ([^|]+?) \|", llm_spec_keys_table(), re.MULTILINE))
    for field in dataclasses.fields(PromptSpec):
        raw = _raw("/m", [{"name": "dpo"}])
        raw["prompts"].pop(field.name, None)
        try:
            parse_spec(raw)
            required = False
        except PrefsimError as error:
            assert f"prompts.{field.name} must be a non-empty list" in str(error)
            required = True
        assert (rows[f"prompts.{field.name}"] == REQUIRED) == required, field.name


def test_a_checkpoint_that_does_not_fit_is_a_clear_error_and_the_run_resumes(tiny_llama, tmp_path):
    """safetensors reports a full disk or the file-size limit as its own SafetensorError, not an OSError: it was
    a traceback (exit status 1) with a stray ``policy.tmp``.  Here the file-size limit (EFBIG, as a full disk
    fails) stops the first checkpoint, the reference's; APO's proximal checkpoint is written the same way."""
    spec = parse_spec(_raw(tiny_llama, [{"name": "apo", "base": "dpo", "alpha": 0.3}], iterations=1))
    out = tmp_path / "run"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, hard))  # the manifest fits, the 88 kB checkpoint does not
    try:
        with pytest.raises(PrefsimError, match=r"could not write the checkpoint '.*policy\.safetensors' \(.*File too "):
            bridge_loop.run_bridge(spec, out, progress=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert sorted(p.name for p in (out / "reference").iterdir()) == []  # no partial or temporary file
    table = bridge_loop.run_bridge(spec, out, resume=True, progress=False)
    assert list(table["iteration"]) == [0, 1]
    mode = default_file_mode()
    for kind in ("policy", "proximal"):
        assert (out / "apo" / "iter_001" / f"{kind}.safetensors").stat().st_mode & 0o777 == mode


def test_an_exported_model_that_does_not_fit_is_a_clear_error(tiny_llama, tmp_path):
    """``[run] export_final``'s save_pretrained fails on a full disk with safetensors' SafetensorError: it was a
    traceback after the last iteration."""
    model, tokenizer = load_causal_lm(str(tiny_llama)), load_tokenizer(str(tiny_llama))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, hard))  # the config fits, the 88 kB of weights do not
    try:
        with pytest.raises(PrefsimError, match=r"could not write the exported model '.*final' \(.*File too large"):
            export_pretrained(model, tokenizer, tmp_path / "final")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    export_pretrained(model, tokenizer, tmp_path / "final")  # the rerun writes it whole
    assert (
        torch.equal(load_causal_lm(str(tmp_path / "final")).lm_head.weight, model.lm_head.weight)
        and load_tokenizer(str(tmp_path / "final"))("what a")["input_ids"] == tokenizer("what a")["input_ids"]
    )


def test_pruning_keeps_the_reference_advancements_anchor_until_the_next_advance(tiny_llama, tmp_path, monkeypatch):
    """keep_checkpoints = 2 with reference_every = 3: π_3 anchors the loss of iterations 4 and 5, when it is no
    longer one of the last two checkpoints; deleting it stops the run (checkpoint ... is missing)."""
    raw = _raw(tiny_llama, [{"name": "comal", "tau": 0.3, "reference_every": 3}], iterations=6)
    raw["prompts"]["per_iteration"] = 2
    raw["training"].update(epochs=1, micro_batch_size=2)
    spec = parse_spec({**raw, "run": {"keep_checkpoints": 2}})
    kept = {}
    real_prune = bridge_loop._prune

    def recording(spec, rule_dir, finished):
        real_prune(spec, rule_dir, finished)
        kept[finished] = sorted(int(p.parent.name[5:]) for p in rule_dir.glob("iter_*/policy.safetensors"))

    monkeypatch.setattr(bridge_loop, "_prune", recording)
    table = bridge_loop.run_bridge(spec, tmp_path / "run", progress=False)
    assert list(table["iteration"]) == list(range(7))
    assert kept == {1: [1], 2: [1, 2], 3: [2, 3], 4: [3, 4], 5: [3, 4, 5], 6: [5, 6]}


def test_a_missing_checkpoint_is_a_clear_error_that_does_not_assume_resume(tiny_llama, tmp_path):
    """A checkpoint removed after it was written: the error names it and says what to do, in words that hold for a
    fresh run as for --resume (it used to say "rerun without --resume" to users who had not passed it)."""
    spec = parse_spec(_raw(tiny_llama, [{"name": "dpo"}], iterations=2))
    out = tmp_path / "run"
    bridge_loop.run_bridge(spec, out, progress=False)
    (out / "dpo" / "state.json").write_text(json.dumps({"finished": 1}))
    (out / "dpo" / "iter_001" / "policy.safetensors").unlink()
    with pytest.raises(PrefsimError, match=r"iter_001/policy\.safetensors' is missing: .*run again into a new dir"):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)


def test_a_damaged_checkpoint_is_a_clear_error_naming_it(tiny_llama, tmp_path):
    """safetensors raises its own SafetensorError on a truncated file: --resume from it was a traceback."""
    spec = parse_spec(_raw(tiny_llama, [{"name": "dpo"}], iterations=2))
    out = tmp_path / "run"
    bridge_loop.run_bridge(spec, out, progress=False)
    (out / "dpo" / "state.json").write_text(json.dumps({"finished": 1}))
    checkpoint = out / "dpo" / "iter_001" / "policy.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(PrefsimError, match=r"checkpoint '.*iter_001/policy\.safetensors' cannot be read \(.*header"):
        bridge_loop.run_bridge(spec, out, resume=True, progress=False)


def test_a_checkpoint_in_a_directory_that_cannot_be_written_is_told_so_not_to_free_disk_space(tmp_path, monkeypatch):
    """save_state advised 'Free disk space or raise the file-size limit' whatever the write's error; a read-only
    directory (EACCES) needs another fix, as write_files_atomic says for the simulator's files."""

    def refused(contents, removed=()):
        raise PermissionError(errno.EACCES, "Permission denied", str(next(iter(contents))))

    monkeypatch.setattr(models_module, "replace_files_atomic", refused)
    with pytest.raises(PrefsimError, match=r"\(Permission denied\); .* Make the run's directory writable and rerun"):
        models_module.save_state({"w": torch.zeros(2)}, tmp_path / "policy.safetensors")

    def full(contents, removed=()):
        raise OSError(errno.ENOSPC, "No space left on device", str(next(iter(contents))))

    monkeypatch.setattr(models_module, "replace_files_atomic", full)
    with pytest.raises(PrefsimError, match=r"Free disk space or raise the file-size limit and rerun with --resume"):
        models_module.save_state({"w": torch.zeros(2)}, tmp_path / "policy.safetensors")


def test_a_bridge_spec_nested_hundreds_of_levels_deep_is_refused_without_a_recursion_error(tmp_path, capsys):
    """Was a RecursionError traceback from tomllib (arrays) or from check_integer_range (a deep table)."""
    (tmp_path / "arrays.toml").write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    assert cli_main([str(tmp_path / "arrays.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nests arrays or inline tables hundreds of levels deep" in err and err.count("\n") == 1
    deep = {}
    for _ in range(1000):
        deep = {"y": deep}
    with pytest.raises(PrefsimError, match=r"^training\.y\.y.*nest more than 16 levels deep"):
        parse_spec(_raw("/m", [{"name": "dpo"}], training={"y": deep}))


def test_a_count_rule_parameter_given_as_a_float_is_refused():
    """reference_every = 3.0 (and 1e300) and history = 2.0 were accepted as counts; 2.5 alone was refused."""
    for rule, key in (
        ({"name": "comal", "reference_every": 3.0}, "reference_every"),
        ({"name": "mnpo", "history": 2.0}, "history"),
    ):
        with pytest.raises(PrefsimError, match=rf"^rule '{rule['name']}': {key} must be an integer ≥ 1 \(a count"):
            parse_spec(_raw("/m", [rule]))


@pytest.mark.parametrize(
    ("oracle", "message"),
    [
        # a reward model's path beside the default kind: the pairs were labelled by VADER, silently
        ({"path": "models/rm"}, "oracle.path = 'models/rm' is read only with oracle.kind = 'reward_model' (this spec"),
        ({"kind": "reward_model", "path": "rm", "function": "m:f"}, "oracle.function = 'm:f' is read only with"),
        (
            {"kind": "preference_function", "function": "os:getcwd", "scale": 0.5},
            "oracle.scale = 0.5 is read only with oracle.kind = 'vader', 'reward_model' or 'reward_function'",
        ),
    ],
)
def test_an_oracle_key_its_kind_does_not_read_is_refused(oracle, message):
    raw = _raw("/m", [{"name": "dpo"}])
    raw["oracle"] = oracle
    with pytest.raises(PrefsimError, match=re.escape(message)):
        parse_spec(raw)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"rmsprop_alpha": 0.9}, "training.rmsprop_alpha = 0.9 is read only with training.optimizer = 'rmsprop'"),
        ({"optimizer": "rmsprop", "adam_betas": [0.9, 0.99]}, "training.adam_betas = [0.9, 0.99] is read only with"),
        ({"optimizer": "sgd", "eps": 1e-6}, "training.eps = 1e-06 is read only with training.optimizer = 'adamw' or"),
    ],
)
def test_a_training_key_its_optimizer_does_not_read_is_refused(training, message):
    """Each was accepted and ignored (make_optimizer passes it to one optimiser only)."""
    with pytest.raises(PrefsimError, match=re.escape(message)):
        parse_spec(_raw("/m", [{"name": "dpo"}], training=training))
    # the optimiser that reads the key takes it
    key = next(key for key in training if key != "optimizer")
    parse_spec(_raw("/m", [{"name": "dpo"}], training={**training, "optimizer": TRAINING_KEYS_READ_BY[key][0]}))


def test_out_holding_a_simulator_run_is_refused_as_such(tmp_path):
    """It was called "a bridge run" with the advice to pass --resume, which then said the spec differs."""
    out = tmp_path / "simulator"
    out.mkdir()
    spec = {"iterations": 3, "game": {"kind": "cyclic", "arms": 3}, "rule": [{"name": "mmd"}]}
    (out / "manifest.json").write_text(json.dumps({"spec": spec, "fingerprint": "0" * 64}))
    for resume in (False, True):
        with pytest.raises(
            PrefsimError, match=r"holds the results of `prefsim run` \(a simulator spec with a \[game\]"
        ):
            bridge_loop.run_bridge(
                parse_spec(_raw("/nonexistent", [{"name": "dpo"}])), out, resume=resume, progress=False
            )
