"""LLM bridge shards: ``prefsim llm SPEC --shard I/N`` trains whole rules, ``--merge`` gives the unsharded
``metrics.csv`` (tiny random Llama, one iteration, CPU)."""

import argparse
import json
import shutil

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from bandits.errors import PrefsimError  # noqa: E402
from llm_bridge.cli import command  # noqa: E402
from llm_bridge.shards import merge_llm_shards, shard_record  # noqa: E402
from llm_bridge.spec import load_spec  # noqa: E402
from llm_bridge.tiny import build_tiny_model  # noqa: E402
from sim import results_io  # noqa: E402
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


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """``(spec file, unsharded run, [shard 0, shard 1])`` of :data:`SPEC` (shard 0: sppo, dpo; shard 1: inpo)."""
    where = tmp_path_factory.mktemp("sharded")
    model = build_tiny_model(where / "llama", "llama", seed=0)
    spec = where / "spec.toml"
    spec.write_text(SPEC.format(model=model))
    assert _run(spec, "--out", where / "full", "--quiet") == 0
    shards = [where / f"shard-{i}" for i in range(2)]
    for index, out in enumerate(shards):
        assert _run(spec, "--out", out, "--shard", f"{index}/2", "--quiet") == 0
    return spec, where / "full", shards


def test_rule_shards_merge_to_the_unsharded_run_and_bad_merges_fail(sharded, tmp_path):
    spec, full_run, shards = sharded
    model = load_spec(spec).model.path
    assert json.loads((shards[0] / "manifest.json").read_text())["shard"]["labels"] == ["sppo", "dpo"]
    assert sorted(p.name for p in shards[1].iterdir() if p.is_dir() and p.name != "reference") == ["inpo"]
    assert _run(spec, "--out", tmp_path / "merged", "--merge", shards[1], shards[0]) == 0
    merged = pd.read_csv(tmp_path / "merged" / "metrics.csv")
    full = pd.read_csv(full_run / "metrics.csv")
    # wall-clock columns differ run to run
    clock = [c for c in full.columns if c == "seconds" or c.endswith(("_seconds", "_tokens_per_s"))]
    assert list(merged.columns) == list(full.columns) and len(merged) == 6
    pd.testing.assert_frame_equal(merged.drop(columns=clock), full.drop(columns=clock), check_exact=True)
    assert (tmp_path / "merged" / "win_rate.png").is_file()

    with pytest.raises(PrefsimError, match=r"missing shard\(s\): 1/2 \(rules inpo\)"):
        _run(spec, "--out", tmp_path / "m2", "--merge", shards[0])
    with pytest.raises(PrefsimError, match="given twice"):
        _run(spec, "--out", tmp_path / "m2", "--merge", shards[0], shards[0], shards[1])
    with pytest.raises(PrefsimError, match="is not a shard"):
        _run(spec, "--out", tmp_path / "m2", "--merge", full_run, shards[1])
    other = tmp_path / "other.toml"
    other.write_text(SPEC.format(model=model).replace("seed = 5", "seed = 6"))
    with pytest.raises(PrefsimError, match="foreign"):
        _run(other, "--out", tmp_path / "m2", "--merge", shards[0], shards[1])
    with pytest.raises(PrefsimError, match="at most 3 shards"):
        _run(spec, "--out", tmp_path / "x", "--shard", "0/4")


