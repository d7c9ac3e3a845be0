"""``prefsim`` keeps compiled programs in a persistent cache: a repeated run of the same shapes compiles
nothing, gives the same numbers, and the cache can be switched off.  Importing ``sim`` does not turn it
on (it is a global JAX setting; only prefsim's own commands and an explicit call do)."""

import os
import subprocess
import sys

SPEC = """
iterations = 50
seeds = 2
[game]
kind = "random"
arms = 4
tau = 0.1
[[rule]]
name = "inpo"
eta = 0.5
"""


def _prefsim(tmp_path, out, **env):
    environment = dict(os.environ, **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.cli",
            "run",
            str(tmp_path / "spec.toml"),
            "--out",
            str(out),
            "--no-plots",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def test_a_repeated_run_compiles_nothing_and_agrees(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    cache = tmp_path / "cache"
    first = _prefsim(tmp_path, tmp_path / "a", PREFSIM_COMPILE_CACHE_DIR=str(cache))
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first run should fill the cache"
    second = _prefsim(tmp_path, tmp_path / "b", PREFSIM_COMPILE_CACHE_DIR=str(cache))
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.iterdir()) == entries  # every program came from the cache
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


def test_the_cache_can_be_switched_off_and_import_does_not_enable_it(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    cache = tmp_path / "cache"
    result = _prefsim(tmp_path, tmp_path / "a", PREFSIM_COMPILE_CACHE_DIR=str(cache), PREFSIM_NO_COMPILE_CACHE="1")
    assert result.returncode == 0, result.stderr
    assert not cache.exists() or not any(cache.iterdir())
    code = "import jax, sim, sim.experiment; assert jax.config.jax_compilation_cache_dir is None; print('ok')"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr


def _prefsim_in_blocks(tmp_path, out, cache):
    """``prefsim run`` with blocks of 7 updates (the 50 iterations take 8 blocks)."""
    code = (
        "import sys, sim.trajectory as t; t.block_updates = lambda *sizes: 7; from sim.cli import main; "
        "sys.exit(main(sys.argv[1:], cpu_devices='auto'))"  # as python -m sim.cli does
    )
    arguments = ["run", str(tmp_path / "spec.toml"), "--out", str(out), "--no-plots", "--quiet"]
    environment = dict(os.environ, PREFSIM_COMPILE_CACHE_DIR=str(cache))
    return subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, env=environment, timeout=300
    )


def test_a_repeated_run_in_blocks_compiles_nothing_and_agrees_with_one_call(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    cache = tmp_path / "cache"
    first = _prefsim_in_blocks(tmp_path, tmp_path / "a", cache)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.iterdir())
    second = _prefsim_in_blocks(tmp_path, tmp_path / "b", cache)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.iterdir()) == entries  # no program with a host callback, none new
    whole = _prefsim(tmp_path, tmp_path / "c", PREFSIM_COMPILE_CACHE_DIR=str(tmp_path / "other"))
    assert whole.returncode == 0, whole.stderr
    blocked = (tmp_path / "b" / "metrics.csv").read_text()
    assert blocked == (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "c" / "metrics.csv").read_text()


def test_a_repeated_sweep_keeps_its_group_programs_and_compiles_nothing(tmp_path):
    # two τ points of one game group: each rule table runs over both points in one kept program
    (tmp_path / "spec.toml").write_text(SPEC.replace("tau = 0.1", "tau = [0.1, 0.2]"))
    cache = tmp_path / "cache"
    first = _prefsim(tmp_path, tmp_path / "a", PREFSIM_COMPILE_CACHE_DIR=str(cache))
    assert first.returncode == 0, first.stderr
    entries = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert any(entry.startswith("programs/sim.point_groups.block-") for entry in entries), entries
    second = _prefsim(tmp_path, tmp_path / "b", PREFSIM_COMPILE_CACHE_DIR=str(cache))
    assert second.returncode == 0, second.stderr
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == entries
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()
