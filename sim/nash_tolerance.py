"""The stopping rule of :func:`sim.nash.regularised_nash`, in a module with no imports.

:mod:`sim.nash` solves π*_τ with these tolerances; :mod:`sim.diagnostics` derives from them how far the
computed π* can be from the exact one (:func:`sim.diagnostics.target_error`), which sets ``tv_to_optimum``'s
floor.  They live here so that reading them does not load the solver (JAX programs, the shared engine).
"""

#: :func:`sim.nash.regularised_nash` iterates until the closed-form duality gap is at most this ...
DEFAULT_TOLERANCE = 1e-14
#: ... and one extragradient step moves log π by Σ_y π(y)|Δ log π(y)| ≤ this.
STEP_TOLERANCE = 1e-14
