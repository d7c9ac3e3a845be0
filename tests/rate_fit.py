"""The tests' own root-N check: log-log slope of an error against the number of pairs, with a bootstrap CI.

Written here, not taken from :mod:`sim.stats`, so that the sampled-mode convergence tests do not rest
on the code they help check.
"""

import numpy as np


def slope_and_interval(errors: np.ndarray, pairs, draws: int = 2000):
    """Slope of log(mean error over seeds) vs log N, and its 95% bootstrap interval over seeds.

    ``errors`` has shape (len(pairs), seeds); returns ``(slope, (low, high))``.
    """
    log_n = np.log(np.asarray(pairs, float))

    def slope(e):
        return np.polyfit(log_n, np.log(e.mean(axis=1)), 1)[0]

    rng = np.random.default_rng(0)
    boot = [slope(errors[:, rng.integers(0, errors.shape[1], errors.shape[1])]) for _ in range(draws)]
    return slope(errors), np.percentile(boot, [2.5, 97.5])
