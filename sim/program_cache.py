"""Compiled programs kept on disk between processes, so that a repeated run neither traces nor lowers them.

JAX's persistent compilation cache (:func:`sim.precision.enable_compile_cache`) skips XLA's compilation
only: a new process still traces every jitted function in Python and lowers it to StableHLO before it
can look its program up.  In the end-to-end case of ``benchmarks/run_all.py`` (K = 100, 256 per-seed
games) that was ≈ 0.6–0.9 s of a ≈ 5.3 s run, for the trajectory, the regularised targets and the
Lemke–Howson candidates.  A :class:`KeptProgram` looks the loaded executable up by a key instead, and
keeps what it compiles (``jax.experimental.serialize_executable``) in the directory :func:`keep_programs`
names (the ``prefsim`` commands: ``programs/`` in the compile cache's directory; off with it).

The key (:func:`program_digest`) is a SHA-256 of

* what is compiled: the program's name, the caller's description of what the Python function computes
  (its ``key``), the static arguments, and the other arguments' pytree, shapes, dtypes, weak types,
  shardings and placement;
* the code and the setting it is compiled with: every source file of prefsim's packages (``sim``,
  ``bandits``), the versions of Python, JAX, jaxlib and NumPy, JAX's configuration as in effect for the
  call (64-bit mode, matmul precision, PRNG implementation, …), ``XLA_FLAGS``, the devices, and the host
  CPU's model and feature flags (a cache directory shared by machines keeps a program per CPU).

Only plain data describes a key (:func:`describe`: numbers, strings, bytes, tuples, lists, dicts, named
tuples, frozen dataclasses, NumPy arrays by their bytes, types by name).  A key holding anything else —
a function, or a :class:`ProcessLocal` — is kept in this process only, by ``jax.jit`` as before; so is
a call with a tracer or another kind of argument.  A trajectory is kept only under a :class:`SourceKey`,
which ``sim.run`` gives prefsim's own rules: a rule registered at run time has code outside prefsim's
source.  A file that is corrupt, from other versions or does not load costs a compilation, never the
run; a new one is written to a temporary name and renamed into place, and beyond
:data:`MAX_KEPT_PROGRAMS` files the least recently used go.  Like JAX's own cache, the directory must
be the user's own: loading a program runs its code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.monitoring
import jaxlib
import numpy as np
from jax.experimental import serialize_executable
from jax.sharding import NamedSharding, SingleDeviceSharding

from bandits.inputs import as_path
from sim.provenance import source_digest

#: Bumped whenever what a kept file holds, or what its key covers, changes.
FORMAT = "prefsim-program-1"
#: The folder of the compile cache's directory the ``prefsim`` commands keep programs in.
PROGRAMS_FOLDER = "programs"
#: JAX settings left out of a program's key: where caches and logs go, and how errors are reported,
#: change no program.
IGNORED_SETTINGS = ("cache", "log", "dump", "traceback", "pprint", "explain", "_timeout", "transfer_guard")

_directory: Path | None = None


def keep_programs(directory: str | os.PathLike | None) -> contextlib.AbstractContextManager[Path | None]:
    """Context manager: programs are kept in ``directory`` (created) inside, as before outside;
    ``None`` (or a directory that cannot be made) keeps none."""
    return _kept_in(directory)


@contextlib.contextmanager
def _kept_in(directory: str | os.PathLike | None) -> Iterator[Path | None]:
    global _directory
    previous = _directory
    _directory = None if directory is None else usable_directory(directory)
    try:
        yield _directory
    finally:
        _directory = previous


def usable_directory(directory: str | os.PathLike) -> Path | None:
    """``directory`` made if need be, or ``None`` when it cannot be made (a cache that cannot be written
    costs speed, never the run)."""
    path = as_path(directory, "directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


class ProcessLocal:
    """Wraps an object that identifies a program in this process only (compared by identity): a key
    holding one is not kept on disk (:func:`describe` refuses it)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcessLocal) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


