"""Sampled mode vs a PyTorch loop of the same math (issue 3, "Speed").

    python benchmarks/sampled_vs_torch.py            # full: S=64 seeds, T=100, N=1000 pairs, 50 Adam steps, K=100
    python benchmarks/sampled_vs_torch.py --quick    # smoke: small shapes, a few seconds
    options: --repeats R (default 3), --torch-seed-loop-seeds M (default 4), --out STEM, --no-write

The work (identical in every variant): a random preference game with K arms per seed (τ = 0.1),
tabular logits starting at π_ref = uniform, rule ``inpo`` (η = 1, τ = 0.1); each of T iterations
draws N pairs y, y′ ~ π_t by inverse CDF, labels them with one Bernoulli query (λ_p), and minimises the
INPO loss (docs/theory.md §A.4 Eq. 8) with 50 steps of a fresh Adam (lr 0.05, β = (0.9, 0.999), ε = 1e-8),
full batch; float32.

Variants, run in one process and interleaved repeat by repeat (load from other processes hits all
alike):

* **prefsim** — ``sim.sampled.engine.simulate_sampled_grid``, the call ``sim.run`` makes: the jitted
  scan vmapped over seeds, with the distance to the exact update every iteration and every metric
  column at iterations 0 and T.  Compilation is timed separately (first call) and excluded from
  the run time.
* **torch (batched)** — the strongest PyTorch baseline: all S seeds as one (S, K) logit tensor, the
  loop over iterations and Adam steps in Python, ``torch.optim.Adam`` (Adam is elementwise, so the
  seeds stay independent).  No metrics, no exact-update distance (less work than prefsim).
* **torch (per-seed loop)** — the way a single-run PyTorch script is usually written, looped over
  seeds: timed on M seeds and scaled by S/M.

Speed-ups are torch time / prefsim run time within one repeat (the variants of a repeat run back to back),
reported as the median over repeats with the spread (min–max); the ratios of the best times are kept as
``best_of_ratios`` (unpaired, so a drift of a shared machine between repeats enters them).  Results:
``benchmarks/results/sampled_vs_torch_cpu`` (``.json`` and ``.md``), or ``…_quick`` for ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

import sim  # noqa: E402
from sim.sampled.engine import simulate_sampled_grid  # noqa: E402
from sim.sampled.experiment import build_sampled_inputs  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 as in sim.run (importing sim changes no global setting)

ETA, TAU, LEARNING_RATE = 1.0, 0.1, 0.05


def make_spec(seeds: int, iterations: int, pairs: int, steps: int, arms: int):
    return sim.parse_spec(
        {
            "iterations": iterations,
            "seeds": seeds,
            "record_every": iterations,
            "precision": "float32",
            "game": {"kind": "random", "arms": arms, "tau": TAU},
            "rule": [{"name": "inpo", "eta": ETA, "tau": TAU}],
            "run": {
                "mode": "sampled",
                "pairs_per_iteration": pairs,
                "optimizer": "adam",
                "learning_rate": LEARNING_RATE,
                "inner_steps": steps,
            },
        }
    )


def prefsim_runner(spec):
    inputs = build_sampled_inputs(spec, jnp.float32)
    record = np.array([0, spec.iterations])
    rule = spec.rules[0]

    def run():
        metrics, first_bad = simulate_sampled_grid(
            rule.name, rule.fixed(), {}, spec.run, inputs.problems, inputs.axes, inputs.keys, record
        )
        return metrics

    return run, inputs


def torch_inpo(
    preference: torch.Tensor, iterations: int, pairs: int, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """Sampled INPO for a batch of seeds: preference (S, K, K); returns the final log-policies (S, K)."""
    seeds, arms, _ = preference.shape
    log_reference = torch.full((seeds, arms), -float(np.log(arms)))
    logits = log_reference.clone()
    rows = torch.arange(seeds)[:, None]
    for _ in range(iterations):
        with torch.no_grad():
            previous = torch.log_softmax(logits, dim=-1)
            uniforms = torch.rand((seeds, pairs, 3), generator=generator)
            cdf = torch.cumsum(previous.exp(), dim=-1).contiguous()
            draws = (
                torch.searchsorted(cdf, uniforms[:, :, :2].reshape(seeds, -1).contiguous())
                .clamp_(max=arms - 1)
                .reshape(seeds, pairs, 2)
            )
            first, second = draws[..., 0], draws[..., 1]
            first_wins = uniforms[..., 2] < preference[rows, first, second]
            winner = torch.where(first_wins, first, second)
            loser = torch.where(first_wins, second, first)
            anchor = (TAU / ETA) * (log_reference.gather(1, winner) - log_reference.gather(1, loser)) + (
                (ETA - TAU) / ETA
            ) * (previous.gather(1, winner) - previous.gather(1, loser))
        parameters = logits.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([parameters], lr=LEARNING_RATE)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            log_policy = torch.log_softmax(parameters, dim=-1)
            h = log_policy.gather(1, winner) - log_policy.gather(1, loser) - anchor
            loss = ((h - 1.0 / (2.0 * ETA)) ** 2).mean(dim=1).sum()
            loss.backward()
            optimizer.step()
        logits = parameters.detach()
    return torch.log_softmax(logits, dim=-1)


def per_repeat_ratios(numerators, denominators) -> dict:
    """numerator ÷ denominator within each repeat: the median, min, max and every value."""
    values = [float(n / d) for n, d in zip(numerators, denominators, strict=True)]
    return {"median": float(np.median(values)), "min": min(values), "max": max(values), "values": values}


def ratio_text(ratios: dict) -> str:
    return f"{ratios['median']:.1f}× ({ratios['min']:.1f}–{ratios['max']:.1f})"


def time_call(function) -> float:
    tic = time.perf_counter()
    function()
    return time.perf_counter() - tic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--torch-seed-loop-seeds", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    if args.quick:
        seeds, iterations, pairs, steps, arms = 8, 10, 200, 10, 20
    else:
        seeds, iterations, pairs, steps, arms = 64, 100, 1000, 50, 100
    repeats = args.repeats or (1 if args.quick else 3)
    loop_seeds = args.torch_seed_loop_seeds or (2 if args.quick else 4)
    torch.manual_seed(0)
    torch_threads = torch.get_num_threads()

    spec = make_spec(seeds, iterations, pairs, steps, arms)
    run, inputs = prefsim_runner(spec)
    compile_seconds = time_call(lambda: jax.block_until_ready(run()))
    preference = torch.tensor(np.array(inputs.problems.preference)[:, 0], dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)

    timings = {"prefsim": [], "torch_batched": [], "torch_seed_loop": []}
    for _ in range(repeats):
        timings["prefsim"].append(time_call(lambda: jax.block_until_ready(run())))
        timings["torch_batched"].append(time_call(lambda: torch_inpo(preference, iterations, pairs, steps, generator)))
        timings["torch_seed_loop"].append(
            time_call(
                lambda: [
                    torch_inpo(preference[s : s + 1], iterations, pairs, steps, generator) for s in range(loop_seeds)
                ]
            )
            * seeds
            / loop_seeds
        )

    # sanity: both implementations reach a similar policy (same math, different random streams)
    metrics = run()
    prefsim_gap = float(np.mean(metrics["duality_gap"][0, :, -1]))
    final = torch_inpo(preference, iterations, pairs, steps, generator).double().numpy()
    gaps = []
    for s in range(seeds):
        matrix = preference[s].double().numpy()
        policy = np.exp(final[s])
        reference = np.full(arms, 1.0 / arms)
        win = matrix @ policy
        log_br = np.log(reference) + win / TAU
        log_br -= np.logaddexp.reduce(log_br)
        gaps.append(2 * TAU * float(np.sum(policy * (final[s] - log_br))))
    torch_gap = float(np.mean(gaps))

    best = {name: min(values) for name, values in timings.items()}
    paired = {
        "speedup_vs_torch_batched": per_repeat_ratios(timings["torch_batched"], timings["prefsim"]),
        "speedup_vs_torch_seed_loop": per_repeat_ratios(timings["torch_seed_loop"], timings["prefsim"]),
        "speedup_vs_torch_batched_including_compile": per_repeat_ratios(
            timings["torch_batched"], [seconds + compile_seconds for seconds in timings["prefsim"]]
        ),
    }
    result = {
        "benchmark": "sampled_vs_torch",
        "quick": args.quick,
        "shape": {
            "seeds": seeds,
            "iterations": iterations,
            "pairs_per_iteration": pairs,
            "adam_steps": steps,
            "arms": arms,
        },
        "rule": {
            "name": "inpo",
            "eta": ETA,
            "tau": TAU,
            "pair_scheme": "lambda_p",
            "policy": "tabular",
            "learning_rate": LEARNING_RATE,
        },
        "dtype": "float32",
        "repeats": repeats,
        "seconds": timings,
        "best_seconds": best,
        "prefsim_compile_seconds": compile_seconds,
        **paired,
        "best_of_ratios": {
            "speedup_vs_torch_batched": best["torch_batched"] / best["prefsim"],
            "speedup_vs_torch_seed_loop": best["torch_seed_loop"] / best["prefsim"],
            "speedup_vs_torch_batched_including_compile": best["torch_batched"] / (best["prefsim"] + compile_seconds),
        },
        "torch_seed_loop_timed_seeds": loop_seeds,
        "final_duality_gap_mean": {"prefsim": prefsim_gap, "torch_batched": torch_gap},
        "environment": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "torch": torch.__version__,
            "torch_threads": torch_threads,
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()],
        },
    }
    table = [
        f"# Sampled mode vs PyTorch ({'quick' if args.quick else 'full'})",
        "",
        f"S = {seeds} seeds × T = {iterations} iterations × N = {pairs} pairs × {steps} Adam steps, K = {arms} arms, "
        f"INPO (η = {ETA}, τ = {TAU}), tabular logits, λ_p pairs, float32; {repeats} repeats; "
        f"{os.cpu_count()} CPU cores, 1-min load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "Seconds: the best of the repeats. Speed-up: torch's seconds ÷ prefsim's within one repeat, the median "
        "over repeats (min–max).",
        "",
        "| variant | seconds (best) | speed-up of prefsim |",
        "|---|---|---|",
        f"| prefsim (jitted scan, vmapped seeds; run only) | {best['prefsim']:.3f} | 1 |",
        f"| prefsim compilation (first call, once) | {compile_seconds:.3f} | — |",
        f"| torch, all seeds batched in one tensor | {best['torch_batched']:.3f} "
        f"| {ratio_text(result['speedup_vs_torch_batched'])} |",
        f"| torch, loop over seeds (timed on {loop_seeds}, scaled) | {best['torch_seed_loop']:.3f} "
        f"| {ratio_text(result['speedup_vs_torch_seed_loop'])} |",
        "",
        f"Mean final duality gap: prefsim {prefsim_gap:.4g}, torch {torch_gap:.4g} "
        "(same math, different random streams).",
        "",
    ]
    text = "\n".join(table)
    print(text)
    if not args.no_write:
        stem = (
            Path(args.out)
            if args.out
            else Path(__file__).resolve().parent
            / "results"
            / ("sampled_vs_torch_quick" if args.quick else "sampled_vs_torch_cpu")
        )
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
        stem.with_suffix(".md").write_text(text)
    return result


if __name__ == "__main__":
    main()
