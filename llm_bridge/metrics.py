"""Per-iteration metrics of the bridge (one row per policy π_t, t = 0 … T).

=======================  =====================================================================================
column                   meaning
=======================  =====================================================================================
``iteration``            t (row t describes π_t; the training columns describe the update t−1 → t)
``win_rate``             mean over held-out prompts x of P(y ≻ y_ref | x), y ~ π_t(·|x), y_ref ~ π_ref(·|x)
                         (the oracle's probability, i.e. the expected Bernoulli win, one pair per prompt)
``win_rate_low/high``    95% Student-t confidence interval of that mean over prompts, clipped to [0, 1]
``mean_reward``          mean oracle reward of π_t's held-out responses (reward-based oracles; NaN otherwise)
``reference_reward``     the same for π_ref's held-out responses
``kl_reference``         KL(π_t‖π_ref) ≈ mean over held-out samples y ~ π_t of log π_t(y|x) − log π_ref(y|x)
``kl_previous``          KL(π_t‖π_{t−1}) ≈ mean of log π_t(y|x) − log π_{t−1}(y|x) on the same samples
``loss_first/last``      the rule's weighted loss at the first / last optimiser step of the update
``pairs``                training pairs used by the update
``optimizer_steps``      optimiser steps of the update (epochs × ⌈pairs / batch size⌉ per process)
``oracle_queries``       pairwise oracle queries of the update's pair construction
``eval_queries``         oracle queries of the held-out evaluation
``generation_tokens``    tokens of the update's responses (each up to its EOS; every draw, all processes; 0 for π_0)
``train_tokens``         prompt + response tokens through forward/backward in the update's training, every
                         epoch and stage (the prompt counted once per sequence, i.e. twice per pair; 0 for π_0)
``generation_tokens_per_s``  sampling throughput of the update (tokens generated / s)
``train_tokens_per_s``   training throughput (prompt + response tokens through forward/backward / s)
``generation_seconds``   wall time of the update's sampling (Nash-MD: its opponent's too)
``label_seconds``        wall time of the update's pair construction (the oracle's queries)
``score_seconds``        wall time of precomputing log π_t, log π_ref (and MNPO's, APO's anchors) of the pairs
``train_seconds``        wall time of minimising the loss (every stage)
``eval_seconds``         wall time of the held-out evaluation of π_{t+1}
``seconds``              wall time of the update and its evaluation (the five parts above, checkpoints, the
                         restore of θ_t between stages and APO's extrapolation)
=======================  =====================================================================================

Wall times are the main process's (the processes run every part in step); the ``*_seconds`` and
``*_tokens_per_s`` columns are clocks, the token and query counts are not.  The π_0 row has no update: its
counts are 0 and its clocks NaN.

KL estimates are single-sample Monte Carlo averages of the log-ratio (unbiased for the KL, can be
negative at small sample sizes).  For APO's implicit-reference form the model holds the proximal
policy π̂_t, and the metrics describe π̂_t.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

COLUMNS = (
    "rule",
    "iteration",
    "win_rate",
    "win_rate_low",
    "win_rate_high",
    "mean_reward",
    "reference_reward",
    "kl_reference",
    "kl_previous",
    "loss_first",
    "loss_last",
    "pairs",
    "optimizer_steps",
    "oracle_queries",
    "eval_queries",
    "generation_tokens",
    "train_tokens",
    "generation_tokens_per_s",
    "train_tokens_per_s",
    "generation_seconds",
    "label_seconds",
    "score_seconds",
    "train_seconds",
    "eval_seconds",
    "seconds",
)


def mean_with_interval(
    values: ArrayLike, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval (mean, low, high), clipped to ``bounds`` (probabilities).

    NaN interval for fewer than 2 values.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)
