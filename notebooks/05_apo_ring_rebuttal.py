# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 — The APO rebuttal's ring-reward simulation
#
# **Question.** In their rebuttal (docs/theory.md §B.5) the APO authors report a toy simulation: 2-D
# actions, a ring-shaped reward decaying exponentially away from the ring, a two-layer MLP policy of
# width 256, β = 1, α = 0.3, 300 iterations, and the mean regret per 60-iteration segment:
#
# | segment | 1–60 | 61–120 | 121–180 | 181–240 | 241–300 |
# |---|---|---|---|---|---|
# | DPO | 0.3612 | 0.1132 | 0.0343 | 0.0125 | 0.0060 |
# | DPO with extrapolation (APO) | 0.3368 | 0.0840 | 0.0119 | 0.0037 | 0.0025 |
# | ratio DPO/APO | 1.07 | 1.35 | 2.88 | 3.38 | 2.40 |
#
# What do exact log-space updates predict for this task, and does a sampled reconstruction with an
# MLP and parameter-space extrapolation (what APO ran) reproduce the table?  The reward formula,
# output distribution, preference model and sample sizes are **not given**; the choices here are
# those of `bandits.continuous` (25 × 25 action grid on [−2, 2]², r(a) = exp(−|‖a‖ − 1|/0.25),
# Bradley–Terry preferences, uniform reference) plus N = 500 `lambda_p` pairs per iteration and 30
# Adam steps (lr 3e-3) per iteration, chosen by us.
#
# Seeds: 4 at CI scale, 20 at full scale (`PREFSIM_NOTEBOOK_SCALE=full`).  docs/theory.md §D.1 asks for S ≥ 20,
# but the sampled MLP reconstruction (300 iterations × 30 Adam steps × 2 rules) costs about 16–19 s per
# seed on the 2-core CI machine (more per seed when more than 4 seeds are vmapped together): this notebook
# takes 143 s under pytest at 4 seeds, 20 seeds would add ≈ 5 minutes, and notebooks 03 (20 seeds,
# 61 s) and 06 (20 seeds, 89–140 s depending on load) leave about a minute of the 6-minute budget of the
# three, so 4 is the largest count that fits with a margin for load.  The CIs of section 2 are therefore
# over 4 seeds only at CI scale; the Results cell also records a one-off 20-seed run (seeds 0–19).

# %%
import os
import pathlib
import time

import jax
import numpy as np
import pandas as pd

import sim
from bandits.continuous import ring_task, segment_regret
from sim import plotting, stats, theory

jax.config.update("jax_enable_x64", True)  # float64 for the direct calls below; sim.run scopes its own

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "05_apo_ring_rebuttal"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 4 if SCALE == "ci" else 20
ITERATIONS, SEGMENT, ALPHA, BETA = 300, 60, 0.3, 1.0
AUTHORS = pd.DataFrame(
    {"DPO": [0.3612, 0.1132, 0.0343, 0.0125, 0.0060], "APO": [0.3368, 0.0840, 0.0119, 0.0037, 0.0025]},
    index=[f"{60 * i + 1}–{60 * (i + 1)}" for i in range(5)],
)
STARTED = time.time()


show = plotting.show_in_notebook


print(f"scale={SCALE} seeds={SEEDS}")

# %% [markdown]
# ## 1. Exact log-space prediction on the same grid
#
# With exact rewards π_T = softmax(log π_ref + c_T·r/β) (docs/theory.md §B.3).  In the no-gap
# (continuous-action) regime regret ∝ 1/c_T, so DPO/APO → c_T(α)/T → 1/(1−α) = 1.43; a finite grid
# has a reward gap (here between the best grid points and the next), and then the ratio grows
# exponentially once c_T·Δ/β ≫ 1.  Finer grids push that regime later.

