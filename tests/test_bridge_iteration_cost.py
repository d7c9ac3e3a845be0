"""benchmarks/bridge_iteration_cost.py: its query formula against the pair schemes' own count, its paired ratios,
and a quick end-to-end run on the tiny model whose counts match the formulas (structure only, never speed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from llm_bridge.oracles import CallableOracle
from llm_bridge.pairs import build_pairs

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bridge_iteration_cost.py"


@pytest.fixture(scope="module")
def cost():
    return load_script(BENCHMARK, "bridge_iteration_cost_benchmark")


@pytest.mark.parametrize("scheme", ["lambda_p", "iid", "best_worst_by_win_rate", "tournament"])
def test_query_formula_is_what_the_pair_schemes_ask(cost, scheme):
    """K(K−1)/2 for best/worst, K + ⌊K/2⌋ − 1 for the tournament (11 at K = 8, 6 at K = 5), 1 for λ_p: the
    count an oracle makes under llm_bridge.pairs, for every K and several label draws."""
    for samples in [2] if scheme in ("lambda_p", "iid") else range(2, 10):
        for seed in range(3):
            oracle = CallableOracle(lambda x, a, b: 0.3 + 0.4 * (a < b))
            texts = [f"response {i}" for i in range(samples)]
            build_pairs(scheme, ["prompt"], [texts], oracle, np.random.default_rng(seed))
            assert oracle.queries == cost.queries_per_prompt(scheme, samples), (samples, seed)
    assert cost.queries_per_prompt("tournament", 8) == 11 and cost.queries_per_prompt("best_worst_by_win_rate", 5) == 10
    with pytest.raises(ValueError, match="no query count"):
        cost.queries_per_prompt("sppo_win_rate", 4)


def test_ratios_are_paired_within_a_repeat(cost):
    """The ratio to DPO is taken within each repeat, then its median and range over the repeats: not a ratio of
    medians (here 2/1 = 2 vs the paired median 1.5)."""
    assert cost.paired_ratio([2.0, 3.0, 6.0], [1.0, 2.0, 4.0]) == {"median": 1.5, "low": 1.5, "high": 2.0}
    assert math.isnan(cost.paired_ratio([1.0], [0.0])["median"])
    row = {key: 1.0 for key in (*cost.COUNTS, *cost.CLOCKS)}
    repeats = [
        {"dpo": row, "sppo": {**row, "generation_seconds": 3.0, "seconds": 4.0, "oracle_queries": 10.0}},
        {"dpo": {**row, "train_seconds": 3.0}, "sppo": {**row, "generation_seconds": 5.0, "seconds": 6.0}},
    ]
    summary = cost.summarise(repeats)
    assert summary["dpo"]["update_ratio"] == {"median": 1.0, "low": 1.0, "high": 1.0}
    # update = generation + label + score + train: sppo 6 and 8 against dpo 4 and 6
    assert summary["sppo"]["update_ratio"] == {"median": (6 / 4 + 8 / 6) / 2, "low": 8 / 6, "high": 1.5}
    assert summary["sppo"]["iteration_ratio"]["median"] == 5.0 and summary["sppo"]["update_seconds"] == 7.0
    assert summary["sppo"]["counts_vary"] == ["oracle_queries"] and summary["sppo"]["oracle_queries_ratio"] == 5.5
    assert summary["dpo"]["counts_vary"] == []


def test_quick_run_counts_match_the_formulas(cost, tmp_path):
    labels = ["inpo_tournament", "sppo", "nash_md", "extragradient", "optimistic"]
    result = cost.main(["--quick", "--repeats", "1", "--rules", ",".join(labels), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bridge_iteration_cost_tiny_quick.json").read_text())
    assert written["summary"] == json.loads(json.dumps(result["summary"]))
    summary = result["summary"]
    assert list(summary) == ["dpo", *labels]
    prompts = result["prompts_per_iteration"]
    for label, entry in summary.items():
        assert entry["oracle_queries"] == entry["queries_formula"], label
        assert 0 < entry["generation_tokens"] <= entry["responses"] * result["response_tokens"], label
        assert 0 < entry["pairs"] <= prompts * entry["draws"] * (2 if label == "optimistic" else 1), label
    assert summary["inpo_tournament"]["queries_formula"] == 11 * prompts and summary["sppo"]["responses"] == 5 * prompts
    assert summary["extragradient"]["draws"] == 2 and summary["optimistic"]["draws"] == 1
    # optimistic MD's first iteration also draws from π_0 (its carried stage); the reported second one does not
    first = result["first_iteration_rows"][0]["optimistic"]["oracle_queries"]
    assert first == 2 * summary["optimistic"]["oracle_queries"]
    assert summary["dpo"]["update_ratio"]["median"] == 1.0 and summary["dpo"]["oracle_queries_ratio"] == 1.0
    text = (tmp_path / "bridge_iteration_cost_tiny_quick.md").read_text()
    assert "| inpo_tournament | tournament, K = 8 |" in text and f"| {11 * prompts} ({11 * prompts}) |" in text


def test_a_first_iteration_counts_optimistic_md_s_draw_from_pi_0(cost, tmp_path):
    """Reporting iteration 1, the formula counts the carried stage's draw from π_0 that the bridge makes then."""
    result = cost.main(
        ["--quick", "--repeats", "1", "--iterations", "1", "--rules", "optimistic", "--out", str(tmp_path)]
    )
    entry = result["summary"]["optimistic"]
    assert (
        entry["draws"] == 2
        and entry["oracle_queries"] == entry["queries_formula"] == 2 * result["prompts_per_iteration"]
    )
    with pytest.raises(SystemExit):
        cost.main(["--repeats", "0", "--out", str(tmp_path)])
