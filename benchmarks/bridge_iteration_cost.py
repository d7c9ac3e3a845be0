r"""Cost of one whole bridge iteration per rule, each with its paper's pair scheme, relative to iterative DPO's.

``bridge_step_cost.py`` times one training step: every rule's is one forward/backward over the same pairs,
≈ DPO's.  A whole iteration differs where the papers' data differ: SPPO samples K = 5 responses per prompt
and asks the oracle all K(K−1)/2 = 10 comparisons to estimate win rates, INPO's practice K = 8 and a
tournament of 3K/2 − 1 = 11 matches, a λ_p pair (INPO's theory, online IPO, iterative DPO here) 2 samples
and 1 query; Nash-MD samples its second response from a geometric mixture (a second model, token by token);
extragradient draws and trains twice, optimistic MD trains twice on one draw, MNPO scores its pairs under one
more past iterate.  This script runs every such configuration through the bridge (``prefsim llm``'s loop:
sample → label → precompute log π_t, log π_ref → train → evaluate) with the same prompts, sizes and seeds,
the rules in a rotated order in every repeat, and reports for the last iteration (from the second on
optimistic MD's draws are its steady state) the counts — responses, generated tokens, oracle queries (with
the scheme's formula), training pairs and tokens — and the wall time of generation, labelling, scoring,
training and evaluation (the metrics row's ``*_seconds``), with each rule's ratio to DPO's iteration in the
same repeat (median over repeats, min–max spread).

    .venv/bin/python benchmarks/bridge_iteration_cost.py --repeats 5              # tiny random Llama (≈ 3 min)
    .venv/bin/python benchmarks/bridge_iteration_cost.py --quick --repeats 1      # smoke run (ratios meaningless)
    .venv/bin/python benchmarks/bridge_iteration_cost.py --model smollm2 --repeats 1 --prompts 4 --iterations 1 \
        --rules inpo,inpo_tournament,sppo                                        # SmolLM2-135M (≈ 6 min on 2 CPUs)

Writes ``benchmarks/results/bridge_iteration_cost_<model>.{json,md}`` (``--quick``: ``..._<model>_quick``).
The counts are exact and machine-independent (they depend on the seeds only through the lengths of the
sampled responses and, for the tournament, on how many pairs the filter keeps); the seconds are wall-clock on
whatever machine runs it, reported with its load, never a pass/fail test.  The oracle is VADER, a
Bradley–Terry oracle that caches each response's reward, so its labelling time grows with K, not with the
queries; a pairwise judge (PairRM, an LLM) pays per query, which the query column counts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from bandits.pair_schemes import SCHEME_ALIASES, best_second_comparisons, tournament_queries
from llm_bridge.loop import PHASES, run_bridge
from llm_bridge.models import load_tokenizer
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import SENTENCES, build_tiny_model

#: label → (the ``[[rule]]`` table, what it runs).  DPO's λ_p iteration is the baseline of the ratios.
CONFIGURATIONS = {
    "dpo": ({"name": "dpo", "beta": 0.1}, "iterative DPO on a λ_p pair (2 samples, 1 query): the baseline"),
    "online_ipo": ({"name": "online_ipo"}, "online IPO on a λ_p pair (Calandriello et al.)"),
    "inpo": ({"name": "inpo", "eta": 0.5}, "INPO on a λ_p pair: its theory (Eq. 8 = Eq. 7, Prop. 6)"),
    "inpo_tournament": (
        {"name": "inpo", "eta": 0.5, "pairs": "tournament", "samples": 8},
        "INPO's practice: K = 8, tournament (3K/2 − 1 = 11 matches), kept if the champion wins the final",
    ),
    "sppo": (
        {"name": "sppo", "eta": 1.0, "pairs": "best_worst_by_win_rate", "samples": 5},
        "SPPO's practice: K = 5, all K(K−1)/2 = 10 comparisons, best vs worst by estimated win rate",
    ),
    "sppo_lambda_p": ({"name": "sppo", "eta": 1.0}, "SPPO on one λ_p pair (a one-opponent estimate, theory §D.4)"),
    "dno": (
        {"name": "dno", "eta": 1.0, "pairs": "best_worst_by_win_rate", "samples": 5},
        "DNO-Prct: K samples ranked by win rate (K = 5 as SPPO's; its teacher response and margin filter are "
        "not modelled)",
    ),
    "nash_md": (
        {"name": "nash_md"},
        "Nash-MD: y ~ π_t, y′ ~ the geometric mixture with π_ref (token by token), 1 query",
    ),
    "apo_dpo": (
        {"name": "apo", "base": "dpo", "beta": 0.1, "alpha": 0.3},
        "APO(DPO), parameter form: DPO's iteration and the extrapolation of the weights",
    ),
    "extragradient": ({"name": "extragradient"}, "EGPO (mirror-prox): two λ_p draws, two trainings"),
    "optimistic": ({"name": "optimistic"}, "ONPO: one λ_p draw, two trainings (the first iteration draws twice)"),
    "mnpo": ({"name": "mnpo", "eta": 1.0}, "MNPO, history 2: INPO's iteration, pairs also scored under π_{t−1}"),
}
BASELINE = "dpo"
#: The counts of a metrics row this script reports, and its clocks (``<phase>_seconds``, then the whole row's).
COUNTS = ("generation_tokens", "oracle_queries", "pairs", "train_tokens", "optimizer_steps")
CLOCKS = (*(f"{phase}_seconds" for phase in PHASES), "seconds")
#: What an iteration costs without its evaluation (the algorithm's own work).
UPDATE_PHASES = ("generation_seconds", "label_seconds", "score_seconds", "train_seconds")


def queries_per_prompt(scheme: str, samples: int) -> int:
    """Oracle queries of one prompt's pair construction (:mod:`llm_bridge.pairs`): a λ_p (or opponent) pair 1;
    best/worst by win rate every comparison, K(K−1)/2; the tournament K + ⌊K/2⌋ − 1
    (:func:`bandits.pair_schemes.tournament_queries`: 3K/2 − 1 for even K, 11 for K = 8); COMAL's best vs second
    best both orders of every comparison, K(K−1) (:func:`~bandits.pair_schemes.best_second_comparisons`)."""
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme == "lambda_p":
        return 1
    if scheme == "best_worst_by_win_rate":
        return samples * (samples - 1) // 2
    if scheme == "tournament":
        return tournament_queries(samples)
    if scheme == "best_second_by_win_rate":
        return len(best_second_comparisons(samples))
    raise ValueError(f"no query count for pair scheme {scheme!r}")


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> dict:
    """``values[r] ÷ baseline[r]`` within each repeat r (interleaved runs: a drift of the machine cancels), as
    ``{"median", "low", "high"}`` over the repeats (NaN where the baseline is 0)."""
    ratios = [v / b if b else math.nan for v, b in zip(values, baseline, strict=True)]
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def summarise(repeats: list[dict], baseline: str = BASELINE) -> dict:
    """Per label, from ``repeats`` (one ``{label: metrics row}`` per repeat): the median over repeats of every
    count and clock, the counts that varied between repeats, ``update_seconds`` (generation + labelling +
    scoring + training: the iteration without its evaluation and checkpoints), the paired ratios
    (:func:`paired_ratio`) of the update and of the whole iteration (``seconds``) to ``baseline``'s, and the
    ratios of the median counts to ``baseline``'s."""
    summary = {}
    for label in repeats[0]:
        rows = [repeat[label] for repeat in repeats]
        base = [repeat[baseline] for repeat in repeats]
        entry = {key: statistics.median(row[key] for row in rows) for key in (*COUNTS, *CLOCKS)}
        entry["counts_vary"] = [key for key in COUNTS if len({row[key] for row in rows}) > 1]
        update = [sum(row[key] for key in UPDATE_PHASES) for row in rows]
        entry["update_seconds"] = statistics.median(update)
        entry["update_ratio"] = paired_ratio(update, [sum(row[key] for key in UPDATE_PHASES) for row in base])
        entry["iteration_ratio"] = paired_ratio([row["seconds"] for row in rows], [row["seconds"] for row in base])
        for key in ("generation_tokens", "oracle_queries", "train_tokens"):
            entry[f"{key}_ratio"] = entry[key] / statistics.median(row[key] for row in base)
        summary[label] = entry
    return summary


