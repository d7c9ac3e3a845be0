"""What a bridge run was computed with, for its manifest: the code (the SHA-256 of the bridge's source files,
prefsim and package versions, and for the reader the git commit and uncommitted changes) and the identity
of the model weights and of a local reward model.

The simulator's functions give the code's identity (:func:`sim.experiment.git_commit`,
:func:`sim.provenance.git_dirty`, :func:`sim.provenance.prefsim_version`,
:func:`sim.provenance.source_digest`), so a bridge manifest records them as a simulator manifest does
(``git_commit``, ``git_dirty``, ``source_digest``, ``versions["prefsim"]``).  ``source_digest`` covers the
source files of the code the bridge runs (:data:`SOURCE_PACKAGES`: ``llm_bridge``, ``sim``, ``bandits``);
``--resume`` and ``--merge`` compare it and the package versions (:func:`sim.provenance.code_differences`), not
the commit and dirty flag, which change with files that compute nothing (a README) as well.

A model is identified by the SHA-256 of the files loading reads (:func:`model_files`): the chosen
``.gguf`` file, or in a Hugging Face directory its weights (``*.safetensors``, or ``*.bin`` where there
are none: transformers prefers safetensors), its configuration and tokenizer files (``*.json``,
``*.txt``, ``*.model``, ``*.tiktoken``, and the chat templates ``*.jinja`` that transformers 5 saves) at
the top of the directory, and the chat templates in its ``additional_chat_templates/`` folder.  Each file
is read once, in 8 MiB chunks (no file is held in memory), several files at a time in threads
(``hashlib`` releases the GIL): about 1.5 GB/s per core with SHA extensions, so 0.12 s for SmolLM2's 98 MB
GGUF file and 10–20 s for the 14 GB of a 7B model in bfloat16 read from a warm page cache (a cold disk
reads slower).  A training run computes it once per start (a ``--resume`` included), on the main process,
after the checks that do not need it; ``--merge`` and ``--predict`` never hash (``--merge`` compares the
digests the shards' manifests record).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llm_bridge.models import resolve_model_path
from llm_bridge.spec import BridgeSpec
from sim.experiment import git_commit
from sim.provenance import git_dirty, installed_versions, prefsim_version, source_digest

#: Suffixes of the configuration and tokenizer files of a Hugging Face model directory that loading reads
#: (``.jinja``: ``chat_template.jinja``, which transformers 5 saves instead of a key of tokenizer_config.json).
CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja")
#: The folder of a Hugging Face model directory holding named chat templates (``<name>.jinja``), which the
#: tokenizer loads as well.
CHAT_TEMPLATES_DIR = "additional_chat_templates"
#: The packages whose source files the manifest's ``source_digest`` covers: the code a bridge run executes.
SOURCE_PACKAGES = ("llm_bridge", "sim", "bandits")
#: Packages whose versions a bridge manifest records besides prefsim's and Python's.
PACKAGES = ("torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers")
#: Bytes read at a time while hashing a file.
CHUNK = 8 << 20


def versions() -> dict:
    """prefsim's version, Python's and those of :data:`PACKAGES` (None where one is not installed)."""
    return {"prefsim": prefsim_version(), **installed_versions(PACKAGES)}


def model_files(path: str) -> tuple[Path, list[Path]]:
    """``(location, files)``: where a ``model.path`` resolves to (:func:`llm_bridge.models.resolve_model_path`)
    and the files that loading it reads (see the module docstring), sorted by name."""
    directory, gguf = resolve_model_path(path)
    if gguf is not None:
        return directory / gguf, [directory / gguf]
    return directory, directory_files(directory)


def directory_files(directory: Path) -> list[Path]:
    """The files of a Hugging Face model directory that loading reads: the weights and the configuration
    and tokenizer files at its top and the chat templates of :data:`CHAT_TEMPLATES_DIR` (see the module
    docstring), sorted by path."""
    top = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    weights = [p for p in top if p.suffix == ".safetensors"] or [p for p in top if p.suffix == ".bin"]
    templates = directory / CHAT_TEMPLATES_DIR
    named = (
        [p for p in templates.iterdir() if p.is_file() and p.suffix == ".jinja" and not p.name.startswith(".")]
        if templates.is_dir()
        else []
    )
    return sorted([*weights, *(p for p in top if p.suffix in CONFIG_SUFFIXES), *named])


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks of :data:`CHUNK`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(path: str) -> dict:
    """``{"path", "location", "sha256", "files"}``: the model of ``model.path`` as the manifest records it.

    ``files`` maps each file that loading reads to its size and SHA-256; ``sha256`` is the SHA-256 of that
    map (names, sizes and digests), the model's identity.
    """
    location, files = model_files(path)
    return _identity(path, location, files)


def _identity(path: str, location: Path, files: list[Path]) -> dict:
    """The record of :func:`model_identity`; ``files`` are named by their path under the model's directory
    (a file at its top, or a ``.gguf`` file: its name)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(files)))) as pool:
        digests = list(pool.map(file_sha256, files))
    directory = location if location.is_dir() else location.parent
    table = {
        file.relative_to(directory).as_posix(): {"bytes": file.stat().st_size, "sha256": digest}
        for file, digest in zip(files, digests, strict=True)
    }
    summary = hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()
    return {"path": path, "location": str(location.resolve()), "sha256": summary, "files": table}


