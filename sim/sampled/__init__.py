"""Sampled mode: what a rule does with N labelled pairs per iteration, a parametric policy and optax.

Modules: :mod:`sim.sampled.policies` (tabular / log-linear / MLP), :mod:`sim.sampled.losses` (each
rule's batch loss from its per-pair loss in :mod:`sim.rules`), :mod:`sim.sampled.apo` (APO's three
extrapolation forms), :mod:`sim.sampled.engine` (one jitted scan, vmapped over seeds),
:mod:`sim.sampled.problem` (contextual problems), :mod:`sim.sampled.offline` (offline data from π_ref
and its exact counterparts) and :mod:`sim.sampled.experiment` (spec glue).  Pair
schemes and oracles live in :mod:`bandits.oracles`.

``[run]`` keys of ``mode = "sampled"`` (all optional; see :class:`sim.spec.RunSpec`; a key is refused
where the run would not read it, e.g. ``candidates`` with ``lambda_p`` or ``mlp_width`` without
``policy = "mlp"``: :data:`sim.spec_checks.READ_WHEN`)::

    [run]
    mode = "sampled"
    pairs_per_iteration = 1000     # N pairs drawn from π_t each iteration
    data = "online"                # online | offline: one λ_p dataset from π_ref, reused (online_ipo, inpo, mnpo)
    # offline_pairs = 30000        # offline dataset size; default pairs_per_iteration × iterations
    pair_scheme = "lambda_p"       # lambda_p | best_worst_by_reward | tournament | sppo_win_rate |
                                   # best_second_by_win_rate | exact_win_rates | uniform_opponent
    candidates = 8                 # K ≥ 2 candidates of best_worst_by_reward / tournament / sppo_win_rate /
                                   # best_second_by_win_rate (COMAL: 5)
    self_comparison = true         # sppo_win_rate: include P̂[i][i] = ½ (the SPPO code)
    policy = "tabular"             # tabular | log_linear | mlp
    problem = "game"               # game | linear_bradley_terry | linear_preference_game | ring
    features = "one_hot"           # problem = "game", non-tabular policy: one_hot | random
    feature_dim = 4                # d of random features and linear problems
    contexts = 1                   # M contexts of the linear problems
    ring_grid = 25                 # ring task: points per axis
    optimizer = "adam"             # sgd | adam | rmsprop (optax defaults, fresh each iteration)
    learning_rate = 0.01
    inner_steps = 50               # steps per iteration (the cap when tolerance is set)
    # tolerance = 1e-8             # stop when max|grad| ≤ tolerance (full batch)
    # minibatch_size = 100         # pairs per step; default full batch
    mlp_width = 256
    mlp_hidden_layers = 1

Rules with a sampled loss are those whose definition in :mod:`sim.rules` has one (``prefsim rules``
lists the modes of each): every built-in rule, ``mmd`` and its preset ``mpo`` included (INPO's loss at
η_INPO = τ + 1/η), with ``nash_md`` as Nash-MD-PG and ``apo`` over the bases dpo / sppo / inpo.  Rule
parameters are those of exact mode (APO's ``form``, DPO's ``anchor``); ``run.apo_form`` and
``run.dpo_reference`` are deprecated.

Results: the exact-mode columns plus ``queries`` (cumulative), ``distance_to_exact``, ``loss`` and
``inner_gradient`` (:mod:`sim.sampled.experiment`).
"""

from sim.sampled.apo import APO_FORMS, extrapolate_log_space, extrapolate_parameters, implicit_reference  # noqa: F401
from sim.sampled.engine import (  # noqa: F401
    build_iteration,
    exact_proximal,
    make_optimizer,
    sampled_states,
    simulate_sampled,
    simulate_sampled_grid,
)
from sim.sampled.losses import batch_loss, sampled_rules  # noqa: F401
from sim.sampled.policies import POLICIES, PolicyModel, make_policy  # noqa: F401
from sim.sampled.problem import Problem, problem_from_arrays, problem_from_game  # noqa: F401