def iteration_rows(table: pd.DataFrame, iteration: int, labels: Sequence[str]) -> dict:
    """``{label: {count or clock: value}}`` of iteration ``iteration`` of a run's metrics table."""
    part = table[table["iteration"] == iteration].set_index("rule")
    return {label: {key: float(part.loc[label, key]) for key in (*COUNTS, *CLOCKS)} for label in labels}


def spec_table(labels: Sequence[str], args: argparse.Namespace, model: str, chat_template: bool) -> dict:
    """The bridge spec (as TOML's dict) that runs ``labels``' configurations, in this order, at ``args``' sizes."""
    return {
        "iterations": args.iterations,
        "seed": args.seed,
        "tau": 0.1,
        "model": {"path": model, "dtype": "float32", "device": "cpu"},
        "prompts": {
            "train": list(SENTENCES[:8]),
            "heldout": list(SENTENCES[8:]),
            "per_iteration": args.prompts,
            "chat_template": chat_template,
        },
        "generation": {"max_new_tokens": args.response_tokens, "batch_size": 16},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 1e-6, "batch_size": 8, "micro_batch_size": 8, "epochs": 1},
        "rule": [{**CONFIGURATIONS[label][0], "label": label} for label in labels],
        "run": {"threads": args.threads},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny (random Llama built offline), smollm2, or a local model path"
    )
    parser.add_argument("--prompts", type=int, default=8, help="prompts per iteration (the same for every rule)")
    parser.add_argument("--response-tokens", type=int, default=16, help="max new tokens per response")
    parser.add_argument("--iterations", type=int, default=2, help="iterations per rule; the last one is reported")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every rule (rotated order; medians)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on small VMs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default=",".join(CONFIGURATIONS), help="comma-separated labels (dpo is added)")
    parser.add_argument("--quick", action="store_true", help="a smaller model and sizes: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be ≥ 1, got {args.repeats}")
    if args.quick:
        args.prompts, args.response_tokens = min(args.prompts, 4), min(args.response_tokens, 6)
    labels = [BASELINE] + [label for label in args.rules.split(",") if label and label != BASELINE]
    unknown = [label for label in labels if label not in CONFIGURATIONS]
    if unknown:
        parser.error(f"unknown --rules {', '.join(unknown)}; known: {', '.join(CONFIGURATIONS)}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = args.model
        if args.model == "tiny":
            size = {"hidden_size": 32, "layers": 2} if args.quick else {"hidden_size": 64, "layers": 4}
            model = str(build_tiny_model(scratch / "tiny", "llama", **size))
        chat_template = getattr(load_tokenizer(model), "chat_template", None) is not None
        warm = spec_table([BASELINE], argparse.Namespace(**{**vars(args), "iterations": 1}), model, chat_template)
        run_bridge(parse_spec(warm), scratch / "warmup", progress=False)  # first-call overheads, not timed
        spec = parse_spec(spec_table(labels, args, model, chat_template))
        repeats, first_iterations, loads = [], [], []
        for repeat in range(args.repeats):
            order = labels[repeat % len(labels) :] + labels[: repeat % len(labels)]  # each rule leads once in turn
            before = os.getloadavg()
            table = run_bridge(
                parse_spec(spec_table(order, args, model, chat_template)), scratch / f"r{repeat}", progress=False
            )
            loads.append({"before": before, "after": os.getloadavg()})
            repeats.append(iteration_rows(table, args.iterations, labels))
            first_iterations.append(iteration_rows(table, 1, labels))
    summary = summarise(repeats)

    for entry in spec.rules:  # the counts the schemes' formulas give (exact), next to the measured ones
        rule = entry.rule
        # a carried stage (optimistic MD's leading step) draws only in the first iteration, from π_0
        draws = sum(1 for stage in rule.stages if stage.pairs_from != "carried" or args.iterations == 1)
        summary[entry.label].update(
            scheme="opponent (π_t, mixture)" if rule.opponent is not None else rule.pairs,
            samples=rule.samples,
            draws=draws,
            responses=args.prompts * draws * rule.samples,
            queries_formula=args.prompts * draws * queries_per_prompt(rule.pairs, rule.samples),
            what=CONFIGURATIONS[entry.label][1],
        )
    name = "tiny" if args.model == "tiny" else "smollm2" if args.model == "smollm2" else Path(args.model).name
    name += "_quick" if args.quick else ""
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": args.model,
        "prompts_per_iteration": args.prompts,
        "response_tokens": args.response_tokens,
        "iterations": args.iterations,
        "reported_iteration": args.iterations,
        "repeats": args.repeats,
        "threads": args.threads,
        "seed": args.seed,
        "oracle": "vader (Bradley–Terry over VADER's compound score, rewards cached per response)",
        "training": spec.raw["training"],
        "summary": summary,
        "all_rows": repeats,
        "first_iteration_rows": first_iterations,
        "load_average": loads,
        "cpus": os.cpu_count(),
        "total_seconds": time.perf_counter() - started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "device": "cpu",
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bridge_iteration_cost_{name}.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (out / f"bridge_iteration_cost_{name}.md").write_text(text)
    print(text)
    return result


def _spread(ratio: dict) -> str:
    return f"{ratio['median']:.2f} ({ratio['low']:.2f}–{ratio['high']:.2f})"


def report(result: dict) -> str:
    """The Markdown report of :func:`main`'s result."""
    summary, loads = result["summary"], result["load_average"]
    low = min(min(load["before"][0], load["after"][0]) for load in loads)
    high = max(max(load["before"][0], load["after"][0]) for load in loads)
    lines = [
        f"# Bridge iteration cost ({result['model']}, CPU, {result['threads']} torch thread(s), {result['date']})",
        "",
        f"{result['prompts_per_iteration']} prompts per iteration, responses of ≤ {result['response_tokens']} new "
        f"tokens, oracle {result['oracle']}; iteration {result['reported_iteration']} of each rule's run, median of "
        f"{result['repeats']} repeats (rules in a rotated order).  **Counts** (responses, tokens, queries, pairs) "
        "are exact and machine-independent; **seconds** are wall-clock on this machine "
        f"({result['cpus']} CPUs, 1-min load average {low:.1f}–{high:.1f} during the repeats, from other jobs). "
        "× DPO: the median over repeats of the rule's time ÷ DPO's in the same repeat (min–max); *update* = "
        "generation + labelling + scoring (log π_t, log π_ref) + training, the algorithm's own work; *iteration* "
        "adds the held-out evaluation (the same for every rule) and checkpoints.",
        "",
        "| rule | pairs from | responses | gen. tokens | × DPO | oracle queries (formula) | × DPO | train pairs "
        "| train tokens | × DPO | gen. s | label s | score s | train s | update s | update × DPO | eval s "
        "| iteration × DPO |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in summary.items():
        scheme = s["scheme"] if s["scheme"].startswith("opponent") else f"{s['scheme']}, K = {s['samples']}"
        scheme += f", {s['draws']} draws" if s["draws"] > 1 else ""
        lines.append(
            f"| {label} | {scheme} | {s['responses']} | {s['generation_tokens']:.0f} | "
            f"{s['generation_tokens_ratio']:.2f} | {s['oracle_queries']:.0f} ({s['queries_formula']}) | "
            f"{s['oracle_queries_ratio']:.1f} | {s['pairs']:.0f} | {s['train_tokens']:.0f} | "
            f"{s['train_tokens_ratio']:.2f} | {s['generation_seconds']:.2f} | {s['label_seconds']:.3f} | "
            f"{s['score_seconds']:.2f} | {s['train_seconds']:.2f} | {s['update_seconds']:.2f} | "
            f"{_spread(s['update_ratio'])} | {s['eval_seconds']:.2f} | {_spread(s['iteration_ratio'])} |"
        )
    varied = {label: s["counts_vary"] for label, s in summary.items() if s["counts_vary"]}
    lines += ["", "What each row runs:", ""]
    lines += [f"* `{label}`: {s['what']}" for label, s in summary.items()]
    lines += [
        "",
        "Counts that varied between repeats (medians shown): "
        + (", ".join(f"{label}: {', '.join(keys)}" for label, keys in varied.items()) if varied else "none")
        + f".  Total run time {result['total_seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
