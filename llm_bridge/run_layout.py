"""The names a bridge run writes at the top of its ``--out`` directory, beside one directory per rule label.

Every writer of the run directory (:mod:`llm_bridge.loop`, :mod:`llm_bridge.shards`,
:mod:`llm_bridge.prediction`) takes its top-level names from here, and :func:`llm_bridge.spec.parse_spec`
refuses a rule label equal to any of them (:data:`RUN_LEVEL_NAMES`), since the rule's directory would
take its place.
"""

from __future__ import annotations

REFERENCE_DIR = "reference"
"""θ_0 (π_ref's checkpoint), π_ref's held-out responses and the row of π_0, shared by every rule."""
MANIFEST_FILE = "manifest.json"
"""The spec, seed, prompt-file hashes, process count, git commit and dirty flag, package versions and the
model's SHA-256 (:mod:`llm_bridge.provenance`); ``--resume`` and ``--merge`` check them."""
METRICS_FILE = "metrics.csv"
"""Every rule's rows (each rule's own rows are in ``<label>/metrics.csv`` as well)."""
WIN_RATE_FIGURE = "win_rate.png"
"""The held-out win-rate figure, redrawn after every iteration."""
CURVES_FIGURE = "curves.png"
"""Win rate, mean reward and KL(π_t‖π_ref) per iteration (:func:`llm_bridge.plot.plot_curves`), drawn at the end."""
TENSORBOARD_DIR = "tensorboard"
"""TensorBoard event files (``[run] report_to = "tensorboard"``; :mod:`llm_bridge.reporting`)."""
PREDICTION_DIR = "prediction"
"""The study of ``prefsim llm --predict`` (:mod:`llm_bridge.prediction`)."""
# Besides these, a run holds ``.prefsim.lock`` (:data:`sim.results_io.LOCK_NAME`) while it writes the directory
# (:func:`sim.results_io.output_lock`); like the temporary files of atomic writes
# (:func:`sim.results_io.write_files_atomic`: ``.<name>.<random>.tmp``) its name starts with a dot, as no rule
# label does, so RUN_LEVEL_NAMES need not list it.

RUN_LEVEL_NAMES = frozenset(
    {
        REFERENCE_DIR,
        MANIFEST_FILE,
        METRICS_FILE,
        WIN_RATE_FIGURE,
        CURVES_FIGURE,
        TENSORBOARD_DIR,
        PREDICTION_DIR,
    }
)
"""Every name a run writes at the top of ``--out``: no rule label may be one of them."""
