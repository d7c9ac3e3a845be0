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
# # 08 — Does the simulator predict the language model?
#
# prefsim's rules run in three engines from one definition: exact (population updates), sampled (a
# tabular policy trained on N labelled pairs) and the LLM bridge (a causal LM).  The first two are
# cheap; the question here is whether they **predict** what the third does.  A finite game is cut out
# of the LM (`llm_bridge.prediction`, also `prefsim llm SPEC --out DIR --predict`):
#
# * per prompt x, K distinct responses sampled from π_ref (the *candidates*); the oracle's
#   P(y_i ≻ y_j | x) among them is a K × K game, π_ref restricted to them (renormalised sequence
#   probabilities) its reference;
# * exact mode runs the rule on that game with the rule's parameters; sampled mode trains a tabular
#   policy over the candidates on the same number of pairs per iteration as the LM;
# * the LM is trained with the same rule and data budget, its pairs drawn among the candidates from π_t
#   restricted; after each iteration π_t is scored on the candidates and restricted again.
#
# Compared per iteration, with 95% bootstrap CIs over prompts (`sim.stats.bootstrap_ci`): the TV
# distance between the LM's restricted π_t and each prediction; the **gain** TV(LM, π_ref) − TV(LM,
# exact), i.e. how much better exact mode predicts the LM than the null guess "the LM stays at π_ref";
# the win rate π_tᵀPπ_ref; and the ordering of the rules.  Two LM training budgets show where the gap
# comes from: `light` (one pass over the pairs) and `full` (four passes; closer to minimising the loss,
# which is what exact mode assumes).
#
# The model is a tiny random Llama built locally (`llm_bridge.tiny`; nothing is downloaded) with a
# word-level tokenizer over sentiment-laden sentences, so the offline VADER oracle separates its
# responses.  This is a CI-scale check of the machinery and of the direction of the effect; it says
# nothing yet about a pretrained 135M model (see the Results cell).

# %%
import os
import pathlib
import time

import matplotlib
import numpy as np
import pandas as pd
import torch

from llm_bridge.loop import open_session
from llm_bridge.prediction import run_prediction
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import PROMPTS as TINY_PROMPTS
from llm_bridge.tiny import build_tiny_model
from sim import plotting

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "08_simulator_predicts_lm"
OUT.mkdir(parents=True, exist_ok=True)
PROMPTS = 16  # every prompt of TRAIN, at both scales
ITERATIONS = 3 if SCALE == "ci" else 6
HIDDEN = 32 if SCALE == "ci" else 64
STARTED = time.time()
show = plotting.show_in_notebook
torch.manual_seed(0)
print(f"scale={SCALE} prompts={PROMPTS} iterations={ITERATIONS} hidden={HIDDEN}")

# %% [markdown]
# ## 1. The study: four rules, two LM training budgets
#
# Rules (parameters as in any prefsim spec): INPO (η = 0.5, τ = 0.1, pairs λ_p), online IPO (τ = 0.5,
# λ_p), iterative DPO (β = 0.1, anchor π_t, best-vs-worst of 2) and APO on DPO (α = 0.3, parameter
# form).  16 prompts, K = 4 candidates, 32 pairs per prompt per iteration (the data budget of the LM and
# of sampled mode); AdamW at 3e-3, batches of 64 pairs (8 optimiser steps per pass).
#
# The size is chosen so that the claims of the Results hold for every spec seed checked (0–7), not only
# for this notebook's seed 0: at 8 prompts × 8 pairs (the former size) the gain's CI for INPO and online
# IPO included 0 at seed 0, and the LM's ordering of INPO against APO differed from exact mode's at two of
# seeds 0–4.

# %%
model_dir = build_tiny_model(OUT / "tiny_model", hidden_size=HIDDEN)
TRAIN = list(TINY_PROMPTS)  # llm_bridge.tiny.PROMPTS: 16 prompts, shared with tests/test_bridge_prediction.py
RULES = [
    {"label": "inpo", "name": "inpo", "eta": 0.5, "tau": 0.1},
    {"label": "online_ipo", "name": "online_ipo", "tau": 0.5},
    {"label": "iterative_dpo", "name": "dpo", "beta": 0.1, "pairs": "best_worst_by_win_rate", "samples": 2},
    {
        "label": "apo",
        "name": "apo",
        "base": "dpo",
        "beta": 0.1,
        "alpha": 0.3,
        "pairs": "best_worst_by_win_rate",
        "samples": 2,
    },
]


