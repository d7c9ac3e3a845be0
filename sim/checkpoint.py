"""Checkpoints inside a long rule table: the trajectory's state between two time blocks, kept in the result
directory so that ``--resume`` continues an interrupted rule from its last saved block, not from iteration 0.

A rule table (or seed block) that runs in time blocks (:func:`sim.shared_engine.run_blocks`) saves,
whenever :data:`SAVE_SECONDS` have passed since its last save and blocks remain, all it has computed so far
to ``out/parts/<part>.progress.npz`` (:data:`sim.results_io.PROGRESS_SUFFIX`): the carried state (its
leaves as arrays), the number of blocks and updates done, the rows recorded so far and, for a run in seed
groups (:func:`sim.trajectory.simulate_grid`), the results of the groups already finished.  Each group
(or the whole run) is one *scope* of the file.

The file is replaced atomically and names the part's fingerprint (:func:`sim.experiment.part_fingerprint`,
the part's name, the JAX version and backend); each scope names its block plan (block size, recorded
iterations, devices), a finished seed group its layout (groups, their size, devices).  A run
with ``resume`` uses a scope only when both match and the saved state has the shapes and types the run
carries: it then continues with the same compiled programs from the same state, so its numbers equal
those of an uninterrupted run bit for bit (``tests/test_checkpoint.py``).  Anything else (an unreadable
file, another spec, prefsim or JAX version or backend, another plan or layout) is reported and the rule starts from its
beginning.  The file is removed once the part's rows are written.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from bandits.errors import PrefsimError
from sim.results_io import write_files_atomic

#: Seconds of running between two saves of a rule's state (a save copies the state and the rows recorded
#: so far to the host and writes them: about a millisecond per megabyte).  Runs shorter than this, the
#: common case, never write a checkpoint.
SAVE_SECONDS = 30.0

_SEPARATOR = "::"
_FINGERPRINT = "fingerprint"


class BlockState(NamedTuple):
    """What :func:`sim.shared_engine.run_blocks` has computed after some of its blocks."""

    blocks: int
    """Blocks (calls of the compiled block, the starting call included) done."""
    done: int
    """Updates done."""
    carry: list
    """The carried state's leaves (:func:`jax.tree_util.tree_leaves` order), as NumPy arrays."""
    first: dict
    """Column → (G, S, 1): the row of iteration 0."""
    rows: dict
    """Column → (G, S, n): the rows recorded so far after iteration 0."""
    seen: np.ndarray
    """(G, S, n): per recorded row, the iteration a measurement found non-finite, else −1."""


def block_plan(record_iterations: Any, block_size: int, separate_start: bool, per_seed: Any) -> str:
    """A digest of how a run is cut into blocks and laid out: its block size, recorded iterations, whether
    it starts with a call of its own, and the shape, type and device count of its per-seed argument; then,
    after a space, those in words (:func:`plan_difference` says with them why a saved state is not used)."""
    record = np.ascontiguousarray(np.asarray(record_iterations, np.int64))
    sharding = getattr(per_seed, "sharding", None)
    devices = 1 if sharding is None else len(sharding.device_set)
    text = f"{int(block_size)}|{int(separate_start)}|{np.shape(per_seed)}|{np.dtype(per_seed.dtype)}|{devices}|"
    words = f"blocks of {int(block_size)} updates on {devices} device(s), per-seed input {np.shape(per_seed)}"
    return f"{hashlib.sha256(text.encode() + record.tobytes()).hexdigest()} {words} {np.dtype(per_seed.dtype)}"


def plan_difference(saved: str, plan: str) -> str:
    """Why the block plan ``saved`` is not ``plan`` (:func:`block_plan`), in words where both have them."""
    saved_words, words = saved.partition(" ")[2], plan.partition(" ")[2]
    if not saved_words or not words or saved_words == words:  # an older file, or another record of iterations
        return "another machine or version"
    return f"saved: {saved_words}; this run: {words}"


def checkpoint_machine() -> str:
    """What a saved state's numbers depend on besides the spec: the JAX version and the backend it ran on."""
    return f"jax {jax.__version__} on {jax.default_backend()}"


