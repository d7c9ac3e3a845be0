"""Compiled programs kept between processes (sim.program_cache): what they are keyed by, that a kept
program gives the jitted function's numbers to the bit without tracing it again, and that a file that
cannot be used costs a compilation, never the run."""

import dataclasses
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from python_process import REPO, python_output

from sim import program_cache, provenance
from sim.game import Game
from sim.program_cache import (
    KeptProgram,
    NotDescribable,
    ProcessLocal,
    SourceKey,
    argument_signature,
    describe,
    keep_programs,
    kept_jit,
)
from sim.rules import RULES, register_rule, unregister_rule, uses_built_in_code

TRACES = []


def _softmax_power(x, power):
    TRACES.append(power)  # runs only while the function is traced
    weights = jnp.exp(power * x)  # exp: XLA:CPU calls a runtime function for it (see test below)
    return weights / weights.sum(), jnp.log1p(x) @ x


def _kept(directory, **options):
    # the directory in the key: no program of an earlier test run can be in JAX's own cache (when it is on)
    return KeptProgram(_softmax_power, "tests.softmax_power", static_argnums=(1,), key=str(directory), **options)


def _values(seed=0, size=7):
    return jnp.asarray(np.random.default_rng(seed).random(size))


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@dataclasses.dataclass(frozen=True)
class Setting:
    eta: float
    name: str


def test_describe_writes_plain_data_the_same_way_and_refuses_anything_else():
    game_axes = Game(0, 0, None, 0, None)
    assert describe(("inpo", 1.5, None, True, game_axes)) == describe(
        ("inpo", 1.5, None, True, Game(0, 0, None, 0, None))
    )
    assert describe(1) != describe(1.0) != describe(True)  # types are part of the text
    assert describe({"b": 2, "a": 1}) == describe({"a": 1, "b": 2})
    assert describe(Setting(0.5, "x")) == "test_program_cache.Setting(float:0.5,str:'x')"
    assert describe(np.arange(3.0)) != describe(np.nextafter(np.arange(3.0), 4.0))  # arrays by their bytes
    assert describe(SourceKey(("inpo",))) != describe(("inpo",))
    for unstable in (lambda x: x, ProcessLocal(object()), object(), Setting.__init__):
        with pytest.raises(NotDescribable):
            describe(("rule", unstable))


def test_argument_signature_says_what_a_compiled_program_depends_on():
    x = _values()
    first = argument_signature((x, np.ones(3), 2.0))
    assert first == argument_signature((_values(seed=1), np.zeros(3), 5.0))  # values are not part of it
    assert first != argument_signature((x.astype(jnp.float32), np.ones(3), 2.0))
    assert first != argument_signature((x, np.ones(4), 2.0))
    assert first != argument_signature((x, np.ones(3), 2))
    assert first != argument_signature(((x,), np.ones(3), 2.0))  # the pytree
    assert argument_signature((jax.device_put(x, jax.devices()[0]),)) != argument_signature((x,))  # committed
    assert argument_signature(("text",)) is None
    seen = []
    jax.jit(lambda y: seen.append(argument_signature((y,))) or y)(x)
    assert seen == [None]  # a tracer: left to jax.jit


def test_without_a_directory_a_kept_program_is_the_jitted_function(tmp_path):
    TRACES.clear()
    kept = _kept(tmp_path)
    x = _values()
    with keep_programs(None):
        result = kept(x, 2.0)
    np.testing.assert_array_equal(result[0], jax.jit(_softmax_power, static_argnums=(1,))(x, 2.0)[0])
    assert not list(tmp_path.iterdir())


def test_a_kept_program_is_loaded_without_tracing_and_gives_the_same_bits(tmp_path):
    x = _values()
    expected = jax.jit(_softmax_power, static_argnums=(1,))(x, 2.0)
    TRACES.clear()
    with keep_programs(tmp_path) as directory:
        first = _kept(tmp_path)(x, 2.0)
        assert TRACES == [2.0] and len(_files(directory)) == 1
        TRACES.clear()
        again = _kept(tmp_path)(_values(seed=3), 2.0)  # a new object, as in a new process: loads the file
        assert TRACES == [] and len(_files(directory)) == 1
        _kept(tmp_path)(x, 3.0)  # another static argument: another program
        assert TRACES == [3.0] and len(_files(directory)) == 2
    for got, want in zip(first, expected):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(again[0], jax.jit(_softmax_power, static_argnums=(1,))(_values(seed=3), 2.0)[0])