def run_provenance(spec: BridgeSpec) -> dict:
    """The manifest's record of what computes the run: code and versions, the model, a local reward model
    (``reward_model``: None unless ``oracle.kind = "reward_model"``; None as well where ``oracle.path`` is
    not a directory, which the oracle then refuses, naming it)."""
    reward = spec.oracle.path if spec.oracle.kind == "reward_model" and spec.oracle.path else None
    reward_dir = Path(reward).expanduser() if reward is not None else None
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "source_digest": source_digest(SOURCE_PACKAGES),
        "versions": versions(),
        "model": model_identity(spec.model.path),
        "reward_model": (
            _identity(reward, reward_dir, directory_files(reward_dir))
            if reward_dir is not None and reward_dir.is_dir()
            else None
        ),
    }


#: The manifest keys whose models :func:`changed_models` compares, and what each is called in messages.
MODEL_KEYS = {"model": "model.path", "reward_model": "oracle.path (the reward model)"}


def differing_models(recorded: dict, current: dict) -> list[str]:
    """The keys of :data:`MODEL_KEYS` whose model SHA-256 differs between two records (manifests, or
    :func:`run_provenance`).  A model either lacks (a manifest written before models were hashed) is
    unknown, not changed."""
    return [
        key
        for key in MODEL_KEYS
        if isinstance(before := recorded.get(key), dict)
        and isinstance(now := current.get(key), dict)
        and before.get("sha256") != now.get("sha256")
    ]


def changed_models(recorded: dict, current: dict) -> list[str]:
    """One line per model of ``current`` (:func:`run_provenance`) whose identity differs from the one
    ``recorded`` (a manifest; :func:`differing_models`), naming the files that differ."""
    lines = []
    for key in differing_models(recorded, current):
        name, before, now = MODEL_KEYS[key], recorded[key], current[key]
        old, new = before.get("files") or {}, now.get("files") or {}
        differ = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
        lines.append(
            f"{name} {now['path']!r} (SHA-256 {str(before.get('sha256'))[:12]}… then, {now['sha256'][:12]}… now; "
            f"files that differ: {', '.join(differ) or 'none listed'})"
        )
    return lines


def starts(manifest: dict) -> list[dict]:
    """Every start of a run a manifest records: the first (the manifest itself) and each ``resumed`` entry."""
    resumed = manifest.get("resumed")
    return [manifest, *(start for start in (resumed if isinstance(resumed, list) else []) if isinstance(start, dict))]
