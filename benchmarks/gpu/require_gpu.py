"""Refuses a GPU measurement without a GPU: ``benchmarks/gpu/run.sh`` runs this before any step unless ``--dry-run``.

Without it, the measured run on a machine without a GPU would time the host CPU and write the numbers into
``gpu_*`` files, as if measured on a GPU.  ``--torch``: torch must see a CUDA device (the bridge's checks,
tests and throughput steps).  ``--jax``: JAX's default backend must be ``gpu`` (CUDA or ROCm; the exact-mode
and issue-14 speed steps).  Prints what is missing and exits 3; exits 0 when every named framework sees a GPU.
"""

from __future__ import annotations

import argparse
import sys

#: Exit status when a named framework sees no GPU (2 is run.sh's bad argument).
NO_GPU = 3


def torch_device() -> str | None:
    """The CUDA device torch sees, or None (torch missing, or no CUDA device)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def jax_backend() -> str:
    """JAX's default backend (``cpu``, ``gpu``, ``tpu``), or ``not importable``."""
    try:
        import jax
    except ImportError:
        return "not importable"
    return jax.default_backend()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="torch must see a CUDA device")
    parser.add_argument("--jax", action="store_true", help="JAX's default backend must be gpu")
    args = parser.parse_args(argv)
    missing = []
    if args.torch and torch_device() is None:
        missing.append("torch sees no CUDA device")
    if args.jax and (backend := jax_backend()) != "gpu":
        missing.append(f"JAX's default backend is {backend}, not gpu")
    if missing:
        print(
            f"error: no GPU for this measurement ({'; '.join(missing)}); nothing was measured. "
            "benchmarks/gpu/run.sh --dry-run runs every step at toy size on a CPU.",
            file=sys.stderr,
        )
        return NO_GPU
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