class SourceKey(tuple):
    """A key that, with prefsim's source, identifies what a program computes (a built-in rule's name and
    parameters, :func:`sim.rules.uses_built_in_code`): programs compiled under it may be kept between
    processes.  Under a plain tuple they are kept in this process only."""

    __slots__ = ()


class NotDescribable(TypeError):
    """A key part :func:`describe` cannot write as the same text in every process."""


def describe(value: Any) -> str:
    """Text that names ``value`` the same way in every process, for plain data only; raises
    :class:`NotDescribable` for anything else (a function, an object of unknown kind, a :class:`ProcessLocal`)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, np.dtype):
        return f"dtype:{value.str}"
    if isinstance(value, np.generic):
        return f"{value.dtype.str}:{value.item()!r}"
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"ndarray:{value.dtype.str}:{value.shape}:{digest}"
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return f"{_type_name(value)}({','.join(describe(item) for item in value)})"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({','.join(describe(item) for item in value)})"
    if isinstance(value, dict):
        return f"dict({','.join(sorted(f'{describe(k)}={describe(v)}' for k, v in value.items()))})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and value.__dataclass_params__.frozen:
        fields = (describe(getattr(value, field.name)) for field in dataclasses.fields(value))
        return f"{_type_name(value)}({','.join(fields)})"
    raise NotDescribable(f"{type(value).__qualname__} is not plain data")


def _type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def argument_signature(arguments: tuple) -> tuple | None:
    """What a compiled program depends on in its (non-static) arguments: their pytree and, per leaf, its
    kind, shape, dtype, weak type, sharding and placement; ``None`` for a tracer or any leaf that is not
    a JAX array, a NumPy array or scalar, or a Python number (the call is then left to ``jax.jit``)."""
    leaves, treedef = jax.tree_util.tree_flatten(arguments)
    described = []
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            return None
        if isinstance(leaf, jax.Array):
            sharding = _sharding_signature(leaf.sharding)
            if sharding is None:
                return None
            described.append(("array", leaf.shape, leaf.dtype.str, leaf.weak_type, leaf.committed, sharding))
        elif isinstance(leaf, (np.ndarray, np.generic)):
            described.append(("host", np.shape(leaf), leaf.dtype.str))
        elif type(leaf) in (bool, int, float):
            described.append(("python", type(leaf).__name__))
        else:
            return None
    return str(treedef), tuple(described)


def _sharding_signature(sharding: object) -> tuple | None:
    if isinstance(sharding, SingleDeviceSharding):
        (device,) = sharding.device_set
        return "single", device.id, sharding.memory_kind
    if isinstance(sharding, NamedSharding):
        mesh = sharding.mesh
        return "named", tuple(mesh.device_ids.flat), mesh.axis_names, mesh.devices.shape, str(sharding.spec)
    return None


def jax_setting() -> tuple:
    """JAX's configuration as in effect here (scoped settings such as ``jax.enable_x64`` included),
    less :data:`IGNORED_SETTINGS`: the values, in the order of :func:`_setting_names`."""
    scoped, names = _setting_names(len(jax.config.values))
    values = jax.config.values
    return tuple(getattr(jax.config, name) if name in scoped else values[name] for name in names)


@functools.cache
def _setting_names(count: int) -> tuple[frozenset, tuple[str, ...]]:
    """``(scoped, names)``: the settings a program's key holds, sorted, and those read through
    ``jax.config``'s attribute (the value in effect, for a setting with a context manager); cached by the
    number of settings, which grows only when a plugin adds some."""
    names = tuple(sorted(name for name in jax.config.values if not any(part in name for part in IGNORED_SETTINGS)))
    scoped = frozenset(name for name in names if hasattr(jax.config, name))
    return scoped, names


@functools.cache
def environment() -> str:
    """The code and the machine a program is compiled for (see the module docstring), as one digest."""
    client = jax.devices()[0].client
    parts = [
        FORMAT,
        sys.version,
        jax.__version__,
        jaxlib.__version__,
        np.__version__,
        client.platform,
        client.platform_version,
        repr([(device.id, device.platform, device.device_kind) for device in jax.devices()]),
        os.environ.get("XLA_FLAGS", ""),
        platform.machine(),
        _cpu_description(),
        source_digest(),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _cpu_description() -> str:
    """The host CPU's model and feature flags (``/proc/cpuinfo``; the platform's processor name elsewhere):
    a program compiled for one CPU may use instructions another lacks."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part", "CPU implementer")
    return "\n".join(sorted({line for line in lines if line.split(":", 1)[0].strip() in wanted}))


