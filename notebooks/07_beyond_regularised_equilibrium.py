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
# # 07 — Beyond the regularised equilibrium: reference advancement, extragradient and optimistic rules
#
# Every τ-regularised rule stops at π*_τ, the Nash policy of the game regularised toward a fixed π_ref
# (docs/theory.md §F).  The 2025–2026 literature moves the anchor: COMAL (ICLR 2026) and MPO reset the
# rule's reference to the current policy every M iterations (`reference_every = M`; presets `comal`,
# `mpo`).  This notebook checks, with confidence intervals over seeds and assertions at the end:
#
# 1. **COMAL's 3-action game** — P(b≻a) = P(c≻b) = 0.9, P(a≻c) = 0.8: online IPO and SPPO cycle; INPO's
#    exploitability stalls at the constant of π*_τ; reference advancement drives it below 1e-9; KL(π⁰‖π_t)
#    to the unregularised Nash never increases at an advance (COMAL's claim); the choice of M and its cost
#    in iterations.
# 2. **Random games, 20 seeds** (10 at CI scale): advancement against a fixed reference, paired.
# 3. **EGPO's exact tabular settings** (β, iterations, learning rate) = (0.1, 1000, 0.1) and
#    (0.01, 5000, 0.02) on its lower-triangle games, 10 seeds: extragradient against INPO and advancement.
# 4. **Sampled mode**: do EGPO's and ONPO's sampled losses approach their exact updates like N^{-1/2}?
# 5. **Head-to-head** of all rules on one family of games, and **MNPO's mixture against self-play**:
#    time-dependent MNPO (`mnpo`, arXiv 2509.23102) anchors INPO's step at the weighted geometric mixture
#    of its last m iterates (docs/theory.md §F.4); on random games and on games judged by several
#    Bradley–Terry oracles (`bt_mixture`), does the mixture change where self-play (INPO, m = 1) ends, and
#    what does it cost in iterations?

# %%
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import sim
from sim import plotting, stats, theory
from sim.game import Game
from sim.metrics import exploitability
from sim.nash import regularised_nash, unregularised_nash
from sim.rules import build_rule, resolve_parameters

jax.config.update("jax_enable_x64", True)  # float64 for the direct calls below; sim.run scopes its own

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "07_beyond_regularised"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 10 if SCALE == "ci" else 20
STARTED = time.time()
show = plotting.show_in_notebook
print(f"scale={SCALE} seeds={SEEDS}")

# %% [markdown]
# ## 1. COMAL's 3-action game
#
# Arms (a, b, c); uniform π_ref; τ = 0.1.  Its unregularised Nash is π⁰ = (4/11, 3/11, 4/11) (Pπ⁰ = ½);
# π*_τ ≠ π⁰.  Rules: online IPO (τ), SPPO (η = 1), INPO (η = 1) with a fixed reference, INPO with
# `reference_every` M ∈ {25, 50, 100, 200}, MPO (MMD η = 0.8, M = 40) and COMAL (INPO η = 1, M = 12).

# %%
COMAL_GAME = [[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]]
HORIZON = 3000
SWEEP = (25, 50, 100, 200)
rules = [
    {"name": "online_ipo", "label": "online_ipo"},
    {"name": "sppo", "eta": 1.0, "label": "sppo"},
    {"name": "inpo", "eta": 1.0, "label": "inpo_fixed"},
    *({"name": "inpo", "eta": 1.0, "reference_every": m, "label": f"inpo_M{m}"} for m in SWEEP),
    {"name": "mpo", "eta": 0.8},
    {"name": "comal", "eta": 1.0},
]
comal_table = sim.run(
    {
        "iterations": HORIZON,
        "record_every": 25,
        "game": {"kind": "matrix", "preference": COMAL_GAME, "tau": 0.1},
        "rule": rules,
    }
)
nash = np.array([4.0, 3.0, 4.0]) / 11.0
preference = np.asarray(COMAL_GAME)
lp_nash = unregularised_nash(preference)
game = Game(
    jnp.asarray(preference),
    jnp.log(jnp.full(3, 1.0 / 3.0)),
    jnp.log(jnp.full(3, 1.0 / 3.0)),
    jnp.full(3, jnp.nan),
    jnp.asarray(0.1),
)
log_regularised, _, _ = regularised_nash(game)
stall = float(exploitability(game, log_regularised))
curves = comal_table.pivot(index="iteration", columns="rule", values="exploitability")
late = curves.loc[curves.index >= HORIZON - 500]
print(f"π⁰ (LP) = {np.round(lp_nash, 6)}; exploitability of π*_τ = {stall:.6f}")
print("exploitability at T:", curves.loc[HORIZON].to_dict())
print("range over the last 500 iterations (cycling rules oscillate):")
print((late.max() - late.min())[["online_ipo", "sppo"]].to_dict())