# %%
exact_rows = {}
for grid in (25, 101):
    task = ring_task(grid=grid)
    rewards = task["rewards"][0]
    reference = np.full(rewards.size, 1.0 / rewards.size)
    curves = {}
    for name, alpha in (("DPO", 0.0), ("APO", ALPHA)):
        regrets = [
            rewards.max() - theory.apo_exact_policy(t, alpha, BETA, reference, rewards) @ rewards
            for t in range(1, ITERATIONS + 1)
        ]
        curves[name] = segment_regret(np.array(regrets), SEGMENT)
    frame = pd.DataFrame(curves, index=AUTHORS.index)
    frame["ratio"] = frame.DPO / frame.APO
    exact_rows[grid] = frame
    # distinct reward levels to 12 digits: grid points on the ring at symmetric positions differ only by rounding
    levels = np.unique(np.round(rewards, 12))
    print(
        f"exact log-space, {grid}×{grid} grid (gap between the two best reward levels Δ = {theory.reward_gap(levels):.2e}):"
    )
    print(frame.to_string(float_format=lambda v: f"{v:.4g}"))

# %% [markdown]
# ## 2. Sampled reconstruction: MLP policy, parameter-space extrapolation

# %%
spec = {
    "iterations": ITERATIONS,
    "seeds": SEEDS,
    "record_every": 1,
    "game": {"tau": 0.0},  # problem = "ring" reads only τ of the [game] table
    "rule": [{"name": "dpo", "beta": BETA}, {"name": "apo", "alpha": ALPHA, "beta": BETA, "form": "parameters"}],
    "run": {
        "mode": "sampled",
        "problem": "ring",
        "ring_grid": 25,
        "policy": "mlp",
        "mlp_width": 256,
        "mlp_hidden_layers": 1,
        "pairs_per_iteration": 500,
        "pair_scheme": "lambda_p",
        "optimizer": "adam",
        "learning_rate": 0.003,
        "inner_steps": 30,
    },
}
table = sim.run(spec)
segments = {}
for rule in ("dpo", "apo"):
    wide = table[(table.rule == rule) & (table.iteration >= 1)].pivot(
        index="seed", columns="iteration", values="suboptimality"
    )
    segments[rule] = segment_regret(wide.to_numpy(), SEGMENT)  # (seeds, 5)
rows = []
for index, label in enumerate(AUTHORS.index):
    dpo_ci = stats.bootstrap_ci(segments["dpo"][:, index])
    apo_ci = stats.bootstrap_ci(segments["apo"][:, index])
    diff_ci = stats.bootstrap_ci(segments["apo"][:, index] - segments["dpo"][:, index])
    rows.append(
        {
            "segment": label,
            "DPO": dpo_ci[0],
            "DPO_ci": (round(float(dpo_ci[1]), 4), round(float(dpo_ci[2]), 4)),
            "APO": apo_ci[0],
            "APO_ci": (round(float(apo_ci[1]), 4), round(float(apo_ci[2]), 4)),
            "ratio": dpo_ci[0] / apo_ci[0],
            "APO−DPO_lower": diff_ci[1],
            "APO−DPO_upper": diff_ci[2],
            "authors_ratio": AUTHORS.DPO.iloc[index] / AUTHORS.APO.iloc[index],
        }
    )
reconstruction = pd.DataFrame(rows).set_index("segment")
print(reconstruction.to_string(float_format=lambda v: f"{v:.4g}"))
drop = {rule: stats.bootstrap_ci(values[:, -1] - values[:, 0]) for rule, values in segments.items()}

figure, axes = plotting.new_figure()
x = np.arange(5)
for column, colour in (("DPO", "C0"), ("APO", "C1")):
    axes.plot(x, AUTHORS[column], "s--", color=colour, label=f"authors' {column}")
    axes.plot(x, reconstruction[column], "o-", color=colour, label=f"sampled MLP {column} ({SEEDS} seeds)")
    lower = [ci[0] for ci in reconstruction[f"{column}_ci"]]
    upper = [ci[1] for ci in reconstruction[f"{column}_ci"]]
    axes.fill_between(x, lower, upper, color=colour, alpha=0.2, lw=0)
    axes.plot(x, exact_rows[101][column], ":", color=colour, label=f"exact log-space {column} (101² grid)")
axes.set_yscale("log")
axes.set_xticks(x, AUTHORS.index)
axes.set_xlabel("iteration segment")
axes.set_ylabel("mean regret r_max − E_π r")
axes.legend(frameon=False, fontsize=7)
axes.set_title("APO rebuttal ring task: β = 1, α = 0.3, 300 iterations")
show(plotting.save_figure(figure, OUT / "ring_segments.png"))

