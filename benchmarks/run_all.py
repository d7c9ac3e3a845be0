"""Every speed target of issue 14 in one command: met or not, with the spread between runs.

Run from the repository root::

    python benchmarks/run_all.py            # full run (about 20 min on the 2-core machine, mostly end_to_end)
    python benchmarks/run_all.py --quick    # smaller shapes, the same sections (a smoke run)

Options: ``--repeats N`` (timed repeats of every section; default 5, quick 2), ``--only A,B``
(sections to run: ``per_seed``, ``end_to_end``, ``default_experiment``, ``first_result``, ``compute_bound``,
``sampled``),
``--out STEM`` (write ``STEM.json`` / ``STEM.md``), ``--no-write``.  Writes
``benchmarks/results/summary_cpu.{json,md}`` (quick: ``summary_cpu_quick.*``).

Sections (the machinery — games built as ``sim.run`` builds them, the NumPy INPO loop, the NumPy
checker of every metric, interleaved repeats, bandwidth measurements — is ``exact_updates.py``'s):

* ``per_seed`` — a ``kind = "random"`` game per seed (P batched, (S, K, K)), INPO η = 1, τ = 0.1, at
  (K, S) = (10, 1024), (100, 256), (1000, 16): prefsim (``simulate_grid``, every metric recorded) and a
  bare scan vs NumPy's batched ``einsum`` loop, and the fraction of the batched matrix–vector
  bandwidth (best of NumPy ``einsum``/``matmul`` and jitted JAX ``einsum``, measured in every repeat).
* ``compute_bound`` — P shared by all seeds at K = 1000, S = 64 against the float64 matrix-product
  peak (square matrices, NumPy and jitted JAX, measured before and after the case), and K = 10 vs NumPy.
* ``end_to_end`` — ``prefsim run`` as a whole process, figures included, on K = 100, 256 per-seed random
  games, 20000 INPO iterations, vs the bare NumPy loop of the same update on the same games (in this
  process); the same run with ``--no-plots`` gives the figures' share of the wall time.
* ``default_experiment`` — README command 1's experiment (``examples/default.toml``, 12 rule tables, 13
  figures of 12 panels) as a whole process, warm, with and without figures: its figures' share, held to
  the same line.
* ``first_result`` — the trivial spec (one INPO rule, K = 10, 8 seeds, 1000 iterations) as a whole
  process, cold (an empty persistent compile cache) and warm (a cache a previous run filled), with and
  without figures.
* ``sampled`` — compilation of sampled mode for issue 3's case (``sampled_vs_torch.py``): the first call
  minus a steady-state call, after clearing JAX's in-process caches.

Every ratio is taken within one repeat (the variants of a repeat run back to back) and the report gives
the median over repeats and the spread (min–max); the load averages around each section are recorded,
because on a shared machine a load above the core count inflates every timing.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import exact_updates as eu  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sim import figure_plan, plotting  # noqa: E402
from sim.machine import usable_cores  # noqa: E402
from sim.results_io import read_manifest  # noqa: E402
from sim.trajectory import simulate_grid  # noqa: E402

SECTIONS = ("per_seed", "compute_bound", "end_to_end", "default_experiment", "first_result", "sampled")

#: (K, S, T) per-seed random games; quick: the same K, fewer seeds and iterations.
PER_SEED_CASES = ((10, 1024, 2000), (100, 256, 2000), (1000, 16, 200))
PER_SEED_QUICK = ((10, 64, 200), (100, 16, 200), (1000, 2, 20))
#: (K, S, T) shared P: compute-bound and the small case.
COMPUTE_BOUND_CASE, SHARED_SMALL_CASE = (1000, 64, 1000), (10, 1024, 2000)
COMPUTE_BOUND_QUICK, SHARED_SMALL_QUICK = (1000, 8, 50), (10, 64, 200)
#: Square size of the matrix products that measure the peaks (float64; float32 too); on an accelerator.
PEAK_SIZE, PEAK_SIZE_QUICK, PEAK_SIZE_ACCELERATOR = 2000, 500, 8192
#: (K, S, T) of the end-to-end `prefsim run`.
END_TO_END, END_TO_END_QUICK = (100, 256, 20000), (100, 16, 300)
#: README command 1's experiment, and its (iterations, seeds) in quick mode (its own: 1000 and 20).
DEFAULT_SPEC, DEFAULT_QUICK = ROOT / "examples" / "default.toml", (50, 4)
#: The trivial spec of "seconds to the first result" (the same in both modes).
TRIVIAL = (10, 8, 1000)
#: Issue 3's sampled case (seeds, iterations, pairs, Adam steps, arms) and a small one.
SAMPLED_CASE, SAMPLED_QUICK = (64, 100, 1000, 50, 100), (4, 5, 50, 5, 10)

TARGETS = {
    "per_seed_bandwidth_fraction": 0.60,
    "per_seed_speedup_vs_numpy_K_le_100": 5.0,
    "end_to_end_speedup_vs_numpy": 3.0,
    "first_result_warm_no_figures_s": 2.5,
    "first_result_warm_with_figures_s": 4.0,
    "figure_share_max": 0.20,
    "compute_bound_peak_fraction": 0.60,
    "shared_small_speedup_vs_numpy": 5.0,
    "sampled_compile_s": 5.0,
}


def random_game_spec(arms: int, seeds: int, iterations: int) -> dict:
    """A new random game (and random π_ref) per seed, one INPO rule (η = 1, τ = 0.1), float64."""
    return {
        "iterations": iterations,
        "seeds": seeds,
        "precision": "float64",
        "game": {"kind": "random", "arms": arms, "tau": eu.TAU, "reference": "random"},
        "rule": [{"name": "inpo", "eta": eu.ETA, "tau": eu.TAU}],
    }


def spec_toml(spec: dict) -> str:
    """The TOML text of :func:`random_game_spec` (flat tables only)."""
    game = spec["game"]
    rule = spec["rule"][0]
    value = lambda v: f'"{v}"' if isinstance(v, str) else repr(v)  # noqa: E731
    lines = [f"{k} = {value(spec[k])}" for k in ("iterations", "seeds", "precision")]
    lines += ["", "[game]", *(f"{k} = {value(v)}" for k, v in game.items())]
    lines += ["", "[[rule]]", *(f"{k} = {value(v)}" for k, v in rule.items())]
    return "\n".join(lines) + "\n"


def spread(values) -> dict:
    """Median, min, max and every value of a list of per-repeat numbers."""
    values = [float(v) for v in values]
    return {"median": float(np.median(values)), "min": min(values), "max": max(values), "values": values}


def target(description: str, threshold: float, values, at_least: bool = True, note: str = "") -> dict:
    """A target entry: met when the median over repeats is on the right side of ``threshold``."""
    stats = spread(values)
    met = stats["median"] >= threshold if at_least else stats["median"] <= threshold
    return {
        "target": description,
        "threshold": threshold,
        "at_least": at_least,
        **stats,
        "met": bool(met),
        "note": note,
    }


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ----------------------------------------------------------------------------------------------
# Sections.


def per_repeat_fraction(case: dict, variant: str = "prefsim") -> list[float]:
    """Bytes of P one update reads (8·S·K² or 8·K²) × T ÷ that repeat's seconds ÷ that repeat's limit."""
    bandwidth = case["bandwidth"]
    needed = bandwidth["matrix_bytes"] * case["iterations"]
    return [
        needed / seconds / limit
        for seconds, limit in zip(case[variant]["seconds_per_repeat"], bandwidth["limit_bytes_per_s_per_repeat"])
    ]


def per_repeat_speedup(case: dict, variant: str = "prefsim") -> list[float]:
    """NumPy's seconds ÷ the variant's (mean of its block) within each repeat."""
    return [n / p for n, p in zip(case["numpy"]["seconds_all"], case[variant]["seconds_per_repeat"])]


def per_seed_section(quick: bool, repeats: int, say=print) -> tuple[dict, dict]:
    cases = []
    for arms, seeds, iterations in PER_SEED_QUICK if quick else PER_SEED_CASES:
        spec = random_game_spec(arms, seeds, iterations)
        cases.append(eu.run_case(arms, seeds, iterations, repeats, say=say, spec=spec))
    targets = {}
    for case in cases:
        name = f"K={case['arms']},S={case['seeds']}"
        targets[f"per_seed_bandwidth_fraction[{name}]"] = target(
            f"prefsim (metrics recorded) ≥ {TARGETS['per_seed_bandwidth_fraction']:.0%} of the batched P·v bandwidth",
            TARGETS["per_seed_bandwidth_fraction"],
            per_repeat_fraction(case),
            note=f"bare scan {case['bandwidth']['bare_fraction']:.0%}; agrees with NumPy: {case['agreement']['ok']}",
        )
        if case["arms"] <= 100:
            numpy_fraction = [
                case["bandwidth"]["matrix_bytes"] * case["iterations"] / n / limit
                for n, limit in zip(case["numpy"]["seconds_all"], case["bandwidth"]["limit_bytes_per_s_per_repeat"])
            ]
            targets[f"per_seed_speedup_vs_numpy[{name}]"] = target(
                f"prefsim ≥ {TARGETS['per_seed_speedup_vs_numpy_K_le_100']:g}× NumPy's batched einsum loop",
                TARGETS["per_seed_speedup_vs_numpy_K_le_100"],
                per_repeat_speedup(case),
                note=f"NumPy itself reaches {np.median(numpy_fraction):.0%} of the same bandwidth limit; prefsim "
                f"on {jax.device_count()} {jax.default_backend().upper()} device(s), NumPy's einsum on one core",
            )
    return {"cases": cases}, targets


def matmul_peak(size: int, repeats: int = 3, dtype=np.float64) -> dict:
    """Best GFLOP/s of a square (size × size) matrix product in ``dtype``: jitted JAX on its default device
    (at JAX's default matmul precision: on a recent GPU, float32 products use TF32) and, on a CPU,
    NumPy too."""
    rng = np.random.default_rng(1)
    a, b = rng.random((size, size)).astype(dtype), rng.random((size, size)).astype(dtype)
    product = jax.jit(lambda x, y: x @ y)
    da, db = jnp.asarray(a), jnp.asarray(b)
    functions = {"jax": lambda: product(da, db).block_until_ready()}
    if jax.default_backend() == "cpu":
        functions["numpy"] = lambda: a @ b
    best = {}
    for name, function in functions.items():
        function()
        best[name] = min(_seconds(function) for _ in range(repeats))
    flops = 2.0 * size**3
    return {name: flops / seconds / 1e9 for name, seconds in best.items()}


def peaks_before_and_after(peaks: list[dict]) -> str:
    """The peaks (GFLOP/s) that :func:`matmul_peak` measured before and after a case, as text: e.g.
    ``numpy/jax before and after: 109/101, 109/101`` on a CPU, ``jax before and after: 52000, 51000`` on an
    accelerator (where only JAX's is measured)."""
    names = list(peaks[0])
    values = ", ".join("/".join(f"{peak[name]:.0f}" for name in names) for peak in peaks)
    return f"{'/'.join(names)} before and after: {values}"


def peak_size(quick: bool) -> int:
    """The matrix size that measures a peak: :data:`PEAK_SIZE` on a CPU, :data:`PEAK_SIZE_ACCELERATOR` on
    a GPU or TPU (a 2000² product takes well under a millisecond there, dispatch included)."""
    if quick:
        return PEAK_SIZE_QUICK
    return PEAK_SIZE if jax.default_backend() == "cpu" else PEAK_SIZE_ACCELERATOR


def float32_fractions(arms: int, seeds: int, iterations: int, repeats: int, peak: float) -> dict:
    """The compute-bound case (shared P) run by ``simulate_grid`` in float32, every metric recorded, as a
    fraction of the float32 matmul ``peak``: reported, not a target (issue 14 asks for it on a GPU)."""
    spec = {**eu.benchmark_spec(arms, seeds, iterations), "precision": "float32"}
    _, games, game_axes, targets, record, make_rule, _ = eu.build_case(arms, seeds, iterations, spec)

    def call():
        return simulate_grid(make_rule, {}, games, game_axes, targets, record)

    call()  # compiles
    seconds = [_seconds(call) for _ in range(repeats)]
    flops = 2.0 * arms * arms * seeds * iterations
    return {"seconds": seconds, "peak_gflops": peak, "fractions": [flops / s / 1e9 / peak for s in seconds]}


def _seconds(function) -> float:
    tic = time.perf_counter()
    function()
    return time.perf_counter() - tic


def compute_bound_section(quick: bool, repeats: int, say=print) -> tuple[dict, dict]:
    size = peak_size(quick)
    peaks = [matmul_peak(size)]
    arms, seeds, iterations = COMPUTE_BOUND_QUICK if quick else COMPUTE_BOUND_CASE
    large = eu.run_case(arms, seeds, iterations, repeats, say=say)
    peaks.append(matmul_peak(size))
    peak = max(max(p.values()) for p in peaks)
    flops = 2.0 * arms * arms * seeds * iterations
    fractions = [flops / seconds / 1e9 / peak for seconds in large["prefsim"]["seconds_per_repeat"]]
    peak32 = max(matmul_peak(size, dtype=np.float32).values())
    float32 = float32_fractions(arms, seeds, iterations, repeats, peak32)
    say(
        f"K={arms} S={seeds} T={iterations} float32: {np.median(float32['fractions']):.3f} of the float32 "
        f"peak ({peak32:.0f} GFLOP/s)"
    )
    small = eu.run_case(*(SHARED_SMALL_QUICK if quick else SHARED_SMALL_CASE), repeats, say=say)
    targets = {
        f"compute_bound_peak_fraction[K={arms},S={seeds}]": target(
            f"shared P: prefsim ≥ {TARGETS['compute_bound_peak_fraction']:.0%} of the float64 matmul peak",
            TARGETS["compute_bound_peak_fraction"],
            fractions,
            note=f"peak {peak:.0f} GFLOP/s ({size}² float64 product; {peaks_before_and_after(peaks)})",
        ),
        f"shared_small_speedup_vs_numpy[K={small['arms']},S={small['seeds']}]": target(
            f"shared P: prefsim ≥ {TARGETS['shared_small_speedup_vs_numpy']:g}× NumPy",
            TARGETS["shared_small_speedup_vs_numpy"],
            per_repeat_speedup(small),
        ),
    }
    result = {"matmul_peak_gflops": peaks, "peak_gflops": peak, "cases": [large, small], "float32": float32}
    return result, targets


def prefsim_process(spec_path: Path, out: Path, cache: Path | None, figures: bool) -> float:
    """Wall seconds of ``prefsim run SPEC --out OUT --quiet`` as a new process (``python -m sim.cli``).

    The process may write Python's bytecode cache, as an installed package's or a checkout's first run
    does (``PYTHONDONTWRITEBYTECODE``, set on some machines, is dropped for it): a warm run then reads
    prefsim's modules compiled, instead of compiling ~60 of them again (~0.15 s) every time.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PREFSIM_NO_COMPILE_CACHE", None)
    if cache is None:
        env["PREFSIM_NO_COMPILE_CACHE"] = "1"
    else:
        env["PREFSIM_COMPILE_CACHE_DIR"] = str(cache)
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "sim.cli", "run", str(spec_path), "--out", str(out), "--quiet"]
    if not figures:
        command.append("--no-plots")
    tic = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if completed.returncode != 0 or not (out / "metrics.csv").is_file():
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    if figures and not list(out.glob("*.png")):
        raise RuntimeError(f"{' '.join(command)} wrote no figures")
    return seconds


def figure_shares(with_figures: list[float], without: list[float]) -> list[float]:
    """The figures' share of each repeat's wall time: (with − without figures) ÷ with figures."""
    return [(f - n) / f for f, n in zip(with_figures, without)]


def end_to_end_section(quick: bool, repeats: int, work: Path, say=print) -> tuple[dict, dict]:
    arms, seeds, iterations = END_TO_END_QUICK if quick else END_TO_END
    spec = random_game_spec(arms, seeds, iterations)
    spec_path = work / "end_to_end.toml"
    spec_path.write_text(spec_toml(spec), encoding="utf-8")
    cache = work / "cache_end_to_end"
    first_run = prefsim_process(spec_path, work / "e2e_first", cache, figures=False)  # fills the compile cache
    _, games, _, _, _, _, _ = eu.build_case(None, None, None, spec)
    preference = np.asarray(games.preference)
    log_reference = np.asarray(games.log_reference)
    log_initial = np.broadcast_to(np.asarray(games.log_initial), (seeds, arms))
    times = {"numpy": [], "figures": [], "no_figures": []}
    for repeat in range(repeats):
        times["numpy"].append(
            _seconds(lambda: eu.numpy_inpo(preference, log_reference, log_initial, eu.ETA, eu.TAU, iterations))
        )
        order = ("figures", "no_figures") if repeat % 2 == 0 else ("no_figures", "figures")
        for name in order:
            times[name].append(prefsim_process(spec_path, work / f"e2e_{name}", cache, figures=name == "figures"))
        say(
            f"end to end K={arms} S={seeds} T={iterations}: NumPy {times['numpy'][-1]:.2f} s, prefsim run "
            f"{times['figures'][-1]:.2f} s with figures, {times['no_figures'][-1]:.2f} s without"
        )
    speedups = [n / f for n, f in zip(times["numpy"], times["figures"])]
    shares = figure_shares(times["figures"], times["no_figures"])
    label = f"K={arms},S={seeds},T={iterations}"
    targets = {
        f"end_to_end_speedup_vs_numpy[{label}]": target(
            f"`prefsim run` with figures ≥ {TARGETS['end_to_end_speedup_vs_numpy']:g}× the bare NumPy loop",
            TARGETS["end_to_end_speedup_vs_numpy"],
            speedups,
            note=f"first (cold-cache) run without figures {first_run:.1f} s",
        ),
        f"figure_share[{label}]": target(
            f"figures ≤ {TARGETS['figure_share_max']:.0%} of the run's wall time (with − without figures)",
            TARGETS["figure_share_max"],
            shares,
            at_least=False,
        ),
    }
    return {"arms": arms, "seeds": seeds, "iterations": iterations, "first_run_s": first_run, "seconds": times}, targets


def with_top_level(text: str, **values: int) -> str:
    """A spec's TOML text with top-level ``name = value`` lines (before the first table) set to ``values``.

    For specs written like ``examples/default.toml``: each key on one line of its own, before any table, with
    a one-line value; any other layout (a key missing, given twice, inside a multi-line string, or a value
    over several lines) is an error, not a guess: the edited text must parse with those values."""
    head, table, rest = text.partition("\n[")
    for name, value in values.items():
        head, count = re.subn(rf"(?m)^{name}\s*=\s*[^#\n]*", f"{name} = {value} ", head)
        if count != 1:
            raise RuntimeError(f"{name}: expected one top-level line in the spec, found {count}")
    edited = head + table + rest
    try:
        parsed = tomllib.loads(edited)
    except tomllib.TOMLDecodeError as exc:
        raise RuntimeError(f"setting {', '.join(values)} left the spec unreadable: {exc}") from None
    if any(parsed.get(name) != value for name, value in values.items()):
        raise RuntimeError(f"setting {', '.join(values)} did not give the spec those values")
    return edited


def bare_panel_figures(count: int, panels: int, points: int) -> float:
    """CPU seconds to draw ``count`` PNG figures of ``panels`` panels with Matplotlib alone: the floor under
    prefsim's panel figures on this machine, measured in this process after one figure not counted.

    Each figure as prefsim lays one out (:func:`sim.plotting.metric_figure`: rows of 3 panels of
    ``PANEL_SIZE``, constrained layout, its style, PNG at its dpi through its ``write_png``); each panel a
    symlog iteration axis and a log metric axis with one curve of ``points`` points, a title and axis labels.
    No band, bound, fit, legend, floor marker or shared y range: what prefsim adds is what it costs above this.
    """
    iterations = np.unique(np.round(np.geomspace(1, 1000, points))) - 1
    curve = np.exp(-0.02 * iterations) + 1e-12
    columns = min(3, panels)
    rows = -(-panels // columns)

    def draw() -> None:
        with matplotlib.rc_context(plotting.STYLE):
            size = (plotting.PANEL_SIZE[0] * columns, plotting.PANEL_SIZE[1] * rows + 0.6)
            figure = Figure(figsize=size, layout="constrained")
            FigureCanvasAgg(figure)
            for index in range(panels):
                axes = figure.add_subplot(rows, columns, index + 1)
                axes.plot(iterations, curve)
                axes.set_xscale("symlog", linthresh=1.0)
                axes.set_yscale("log")
                axes.set_title(f"rule {index}", fontsize=10)
                axes.set_xlabel("iteration t (0 = π_0; symlog axis)")
                axes.set_ylabel("KL(π* ‖ π_t)")
            figure.suptitle("a title", fontsize=11)
            plotting.write_png(figure, io.BytesIO(), plotting.STYLE["savefig.dpi"])

    draw()  # fonts and caches, as a figure process warms up before its first figure
    tic = time.process_time()
    for _ in range(count):
        draw()
    return time.process_time() - tic


def default_experiment_section(quick: bool, repeats: int, work: Path, say=print) -> tuple[dict, dict]:
    """README command 1's experiment (``examples/default.toml``: 12 rule tables in 11 families, 20 random
    10-arm games, 1000 iterations; 13 figures of 12 panels) as a new process, warm, with and without
    figures: what a user waits for when running it again.  Its figures' share is held to the end-to-end
    case's line (≤ 20%)."""
    text = DEFAULT_SPEC.read_text(encoding="utf-8")
    if quick:
        iterations, seeds = DEFAULT_QUICK
        text = with_top_level(text, iterations=iterations, seeds=seeds)
    spec_path = work / "default.toml"
    spec_path.write_text(text, encoding="utf-8")
    cache = work / "cache_default"
    first_run = prefsim_process(spec_path, work / "default_first", cache, figures=False)  # fills the compile cache
    times = {"figures": [], "no_figures": []}
    for repeat in range(repeats):
        for name in ("figures", "no_figures") if repeat % 2 == 0 else ("no_figures", "figures"):
            times[name].append(prefsim_process(spec_path, work / f"default_{name}", cache, figures=name == "figures"))
        say(f"default experiment: {times['figures'][-1]:.2f} s with figures, {times['no_figures'][-1]:.2f} s without")
    shares = figure_shares(times["figures"], times["no_figures"])
    figures = len(list((work / "default_figures").glob("*.png")))
    # the machine's own limit: the same panel figures drawn bare by Matplotlib, on every usable core at once
    table = pd.read_csv(work / "default_figures" / "metrics.csv")
    plan = figure_plan.plan_figures(table, work / "default_plan", read_manifest(work / "default_figures"))
    groups, _, _, _ = figure_plan.figure_layout(table, plan.job.rules, plan.job.plot)
    panel_figures = [figure for figure in plan.figures if figure != figure_plan.HEADTOHEAD]
    points = table["iteration"].nunique()
    cores = usable_cores()
    floor_cpu = [bare_panel_figures(len(panel_figures), len(groups), points) for _ in range(repeats)]
    floor_wall = [seconds / min(cores, len(panel_figures)) for seconds in floor_cpu]
    floor_shares = [wall / (wall + n) for wall, n in zip(floor_wall, times["no_figures"])]
    above_floor = [(f - n) / wall for f, n, wall in zip(times["figures"], times["no_figures"], floor_wall)]
    say(f"default experiment: Matplotlib's bare panels {np.median(floor_cpu):.2f} s of CPU")
    targets = {
        "default_experiment_figure_share[examples/default.toml]": target(
            f"README command 1's experiment: figures ≤ {TARGETS['figure_share_max']:.0%} of the run's wall time "
            "(with − without figures)",
            TARGETS["figure_share_max"],
            shares,
            at_least=False,
            note=f"{figures} figures; with figures median {np.median(times['figures']):.2f} s, without "
            f"{np.median(times['no_figures']):.2f} s; first (cold-cache) run without figures {first_run:.1f} s",
        )
    }
    floor = {
        "panel_figures": len(panel_figures),
        "panels": len(groups),
        "points": int(points),
        "cores": cores,
        "cpu_seconds": floor_cpu,
        "share": floor_shares,
        "figures_over_floor": above_floor,
    }
    result = {"spec": str(DEFAULT_SPEC.relative_to(ROOT)), "first_run_s": first_run, "seconds": times}
    return {**result, "matplotlib_floor": floor}, targets


def first_result_section(repeats: int, work: Path, say=print) -> tuple[dict, dict]:
    arms, seeds, iterations = TRIVIAL
    spec = random_game_spec(arms, seeds, iterations)
    spec_path = work / "trivial.toml"
    spec_path.write_text(spec_toml(spec), encoding="utf-8")
    warm_cache = work / "cache_warm"
    prefsim_process(spec_path, work / "trivial_warmup", warm_cache, figures=True)  # fills the warm cache
    variants = ("warm_no_figures", "warm_figures", "cold_no_figures", "cold_figures")
    times = {name: [] for name in variants}
    for repeat in range(repeats):
        for index, name in enumerate(variants[repeat % 2 :] + variants[: repeat % 2]):
            cache = warm_cache if name.startswith("warm") else work / f"cache_cold_{repeat}_{index}"
            figures = not name.endswith("no_figures")
            times[name].append(prefsim_process(spec_path, work / f"trivial_{name}", cache, figures=figures))
        say("first result: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in variants))
    shares = figure_shares(times["warm_figures"], times["warm_no_figures"])
    label = f"K={arms},S={seeds},T={iterations}"
    targets = {
        f"first_result_warm_no_figures[{label}]": target(
            f"trivial spec, warm cache, --no-plots ≤ {TARGETS['first_result_warm_no_figures_s']:g} s (whole process)",
            TARGETS["first_result_warm_no_figures_s"],
            times["warm_no_figures"],
            at_least=False,
            note=f"cold: median {np.median(times['cold_no_figures']):.2f} s",
        ),
        f"first_result_warm_with_figures[{label}]": target(
            f"trivial spec, warm cache, with figures ≤ {TARGETS['first_result_warm_with_figures_s']:g} s",
            TARGETS["first_result_warm_with_figures_s"],
            times["warm_figures"],
            at_least=False,
            note=f"cold: median {np.median(times['cold_figures']):.2f} s; figures' share (warm) "
            f"{np.median(shares):.0%}",
        ),
    }
    return {"arms": arms, "seeds": seeds, "iterations": iterations, "seconds": times, "figure_share": shares}, targets


def sampled_section(quick: bool, repeats: int, say=print) -> tuple[dict, dict]:
    import sampled_vs_torch  # imports torch: only for this section

    from sim.shared_engine import COMPILED_RUNS

    case = SAMPLED_QUICK if quick else SAMPLED_CASE
    spec = sampled_vs_torch.make_spec(*case)
    compile_s, run_s = [], []
    for _ in range(repeats):
        COMPILED_RUNS.clear()
        jax.clear_caches()
        run, _ = sampled_vs_torch.prefsim_runner(spec)
        first = _seconds(lambda run=run: jax.block_until_ready(run()))
        steady = _seconds(lambda run=run: jax.block_until_ready(run()))
        compile_s.append(max(first - steady, 0.0))
        run_s.append(steady)
        say(f"sampled {case}: compile {compile_s[-1]:.2f} s, run {steady:.2f} s")
    label = "S={},T={},N={},steps={},K={}".format(*case)
    targets = {
        f"sampled_compile_s[{label}]": target(
            f"sampled mode compiles in ≤ {TARGETS['sampled_compile_s']:g} s (first call − steady call)",
            TARGETS["sampled_compile_s"],
            compile_s,
            at_least=False,
            note=f"run (steady) median {np.median(run_s):.2f} s",
        )
    }
    return {"case": case, "compile_s": compile_s, "run_s": run_s}, targets


# ----------------------------------------------------------------------------------------------
# Report.


def markdown(report: dict) -> str:
    machine = report["machine"]
    ran = list(report["sections"])
    scope = "" if set(ran) == set(SECTIONS) else f" of sections {', '.join(ran)}"  # a run with --only
    lines = [
        f"# Issue 14 speed targets ({report['mode']} run{scope})",
        "",
        f"Measured {machine['date_utc']} on {machine['cpu']} ({machine['cores']} cores), {machine['platform']}; "
        f"jax {machine['jax']} / jaxlib {machine['jaxlib']}, numpy {machine['numpy']}. "
        f"Command: `{report['command']}`; {report['repeats']} repeats per section; whole run "
        f"{report['total_seconds']:.0f} s.",
        "",
        "Each value is the median over repeats of a quantity measured within one repeat (ratios of timings "
        "taken back to back); the spread is the min–max over repeats.",
        "",
        "| target | threshold | median | spread (min–max) | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["targets"].items():
        sign = "≥" if entry["at_least"] else "≤"
        lines.append(
            f"| `{name}`: {entry['target']} | {sign} {entry['threshold']:g} | {entry['median']:.3g} "
            f"| {entry['min']:.3g}–{entry['max']:.3g} | {'met' if entry['met'] else '**not met**'} | {entry['note']} |"
        )
    float32 = report["sections"].get("compute_bound", {}).get("float32")
    if float32 is not None:
        fractions = float32["fractions"]
        lines += [
            "",
            f"Reported, no target: the compute-bound case in float32 reaches {np.median(fractions):.3g} "
            f"({min(fractions):.3g}–{max(fractions):.3g}) of the float32 matmul peak "
            f"({float32['peak_gflops']:.0f} GFLOP/s, JAX at its default matmul precision).",
        ]
    floor = report["sections"].get("default_experiment", {}).get("matplotlib_floor")
    if floor is not None:
        share, over = floor["share"], floor["figures_over_floor"]
        lines += [
            "",
            f"Reported, no target: the machine's floor under the default experiment's figures. Matplotlib alone "
            f"draws its {floor['panel_figures']} panel figures ({floor['panels']} panels of one {floor['points']}-"
            f"point curve each, no band, bound, fit or legend; `bare_panel_figures`) in "
            f"{np.median(floor['cpu_seconds']):.2f} s of CPU ({min(floor['cpu_seconds']):.2f}–"
            f"{max(floor['cpu_seconds']):.2f}); spread over {min(floor['cores'], floor['panel_figures'])} cores "
            f"with no overhead, that floor alone would be {np.median(share):.3g} ({min(share):.3g}–"
            f"{max(share):.3g}) of the run's wall time, against the ≤ {TARGETS['figure_share_max']:g} line. "
            f"prefsim's figures take {np.median(over):.3g}× ({min(over):.3g}–{max(over):.3g}) that floor's "
            "wall time.",
        ]
    lines += ["", "Load averages (1/5/15 min) before → after each section:", ""]
    for name, section in report["sections"].items():
        lines.append(f"- {name}: {section['loadavg_before']} → {section['loadavg_after']}")
    busiest = max(max(s["loadavg_before"][0], s["loadavg_after"][0]) for s in report["sections"].values())
    if busiest > (machine["cores"] or 1):
        lines += [
            "",
            f"**Caution:** the 1-minute load average reached {busiest:.1f} on {machine['cores']} cores: other "
            "processes competed for the CPU, so these timings are inflated and noisier than on a quiet machine.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per section (default 5, quick 2)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/summary_cpu)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    eu.add_cpu_devices_argument(parser)
    args = parser.parse_args(argv)
    eu.use_cpu_cores(args.cpu_devices)  # before JAX computes anything (as the prefsim command does)
    sections = SECTIONS if args.only is None else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    repeats = args.repeats or (2 if args.quick else 5)
    out = args.out or HERE / "results" / ("summary_cpu_quick" if args.quick else "summary_cpu")
    machine = eu.machine_info()
    started = time.perf_counter()
    report = {"mode": "quick" if args.quick else "full", "repeats": repeats, "machine": machine, "sections": {}}
    given = sys.argv[1:] if argv is None else list(argv)
    report["command"] = " ".join(["python benchmarks/run_all.py", *map(str, given)])  # as run, options included
    targets = {}
    with tempfile.TemporaryDirectory(prefix="prefsim_bench_") as scratch:
        work = Path(scratch)
        for name in sections:
            before = _load()
            if name == "per_seed":
                result, found = per_seed_section(args.quick, repeats)
            elif name == "compute_bound":
                result, found = compute_bound_section(args.quick, repeats)
            elif name == "end_to_end":
                result, found = end_to_end_section(args.quick, repeats, work)
            elif name == "default_experiment":
                result, found = default_experiment_section(args.quick, repeats, work)
            elif name == "first_result":
                result, found = first_result_section(repeats, work)
            else:
                result, found = sampled_section(args.quick, repeats)
            report["sections"][name] = {**result, "loadavg_before": before, "loadavg_after": _load()}
            targets.update(found)
    report["targets"] = targets
    report["total_seconds"] = time.perf_counter() - started
    for name, entry in targets.items():
        print(
            f"{'met    ' if entry['met'] else 'NOT met'} {name}: median {entry['median']:.3g} "
            f"(spread {entry['min']:.3g}–{entry['max']:.3g}; "
            f"{'≥' if entry['at_least'] else '≤'} {entry['threshold']:g})"
        )
    print(f"total {report['total_seconds']:.0f} s")
    if not args.no_write:
        eu.write_report(report, out, markdown)
    return report


if __name__ == "__main__":
    main()