# iterations each M needs to bring the exploitability below 1e-6 (the cost of a slower reset)
reach = {m: int(curves.index[np.argmax(curves[f"inpo_M{m}"].to_numpy() < 1e-6)]) for m in SWEEP}
print("first recorded iteration below 1e-6:", reach)
reach_m50 = int(curves.index[np.argmax(curves["inpo_M50"].to_numpy() < 1e-9)])
print(f"M = 50: first recorded iteration below 1e-9: {reach_m50} (at T = 1000: {curves['inpo_M50'].loc[1000]:.2e})")

# %%
fig_path = OUT / "comal_game_exploitability.png"
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

figure, axes = plt.subplots(figsize=(8, 4.2), layout="constrained")
for label in ["online_ipo", "sppo", "inpo_fixed", *(f"inpo_M{m}" for m in SWEEP), "mpo", "comal"]:
    axes.semilogy(curves.index, np.maximum(curves[label], 1e-17), label=label)
axes.axhline(stall, color="grey", linestyle=":", label="π*_τ's exploitability")
axes.set_xlabel("iteration t")
axes.set_ylabel("exploitability 2·max(Pπ_t) − 1")
axes.set_title("COMAL's 3-action game, τ = 0.1 (floor 1e-17 drawn)", fontsize=10)
axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
figure.savefig(fig_path, dpi=110)
plt.close(figure)
show(fig_path)

# %% [markdown]
# KL(π⁰‖π_t) at every advance of COMAL (M = 12), iterating the rule itself (η = 0.3, τ = 0.1):
# COMAL's claim is that it never increases across its outer steps.

# %%
comal_rule = build_rule("comal", resolve_parameters("comal", {"eta": 0.3, "tau": 0.1}, 0.1))
state = comal_rule.init(game)
advance_kl = []
for t in range(40 * 12 + 1):
    if t % 12 == 0:
        policy = np.exp(np.asarray(state.log_policy))
        advance_kl.append(float(np.sum(nash * np.log(nash / policy))))
    state = comal_rule.update(state, game)
advance_kl = np.asarray(advance_kl)
print(f"KL(π⁰‖π_t) at advances: first {advance_kl[:3]}, last {advance_kl[-1]:.3e}")
print(f"largest increase between consecutive advances: {np.max(np.diff(advance_kl)):.3e}")

# %% [markdown]
# ## 2. Random games with bands
#
# Random lower-triangle preference games (K = 5, τ = 0.1, uniform π_ref), INPO (η = 1) with a fixed
# reference against M = 50, T = 1500; exploitability of the last iterate, paired over seeds.

# %%
random_table = sim.run(
    {
        "iterations": 1500,
        "seeds": SEEDS,
        "game": {"kind": "random", "arms": 5, "tau": 0.1},
        "rule": [
            {"name": "inpo", "eta": 1.0, "label": "fixed"},
            {"name": "inpo", "eta": 1.0, "reference_every": 50, "label": "advancing"},
        ],
    }
)
paired = stats.paired_difference(random_table, "exploitability", "advancing", "fixed", iteration=1500)
summary_random = stats.summary_table(random_table, metrics=["exploitability"])
print(summary_random.to_string(index=False))
print(paired.to_string(index=False))

