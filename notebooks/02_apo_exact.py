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
# # 02 — APO with exact rewards: acceleration or a temperature change?
#
# **Question.** APO (He, Yuan & Gu, arXiv 2410.06293) extrapolates between consecutive proximal
# (iterative-DPO) outputs, log π_{t+1} = (1+α)log π̂_{t+1} − α log π̂_t, and claims an O((1−α)/t)
# optimisation error instead of DPO's O(1/t).  With exact rewards docs/theory.md §B.3 derives
# π_T = softmax(log π_ref + c_T·r/β) with c_T = [T − α²(1−α^T)/(1−α)]/(1−α), hence:
#
# 1. SubOpt(π_T) ≤ β·log(1/π_ref(y*))/c_T ≈ (1−α)β·log(1/π_ref(y*))/T;
# 2. **APO(α, β) after T iterations = iterative DPO with β(1−α) after T − α²(1−α^T)/(1−α) iterations**
#    (the iteration lag) — acceleration is, exactly, a smaller KL coefficient;
# 3. with a reward gap Δ, TV(π_T, δ_{y*}) decays exponentially with semilog slope → −Δ/(β(1−α))
#    (the shape of APO's Theorem 4.8);
# 4. per-step reward errors enter log π_T with weights (1−α^{T−s+1})/(1−α) ≤ 1/(1−α);
# 5. the realised log-ratio B_T ≈ c_T(r_max − r_min)/β grows linearly in T/(1−α).
#
# APO's paper is not public; these are docs/theory.md's exact-reward derivations, checked here on runs of
# `sim.rules.apo` (log-space extrapolation, exact DPO proximal step).  The Nesterov schedule
# α_t = t/(t+3) is included for comparison.

# %%
import math
import os
import pathlib
import time

import jax
import numpy as np
import pandas as pd

import sim
from sim import plotting, stats, theory

jax.config.update("jax_enable_x64", True)  # float64 for the direct calls below; sim.run scopes its own

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "02_apo_exact"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 10 if SCALE == "ci" else 50
ITERATIONS = 200 if SCALE == "ci" else 500
BETA = 1.0
ALPHAS = [0.0, 0.3, 0.5, 0.7, 0.9]
STARTED = time.time()


show = plotting.show_in_notebook


print(f"scale={SCALE} seeds={SEEDS} iterations={ITERATIONS} beta={BETA} alphas={ALPHAS}")

# %% [markdown]
# ## 1. Sub-optimality vs t, with the β(1−α) iterative-DPO controls
#
# Bradley–Terry games with K = 6 arms, rewards r ~ U[0, 1]⁶ per seed, uniform π_ref, τ = 0 (the
# target is the point mass on argmax r).  Rules: APO-DPO for each α, iterative DPO with β_eff = β(1−α)
# for each α, and APO with the Nesterov schedule.

# %%
spec = {
    "iterations": ITERATIONS,
    "seeds": SEEDS,
    "record_every": 1,
    "game": {"kind": "bradley_terry", "rewards": "random", "arms": 6, "tau": 0.0},
    "rule": [
        {"name": "apo", "label": "apo", "alpha": ALPHAS, "beta": BETA},
        {"name": "dpo", "label": "dpo", "beta": [BETA * (1 - a) for a in ALPHAS]},
        {"name": "apo", "label": "apo_nesterov", "schedule": "nesterov", "beta": BETA},
    ],
}
table = sim.run(spec)
_, context = theory.per_seed_games(spec)
apo_label = {a: f"apo[alpha={a:g}]" for a in ALPHAS}
dpo_label = {a: f"dpo[beta={BETA * (1 - a):g}]" for a in ALPHAS}
report = theory.tightness_report(table, spec)
sub_report = report[report.metric == "suboptimality"]
print(
    "SubOpt bound β·log(1/π_ref(y*))/c_T holds on",
    f"{sub_report.holds.mean():.0%}",
    "of",
    len(sub_report),
    "points;",
    "max observed/bound by rule:",
)
print(sub_report.groupby("rule").ratio.max().round(4).to_string())
apo_rules = [apo_label[a] for a in ALPHAS] + ["apo_nesterov"]
apo_tightness = sub_report[sub_report.rule.isin(apo_rules)]
tightest_at = apo_tightness.loc[apo_tightness.groupby("rule").ratio.idxmax()].set_index("rule").iteration
print("iteration T of each APO rule's largest observed/bound:", tightest_at.to_dict())

