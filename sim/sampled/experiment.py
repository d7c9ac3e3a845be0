"""``[run] mode = "sampled"``: spec checks, problems per seed, and the results table of one rule.

``sim.experiment.run`` dispatches here.  The table has the exact-mode columns (``rule, seed, iteration`` +
:data:`sim.metrics.METRIC_COLUMNS`, context-weighted for contextual problems) plus

* ``queries`` — cumulative oracle queries used by the iterations done so far (t × N × queries per
  pair, counted by the scheme in :mod:`bandits.oracles`; 0 for ``exact_win_rates``).  With
  ``data = "offline"`` the labels are bought once, before the first update: 0 at t = 0 and
  ``offline_pairs`` (one query per pair) for every t ≥ 1 (:mod:`sim.sampled.offline`);
* ``distance_to_exact`` — max_{x,y} |log π̂_t(y|x) − log π̂^{exact}_t(y|x)| for the update that
  produced iteration t (:mod:`sim.sampled.engine`; NaN at t = 0);
* ``loss`` — the rule's loss on that iteration's pairs after the inner loop (NaN at t = 0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bandits.continuous import ring_task
from bandits.errors import PrefsimError
from bandits.games import build_game
from bandits.linear import random_linear_bandit
from bandits.oracles import SCHEMES, make_pairs
from sim.game import game_from_instance
from sim.nash import target_policy
from sim.sampled.apo import check_form
from sim.sampled.engine import check_settings, simulate_sampled_grid
from sim.sampled.losses import base_rule, check_sampled_rule
from sim.sampled.offline import check_offline_rule, dataset_queries
from sim.sampled.problem import Problem, problem_from_arrays, problem_from_game

PROBLEMS = ("game", "linear_bradley_terry", "linear_preference_game", "ring")
FEATURES = ("one_hot", "random")
SAMPLED_COLUMNS = ("queries", "distance_to_exact", "loss")


def validate_sampled_spec(run, game, rules) -> None:
    """Check the ``[run]`` sampled keys against the game and rules (raises :class:`PrefsimError`)."""
    check_settings(run)
    if run.pair_scheme not in SCHEMES:
        raise PrefsimError(f"run.pair_scheme: unknown scheme {run.pair_scheme!r}; choose one of {', '.join(SCHEMES)}.")
    if run.problem not in PROBLEMS:
        raise PrefsimError(f"run.problem: unknown problem {run.problem!r}; choose one of {', '.join(PROBLEMS)}.")
    if run.features not in FEATURES:
        raise PrefsimError(f"run.features: expected one of {', '.join(FEATURES)}, got {run.features!r}.")
    for name in ("feature_dim", "contexts", "ring_grid", "candidates"):
        value = getattr(run, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PrefsimError(f"run.{name}: expected an integer ≥ 1, got {value!r}.")
    if not isinstance(run.self_comparison, bool):
        raise PrefsimError(f"run.self_comparison: expected true or false, got {run.self_comparison!r}.")
    if run.contexts > 1 and run.problem not in ("linear_bradley_terry", "linear_preference_game"):
        raise PrefsimError(
            "run.contexts: several contexts need a linear problem (linear_bradley_terry or linear_preference_game)."
        )
    if run.problem.startswith("linear") and game.arms is None:
        raise PrefsimError(f"game.arms: run.problem = {run.problem!r} needs the number of arms K.")
    if run.problem == "game" and run.policy != "tabular" and game.initial != "reference":
        raise PrefsimError(f'run.policy: a {run.policy} policy starts at π_ref; set game.initial = "reference".')
    has_rewards = (run.problem == "game" and game.kind == "bradley_terry") or run.problem in (
        "linear_bradley_terry",
        "ring",
    )
    if run.pair_scheme == "best_worst_of_k" and not has_rewards:
        raise PrefsimError("run.pair_scheme: best_worst_of_k ranks by reward and needs a Bradley–Terry problem.")
    for index, rule in enumerate(rules):
        where = f"rule #{index + 1} ({rule.label})"
        check_sampled_rule(rule.name, rule.parameters, run.pair_scheme, where)
        if run.data == "offline":
            check_offline_rule(rule.name, where)
        base, _ = base_rule(rule.name, rule.parameters)
        if rule.name == "apo":
            try:
                check_form(run.apo_form, base)
            except PrefsimError as exc:
                raise PrefsimError(f"{where}: {exc}") from None
        if base == "dpo" and not has_rewards:
            raise PrefsimError(
                f"{where}: the DPO step's exact counterpart needs a Bradley–Terry problem (game.kind = "
                f'"bradley_terry", or run.problem = linear_bradley_terry / ring).'
            )


def problem_for_seed(spec, seed: int, dtype) -> Problem:
    """The sampled problem of one seed."""
    run = spec.run
    tau = float(spec.game.tau)
    if run.problem == "ring":
        task = ring_task(run.ring_grid)
        return problem_from_arrays(
            task["preference"], task["features"], task["context_probs"], task["rewards"], tau=tau, dtype=dtype
        )
    if run.problem in ("linear_bradley_terry", "linear_preference_game"):
        kind = "bradley_terry" if run.problem == "linear_bradley_terry" else "preference_game"
        bandit = random_linear_bandit(spec.game.arms, run.feature_dim, run.contexts, kind, seed)
        return problem_from_arrays(
            bandit["preference"], bandit["features"], bandit["context_probs"], bandit["rewards"], tau=tau, dtype=dtype
        )
    game = game_from_instance(build_game(spec.game, seed), jnp.float64)
    target, _ = target_policy(game)
    arms = game.preference.shape[0]
    if run.policy == "tabular":
        features = np.zeros((arms, 0))
    elif run.features == "one_hot":
        features = np.eye(arms)
    else:
        rng = np.random.default_rng([int(seed), 21])
        features = rng.standard_normal((arms, run.feature_dim))
        features /= np.linalg.norm(features, axis=1, keepdims=True)
    return problem_from_game(game, target, features, dtype)


class SampledInputs(NamedTuple):
    """Problems stacked over seeds, their vmap axes, and one PRNG key per seed."""

    problems: Problem
    axes: Problem
    keys: jax.Array


def build_sampled_inputs(spec, dtype=jnp.float64) -> SampledInputs:
    """Problems for every seed of ``spec`` (leaves shared when equal across seeds) and keys."""
    per_seed = [problem_for_seed(spec, seed, dtype) for seed in spec.seeds]
    first = per_seed[0]
    leaves, axes = [], []
    for index, leaf in enumerate(first):
        same = all(np.array_equal(np.asarray(p[index]), np.asarray(leaf), equal_nan=True) for p in per_seed[1:])
        axes.append(None if same else 0)
        leaves.append(leaf if same else jnp.stack([p[index] for p in per_seed]))
    keys = jnp.stack([jax.random.PRNGKey(int(seed)) for seed in spec.seeds])
    return SampledInputs(Problem(*leaves), Problem(*axes), keys)


def queries_per_iteration(settings, problem: Problem) -> int:
    """Oracle queries one iteration makes, tallied by tracing the scheme (no computation)."""
    box = {}

    def trace(key, log_policy, preference, rewards, context_probs):
        batch, count = make_pairs(
            settings.pair_scheme,
            key,
            log_policy,
            preference,
            rewards,
            context_probs,
            settings.pairs_per_iteration,
            settings.candidates,
            settings.self_comparison,
        )
        box["queries"] = count
        return batch

    def unbatched(leaf, rank):
        return leaf[0] if leaf.ndim > rank else leaf

    preference = unbatched(problem.preference, 3)
    log_policy = unbatched(problem.log_initial, 2)
    rewards = unbatched(problem.rewards, 2)
    context_probs = unbatched(problem.context_probs, 1)
    jax.eval_shape(trace, jax.random.PRNGKey(0), log_policy, preference, rewards, context_probs)
    return int(box["queries"])


def run_sampled_rule(rule, spec, inputs: SampledInputs, record) -> pd.DataFrame:
    """All grid points × seeds of one ``[[rule]]`` table in sampled mode, in one jitted call."""
    labels = rule.grid_labels()
    fixed = rule.fixed()
    grid = {name: np.array([point[name] for _, point in labels], dtype=np.float64) for name in rule.swept()}
    metrics, first_nonfinite = simulate_sampled_grid(
        rule.name, fixed, grid, spec.run, inputs.problems, inputs.axes, inputs.keys, record
    )
    bad = np.argwhere(first_nonfinite >= 0)
    if bad.size:
        grid_index, seed_index = bad[0]
        raise PrefsimError(
            f"rule {labels[grid_index][0]!r} diverged in sampled mode at seed {spec.seeds[seed_index]}, iteration "
            f"{int(first_nonfinite[grid_index, seed_index])}: the inner loss or the policy parameters became "
            f"non-finite (NaN or inf), or the loss grew more than 10^4-fold during the inner loop, with optimizer {spec.run.optimizer!r} and learning_rate {spec.run.learning_rate:g}; "
            f"lower run.learning_rate (or use fewer inner_steps)."
        )
    from sim.experiment import results_table  # sim.experiment imports this module lazily

    frame = results_table(labels, spec.seeds, record, metrics)
    # regret sums suboptimality: where that does not apply (a preference game) neither does regret,
    # also at t = 0 where the engine's running sum starts at 0.0 (as in exact mode: the column is empty)
    frame.loc[frame["suboptimality"].isna(), "regret"] = np.nan
    iterations = frame["iteration"].to_numpy(np.int64)
    if spec.run.data == "offline":
        frame["queries"] = np.where(iterations >= 1, dataset_queries(spec.run), 0).astype(np.int64)
    else:
        frame["queries"] = iterations * queries_per_iteration(spec.run, inputs.problems)
    frame["distance_to_exact"] = metrics["distance_to_exact"].reshape(-1)
    frame["loss"] = metrics["loss"].reshape(-1)
    return frame
