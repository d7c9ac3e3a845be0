"""Shards of an LLM bridge spec: one or more whole ``[[rule]]`` tables per shard, and their merge.

Each rule of a bridge spec trains from π_ref in its own directory with the spec's seeds (common random
numbers: samples depend on the spec seed and the iteration, not on the other rules), so a rule run
alone gives the rows it gives in a run of every rule.  ``prefsim llm SPEC --out DIR --shard I/N`` runs
the rules :func:`sim.shards.deal` gives shard I (rule i goes to shard i mod N; N = the number of
rules puts each rule in its own job, e.g. on its own GPU); ``prefsim llm SPEC --merge DIR… --out OUT``
checks that the shards come from this spec, its prompt files as they are now (SHA-256), the same model (and
reward model) weights (SHA-256) and the same code: every start of every shard (its first and each
``resumed`` one) ran the package versions and source files (``source_digest``) of the first shard's first
start (:func:`sim.provenance.code_differences`; not the git commit and dirty flag, which change with
files that compute nothing; a field a manifest lacks, written before it was recorded, is not compared) and
that the shards cover every rule once; ``OUT`` may not be one of the shard directories, nor a run directory
other than an earlier merge.  ``--allow-other-code`` merges shards computed by other code with a warning and
records the differences in the merged manifest (``allowed_other_code``).  It then writes, together and
atomically under ``OUT``'s lock, ``OUT/metrics.csv`` (the rules' rows in spec order, equal to the unsharded
run's but for the wall-clock columns ``seconds``, ``*_seconds`` and ``*_tokens_per_s``), ``win_rate.png`` and a manifest
naming the shard directories, which keep the checkpoints, with what computed each (commit, dirty flag,
source digest, versions, later starts).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from bandits.errors import PrefsimError
from llm_bridge.plot import png_bytes
from llm_bridge.provenance import MODEL_KEYS, differing_models, starts
from llm_bridge.run_layout import MANIFEST_FILE, METRICS_FILE, WIN_RATE_FIGURE
from llm_bridge.spec import BridgeSpec, changed_prompt_files
from sim.merge import merge_target
from sim.provenance import code_differences
from sim.results_io import json_bytes, output_lock, read_json_object, write_files_atomic
from sim.shards import deal, order_shards
from sim.win_rate import plot_win_rate


def shard_entries(spec: BridgeSpec, index: int, count: int) -> tuple:
    """The rule entries of shard ``index`` of ``count``."""
    if count > len(spec.rules):
        raise PrefsimError(
            f"--shard {index}/{count}: this spec has {len(spec.rules)} rule(s) and a shard holds whole rules; use "
            f"at most {len(spec.rules)} shards."
        )
    return tuple(spec.rules[i] for i in deal([1] * len(spec.rules), count)[index])


def shard_record(spec: BridgeSpec, index: int, count: int) -> dict:
    """The ``shard`` entry of a shard's manifest."""
    return {"index": index, "count": count, "labels": [entry.label for entry in shard_entries(spec, index, count)]}


def _plain(data) -> object:
    return json.loads(json.dumps(data, default=str))


#: What a merged manifest's ``merged_from`` entry records of each shard's code (beside its ``resumed`` list).
CODE_KEYS = ("git_commit", "git_dirty", "source_digest", "versions")


def _code_differences(manifest: dict, reference: dict) -> list[str]:
    """How the code of every start of a shard (its first and each ``resumed`` one) differs from the code
    that started the reference shard (:func:`sim.provenance.code_differences`)."""
    found = (reason for start in starts(manifest) for reason in code_differences(start, reference))
    return list(dict.fromkeys(found))


def _model_differences(manifest: dict, reference: dict) -> list[str]:
    """The models (model, reward model) whose SHA-256 differs between two shards' manifests
    (:func:`llm_bridge.provenance.differing_models`), in words."""
    return [
        f"{MODEL_KEYS[key]} with SHA-256 {manifest[key].get('sha256')} instead of {reference[key].get('sha256')}"
        for key in differing_models(manifest, reference)
    ]