shown = table[table.rule.isin([apo_label[a] for a in (0.0, 0.5, 0.9)] + [dpo_label[0.5], "apo_nesterov"])]
bounds = theory.bounds_for_run(shown, spec)
figure, axes = plotting.new_figure((7.2, 4.6))
plotting.plot_metric(
    shown,
    "suboptimality",
    axes=axes,
    fit_window=None,
    styles={dpo_label[0.5]: {"ls": (0, (4, 2)), "lw": 2.4, "color": "black"}},
    theory=bounds[(bounds.metric == "suboptimality") & bounds.rule.isin([apo_label[0.0], apo_label[0.9]])],
    title=f"APO vs iterative DPO, exact rewards (K = 6, β = {BETA:g}, {SEEDS} seeds): "
    "APO(α = 0.5) tracks DPO(β(1−α) = 0.5), 0.5 iterations behind",
)
show(plotting.save_figure(figure, OUT / "apo_suboptimality.png"))

# %% [markdown]
# ## 2. Is "acceleration" more than a temperature change?  APO(α, β) vs DPO(β(1−α)) with the lag
#
# For each α and every T ≥ 1, APO's SubOpt must lie between DPO(β(1−α))'s SubOpt at
# T − ⌈L_T⌉ and T − ⌊L_T⌋, L_T = α²(1−α^T)/(1−α); and it must equal the closed form of DPO(β(1−α))
# after the non-integer T − L_T iterations (checked at T = 8, where every SubOpt is far above rounding).  We also
# report the paired difference at the same T.

# %%
lag_rows = []
for alpha in ALPHAS:
    apo_wide, seeds, iterations = stats.seed_matrix(table, "suboptimality", apo_label[alpha])
    dpo_wide, _, _ = stats.seed_matrix(table, "suboptimality", dpo_label[alpha])
    for index, horizon in enumerate(iterations[1:], start=1):
        lag = float(theory.apo_dpo_lag(horizon, alpha))
        later = dpo_wide[:, max(0, horizon - math.floor(lag))]
        earlier = dpo_wide[:, max(0, horizon - math.ceil(lag))]
        tolerance = 1e-12 + 1e-9 * np.abs(apo_wide[:, index])
        bracketed = (later - tolerance <= apo_wide[:, index]) & (apo_wide[:, index] <= earlier + tolerance)
        lag_rows.append({"alpha": alpha, "T": int(horizon), "lag": lag, "bracketed": bool(bracketed.all())})
lags = pd.DataFrame(lag_rows)
# closed form of DPO(β(1−α)) at the non-integer T − L_T vs APO's run, every seed, at T = 8
closed_errors = []
horizon = 8  # small enough that SubOpt stays far above rounding for every α
for alpha in ALPHAS:
    for seed, game in context.items():
        effective = horizon - float(theory.apo_dpo_lag(horizon, alpha))
        logits = np.log(game["reference"]) + effective * game["rewards"] / (BETA * (1 - alpha))
        policy = np.exp(logits - logits.max())
        policy /= policy.sum()
        expected = game["rewards"].max() - policy @ game["rewards"]
        observed = table[(table.rule == apo_label[alpha]) & (table.seed == seed) & (table.iteration == horizon)][
            "suboptimality"
        ].item()
        closed_errors.append(abs(observed - expected) / max(expected, 1e-300))
same_t = {
    alpha: stats.paired_difference(table, "suboptimality", apo_label[alpha], dpo_label[alpha], iteration=3)
    for alpha in ALPHAS[1:]
}
print(lags.groupby("alpha").agg(lag_at_T=("lag", "last"), bracketed=("bracketed", "all")).to_string())
print(f"max relative error of APO vs DPO(β(1−α)) at T − L_T (T = {horizon}): {max(closed_errors):.2e}")
for alpha, frame in same_t.items():
    row = frame.iloc[0]
    print(
        f"alpha={alpha}: SubOpt(APO) − SubOpt(DPO β(1−α)) at T = 3: {row.difference:.4f} "
        f"[{row.difference_lower:.4f}, {row.difference_upper:.4f}]  "
        f"(APO better on {row.probability_of_improvement:.0%} of seeds)"
    )