def test_a_key_that_is_not_plain_data_keeps_nothing(tmp_path):
    x = _values()
    with keep_programs(tmp_path):
        kept = KeptProgram(_softmax_power, "tests.local", static_argnums=(1,), key=ProcessLocal(_softmax_power))
        result = kept(x, 2.0)
    assert not list(tmp_path.iterdir())
    np.testing.assert_array_equal(result[0], jax.jit(_softmax_power, static_argnums=(1,))(x, 2.0)[0])


def test_an_unusable_file_is_compiled_again_and_replaced(tmp_path):
    x = _values()
    with keep_programs(tmp_path) as directory:
        _kept(tmp_path)(x, 2.0)
        (name,) = _files(directory)
        (directory / name).write_bytes(b"not a program")
        TRACES.clear()
        result = _kept(tmp_path)(x, 2.0)
        # traced again; twice when JAX's own cache is on in this process (as after an in-process
        # `prefsim` command) and holds the program: it is then compiled afresh under another name
        assert TRACES in ([2.0], [2.0, 2.0])
        assert _files(directory) == [name] and (directory / name).read_bytes() != b"not a program"
    np.testing.assert_array_equal(result[0], jax.jit(_softmax_power, static_argnums=(1,))(x, 2.0)[0])


def test_an_unwritable_directory_keeps_nothing_and_the_call_still_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with keep_programs(blocker / "programs") as directory:
        assert directory is None
        result = _kept(tmp_path)(_values(), 2.0)
    assert result[0].shape == (7,)


def test_keep_programs_is_scoped(tmp_path):
    assert program_cache._directory is None
    with keep_programs(tmp_path / "a") as outer:
        with keep_programs(None):
            assert program_cache._directory is None
        assert program_cache._directory == outer == tmp_path / "a" and outer.is_dir()
    assert program_cache._directory is None


def test_kept_jit_names_the_program_by_its_function():
    @functools.partial(kept_jit, static_argnums=(1,))
    def scaled(x, factor):
        return x * factor

    assert scaled.name.endswith("test_kept_jit_names_the_program_by_its_function.<locals>.scaled")
    assert scaled.__doc__ is None and scaled.__name__ == "scaled"
    np.testing.assert_array_equal(scaled(jnp.arange(3.0), 2.0), [0.0, 2.0, 4.0])


def test_only_prefsims_own_rules_have_source_keys():
    assert uses_built_in_code("inpo", {}) and uses_built_in_code("comal", {})
    assert uses_built_in_code("apo", {"base": "sppo"})
    custom = dataclasses.replace(RULES["inpo"], name="inpo_copy", aliases=())
    register_rule(custom)
    try:
        assert not uses_built_in_code("inpo_copy", {})
        assert not uses_built_in_code("apo", {"base": "inpo_copy"})
    finally:
        unregister_rule("inpo_copy")


# ----------------------------------------------------------------------------------------------
# new processes