def merge_llm_shards(spec: BridgeSpec, directories: list, out: Path, allow_other_code: bool = False) -> pd.DataFrame:
    """Check the shard ``directories`` of ``spec`` and write the merged ``metrics.csv``, figure and manifest
    to ``out`` (together, atomically, under ``out``'s lock).  ``allow_other_code`` (``--allow-other-code``):
    merge shards computed by other code (source files, package versions) with a warning, recording the
    differences in the merged manifest's ``allowed_other_code``."""
    manifests = []
    for directory in map(Path, directories):
        path = directory / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise PrefsimError(f"{str(directory)!r} holds no bridge run (no readable manifest.json).") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("shard"), dict):
            raise PrefsimError(f"{str(directory)!r} is not a shard (its manifest names no shard; run it with --shard).")
        _check_shard_entry(directory, manifest["shard"])
        if _plain(manifest.get("spec")) != _plain(spec.raw):
            raise PrefsimError(f"{str(directory)!r} is foreign: it was run with another spec than this one.")
        for key in changed_prompt_files(spec, manifest.get("prompt_files")):
            raise PrefsimError(
                f"{str(directory)!r} is foreign: it was trained on another {key} than "
                f"{spec.prompt_files[key]['path']!r} (its manifest records another SHA-256 of that file); merge shards "
                "trained on the file as it is now, or restore the file they were trained on."
            )
        manifests.append((directory, manifest))
    reference_dir, reference = manifests[0]
    count = int(reference["shard"]["count"])
    allowed = []
    for directory, manifest in manifests:
        shard = manifest["shard"]
        if int(shard["count"]) != count:
            raise PrefsimError(
                f"{str(directory)!r} is foreign: it is shard {shard['index']}/{shard['count']}, but "
                f"{str(reference_dir)!r} is a shard of {count}."
            )
        models = _model_differences(manifest, reference)
        if models:
            raise PrefsimError(
                f"{str(directory)!r} is foreign: shard {shard['index']}/{shard['count']} was computed with "
                f"{'; '.join(models)} (those of {str(reference_dir)!r}); merge shards trained from one model."
            )
        code = _code_differences(manifest, reference)
        if code and not allow_other_code:
            raise PrefsimError(
                f"{str(directory)!r} is foreign: shard {shard['index']}/{shard['count']} was computed with "
                f"{'; '.join(code)} (those that started {str(reference_dir)!r}); merge shards run by one prefsim "
                "(a checkout of the commit named, with the same package versions), or pass --allow-other-code to "
                "merge them all the same (recorded in the merged manifest)."
            )
        if code:
            allowed.append(
                f"{str(directory)!r} (shard {shard['index']}/{shard['count']}) was computed with {'; '.join(code)} "
                f"(those that started {str(reference_dir)!r})"
            )
    ordered = order_shards(
        [(directory, int(manifest["shard"]["index"])) for directory, manifest in manifests],
        count,
        lambda i: f"rules {', '.join(entry.label for entry in shard_entries(spec, i, count))}",
        "--shard I/N",
    )
    out = merge_target(out, ordered)
    frames = []
    for index in range(count):
        for entry in shard_entries(spec, index, count):
            rule_dir = ordered[index] / entry.label
            state = rule_dir / "state.json"
            finished = json.loads(state.read_text())["finished"] if state.is_file() else 0
            if finished != spec.iterations:
                raise PrefsimError(
                    f"{str(rule_dir)!r} has {finished} of {spec.iterations} iterations; finish that shard with "
                    "--resume before merging."
                )
            frames.append((entry.label, pd.read_csv(rule_dir / "metrics.csv")))
    order = [entry.label for entry in spec.rules]
    table = pd.concat([frame for _, frame in sorted(frames, key=lambda item: order.index(item[0]))], ignore_index=True)
    by_index = {int(manifest["shard"]["index"]): manifest for _, manifest in manifests}
    manifest = {
        **{key: value for key, value in reference.items() if key not in ("shard", "resumed")},
        "merged_from": [
            {
                "directory": str(ordered[i]),
                "shard": f"{i}/{count}",
                **{key: by_index[i][key] for key in CODE_KEYS if key in by_index[i]},
                **_resumes(by_index[i]),
            }
            for i in range(count)
        ],
        **({"allowed_other_code": allowed} if allowed else {}),
        "merged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for line in allowed:
        print(f"warning: --merge --allow-other-code: {line}; merged all the same.", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        _check_merge_target(out)
        write_files_atomic(
            {
                out / MANIFEST_FILE: json_bytes(manifest),
                out / METRICS_FILE: table.to_csv(index=False).encode(),
                out / WIN_RATE_FIGURE: png_bytes(lambda path: plot_win_rate(table, path)),
            }
        )
    return table


def _check_shard_entry(directory: Path, shard: dict) -> None:
    """Refuse a manifest's ``shard`` entry that is not :func:`shard_record`'s ``{"index": I, "count": N, …}``
    with integers 0 ≤ I < N (a damaged or hand-edited manifest)."""
    index, count = shard.get("index"), shard.get("count")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)) or not 0 <= index < count:
        raise PrefsimError(
            f"{str(directory)!r}: its manifest's shard entry {shard!r} is damaged (it needs integers index and "
            "count with 0 ≤ index < count); restore manifest.json, or run that shard again with --shard I/N."
        )


def _check_merge_target(out: Path) -> None:
    """Refuse an ``out`` that holds a bridge run other than an earlier merge: its manifest would be replaced."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return
    held = read_json_object(path)
    if held is None or "merged_from" not in held:
        raise PrefsimError(
            f"--out {str(out)!r} holds a bridge run that is not a merge (its manifest.json would be replaced); merge "
            "into another directory."
        )


def _resumes(manifest: dict) -> dict:
    """A shard's ``resumed`` list (the starts after its first: when, by which code), for ``merged_from``."""
    return {"resumed": manifest["resumed"]} if manifest.get("resumed") else {}