def study(epochs: int):
    spec = parse_spec(
        {
            "iterations": ITERATIONS,
            "seed": 0,
            "model": {"path": str(model_dir), "device": "cpu"},
            "prompts": {"train": TRAIN[:PROMPTS], "heldout": ["x"]},
            "generation": {"max_new_tokens": 4, "batch_size": 64},
            "oracle": {"kind": "vader", "scale": 0.25},
            "training": {"learning_rate": 3e-3, "epochs": epochs, "batch_size": 64, "micro_batch_size": 64},
            "rule": RULES,
            "run": {"threads": 1},
            "prediction": {"prompts": PROMPTS, "candidates": 4, "pairs_per_prompt": 32},
        }
    )
    session = open_session(spec, OUT / f"epochs_{epochs}", progress=False)
    return run_prediction(spec, session, OUT / f"epochs_{epochs}", progress=False)


results = {"light": study(1), "full": study(4)}
game = results["full"].game
print("candidates of the first prompt:", game.texts[0])
print("its game P:\n", np.round(game.preference[0], 2))
print("π_ref restricted:", np.round(np.exp(game.log_reference[0]), 3))
columns = ["rule", "iteration", "tv_lm_exact", "tv_lm_sampled", "tv_lm_reference", "gain_exact"]
columns += ["gain_exact_low", "win_lm", "win_exact", "win_sampled", "lm_mass_change"]
for name, result in results.items():
    print(f"\n{name} LM training:")
    print(result.summary[columns].round(3).to_string(index=False))

# %% [markdown]
# ## 2. Win rate against π_ref and the TV gap, per iteration (bands: 95% CIs over prompts)

# %%
fig_path = OUT / "prediction_per_iteration.png"
summary = results["full"].summary
labels = [r["label"] for r in RULES]
figure, axes = plt.subplots(2, len(labels), figsize=(3.2 * len(labels), 6), layout="constrained", sharey="row")
for column, label in enumerate(labels):
    rows = summary[summary["rule"] == label]
    t = rows["iteration"].to_numpy()
    for engine, colour in (("lm", "C0"), ("exact", "C1"), ("sampled", "C2")):
        top = axes[0, column]
        top.plot(t, rows[f"win_{engine}"], marker="o", color=colour, label=engine)
        top.fill_between(t, rows[f"win_{engine}_low"], rows[f"win_{engine}_high"], color=colour, alpha=0.2)
    light = results["light"].summary
    light = light[light["rule"] == label]
    axes[0, column].plot(t, light["win_lm"], marker="x", linestyle="--", color="C0", label="lm (light)")
    axes[0, column].set_title(label, fontsize=10)
    bottom = axes[1, column]
    for metric, colour, name in (
        ("tv_lm_exact", "C1", "TV(LM, exact)"),
        ("tv_lm_sampled", "C2", "TV(LM, sampled)"),
        ("tv_lm_reference", "grey", "TV(LM, π_ref)"),
    ):
        bottom.plot(t, rows[metric], marker="o", color=colour, label=name)
        bottom.fill_between(t, rows[f"{metric}_low"], rows[f"{metric}_high"], color=colour, alpha=0.2)
    bottom.set_xlabel("iteration t")
