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
# # 01 — INPO's theorems on exact tabular games
#
# **Question.** Do INPO's guarantees (Zhang et al., ICLR 2025; docs/theory.md §A.3–A.5) hold on exact
# (population) updates, and how tight are they?
#
# * **Theorem 4** (last iterate, η_t = τ(t+2)/2): KL(π*‖π_T) ≤ 32C²/(τ²(T+1)), C = max(Bτ, 1).
#   docs/theory.md §A.5 predicts the bound is very loose: exact updates give KL ∝ T⁻⁴ asymptotically.  Measured:
#   the log-log slope over [T/10, T] lies in (−4, −3.9) and approaches −4 from above as T grows; its
#   95% intervals exclude −4 at these horizons (pre-asymptotic), so the claim checked is the interval.
# * **Constant η** (docs/theory.md §A.3): the last iterate converges linearly iff η > η_crit = (τ² + ω_max²)/(2τ),
#   at the rate ρ = √((1 − τ/η)² + ω_max²/η²) per step; below η_crit it circles π*.
# * **Theorem 3** (uniform mixture, η = max(Bτ,1)√T/√D): DualGap(π̄_T) ≤ 2Reg_T/T with
#   Reg_T = ηD + (4τ²B² + 1)T/η (Lemma 2's proof inequality), using the realised B and D.
#
# Games: a 3-cycle (c = 1) with a random reference per seed, random lower-triangle games (K = 5) and
# Bradley–Terry games with random rewards (K = 5); τ = 0.2.  Every claim ends in an assertion at the
# CI settings below.  Set `PREFSIM_NOTEBOOK_SCALE=full` for more seeds.

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
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "01_inpo_theorems"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 10 if SCALE == "ci" else 50
ITERATIONS = 300 if SCALE == "ci" else 1000
TAU = 0.2
STARTED = time.time()


show = plotting.show_in_notebook


GAMES = {
    "cyclic": {
        "kind": "cyclic",
        "arms": 3,
        "strength": 1.0,
        "tau": TAU,
        "reference": "random",
        "reference_min_mass": 0.05,
    },
    "random": {"kind": "random", "arms": 5, "tau": TAU, "reference": "random", "reference_min_mass": 0.02},
    "bradley_terry": {
        "kind": "bradley_terry",
        "rewards": "random",
        "arms": 5,
        "reward_scale": 3.0,
        "tau": TAU,
        "reference": "random",
        "reference_min_mass": 0.02,
    },
}
SAFE_ETA = TAU + 1.0 / TAU  # η_MMD ≤ τ: contracted in every instance docs/theory.md §A.3 checked
print(f"scale={SCALE} seeds={SEEDS} iterations={ITERATIONS} tau={TAU} safe eta={SAFE_ETA:g}")

# %% [markdown]
# ## 1. Theorem 4 schedule and constant η = τ + 1/τ on three games
#
# One run per game: INPO with the Theorem-4 schedule and with constant η = τ + 1/τ, every iteration
# recorded (so the realised B = max_t max_y |log π_t/π_ref| covers every iterate, and π*).

# %%
runs = {}
for name, game in GAMES.items():
    spec = {
        "iterations": ITERATIONS,
        "seeds": SEEDS,
        "record_every": 1,
        "game": game,
        "rule": [
            {"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"},
            {"name": "inpo", "label": "inpo_constant", "eta": SAFE_ETA},
        ],
    }
    runs[name] = (spec, sim.run(spec))

reports = {name: theory.tightness_report(table, spec) for name, (spec, table) in runs.items()}
for name, report in reports.items():
    t4 = report[report.rule == "inpo_theorem4"]
    print(
        f"{name:14s} Theorem 4 holds on {t4.holds.mean():.0%} of {len(t4)} (seed, T) points; "
        f"max observed/bound = {t4.ratio.max():.2e}"
    )

# %% [markdown]
# Figure: KL(π*‖π_t) with the Theorem 4 bound (dashed, max over seeds of the bound with each
# seed's realised B) on the random games.