_PROCESS = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", sys.argv[1] + "/jax")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from sim.program_cache import KeptProgram, keep_programs
    traces = []
    def softmax(x):
        traces.append(1)
        weights = jnp.exp(3.0 * x)
        return weights / weights.sum()
    x = jnp.asarray(np.linspace(0.0, 1.0, 9))
    with keep_programs(sys.argv[1] + "/programs"):
        value = KeptProgram(softmax, "tests.process_softmax", key="softmax")(x)
    print(json.dumps({"traced": len(traces), "value": np.asarray(value).tolist(),
                      "jit": np.asarray(jax.jit(softmax)(x)).tolist()}))
    """
)


def _in_a_new_process(directory: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PROCESS, str(directory)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_kept_program_serves_new_processes_even_after_its_file_is_lost(tmp_path):
    """The second process loads the first one's program.  With the file removed, JAX's own cache holds the
    program, and an executable JAX loads from its cache does not serialize whole on XLA:CPU (run in a new
    process it fails: "Function wrapped_exponential not found"), so the third process compiles it afresh
    under another name before keeping it; the fourth loads that one and runs it."""
    first = _in_a_new_process(tmp_path)
    assert first["traced"] == 1 and first["value"] == first["jit"]
    second = _in_a_new_process(tmp_path)
    assert second["traced"] == 0 and second["value"] == first["value"]
    for path in (tmp_path / "programs").iterdir():
        path.unlink()
    third = _in_a_new_process(tmp_path)
    assert third["traced"] == 2 and third["value"] == first["value"]  # a cache hit, then compiled afresh
    fourth = _in_a_new_process(tmp_path)
    assert fourth["traced"] == 0 and fourth["value"] == first["value"]


def test_prefsim_run_keeps_its_programs_and_its_numbers_do_not_change(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'iterations = 200\nseeds = 6\nprecision = "float64"\n\n[game]\nkind = "random"\narms = 5\ntau = 0.1\n'
        'reference = "random"\n\n[[rule]]\nname = "inpo"\neta = 1.0\ntau = 0.1\n',
        encoding="utf-8",
    )
    cache = tmp_path / "cache"

    def prefsim(out, **environment):
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFSIM_")}
        env.update(PREFSIM_COMPILE_CACHE_DIR=str(cache), **environment)
        command = [sys.executable, "-m", "sim.cli", "run", str(spec), "--out", str(tmp_path / out), "--no-plots"]
        completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        return (tmp_path / out / "metrics.csv").read_bytes()

    first = prefsim("first")
    kept = _files(cache / "programs")
    assert any(name.startswith("sim.trajectory.block-") for name in kept)
    assert any(name.startswith("sim.nash._batched_regularised_targets-") for name in kept)
    assert prefsim("second") == first and _files(cache / "programs") == kept  # loaded, nothing new
    assert prefsim("uncached", PREFSIM_NO_COMPILE_CACHE="1") == first


def test_importing_the_module_changes_no_setting():
    assert (
        python_output(
            "import sim.program_cache as p; print(p._directory, p._listen_for_cache_hits.cache_info().currsize)"
        )
        == "None 0"
    )


def test_the_least_recently_used_programs_beyond_the_limit_are_removed(tmp_path):
    for index in range(5):
        path = tmp_path / f"p-{index}.bin"
        path.write_bytes(b"x")
        os.utime(path, (1000.0 + index, 1000.0 + index))
    old_temporary = tmp_path / ".p-9.bin.1.tmp"
    old_temporary.write_bytes(b"x")
    os.utime(old_temporary, (1000.0, 1000.0))
    fresh_temporary = tmp_path / ".p-8.bin.2.tmp"
    fresh_temporary.write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a program")
    program_cache.prune(tmp_path, keep=3)
    assert _files(tmp_path) == [".p-8.bin.2.tmp", "notes.txt", "p-2.bin", "p-3.bin", "p-4.bin"]


def test_loading_a_program_marks_it_used(tmp_path):
    x = _values()
    with keep_programs(tmp_path) as directory:
        _kept(tmp_path)(x, 2.0)
        (path,) = directory.iterdir()
        os.utime(path, (1000.0, 1000.0))
        _kept(tmp_path)(x, 2.0)
        assert path.stat().st_mtime > 1000.0


def test_the_source_digest_leaves_out_editor_lock_files_and_dangling_links(tmp_path, monkeypatch):
    """Emacs keeps ``.#name.py`` as a link to nowhere while a file is edited: every run crashed reading it."""
    package = tmp_path / "digest_probe_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rule.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(provenance, "SOURCE_PACKAGES", ("digest_probe_package",))
    digest = provenance.source_digest.__wrapped__  # not the process's cached value
    clean = digest()
    (package / ".#rule.py").symlink_to("user@host.1234:1700000000")
    (package / "gone.py").symlink_to(tmp_path / "nowhere.py")
    assert digest() == clean
    (package / "rule.py").write_text("x = 2\n")
    assert digest() != clean