class TrajectoryCheckpoint:
    """One part's checkpoint file (see the module docstring), read once when the run starts with ``resume``.

    ``say`` receives a line when a saved state is used or set aside.  :meth:`scope` gives the view a run
    in blocks (or one seed group of it) reads and writes."""

    def __init__(
        self, path: str | Path, fingerprint: str, resume: bool, say: Callable[[str], object] | None = None
    ) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.say = say or (lambda message: None)
        self._entries: dict[str, np.ndarray] = self._read() if resume else {}
        self._scopes: set[str] = set()
        self._last_save = time.monotonic()

    def _read(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            if not zipfile.is_zipfile(self.path):  # np.load would also read a lone .npy (or a pickle)
                raise ValueError("not a checkpoint written by prefsim")
            with np.load(self.path, allow_pickle=False) as data:
                entries = {name: np.asarray(data[name]) for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.say(f"{self.path} cannot be read ({reason}); the rule starts from its beginning")
            return {}
        if str(entries.pop(_FINGERPRINT, "")) != self.fingerprint:
            self.say(
                f"{self.path} was saved for another spec, prefsim or JAX version or backend; the rule starts from "
                "its beginning"
            )
            return {}
        return entries

    def scope(self, name: str) -> CheckpointScope:
        """The entries of the run (or seed group) ``name``; only the scopes asked for are saved again."""
        self._scopes.add(name)
        return CheckpointScope(self, name + _SEPARATOR)

    def _entries_of(self, prefix: str) -> dict[str, np.ndarray]:
        return _under(self._entries, prefix)

    def _replace(self, prefix: str, entries: dict[str, np.ndarray]) -> None:
        self._entries = {name: value for name, value in self._entries.items() if not name.startswith(prefix)}
        self._entries.update({prefix + name: value for name, value in entries.items()})

    def _due(self) -> bool:
        return time.monotonic() - self._last_save >= SAVE_SECONDS

    def _save(self) -> None:
        kept = {
            name: value
            for name, value in self._entries.items()
            if name.split(_SEPARATOR, 1)[0] in self._scopes  # another plan's scopes are not kept
        }
        buffer = io.BytesIO()
        np.savez(buffer, **{_FINGERPRINT: np.array(self.fingerprint)}, **kept)
        try:
            write_files_atomic({self.path: buffer.getvalue()})
        except PrefsimError as exc:  # a checkpoint is a convenience: the run goes on, and tries again later
            self.say(f"progress not saved, the run goes on: {str(exc).split('; the previous')[0]}")
        self._last_save = time.monotonic()


class CheckpointScope(NamedTuple):
    """The entries of one run in blocks (or one seed group) in a :class:`TrajectoryCheckpoint`."""

    checkpoint: TrajectoryCheckpoint
    prefix: str

    def state(self, plan: str) -> BlockState | None:
        """The saved state of a run with block plan ``plan`` (:func:`block_plan`), or ``None``."""
        entries = self.checkpoint._entries_of(self.prefix + "blocks" + _SEPARATOR)
        if not entries:
            return None
        if str(entries.get("plan", "")) != plan:
            why = plan_difference(str(entries.get("plan", "")), plan)
            self.checkpoint.say(f"the saved state was cut into other blocks ({why}); not used")
            return None
        try:
            count = int(entries["count"].size)
            return BlockState(
                int(entries["blocks"]),
                int(entries["done"]),
                [entries[f"carry{index}"] for index in range(count)],
                _columns(entries, "first"),
                _columns(entries, "rows"),
                entries["seen"],
            )
        except KeyError:
            self.checkpoint.say("the saved state is incomplete; not used")
            return None

    def restore(self, carry: Any, saved: BlockState) -> Any | None:
        """``saved``'s state in the structure and on the devices of ``carry`` (a live carry of the same run),
        or ``None`` (with a line said) when their leaves differ in number, shape or type."""
        leaves, structure = jax.tree_util.tree_flatten(carry)
        fits = len(leaves) == len(saved.carry) and all(
            np.shape(live) == stored.shape and np.dtype(live.dtype) == stored.dtype
            for live, stored in zip(leaves, saved.carry)
        )
        if not fits:
            self.checkpoint.say("the saved state does not fit this run's state; not used")
            return None
        placed = [jax.device_put(stored, live.sharding) for live, stored in zip(leaves, saved.carry)]
        self.checkpoint.say(f"resumed from its saved state after {saved.done} updates ({self.checkpoint.path})")
        return jax.tree_util.tree_unflatten(structure, placed)

    def keep(self, plan: str, state: Callable[[], BlockState]) -> None:
        """Save the run's state (``state()`` builds it, only when a save is due)."""
        if not self.checkpoint._due():
            return
        saved = state()
        entries = {"plan": np.array(plan), "blocks": np.array(saved.blocks), "done": np.array(saved.done)}
        entries["count"] = np.zeros(len(saved.carry), np.int8)
        entries.update({f"carry{index}": np.asarray(leaf) for index, leaf in enumerate(saved.carry)})
        entries.update({f"first{_SEPARATOR}{name}": value for name, value in saved.first.items()})
        entries.update({f"rows{_SEPARATOR}{name}": value for name, value in saved.rows.items()})
        entries["seen"] = saved.seen
        self.checkpoint._replace(self.prefix + "blocks" + _SEPARATOR, entries)
        self.checkpoint._save()

    def finished(self) -> tuple[dict, np.ndarray] | None:
        """The saved result (column → array, first non-finite iterations) of this finished group, or ``None``."""
        entries = self.checkpoint._entries_of(self.prefix + "result" + _SEPARATOR)
        if "first_nonfinite" not in entries:
            return None
        return _columns(entries, "column"), entries["first_nonfinite"]

    def finish(self, metrics: dict, first_nonfinite: np.ndarray) -> None:
        """Keep this group's result in place of its block state; saved with the next save."""
        entries = {f"column{_SEPARATOR}{name}": np.asarray(value) for name, value in metrics.items()}
        entries["first_nonfinite"] = np.asarray(first_nonfinite)
        self.checkpoint._replace(self.prefix, {"result" + _SEPARATOR + name: v for name, v in entries.items()})
        if self.checkpoint._due():
            self.checkpoint._save()


def _columns(entries: dict, kind: str) -> dict:
    return _under(entries, kind + _SEPARATOR)


def _under(entries: dict, prefix: str) -> dict:
    """The entries whose names start with ``prefix``, named without it."""
    return {name[len(prefix) :]: value for name, value in entries.items() if name.startswith(prefix)}