# %%
spec, table = runs["random"]
bounds = theory.bounds_for_run(table, spec)
figure, axes = plotting.new_figure()
plotting.plot_metric(
    table,
    "kl_to_nash",
    axes=axes,
    theory=bounds[bounds.metric == "kl_to_nash"],
    fit_window={"inpo_theorem4": (ITERATIONS // 10, ITERATIONS)},
    title=f"INPO on random games (K = 5, τ = {TAU}), {SEEDS} seeds, mean ± 95% CI",
)
path = plotting.save_figure(figure, OUT / "inpo_theorem4_kl.png")
show(path)

# %% [markdown]
# Fitted rates.  Schedule: log-log slope of KL over the last decade [T/10, T], compared with the
# theorem's −1 and docs/theory.md's −4.  Constant η: semilog slope per seed over a window where KL is above
# the rounding floor, compared per seed with 2·log ρ from the linearisation at π*.

# %%
schedule_fits = {}
linear_checks = []
for name, (spec, table) in runs.items():
    schedule_fits[name] = stats.fit_rate(table, "kl_to_nash", "inpo_theorem4", window=(ITERATIONS // 10, ITERATIONS))
    _, context = theory.per_seed_games(spec)
    for seed, game in context.items():
        critical = theory.eta_critical(game["preference"], game["target"], TAU)
        rho = theory.inpo_contraction_factor(game["preference"], game["target"], TAU, SAFE_ETA)
        single = table[(table.seed == seed)]
        kl = single[single.rule == "inpo_constant"].set_index("iteration")["kl_to_nash"]
        last = int(kl[kl > 1e-9].index.max())  # stay well above the 1e-12 floor
        fit = stats.fit_rate(single, "kl_to_nash", "inpo_constant", window=(max(5, last // 3), last), scale="semilog")
        linear_checks.append(
            {
                "game": name,
                "seed": seed,
                "eta_crit": critical,
                "predicted": 2 * math.log(rho),
                "fitted": fit.slope,
                "window": fit.window,
            }
        )
linear = pd.DataFrame(linear_checks)
linear["relative_error"] = (linear.fitted - linear.predicted).abs() / linear.predicted.abs()
for name, fit in schedule_fits.items():
    print(
        f"{name:14s} Theorem-4 schedule: KL slope {fit.slope:.3f} [{fit.lower:.3f}, {fit.upper:.3f}] over {fit.window}"
    )
print(
    linear.groupby("game")[["eta_crit", "predicted", "fitted", "relative_error"]]
    .agg(["mean", "max"])
    .round(4)
    .to_string()
)

# %% [markdown]
# ## 2. Below η_crit the last iterate circles π*
#
# On the 3-cycle with a uniform reference (π* uniform, η_crit = (τ² + 1/12)/(2τ) = 0.308 at τ = 0.2)
# and random initial policies, compare η = 0.8·η_crit and η = 1.25·η_crit (both > τ).

# %%
cycle_game = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": TAU, "initial": "random"}
uniform = np.full(3, 1 / 3)
from bandits.preference import cyclic as cyclic_matrix  # noqa: E402

critical_cycle = theory.eta_critical(cyclic_matrix(3, 1.0), uniform, TAU)
circle_spec = {
    "iterations": 2000,
    "seeds": SEEDS,
    "game": cycle_game,
    "rule": [
        {"name": "inpo", "label": "below", "eta": 0.8 * critical_cycle},
        {"name": "inpo", "label": "above", "eta": 1.25 * critical_cycle},
    ],
}
circle = sim.run(circle_spec)
final_circle = circle[circle.iteration == 2000].groupby("rule")["kl_to_nash"].agg(["min", "max"])
# a cycle has no decay rate to fit: compare the level at T with the level at T/10, and the band it circles in
below_kl = circle[circle.rule == "below"].pivot(index="iteration", columns="seed", values="kl_to_nash")
circle_ratio = below_kl.loc[2000].mean() / below_kl.loc[200].mean()
circle_band = below_kl.loc[200:2000].agg(["min", "max"])  # per seed, over the recorded t ∈ [200, 2000]
above_abs = circle[(circle.rule == "above") & (circle.iteration == 2000)].kl_to_nash.abs().max()
print(f"eta_crit = {critical_cycle:.4f}; final KL(π*‖π_T) per rule:\n{final_circle}")
print(
    f"below eta_crit: mean KL at T = 2000 / mean KL at T = 200 = {circle_ratio:.3f}; every seed's KL over "
    f"t ∈ [200, 2000] in [{circle_band.loc['min'].min():.4f}, {circle_band.loc['max'].max():.4f}]; "
    f"above: max |KL(π*‖π_2000)| = {above_abs:.1e}"
)
figure, axes = plotting.new_figure()
plotting.plot_metric(
    circle,
    "kl_to_nash",
    axes=axes,
    fit_window=None,
    title=f"3-cycle, τ = {TAU}: η = 0.8 vs 1.25 × η_crit ({SEEDS} random initial policies)",
)
show(plotting.save_figure(figure, OUT / "inpo_eta_crit.png"))

# %% [markdown]
# ## 3. Theorem 3 with Lemma 2's η
#
# Random games with a fixed reference (so D = log(1/min π_ref) is the same for every seed).  For each
# horizon T, INPO runs with η_T = max(Bτ,1)·√T/√D; the mixture of its first T iterates (π_0 … π_{T−1},
# the run's `duality_gap_mixture` at iteration T − 1) is compared with 2Reg_T/T.  B is checked to
# satisfy Bτ ≤ 1 (so C = 1 and η_T does not depend on B).

# %%
reference = [0.4, 0.25, 0.15, 0.12, 0.08]
divergence = theory.log_reference_mass_bound(reference)
horizons = [10, 30, 100, 300, 1000] if SCALE == "ci" else [10, 30, 100, 300, 1000, 3000]
etas = [float(theory.lemma2_eta(h, 1.0, TAU, divergence)) for h in horizons]
theorem3_spec = {
    "iterations": max(horizons) - 1,
    "seeds": SEEDS,
    "record_every": 1,
    "game": {"kind": "random", "arms": 5, "tau": TAU, "reference": reference},
    "rule": [{"name": "inpo", "label": "inpo", "eta": etas}],
}
theorem3_table = sim.run(theorem3_spec)
_, theorem3_context = theory.per_seed_games(theorem3_spec)
rows = []
labels = list(pd.unique(theorem3_table.rule))
for horizon, eta, label in zip(horizons, etas, labels):
    frame = theorem3_table[(theorem3_table.rule == label) & (theorem3_table.iteration <= horizon - 1)]
    for seed, single in frame.groupby("seed"):
        game = theorem3_context[seed]
        b = float(theory.realised_log_ratio(single.sort_values("iteration"), game["target"], game["reference"])[-1])
        gap = float(single.loc[single.iteration == horizon - 1, "duality_gap_mixture"].iloc[0])
        bound = float(theory.theorem3_gap_bound(horizon, eta, TAU, b, divergence))
        rows.append({"T": horizon, "eta": eta, "seed": seed, "B": b, "gap": gap, "bound": bound})
theorem3 = pd.DataFrame(rows)
theorem3["ratio"] = theorem3.gap / theorem3.bound
summary3 = theorem3.groupby("T").agg(
    eta=("eta", "first"),
    B_max=("B", "max"),
    gap_mean=("gap", "mean"),
    bound_max=("bound", "max"),
    ratio_max=("ratio", "max"),
)
print(f"D = {divergence:.4f}")
print(summary3.to_string())
# slope of the observed mixture gap at Lemma 2's η vs T (a table shaped like sim.run's for stats.fit_rate)
gap_curve = theorem3.rename(columns={"T": "iteration", "gap": "duality_gap_mixture"}).assign(rule="lemma2_eta")
theorem3_fit = stats.fit_rate(gap_curve, "duality_gap_mixture", "lemma2_eta", window=(min(horizons), max(horizons)))
bound_fit = stats.fit_rate(
    theorem3.rename(columns={"T": "iteration", "bound": "b"}).assign(rule="bound"),
    "b",
    "bound",
    window=(min(horizons), max(horizons)),
)
print(
    f"mixture gap at Lemma-2 η: slope {theorem3_fit.slope:.3f} [{theorem3_fit.lower:.3f}, {theorem3_fit.upper:.3f}]; "
    f"bound slope {bound_fit.slope:.3f}"
)

figure, axes = plotting.new_figure()
for column, style, label in (
    ("gap", "-o", "observed DualGap(π̄_T), mean over seeds"),
    ("bound", "--", "Theorem 3: 2Reg_T/T (max over seeds)"),
):
    values = theorem3.groupby("T")[column].mean() if column == "gap" else theorem3.groupby("T")[column].max()
    axes.plot(values.index, values.values, style, label=label)
axes.set_xscale("log")
axes.set_yscale("log")
axes.set_xlabel("horizon T (η_T = √T/√D)")
axes.set_ylabel("duality gap of the uniform mixture")
axes.legend(frameon=False)
axes.set_title(f"INPO Theorem 3 on random games (K = 5, τ = {TAU}), {SEEDS} seeds")
show(plotting.save_figure(figure, OUT / "inpo_theorem3.png"))

# %% [markdown]
# ## Results (CI settings: 10 seeds, T = 300, τ = 0.2, seeds 0–9; recorded from the last run)
#
# | check | measured |
# |---|---|
# | Theorem 4 bound holds (every seed, every T ≥ 1, 3 games) | yes; max observed/bound 5.2e-4 (cyclic), 1.3e-4 (random), 4.7e-6 (BT): loose by ≥ 1900× |
# | KL slope under the Theorem-4 schedule, log-log over [30, 300] | cyclic −3.908 [−3.914, −3.903]; random −3.967 [−3.972, −3.961]; BT −3.970 [−3.976, −3.962] (theorem: −1; docs/theory.md §A.5: −4 asymptotically; every interval lies in (−4, −3.9) and excludes −4; full scale, [100, 1000], 50 seeds: −3.973 [−3.974, −3.972], −3.988 [−3.989, −3.987], −3.986 [−3.987, −3.986], approaching −4 from above) |
# | constant η = τ + 1/τ = 5.2: semilog slope of KL vs 2·log ρ, per seed | predicted ≈ −0.075 to −0.078 per iteration; max relative error 0.03% (cyclic), 0.66% (random), 0.12% (BT) |
# | η_crit of the games (mean over seeds) | cyclic 0.275, random 0.133, BT 0.100 (all < 5.2) |
# | 3-cycle, uniform π_ref: η = 0.8·η_crit (η_crit = 0.3083) | KL(π*‖π_2000) ∈ [0.20, 0.29] on all seeds; mean over seeds at T = 2000 / at T = 200 = 0.95 (asserted in [0.8, 1.25]); every seed's KL over t ∈ [200, 2000] stays in [0.197, 0.295] (a cycle of constant amplitude: no rate to fit) |
# | same, η = 1.25·η_crit | KL(π*‖π_2000) at rounding level (max |KL| = 0.0e+00; asserted < 1e-14) |
# | Theorem 3 with Lemma 2's η_T = √T/√D (D = 2.526), T = 10 … 1000 | holds; max observed/bound 0.033 (T = 10) falling to 0.008 (T = 1000); realised B ≤ 1.58 (Bτ ≤ 0.32, so C = 1) |
# | slope of the mixture gap at Lemma 2's η vs T | −0.844 [−0.854, −0.833] vs the bound's −0.5 |
#
# The cells above print these numbers afresh on every run.

# %% [markdown]
# ## Assertions (the claims, at the settings above)

# %%
# Theorem 4 with the paper's constant: KL(π*‖π_T) ≤ 32·max(Bτ, 1)²/(τ²(T + 1)), written out here and
# compared with the bound sim.theory checked (so a wrong constant in sim.theory fails this cell).
PAPER_CONSTANT = 32.0
RECORDED_T4_RATIO = {"cyclic": 5.2e-4, "random": 1.3e-4, "bradley_terry": 4.7e-6}  # Results table, CI scale
for name, report in reports.items():
    spec, table = runs[name]
    _, context = theory.per_seed_games(spec)
    t4 = report[report.rule == "inpo_theorem4"]
    for seed, rows in t4.groupby("seed"):
        frame = table[(table.rule == "inpo_theorem4") & (table.seed == seed)].sort_values("iteration")
        b = theory.realised_log_ratio(frame, context[seed]["target"], context[seed]["reference"])
        b = pd.Series(b, index=frame["iteration"].to_numpy()).loc[rows["iteration"]].to_numpy()
        paper = PAPER_CONSTANT * np.maximum(b * TAU, 1.0) ** 2 / (TAU**2 * (rows["iteration"].to_numpy() + 1.0))
        assert np.allclose(rows["bound"], paper, rtol=1e-12), f"{name}: the checked bound is not 32C²/(τ²(T+1))"
        assert (rows["observed"].to_numpy() <= paper).all(), f"Theorem 4 (constant 32) violated on {name}, seed {seed}"
    if SCALE == "ci":  # the tightness the Results table reports (a halved constant would double it)
        recorded = RECORDED_T4_RATIO[name]
        assert 0.95 * recorded < t4.ratio.max() < 1.05 * recorded, f"{name}: max observed/bound {t4.ratio.max():.3g}"
    assert t4.ratio.max() < 1e-3, f"Theorem 4 unexpectedly tight on {name}: {t4.ratio.max()}"
# KL under the schedule decays like T^slope with slope in (−4, −3.9): the interval excludes −4 at these
# horizons and approaches it from above (docs/theory.md §A.5's T⁻⁴ is asymptotic); far from the theorem's −1.
RECORDED_SLOPES = {"cyclic": (-3.914, -3.903), "random": (-3.972, -3.961), "bradley_terry": (-3.976, -3.962)}
for name, fit in schedule_fits.items():
    assert -4.0 < fit.lower and fit.upper < -3.9, f"{name}: KL slope {fit.label()} not inside (−4, −3.9)"
    if SCALE == "ci":
        lower, upper = RECORDED_SLOPES[name]
        assert abs(fit.lower - lower) < 2e-3 and abs(fit.upper - upper) < 2e-3, f"{name}: {fit.label()}"
assert (linear.eta_crit < SAFE_ETA).all(), "τ + 1/τ should exceed η_crit on these games"
assert (linear.relative_error < 0.1).all(), linear[linear.relative_error >= 0.1]
if SCALE == "ci":  # Results: max relative error 0.66% (random games)
    assert (linear.relative_error < 0.01).all(), linear[linear.relative_error >= 0.01]
assert (linear.fitted < 0).all()
assert final_circle.loc["below", "min"] > 1e-3, "η < η_crit should not converge in the last iterate"
assert 0.8 <= circle_ratio <= 1.25, f"η < η_crit: KL neither decays nor grows (a cycle): ratio {circle_ratio:.3f}"
if SCALE == "ci":  # the band the Results table records
    assert circle_band.loc["min"].min() > 0.19 and circle_band.loc["max"].max() < 0.30, circle_band
assert above_abs < 1e-14, f"η > η_crit should converge to rounding: |KL| = {above_abs:.2e}"
assert (theorem3.gap <= theorem3.bound).all(), "Theorem 3 violated"
assert (theorem3.B * TAU <= 1.0).all(), "C = max(Bτ, 1) assumed to be 1"
assert theorem3_fit.faster_than(-0.5), "mixture gap should decay at least as fast as the O(1/√T) bound"
assert summary3.ratio_max.is_monotonic_decreasing, "Theorem 3 should get looser as T grows"
if SCALE == "ci":  # Results: slope −0.844 [−0.854, −0.833]; max observed/bound 0.033 (T = 10) falling to 0.008
    assert abs(theorem3_fit.lower + 0.854) < 2e-3 and abs(theorem3_fit.upper + 0.833) < 2e-3, theorem3_fit.label()
    assert abs(summary3.ratio_max.iloc[0] - 0.033) < 0.001 and abs(summary3.ratio_max.iloc[-1] - 0.008) < 5e-4, summary3
print(f"all assertions passed in {time.time() - STARTED:.1f} s")
