"""LLM bridge shards: ``prefsim llm SPEC --shard I/N`` trains whole rules, ``--merge`` gives the unsharded
``metrics.csv`` (tiny random Llama, one iteration, CPU)."""

import argparse
import json

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from bandits.errors import PrefsimError  # noqa: E402
from llm_bridge.cli import command  # noqa: E402
from llm_bridge.shards import merge_llm_shards, shard_record  # noqa: E402
from llm_bridge.spec import load_spec  # noqa: E402
from llm_bridge.tiny import build_tiny_model  # noqa: E402
from sim.launch import launch_plan  # noqa: E402

SPEC = """
iterations = 1
seed = 5
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
name = "sppo"
eta = 2.0
[[rule]]
name = "inpo"
eta = 1.0
tau = 0.3
[[rule]]
name = "dpo"
beta = 0.5
"""


def _run(*argv) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args([str(a) for a in argv]))


def test_rule_shards_merge_to_the_unsharded_run_and_bad_merges_fail(tmp_path):
    model = build_tiny_model(tmp_path / "llama", "llama", seed=0)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(model=model))
    assert _run(spec, "--out", tmp_path / "full", "--quiet") == 0
    shards = [tmp_path / f"shard-{i}" for i in range(2)]
    for index, out in enumerate(shards):
        assert _run(spec, "--out", out, "--shard", f"{index}/2", "--quiet") == 0
    assert json.loads((shards[0] / "manifest.json").read_text())["shard"]["labels"] == ["sppo", "dpo"]
    assert sorted(p.name for p in shards[1].iterdir() if p.is_dir() and p.name != "reference") == ["inpo"]
    assert _run(spec, "--out", tmp_path / "merged", "--merge", shards[1], shards[0]) == 0
    merged = pd.read_csv(tmp_path / "merged" / "metrics.csv")
    full = pd.read_csv(tmp_path / "full" / "metrics.csv")
    clock = ["generation_tokens_per_s", "train_tokens_per_s", "seconds"]  # wall-clock columns differ run to run
    assert list(merged.columns) == list(full.columns) and len(merged) == 6
    pd.testing.assert_frame_equal(merged.drop(columns=clock), full.drop(columns=clock), check_exact=True)
    assert (tmp_path / "merged" / "win_rate.png").is_file()

    with pytest.raises(PrefsimError, match=r"missing shard\(s\): 1/2 \(rules inpo\)"):
        _run(spec, "--out", tmp_path / "m2", "--merge", shards[0])
    with pytest.raises(PrefsimError, match="given twice"):
        _run(spec, "--out", tmp_path / "m2", "--merge", shards[0], shards[0], shards[1])
    with pytest.raises(PrefsimError, match="is not a shard"):
        _run(spec, "--out", tmp_path / "m2", "--merge", tmp_path / "full", shards[1])
    other = tmp_path / "other.toml"
    other.write_text(SPEC.format(model=model).replace("seed = 5", "seed = 6"))
    with pytest.raises(PrefsimError, match="foreign"):
        _run(other, "--out", tmp_path / "m2", "--merge", shards[0], shards[1])
    with pytest.raises(PrefsimError, match="at most 3 shards"):
        _run(spec, "--out", tmp_path / "x", "--shard", "0/4")


def test_launch_puts_each_rule_of_an_llm_spec_in_its_own_job(tmp_path):
    plan = launch_plan(tmp_path / "spec.toml", tmp_path / "out", 3, 1, llm=True)
    assert len(plan["shards"]) == 3 and all(len(task) == 1 for task in plan["shards"])
    assert plan["shards"][2][0][:2] == ["llm_bridge.cli", str(tmp_path / "spec.toml")]
    assert "--shard" in plan["shards"][2][0] and "2/3" in plan["shards"][2][0]
    assert plan["merge"][plan["merge"].index("--merge") + 1 :] == [
        str(tmp_path / "out" / "shards" / f"shard-{i}-of-3") for i in range(3)
    ]


def test_merge_refuses_shards_trained_on_another_version_of_a_prompt_file(tmp_path):
    (tmp_path / "train.txt").write_text("tell me a story\nthe movie was\n")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        SPEC.format(model=tmp_path / "llama").replace(
            'train = ["tell me a story", "the movie was"]', 'train_file = "train.txt"'
        )
    )
    spec = load_spec(spec_path)
    digest = spec.prompt_files["prompts.train_file"]["sha256"]
    shards = []
    for index, sha256 in enumerate([digest, "0" * 64]):  # shard 1 was trained on another train.txt
        shard = tmp_path / f"shard-{index}"
        shard.mkdir()
        manifest = {
            "spec": spec.raw,
            "prompt_files": {"prompts.train_file": {"path": str(tmp_path / "train.txt"), "sha256": sha256}},
            "versions": {"torch": "x"},
            "shard": shard_record(spec, index, 2),
        }
        (shard / "manifest.json").write_text(json.dumps(manifest))
        shards.append(shard)
    with pytest.raises(PrefsimError, match=r"shard-1' is foreign: it was trained on another prompts.train_file than"):
        merge_llm_shards(spec, shards, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
