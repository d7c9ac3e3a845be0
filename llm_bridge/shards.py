"""Shards of an LLM bridge spec: one or more whole ``[[rule]]`` tables per shard, and their merge.

Each rule of a bridge spec trains from π_ref in its own directory with the spec's seeds (common random
numbers: samples depend on the spec seed and the iteration, not on the other rules), so a rule run
alone gives the rows it gives in a run of every rule.  ``prefsim llm SPEC --out DIR --shard I/N`` runs
the rules :func:`sim.shards.deal` gives shard I (rule i goes to shard i mod N; N = the number of
rules puts each rule in its own job, e.g. on its own GPU); ``prefsim llm SPEC --merge DIR… --out OUT``
checks that the shards come from this spec, its prompt files as they are now (SHA-256) and the same package
versions and cover every rule once,
then writes ``OUT/metrics.csv`` (the rules' rows in spec order, equal to the unsharded run's but for the
wall-clock columns ``seconds`` and ``*_tokens_per_s``),
``win_rate.png`` and a manifest naming the shard directories, which keep the checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bandits.errors import PrefsimError
from llm_bridge.run_layout import MANIFEST_FILE, METRICS_FILE, WIN_RATE_FIGURE
from llm_bridge.spec import BridgeSpec, changed_prompt_files
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


def merge_llm_shards(spec: BridgeSpec, directories: list, out: Path) -> pd.DataFrame:
    """Check the shard ``directories`` of ``spec`` and write the merged ``metrics.csv`` and figure to ``out``."""
    manifests = []
    for directory in map(Path, directories):
        path = directory / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise PrefsimError(f"{str(directory)!r} holds no bridge run (no readable manifest.json).") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("shard"), dict):
            raise PrefsimError(f"{str(directory)!r} is not a shard (its manifest names no shard; run it with --shard).")
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
    for directory, manifest in manifests:
        shard = manifest["shard"]
        if manifest.get("versions") != reference.get("versions") or int(shard["count"]) != count:
            raise PrefsimError(
                f"{str(directory)!r} is foreign: shard {shard['index']}/{shard['count']} with versions "
                f"{manifest.get('versions')}, but {str(reference_dir)!r} is shard of {count} with versions "
                f"{reference.get('versions')}."
            )
    ordered = order_shards(
        [(directory, int(manifest["shard"]["index"])) for directory, manifest in manifests],
        count,
        lambda i: f"rules {', '.join(entry.label for entry in shard_entries(spec, i, count))}",
        "--shard I/N",
    )
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
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        **{key: value for key, value in reference.items() if key != "shard"},
        "merged_from": [{"directory": str(ordered[i]), "shard": f"{i}/{count}"} for i in range(count)],
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    table.to_csv(out / METRICS_FILE, index=False)
    plot_win_rate(table, out / WIN_RATE_FIGURE)
    return table