# %% [markdown]
# ## 3. EGPO's exact tabular settings
#
# EGPO's exact simulations use lower-triangle games and (β, iterations, learning rate) =
# (0.1, 1000, 0.1) and (0.01, 5000, 0.02).  Each iteration is one plain SGD step on tabular logits of the
# uniformly weighted loss (1/K²)Σ_{i,j}((d_i − d_j) − (p_i − p_j)/β)², d = log π − log π_ref
# (`zhourunlong/EGPO`, `simulations/loss_funcs.py::extragradient`, `simulations/run.py`), which is exactly
# the mirror step U with regularisation τ = β and learning rate **η = 4·lr/(Kβ)** (docs/theory.md §C.14;
# tests/test_exact_rules.py replays EGPO's SGD steps against the rule to 1e-13): η = 0.4 and 0.8 here, ητ =
# 0.04 and 0.008.  K = 10 arms, uniform π_ref, 10 seeds (EGPO reported one run, from random-normal reference
# logits).  The regularised duality gap (to π*_β) and the exploitability (to π⁰) of the last iterate, for
# extragradient, plain mirror descent with the same step and INPO with advancement.  Plain mirror descent is
# EGPO's "Online IPO 1 (OMD)": one SGD step of size lr on the same loss with p = Pπ_t, i.e. U(ℓ_t; π_t), which is
# INPO with **η_INPO = 1/η = Kβ/(4·lr)** (docs/theory.md §C.5; checked below on one step), 2.5 and 1.25 here —
# not τ + 1/η, MMD's implicit step of size η.  INPO converges in the last iterate iff η_INPO > η_crit =
# (τ² + ω_max²)/(2τ) (§A.3), computed per game below.

