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
from llm_bridge.tiny import build_tiny_model
from sim import plotting

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCALE = os.environ.get("PREFSIM_NOTEBOOK_SCALE", "ci")
assert SCALE in ("ci", "full"), SCALE
OUT = pathlib.Path(os.environ.get("PREFSIM_NOTEBOOK_OUT", "results/notebooks")) / "08_simulator_predicts_lm"
OUT.mkdir(parents=True, exist_ok=True)
PROMPTS = 8 if SCALE == "ci" else 10
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
# form).  K = 4 candidates, 8 pairs per prompt per iteration (the data budget of the LM and of sampled
# mode); AdamW at 3e-3, batches of 8 pairs.

# %%
model_dir = build_tiny_model(OUT / "tiny_model", hidden_size=HIDDEN)
TRAIN = [
    "the movie was",
    "i love this",
    "tell me a story",
    "what a nice",
    "the weather is",
    "she said it",
    "write a review",
    "this is the",
    "the actors were",
    "i hate this",
]
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
            "training": {"learning_rate": 3e-3, "epochs": epochs, "batch_size": 8, "micro_batch_size": 8},
            "rule": RULES,
            "run": {"threads": 1},
            "prediction": {"prompts": PROMPTS, "candidates": 4, "pairs_per_prompt": 8},
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
#   takes a few AdamW steps on 8 pairs per prompt.  With one pass (`light`) it moves less than predicted
#   at the first iterations; four passes bring it closer (the gain column of §1).
# * **Function approximation and generalisation across responses**: the LM's weights are shared by all
#   responses and prompts, so a step on one pair also moves the others and moves mass to and from
#   responses outside the candidate set (`lm_mass_change`: log Σ_y π_t(y|x) over the candidates minus
#   its value under π_ref — DPO pushes the candidates' total mass up by several nats).  The pairwise losses
#   cannot see the normaliser of the restriction, so this mass flow is invisible to the simulator.
# * **Finite data**: sampled mode shares the budget but not the draws, and its inner loop minimises the
#   empirical loss; its distance to exact mode is the statistical part of the gap.

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

# %% [markdown]
# ## Results
#
# Settings of the last run: CI scale (tiny Llama, hidden 32, 2 layers; 8 prompts × 4 candidates, 4
# new tokens; 3 iterations; 8 pairs per prompt per iteration; AdamW 3e-3, batches of 8, 1 or 4 passes;
# sampled mode: tabular, Adam 0.05, 200 full-batch steps).  Recorded numbers (CI scale, 2026-12-06):
#
# * at t = 3 (full training): TV(LM, exact) on the candidates is INPO 0.17, online IPO 0.13, iterative
#   DPO 0.01, APO 0.11, against TV(LM, π_ref) = 0.39, 0.24, 0.76, 0.71; the gain over "no move" has its
#   CI above 0 for every rule at every iteration t = 1, 2, 3 (asserted; smallest lower end 0.047, online
#   IPO at t = 2; INPO at t = 3: 0.22 [0.10, …]);
# * win rate vs π_ref (LM / exact / sampled) at t = 3: INPO 0.677 / 0.697 / 0.663, online IPO 0.606 /
#   0.596 / 0.598, iterative DPO 0.787 / 0.787 / 0.778, APO 0.768 / 0.787 / 0.778;
# * ordering: all five pairs of rules that exact mode separates have the LM's sign (INPO − online IPO
#   +0.071 [0.029, 0.115] vs exact +0.101); iterative DPO vs APO, equal in exact mode (both reach the
#   best candidate), differ by +0.019 [0.001, 0.049] in the LM: a small difference whose interval only
#   just excludes 0 over 8 prompts, where a percentile bootstrap covers about 89% rather than 95%
#   (docs/theory.md §D.1), so no firm difference (asserted: below 0.05, not its sign);
# * one pass instead of four: TV(LM, exact) at t = 1 is 0.13 vs 0.12 (INPO) and 0.43 vs 0.28 (DPO): DPO's
#   exact step with β = 0.1 is a big jump that a few steps do not reach;
# * DPO raises the candidates' total log-mass by 3.6 nats by t = 3 (INPO 0.14); 30–40 s for the notebook.
# How close it gets, honestly: on a tiny model whose responses VADER separates sharply, exact mode
# predicts the direction and size of the first iterations well (the gain over "no move" is positive with
# CIs above 0 for every rule, and the win rates agree within a few points), and the ordering of the rules
# that the simulator predicts is the LM's where the simulator separates them.  The LM's policies differ from
# exact mode's by a TV of up to 0.3 on average over prompts (0.01–0.28 over rules and iterations t ≥ 1; on
# single prompts up to 0.80): the LM does not minimise the loss exactly, and its shared weights move the
# candidates together and change their total mass (how much of the gap sampled mode's finite data would
# explain is not measured here).  None of this has been measured on a pretrained model here (the CPU budget
# of CI); `prefsim llm examples/llm_demo.toml --predict` runs the same study on SmolLM2-135M.

# %%
last = summary[summary["iteration"] == ITERATIONS].set_index("rule")
for label in labels:
    # the LM moved, and exact mode predicts it better than the null guess "the LM stays at π_ref"
    assert last.loc[label, "tv_lm_reference"] > 0.15, label
    # ... with the gain's CI above 0 at every iteration t = 1 … T (the Results say so)
    gains = summary[(summary["rule"] == label) & (summary["iteration"] >= 1)].set_index("iteration")["gain_exact_low"]
    assert len(gains) == ITERATIONS and (gains > 0).all(), (label, gains.to_dict())
    # the LM's win rate against π_ref is above ½ and within 0.06 of exact mode's
    assert last.loc[label, "win_lm_low"] > 0.5, label
    assert abs(last.loc[label, "win_lm"] - last.loc[label, "win_exact"]) < 0.06, label
# the ordering: wherever exact mode separates two rules (by > 0.01, CI excluding 0), the LM's sign agrees
apart = (ordering["exact_low"] > 0) | (ordering["exact_high"] < 0)
separated = ordering[apart & (ordering["exact_difference"].abs() > 0.01)]
assert len(separated) >= 1 and separated["agrees_exact"].all(), separated
if SCALE == "ci":  # Results: all five pairs exact mode separates agree; iterative DPO − APO +0.019 [0.001, 0.049]
    assert len(separated) == 5, separated
    # equal in exact mode; in the LM a small difference (its interval's sign is not a firm finding at 8 prompts)
    dpo_vs_apo = ordering.set_index(["rule_a", "rule_b"]).loc[("iterative_dpo", "apo")]
    assert abs(dpo_vs_apo["exact_difference"]) < 0.01 and abs(dpo_vs_apo["lm_difference"]) < 0.05, dpo_vs_apo
    assert dpo_vs_apo["lm_high"] < 0.06, dpo_vs_apo
    # the LM's distance from exact mode, on average over prompts: up to 0.3 (0.01–0.28)
    assert summary[moved].tv_lm_exact.max() < 0.3, summary[moved].tv_lm_exact.max()
# more optimisation brings the first iteration closer to exact mode (mean over rules)
assert full_first["tv_lm_exact"].mean() < light_first["tv_lm_exact"].mean()
# DPO-type rules raise the candidates' total mass (generalisation beyond the game, invisible to the simulator)
assert mass["iterative_dpo"] > 0.5
print(f"ran in {time.time() - STARTED:.0f} s")
print("all assertions passed")