# %% [markdown]
# ## 2b. APO vs ExPO (APO R2, R3: "the advantage over ExPO is unclear")
#
# ExPO (docs/theory.md §C.11) extrapolates once from π_ref through an aligned model:
# log π = (1 + a)·log π_aligned − a·log π_ref.  The rebuttal calls ExPO "APO with one iteration".  With exact
# rewards DPO's iterate T is π_ref·exp(T·r/β), so ExPO on it is π_ref·exp((1 + a)T·r/β): another temperature.
# Written out here in NumPy (not with `sim.theory`) and compared with the APO runs of §1: ExPO(α) on DPO's
# first iterate is APO(α) at T = 1; at T = 3 ExPO with the same α on DPO's third iterate (the rebuttal's
# "ExPO on DPO iter 3") is behind APO(α), and ExPO with a = c_3(α)/3 − 1 is APO(α) exactly.


# %%
def expo_suboptimality(game, iterations, a):
    """SubOpt of ExPO(a) applied to exact iterative DPO's iterate ``iterations`` (from π_ref, β = BETA)."""
    log_reference = np.log(game["reference"])
    log_dpo = log_reference + iterations * game["rewards"] / BETA  # unnormalised: ExPO's softmax normalises
    logits = (1 + a) * log_dpo - a * log_reference
    policy = np.exp(logits - logits.max())
    policy /= policy.sum()
    return game["rewards"].max() - policy @ game["rewards"]


def apo_multiplier(horizon, alpha):
    """c_T = [T − α²(1 − α^T)/(1 − α)]/(1 − α) (docs/theory.md §B.3), written out."""
    return (horizon - alpha**2 * (1 - alpha**horizon) / (1 - alpha)) / (1 - alpha)


expo_rows = []
for alpha in ALPHAS[1:]:
    matched = apo_multiplier(3, alpha) / 3 - 1
    for seed, game in context.items():
        apo_at = table[(table.rule == apo_label[alpha]) & (table.seed == seed)].set_index("iteration").suboptimality
        expo_rows.append(
            {
                "alpha": alpha,
                "seed": seed,
                "matched_a": matched,
                "one_step_error": abs(expo_suboptimality(game, 1, alpha) - apo_at[1]) / apo_at[1],
                "expo_same_alpha_T3": expo_suboptimality(game, 3, alpha),
                "apo_T3": apo_at[3],
                "matched_error_T3": abs(expo_suboptimality(game, 3, matched) - apo_at[3]) / apo_at[3],
            }
        )
expo = pd.DataFrame(expo_rows)
print(
    expo.groupby("alpha")
    .agg(
        one_step_error=("one_step_error", "max"),
        expo_T3=("expo_same_alpha_T3", "mean"),
        apo_T3=("apo_T3", "mean"),
        matched_a=("matched_a", "first"),
        matched_error_T3=("matched_error_T3", "max"),
    )
    .to_string(float_format=lambda v: f"{v:.4g}")
)

# %% [markdown]
# ## 3. Exponential TV under a reward gap (Theorem 4.8's shape)
#
# Fixed rewards r = (1, 0.8, 0.6, 0.5, 0.3, 0) (gap Δ = 0.2) with a random reference per seed.
# For each α, fit the semilog slope of TV(π_t, δ_{y*}) over the iterations where the mean TV lies in
# [1e-10, 1e-2], and compare it with the exact finite-window prediction (the least-squares slope of
# −Δ·c_t/β over the same window, which includes the α^t transient) and with the asymptote
# −Δ/(β(1−α)).

# %%
rewards = [1.0, 0.8, 0.6, 0.5, 0.3, 0.0]
gap_spec = {
    "iterations": 150,
    "seeds": SEEDS,
    "record_every": 1,
    "game": {
        "kind": "bradley_terry",
        "rewards": rewards,
        "tau": 0.0,
        "reference": "random",
        "reference_min_mass": 0.05,
    },
    "rule": [{"name": "apo", "label": "apo", "alpha": ALPHAS, "beta": BETA}],
}
gap_table = sim.run(gap_spec)
gap_report = theory.tightness_report(gap_table, gap_spec)
tv_rows = []
for alpha in ALPHAS:
    label = apo_label[alpha]
    mean_tv = gap_table[gap_table.rule == label].groupby("iteration").tv_to_optimum.mean()
    inside = mean_tv[(mean_tv <= 1e-2) & (mean_tv >= 1e-10)].index
    window = (int(inside.min()), int(inside.max()))
    fit = stats.fit_rate(gap_table, "tv_to_optimum", label, window=window, scale="semilog", floor=1e-13)
    steps = np.arange(window[0], window[1] + 1)
    multipliers = theory.apo_multiplier_sequence(window[1], alpha)[1][steps]
    exact = np.polyfit(steps, -theory.reward_gap(rewards) * multipliers / BETA, 1)[0]
    asymptote = theory.apo_tv_log_slope(alpha, BETA, rewards)
    tv_rows.append(
        {
            "alpha": alpha,
            "window": window,
            "slope": fit.slope,
            "lower": fit.lower,
            "upper": fit.upper,
            "window_prediction": exact,
            "asymptote": asymptote,
        }
    )
