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
from collections.abc import Iterable
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