def program_digest(name: str, key: object, static: tuple, signature: tuple, setting: tuple) -> str:
    """The file name's digest of a program (see the module docstring); :class:`NotDescribable` when
    ``key`` or ``static`` is not plain data."""
    named = tuple(zip(_setting_names(len(jax.config.values))[1], setting))
    text = "\n".join([environment(), name, describe(key), describe(static), repr(signature), repr(named)])
    return hashlib.sha256(text.encode()).hexdigest()


class KeptProgram:
    """``jax.jit(function, …)`` whose compiled programs are kept on disk while :func:`keep_programs` names a
    directory (see the module docstring); called as the jitted function is, with positional arguments.

    Args:
      function: the Python function to jit.
      name: the program's name (the files' prefix), e.g. the function's qualified name.
      static_argnums: the positions taken as static (part of the key, not of the compiled program's
        arguments).
      key: plain data that, with prefsim's source, identifies what ``function`` computes (for a function
        built at run time: what built it; ``()`` for a module-level function).
      jit_options: further ``jax.jit`` options (``compiler_options``); they are part of the key.
    """

    def __init__(
        self,
        function: Callable,
        name: str,
        static_argnums: Sequence[int] = (),
        key: object = (),
        jit_options: dict | None = None,
    ) -> None:
        self.function = function
        self.name = name
        self.static_argnums = tuple(static_argnums)
        self.jit_options = dict(jit_options or {})
        self.key = (key, self.jit_options)
        self.jitted = jax.jit(function, static_argnums=self.static_argnums, **self.jit_options)
        self._loaded: dict = {}

    def __call__(self, *arguments: Any) -> Any:
        directory = _directory
        if directory is None:
            return self.jitted(*arguments)
        static = tuple(arguments[index] for index in self.static_argnums)
        dynamic = tuple(value for index, value in enumerate(arguments) if index not in self.static_argnums)
        signature = argument_signature(dynamic)
        if signature is None:
            return self.jitted(*arguments)
        memo = (static, signature, jax_setting())
        try:
            compiled = self._loaded.get(memo)
        except TypeError:  # an unhashable static argument: jax.jit says so
            return self.jitted(*arguments)
        if compiled is None:
            try:
                digest = program_digest(self.name, self.key, static, signature, memo[2])
            except NotDescribable:
                return self.jitted(*arguments)
            path = directory / f"{self.name}-{digest}.bin"
            compiled = _load(path)
            if compiled is None:
                compiled, fresh = self._compile_fresh(arguments, digest)
                if fresh:
                    _store(path, compiled)
            self._loaded[memo] = compiled
        return compiled(*dynamic)

    def _compile_fresh(self, arguments: tuple, digest: str) -> tuple[Any, bool]:
        """``(program, fresh)``: the function traced, lowered and compiled for ``arguments``, by XLA rather
        than loaded from JAX's persistent compilation cache (``fresh``) wherever it can be.

        An executable JAX loaded from its cache does not serialize whole (XLA:CPU, jaxlib 0.10: the copy
        lacks runtime functions it calls, e.g. ``wrapped_exponential``, and fails when run), so only a
        fresh one may be kept.  The program is traced under a name of its own (``kept_<digest>``: the same
        operations, another module name), so JAX's cache holds it only from an earlier compile of this
        key; when it comes from the cache all the same (JAX's monitoring events say so: the kept file was
        removed), it is compiled once more under a name no compile had.
        """
        _listen_for_cache_hits()
        for tag in (digest[:32], f"{digest[:32]}_{os.getpid()}_{time.time_ns()}"):
            hits = _cache_hits[0]
            renamed = jax.jit(
                _named(self.function, f"kept_{tag}"), static_argnums=self.static_argnums, **self.jit_options
            )
            program = renamed.trace(*arguments).lower().compile()
            if _cache_hits[0] == hits:
                return program, True
        return program, False

    def clear(self) -> None:
        """Forget the programs loaded in this process (the files stay)."""
        self._loaded.clear()