# %%
egpo_rows, egpo_tables, egpo_criticals, egpo_inpo_eta, online_ipo_1_gaps = [], {}, {}, {}, {}
EGPO_ARMS = 10
for beta, horizon, lr in ((0.1, 1000, 0.1), (0.01, 5000, 0.02)):
    step = 4.0 * lr / (EGPO_ARMS * beta)  # one SGD step of size lr on EGPO's loss is a mirror step of this size
    inpo_eta = egpo_inpo_eta[beta] = 1.0 / step  # EGPO's "Online IPO 1 (OMD)": that one SGD step with p = Pπ_t
    egpo_spec = {
        "iterations": horizon,
        "seeds": 10,
        "game": {"kind": "random", "arms": EGPO_ARMS, "tau": beta},
        "rule": [
            {"name": "extragradient", "eta": step, "label": "extragradient"},
            {"name": "inpo", "eta": inpo_eta, "label": "inpo"},
            {"name": "inpo", "eta": inpo_eta, "reference_every": horizon // 10, "label": "inpo_advancing"},
        ],
    }
    table = sim.run(egpo_spec)
    egpo_tables[beta] = (table, horizon)
    _, egpo_games = theory.per_seed_games(egpo_spec)
    egpo_criticals[beta] = pd.Series(
        {s: theory.eta_critical(g["preference"], g["target"], beta) for s, g in egpo_games.items()}
    )
    # EGPO's Online IPO 1 loss written out (simulations/loss_funcs.py::online_ipo_1), one SGD step of size lr from a
    # random policy on the first game, against one step of the `inpo` arm's rule
    first_game = egpo_games[min(egpo_games)]
    theta = np.random.default_rng(0).normal(size=EGPO_ARMS)
    prefs = first_game["preference"] @ np.exp(theta - np.log(np.exp(theta).sum()))

    def online_ipo_1(logits, prefs=prefs, game=first_game, beta=beta):
        d = jax.nn.log_softmax(logits) - jnp.log(game["reference"])
        return jnp.sum(((d[:, None] - d[None, :]) - (prefs[:, None] - prefs[None, :]) / beta) ** 2) / EGPO_ARMS**2

    by_sgd = np.asarray(jax.nn.log_softmax(theta - lr * jax.grad(online_ipo_1)(jnp.asarray(theta))))
    one_game = Game(
        jnp.asarray(first_game["preference"]),
        jnp.log(jnp.asarray(first_game["reference"])),
        jax.nn.log_softmax(jnp.asarray(theta)),
        jnp.full(EGPO_ARMS, jnp.nan),
        jnp.asarray(beta),
    )
    inpo_rule = build_rule("inpo", resolve_parameters("inpo", {"eta": inpo_eta}, beta))
    by_rule = np.asarray(inpo_rule.update(inpo_rule.init(one_game), one_game).log_policy)
    online_ipo_1_gaps[beta] = float(np.abs(by_rule - by_sgd).max())
    final = stats.summary_table(table, metrics=["duality_gap", "exploitability"])
    final.insert(0, "setting", f"β={beta}, T={horizon}, lr={lr} (η={step:g})")
    egpo_rows.append(final)
    halfway = table[table.iteration == horizon // 2].groupby("rule")["duality_gap"].max()
    egpo_rows[-1]["gap_halfway_max"] = egpo_rows[-1]["rule"].map(halfway)
egpo = pd.concat(egpo_rows, ignore_index=True)
print(egpo[["setting", "rule", "metric", "mean", "ci_lower", "ci_upper"]].to_string(index=False))
# paired over the same games at each setting's horizon: extragradient and advancement against INPO
egpo_paired = {}
for beta, (table, horizon) in egpo_tables.items():
    for rule in ("extragradient", "inpo_advancing"):
        for metric in ("duality_gap", "exploitability"):
            row = stats.paired_difference(table, metric, rule, "inpo", iteration=horizon).iloc[0]
            egpo_paired[(beta, rule, metric)] = row
            print(
                f"β = {beta}: {rule} − inpo, {metric} at T = {horizon}: {row.difference:+.4g} "
                f"[{row.difference_lower:+.4g}, {row.difference_upper:+.4g}] "
                f"({rule} lower on {row.probability_of_improvement:.0%} of seeds)"
            )
    gaps = table[(table.iteration == horizon) & (table.rule == "inpo")].set_index("seed").duality_gap
    print(
        f"β = {beta}: INPO's η = {egpo_inpo_eta[beta]:g}; η_crit and INPO's final duality gap per game:",
        {s: f"{egpo_criticals[beta][s]:.3g}: {gaps[s]:.1e}" for s in gaps.index},
    )
print("EGPO's Online IPO 1 step against the inpo arm's step, max |Δ log π|:", online_ipo_1_gaps)

# %% [markdown]
# ## 4. Sampled EGPO and ONPO: distance to the exact update against N
#
# One sampled iteration from π_0 on a random game (K = 5, τ = 0.5, η = 0.8), tabular policy, SGD to a
# gradient tolerance of 1e-9 (so optimisation error is negligible next to sampling error), with
# N ∈ {400, 6400} pairs, 32 seeds; log-log slope of the mean `distance_to_exact`
# against N with a seed-bootstrap interval.  Extragradient draws two sets of pairs per iteration (from
# π_t and from π_{t+½}); optimistic MD one (plus the set drawn before the first update).

# %%
PAIRS = (400, 6400)
rate_rows = []
for name in ("extragradient", "optimistic"):
    for estimator in ("ipo", "uniform"):
        errors = []
        for pairs in PAIRS:
            table = sim.run(
                {
                    "iterations": 1,
                    "seeds": 32,
                    "game": {"kind": "random", "arms": 5, "tau": 0.5},
                    "rule": [{"name": name, "eta": 0.8, "estimator": estimator}],
                    "run": {
                        "mode": "sampled",
                        "pairs_per_iteration": pairs,
                        "optimizer": "sgd",
                        "learning_rate": 1.0,
                        "inner_steps": 3000,
                        "tolerance": 1e-9,
                    },
                }
            )
            errors.append(table[table.iteration == 1].sort_values("seed")["distance_to_exact"].to_numpy())
        errors = np.asarray(errors)
        log_n = np.log(np.asarray(PAIRS, float))
        rng = np.random.default_rng(0)
        slopes = [np.polyfit(log_n, np.log(errors[:, rng.integers(0, 32, 32)].mean(axis=1)), 1)[0] for _ in range(2000)]
        slope = np.polyfit(log_n, np.log(errors.mean(axis=1)), 1)[0]
        low, high = np.percentile(slopes, [2.5, 97.5])
        rate_rows.append((name, estimator, slope, low, high, errors[-1].mean()))
rates = pd.DataFrame(rate_rows, columns=["rule", "estimator", "slope", "ci_lower", "ci_upper", "error_at_6400"])
print(rates.to_string(index=False))

# %% [markdown]
# ## 5. Head-to-head on one family of games
#
# Random games (K = 5, τ = 0.1), T = 1500, every Nash-seeking rule; the table of win rates
# W(A, B) = mean over seeds of π_Aᵀ P π_B for the final policies (what `headtohead.csv` holds).

# %%
h2h_run = sim.run(
    {
        "iterations": 1500,
        "seeds": SEEDS,
        "game": {"kind": "random", "arms": 5, "tau": 0.1},
        "rule": [
            {"name": "inpo", "eta": 1.0},
            {"name": "comal", "eta": 1.0},
            {"name": "mpo", "eta": 0.8},
            {"name": "extragradient", "eta": 0.5},
            {"name": "optimistic", "eta": 0.5},
            {"name": "online_ipo"},
            {"name": "sppo", "eta": 1.0},
            {"name": "dno", "eta": 1.0},
            {"name": "nash_md", "eta": 0.5},
        ],
    }
)
h2h = pd.DataFrame(h2h_run.attrs["headtohead"])
h2h_path = plotting.plot_headtohead(h2h, OUT / "headtohead.png")
show(h2h_path)
worst = h2h.groupby("rule_a")["win_rate"].min().sort_values(ascending=False)  # min over opponents
comal_worst = h2h[h2h.rule_a == "comal"].sort_values("win_rate").iloc[0]
print("worst-case win rate of each rule's final policy:")
print(worst.to_string())

# %% [markdown]
# ### 5b. MNPO's mixture against self-play
#
# INPO (m = 1, self-play against π_t) and MNPO with m = 2 and 3 past iterates (uniform weights, the
# authors' default), same η = 1 and τ = 0.1 (η well above INPO's η_crit), T = 600, on random games and on
# `bt_mixture` games of three random Bradley–Terry judges.  Measured: the final duality gap (does it still
# reach π*_τ?), the head-to-head win rate of MNPO's final policy against INPO's, and, per seed, the first
# iteration with duality gap below 1e-8 (the cost of the mixture).

# %%
MNPO_GAMES = {
    "random": {"kind": "random", "arms": 5, "tau": 0.1},
    "bt_mixture": {
        "kind": "bt_mixture",
        "rewards": "random",
        "arms": 5,
        "components": 3,
        "reward_scale": 5.0,
        "tau": 0.1,
    },
}
mnpo_rows, mnpo_h2h = [], []
for family, game_table in MNPO_GAMES.items():
    mnpo_run = sim.run(
        {
            "iterations": 600,
            "seeds": SEEDS,
            "record_every": 1,
            "game": game_table,
            "rule": [
                {"name": "inpo", "eta": 1.0, "label": "self_play"},
                {"name": "mnpo", "eta": 1.0, "history": 2, "label": "mnpo_m2"},
                {"name": "mnpo", "eta": 1.0, "history": 3, "label": "mnpo_m3"},
            ],
        }
    )
    final = mnpo_run[mnpo_run.iteration == 600]
    reached = mnpo_run[mnpo_run.duality_gap < 1e-8].groupby(["rule", "seed"]).iteration.min().unstack("rule")
    for rule in ("self_play", "mnpo_m2", "mnpo_m3"):
        gaps = final[final.rule == rule].duality_gap.to_numpy()
        mnpo_rows.append((family, rule, gaps.max(), reached[rule].median(), reached[rule].max()))
    table = pd.DataFrame(mnpo_run.attrs["headtohead"])
    table["family"] = family
    mnpo_h2h.append(table[(table.rule_b == "self_play") & (table.rule_a != "self_play")])
    assert reached.notna().all().all(), f"{family}: some run never reached gap 1e-8"
    assert np.all(reached["mnpo_m2"] >= reached["self_play"]) and np.all(reached["mnpo_m3"] >= reached["mnpo_m2"])
mnpo_table = pd.DataFrame(
    mnpo_rows, columns=["family", "rule", "final_gap_max", "iterations_to_1e-8_median", "iterations_to_1e-8_max"]
)
mnpo_h2h = pd.concat(mnpo_h2h, ignore_index=True)
print(mnpo_table.to_string(index=False))
print(mnpo_h2h[["family", "rule_a", "rule_b", "win_rate", "ci_lower", "ci_upper"]].to_string(index=False))

# %% [markdown]
# ## Results
#
# Settings of the last run: CI scale (10 seeds for §2 and §5, 10 for §3, 32 for §4); float64.
# Recorded numbers (CI scale, 2026-12-05):
#
# * §1: π*_τ's exploitability 0.024490; INPO with a fixed reference sits on it at every T; M = 50
#   reaches < 1e-9 at t = 1025 (the first recorded iteration below it; 1.4e-9 at T = 1000) and stays
#   there; M = 25 is fastest, M = 200 slowest (first recorded iteration below 1e-6:
#   300 / 625 / 1225 / 2425 for M = 25 / 50 / 100 / 200, about 12 resets each); online IPO and SPPO keep
#   oscillating (ranges 0.19 and 0.57 over the last 500 iterations).  KL(π⁰‖π_t) at COMAL's advances
#   decreases monotonically (largest increase 1.9e-16, rounding) from 8.6e-3 to 1.4e-16.
# * §2: exploitability at T = 1500: fixed 0.090 [0.077, 0.102], advancing 0.0031 [0.0005, 0.0070];
#   paired difference −0.087 [−0.099, −0.075], lower on every seed.
# * §3 (EGPO's steps η = 4·lr/(Kβ) = 0.4 and 0.8, INPO at η_INPO = 1/η = 2.5 and 1.25, EGPO's "Online IPO 1
#   (OMD)": one step of the `inpo` arm is EGPO's SGD step on that loss to 4e-16; re-run 2026-12-07 after earlier
#   versions used η = lr, 4× and 40× too small, and then INPO at τ + 1/η, MMD's step): at β = 0.1 extragradient
#   and INPO reach π*_β (duality gap ≤ 1.8e-16 on every seed; every game's η_crit is 0.12–0.21, far below 2.5) and
#   keep its exploitability 0.125 [0.111, 0.138] (paired difference within ±1e-15); advancement every 100
#   iterations lowers it to 0.021 [0.009, 0.035].  At β = 0.01, T = 5000 extragradient reaches π*_β on every
#   seed (gap ≤ 1.5e-16; exploitability 0.0086 [0.0062, 0.0111]) while INPO with the same step does not: its gap
#   is 0.065 [0.009, 0.136], 0.33, 0.19, 0.065 and 0.061 on the 4 games whose η_crit (§A.3) exceeds 1.25 (2.13,
#   2.01, 1.32, 1.28), 8.6e-3 on one just below it (1.23: a contraction factor near 1) and ≤ 5e-10 on the other
#   five (η_crit ≤ 0.96).  Paired, extragradient − INPO: gap −0.065 [−0.136, −0.009], exploitability −0.073
#   [−0.147, −0.013].  Advancement every 500 iterations of that INPO is not better than INPO (gap +0.023 [−0.029,
#   +0.096], exploitability +0.014 [−0.035, +0.087]).  So EGPO's second setting is where its claim shows: the
#   extra half step converges where plain mirror descent with the same step circles π*_β, on exactly the games
#   whose η_crit exceeds INPO's η.  Extragradient queries P twice per iteration, INPO once; that does not decide
#   it: with η_INPO < η_crit the linearised INPO map has spectral radius above 1 (§A.3), so no horizon converges.
# * §4: distance to the exact update against N (slope and 95% CI) contains −½ for both rules and both
#   estimators (N = 400 and 6400, as in tests/test_sampled_extragradient.py): extragradient −0.52
#   [−0.59, −0.44] (λ_p) and −0.54 [−0.61, −0.47] (uniform); optimistic −0.49 [−0.57, −0.41] and −0.55
#   [−0.62, −0.49]; max-abs log-probability error at N = 6400 about 0.009 (λ_p) and 0.014 (uniform).
# * §5b: with η = 1, τ = 0.1, INPO and MNPO (m = 2, 3, uniform weights) all reach π*_τ (final duality gap
#   ≤ 4e-16) on random and three-judge `bt_mixture` games, so MNPO's final policy ties self-play's (win
#   rate 0.5 [0.5, 0.5]): the mixture does not move the regularised equilibrium.  It costs iterations:
#   median first iteration with gap < 1e-8 is 77.5 / 113 / 148 (random) and 75 / 112 / 149 (bt_mixture) for
#   m = 1 / 2 / 3, never fewer for a larger m on any seed.
# * §5: COMAL's final policy is unexploitable (worst win rate 0.500000); MPO's 0.4999 (not yet converged at
#   T = 1500 with M = 40); the fixed-reference rules' final policies lose up to 0.52 : 0.48.

# %%
# the notebook's claims
# §1 cycling: online IPO and SPPO do not settle (their last-iterate exploitability keeps moving)
assert (late.max() - late.min())["online_ipo"] > 1e-3 and (late.max() - late.min())["sppo"] > 1e-3
# §1 INPO with a fixed reference stalls at π*_τ's exploitability (a constant > 0)
assert stall > 0.02
assert np.all(np.abs(curves["inpo_fixed"].loc[[1000, 2000, 3000]] - stall) < 1e-7)
# §1 advancement drives it below 1e-9 (M = 50 from t = 1025 on), as do the presets; π⁰ is the LP's
assert 1000 < reach_m50 <= 1025 and (curves["inpo_M50"].loc[reach_m50:] < 1e-9).all(), reach_m50
assert curves["inpo_M50"].loc[1500] < 1e-9 and curves["mpo"].loc[HORIZON] < 1e-9 and curves["comal"].loc[1500] < 1e-9
np.testing.assert_allclose(lp_nash, nash, atol=1e-8)
# §1 every M reaches 1e-6, and a larger M costs more iterations (monotone in M)
assert all(curves[f"inpo_M{m}"].min() < 1e-6 for m in SWEEP)
assert [reach[m] for m in SWEEP] == sorted(reach[m] for m in SWEEP)
# §1 COMAL's claim: KL to π⁰ never increases at an advance, and it falls
assert np.all(np.diff(advance_kl) <= 1e-15) and advance_kl[-1] < 1e-3 * advance_kl[0]
# §2 advancement beats a fixed reference on random games (paired 95% CI of the difference below 0)
assert float(paired["difference_upper"].iloc[0]) < 0
# §3 extragradient converges to π*_β at β = 0.1 (gap ≤ 1e-8 on every seed) but not to π⁰; advancement does
first = egpo[egpo.setting.str.startswith("β=0.1")].set_index(["rule", "metric"])
# "on every seed": the largest seed's gap, not the CI of the mean (whose upper end can lie below a seed's value)
first_table, first_horizon = egpo_tables[0.1]
first_gaps = first_table[first_table.iteration == first_horizon].groupby("rule").duality_gap.max()
assert first_gaps["extragradient"] < 1e-8, first_gaps
assert first_gaps["inpo"] < 1e-8, "INPO with the same step reaches π*_β too"
assert first.loc[("extragradient", "exploitability"), "ci_lower"] > 1e-3
row = egpo_paired[(0.1, "extragradient", "exploitability")]
assert max(abs(row.difference_lower), abs(row.difference_upper)) < 1e-6, "both keep π*_β's exploitability"
assert first.loc[("inpo_advancing", "exploitability"), "ci_upper"] < first.loc[("inpo", "exploitability"), "ci_lower"]
# §3 the `inpo` arm is EGPO's "Online IPO 1 (OMD)": one SGD step of size lr on its loss (η_INPO = Kβ/(4·lr))
assert max(online_ipo_1_gaps.values()) < 1e-12, online_ipo_1_gaps
# §3 at β = 0.01, T = 5000 (10 games at both scales): extragradient reaches π*_β on every seed, INPO with the same
# step circles it on exactly the games whose η_crit exceeds its η (§A.3: it converges iff η_INPO > η_crit) and
# converges on those well below, and extragradient is ahead of it on both metrics (paired CI below 0)
second_table, second_horizon = egpo_tables[0.01]
second_gaps = second_table[second_table.iteration == second_horizon].groupby("rule").duality_gap.max()
assert second_gaps["extragradient"] < 1e-8, second_gaps
inpo_gaps = second_table[(second_table.iteration == second_horizon) & (second_table.rule == "inpo")]
inpo_gaps = inpo_gaps.set_index("seed").duality_gap
criticals = egpo_criticals[0.01].loc[inpo_gaps.index]
assert (criticals > egpo_inpo_eta[0.01]).any(), criticals  # the setting separates the two rules
assert (inpo_gaps[criticals > egpo_inpo_eta[0.01]] > 1e-2).all(), (criticals, inpo_gaps)
assert (inpo_gaps[criticals < 0.9 * egpo_inpo_eta[0.01]] < 1e-8).all(), (criticals, inpo_gaps)
assert (egpo_criticals[0.1] < egpo_inpo_eta[0.1]).all(), egpo_criticals[0.1]  # β = 0.1: INPO converges everywhere
for metric in ("duality_gap", "exploitability"):
    row = egpo_paired[(0.01, "extragradient", metric)]
    assert row.difference_upper < 0, f"β = 0.01: extragradient should be ahead of INPO on {metric}"
# §3 the Results' numbers at β = 0.01 (10 games at both scales): INPO's gap, the paired differences, advancement
second = egpo[egpo.setting.str.startswith("β=0.01")].set_index(["rule", "metric"])
recorded = {
    "INPO gap": ((0.065, 0.009, 0.136), second.loc[("inpo", "duality_gap"), ["mean", "ci_lower", "ci_upper"]]),
    **{
        f"{rule} − inpo, {metric}": (
            numbers,
            egpo_paired[(0.01, rule, metric)][["difference", "difference_lower", "difference_upper"]],
        )
        for (rule, metric), numbers in {
            ("extragradient", "duality_gap"): (-0.065, -0.136, -0.009),
            ("extragradient", "exploitability"): (-0.073, -0.147, -0.013),
            ("inpo_advancing", "duality_gap"): (0.023, -0.029, 0.096),
            ("inpo_advancing", "exploitability"): (0.014, -0.035, 0.087),
        }.items()
    },
}
for name, (numbers, measured) in recorded.items():
    assert np.allclose(measured.to_numpy(float), numbers, rtol=0, atol=1.5e-3), (name, measured.to_numpy(float))
# §4 the sampled stage losses approach their exact updates like N^{-1/2}
assert np.all((rates["ci_lower"] <= -0.5) & (rates["ci_upper"] >= -0.5)), rates
assert np.all(rates["error_at_6400"] < 0.1)
# §5 COMAL's final policy cannot be beaten (worst win rate ½ up to 1e-6) while INPO's fixed-reference one can;
# the table is consistent: W(A, B) + W(B, A) = 1
assert comal_worst.win_rate > 0.5 - 1e-6 and worst["inpo"] < 0.5 - 1e-3
wide = h2h.pivot(index="rule_a", columns="rule_b", values="win_rate")
np.testing.assert_allclose(wide.to_numpy() + wide.to_numpy().T, 1.0, atol=1e-12)
# §5b MNPO's mixture does not move self-play's end point: every run reaches π*_τ (gap ≤ 1e-10) and MNPO's
# final policy ties INPO's (win rate ½ within 1e-6); it costs iterations: per seed, the first iteration with
# gap < 1e-8 never decreases from m = 1 to 2 to 3 (asserted per family above) and the median grows
assert mnpo_table.final_gap_max.max() < 1e-10
np.testing.assert_allclose(mnpo_h2h.win_rate, 0.5, atol=1e-6)
for family in MNPO_GAMES:
    medians = mnpo_table[mnpo_table.family == family].set_index("rule")["iterations_to_1e-8_median"]
    assert medians["self_play"] < medians["mnpo_m2"] < medians["mnpo_m3"], medians
print(f"ran in {time.time() - STARTED:.0f} s")
print("all assertions passed")