tv = pd.DataFrame(tv_rows)
tv["error_vs_window"] = (tv.slope - tv.window_prediction).abs() / tv.window_prediction.abs()
tv["error_vs_asymptote"] = (tv.slope - tv.asymptote).abs() / tv.asymptote.abs()
print(tv.round(4).to_string())
print(
    "TV bound (1−π_ref(y*))/π_ref(y*)·exp(−c_TΔ/β) holds:",
    bool(gap_report[gap_report.metric == "tv_to_optimum"].holds.all()),
)
figure, axes = plotting.new_figure()
gap_bounds = theory.bounds_for_run(gap_table, gap_spec)
plotting.plot_metric(
    gap_table,
    "tv_to_optimum",
    axes=axes,
    fit_window=None,
    theory=gap_bounds[(gap_bounds.metric == "tv_to_optimum") & (gap_bounds.rule == apo_label[0.0])],
)
axes.set_xscale("linear")  # semilog: an exponential decay is a straight line
axes.set_xlim(0, 150)
axes.set_xlabel("iteration t (linear axis)")
axes.set_title(f"TV to the optimum, reward gap Δ = 0.2,\nβ = {BETA:g} ({SEEDS} random references)", fontsize=10)
axes.set_ylim(1e-14, 2)
show(plotting.save_figure(figure, OUT / "apo_tv_gap.png"))

# %% [markdown]
# ## 4. Constant α vs the Nesterov schedule; ranking at T = 3 vs the final T
#
# The Nesterov schedule α_t = t/(t+3) gives c_T ∝ T² (a 1/T² bound) — still a temperature
# schedule β_eff(T) = βT/c_T in the exact case.

