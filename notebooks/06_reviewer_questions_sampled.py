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
# # 06 — Reviewer questions that need sampling: query cost, inner optimiser, one-step IPO, one-opponent DNO, offline data
#
# docs/theory.md §D questions that notebook 04 listed as not covered, answered in **sampled mode**
# (`sim.sampled`: N labelled pairs per iteration, tabular logits, an optax inner loop), with paired
# bootstrap CIs over seeds (same seeds = same games for every arm of a comparison) and assertions at the end:
#
# * **§D.2** query cost: INPO on `lambda_p` pairs (1 oracle query per pair) vs SPPO with the code's
#   win-rate estimator (`sppo_win_rate`, K = 5 samples, K(K−1)/2 = 10 queries per sample group) vs DNO with
#   one-opponent win rates (`lambda_p`, 1 query per pair), at a **matched budget** of 200 queries per
#   iteration (INPO and DNO N = 200 pairs, SPPO N = 20 groups); and variance or information: each rule's
#   sampled run against its population update at the same iteration, and DNO/SPPO with 4× the queries.
# * **§D.7** Adam vs RMSprop vs SGD as the inner optimiser, APO α ∈ {0, 0.3} (α = 0 is iterative DPO),
#   with few (2) and many inner steps: does optimiser momentum substitute for APO's extrapolation?
# * **§D.3(b)** online IPO as *one* plain SGD step per iteration vs INPO at the matched step (docs/theory.md
#   §C.14: η = τK/(4·lr)), one-step and exactly minimised, and vs online IPO's exact argmin (η = τ), on the
#   c = 1 3-cycle at τ = 0.2.
# * **§D.4** DNO (η = 1) with one opponent sample per response (`lambda_p` Bernoulli labels) vs exact
#   win rates (`exact_win_rates`): its bias.
# * **§D.10** online vs offline data: IPO and INPO on one fixed dataset of labelled pairs from π_ref
#   (`[run] data = "offline"`) vs online sampling from π_t, with the same number of labels.

# %%
import os
import pathlib
import time

import jax
import numpy as np
import pandas as pd

import sim
from bandits.games import build_game
from sim import plotting, stats, theory
from sim.game import game_from_instance
from sim.metrics import best_response, duality_gap
from sim.nash import target_policy

jax.config.update("jax_enable_x64", True)  # float64 for the direct calls below; sim.run scopes its own

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "06_reviewer_questions_sampled"
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = 20 if SCALE == "ci" else 32
ITERATIONS = 30 if SCALE == "ci" else 100
D7_ITERATIONS = 20 if SCALE == "ci" else 50
BUDGET = 200  # oracle queries per iteration (§D.2), and pairs per iteration elsewhere
FEW_STEPS, MANY_STEPS = 2, (20 if SCALE == "ci" else 100)
RANDOM_GAME = {"kind": "random", "arms": 6, "tau": 0.2}
STARTED = time.time()

show = plotting.show_in_notebook


def sampled(rule, run, game=RANDOM_GAME, iterations=ITERATIONS, label=None):
    """One sampled-mode ``sim.run`` (tabular policy); relabel its rule column when ``label`` is given."""
    spec = {
        "iterations": iterations,
        "seeds": SEEDS,
        "game": game,
        "rule": rule,
        "run": {
            "mode": "sampled",
            # an offline run given its dataset's size (offline_pairs) does not read pairs_per_iteration
            **({} if "offline_pairs" in run else {"pairs_per_iteration": BUDGET}),
            "pair_scheme": "lambda_p",
            "policy": "tabular",
            "optimizer": "adam",
            "learning_rate": 0.1,
            "inner_steps": 50,
            **run,
        },
    }
    table = sim.run(spec)
    return table.assign(rule=label) if label else table


def ci_text(row):
    return f"{row.difference:+.4f} [{row.difference_lower:+.4f}, {row.difference_upper:+.4f}]"


print(f"scale={SCALE} seeds={SEEDS} T={ITERATIONS} (D.7: {D7_ITERATIONS}) budget={BUDGET} queries/iteration")

# %% [markdown]
# ## §D.2 — INPO vs SPPO vs DNO at a matched oracle-query budget: variance or information?
#
# Random game K = 6, τ = 0.2; INPO η = 2 (above η_crit), SPPO η = 1, DNO η = 1 (an inverse learning rate: the
# same exact step as SPPO's with the exact normaliser, docs/theory.md §C.8); 50 Adam steps (lr 0.1) per
# iteration.  All three spend 200 queries per iteration, so equal iteration = equal cumulative `queries`:
# INPO 200 `lambda_p` pairs (1 query each), SPPO 20 groups of K = 5 (10 queries each), DNO 200 pairs with the
# registry's default scheme for it, `lambda_p`: the pair's one query is each response's one-opponent
# win-rate estimate (1 for the winner, 0 for the loser), so DNO also pays 1 query per pair
# (tests/test_sampled_schemes.py checks the `queries` column of each DNO scheme).
#
# Variance or information (INPO R1: is the query advantage "from variance reduction, or from better
# extracting information from preference?"): each rule's sampled run (a) against the same rule with exact
# (population) targets (b), on the same games and iterations: its exact-mode update, the limit of infinitely
# many queries per iteration (for SPPO the `normaliser = "paper"` step, the population minimiser of its
# loss).  Per seed, (a) A − (a) B = [(b) A − (b) B] + [stat A − stat B] with stat = (a) − (b): the first
# bracket is what the population updates do differently, the second the statistical part.  DNO also runs
# with exact win rates on the same 200 pairs per iteration (`exact_win_rates`, reused by §D.4), which
# leaves its pair draws and inner loop in place; and DNO and SPPO rerun with 4× the queries per iteration
# (800): a statistical part that does not shrink with 4× the data is a bias of the estimator, not variance.

