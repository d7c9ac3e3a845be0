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
# # 04 — The reviewers' questions that exact (population) updates can answer
#
# docs/theory.md §D lists the reviewers' requests and a bandit experiment for each.  This notebook answers
# the ones that need **no sampling** (exact population updates), one section each, with bootstrap
# confidence intervals over seeds and assertions at the end:
#
# * **§D.3** INPO vs online IPO (INPO R4 Q3, R3): η = τ (online IPO's exact argmin = iterated best
#   response) cycles on non-transitive games when ω_max > τ; INPO's last iterate converges iff η > η_crit.
# * **§D.5** Sensitivity to π_ref coverage and τ → 0 (INPO R2/R3/R4): realised B and the Theorem 4 bound.
# * **§D.8** What T = 3 predicts about T = 1000 (INPO R4, APO R1/R2): rankings at T = 3 vs T = 1000.
# * **§D.9** Uniqueness of the regularised Nash (INPO R1): many initialisations → one fixed point for
#   τ > 0; a continuum of Nash policies at τ = 0 on a 4-cycle.
# * **§D.11** Last iterate vs average for INPO / SPPO / DNO / Nash-MD on a cyclic P.
#
# * **INPO R3 Q4** a biased preference oracle: symmetric label noise and a systematic bias toward one arm.
#
# Two sampled-mode questions are answered at the end (§D.4 one-opponent SPPO, §D.12 pair-selection
# bias, with `sim.sampled`); the other sampled-mode questions are listed as not covered.

# %%
import math
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import sim
from bandits.games import GameSpec, build_game
from bandits.preference import cyclic as cyclic_matrix
from sim import plotting, stats, theory
from sim.game import game_from_instance, normalize
from sim.metrics import duality_gap, exploitability
from sim.rules import build_rule

jax.config.update("jax_enable_x64", True)  # float64 for the direct calls below; sim.run scopes its own

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "04_reviewer_questions"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 10 if SCALE == "ci" else 40
LONG = 3000 if SCALE == "ci" else 10000
STARTED = time.time()


show = plotting.show_in_notebook


def targets_of(spec):
    """Per-seed games (NumPy) with their π*, via sim.theory's run context."""
    return theory.per_seed_games(spec)[1]


print(f"scale={SCALE} seeds={SEEDS} long runs={LONG} iterations")

# %% [markdown]
# ## §D.3 — INPO vs online IPO on cyclic and Bradley–Terry games
#
# 3-cycle P_c (c = 1) with π_ref = (0.5, 0.3, 0.2) and a random initial policy per seed, for
# τ ∈ {0.01, 0.05, 0.2}.  Rules: online IPO's exact argmin (= INPO with η = τ), INPO with η below
# η_crit (0.5·η_crit, or (τ + η_crit)/2 when 0.5·η_crit ≤ τ), 2·η_crit, and τ + 1/τ.  For the
# converging settings the fitted semilog slope of KL(π*‖π_t) is compared with 2·log ρ.  Contrast:
# random lower-triangle games (K = 5), where ω_max varies around τ and η = τ converges iff ω_max < τ,
# seed by seed, and Bradley–Terry games (transitive: ω_max ≈ 0), where it always converges.