axes[0, 0].set_ylabel("win rate vs π_ref on the candidates")
axes[1, 0].set_ylabel("TV distance (candidates)")
axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
axes[1, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
figure.savefig(fig_path, dpi=110)
plt.close(figure)
show(fig_path)

# %% [markdown]
# ## 3. Ordering of the rules at the last iteration
#
# Per pair of rules, the difference of win rates under each engine (paired over prompts) and whether the
# LM's sign agrees with the simulator's.

# %%
ordering = results["full"].ordering
print(ordering.round(3).to_string(index=False))
final = summary[summary["iteration"] == ITERATIONS].set_index("rule")
rank = pd.DataFrame({engine: final[f"win_{engine}"].rank(ascending=False) for engine in ("lm", "exact", "sampled")})
print("\nrank by win rate (1 = best):\n", rank.to_string())

# %% [markdown]
# ## 4. Why the prediction is not exact
#
# * **Optimisation**: exact mode assumes each iteration minimises the loss over the population; the LM
#   takes 8 AdamW steps per pass over 32 pairs per prompt.  INPO's and online IPO's exact steps are
#   small (log π moves by at most 1/η = 2 nats per iteration), and the LM gets close to them.  DPO's exact
#   step with β = 0.1 is log π_{t+1} = log π_t + r/β: near deterministic, a jump to the best candidate that
#   a few steps reach only part of, so the LM's DPO and APO fall short of exact mode.  With one pass
#   (`light`) it moves less than predicted at the first iteration; four passes bring it closer (the TV at
#   t = 1 below).
# * **Function approximation and generalisation across responses**: the LM's weights are shared by all
#   responses and prompts, so a step on one pair also moves the others and moves mass to and from
#   responses outside the candidate set (`lm_mass_change`: log Σ_y π_t(y|x) over the candidates minus
#   its value under π_ref — iterative DPO pushes the candidates' total mass up by a few nats).  The pairwise
#   losses cannot see the normaliser of the restriction, so this mass flow is invisible to the simulator.
# * **Finite data**: sampled mode shares the budget but not the draws, and its inner loop minimises the
#   empirical loss; its distance to exact mode is the statistical part of the gap (for DPO it falls short
#   of exact mode too, below).

# %%
mass = summary[summary["iteration"] == ITERATIONS].set_index("rule")["lm_mass_change"]
moved = summary["iteration"] >= 1
per_prompt = results["full"].per_prompt
print(
    f"TV(LM, exact), t ≥ 1: mean over prompts {summary[moved].tv_lm_exact.min():.3f}–"
    f"{summary[moved].tv_lm_exact.max():.3f}; largest on one prompt "
    f"{per_prompt[per_prompt['iteration'] >= 1].tv_lm_exact.max():.2f}"
)
print("log-mass change on the candidates at the last iteration:", mass.round(2).to_dict())
light_first = results["light"].summary.query("iteration == 1").set_index("rule")
full_first = summary.query("iteration == 1").set_index("rule")
print("TV(LM, exact) at t = 1, light vs full:")
print(pd.DataFrame({"light": light_first["tv_lm_exact"], "full": full_first["tv_lm_exact"]}).round(3).to_string())
print("lower end of the gain's 95% CI per rule and iteration (full training):")
print(summary[summary["iteration"] >= 1].pivot(index="rule", columns="iteration", values="gain_exact_low").round(3))
final_win = summary[summary["iteration"] == ITERATIONS].set_index("rule")
print("win rate at the last iteration, LM − exact and LM − sampled:")
print(
    pd.DataFrame(
        {
            "lm - exact": final_win["win_lm"] - final_win["win_exact"],
            "lm - sampled": final_win["win_lm"] - final_win["win_sampled"],
            "sampled - exact": final_win["win_sampled"] - final_win["win_exact"],
        }
    )
    .round(3)
    .to_string()
)

# %% [markdown]
# ## Results
#
# Settings of the last run: CI scale (tiny Llama, hidden 32, 2 layers; 16 prompts × 4 candidates, 4
# new tokens; 3 iterations; 32 pairs per prompt per iteration; AdamW 3e-3, batches of 64, 1 or 4 passes;
# sampled mode: tabular, Adam 0.05, 200 full-batch steps; spec seed 0).  Recorded numbers (CI scale,
# 2026-12-07), for seed 0 and, in brackets «…», the range over spec seeds 0–7 (8 seeds checked, the same
# study with another seed each; every assertion below holds for all 8):
#
# * INPO and online IPO: exact mode predicts the LM better than "the LM stays at π_ref" at every iteration
#   t = 1, 2, 3 (asserted: the gain's CI above 0; smallest lower end 0.042, online IPO at t = 3 «each rule's
#   smallest: INPO 0.035–0.103, online IPO 0.035–0.078»); at t = 3 the gain is INPO 0.173 [0.087, 0.255] «0.17–0.30»,
#   online IPO 0.084 [0.042, 0.126] «0.07–0.13»; the LM's win rate against π_ref is within 0.01 of exact
#   mode's «−0.008 to +0.005; asserted: within 0.03» (INPO 0.607 vs 0.616, online IPO 0.554 vs 0.555), and
#   TV(LM, exact) at t = 3 is 0.084 and 0.044 against TV(LM, π_ref) = 0.256 and 0.127 (TV(LM, exact) at any
#   t ≥ 1 at most 0.084 «0.058–0.084; asserted: below 0.15»);
# * iterative DPO and APO: the LM moves in the predicted direction (win rate against π_ref 0.712 [0.650, …]
#   and 0.666 [0.591, …], lower ends «0.525–0.702» and «0.553–0.687»; asserted: above ½ for every rule) but
#   falls short of exact mode's 0.777 by 0.065 and 0.112 «DPO 0.011–0.177, APO 0.033–0.162 short; asserted:
#   not above exact mode's by more than 0.02».  Sampled mode, on the same 32 pairs per prompt, falls short
#   too (0.716 «0.02–0.14 short»), and the LM's win rate is within −0.051…−0.004 «−0.13…+0.05» of sampled
#   mode's: part of the shortfall is finite data, not only the LM.  The gain over "no move" is not a finding
#   for them: its lower end is −0.22 to +0.07 for DPO (t = 1–3) «−0.43 to +0.36 over both rules; below 0
#   somewhere in 4 of 8 seeds»; TV(LM, exact) at t = 3 is 0.32 and 0.43 «largest over t ≥ 1: 0.16–0.57»;
# * ordering at t = 3: INPO above online IPO in the LM as in exact mode, +0.053 [0.032, 0.075] vs exact
#   +0.060 «LM +0.052 to +0.087, lower end ≥ 0.029; asserted: LM interval above 0»; online IPO below
#   iterative DPO and below APO in the LM as in exact mode (−0.158 and −0.112; sign agrees in 8 of 8 seeds,
#   asserted).  INPO below DPO and APO, which exact mode separates clearly (−0.162), is the LM's ordering
#   at seed 0 (−0.105, −0.059) but not at seed 2 (+0.038, +0.024): not asserted.  Iterative DPO and APO,
#   equal in exact mode (both reach the best candidate), differ in the LM by +0.046 [−0.045, 0.128]
#   «−0.031 to +0.061; the interval excludes 0 at two seeds, with opposite signs»: no difference to report
#   (asserted: below 0.1 in size);
# * one pass instead of four: TV(LM, exact) at t = 1, mean over rules, is 0.255 vs 0.220 «four passes closer
#   by 0.036–0.117, asserted» (INPO 0.094 vs 0.051, DPO 0.425 vs 0.397);
# * iterative DPO raises the candidates' total log-mass by 3.6 nats by t = 3 «1.45–3.6; asserted: above
#   0.5»; APO's change has no consistent sign (+2.95 «−3.8 to +3.0»); INPO and online IPO within ±0.3
#   (0.01, 0.02); about 30 s for the notebook.
#
# How close it gets, honestly: on a tiny model whose responses VADER separates sharply, exact mode predicts
# INPO's and online IPO's LM closely (TV below 0.09, win rates within 0.01, positive gain over "no move" at
# every iteration), and the ordering of those two.  For iterative DPO and APO it predicts the direction
# but not the size: exact DPO with β = 0.1 is a near-deterministic jump that 8–32 AdamW steps on sampled
# pairs reach only part of (as does sampled mode's finite data), so whether the LM's DPO-type rules end
# above INPO, as exact mode says, depends on the samples.  On single prompts TV(LM, exact) reaches 1 (a
# DPO-type LM concentrated on another candidate than exact mode's); its shared weights also change the
# candidates' total mass.  None of this has been measured on a pretrained model here (the CPU budget of
# CI); `prefsim llm examples/llm_demo.toml --predict` runs the same study on SmolLM2-135M.
#
# **At full scale** (6 iterations, hidden 64; spec seed 0 only, 2026-12-07, 43 s) the INPO and online IPO
# claims hold as above (gain CIs above 0 at every t, lower ends 0.025–0.121; win rates within 0.011 of exact
# mode's; TV(LM, exact) at most 0.088), and so do the DPO-type shortfall, four passes beating one at t = 1
# and the ordering INPO > online IPO < DPO.  The DPO-type claims of the CI scale do not: with four passes
# per iteration APO's LM oscillates and leaves the candidates (win rate against π_ref 0.662, 0.522, 0.659,
# 0.602, 0.619, 0.500 at t = 1 … 6; the candidates' log-mass −15.3 nats at t = 6) and iterative DPO's loses
# mass from t = 3 on (−6.4 nats at t = 6), so the LM ranks APO below INPO (+0.137 [0.048, 0.231]) and
# below DPO (+0.168 [0.063, 0.279]) where exact mode ranks APO above INPO and equal to DPO.  APO's weight
# extrapolation on top of an over-trained inner loop is a dynamics the tabular simulator does not have;
# with one pass per iteration its LM stays near DPO's (0.677 vs 0.688 at t = 6).  Asserted at full scale,
# instead of the CI-scale claims they replace.

# %%
last = summary[summary["iteration"] == ITERATIONS].set_index("rule")
ordered = ordering.set_index(["rule_a", "rule_b"])
for label in labels if SCALE == "ci" else ("inpo", "online_ipo", "iterative_dpo"):
    # the LM moved in the predicted direction: its win rate's interval against π_ref lies above ½
    assert last.loc[label, "win_lm_low"] > 0.5, label
for label in ("inpo", "online_ipo"):
    # exact mode predicts the LM better than "the LM stays at π_ref": gain CI above 0 at every t = 1 … T
    gains = summary[(summary["rule"] == label) & (summary["iteration"] >= 1)].set_index("iteration")["gain_exact_low"]
    assert len(gains) == ITERATIONS and (gains > 0).all(), (label, gains.to_dict())
    # ... closely: win rate within 0.03 of exact mode's at T, TV(LM, exact) below 0.15 at every t ≥ 1
    assert abs(last.loc[label, "win_lm"] - last.loc[label, "win_exact"]) < 0.03, label
    assert summary[moved & (summary["rule"] == label)].tv_lm_exact.max() < 0.15, label
for label in ("iterative_dpo", "apo"):
    # DPO-type rules fall short of exact mode's jump (or reach it): never above it by more than 0.02
    assert last.loc[label, "win_lm"] - last.loc[label, "win_exact"] < 0.02, label
# the ordering: INPO above online IPO (the LM's interval above 0), online IPO below DPO and APO (the sign)
assert ordered.loc[("inpo", "online_ipo"), "lm_low"] > 0, ordered.loc[("inpo", "online_ipo")]
assert ordered.loc[("inpo", "online_ipo"), "agrees_exact"]
for other in ("iterative_dpo", "apo") if SCALE == "ci" else ("iterative_dpo",):
    assert ordered.loc[("online_ipo", other), "exact_high"] < 0 and ordered.loc[("online_ipo", other), "agrees_exact"]
dpo_vs_apo = ordered.loc[("iterative_dpo", "apo")]
assert abs(dpo_vs_apo["exact_difference"]) < 0.01, dpo_vs_apo  # equal in exact mode (both reach the best candidate)
if SCALE == "ci":
    # iterative DPO and APO: no difference of 0.1 or more in the LM
    assert abs(dpo_vs_apo["lm_difference"]) < 0.1, dpo_vs_apo
    # iterative DPO raises the candidates' total mass (generalisation beyond the game, invisible to the simulator)
    assert mass["iterative_dpo"] > 0.5
else:
    # full scale (Results): APO's LM falls back to ½ against π_ref and leaves the candidates, DPO's loses mass,
    # and the LM ranks APO below INPO and below DPO, against exact mode's ordering
    assert last.loc["apo", "win_lm"] < 0.55 and mass["apo"] < -10 and mass["iterative_dpo"] < -3, (last.win_lm, mass)
    assert ordered.loc[("inpo", "apo"), "lm_low"] > 0 and not ordered.loc[("inpo", "apo"), "agrees_exact"]
    assert dpo_vs_apo["lm_low"] > 0, dpo_vs_apo
# more optimisation brings the first iteration closer to exact mode (mean over rules)
assert full_first["tv_lm_exact"].mean() < light_first["tv_lm_exact"].mean()
print(f"ran in {time.time() - STARTED:.0f} s")
print("all assertions passed")
