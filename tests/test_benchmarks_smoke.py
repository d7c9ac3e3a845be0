"""Smoke tests of ``benchmarks/exact_updates.py`` and ``benchmarks/run_all.py``: correctness only, never speed.

The benchmark's NumPy implementation of INPO (vectorised over seeds) and its NumPy recomputation of
every metric column must agree with prefsim (``simulate_grid``, the call ``sim.run`` makes) and with a
bare jitted scan of the rule; and the compiled trajectory must multiply the P shared by all seeds as
one matrix product.  Timings are printed by the benchmark but never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "exact_updates.py"


@pytest.fixture(scope="module")
def exact_updates():
    return load_script(BENCHMARK, "exact_updates_benchmark")


def test_quick_mode_agrees_with_numpy_and_batches_shared_P(exact_updates):
    report = exact_updates.main(["--quick", "--no-write", "--repeats", "1"])
    assert [(c["arms"], c["seeds"], c["iterations"]) for c in report["cases"]] == list(exact_updates.QUICK_CASES)
    for case in report["cases"]:
        agreement = case["agreement"]
        assert agreement["ok"], (case["arms"], agreement)
        assert agreement["final_log_policy_max_abs_diff"] < 1e-9
        check = case["shared_P_matrix_product"]
        assert check["ok"], (case["arms"], check)
        assert case["prefsim"]["updates_per_s"] > 0 and case["numpy"]["updates_per_s"] > 0
    assert "bandwidth" in report["cases"][-1]


def test_numpy_checker_agrees_on_a_bradley_terry_game_with_regret(exact_updates):
    spec = {
        "iterations": 60,
        "seeds": 3,
        "game": {"kind": "bradley_terry", "rewards": [0.0, 0.3, 1.0, 0.5], "tau": 0.2, "initial": "random"},
        "rule": [{"name": "inpo", "eta": 0.7, "tau": 0.2}],
    }
    agreement = exact_updates.check_agreement(spec)
    assert agreement["ok"], agreement
    assert agreement["nan_pattern_mismatch"] == []


def test_numpy_checker_detects_a_wrong_update(exact_updates):
    """The agreement check can fail: a NumPy update with a different η disagrees."""
    spec = {
        "iterations": 30,
        "seeds": 2,
        "game": {"kind": "cyclic", "arms": 5, "tau": 0.1, "initial": "random"},
        "rule": [{"name": "inpo", "eta": 1.0, "tau": 0.1}],
    }
    parsed, games, game_axes, targets, record, make_rule, _ = exact_updates.build_case(None, None, None, spec)
    metrics, first_nonfinite = exact_updates.simulate_grid(make_rule, {}, games, game_axes, targets, record)
    preference = np.asarray(games.preference)
    log_reference = np.asarray(games.log_reference)
    log_initial = np.asarray(games.log_initial)
    wrong_final = exact_updates.numpy_inpo(preference, log_reference, log_initial, 1.1, 0.1, 30)
    wrong_metrics = exact_updates.numpy_inpo_with_metrics(
        preference, log_reference, np.asarray(games.rewards), 0.1, log_initial, np.asarray(targets), 1.1, 0.1, record
    )
    bare_final = np.asarray(exact_updates.bare_update_function(make_rule({}), game_axes, 30, 5)(games))
    assert not exact_updates.compare(metrics, first_nonfinite, bare_final, wrong_final, wrong_metrics)["ok"]


RUN_ALL = BENCHMARK.parent / "run_all.py"


def test_run_all_quick_reports_every_issue_14_target(tmp_path):
    """``benchmarks/run_all.py --quick`` runs every section and reports each target as met or not
    (correctness of the report only: no timing is asserted)."""
    run_all = load_script(RUN_ALL, "run_all_benchmark")
    report = run_all.main(["--quick", "--repeats", "1", "--out", str(tmp_path / "summary")])
    written = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert set(written["targets"]) == set(report["targets"])
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").count("| `") == len(report["targets"])
    assert set(report["sections"]) == set(run_all.SECTIONS)
    names = " ".join(report["targets"])
    for prefix in (
        "per_seed_bandwidth_fraction[K=10,",
        "per_seed_bandwidth_fraction[K=100,",
        "per_seed_bandwidth_fraction[K=1000,",
        "per_seed_speedup_vs_numpy[K=10,",
        "per_seed_speedup_vs_numpy[K=100,",
        "end_to_end_speedup_vs_numpy[",
        "figure_share[",
        "default_experiment_figure_share[",
        "first_result_warm_no_figures[",
        "first_result_warm_with_figures[",
        "compute_bound_peak_fraction[",
        "shared_small_speedup_vs_numpy[",
        "sampled_compile_s[",
    ):
        assert prefix in names, prefix
    for entry in report["targets"].values():
        assert isinstance(entry["met"], bool) and entry["min"] <= entry["median"] <= entry["max"]
    for case in report["sections"]["per_seed"]["cases"]:
        assert case["per_seed_P"] and case["agreement"]["ok"], case["agreement"]
        assert case["batched_P_product"]["ok"], case["batched_P_product"]
        assert 0 < case["bandwidth"]["prefsim_fraction"]
    floor = report["sections"]["default_experiment"]["matplotlib_floor"]
    assert floor["panel_figures"] == 12 and floor["panels"] == 12 and floor["points"] > 1
    assert all(0 < share < 1 for share in floor["share"]) and all(s > 0 for s in floor["cpu_seconds"])
    assert "Matplotlib alone draws its 12 panel figures" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    first = report["sections"]["first_result"]["seconds"]
    assert set(first) == {"warm_no_figures", "warm_figures", "cold_no_figures", "cold_figures"}


def test_compute_bound_section_reports_peaks_measured_by_jax_alone(monkeypatch):
    """On an accelerator :func:`matmul_peak` measures JAX's product only (no NumPy entry); the section must
    still report its target (``benchmarks/gpu/run.sh --speed`` runs it there)."""
    run_all = load_script(RUN_ALL, "run_all_benchmark")
    measured = run_all.matmul_peak

    def jax_only(size, repeats=3, dtype=np.float64):
        return {"jax": measured(size, repeats, dtype)["jax"]}

    monkeypatch.setattr(run_all, "matmul_peak", jax_only)
    result, targets = run_all.compute_bound_section(quick=True, repeats=1, say=lambda text: None)
    assert all(set(peak) == {"jax"} for peak in result["matmul_peak_gflops"])
    (name,) = [name for name in targets if name.startswith("compute_bound_peak_fraction")]
    assert "jax before and after: " in targets[name]["note"]
    assert result["peak_gflops"] == max(peak["jax"] for peak in result["matmul_peak_gflops"])


def test_run_all_report_title_names_the_sections_of_an_only_run():
    """A run of some sections (``--only``) is not titled a full run: the stored re-check of three sections."""
    run_all = load_script(RUN_ALL, "run_all_benchmark")
    stored = BENCHMARK.parent / "results" / "summary_cpu_reviews3.json"
    report = json.loads(stored.read_text(encoding="utf-8"))
    title = run_all.markdown(report).splitlines()[0]
    assert title == "# Issue 14 speed targets (full run of sections end_to_end, first_result, default_experiment)"
    everything = {**report, "sections": {name: report["sections"]["end_to_end"] for name in run_all.SECTIONS}}
    assert run_all.markdown(everything).splitlines()[0] == "# Issue 14 speed targets (full run)"


def test_run_all_spec_toml_round_trips():
    run_all = load_script(RUN_ALL, "run_all_benchmark")
    import tomllib

    spec_dict = run_all.random_game_spec(10, 8, 1000)
    assert tomllib.loads(run_all.spec_toml(spec_dict)) == spec_dict


def test_sampled_vs_torch_ratios_are_taken_within_each_repeat():
    """``benchmarks/sampled_vs_torch.py --quick``: each speed-up is torch's seconds ÷ prefsim's within one repeat,
    reported as the median and spread over repeats (structure only, no speed asserted)."""
    path = BENCHMARK.parent / "sampled_vs_torch.py"
    sampled_vs_torch = load_script(path, "sampled_vs_torch_benchmark")
    result = sampled_vs_torch.main(["--quick", "--no-write", "--repeats", "3"])
    seconds = result["seconds"]
    for name, torch_variant in (
        ("speedup_vs_torch_batched", "torch_batched"),
        ("speedup_vs_torch_seed_loop", "torch_seed_loop"),
    ):
        entry = result[name]
        expected = [t / p for t, p in zip(seconds[torch_variant], seconds["prefsim"], strict=True)]
        np.testing.assert_allclose(entry["values"], expected, rtol=1e-12)
        assert entry["median"] == pytest.approx(np.median(expected), rel=1e-12)
        assert entry["min"] == min(expected) and entry["max"] == max(expected)
        best = min(seconds[torch_variant]) / min(seconds["prefsim"])
        assert result["best_of_ratios"][name] == pytest.approx(best, rel=1e-12)