# %%
_, nesterov_c = theory.apo_multiplier_sequence(ITERATIONS, 0.0, "nesterov")
c_curve = pd.DataFrame({"rule": "nesterov", "seed": 0, "iteration": np.arange(ITERATIONS + 1), "c": nesterov_c})
nesterov_fit = stats.fit_rate(c_curve, "c", "nesterov", window=(ITERATIONS // 4, ITERATIONS))
final = table[table.iteration == ITERATIONS].pivot(index="seed", columns="rule", values="suboptimality")
early = table[table.iteration == 3].pivot(index="seed", columns="rule", values="suboptimality")
# at T = ITERATIONS both SubOpts sit at the float64 floor (0), so the large-T ranking is read from how far each
# run's π_T has moved from π_ref: B_T = max_y |log π_T/π_ref| ≈ c_T(r_max − r_min)/β (§5)
final_log_ratio = table[table.iteration == ITERATIONS].pivot(index="seed", columns="rule", values="max_log_ratio")
print(
    f"Nesterov multiplier c_T: log-log slope {nesterov_fit.slope:.3f} over {nesterov_fit.window} "
    f"(c_T = {nesterov_c[ITERATIONS]:.0f} vs α = 0.9: {float(theory.apo_multipliers(ITERATIONS, 0.9)[1]):.0f})"
)
print("mean SubOpt at T = 3:\n", early.mean().sort_values().round(5).to_string())
print(f"mean SubOpt at T = {ITERATIONS}:\n", final.mean().sort_values().to_string())
print(
    f"largest SubOpt at T = {ITERATIONS}: Nesterov {final['apo_nesterov'].max():.1e}, "
    f"α = 0.9 {final[apo_label[0.9]].max():.1e}; B_{ITERATIONS} Nesterov / α = 0.9 per seed: "
    f"{(final_log_ratio['apo_nesterov'] / final_log_ratio[apo_label[0.9]]).min():.2f}–"
    f"{(final_log_ratio['apo_nesterov'] / final_log_ratio[apo_label[0.9]]).max():.2f}"
)

# %% [markdown]
# ## 5. Noise amplification and log-ratio growth
#
# Weights of per-step reward errors in log π_T (docs/theory.md §B.3), and the realised
# B_T = max_y |log π_T/π_ref| against c_T(r_max − r_min)/β on the random-reward games of §1.

# %%
weights = {alpha: theory.apo_noise_weights(50, alpha)[1] for alpha in ALPHAS}
for alpha, w in weights.items():
    print(
        f"alpha={alpha}: weights of ε_s in log π_50 range over [{w.min():.3f}, {w.max():.3f}], "
        f"1/(1−α) = {1 / (1 - alpha):.3f}"
    )
figure, axes = plotting.new_figure()
for alpha, w in weights.items():
    axes.plot(np.arange(50), w, label=f"α = {alpha}")
axes.set_xlabel("step s whose reward error ε_s is weighted")
axes.set_ylabel("weight w_{50,s} of ε_s/β in log π_50")
axes.legend(frameon=False)
axes.set_title("APO amplifies each per-step error by up to 1/(1−α)")
show(plotting.save_figure(figure, OUT / "apo_noise_weights.png"))

growth_rows = []
for alpha in ALPHAS:
    for seed, game in context.items():
        b_final = table[(table.rule == apo_label[alpha]) & (table.seed == seed) & (table.iteration == ITERATIONS)][
            "max_log_ratio"
        ].item()
        predicted = float(theory.apo_log_ratio_growth(ITERATIONS, alpha, BETA, game["rewards"]))
        offset = -math.log(game["reference"][int(np.argmax(game["rewards"]))])
        growth_rows.append(
            {
                "alpha": alpha,
                "seed": seed,
                "B_T": b_final,
                "predicted": predicted,
                "offset_bound": offset,
                "slope_ratio": b_final
                / ITERATIONS
                / ((game["rewards"].max() - game["rewards"].min()) / (BETA * (1 - alpha))),
            }
        )
growth = pd.DataFrame(growth_rows)
print(growth.groupby("alpha")[["B_T", "predicted", "slope_ratio"]].mean().round(3).to_string())

# %% [markdown]
# ## Results (CI settings: 10 seeds 0–9, T = 200, β = 1, K = 6; §3: T = 150; recorded from the last run)
#
# | check | measured |
# |---|---|
# | SubOpt ≤ β·log(1/π_ref(y*))/c_T (22 000 rule × seed × T points) | holds everywhere; max observed/bound 0.42–0.44 for every APO rule (α = 0 … 0.9 and Nesterov; 0.4199–0.4392), attained at T = 2–4 (tightest at small T); the DPO controls 0.28 (β = 0.1) to 0.44 |
# | APO(α = 0) = DPO(β) | identical to 1e-13 |
# | APO(α, β) between DPO(β(1−α)) at T − ⌈L_T⌉ and T − ⌊L_T⌋, every T, seed, α | yes; L_200 = 0, 0.129, 0.5, 1.63, 8.1 for α = 0, .3, .5, .7, .9 |
# | APO vs closed-form DPO(β(1−α)) after T − L_T iterations (T = 8) | max relative error 1.1e-13 (asserted < 1e-10) |
# | SubOpt(APO) − SubOpt(DPO β(1−α)) at T = 3 (paired, 10 seeds) | α = .3: +0.0061 [0.0046, 0.0076]; .5: +0.0201 [0.0149, 0.0259]; .7: +0.0402 [0.0294, 0.0520]; .9: +0.0489 [0.0419, 0.0574] — every CI above 0, and APO is behind its β(1−α) control on every seed (the lag) |
# | ExPO (§2b): ExPO(α) on DPO's iterate 1 vs APO(α) at T = 1; ExPO on DPO's iterate 3 vs APO at T = 3 | identical (relative error ≤ 1.5e-15); at T = 3 ExPO with the same α is behind APO on every seed (mean SubOpt α = .3: 0.144 vs 0.136; .9: 0.092 vs 0.054) and ExPO with a = c_3(α)/3 − 1 (0.369, 0.708, 1.141, 1.683) equals APO (≤ 6e-15): both are temperature changes, APO's "advantage" over ExPO is a larger extrapolation coefficient |
# | TV semilog slope (Δ = 0.2, β = 1) vs −Δ/(β(1−α)) | α = 0: −0.2000 (−0.2000); .3: −0.2857 (−0.2857); .5: −0.4000 (−0.4000); .7: −0.6660 (−0.6667, 0.1% off); .9: −1.5244 over t ∈ [7, 18] (asymptote −2.0; exact window prediction −1.5244: the α^t transient); every slope within 0.1% of its window prediction (asserted < 1%), α ≤ 0.7 within 0.1% of the asymptote (asserted < 1%) |
# | Nesterov α_t = t/(t+3) | c_T log-log slope 1.936 over [50, 200] (≈ T²/8); c_200 = 5175 vs 1919 for α = 0.9; at T = 3 α = 0.9 leads (0.054 vs 0.149 mean SubOpt, every seed); at T = 200 both SubOpts are 0 on every seed (the float64 floor, reached at t ≈ 76–86), so the flip shows in the realised B_200: Nesterov's is 2.70× α = 0.9's on every seed (asserted > 1.5×) |
# | noise weights in log π_50 | within [1+α, 1/(1−α)): α = 0.9: [1.90, 9.95] |
# | realised B_200 vs c_T(r_max − r_min)/β | e.g. α = 0: 141.5 vs 143.3; α = 0.9: 1373.2 vs 1375.0 (difference ≤ log(1/π_ref(y*)) = log 6) — B grows ∝ T/(1−α) |
#
# **Answer.** With exact rewards, APO's acceleration is exactly a temperature change: APO(α, β) is
# iterative DPO with β(1−α), delayed by L_T < α²/(1−α) iterations.

# %% [markdown]
# ## Assertions

# %%
assert sub_report.holds.all(), "SubOpt ≤ β log(1/π_ref(y*))/c_T violated"
assert np.allclose(
    stats.seed_matrix(table, "suboptimality", apo_label[0.0])[0],
    stats.seed_matrix(table, "suboptimality", dpo_label[0.0])[0],
    rtol=0,
    atol=1e-13,
), "APO(α=0) ≠ DPO"
assert lags.bracketed.all(), lags[~lags.bracketed]
if SCALE == "ci":  # the tightness the Results table reports for the APO rules: 0.42–0.44, at small T
    ratios = apo_tightness.groupby("rule").ratio.max()
    assert ratios.between(0.415, 0.445).all(), ratios
    assert (tightest_at <= 4).all(), tightest_at
assert max(closed_errors) < 1e-10, "APO must equal DPO(β(1−α)) after T − L_T iterations"
# at T = 3 APO is behind its β(1−α) control (the lag): CI above 0, and behind on every seed
for alpha, frame in same_t.items():
    row = frame.iloc[0]
    assert row.difference_lower > 0, f"α = {alpha}: APO − DPO(β(1−α)) at T = 3 should be > 0"
    assert row.probability_of_improvement == 0, f"α = {alpha}: APO ahead of its control on some seed"
# §2b: ExPO(α) on DPO's first iterate is APO(α) at T = 1; at T = 3 the same α leaves ExPO behind APO on every
# seed, and ExPO with a = c_3(α)/3 − 1 is APO(α): both are temperature changes
assert (expo.one_step_error < 1e-10).all(), expo[expo.one_step_error >= 1e-10]
assert (expo.expo_same_alpha_T3 > expo.apo_T3).all(), expo[expo.expo_same_alpha_T3 <= expo.apo_T3]
assert (expo.matched_error_T3 < 1e-10).all(), expo[expo.matched_error_T3 >= 1e-10]
assert gap_report.holds.all(), "TV / SubOpt bound violated on the gap game"
assert (tv.error_vs_window < 0.01).all(), tv
assert (tv[tv.alpha <= 0.7].error_vs_asymptote < 0.01).all(), tv
for _, row in tv.iterrows():
    assert row.upper < 0, "TV must decay exponentially"
assert 1.85 < nesterov_fit.slope < 2.05, nesterov_fit
assert nesterov_c[ITERATIONS] > float(theory.apo_multipliers(ITERATIONS, 0.9)[1]), (
    "Nesterov's c_T ∝ T² must win at large T"
)
# the runs realise it: at T = ITERATIONS both SubOpts are at the float64 floor, so compare B_T, which grows with c_T
assert (final_log_ratio["apo_nesterov"] > 1.5 * final_log_ratio[apo_label[0.9]]).all(), final_log_ratio
assert (early[apo_label[0.9]] < early["apo_nesterov"]).all(), "α = 0.9 must lead at T = 3 (ranking flips)"
for alpha, w in weights.items():
    assert w.max() < 1 / (1 - alpha) + 1e-12 and w.min() >= 1 + alpha - 1e-12
assert ((growth.B_T - growth.predicted).abs() <= growth.offset_bound + 1e-6).all(), "B_T ≠ c_T(r_max − r_min)/β + O(1)"
print(f"all assertions passed in {time.time() - STARTED:.1f} s")