# %% [markdown]
# ## Results (CI settings: 4 seeds 0–3; recorded from the last run)
#
# Mean regret per 60-iteration segment:
#
# | segment | authors DPO | authors APO | ratio | exact 25² DPO / APO (ratio) | exact 101² ratio | sampled MLP DPO [95% CI] | sampled MLP APO [95% CI] | ratio |
# |---|---|---|---|---|---|---|---|---|
# | 1–60 | 0.3612 | 0.3368 | 1.07 | 0.0762 / 0.0535 (1.42) | 1.38 | 0.425 [0.371, 0.478] | 0.338 [0.278, 0.384] | 1.26 |
# | 61–120 | 0.1132 | 0.0840 | 1.35 | 1.2e-3 / 2.3e-4 (5.5) | 1.73 | 0.055 [0.027, 0.100] | 0.040 [0.037, 0.044] | 1.35 |
# | 121–180 | 0.0343 | 0.0119 | 2.88 | 5.0e-5 / 2.3e-6 (22) | 1.78 | 0.022 [0.018, 0.028] | 0.043 [0.028, 0.067] | 0.53 |
# | 181–240 | 0.0125 | 0.0037 | 3.38 | 2.0e-6 / 2.3e-8 (87) | 1.89 | 0.017 [0.015, 0.020] | 0.034 [0.018, 0.053] | 0.50 |
# | 241–300 | 0.0060 | 0.0025 | 2.40 | 7.9e-8 / 2.3e-10 (347) | 1.99 | 0.017 [0.015, 0.020] | 0.021 [0.016, 0.028] | 0.81 |
#
# * Exact log-space updates: the first-segment ratio is near 1/(1−α) = 1.43 on both grids (1.42 on the
#   25² grid, 1.38 on the 101² grid); later the ratio depends on the discretisation (a reward gap makes it
#   grow exponentially: 347 on the 25² grid; 1.99 on the 101² grid, which stays below the 25² grid's ratio
#   in every segment from the second on).  Exact regrets are below the authors' numbers in every segment, for
#   both rules on both grids: 4.3–6.3× below in segment 1, then 4.6–24× (101² grid) and ≥ 90× (25² grid;
#   its reward gap Δ = 0.054 against 0.0032 on the 101² grid).
# * Sampled MLP with parameter extrapolation (our choices of N, optimiser and reward width): APO leads
#   in segment 1 (APO − DPO 95% CI [−0.126, −0.012]), as in the authors' table, but not later: from
#   segment 3 on our APO is *behind* DPO by the point estimate (ratio DPO/APO 0.53, 0.50, 0.81),
#   significantly only in segment 3 (APO − DPO CI [0.004, 0.049]; segments 4 and 5: [−0.001, 0.036] and
#   [−0.001, 0.009]); both end near 0.02 (segment 5: 0.017 and 0.021, the inner loop's and sampling
#   noise floor; DPO flat over segments 4–5, APO still falling), so the authors' 2.4–3.4× late advantage
#   is not reproduced.  With 4 seeds a 95% percentile-bootstrap interval covers
#   only ≈ 79% (docs/theory.md §D.1), so "significant" here is provisional: the 20-seed check below
#   confirms each of these calls.
#
# **20-seed check** (seeds 0–19, section 2's spec run once outside the CI budget in chunks of 4 seeds,
# 322 s; the chunk of seeds 0–3 reproduces the 4-seed numbers above exactly).  Mean regret [95% CI],
# ratio DPO/APO, paired APO − DPO [95% CI]:
#
# | segment | sampled MLP DPO | sampled MLP APO | ratio | APO − DPO |
# |---|---|---|---|---|
# | 1–60 | 0.477 [0.456, 0.496] | 0.385 [0.359, 0.409] | 1.24 | −0.092 [−0.122, −0.061] |
# | 61–120 | 0.084 [0.061, 0.109] | 0.056 [0.042, 0.072] | 1.50 | −0.028 [−0.056, +0.001] |
# | 121–180 | 0.026 [0.018, 0.038] | 0.044 [0.034, 0.059] | 0.58 | +0.019 [+0.001, +0.038] |
# | 181–240 | 0.023 [0.016, 0.034] | 0.033 [0.025, 0.046] | 0.69 | +0.010 [−0.003, +0.025] |
# | 241–300 | 0.025 [0.017, 0.038] | 0.035 [0.026, 0.049] | 0.70 | +0.011 [−0.006, +0.028] |
#
#   With 20 seeds every assertion below still holds (APO ahead in segment 1; last-segment ratio 0.70 <
#   2.40; regret falls from the first to the last segment for both, DPO −0.453 [−0.476, −0.426], APO
#   −0.351 [−0.376, −0.323]).  As with 4 seeds, APO is significantly behind DPO only in segment 3; in
#   segments 4–5 it is behind by the point estimate (ratio ≈ 0.7) but the CIs contain 0; APO's segment-2
#   lead (ratio 1.50) is not significant either; the plateau is ≈ 0.024 (DPO) and ≈ 0.034 (APO).
#
# **Answer.** The rebuttal's table cannot be checked without its reward formula, sample sizes and
# optimiser settings; under docs/theory.md's exact analysis the late-segment ratios are set by the action
# discretisation (any value from ≈ 1.4 up is possible), and in our sampled reconstruction
# extrapolation helps only early.