def test_merge_writes_neither_into_a_shard_nor_into_a_run_nor_where_a_run_holds_the_lock(sharded, tmp_path):
    spec, full_run, shards = sharded
    for target in (shards[0], shards[0] / ".." / shards[0].name):  # however the path is spelled
        with pytest.raises(PrefsimError, match=r"--out '.*shard-0' is one of the shard directories"):
            _run(spec, "--out", target, "--merge", shards[0], shards[1])
    assert json.loads((shards[0] / "manifest.json").read_text())["shard"]["index"] == 0
    with pytest.raises(PrefsimError, match=r"--out '.*full' holds a bridge run that is not a merge"):
        _run(spec, "--out", full_run, "--merge", shards[0], shards[1])
    merged = tmp_path / "merged"
    merged.mkdir()
    with results_io.output_lock(merged), pytest.raises(PrefsimError, match=r"another prefsim run \(process"):
        _run(spec, "--out", merged, "--merge", shards[0], shards[1])
    assert [p.name for p in merged.iterdir()] == [".prefsim.lock"]
    for _ in range(2):  # an earlier merge may be replaced
        assert _run(spec, "--out", merged, "--merge", shards[0], shards[1]) == 0
    manifest = json.loads((merged / "manifest.json").read_text())
    shard = json.loads((shards[0] / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == shard["model"]["sha256"] and manifest["git_commit"] == shard["git_commit"]
    assert sorted(p.name for p in merged.iterdir()) == [".prefsim.lock", "manifest.json", "metrics.csv", "win_rate.png"]


def test_a_shard_directory_resumes_only_as_the_shard_it_holds(sharded, tmp_path):
    spec, full_run, shards = sharded
    shard = json.loads((shards[0] / "manifest.json").read_text())
    with pytest.raises(
        PrefsimError,
        match=r"--resume: '.*shard-0' holds shard 0/2 \(rules sppo, dpo\), but this command runs shard 1/2 \(rules "
        r"inpo\); resume it with --shard 0/2",
    ):
        _run(spec, "--out", shards[0], "--shard", "1/2", "--resume", "--quiet")
    with pytest.raises(PrefsimError, match=r"holds shard 0/2 .* but this command runs the whole spec"):
        _run(spec, "--out", shards[0], "--resume", "--quiet")
    with pytest.raises(PrefsimError, match=r"holds the whole spec \(no --shard\), but this command runs shard 1/2"):
        _run(spec, "--out", full_run, "--shard", "1/2", "--resume", "--quiet")
    assert _run(spec, "--out", tmp_path / "merged", "--merge", shards[0], shards[1]) == 0
    with pytest.raises(PrefsimError, match=r"holds merged shards"):
        _run(spec, "--out", tmp_path / "merged", "--resume", "--quiet")
    assert json.loads((shards[0] / "manifest.json").read_text())["shard"] == shard["shard"]


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


@pytest.mark.parametrize(
    ("field", "other", "message"),
    [
        ("model", {"sha256": "1" * 64}, r"model.path with SHA-256 1{64} instead of 0{64}"),
        ("reward_model", {"sha256": "1" * 64}, r"oracle.path \(the reward model\) with SHA-256 1{64} instead of 0{64}"),
        (
            "source_digest",
            "1" * 64,
            r"other source files \(git commit 0{40} \(clean\) instead of git commit 0{40} \(clean\)\)",
        ),
        (
            "resumed",
            [{"git_commit": "2" * 40, "git_dirty": True, "source_digest": "3" * 64}],
            r"other source files \(git commit 2{40} with uncommitted changes instead of git commit 0{40} \(clean\)\)",
        ),
        ("versions", {"prefsim": "0.2", "torch": "x"}, r"prefsim 0.2 instead of 0.1"),
        # another commit, uncommitted changes: the same source files, the same code
        ("git_commit", "1" * 40, None),
        ("git_dirty", True, None),
    ],
)
def test_merge_refuses_shards_computed_by_other_code_or_from_another_model(tmp_path, field, other, message):
    """A shard of another commit or with uncommitted changes was refused although its source files were the
    same (a README-only commit); a shard resumed by other code was not: every start's code is compared."""
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(model=tmp_path / "llama"))
    spec = load_spec(spec_path)
    recorded = {
        "model": {"sha256": "0" * 64},
        "reward_model": {"sha256": "0" * 64},
        "git_commit": "0" * 40,
        "git_dirty": False,
        "source_digest": "0" * 64,
        "versions": {"prefsim": "0.1", "torch": "x"},
    }
    shards = []
    for index in range(2):
        shard = tmp_path / f"shard-{index}"
        shard.mkdir()
        manifest = {"spec": spec.raw, **recorded, "shard": shard_record(spec, index, 2)}
        if index == 1:  # shard 1 was computed by other code, or trained another model
            manifest[field] = other
        (shard / "manifest.json").write_text(json.dumps(manifest))
        shards.append(shard)
    unfinished = "has 0 of 1 iterations"  # the checks of the shards' code and models passed
    if message is None:
        with pytest.raises(PrefsimError, match=unfinished):
            merge_llm_shards(spec, shards, tmp_path / "merged")
        return
    with pytest.raises(PrefsimError, match=rf"shard-1' is foreign: shard 1/2 was computed with {message}"):
        merge_llm_shards(spec, shards, tmp_path / "merged")
    # --allow-other-code lets other code through, never another model
    with pytest.raises(PrefsimError, match=unfinished if field not in ("model", "reward_model") else "is foreign"):
        merge_llm_shards(spec, shards, tmp_path / "merged", allow_other_code=True)
    # a manifest written before these fields were recorded: they are unknown and not compared
    manifest = json.loads((shards[1] / "manifest.json").read_text())
    del manifest[field]
    (shards[1] / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PrefsimError, match=unfinished):
        merge_llm_shards(spec, shards, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_with_allow_other_code_warns_and_records_what_differs(sharded, tmp_path, capsys):
    spec, _, shards = sharded
    copies = [tmp_path / shard.name for shard in shards]
    for shard, copy in zip(shards, copies, strict=True):
        shutil.copytree(shard, copy)
    manifest = json.loads((copies[1] / "manifest.json").read_text())
    (copies[1] / "manifest.json").write_text(
        json.dumps({**manifest, "git_commit": "1" * 40, "source_digest": "0" * 64})
    )
    with pytest.raises(PrefsimError, match=r"shard-1' is foreign: .*git commit 1{40} .* or pass --allow-other-code"):
        _run(spec, "--out", tmp_path / "merged", "--merge", *copies)
    capsys.readouterr()
    assert _run(spec, "--out", tmp_path / "merged", "--merge", *copies, "--allow-other-code") == 0
    assert "warning: --merge --allow-other-code: '" in capsys.readouterr().err
    merged = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    (line,) = merged["allowed_other_code"]
    assert "(shard 1/2) was computed with other source files (git commit 1111" in line
    assert [entry["git_commit"] for entry in merged["merged_from"]] == [manifest["git_commit"], "1" * 40]
    assert merged["merged_from"][1]["source_digest"] == "0" * 64
    with pytest.raises(PrefsimError, match="--allow-other-code goes with --resume or --merge"):
        _run(spec, "--out", tmp_path / "new", "--allow-other-code")


@pytest.mark.parametrize("entry", [{"index": 1}, {"index": "a", "count": 2}, {"index": 2, "count": 2}])
def test_merge_refuses_a_shard_whose_manifest_entry_is_damaged(sharded, tmp_path, entry):
    """A manifest whose ``shard`` entry lacks ``count`` or holds a non-integer was a KeyError / ValueError traceback."""
    spec, _, shards = sharded
    damaged = tmp_path / "shard-1"
    shutil.copytree(shards[1], damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    (damaged / "manifest.json").write_text(json.dumps({**manifest, "shard": entry}))
    with pytest.raises(PrefsimError, match=r"'.*shard-1': its manifest's shard entry .* is damaged"):
        merge_llm_shards(load_spec(spec), [shards[0], damaged], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