def _named(function: Callable, name: str) -> Callable:
    """``function`` under another ``__name__`` (what names a jitted function's module)."""

    @functools.wraps(function)
    def named(*arguments: Any) -> Any:
        return function(*arguments)

    named.__name__ = named.__qualname__ = name
    return named


_cache_hits = [0]


@functools.cache
def _listen_for_cache_hits() -> None:
    """Count JAX's persistent-cache hits (once per process, when a program is first compiled to keep)."""

    def listen(event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _cache_hits[0] += 1

    jax.monitoring.register_event_listener(listen)


def kept_jit(function: Callable | None = None, *, static_argnums: Sequence[int] = (), **jit_options: Any) -> Any:
    """Decorator: ``jax.jit(function, static_argnums=…, **jit_options)`` as a :class:`KeptProgram` named
    by the function's module and qualified name (for module-level functions)."""

    def wrap(inner: Callable) -> KeptProgram:
        kept = KeptProgram(inner, f"{inner.__module__}.{inner.__qualname__}", static_argnums, jit_options=jit_options)
        functools.update_wrapper(kept, inner)
        return kept

    return wrap if function is None else wrap(function)


def _load(path: Path) -> Any:
    """The program kept in ``path``, loaded onto its devices; ``None`` when there is none, or it does not
    load (it is then removed, and compiled again)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        kept_format, serialized, in_tree, out_tree, device_ids = pickle.loads(data)
        if kept_format != FORMAT:
            raise ValueError(kept_format)
        devices = {device.id: device for device in jax.devices()}
        program = serialize_executable.deserialize_and_load(
            serialized, in_tree, out_tree, execution_devices=[devices[index] for index in device_ids]
        )
    except Exception:  # noqa: BLE001 - any unreadable or unloadable file is compiled again
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # used now: the last to be pruned
    return program


def _store(path: Path, compiled: Any) -> None:
    """Write ``compiled`` to ``path`` (a temporary file renamed into place); a program JAX cannot
    serialize, or a file that cannot be written (a full disk), is not kept."""
    try:
        serialized, in_tree, out_tree = serialize_executable.serialize(compiled)
        device_ids = [device.id for device in compiled.runtime_executable().local_devices()]
        data = pickle.dumps((FORMAT, serialized, in_tree, out_tree, device_ids))
    except Exception:  # noqa: BLE001 - not serializable (closed-over constants, an unusual executable)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        return
    prune(path.parent)


#: Most program files a directory keeps (each 0.1–1 MB); the least recently used go first.  Every change
#: of prefsim's source makes new keys, so the files of earlier versions would otherwise pile up.
MAX_KEPT_PROGRAMS = 256


def prune(directory: Path, keep: int = MAX_KEPT_PROGRAMS) -> None:
    """Remove the least recently used program files of ``directory`` beyond the ``keep`` newest (by the
    time they were last written or loaded), and temporary files a killed process left for over an hour."""
    try:
        entries = [(entry.stat().st_mtime, entry) for entry in directory.iterdir() if entry.is_file()]
    except OSError:
        return
    programs = sorted((entry for entry in entries if entry[1].suffix == ".bin"), reverse=True)
    stale = [path for _, path in programs[keep:]]
    stale += [path for mtime, path in entries if path.suffix == ".tmp" and mtime < time.time() - 3600]
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