# %%
REFERENCE = [0.5, 0.3, 0.2]
d3_rows, d3_tables = [], {}
for tau in (0.01, 0.05, 0.2):
    game = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": tau, "reference": REFERENCE, "initial": "random"}
    probe = {"iterations": 1, "seeds": 1, "game": {**game, "initial": "reference"}, "rule": [{"name": "online_ipo"}]}
    target = targets_of(probe)[0]["target"]
    critical = theory.eta_critical(cyclic_matrix(3, 1.0), target, tau)
    below = 0.5 * critical if 0.5 * critical > tau else 0.5 * (tau + critical)
    etas = {"inpo_below": below, "inpo_2crit": 2 * critical, "inpo_safe": tau + 1 / tau}
    spec = {
        "iterations": LONG,
        "seeds": SEEDS,
        "game": game,
        "rule": [{"name": "online_ipo"}, {"name": "inpo", "label": "inpo", "eta": list(etas.values())}],
    }
    table = sim.run(spec)
    swept = [label for label in pd.unique(table.rule) if label.startswith("inpo[")]
    table["rule"] = table["rule"].replace(dict(zip(swept, etas)))  # inpo[eta=…] → inpo_below / _2crit / _safe
    d3_tables[tau] = table
    final = table[table.iteration == LONG]
    for rule, eta in [("online_ipo", tau)] + list(etas.items()):
        rho = theory.inpo_contraction_factor(cyclic_matrix(3, 1.0), target, tau, eta)
        kl = final[final.rule == rule]["kl_to_nash"]
        row = {
            "tau": tau,
            "rule": rule,
            "eta": eta,
            "eta_over_crit": eta / critical,
            "rho": rho,
            "kl_final_min": kl.min(),
            "kl_final_max": kl.max(),
            "fitted": np.nan,
            "predicted": 2 * math.log(rho),
        }
        if rho < 1:
            mean_kl = table[table.rule == rule].groupby("iteration").kl_to_nash.mean()
            usable = mean_kl[(mean_kl > 1e-10) & (mean_kl.index >= 1)]
            if len(usable) >= 4:
                window = (int(usable.index[len(usable) // 2]), int(usable.index.max()))
                row["fitted"] = stats.fit_rate(table, "kl_to_nash", rule, window=window, scale="semilog").slope
        d3_rows.append(row)
d3 = pd.DataFrame(d3_rows)
print(d3.round(5).to_string())

contrast_rows = []
for kind, tau in (("random", 0.05), ("random", 0.2), ("bradley_terry", 0.05)):
    game = (
        {"kind": "random", "arms": 5, "tau": tau}
        if kind == "random"
        else {"kind": "bradley_terry", "rewards": "random", "arms": 5, "reward_scale": 2.0, "tau": tau}
    )
    spec = {"iterations": LONG, "seeds": SEEDS, "game": game, "rule": [{"name": "online_ipo"}]}
    table = sim.run(spec)
    for seed, instance in targets_of(spec).items():
        omega = theory.omega_max(instance["preference"], instance["target"])
        kl = table[(table.seed == seed) & (table.iteration == LONG)]["kl_to_nash"].item()
        contrast_rows.append({"game": kind, "tau": tau, "seed": seed, "omega_max": omega, "kl_final": kl})
contrast = pd.DataFrame(contrast_rows)
contrast["predicted_converges"] = contrast.omega_max < contrast.tau
contrast["converged"] = contrast.kl_final < 1e-10
print(
    contrast.groupby(["game", "tau", "predicted_converges"])
    .agg(seeds=("seed", "size"), converged=("converged", "mean"), omega=("omega_max", "mean"))
    .to_string()
)
figure, axes = plotting.new_figure()
plotting.plot_metric(
    d3_tables[0.2],
    "duality_gap",
    axes=axes,
    fit_window=None,
    title=f"3-cycle, τ = 0.2, π_ref = (.5,.3,.2): online IPO (η = τ) vs INPO ({SEEDS} initial policies)",
)
show(plotting.save_figure(figure, OUT / "d3_inpo_vs_online_ipo.png"))

# %% [markdown]
# ## §D.5 — π_ref coverage and τ → 0: realised B vs the Theorem 4 bound
#
# (i) Random games (K = 5, τ = 0.1) where arm 0 has reference mass m ∈ {1e-1, 1e-4, 1e-8}
# (the rest uniform).  (ii) The same games with a uniform reference and τ ∈ {0.5, 0.1, 0.02}.
# INPO with the Theorem-4 schedule for 1000 iterations, every iteration recorded.  We report the
# realised B (max over iterates and π*), C = max(Bτ, 1), the bound and KL(π*‖π_T) at T = 1000, and
# T* = 32C²/(τ²·KL(π*‖π_ref)) − 1, the horizon from which the bound is below the initial KL
# (before T*, the bound says nothing the initial policy does not already satisfy).

# %%
D5_T = 1000


def theorem4_summary(spec, label):
    table = sim.run(spec)
    report = theory.tightness_report(table, spec)
    context = targets_of(spec)
    rows = []
    for seed, frame in table.groupby("seed"):
        frame = frame.sort_values("iteration")
        game = context[seed]
        b = float(theory.realised_log_ratio(frame, game["target"], game["reference"])[-1])
        tau = spec["game"]["tau"]
        kl0 = float(frame.kl_to_nash.iloc[0])
        bound_curve = theory.theorem4_kl_bound(frame.iteration.to_numpy(), tau, b)
        unreg = float(frame.exploitability.iloc[-1])
        rows.append(
            {
                "setting": label,
                "seed": seed,
                "B": b,
                "C": float(theory.inpo_c(b, tau)),
                "KL_0": kl0,
                "KL_T": float(frame.kl_to_nash.iloc[-1]),
                "bound_T": float(bound_curve[-1]),
                "informative_from_T": 32 * float(theory.inpo_c(b, tau)) ** 2 / (tau**2 * kl0) - 1,
                "exploitability_T": unreg,
            }
        )
    return pd.DataFrame(rows), report


coverage_frames, tau_frames, d5_reports = [], [], []
for mass in (1e-1, 1e-4, 1e-8):
    reference = [mass] + [(1 - mass) / 4] * 4
    spec = {
        "iterations": D5_T,
        "seeds": SEEDS,
        "record_every": 1,
        "game": {"kind": "random", "arms": 5, "tau": 0.1, "reference": reference},
        "rule": [{"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"}],
    }
    frame, report = theorem4_summary(spec, f"m={mass:g}")
    frame["mass"] = mass
    coverage_frames.append(frame)
    d5_reports.append(report)
for tau in (0.5, 0.1, 0.02):
    spec = {
        "iterations": D5_T,
        "seeds": SEEDS,
        "record_every": 1,
        "game": {"kind": "random", "arms": 5, "tau": tau},
        "rule": [{"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"}],
    }
    frame, report = theorem4_summary(spec, f"tau={tau:g}")
    frame["tau"] = tau
    tau_frames.append(frame)
    d5_reports.append(report)
coverage = pd.concat(coverage_frames, ignore_index=True)
taus = pd.concat(tau_frames, ignore_index=True)
d5_report = pd.concat(d5_reports, ignore_index=True)
columns = ["B", "C", "KL_0", "KL_T", "bound_T", "informative_from_T", "exploitability_T"]
print(coverage.groupby("mass", sort=False)[columns].mean().to_string(float_format=lambda v: f"{v:.3g}"))
print(taus.groupby("tau", sort=False)[columns].mean().to_string(float_format=lambda v: f"{v:.3g}"))
print(
    f"Theorem 4 holds on all {len(d5_report)} (setting, seed, T) points: {bool(d5_report.holds.all())}; "
    f"max observed/bound {d5_report.ratio.max():.2e}"
)
# paired over seeds (the same games): exploitability of π_T ≈ π*_τ with m = 1e-8 vs m = 1e-1
paired_coverage = pd.concat([frame.assign(rule=frame.setting.iloc[0], iteration=D5_T) for frame in coverage_frames])
coverage_effect = stats.paired_difference(paired_coverage, "exploitability_T", "m=1e-08", "m=0.1")
print(
    "exploitability(π_T), m = 1e-8 minus m = 0.1 (paired over seeds):",
    coverage_effect[["difference", "difference_lower", "difference_upper"]].round(4).to_dict("records"),
)

# %% [markdown]
# ## §D.8 — What does T = 3 predict about T = 1000?
#
# Random games (K = 5, τ = 0.1, random reference).  Rank six rules by the duality gap of the last
# iterate at T = 3 and at T = 1000 (gaps below 1e-12 count as tied at 0: converged to rounding).
# A ranking "flips" for a pair when the paired 95% CI of the gap difference excludes 0 with
# opposite signs at T = 3 and T = 1000.  Also APO vs iterative DPO: their SubOpt ratio at T = 3
# vs T = 30.

# %%
d8_spec = {
    "iterations": 1000,
    "seeds": SEEDS,
    "game": {"kind": "random", "arms": 5, "tau": 0.1, "reference": "random", "reference_min_mass": 0.02},
    "rule": [
        {"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"},
        {"name": "inpo", "label": "inpo_eta1", "eta": 1.0},
        {"name": "mmd", "eta": 1.0},
        {"name": "nash_md", "eta": 0.5},
        {"name": "sppo", "eta": 0.5},
        {"name": "online_ipo"},
    ],
}
d8 = sim.run(d8_spec)
d8["gap_clipped"] = d8.duality_gap.where(d8.duality_gap > 1e-12, 0.0)
ranks = {}
for horizon in (3, 1000):
    wide = d8[d8.iteration == horizon].pivot(index="seed", columns="rule", values="gap_clipped")
    ranks[horizon] = wide.rank(axis=1, method="average").mean()
rank_table = pd.DataFrame({"mean rank at T=3": ranks[3], "mean rank at T=1000": ranks[1000]}).sort_values(
    "mean rank at T=3"
)
spearman = rank_table.rank().corr().iloc[0, 1]
print(rank_table.to_string())
print(f"Spearman correlation of the mean rankings: {spearman:.3f}")
flips = []
labels = list(pd.unique(d8.rule))
for i, a in enumerate(labels):
    for b in labels[i + 1 :]:
        early = stats.paired_difference(d8, "gap_clipped", a, b, iteration=3).iloc[0]
        late = stats.paired_difference(d8, "gap_clipped", a, b, iteration=1000).iloc[0]
        if early.difference_upper < 0 < late.difference_lower or late.difference_upper < 0 < early.difference_lower:
            flips.append(
                {
                    "a": a,
                    "b": b,
                    "diff_T3": early.difference,
                    "ci_T3": f"[{early.difference_lower:.2g}, {early.difference_upper:.2g}]",
                    "diff_T1000": late.difference,
                    "ci_T1000": f"[{late.difference_lower:.2g}, {late.difference_upper:.2g}]",
                }
            )
flips = pd.DataFrame(flips)
print(f"{len(flips)} significant ranking flips between T = 3 and T = 1000:")
print(flips.to_string())

apo_spec = {
    "iterations": 30,
    "seeds": SEEDS,
    "game": {"kind": "bradley_terry", "rewards": "random", "arms": 6, "tau": 0.0},
    "rule": [{"name": "dpo", "beta": 1.0}, {"name": "apo", "alpha": 0.3, "beta": 1.0}],
}
apo_table = sim.run(apo_spec)
ratio = (
    apo_table[apo_table.rule == "dpo"].set_index(["seed", "iteration"]).suboptimality
    / apo_table[apo_table.rule == "apo"].set_index(["seed", "iteration"]).suboptimality
).unstack()
apo_ratio = {t: stats.bootstrap_ci(ratio[t].to_numpy()) for t in (3, 30)}
print(
    {t: tuple(round(float(v), 3) for v in ci) for t, ci in apo_ratio.items()},
    "= SubOpt(DPO)/SubOpt(APO α=0.3), mean [CI]",
)
figure, axes = plotting.new_figure()
plotting.plot_metric(
    d8,
    "duality_gap",
    axes=axes,
    fit_window=None,
    title=f"Random games (K = 5, τ = 0.1), {SEEDS} seeds: early and late rankings differ",
)
show(plotting.save_figure(figure, OUT / "d8_rankings.png"))

# %% [markdown]
# ## §D.9 — Uniqueness of the regularised Nash
#
# One fixed random game (K = 6, τ = 0.1) and 4-cycle (K = 4, c = 1); 64 random initial policies
# (standard-normal logits), each run with exact updates in one vmapped `lax.scan`:
# τ = 0.1 → INPO with η = τ + 1/τ for 3000 steps (last iterates); τ = 0 on the 4-cycle → SPPO
# (Hedge, η = 0.02) for 20000 steps (uniform mixtures).  The 4-cycle's Nash set at τ = 0 is the
# segment {(a, ½−a, a, ½−a)}: any a ∈ [0, ½].

# %%
INITS = 64


def final_policies(game, rule, steps, keys, average):
    """Final (or averaged) policy of ``rule`` from random initial logits, one vmapped lax.scan."""

    def one(key):
        logits = jax.random.normal(key, game.log_reference.shape, dtype=jnp.float64)
        start = game._replace(log_initial=normalize(logits))
        state = rule.init(start)

        def body(carry, _):
            state, total = carry
            state = rule.update(state, start)
            return (state, total + jnp.exp(state.log_policy)), None

        (state, total), _ = jax.lax.scan(body, (state, jnp.exp(state.log_policy)), None, length=steps)
        return total / (steps + 1) if average else jnp.exp(state.log_policy)

    return np.asarray(jax.jit(jax.vmap(one))(keys))


keys = jax.random.split(jax.random.PRNGKey(0), INITS)
regularised = game_from_instance(build_game(GameSpec(kind="random", arms=6, tau=0.1, reference="random"), seed=7))
regularised_target, _ = __import__("sim.nash", fromlist=["target_policy"]).target_policy(regularised)
reg_final = final_policies(regularised, build_rule("inpo", {"eta": 0.1 + 10.0, "tau": 0.1}), 3000, keys, average=False)
reg_spread = np.abs(reg_final - reg_final.mean(axis=0)).max()
reg_error = np.abs(reg_final - regularised_target).max()
four_cycle_tau = game_from_instance(build_game(GameSpec(kind="cyclic", arms=4, tau=0.1), seed=0))
tau_cycle_final = final_policies(
    four_cycle_tau, build_rule("inpo", {"eta": 10.1, "tau": 0.1}), 3000, keys, average=False
)
four_cycle = game_from_instance(build_game(GameSpec(kind="cyclic", arms=4, tau=0.0), seed=0))
averages = final_policies(four_cycle, build_rule("sppo", {"eta": 0.02}), 20000, keys, average=True)
average_exploitability = np.asarray(jax.vmap(lambda p: exploitability(four_cycle, jnp.log(p)))(jnp.asarray(averages)))
a_values = averages[:, 0]
print(f"τ = 0.1, random game: max spread over {INITS} inits {reg_spread:.2e}; max |π_T − π*| {reg_error:.2e}")
print(f"τ = 0.1, 4-cycle: max spread {np.abs(tau_cycle_final - tau_cycle_final.mean(0)).max():.2e}")
print(
    f"τ = 0, 4-cycle, SPPO averages: exploitability ≤ {average_exploitability.max():.4f}; "
    f"a = π̄(0) ranges over [{a_values.min():.3f}, {a_values.max():.3f}]; "
    f"|π̄(0) − π̄(2)| ≤ {np.abs(averages[:, 0] - averages[:, 2]).max():.4f}"
)
figure, axes = plotting.new_figure((5.2, 4.0))
axes.scatter(averages[:, 0], averages[:, 1], s=14, label="τ = 0: SPPO averages (4-cycle)")
axes.scatter(
    tau_cycle_final[:, 0], tau_cycle_final[:, 1], s=40, marker="x", color="C3", label="τ = 0.1: INPO last iterates"
)
axes.plot([0, 0.5], [0.5, 0], color="0.5", ls=":", label="Nash set {(a, ½−a, a, ½−a)}")
axes.set_xlabel("π(arm 0)")
axes.set_ylabel("π(arm 1)")
axes.legend(frameon=False, fontsize=8)
axes.set_title(f"{INITS} random initialisations on the 4-cycle")
show(plotting.save_figure(figure, OUT / "d9_uniqueness.png"))

# %% [markdown]
# ## §D.11 — Last iterate vs uniform mixture on a cyclic P
#
# 3-cycle (c = 1), τ = 0.2, random reference per seed (min mass 0.1), π_0 = π_ref.  INPO with the
# Theorem-4 schedule, with constant η = 2·max_seed η_crit and with η between τ and min_seed η_crit;
# SPPO (η = 0.1), DNO (η = 10, i.e. SPPO with η = 0.1), Nash-MD (η = 0.5 and 0.25).  INPO and Nash-MD
# are measured by the τ-regularised duality gap, SPPO and DNO (no π_ref) by the unregularised
# exploitability.

# %%
d11_game = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": 0.2, "reference": "random", "reference_min_mass": 0.1}
d11_context = targets_of({"iterations": 1, "seeds": SEEDS, "game": d11_game, "rule": [{"name": "online_ipo"}]})
criticals = [theory.eta_critical(g["preference"], g["target"], 0.2) for g in d11_context.values()]
eta_above, eta_below = 2 * max(criticals), 0.5 * (0.2 + min(criticals))
d11_spec = {
    "iterations": LONG,
    "seeds": SEEDS,
    "game": d11_game,
    "rule": [
        {"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"},
        {"name": "inpo", "label": "inpo", "eta": [eta_above, eta_below]},
        {"name": "sppo", "eta": 0.1},
        {"name": "dno", "eta": 10.0},
        {"name": "nash_md", "label": "nash_md", "eta": [0.5, 0.25]},
    ],
}
d11 = sim.run(d11_spec)
swept = [label for label in pd.unique(d11.rule) if label.startswith("inpo[")]
d11["rule"] = d11["rule"].replace(dict(zip(swept, ["inpo_above", "inpo_below"])))
last = d11[d11.iteration == LONG]
d11_summary = stats.summary_table(
    d11, metrics=["duality_gap", "duality_gap_mixture", "exploitability", "exploitability_mixture"]
)
print(
    f"η_crit over seeds in [{min(criticals):.4f}, {max(criticals):.4f}]; "
    f"η_above = {eta_above:.4f}, η_below = {eta_below:.4f}"
)
print(d11_summary.pivot(index="rule", columns="metric", values="mean").to_string(float_format=lambda v: f"{v:.3g}"))
mixture_fits = {
    rule: stats.fit_rate(d11, metric, rule, window=(LONG // 10, LONG))
    for rule, metric in (("sppo", "exploitability_mixture"), ("dno", "exploitability_mixture"))
}
for rule, fit in mixture_fits.items():
    print(f"{rule}: mixture slope {fit.slope:.3f} [{fit.lower:.3f}, {fit.upper:.3f}]")
# below η_crit the mixture's gap plateaus: no rate to fit, compare its level at T with its level at T/10
below_mixture = d11[d11.rule == "inpo_below"].groupby("iteration").duality_gap_mixture.mean()
tenth = int(below_mixture.index[np.abs(below_mixture.index - LONG // 10).argmin()])  # nearest recorded iteration
plateau_ratio = below_mixture.loc[LONG] / below_mixture.loc[tenth]
print(
    f"inpo_below: mean mixture gap {below_mixture.loc[LONG]:.2e} at T = {LONG} vs {below_mixture.loc[tenth]:.2e} at "
    f"t = {tenth}: ratio {plateau_ratio:.3f}"
)
nash_bias = last[last.rule.str.startswith("nash_md")].groupby("rule").duality_gap.mean()
bias_slope = math.log(nash_bias["nash_md[eta=0.5]"] / nash_bias["nash_md[eta=0.25]"]) / math.log(2.0)
print(
    f"Nash-MD constant-η bias: gap {nash_bias.to_dict()}, log-log slope in η = {bias_slope:.3f} "
    "(docs/theory.md §C.6: 2)"
)
figure = plotting.plot_grid(
    d11,
    ["duality_gap", "duality_gap_mixture", "exploitability", "exploitability_mixture"],
    OUT / "d11_last_vs_average.png",
    fit_window=None,
)
show(figure)

# %% [markdown]
# ## §D.4 and §D.12 (sampled mode) — SPPO with one opponent; INPO's practical pair selection
#
# Sampled mode (`sim.sampled`): random games (K = 8, τ = 0.2), tabular logits, N = 1000 training
# samples per iteration, 50 full-batch Adam steps (lr 0.1) per iteration, T = 30.
#
# * §D.4 (INPO R4 Q4): SPPO (η = 1) with the win rate of each sample estimated from **one** opponent
#   y′ ~ π_t and a Bernoulli label (`lambda_p`, 1 query per sample) vs exact win rates
#   (`exact_win_rates`) vs the SPPO code's estimator (`sppo_win_rate`: K = 5 samples, self-comparison
#   included, best/worst pair; K(K−1)/2 = 10 queries).  Metric: exploitability of the mixture.
# * §D.12: INPO (η = 2) on i.i.d. pairs with oracle-ordered labels (`lambda_p`, the population loss
#   of Prop. 6) vs the paper's tournament pipeline (best/worst of K = 8, kept only if the winner wins;
#   3K/2 − 1 = 11 queries).  Metric: duality gap of the last iterate (the fixed point reached).

# %%
sampled_frames = []
for rule, eta, scheme, candidates in (  # candidates: K of the schemes that draw K responses per pair
    ("inpo", 2.0, "lambda_p", None),
    ("inpo", 2.0, "tournament", 8),
    ("sppo", 1.0, "lambda_p", None),
    ("sppo", 1.0, "exact_win_rates", None),
    ("sppo", 1.0, "sppo_win_rate", 5),
):
    spec = {
        "iterations": 30,
        "seeds": SEEDS,
        "game": {"kind": "random", "arms": 8, "tau": 0.2},
        "rule": [{"name": rule, "eta": eta}],
        "run": {
            "mode": "sampled",
            "pairs_per_iteration": 1000,
            "pair_scheme": scheme,
            **({"candidates": candidates} if candidates else {}),
            "optimizer": "adam",
            "learning_rate": 0.1,
            "inner_steps": 50,
        },
    }
    sampled_frames.append(sim.run(spec).assign(rule=f"{rule}_{scheme}"))
sampled_table = pd.concat(sampled_frames, ignore_index=True)
sampled_final = sampled_table[sampled_table.iteration == 30]
print(
    sampled_final.groupby("rule")[["duality_gap", "exploitability_mixture", "queries", "distance_to_exact"]]
    .mean()
    .to_string(float_format=lambda v: f"{v:.4g}")
)
tournament_bias = stats.paired_difference(
    sampled_table, "duality_gap", "inpo_tournament", "inpo_lambda_p", iteration=30
).iloc[0]
one_opponent = stats.paired_difference(
    sampled_table, "exploitability_mixture", "sppo_lambda_p", "sppo_exact_win_rates", iteration=30
).iloc[0]
code_estimator = stats.paired_difference(
    sampled_table, "exploitability_mixture", "sppo_sppo_win_rate", "sppo_exact_win_rates", iteration=30
).iloc[0]
queries_per_sample = (sampled_final.groupby("rule").queries.first() / (30 * 1000)).to_dict()
print(
    f"INPO tournament − λ_p duality gap: {tournament_bias.difference:.4f} [{tournament_bias.difference_lower:.4f}, "
    f"{tournament_bias.difference_upper:.4f}]"
)
print(
    f"SPPO one opponent − exact win rates (mixture exploitability): {one_opponent.difference:.4f} "
    f"[{one_opponent.difference_lower:.4f}, {one_opponent.difference_upper:.4f}]"
)
print(
    f"SPPO code estimator − exact win rates: {code_estimator.difference:.4f} [{code_estimator.difference_lower:.4f}, "
    f"{code_estimator.difference_upper:.4f}]"
)
print("oracle queries per training sample:", queries_per_sample)

# %% [markdown]
# ## A biased oracle (INPO R3 Q4: "what ensures the preference oracle does not skew the learning?")
#
# Nothing in INPO's update does: it learns the P its labels come from.  Random games (K = 5, τ = 0.1,
# uniform π_ref), INPO with η = τ + 1/τ for 3000 exact steps on two corrupted oracles, measured on the
# true P:
#
# * symmetric label noise, each label flipped with probability ε = 0.2: P_ε = ε + (1 − 2ε)P, so
#   τ·log(π/π_ref) = P_επ + c is P's fixed point at τ/(1 − 2ε): INPO reaches π*_{τ/(1−2ε)} of the true game
#   (noise acts as a larger τ; the unregularised Nash is unchanged);
# * a systematic bias toward arm 0 (a "verbosity" bias): P_δ(0 ≻ j) = P(0 ≻ j) + δ, δ ∈ {0.05, 0.1}
#   (clipped to [0, 1]): INPO reaches the biased game's π*_τ, which is not the true one.
#
# Certificates: the duality gap (sim.metrics) of π_T at the game and τ it should have converged to is at
# rounding level; its duality gap in the true game at τ measures the skew.

# %%
BIAS_TAU, BIAS_EPSILON, BIAS_DELTAS = 0.1, 0.2, (0.05, 0.1)
true_games = [
    game_from_instance(build_game(GameSpec(kind="random", arms=5, tau=BIAS_TAU), seed=s)) for s in range(SEEDS)
]


def skewed(game, delta):
    """``game`` judged by an oracle that adds ``delta`` to arm 0's win probability (clipped; P + Pᵀ = 1 kept)."""
    preference = np.array(game.preference)
    preference[0, 1:] = np.clip(preference[0, 1:] + delta, 0.0, 1.0)
    preference[1:, 0] = 1.0 - preference[0, 1:]
    return game._replace(preference=jnp.asarray(preference))


def inpo_limits(games, steps=3000):
    """log π_steps of exact INPO (η = τ + 1/τ, τ = BIAS_TAU) on each game, one vmapped loop."""
    rule = build_rule("inpo", {"eta": BIAS_TAU + 1 / BIAS_TAU, "tau": BIAS_TAU})
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *games)

    def one(game):
        return jax.lax.fori_loop(0, steps, lambda _, state: rule.update(state, game), rule.init(game)).log_policy

    return jax.jit(jax.vmap(one))(stacked)


# every corrupted oracle's games (and the true ones) in one vmapped run: game → the τ it should converge at
oracles = {
    f"noise eps={BIAS_EPSILON:g}": (
        [g._replace(preference=BIAS_EPSILON + (1 - 2 * BIAS_EPSILON) * g.preference) for g in true_games],
        BIAS_TAU / (1 - 2 * BIAS_EPSILON),
    )
}
oracles.update({f"bias delta={delta:g}": ([skewed(g, delta) for g in true_games], BIAS_TAU) for delta in BIAS_DELTAS})
oracles["true"] = (true_games, BIAS_TAU)
limits = inpo_limits([game for games, _ in oracles.values() for game in games])
bias_rows = []
for index, (name, (games, tau_limit)) in enumerate(oracles.items()):
    for seed, (game, judged) in enumerate(zip(true_games, games)):
        log_policy = limits[index * SEEDS + seed]
        # noise: certified in the true game at τ/(1 − 2ε); bias (and the true oracle): in the oracle's game at τ
        where = game if name.startswith("noise") else judged
        bias_rows.append(
            {
                "oracle": name,
                "seed": seed,
                "gap_where_converged": float(duality_gap(where, log_policy, tau_limit)),
                "true_gap": float(duality_gap(game, log_policy, BIAS_TAU)),
                "arm0": float(jnp.exp(log_policy[0])),
            }
        )
oracle_bias = pd.DataFrame(bias_rows)
print(
    oracle_bias.groupby("oracle", sort=False)[["gap_where_converged", "true_gap", "arm0"]]
    .agg(["mean", "max"])
    .to_string(float_format=lambda v: f"{v:.3g}")
)
bias_table = oracle_bias.rename(columns={"oracle": "rule"}).assign(iteration=3000)
bias_cis = {
    name: stats.paired_difference(bias_table, metric, name, "true", iteration=3000).iloc[0]
    for name in ("bias delta=0.05", "bias delta=0.1", f"noise eps={BIAS_EPSILON:g}")
    for metric in ("true_gap",)
}
arm0_shift = stats.paired_difference(bias_table, "arm0", "bias delta=0.1", "true", iteration=3000).iloc[0]
for name, row in bias_cis.items():
    print(
        f"true duality gap (τ = {BIAS_TAU}) of INPO's limit, {name} − true oracle: {row.difference:.4f} "
        f"[{row.difference_lower:.4f}, {row.difference_upper:.4f}]"
    )
print(
    f"π_T(arm 0), bias δ = 0.1 − true oracle: {arm0_shift.difference:.4f} "
    f"[{arm0_shift.difference_lower:.4f}, {arm0_shift.difference_upper:.4f}]"
)

# %% [markdown]
# ## Results (CI settings: 10 seeds 0–9, long runs T = 3000; recorded from the last run)
#
# | question | measured | answer |
# |---|---|---|
# | §D.3 η = τ (online IPO argmin) on the 3-cycle | KL(π*‖π_3000) ≥ 48 (τ = .01), ≥ 8.0 (τ = .05), ≥ 0.28 (τ = .2) on every initial policy; ρ = ω_max/τ = 28.9, 5.76, 1.39 | cycles whenever ω_max > τ |
# | §D.3 INPO below η_crit (0.5·η_crit; (τ+η_crit)/2 at τ = .2) | KL(π*‖π_3000) ≥ 0.49, 0.50, 0.13 | no last-iterate convergence even with η > τ |
# | §D.3 INPO at 2·η_crit and τ + 1/τ: fitted vs predicted semilog slope 2·log ρ | τ = .01: −0.00126 vs −0.00120, −0.00018 vs −0.00019; τ = .05: −0.02980 vs −0.02974, −0.00477 vs −0.00479; τ = .2: −0.41688 vs −0.41688, −0.07530 vs −0.07535 | linear rate as predicted |
# | §D.3 random games, η = τ, seed by seed | τ = .05: 9 seeds with ω_max > τ all cycle, 1 with ω_max < τ converges; τ = .2: all 10 have ω_max < τ and converge; BT (ω_max ≈ 4e-4): all converge | converges iff ω_max < τ |
# | §D.5 coverage m = 1e-1 / 1e-4 / 1e-8 (τ = .1) | realised B 2.35 / 2.63 / 2.63; C = 1; bound at T = 1000 = 3.2 for all; KL_T ≈ 4e-10–9e-10; exploitability of π_T ≈ π*_τ 0.106 / 0.222 / 0.223 (m = 1e-8 minus m = 0.1: +0.117 [0.016, 0.266]) | B = O(1/τ) whatever the coverage; the price of poor coverage is a π*_τ far from the unregularised Nash, which the bound does not see |
# | §D.5 τ = 0.5 / 0.1 / 0.02 | B 0.38 / 2.45 / 19.5 (Bτ ≤ 0.39); bound at T = 1000: 0.128 / 3.2 / 79.9 vs KL_0 0.029 / 0.37 / 0.73; the bound is below KL_0 only from T* ≈ 5.8e3 / 1.1e4 / 1.3e5; KL_T 4e-15 / 2e-10 / 1.3e-4 | the bound is vacuous at T = 1000 for τ ≤ 0.5 and degrades like 1/τ² |
# | §D.5 Theorem 4 across all settings | holds on 60 000 points; max observed/bound 5.7e-4 | holds, very loose |
# | §D.8 mean rank at T = 3 → T = 1000 (duality gap, 6 rules) | INPO-schedule 1.9 → 3.05; INPO η=1 2.4 → 1.9; MMD 3.4 → 1.9; online IPO 3.5 → 3.75; SPPO 4.4 → 5.9; Nash-MD 5.4 → 4.5; Spearman 0.754 | rankings change |
# | §D.8 significant flips (paired 95% CIs) | 3: INPO-schedule beats INPO η=1 and MMD at T = 3 (−0.041 [−0.077, −0.001], −0.045 [−0.082, −0.004]; the first is borderline: with the bootstrap seeds 1–9 instead of sim.stats' default its CI contains 0 for 8 of 9) but loses at T = 1000 (+2.2e-10 [2.4e-11, 4.4e-10]); Nash-MD loses to SPPO at T = 3 (+0.0016 [0.0012, 0.0022]) and wins at T = 1000 (−0.33 [−0.45, −0.22]) | T = 3 does not predict T = 1000 |
# | §D.8 SubOpt(DPO)/SubOpt(APO α = .3) | T = 3: 1.33 [1.27, 1.39]; T = 30: 22.2 [6.2, 46.3] | APO's advantage over DPO(β) grows with t (it is DPO(0.7β)) |
# | §D.9 τ = 0.1, 64 random initialisations | max spread of π_3000: 1.4e-13 (random game), 1.6e-13 (4-cycle); max |π_T − π*| 1.8e-13 | unique regularised Nash |
# | §D.9 τ = 0, 4-cycle, SPPO averages | exploitability ≤ 0.019; π̄(arm 0) ∈ [0.115, 0.415]; |π̄(0) − π̄(2)| ≤ 0.014 | a continuum of Nash policies; uniqueness comes from τ > 0 (strict concavity), as R1 says |
# | §D.4 SPPO, one opponent vs exact win rates (mixture exploitability at T = 30) | 0.097 vs 0.094: difference +0.0024 [−0.0013, 0.0069]; 1 query per sample vs 0 (exact) and 10 for the code's estimator (which differs: −0.020 [−0.029, −0.010], its (K−1)/K shrink) | yes, one opponent suffices in population |
# | §D.12 INPO λ_p pairs vs tournament (duality gap at T = 30) | 3.4e-4 vs 0.048: +0.048 [0.040, 0.057]; 1 vs 11 queries per pair | the practical pipeline converges to a biased point |
# | biased oracle (INPO R3 Q4), random K = 5, τ = .1, INPO η = τ + 1/τ, 3000 exact steps | every limit's duality gap where predicted ≤ 3.6e-16: labels flipped with ε = 0.2 → the true game's π* at τ/(1 − 2ε) = 0.167; arm 0 favoured by δ → the biased game's π*_τ; true duality gap minus the true oracle's: δ = .05 +0.0040 [0.0030, 0.0049], δ = .1 +0.0168 [0.0127, 0.0206] (larger on every seed), noise +0.0125 [0.0087, 0.0181]; π_T(arm 0) +0.117 [0.093, 0.143] at δ = .1 | no mechanism: INPO converges to the oracle's equilibrium; symmetric noise only acts as a larger τ, a systematic bias moves the equilibrium |
# | §D.11 last iterate vs mixture, 3-cycle, τ = .2 | SPPO/DNO: last-iterate exploitability 0.543, mixture 0.008 (slope −0.78 [−0.87, −0.69]); INPO schedule / 2·η_crit: last-iterate gap 1e-12 / 2e-17; INPO below η_crit: last gap 0.219, mixture gap 0.0013, its mean at T = 3000 over its mean at T = 300 = 1.03 (a plateau: asserted in [0.8, 1.25]; no rate is fitted); Nash-MD gap 5.8e-4 (η = .5) and 1.4e-4 (η = .25), slope in η 2.09 | SPPO/DNO need the average; INPO's last iterate converges with the schedule or η > η_crit; constant-η Nash-MD has an O(η²) bias |

# %% [markdown]
# ## Not covered here
#
# Not answered in this notebook: §D.2 as a query-budget comparison (gap vs cumulative queries at
# matched budgets; only the per-sample query counts are checked above), DNO with one opponent
# (§D.4 covers SPPO only), §D.7 (Adam vs RMSprop vs SGD inner loops), §D.10 (online vs offline
# data) and §D.3(b) (single-SGD-step online IPO vs INPO with a matched step).  Notebook 06 answers all
# five in sampled mode.

# %% [markdown]
# ## Assertions

# %%
# §D.3
cyc = d3.set_index(["tau", "rule"])
for tau in (0.01, 0.05, 0.2):
    assert cyc.loc[(tau, "online_ipo"), "kl_final_min"] > 1e-3, f"η = τ should cycle on the 3-cycle at τ = {tau}"
    assert cyc.loc[(tau, "inpo_below"), "kl_final_min"] > 1e-4, f"η < η_crit should not converge at τ = {tau}"
    for rule in ("inpo_2crit", "inpo_safe"):
        row = cyc.loc[(tau, rule)]
        assert row.rho < 1 and row.kl_final_max < cyc.loc[(tau, "online_ipo"), "kl_final_min"]
        assert np.isfinite(row.fitted), f"no semilog fit for {rule} at τ = {tau} (KL at the floor too early?)"
        assert abs(row.fitted - row.predicted) <= 0.1 * abs(row.predicted), (tau, rule, row.fitted, row.predicted)
clear = contrast[(contrast.omega_max - contrast.tau).abs() > 0.1 * contrast.tau]
assert len(clear) >= SEEDS and (clear.converged == clear.predicted_converges).all(), clear
assert (~clear.predicted_converges).sum() >= 3 and clear.predicted_converges.sum() >= 3, "both regimes should occur"
assert contrast[contrast.game == "bradley_terry"].converged.all()
# §D.5
assert d5_report.holds.all(), "Theorem 4 violated in the coverage / τ sweep"
assert (coverage.C == 1.0).all() and (taus.C == 1.0).all(), "realised Bτ ≤ 1: B stays O(1/τ), whatever the coverage"
by_tau = taus.groupby("tau").mean(numeric_only=True).sort_index(ascending=False)
assert by_tau.bound_T.is_monotonic_increasing, "the bound grows as τ → 0"
assert by_tau.informative_from_T.is_monotonic_increasing, "the bound becomes informative later as τ → 0"
assert (taus.bound_T > taus.KL_0).all(), "vacuous at T = 1000 for every τ ≤ 0.5 (the bound exceeds KL(π*‖π_0))"
# coverage does not move INPO's realised B much: its mean over seeds varies by < 25% across the masses (Results:
# 2.35 / 2.63 / 2.63, a factor 1.12) while log(1/m) grows 8× (2.3 → 18.4); with C = 1 (asserted above) the bound
# 32C²/(τ²(T + 1)) is then the same for every mass
mean_b = coverage.groupby("mass").B.mean()
assert mean_b.max() / mean_b.min() < 1.25, f"coverage moves the realised B: {mean_b.round(3).to_dict()}"
assert coverage_effect.difference_lower.iloc[0] > 0, "poor coverage of a Nash arm raises the exploitability of π*_τ"
# §D.8
assert len(flips) >= 1, "expected at least one significant ranking flip between T = 3 and T = 1000"
if SCALE == "ci":  # Results: three flips (INPO-schedule vs INPO η = 1 and vs MMD; Nash-MD vs SPPO)
    assert len(flips) == 3, flips
assert spearman < 0.9
assert apo_ratio[30][1] > apo_ratio[3][2], "APO's advantage over DPO(β) grows with t"
# §D.9
assert reg_spread < 1e-9 and reg_error < 1e-8, "τ > 0: one fixed point from every initialisation"
assert np.abs(tau_cycle_final - tau_cycle_final.mean(0)).max() < 1e-9
assert average_exploitability.max() < 0.03 and a_values.max() - a_values.min() > 0.05, (
    "τ = 0: a continuum of Nash policies"
)
# §D.11
for rule in ("sppo", "dno"):
    assert last[last.rule == rule].exploitability.min() > 0.1, f"{rule}: the last iterate does not converge"
    assert last[last.rule == rule].exploitability_mixture.max() < 0.05 and mixture_fits[rule].upper < 0
assert last[last.rule.isin(["inpo_theorem4", "inpo_above"])].duality_gap.max() < 1e-10
assert last[last.rule == "inpo_below"].duality_gap.min() > 1e-4, "below η_crit the last iterate circles"
assert last[last.rule == "inpo_below"].duality_gap_mixture.min() > 1e-4 and 0.8 <= plateau_ratio <= 1.25, (
    f"constant η below η_crit: the mixture's gap plateaus too (Theorem 3 needs η ∝ √T); ratio {plateau_ratio:.3f}"
)
assert (nash_bias > 1e-8).all() and 1.6 < bias_slope < 2.4, "Nash-MD's constant-η bias is O(η²)"
# biased oracle: INPO converges to the corrupted oracle's equilibrium (certificate: gap at rounding level there);
# symmetric noise = the true game at τ/(1 − 2ε); a systematic bias raises the true gap (paired CIs above 0),
# more for a larger δ on every seed, and moves mass to the favoured arm
assert oracle_bias.gap_where_converged.max() < 1e-12, oracle_bias[oracle_bias.gap_where_converged >= 1e-12]
for delta in BIAS_DELTAS:
    assert bias_cis[f"bias delta={delta:g}"].difference_lower > 0, f"bias δ = {delta} should skew INPO's limit"
by_oracle = oracle_bias.pivot(index="seed", columns="oracle", values="true_gap")
assert (by_oracle["bias delta=0.1"] > by_oracle["bias delta=0.05"]).all(), by_oracle
assert arm0_shift.difference_lower > 0, "a bias toward arm 0 moves mass to arm 0"
# §D.4 / §D.12 (sampled)
assert (
    tournament_bias.difference_lower > 0
    and sampled_final[sampled_final.rule == "inpo_lambda_p"].duality_gap.max() < 5e-3
)
assert -0.01 < one_opponent.difference_lower and one_opponent.difference_upper < 0.01, "one opponent ≈ exact win rates"
assert code_estimator.difference_upper < 0, "the SPPO code's estimator (self-comparison, (K−1)/K shrink) differs"
assert queries_per_sample == {
    "inpo_lambda_p": 1.0,
    "inpo_tournament": 11.0,
    "sppo_lambda_p": 1.0,
    "sppo_exact_win_rates": 0.0,
    "sppo_sppo_win_rate": 10.0,
}, queries_per_sample
print(f"all assertions passed in {time.time() - STARTED:.1f} s")
