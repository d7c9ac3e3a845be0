"""Where a result came from, and files written as the user expects: the prefsim version, whether the
source tree had uncommitted changes, and the permission bits of written files.

``git_dirty`` complements :func:`sim.experiment.git_commit`: a commit alone does not reproduce a run
made from a modified tree.  Files written through a temporary file (``tempfile`` creates them 0600)
get the mode an ordinary ``open`` would give them under the user's umask (:func:`default_file_mode`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import platform
import subprocess
from collections.abc import Collection, Iterable, Mapping
from importlib import metadata
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent
#: Packages whose every source file :func:`source_digest` covers by default: the code that computes and
#: draws a simulator result (part of a kept program's key, :mod:`sim.program_cache`, and of a result
#: part's fingerprint, :func:`sim.experiment.code_identity`).
SOURCE_PACKAGES = ("sim", "bandits")


def prefsim_version() -> str:
    """The installed prefsim version ("unknown" when run from a source tree that is not installed)."""
    try:
        return metadata.version("prefsim")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def installed_versions(names: Iterable[str]) -> dict:
    """Python's version (``"python"``) and the installed version of each package of ``names`` (None where
    one is not installed), as a manifest records them."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_dirty() -> bool | None:
    """Whether the git checkout prefsim runs from has uncommitted changes to tracked files.

    ``None`` when prefsim does not run from a git checkout (an installed wheel) or git is missing.
    Untracked files are ignored: results depend on tracked sources only.
    """
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return bool(result.stdout.strip())


def default_file_mode() -> int:
    """0o666 minus the process umask: the mode ``open(path, "w")`` would create a file with."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@functools.cache
def source_digest(packages: tuple[str, ...] | None = None) -> str:
    """SHA-256 of every source file of ``packages`` (default: prefsim's, :data:`SOURCE_PACKAGES`), by path
    relative to its package and content: the code that runs, committed or not, from a git checkout or an
    installed copy (also part of a result part's fingerprint, :func:`sim.experiment.code_identity`; the LLM
    bridge's manifest records the digest of ``llm_bridge``, ``sim`` and ``bandits``,
    :func:`llm_bridge.provenance.run_provenance`).  Cached per ``packages``: the code as it was when first
    asked in this process."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES if packages is None else packages:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            if path.name.startswith(".") or not path.is_file():  # an editor's lock or backup, a dangling link
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_text(record: Mapping) -> str:
    """``git commit <commit> (clean)`` / ``… with uncommitted changes`` / ``an unknown git commit``: where a
    manifest's code came from (its ``git_commit`` and ``git_dirty``), for messages."""
    commit, dirty = record.get("git_commit"), record.get("git_dirty")
    state = " with uncommitted changes" if dirty else " (clean)" if dirty is False else ""
    return f"git commit {commit}{state}" if commit else "an unknown git commit"


def code_differences(recorded: Mapping, current: Mapping, packages: Collection[str] | None = None) -> list[str]:
    """How the code that computed ``recorded`` differs from ``current``, in words.  Both are records with a
    manifest's code fields: ``versions`` (package → version), ``source_digest``, ``git_commit`` and ``git_dirty``
    (a simulator or bridge manifest, a start in a bridge manifest's ``resumed`` list, or the running code's
    own record).  Each version both record that differs (of ``packages`` only, when given), then other source
    files (``source_digest``), naming both git commits.  A field either lacks (a manifest written before it was
    recorded) is unknown, not compared; a commit or an uncommitted edit that leaves the source files alone (a
    README) is no difference."""
    mine = recorded.get("versions") if isinstance(recorded.get("versions"), Mapping) else {}
    theirs = current.get("versions") if isinstance(current.get("versions"), Mapping) else {}
    names = [name for name in mine if name in theirs and (packages is None or name in packages)]
    reasons = [f"{name} {mine[name]} instead of {theirs[name]}" for name in sorted(names) if mine[name] != theirs[name]]
    before, now = recorded.get("source_digest"), current.get("source_digest")
    if before and now and before != now:
        reasons.append(f"other source files ({code_text(recorded)} instead of {code_text(current)})")
    return reasons
