"""A machine's CPU cores as JAX devices, so that a run's seeds are split over the cores.

JAX's CPU platform is one device unless it is told otherwise before it starts, and one device runs
a trajectory's per-seed products, exps and row sums on about one core.  With D CPU devices prefsim
shards the seed axis over them (:func:`sim.shared_engine.shard_over_seeds`) and each core runs its
own seeds: ~1.9× on the CI machine's 2 cores (K = 10 and K = 100 per-seed games, benchmarks/README.md).

It is JAX's process-wide setting ``jax_num_cpu_devices``, so importing prefsim never touches it.  The
``prefsim`` command sets it, to the cores this process may use unless ``--cpu-devices N`` or
``$PREFSIM_CPU_DEVICES`` says otherwise; a Python user calls :func:`use_cpu_cores` right after the
imports, before JAX computes anything.  The numbers equal one device's up to rounding (exact mode
~1e-14: XLA sums a seed's P·π in another order in a batch of another size); the run's manifest lists
the devices it ran on.
"""

from __future__ import annotations

import jax

from bandits.errors import PrefsimError
from sim.machine import usable_cores

#: Environment variable with the default CPU device count of ``prefsim`` commands (a number or ``auto``).
CPU_DEVICES_VARIABLE = "PREFSIM_CPU_DEVICES"
#: The most CPU devices per usable core: more only adds threads (each device has its own), and XLA aborts
#: when the system cannot start them all.
DEVICES_PER_CORE = 8


def cpu_device_count(setting: str | int) -> int:
    """``auto`` → :func:`usable_cores`; a positive whole number → itself; anything else a clear error."""
    text = str(setting).strip().lower()
    if text == "auto":
        return usable_cores()
    if not text.isdigit() or int(text) < 1:
        raise PrefsimError(f"CPU devices: expected a positive whole number or auto, got {setting!r}.")
    cores = usable_cores()
    if int(text) > DEVICES_PER_CORE * cores:
        raise PrefsimError(
            f"CPU devices: {int(text)} is more than {DEVICES_PER_CORE} per usable core ({cores} here, at most "
            f"{DEVICES_PER_CORE * cores}); each device starts threads of its own and a seed runs on one core, so "
            "use auto (one per core) or fewer."
        )
    return int(text)


def use_cpu_cores(count: int | str | None = None) -> int:
    """Make JAX's CPU platform ``count`` devices (default: :func:`usable_cores`); returns the count in effect.

    Call it before JAX computes anything.  Once JAX has started, its CPU device count is fixed: then a
    ``count`` given explicitly that differs from it is an error, and the default keeps it as it is.
    """
    wanted = usable_cores() if count is None else cpu_device_count(count)
    try:
        jax.config.update("jax_num_cpu_devices", wanted)
    except RuntimeError:  # JAX has started: its CPU devices are fixed for this process
        running = len(jax.devices("cpu"))
        if count is not None and running != wanted:
            raise PrefsimError(
                f"CPU devices: JAX already runs on {running} CPU device(s) in this process, so {wanted} cannot be "
                "set; set it before JAX computes anything (a new process)."
            ) from None
        return running
    return wanted