# %% [markdown]
# ## Assertions

# %%
grid25, grid101 = exact_rows[25], exact_rows[101]
# first segment: the exact ratio is ≈ 1/(1−α) = 1.43 on both grids (1.42 and 1.38: exact, not sampled)
assert abs(grid25.ratio.iloc[0] - 1 / (1 - ALPHA)) < 0.01, grid25.ratio.iloc[0]
assert abs(grid101.ratio.iloc[0] - 1 / (1 - ALPHA)) < 0.05, grid101.ratio.iloc[0]
assert grid25.ratio.is_monotonic_increasing and grid25.ratio.iloc[-1] > 10, "a finite grid has a gap: the ratio grows"
# a finer grid stays closer to the no-gap regime: in every segment from the second on (same segment compared)
assert (grid101.ratio.iloc[1:] < grid25.ratio.iloc[1:]).all(), pd.DataFrame({"25": grid25.ratio, "101": grid101.ratio})
assert abs(grid101.ratio.iloc[-1] - 1.99) < 0.01, grid101.ratio.iloc[-1]
# exact regrets lie below the authors' in every segment (≥ 4×, both rules, both grids; ≥ 90× on 25² after segment 1)
assert (AUTHORS / grid25[["DPO", "APO"]] > 4).all(axis=None), AUTHORS / grid25[["DPO", "APO"]]
assert (AUTHORS / grid101[["DPO", "APO"]] > 4).all(axis=None), AUTHORS / grid101[["DPO", "APO"]]
assert (AUTHORS.iloc[1:] / grid25[["DPO", "APO"]].iloc[1:] > 90).all(axis=None), AUTHORS / grid25[["DPO", "APO"]]
for rule, ci in drop.items():
    assert ci[2] < 0, f"{rule}: regret must fall from the first to the last segment"
assert reconstruction["APO−DPO_upper"].iloc[0] < 0, "APO leads in the first segment, as in the authors' table"
# from segment 3 on APO is behind DPO by the point estimate; significantly so in segment 3 (also with 20 seeds)
assert (reconstruction.ratio.iloc[2:] < 1).all(), reconstruction.ratio
assert reconstruction["APO−DPO_lower"].iloc[2] > 0, "segment 3: APO should be significantly behind DPO"
if SCALE == "ci":  # Results: segments 4 and 5 are not significant at 4 seeds (CIs contain 0)
    late = reconstruction.iloc[3:]
    assert ((late["APO−DPO_lower"] < 0) & (late["APO−DPO_upper"] > 0)).all(), late
    # Results: both end near 0.02 (segment 5 means 0.017 and 0.021 at 4 seeds)
    last = reconstruction[["DPO", "APO"]].iloc[-1]
    assert ((last > 0.01) & (last < 0.03)).all(), last
assert reconstruction.ratio.iloc[-1] < AUTHORS.DPO.iloc[-1] / AUTHORS.APO.iloc[-1], (
    "this reconstruction does not reproduce the authors' late-segment advantage"
)
print(f"all assertions passed in {time.time() - STARTED:.1f} s")