# %%
D2_POPULATION = {"inpo": "inpo_population", "sppo": "sppo_population", "dno": "dno_population"}
D2_SAMPLED = {"inpo": "inpo_lambda_p", "sppo": "sppo_win_rate", "dno": "dno_lambda_p"}
SPPO_RUN = {"pair_scheme": "sppo_win_rate", "candidates": 5}
population = sim.run(
    {
        "iterations": ITERATIONS,
        "seeds": SEEDS,
        "record_every": 1,
        "game": RANDOM_GAME,
        "rule": [
            {"name": "inpo", "eta": 2.0},
            {"name": "sppo", "eta": 1.0, "normaliser": "paper"},
            {"name": "dno", "eta": 1.0},
        ],
    }
)
d2 = pd.concat(
    [
        sampled([{"name": "inpo", "eta": 2.0}], {"pairs_per_iteration": BUDGET}, label="inpo_lambda_p"),
        sampled(
            [{"name": "sppo", "eta": 1.0}], {"pairs_per_iteration": BUDGET // 10, **SPPO_RUN}, label="sppo_win_rate"
        ),
        sampled([{"name": "dno", "eta": 1.0}], {"pairs_per_iteration": BUDGET}, label="dno_lambda_p"),
        sampled([{"name": "dno", "eta": 1.0}], {"pair_scheme": "exact_win_rates"}, label="dno_exact_win_rates"),
        sampled([{"name": "dno", "eta": 1.0}], {"pairs_per_iteration": 4 * BUDGET}, label="dno_lambda_p_4x"),
        sampled(
            [{"name": "sppo", "eta": 1.0}],
            {"pairs_per_iteration": 4 * BUDGET // 10, **SPPO_RUN},
            label="sppo_win_rate_4x",
        ),
        population.assign(rule=population.rule.map(D2_POPULATION)),
    ],
    ignore_index=True,
)
queries = d2.dropna(subset=["queries"]).groupby(["rule", "iteration"]).queries.first().unstack("rule")
matched = queries[list(D2_SAMPLED.values())]
assert (matched.to_numpy() == (BUDGET * matched.index.to_numpy())[:, None]).all(), "the budgets must match"
assert (queries["dno_lambda_p_4x"] == 4 * matched["dno_lambda_p"]).all() and (queries["dno_exact_win_rates"] == 0).all()
budget_points = [ITERATIONS // 10, ITERATIONS // 3, ITERATIONS]
D2_METRICS = ("duality_gap", "exploitability_mixture", "exploitability")
D2_PAIRS = (("inpo", "sppo"), ("inpo", "dno"), ("sppo", "dno"))


def paired(metric, rule_a, rule_b, iteration, table=d2):
    return stats.paired_difference(table, metric, rule_a, rule_b, iteration=iteration).iloc[0]


# (a) at matched queries, (b) the population updates, and each rule's statistical part (a) − (b)
d2_rows = []
for it in budget_points:
    for metric in D2_METRICS:
        statistical = {r: paired(metric, D2_SAMPLED[r], D2_POPULATION[r], it) for r in D2_SAMPLED}
        for a, b in D2_PAIRS:
            total = paired(metric, D2_SAMPLED[a], D2_SAMPLED[b], it)
            population_part = paired(metric, D2_POPULATION[a], D2_POPULATION[b], it)
            d2_rows.append(
                {
                    "queries": BUDGET * it,
                    "metric": metric,
                    "pair": f"{a}−{b}",
                    "a": total.mean_a,
                    "b": total.mean_b,
                    "sampled a−b [95% CI]": ci_text(total),
                    "population a−b": ci_text(population_part),
                    "stat a": ci_text(statistical[a]),
                    "stat b": ci_text(statistical[b]),
                    "difference": total.difference,
                    "lower": total.difference_lower,
                    "upper": total.difference_upper,
                    "population": population_part.difference,
                    "population_lower": population_part.difference_lower,
                    "population_upper": population_part.difference_upper,
                    "statistical_a_upper": statistical[a].difference_upper,
                    "statistical_b_lower": statistical[b].difference_lower,
                }
            )
d2_summary = pd.DataFrame(d2_rows)
with pd.option_context("display.width", 250, "display.max_columns", 20):
    print(d2_summary.iloc[:, :9].to_string(float_format=lambda v: f"{v:.4g}"))
d2_at = d2_summary.set_index(["queries", "metric", "pair"])
# where DNO's and SPPO's statistical parts come from: exact win rates on the same pairs (DNO), 4× the queries
d2_sources = {}
for it in budget_points:
    for metric in D2_METRICS:
        d2_sources[("dno", "exact_win_rates", it, metric)] = paired(metric, "dno_exact_win_rates", "dno_population", it)
        for rule in ("dno", "sppo"):
            d2_sources[(rule, "4x", it, metric)] = paired(metric, f"{D2_SAMPLED[rule]}_4x", D2_POPULATION[rule], it)
            d2_sources[(rule, "4x−1x", it, metric)] = paired(metric, f"{D2_SAMPLED[rule]}_4x", D2_SAMPLED[rule], it)
SOURCE_TEXT = {
    "exact_win_rates": "exact win rates on the same pairs − population",
    "4x": "4× the queries − population",
    "4x−1x": "4× the queries − 1×",
}
for (rule, arm, it, metric), row in d2_sources.items():
    if metric == "duality_gap":
        print(f"duality gap at {BUDGET * it} queries, {rule}, {SOURCE_TEXT[arm]}: {ci_text(row)}")
figure, axes = plotting.new_figure()
plotting.plot_metric(
    d2[d2.rule.isin([*D2_SAMPLED.values(), *D2_POPULATION.values()])].assign(
        iteration=lambda frame: BUDGET * frame.iteration
    ),
    "duality_gap",
    axes=axes,
    fit_window=None,
    mark_iteration=None,
    title=f"duality gap vs oracle queries ({SEEDS} seeds)",
    # SPPO's and DNO's population updates differ only by SPPO's normaliser: within a line's width here, so
    # the later one is dashed and says so (plot_metric names only curves within 1% everywhere)
    styles={"dno_population": {"ls": (0, (2, 3)), "lw": 2.2}},
    labels={"dno_population": "dno_population (≈ sppo)"},
)
axes.set_xlabel("cumulative oracle queries (population: exact update, same iteration)")
show(plotting.save_figure(figure, OUT / "d2_gap_vs_queries.png"))
d2_mean_gap = d2.groupby(["rule", "iteration"]).duality_gap.mean()
d2_population_twins = float(
    (d2_mean_gap["dno_population"] / d2_mean_gap["sppo_population"] - 1).abs().max()
)  # what the "≈" of the figure's legend claims
print(f"SPPO's and DNO's population mean gap curves differ by at most {d2_population_twins:.1%} (relative)")
print(f"§D.2 done at {time.time() - STARTED:.0f} s")

# %% [markdown]
# ## §D.7 — inner optimiser × APO, few vs many inner steps
#
# Bradley–Terry game K = 6 (rewards U[0, 1]), β = 1, APO in log space, N = 200 `lambda_p` pairs,
# Adam / RMSprop lr 0.1, SGD lr 1.0.  All three at 2 inner steps; Adam and SGD also at many steps
# (20 at CI scale, 100 at full scale; RMSprop, which has no momentum, at many steps only at full scale, to
# keep the CI run within a minute).  Metric: SubOpt(π_T).  "APO effect" = SubOpt(α = 0.3) − SubOpt(α = 0)
# per seed; momentum substitutes for extrapolation if the APO effect vanishes under Adam/RMSprop but
# not under SGD (difference-of-differences, paired over seeds).

# %%
OPTIMISERS = {"adam": 0.1, "rmsprop": 0.1, "sgd": 1.0}
d7_frames = []
GRID = [(optimiser, FEW_STEPS) for optimiser in OPTIMISERS] + [("adam", MANY_STEPS), ("sgd", MANY_STEPS)]
if SCALE == "full":
    GRID.append(("rmsprop", MANY_STEPS))
for optimiser, steps in GRID:
    table = sampled(
        [{"name": "apo", "label": "apo", "alpha": [0.0, 0.3], "beta": 1.0, "form": "log_space"}],
        {"optimizer": optimiser, "learning_rate": OPTIMISERS[optimiser], "inner_steps": steps},
        game={"kind": "bradley_terry", "rewards": "random", "arms": 6, "tau": 0.0},
        iterations=D7_ITERATIONS,
    )
    d7_frames.append(table.assign(optimizer=optimiser, steps=steps))
d7 = pd.concat(d7_frames, ignore_index=True)
d7_final = d7[d7.iteration == D7_ITERATIONS]
print(
    d7_final.groupby(["optimizer", "steps", "rule"])
    .suboptimality.mean()
    .unstack("rule")
    .to_string(float_format=lambda v: f"{v:.4g}")
)
per_seed = d7_final.pivot_table(index=["optimizer", "steps", "seed"], columns="rule", values="suboptimality")
effect = (per_seed["apo[alpha=0.3]"] - per_seed["apo[alpha=0]"]).rename("suboptimality").reset_index()
effect = effect.assign(rule=effect.optimizer + "_" + effect.steps.astype(str), iteration=D7_ITERATIONS)
apo_effect = {}
for (optimiser, steps), group in effect.groupby(["optimizer", "steps"]):
    centre, lower, upper = stats.bootstrap_ci(group.suboptimality.to_numpy()[:, None], "mean")
    apo_effect[(optimiser, steps)] = (float(centre[0]), float(lower[0]), float(upper[0]))
    print(f"APO effect, {optimiser:7s} {steps:3d} steps: {centre[0]:+.4f} [{lower[0]:+.4f}, {upper[0]:+.4f}]")
substitution = {}
for optimiser, steps in GRID:
    if optimiser != "sgd":
        row = stats.paired_difference(
            effect, "suboptimality", f"{optimiser}_{steps}", f"sgd_{steps}", iteration=D7_ITERATIONS
        ).iloc[0]
        substitution[(optimiser, steps)] = row
        print(f"APO effect under {optimiser} − under SGD, {steps} steps: {ci_text(row)}")
# does RMSprop (no momentum) shrink APO's effect as much as Adam (momentum)?  Paired over the same seeds
adam_vs_rmsprop = stats.paired_difference(
    effect, "suboptimality", f"adam_{FEW_STEPS}", f"rmsprop_{FEW_STEPS}", iteration=D7_ITERATIONS
).iloc[0]
print(f"APO effect under Adam − under RMSprop, {FEW_STEPS} steps: {ci_text(adam_vs_rmsprop)}")
figure = plotting.plot_grid(
    d7.assign(rule=d7.optimizer + "_" + d7.steps.astype(str) + "_" + d7.rule),
    ["suboptimality"],
    OUT / "d7_optimiser_apo.png",
    fit_window=None,
    mark_iteration=None,
)
show(figure)
print(f"§D.7 done at {time.time() - STARTED:.0f} s")

# %% [markdown]
# ## §D.3(b) — one SGD step of online IPO vs INPO at the matched step, and vs the exact argmin, on the 3-cycle
#
# Cyclic game K = 3, c = 1, τ = 0.2, π_ref = (0.5, 0.3, 0.2), random initial policy; N = 200 `lambda_p`
# pairs per iteration.  docs/theory.md §C.14: one SGD step of size lr from π_t's logits on online IPO's
# squared loss is a mirror-descent step of size κ = 4·lr/K toward log π_ref + Pπ_t/τ (with uniform pair
# weights), i.e. INPO's update with the **matched** η = τ/κ = τK/(4·lr) = 3 for lr = 0.05.  At θ = θ_t
# INPO's loss (h − 1/(2η))², h = Δlog π − (τ/η)Δlog π_ref − (1 − τ/η)Δlog π_t, has gradient τ/η times
# online IPO's, so one SGD step of INPO with lr·η/τ = 0.75 is the same step.  Arms (same seeds = same
# games, initial policies and pair draws):
#
# * `one_sgd_step`: online IPO, one plain-SGD step (lr 0.05) per iteration;
# * `inpo_one_step`: INPO with the matched η = 3, one plain-SGD step (lr 0.75);
# * `exact_argmin`: online IPO's loss minimised (100 Adam steps, lr 0.1) — its population argmin is
#   BR_τ(π_t) (η = τ), which docs/theory.md §D.3 predicts cycles (ω_max/τ = 1.39 > 1);
# * `inpo_argmin`: INPO's loss with η = 3 minimised the same way (its argmin keeps the anchor to π_t);
# * `inpo_exact`: exact-mode INPO with η = 3 (the population MD step, no sampling);
# * `one_step_population`: the expected one-step update on λ_p pairs, no sampling: pairs drawn from π_t
#   make the gradient 4π_t(k)[(d_k − π_t·d) − ((Pπ_t)_k − ½)/τ], d = log π_t − log π_ref, i.e. arm k's
#   step is scaled by π_t(k) instead of 1/K (§C.14: a step preconditioned by π_t, not INPO's MD step).
#
# The rates are fitted over t ∈ [10, 30] at both scales, where every curve is above the sampling floor.

# %%
CYCLE = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": 0.2, "reference": [0.5, 0.3, 0.2], "initial": "random"}
D3_LR, D3_TAU, D3_ARMS = 0.05, CYCLE["tau"], CYCLE["arms"]
MATCHED_ETA = D3_TAU * D3_ARMS / (4 * D3_LR)  # η = τ/κ with κ = 4·lr/K (docs/theory.md §C.14)
ARGMIN = {"optimizer": "adam", "learning_rate": 0.1, "inner_steps": 100}
D3_WINDOW = (10, 30)
d3 = pd.concat(
    [
        sampled(
            [{"name": "online_ipo"}],
            {"optimizer": "sgd", "learning_rate": D3_LR, "inner_steps": 1},
            game=CYCLE,
            label="one_sgd_step",
        ),
        sampled(
            [{"name": "inpo", "eta": MATCHED_ETA}],
            {"optimizer": "sgd", "learning_rate": D3_LR * MATCHED_ETA / D3_TAU, "inner_steps": 1},
            game=CYCLE,
            label="inpo_one_step",
        ),
        sampled([{"name": "online_ipo"}], ARGMIN, game=CYCLE, label="exact_argmin"),
        sampled([{"name": "inpo", "eta": MATCHED_ETA}], ARGMIN, game=CYCLE, label="inpo_argmin"),
        sim.run(
            {"iterations": ITERATIONS, "seeds": SEEDS, "game": CYCLE, "rule": [{"name": "inpo", "eta": MATCHED_ETA}]}
        ).assign(rule="inpo_exact"),
    ],
    ignore_index=True,
)


def one_step_population(game, steps):
    """KL(π*‖π_t), t = 0 … steps, of online IPO's expected one-SGD-step update on λ_p pairs (lr D3_LR)."""
    preference, log_reference = np.asarray(game["preference"]), np.log(np.asarray(game["reference"]))
    target, log_policy = np.asarray(game["target"]), np.log(np.asarray(game["initial"]))
    curve = []
    for _ in range(steps + 1):
        policy = np.exp(log_policy)
        curve.append(float(np.sum(target * (np.log(target) - log_policy))))
        d = log_policy - log_reference
        gradient = 4 * policy * ((d - policy @ d) - (preference @ policy - 0.5) / D3_TAU)
        log_policy = log_policy - D3_LR * gradient
        log_policy = log_policy - np.log(np.sum(np.exp(log_policy)))
    return curve


d3_games = theory.per_seed_games({"iterations": 1, "seeds": SEEDS, "game": CYCLE, "rule": [{"name": "online_ipo"}]})[1]
d3 = pd.concat(
    [d3]
    + [
        pd.DataFrame(
            {
                "rule": "one_step_population",
                "seed": seed,
                "iteration": np.arange(ITERATIONS + 1),
                "kl_to_nash": one_step_population(game, ITERATIONS),
            }
        )
        for seed, game in d3_games.items()
    ],
    ignore_index=True,
)
d3_means = d3[d3.iteration.isin([0, 10, ITERATIONS])].groupby(["rule", "iteration"])[["duality_gap", "kl_to_nash"]]
print(d3_means.mean().unstack("iteration").to_string(float_format=lambda v: f"{v:.4g}"))
d3_kl = d3.pivot_table(index=["seed", "iteration"], columns="rule", values="kl_to_nash")
one_step_identity = float((d3_kl["inpo_one_step"] - d3_kl["one_sgd_step"]).abs().max())
d3_pairs = {  # KL(π*‖π_t) paired over seeds, at t = T and (for the early lag) t = 10
    (a, b, t): stats.paired_difference(d3, "kl_to_nash", a, b, iteration=t).iloc[0]
    for a, b, t in (
        ("inpo_one_step", "one_sgd_step", ITERATIONS),
        ("one_sgd_step", "one_step_population", 10),
        ("one_sgd_step", "one_step_population", ITERATIONS),
        ("one_step_population", "inpo_exact", 10),
        ("one_sgd_step", "inpo_exact", ITERATIONS),
        ("inpo_argmin", "inpo_exact", ITERATIONS),
        ("inpo_argmin", "exact_argmin", ITERATIONS),
        ("one_sgd_step", "exact_argmin", ITERATIONS),
    )
}
one_step_vs_argmin = d3_pairs[("one_sgd_step", "exact_argmin", ITERATIONS)]
one_step_progress = stats.paired_difference(
    d3.assign(rule=d3.rule + "_" + d3.iteration.astype(str)).assign(iteration=0),
    "kl_to_nash",
    f"one_sgd_step_{ITERATIONS}",
    "one_sgd_step_0",
    iteration=0,
).iloc[0]
d3_fits = {
    rule: stats.fit_rate(d3, "kl_to_nash", rule, window=D3_WINDOW, scale="semilog")
    for rule in ("one_sgd_step", "inpo_argmin", "inpo_exact")
}
one_step_fit = d3_fits["one_sgd_step"]
matched_target = d3_games[0]  # one game and π_ref for every seed (only the initial policy is random)
matched_rate = 2 * np.log(
    theory.inpo_contraction_factor(matched_target["preference"], matched_target["target"], D3_TAU, MATCHED_ETA)
)
argmin_final = d3[(d3.rule == "exact_argmin") & (d3.iteration == ITERATIONS)].kl_to_nash
print(f"matched η = τK/(4·lr) = {MATCHED_ETA:g}; INPO's predicted semilog KL slope 2·log ρ = {matched_rate:.4f}")
print(f"one SGD step of INPO (lr {D3_LR * MATCHED_ETA / D3_TAU:g}) vs of online IPO: max |ΔKL| {one_step_identity:.1e}")
for (a, b, t), row in d3_pairs.items():
    print(f"KL(π*‖π_{t}): {a} − {b} {ci_text(row)}")
print(f"one step T − 0: {ci_text(one_step_progress)}; argmin (η = τ) min over seeds {argmin_final.min():.3f}")
for rule, fit in d3_fits.items():
    print(f"{rule}: semilog KL slope over {fit.window} {fit.slope:.3f} [{fit.lower:.3f}, {fit.upper:.3f}]")
figure = plotting.grid_figure(
    d3[d3.rule != "one_step_population"],  # no duality gap recorded for the population curve
    ["kl_to_nash", "duality_gap"],
    fit_window=None,
    mark_iteration=None,
)
for axes in figure.axes[:2]:  # semilog: the linear rates fitted above are straight lines
    axes.set_xscale("linear")
    axes.set_xlim(0, ITERATIONS)
    axes.set_xlabel("iteration t (linear axis)")
show(plotting.save_figure(figure, OUT / "d3b_one_step_vs_argmin.png"))
print(f"§D.3(b) done at {time.time() - STARTED:.0f} s")

# %% [markdown]
# ## §D.4 — DNO with one opponent sample vs exact win rates
#
# Random game K = 6, τ = 0.2, DNO η = 1, N = 200, 50 Adam steps (lr 0.1): §D.2's two DNO runs.  Bias =
# metric(one opponent) − metric(exact win rates) on the same seeds, for the last iterate and for the mixture
# (average) policy.

# %%
d4 = d2[d2.rule.isin(["dno_lambda_p", "dno_exact_win_rates"])].reset_index(drop=True)  # §D.2's runs
d4_final = d4[d4.iteration == ITERATIONS]
print(
    d4_final.groupby("rule")[["exploitability", "exploitability_mixture", "distance_to_exact", "queries"]]
    .mean()
    .to_string(float_format=lambda v: f"{v:.4g}")
)
dno_bias = {
    metric: stats.paired_difference(d4, metric, "dno_lambda_p", "dno_exact_win_rates", iteration=ITERATIONS).iloc[0]
    for metric in ("exploitability", "exploitability_mixture", "distance_to_exact")
}
for metric, row in dno_bias.items():
    print(f"DNO one opponent − exact win rates, {metric}: {ci_text(row)}")
show(
    plotting.plot_grid(
        d4,
        ["exploitability", "exploitability_mixture"],
        OUT / "d4_dno_one_opponent.png",
        fit_window=None,
        mark_iteration=None,
    )
)
print(f"§D.4 done at {time.time() - STARTED:.0f} s")

# %% [markdown]
# ## §D.10 — online vs offline data, same number of labels
#
# INPO reviewer 2 asks what INPO's *online* guarantee buys over offline preference optimisation.
# docs/theory.md §C.5: on pairs from a fixed μ the IPO loss's population minimiser is BR_τ(μ) ∝ π_ref·exp(Pμ/τ);
# for INPO's loss it is the INPO step with Pμ in place of Pπ_t (derived in `sim.sampled.offline`,
# checked against a direct minimisation of the population loss in `tests/test_sampled_offline.py`),
# whose iterates contract onto the same BR_τ(π_ref) when μ = π_ref.  So offline data can only reach
# BR_τ(π_ref), whose duality gap is > 0 on a non-transitive game, whatever the number of labels.
#
# Random games K = 6 (non-transitive), **τ = 0.1**, random π_ref (one game and one π_ref per seed), 200 pairs
# per iteration, T iterations; every offline run draws **one** dataset of 200·T λ_p pairs from π_ref per
# seed (`data = "offline"`; the same number of labels as the online run by the end) and reuses it at
# every iteration:
#
# * `ipo_online`: the online IPO of Calandriello et al. — one plain-SGD step (lr 0.1) on each fresh batch
#   from π_t (the argmin-per-iteration form is iterated best response, which cycles when ω_max > τ:
#   on 10 of seeds 0–19 and 18 of 0–31 here, §D.3);
# * `ipo_offline`: the IPO loss minimised on the fixed dataset (50 Adam steps, lr 0.1, per iteration:
#   50·T steps on the same loss); `ipo_offline_quarter`: the same with a dataset of 200·T/4 pairs;
# * `inpo_online` / `inpo_offline`: INPO η = 0.5 (above η_crit = (τ² + ω_max²)/(2τ) ≤ 0.27 on every seed 0–31),
#   50 Adam steps (lr 0.1) per iteration, on fresh pairs from π_t / on the fixed dataset.
#
# The exact reference values per seed (closed form, no sampling): the duality gap of BR_τ(π_ref) and
# KL(π*_τ‖BR_τ(π_ref)).  For offline IPO, `distance_to_exact` is max_y |log π̂(y) − log BR_τ(π_ref)(y)|.

# %%
D10_TAU = 0.1
D10_GAME = {"kind": "random", "arms": 6, "tau": D10_TAU, "reference": "random"}
D10_ETA = 0.5
ONE_SGD_STEP = {"optimizer": "sgd", "learning_rate": 0.1, "inner_steps": 1}
LABELS = BUDGET * ITERATIONS
d10 = pd.concat(
    [
        sampled([{"name": "online_ipo"}], ONE_SGD_STEP, game=D10_GAME, label="ipo_online"),
        sampled([{"name": "online_ipo"}], {"data": "offline"}, game=D10_GAME, label="ipo_offline"),
        sampled(
            [{"name": "online_ipo"}],
            {"data": "offline", "offline_pairs": LABELS // 4},
            game=D10_GAME,
            label="ipo_offline_quarter",
        ),
        sampled([{"name": "inpo", "eta": D10_ETA}], {}, game=D10_GAME, label="inpo_online"),
        sampled([{"name": "inpo", "eta": D10_ETA}], {"data": "offline"}, game=D10_GAME, label="inpo_offline"),
    ],
    ignore_index=True,
)
d10_final = d10[d10.iteration == ITERATIONS]
d10_queries = d10.groupby(["rule", "iteration"]).queries.first().unstack("rule")

# exact values per seed: the duality gap of BR_τ(π_ref) and KL(π*_τ ‖ BR_τ(π_ref)), the offline limit
game_spec = sim.parse_spec({"iterations": 1, "game": D10_GAME, "rule": [{"name": "online_ipo"}]}).game
exact_rows = []
for seed in range(SEEDS):
    game = game_from_instance(build_game(game_spec, seed))
    nash, _ = target_policy(game)
    log_br = best_response(game, game.log_reference, D10_TAU)
    log_nash = np.log(np.asarray(nash))
    exact_rows.append(
        {
            "seed": seed,
            "gap_br_reference": float(duality_gap(game, log_br, D10_TAU)),
            "kl_br_reference": float(np.sum(np.exp(log_nash) * (log_nash - np.asarray(log_br)))),
        }
    )
d10_exact = pd.DataFrame(exact_rows).set_index("seed")

d10_cis = {}
for rule, group in d10_final.groupby("rule"):
    for metric in ("duality_gap", "kl_to_nash", "distance_to_exact"):
        centre, lower, upper = stats.bootstrap_ci(group.sort_values("seed")[metric].to_numpy()[:, None], "mean")
        d10_cis[(rule, metric)] = (float(centre[0]), float(lower[0]), float(upper[0]))
for metric, column in (("duality_gap", "gap_br_reference"), ("kl_to_nash", "kl_br_reference")):
    centre, lower, upper = stats.bootstrap_ci(d10_exact[column].to_numpy()[:, None], "mean")
    d10_cis[("exact_br_reference", metric)] = (float(centre[0]), float(lower[0]), float(upper[0]))
print(
    pd.DataFrame(
        {key: f"{c:.4g} [{lo:.4g}, {hi:.4g}]" for key, (c, lo, hi) in d10_cis.items()}, index=["mean [95% CI]"]
    )
    .T.unstack()
    .to_string()
)
print(d10_queries.loc[[0, 1, ITERATIONS]].to_string())

d10_paired = {}
for online, offline in (("ipo_online", "ipo_offline"), ("inpo_online", "inpo_offline")):
    for metric in ("duality_gap", "kl_to_nash"):
        d10_paired[(online, metric)] = stats.paired_difference(d10, metric, online, offline, iteration=ITERATIONS).iloc[
            0
        ]
        print(f"{online} − {offline}, {metric} at T = {ITERATIONS}: {ci_text(d10_paired[(online, metric)])}")
offline_inpo_vs_ipo = stats.paired_difference(
    d10, "kl_to_nash", "inpo_offline", "ipo_offline", iteration=ITERATIONS
).iloc[0]
more_offline_labels = stats.paired_difference(
    d10, "duality_gap", "ipo_offline", "ipo_offline_quarter", iteration=ITERATIONS
).iloc[0]
closer_with_labels = stats.paired_difference(
    d10, "distance_to_exact", "ipo_offline", "ipo_offline_quarter", iteration=ITERATIONS
).iloc[0]
print(f"offline INPO − offline IPO, KL(π*‖π_T) (same datasets): {ci_text(offline_inpo_vs_ipo)}")
print(
    f"offline IPO, {LABELS} − {LABELS // 4} labels: gap {ci_text(more_offline_labels)}, "
    f"distance to BR_τ(π_ref) {ci_text(closer_with_labels)}"
)
distances = d10_final.pivot(index="seed", columns="rule", values="distance_to_exact")
slope_per_seed = np.log(distances["ipo_offline"] / distances["ipo_offline_quarter"]) / np.log(4.0)
slope_centre, slope_lower, slope_upper = (
    float(v[0]) for v in stats.bootstrap_ci(slope_per_seed.to_numpy()[:, None], "mean")
)
print(
    f"offline IPO: log-log slope of the distance to BR_τ(π_ref) in the dataset size "
    f"{slope_centre:.3f} [{slope_lower:.3f}, {slope_upper:.3f}] (N^-1/2: −0.5)"
)
gaps = d10_final.pivot(index="seed", columns="rule", values="duality_gap").join(d10_exact)
kls = d10_final.pivot(index="seed", columns="rule", values="kl_to_nash").join(d10_exact)
offline_rules = ["ipo_offline", "ipo_offline_quarter", "inpo_offline"]
gap_ratio = gaps[offline_rules].div(gaps["gap_br_reference"], axis=0)
kl_ratio = kls[offline_rules].div(kls["kl_br_reference"], axis=0)
print("offline gap / exact gap of BR_τ(π_ref), per seed:\n" + gap_ratio.to_string(float_format=lambda v: f"{v:.3f}"))
print(
    "offline KL / exact KL(π*‖BR_τ(π_ref)), min over seeds: "
    + kl_ratio.min().to_string(float_format=lambda v: f"{v:.3f}")
)
ratio_cis = {
    (rule, name): tuple(float(v[0]) for v in stats.bootstrap_ci(ratio[rule].to_numpy()[:, None], "mean"))
    for name, ratio in (("gap", gap_ratio), ("kl", kl_ratio))
    for rule in offline_rules
}
for (rule, name), (c, lo, hi) in ratio_cis.items():
    print(f"{rule}: mean offline/exact {name} ratio over seeds {c:.3f} [{lo:.3f}, {hi:.3f}]")
inpo_offline_gap = d10[d10.rule == "inpo_offline"].groupby("iteration").duality_gap.mean()
print(
    f"offline INPO: smallest mean gap {inpo_offline_gap.min():.4f} at t = {int(inpo_offline_gap.idxmin())} "
    f"(T = {ITERATIONS}: {inpo_offline_gap.loc[ITERATIONS]:.4f})"
)
steps = np.arange(ITERATIONS + 1)
for metric, column, name in (
    ("duality_gap", "gap_br_reference", "d10_gap"),
    ("kl_to_nash", "kl_br_reference", "d10_kl"),
):
    figure, axes = plotting.new_figure()
    plotting.plot_metric(
        d10,
        metric,
        axes=axes,
        fit_window=None,
        mark_iteration=None,
        theory={"exact BR_τ(π_ref) (offline limit), mean": (steps, np.full(steps.shape, d10_exact[column].mean()))},
        title=f"{metric}: online vs offline data, {LABELS} labels ({SEEDS} seeds, τ = {D10_TAU})",
    )
    show(plotting.save_figure(figure, OUT / f"{name}_online_vs_offline.png"))
print(f"§D.10 done at {time.time() - STARTED:.0f} s")

# %% [markdown]
# ## Results (CI settings: 20 seeds 0–19, T = 30 (§D.7: T = 20), 200 queries / pairs per iteration; recorded from the last run)
#
# | question | measured (paired 95% bootstrap CIs over the 20 seeds) | answer |
# |---|---|---|
# | §D.2 INPO (λ_p, 1 query/pair) − SPPO (code estimator, 10 queries/group), duality gap at 600 / 2000 / 6000 queries | 0.0265 vs 0.0093: +0.017 [+0.012, +0.022]; 0.0065 vs 0.133: −0.126 [−0.152, −0.100]; 1.1e-3 vs 0.349: −0.348 [−0.440, −0.271] | SPPO is ahead only at the first 600 queries (CI above 0); from 2000 queries on INPO's last iterate has the far smaller gap (CIs below 0) (SPPO's last iterate is not a τ-regularised equilibrium) |
# | §D.2 same, mixture exploitability at 6000 queries | INPO 0.215 vs SPPO 0.094: +0.121 [+0.081, +0.155] | on the unregularised game SPPO's average is less exploitable: the comparison depends on the metric |
# | §D.2 INPO − DNO (the registry's default `lambda_p`: 1 query per pair, each response's one-opponent win-rate estimate; 200 queries per iteration each), duality gap at 600 / 2000 / 6000 queries | 0.0265 vs 0.0132: +0.013 [+0.009, +0.017]; 0.0065 vs 0.189: −0.183 [−0.214, −0.151]; 1.1e-3 vs 0.331: −0.330 [−0.386, −0.275] | as against SPPO: DNO ahead at the first 600 queries, INPO from 2000 queries on |
# | §D.2 INPO − DNO at 6000 queries, exploitability on the unregularised game | mixture 0.215 vs 0.062: +0.153 [+0.125, +0.178]; last iterate 0.185 vs 0.164: +0.021 [−0.045, +0.085] | DNO's mixture is far less exploitable; the last iterates are indistinguishable at this budget |
# | §D.2 SPPO − DNO at matched queries | gap at 2000: −0.057 [−0.079, −0.036], at 6000: +0.018 [−0.065, +0.110]; mixture at 6000: +0.032 [+0.009, +0.069]; their population updates differ by 0.0008 or less in mean gap (SPPO's η/2 normaliser) | SPPO and DNO are indistinguishable on the gap at 6000 queries; every difference between them is statistical |
# | §D.2 variance or information: statistical part = sampled run − the same rule's population (exact-mode) update at the same iteration, duality gap at 600 / 2000 / 6000 queries | INPO −0.0002 [−0.0014, +0.0009] / +0.0005 [−0.0004, +0.0014] / +0.0010 [+0.0007, +0.0013]; DNO +0.004 [+0.002, +0.007] / +0.141 [+0.113, +0.167] / +0.067 [+0.023, +0.112]; SPPO +0.0001 [−0.003, +0.003] / +0.085 [+0.064, +0.105] / +0.085 [+0.025, +0.161] | INPO's sampled run is its population update to within 0.0014 in gap at every budget point (at 6000 queries its sampling floor, 1.1e-3 against 1e-4, is significant but 0.3% of its lead over DNO); DNO's and SPPO's are not |
# | §D.2 INPO − DNO split into population part (b) and the rest, duality gap | 600: (b) +0.018 [+0.015, +0.020] of +0.013; 2000: (b) −0.043 [−0.052, −0.034] of −0.183 (23%; the rest is DNO's statistical part, +0.141); 6000: (b) −0.264 [−0.310, −0.217] of −0.330 (80%); mixture exploitability at 6000: (b) +0.130 [+0.107, +0.151] of +0.153, DNO's statistical part −0.025 [−0.034, −0.014] | at 2000 queries INPO's lead on the gap is mostly DNO's estimation error, at 6000 mostly what the population updates do: INPO's converges to the τ-regularised equilibrium this gap measures, DNO's Hedge step does not (its exact last-iterate gap 0.264 at t = 30). On the unregularised game the population part favours DNO, and its estimator helps it further |
# | §D.2 where DNO's and SPPO's statistical part comes from, duality gap at 2000 / 6000 queries | DNO with exact win rates on the same 200 pairs − population: +0.0005 [−0.0002, +0.0013] / −0.003 [−0.006, −0.0005]; DNO with 4× the queries − population: +0.137 [+0.110, +0.163] / +0.065 [+0.039, +0.092], 4× − 1×: −0.004 [−0.013, +0.006] / −0.002 [−0.046, +0.040]; SPPO with 4× − population: +0.075 [+0.059, +0.090] / +0.050 [+0.018, +0.087], 4× − 1×: −0.009 [−0.025, +0.005] / −0.035 [−0.117, +0.030] | DNO's statistical part is all in its win-rate estimate (its pair draws and inner loop add nothing) and is a bias: 4× the queries leave it where it was (only at 600 queries does 4× lower it, −0.006 [−0.008, −0.003]). SPPO's is mostly bias at 2000 queries too (self-comparison shrink, best/worst selection); at 6000 its point estimate falls by 40% with 4× the queries but that CI contains 0. So at matched queries INPO gains nothing measurable from lower variance: it gains from a loss whose sampled target is unbiased (linear in the one label) and from the game its population update solves |
# | §D.7 APO effect SubOpt(α=.3) − SubOpt(α=0), 2 inner steps | SGD −0.051 [−0.064, −0.040]; Adam −0.016 [−0.022, −0.011]; RMSprop −0.012 [−0.021, −0.003] | APO helps most when the inner loop is under-converged (2 SGD steps: SubOpt 0.161 → 0.110); with 20 seeds its smaller effect under RMSprop is significant too (with 8 seeds that CI contained 0) |
# | §D.7 APO effect, 20 inner steps | SGD −0.008 [−0.012, −0.004]; Adam −0.008 [−0.015, −0.002] | with many steps the same under both |
# | §D.7 APO effect under X − under SGD | 2 steps: Adam +0.035 [+0.020, +0.051], RMSprop +0.040 [+0.025, +0.056]; 20 steps: Adam −0.0003 [−0.007, +0.005] | adaptive optimisers shrink APO's benefit only when few inner steps are taken, and RMSprop (no momentum) shrinks it as much as Adam: this is inner-loop convergence, not momentum; Adam does not remove APO's effect (still significant) |
# | §D.7 APO effect under Adam − under RMSprop, 2 steps (paired) | −0.005 [−0.014, +0.005] | no significant difference between momentum (Adam) and none (RMSprop); the whole CI is smaller than half of either's shrinkage against SGD |
# | §D.3(b) online IPO on the 3-cycle, τ = .2: KL(π*‖π_30), one plain-SGD step (lr .05) vs argmin (100 Adam steps) | 0.0110 vs 0.860 (KL_0 = 0.183): −0.85 [−1.08, −0.64]; one step T − 0: −0.172 [−0.258, −0.107]; semilog slope −0.131 [−0.163, −0.108]; argmin min over seeds 0.233 | the one-step variant is a small-step mirror-descent update and converges linearly; the exact argmin (η = τ) cycles |
# | §D.3(b) matched step (docs/theory.md §C.14: η = τK/(4·lr) = 3): one SGD step of INPO (lr 0.75) vs of online IPO (lr 0.05) | identical on every seed and iteration (max |ΔKL| 5.6e-16; paired KL difference at T = 30 ±0.0000) | at matched steps one-step online IPO = one-step INPO (the same gradient up to the factor τ/η) |
# | §D.3(b) vs INPO η = 3 (exact mode; and its argmin, 100 Adam steps), KL(π*‖π_30) and semilog slope over t ∈ [10, 30] | exact 0.0042, argmin 0.0044: argmin − exact +0.0002 [−0.0007, +0.0011]; slopes: exact −0.128 (2·log ρ = −0.1282), argmin −0.135 [−0.156, −0.120], one SGD step −0.131 [−0.163, −0.108]; one step − exact +0.0068 [+0.0018, +0.0147] (KL at t = 10: 0.097 vs 0.053) | the one-step update has INPO(η = 3)'s rate; it lags early because λ_p pairs weight arm k's step by π_t(k) rather than 1/K (a preconditioned step, §C.14) |
# | §D.3(b) why the one step lags: its expected (population) update on λ_p pairs, no sampling | KL at t = 10 / 30: 0.098 / 0.0103 (sampled 0.097 / 0.0110); population − exact INPO at t = 10 +0.044 [+0.009, +0.091]; sampled − population at t = 10 −0.001 [−0.007, +0.004], at T = 30 +0.0008 [−0.0000, +0.0017] | the lag is the π_t-preconditioning of the step, not sampling noise |
# | §D.3(b) the anchor under exact minimisation: INPO η = 3 argmin − online IPO argmin (η = τ), KL(π*‖π_30) | 0.0044 vs 0.860: −0.855 [−1.085, −0.650] | the difference between the two losses is the anchor to π_t, which matters only when each iteration's loss is minimised: INPO's argmin converges, online IPO's cycles |
# | §D.4 DNO one opponent (λ_p) − exact win rates at T = 30 | last-iterate exploitability 0.164 vs 0.111: +0.053 [+0.008, +0.106]; mixture 0.062 vs 0.088: −0.025 [−0.035, −0.015]; distance to the exact update 0.587 vs 0.177: +0.411 [+0.271, +0.555]; 1 query per sample vs 0 | with 20 seeds both biases are significant (with 8 seeds neither CI excluded 0, and the earlier text read that as "no significant bias"): one-opponent labels make the last iterate more exploitable (+0.05) and the mixture slightly less (−0.025); both stay inside the asserted bounds (mixture within ±0.05, last iterate below +0.25), and each trained policy is 3.3× further from the exact DNO update |
# | §D.10 online vs offline data (random K = 6, τ = .1, random π_ref, 6000 labels each), duality gap of π_30 | online IPO (1 SGD step per fresh batch) 0.0076 [0.0048, 0.0112], online INPO (η = .5) 0.0066 [0.0045, 0.0089]; offline IPO 0.066 [0.040, 0.096], offline INPO 0.065 [0.039, 0.096]; exact gap of BR_τ(π_ref) 0.063 [0.039, 0.095] | offline lands on BR_τ(π_ref)'s gap (means within 5%: +4.1% IPO, +3.1% INPO, +1.3% IPO with 1500 labels; offline/exact per seed 0.68–1.97 for the 6000-label runs, except seed 15, where BR_τ(π_ref)'s exact gap is only 7e-4 and offline ends at 5.9× it, +0.004 in absolute terms), online ends 8.3× (IPO) and 9.6× (INPO) lower than BR_τ(π_ref)'s exact gap |
# | §D.10 KL(π*_τ‖π_30) | online IPO 0.034 [0.020, 0.049], online INPO 0.027 [0.016, 0.041]; offline IPO 0.177 [0.124, 0.237], offline INPO 0.174 [0.122, 0.235]; exact KL(π*_τ‖BR_τ(π_ref)) 0.173 [0.120, 0.236] | offline stays at BR_τ(π_ref)'s distance from π*_τ |
# | §D.10 paired online − offline at T = 30 | IPO: gap −0.058 [−0.089, −0.032], KL −0.143 [−0.206, −0.089]; INPO: gap −0.058 [−0.088, −0.034], KL −0.147 [−0.208, −0.094] | online significantly better for both losses with the same labels |
# | §D.10 offline → BR_τ(π_ref) | offline IPO max-abs log distance to BR_τ(π_ref) 0.29 [0.24, 0.35] with 6000 labels vs 0.55 [0.44, 0.66] with 1500: −0.25 [−0.34, −0.16], log-log slope −0.42 [−0.56, −0.28] (N^{-1/2}: −0.5); its gap 6000 − 1500 labels +0.002 [−0.004, +0.008]; offline INPO − offline IPO on the same datasets, KL −0.003 [−0.004, −0.002] | the offline error is a bias, not noise: more labels bring the policy closer to BR_τ(π_ref), not to π*_τ; offline INPO converges to the offline IPO solution (docs/theory.md §C.5); on the way its mean gap dips to 0.051 at t = 5 (figure): its iterates π_ref^{a_t}·BR_τ(π_ref)^{1−a_t}, a_t = (1 − τ/η)^t, are best responses to π_ref at the higher temperature τ/(1 − a_t) — an early-stopping effect, not convergence |
# | §D.10 offline keeps BR_τ(π_ref)'s gap and KL, per seed | offline / exact ratio, min over seeds: gap 0.71 (IPO), 0.68 (INPO), 0.45 (IPO, 1500 labels, seed 12); KL 0.73, 0.69, 0.49 (seed 12); mean over seeds: gap 1.33 [1.01, 1.88], 1.32 [0.99, 1.87], 1.41 [1.03, 1.99]; KL 1.31 [0.99, 1.86], 1.29 [0.97, 1.86], 1.46 [1.03, 2.15] | the 6000-label runs keep more than half of BR_τ(π_ref)'s gap and KL on every seed; with 1500 labels one seed of 20 drops below half (with 8 seeds none did), so that claim is now asserted for the 6000-label runs only, and for all offline runs on the mean ratio's CI |
#
# Runtime at CI scale: 95–110 s on the 2-core machine at load ≈ 2–4 before §D.2 gained DNO, its population
# updates and the 4× runs, more under heavier load from a concurrent test run (now 20 jitted sampled runs of 20
# seeds and two exact runs; §D.10 alone about 30–45 s).  Measured as a script at load ≈ 6–7: before 266 s wall,
# 133 s CPU; after 281 s wall, 165 s CPU (+24% CPU; §D.2 27 s → 48 s wall, §D.4 now reuses §D.2's DNO runs).

# %% [markdown]
# ## Assertions

# %%
# §D.2: matched budgets (DNO: 1 query per λ_p pair); at the full budget INPO's last iterate has a smaller duality
# gap than SPPO's and DNO's, while their mixtures are less exploitable on the unregularised game
FINAL = BUDGET * ITERATIONS
# the decomposition sampled = population + statistical pairs runs seed by seed: every arm must play the same game
# per seed (π_0 = π_ref everywhere, so the same gap at t = 0)
start = d2[d2.iteration == 0].pivot(index="seed", columns="rule", values="duality_gap")
assert (start.max(axis=1) - start.min(axis=1)).max() < 1e-12, "§D.2's sampled and population runs play other games"
assert (matched.to_numpy() == (BUDGET * matched.index.to_numpy())[:, None]).all() and matched.iloc[-1, 0] == FINAL
for other in ("sppo", "dno"):
    row = d2_at.loc[(FINAL, "duality_gap", f"inpo−{other}")]
    assert row.upper < 0, f"INPO should reach a smaller duality gap than {other} at the same number of queries"
    row = d2_at.loc[(FINAL, "exploitability_mixture", f"inpo−{other}")]
    assert row.lower > 0, f"{other}'s mixture should be less exploitable than INPO's at the same number of queries"
# variance or information: DNO's and SPPO's population updates (DNO's = SPPO's up to the η/2 normaliser)
# do not reach the τ-regularised equilibrium, so INPO's population update is ahead on the duality gap by the
# full budget; INPO's statistical part is negligible at every budget point, DNO's is not and does not shrink
# with 4× the queries (a bias of its soft label, not variance), and exact win rates on the same pairs remove it
assert d2_population_twins < 0.05, "the figure's legend says DNO's population curve ≈ SPPO's (within a line width)"
row = d2_at.loc[(FINAL, "duality_gap", "inpo−dno")]
assert row.population_upper < 0, "INPO's population update should have the smaller gap by the full budget"
for it in budget_points:
    row = d2_at.loc[(BUDGET * it, "duality_gap", "sppo−dno")]
    assert max(abs(row.population_lower), abs(row.population_upper)) < 0.005, "population SPPO ≈ population DNO"
    row = d2_at.loc[(BUDGET * it, "duality_gap", "inpo−dno")]
    assert row.statistical_a_upper < 0.005, f"INPO's statistical part should be negligible at {BUDGET * it} queries"
    exact_targets = d2_sources[("dno", "exact_win_rates", it, "duality_gap")]
    assert max(abs(exact_targets.difference_lower), abs(exact_targets.difference_upper)) < 0.01, ci_text(exact_targets)
for it in (ITERATIONS // 3, ITERATIONS):
    assert d2_at.loc[(BUDGET * it, "duality_gap", "inpo−dno")].statistical_b_lower > 0, "DNO's estimator costs it"
    assert d2_sources[("dno", "4x", it, "duality_gap")].difference_lower > 0, "DNO's statistical part is a bias"
if SCALE == "ci":  # the budget points 600 / 2000 / 6000 queries exist at this scale (T = 30); Results table
    gap_rows = d2_summary[(d2_summary.metric == "duality_gap") & (d2_summary.pair == "inpo−sppo")].set_index("queries")
    assert gap_rows.loc[600, "lower"] > 0, "SPPO should be ahead (smaller gap) at the first 600 queries"
    assert gap_rows.loc[2000, "upper"] < 0 and gap_rows.loc[6000, "upper"] < 0, "INPO ahead from 2000 queries on"
    # INPO − DNO on the gap: behind at 600 queries, ahead from 2000 on; at 2000 queries DNO's statistical part
    # is most of the difference, at 6000 the population part is; on the last iterate's exploitability of the
    # unregularised game INPO and DNO are indistinguishable at 6000 queries, and so are SPPO and DNO on the gap
    gap_rows = d2_summary[(d2_summary.metric == "duality_gap") & (d2_summary.pair == "inpo−dno")].set_index("queries")
    assert gap_rows.loc[600, "lower"] > 0 and gap_rows.loc[2000, "upper"] < 0 and gap_rows.loc[6000, "upper"] < 0
    assert gap_rows.loc[2000, "population"] / gap_rows.loc[2000, "difference"] < 0.5
    assert gap_rows.loc[6000, "population"] / gap_rows.loc[6000, "difference"] > 0.5
    for key in ((6000, "exploitability", "inpo−dno"), (6000, "duality_gap", "sppo−dno")):
        row = d2_at.loc[key]
        assert row.lower < 0 < row.upper, (key, row["sampled a−b [95% CI]"])
    for rule in ("dno", "sppo"):  # 4× the queries per iteration leave the statistical part at 2000 queries
        row = d2_sources[(rule, "4x−1x", ITERATIONS // 3, "duality_gap")]
        assert row.difference_lower < 0 < row.difference_upper, (rule, ci_text(row))
        assert d2_sources[(rule, "4x", ITERATIONS // 3, "duality_gap")].difference_lower > 0, rule
# §D.7: APO still helps under Adam with few steps (momentum does not replace it); its effect is larger
# under plain SGD with few steps than under Adam or RMSprop (no momentum), and the same with many steps
for key in (("sgd", FEW_STEPS), ("adam", FEW_STEPS), ("rmsprop", FEW_STEPS), ("sgd", MANY_STEPS), ("adam", MANY_STEPS)):
    assert apo_effect[key][2] < 0, f"APO α = 0.3 should beat α = 0 under {key}"
for optimiser in ("adam", "rmsprop"):
    assert substitution[(optimiser, FEW_STEPS)].difference_lower > 0, (
        f"{optimiser}: APO effect should be smaller than under SGD"
    )
# RMSprop (no momentum) shrinks APO's effect as much as Adam: their paired difference is not significant,
# and its whole CI is smaller than half of either optimiser's shrinkage against SGD
assert adam_vs_rmsprop.difference_lower < 0 < adam_vs_rmsprop.difference_upper, ci_text(adam_vs_rmsprop)
shrinkage = min(substitution[(optimiser, FEW_STEPS)].difference for optimiser in ("adam", "rmsprop"))
assert max(-adam_vs_rmsprop.difference_lower, adam_vs_rmsprop.difference_upper) < 0.5 * shrinkage, (
    ci_text(adam_vs_rmsprop),
    shrinkage,
)
row = substitution[("adam", MANY_STEPS)]
assert row.difference_lower < 0 < row.difference_upper, (
    "with many steps the APO effect should not depend on the optimiser"
)
# §D.3(b): one SGD step per iteration converges (a small-step mirror-descent update); the argmin cycles
assert one_step_vs_argmin.difference_upper < 0 and one_step_progress.difference_upper < 0 and one_step_fit.upper < 0
assert argmin_final.min() > 0.1, "the exact argmin (η = τ) should stay away from π* on the 3-cycle"
# §D.3(b) matched step: one SGD step of INPO (η = τK/(4·lr), lr·η/τ) is one SGD step of online IPO (lr)
assert one_step_identity < 1e-12, f"one-step INPO ≠ one-step online IPO at the matched step: {one_step_identity:.2e}"
row = d3_pairs[("inpo_one_step", "one_sgd_step", ITERATIONS)]
assert max(abs(row.difference_lower), abs(row.difference_upper)) < 1e-12, ci_text(row)
# ... with INPO(η = 3)'s linear rate (2·log ρ inside the fitted slopes' CIs), and INPO's argmin keeps the anchor
# to π_t and converges where online IPO's argmin (η = τ) cycles
for rule in ("one_sgd_step", "inpo_argmin", "inpo_exact"):
    fit = d3_fits[rule]
    assert fit.lower <= matched_rate <= fit.upper, (rule, fit.slope, fit.lower, fit.upper, matched_rate)
assert d3_pairs[("inpo_argmin", "exact_argmin", ITERATIONS)].difference_upper < 0, "INPO's argmin beats IPO's"
# the one-step update lags INPO's MD step early because λ_p pairs precondition it by π_t (no sampling needed:
# the population one-step update lags too), not because of sampling noise (sampled ≈ population)
assert d3_pairs[("one_step_population", "inpo_exact", 10)].difference_lower > 0, "preconditioned step lags at t = 10"
if SCALE == "ci":  # Results: argmin ≈ exact INPO; sampled one step ≈ its population update at t = 10;
    # the one-step run still lags INPO's MD step at T = 30
    for key in (("inpo_argmin", "inpo_exact", ITERATIONS), ("one_sgd_step", "one_step_population", 10)):
        row = d3_pairs[key]
        assert row.difference_lower < 0 < row.difference_upper, (key, ci_text(row))
    assert d3_pairs[("one_sgd_step", "inpo_exact", ITERATIONS)].difference_lower > 0
# §D.4: DNO with one opponent — both biases significant (95% CIs exclude 0, as the Results table says) and
# bounded; the trained policy further from the exact DNO update
row = dno_bias["exploitability_mixture"]
assert -0.05 < row.difference_lower and row.difference_upper < 0.05, "one-opponent DNO mixture within ±0.05 of exact"
assert row.difference_upper < 0, f"one-opponent DNO mixture should be significantly less exploitable: {ci_text(row)}"
row = dno_bias["exploitability"]
assert -0.05 < row.difference_lower and row.difference_upper < 0.25
assert row.difference_lower > 0, (
    f"one-opponent DNO last iterate should be significantly more exploitable: {ci_text(row)}"
)
assert dno_bias["distance_to_exact"].difference_lower > 0, (
    "one opponent moves the trained policy away from the exact update"
)
assert set(d4_final.groupby("rule").queries.first().to_dict().values()) == {0, BUDGET * ITERATIONS}
# §D.10: the same number of labels by the end; offline labels are all bought before the first update
sizes = {"ipo_offline": LABELS, "ipo_offline_quarter": LABELS // 4, "inpo_offline": LABELS}
for rule, size in sizes.items():
    assert (d10_queries.loc[0, rule] == 0) and (d10_queries.loc[1:, rule] == size).all(), rule
for rule in ("ipo_online", "inpo_online"):
    assert d10_queries.loc[ITERATIONS, rule] == LABELS and d10_queries.loc[1, rule] == BUDGET
# offline converges to BR_τ(π_ref): the trained offline IPO policy is close to it and closer with 4× the
# labels, at the N^{-1/2} rate; offline INPO on the same datasets lands on the same point as offline IPO
assert d10_cis[("ipo_offline", "distance_to_exact")][0] < 0.5
assert closer_with_labels.difference_upper < 0, "4× the offline labels should bring IPO closer to BR_τ(π_ref)"
assert slope_lower <= -0.5 <= slope_upper and slope_upper < 0, (slope_lower, slope_upper)
exact_gap_level = d10_cis[("exact_br_reference", "duality_gap")][0]
exact_kl_level = d10_cis[("exact_br_reference", "kl_to_nash")][0]
assert max(abs(offline_inpo_vs_ipo.difference_lower), abs(offline_inpo_vs_ipo.difference_upper)) < 0.1 * exact_kl_level
# ... and not to π*_τ: the runs with the full 200·T labels keep at least half of BR_τ(π_ref)'s exact gap
# and KL on every seed, every offline run keeps more than half of them on average over seeds (95% CI
# of the mean per-seed ratio), its mean gap is within 25% of the exact one, and 4× the labels do not lower it.
# (With 8 seeds the per-seed check also held for the quarter dataset; with 20 it does not: seed 12 keeps
# 0.45 of the gap and 0.49 of the KL with 200·T/4 labels, so for that run only the mean is asserted.)
for rule in ("ipo_offline", "inpo_offline"):
    assert gap_ratio[rule].min() > 0.5 and kl_ratio[rule].min() > 0.5, (
        rule,
        gap_ratio[rule].min(),
        kl_ratio[rule].min(),
    )
for (rule, name), (_centre, lower, _upper) in ratio_cis.items():
    assert lower > 0.5, (rule, name, lower)
for rule in offline_rules:
    assert abs(d10_cis[(rule, "duality_gap")][0] - exact_gap_level) < 0.25 * exact_gap_level, rule
    if SCALE == "ci":  # Results: means within 5% (+4.1%, +3.1%, +1.3%)
        assert abs(d10_cis[(rule, "duality_gap")][0] - exact_gap_level) < 0.05 * exact_gap_level, rule
assert (
    max(abs(more_offline_labels.difference_lower), abs(more_offline_labels.difference_upper)) < 0.25 * exact_gap_level
)
# online sampling from π_t reaches a significantly smaller gap and KL to π*_τ with the same labels,
# below half the offline limit's gap
for key, row in d10_paired.items():
    assert row.difference_upper < 0, f"online should beat offline: {key}"
for rule in ("ipo_online", "inpo_online"):
    assert d10_cis[(rule, "duality_gap")][2] < 0.5 * exact_gap_level, rule
    if SCALE == "ci":  # Results: online ends 8.3× (IPO) and 9.6× (INPO) below BR_τ(π_ref)'s exact gap
        assert d10_cis[(rule, "duality_gap")][0] < exact_gap_level / 7.5, (rule, d10_cis[(rule, "duality_gap")])
print(f"all assertions passed in {time.time() - STARTED:.1f} s")
