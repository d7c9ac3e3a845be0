"""Step 1 of ``benchmarks/gpu/run.sh``: the device, the versions, and the packages the bridge needs.

A module the bridge needs but cannot import is installed from ``--wheels`` (a folder made on a machine with a
registry by ``benchmarks/gpu/fetch_wheels.sh``) with ``pip install --no-index --no-deps``; without the folder
it is only reported.  Writes ``<out>/gpu_environment.md``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path

#: module → distribution, in the order the bridge and its tests need them (torch, transformers, JAX and
#: accelerate are assumed present on the GPU machine).
NEEDED = {
    "torch": "torch",
    "transformers": "transformers",
    "accelerate": "accelerate",
    "jax": "jax",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "tqdm": "tqdm",
    "optax": "optax",
    "chex": "chex",
    "vaderSentiment": "vaderSentiment",
    "pytest": "pytest",
    "peft": "peft",
    "gguf": "gguf",
}


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001  (any import failure means: not usable)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wheels", type=Path, default=Path(__file__).parent / "wheels")
    args = parser.parse_args(argv)
    missing = [m for m in NEEDED if not importable(m)]
    installed = []
    if missing and args.wheels.is_dir():
        wanted = [NEEDED[m] for m in missing]
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(args.wheels)]
        for distribution in wanted:  # one at a time: a wheel that is not in the folder does not stop the others
            if subprocess.run(command + [distribution], capture_output=True, text=True).returncode == 0:
                installed.append(distribution)
        importlib.invalidate_caches()
        missing = [m for m in NEEDED if not importable(m)]
    rows = []
    for module, distribution in NEEDED.items():
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "—"
        rows.append(f"| {module} | {version} | {'MISSING' if module in missing else 'ok'} |")
    device = "no torch"
    if "torch" not in missing:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only (no CUDA device)"
    jax_devices = "no jax"
    if "jax" not in missing:
        import jax

        jax_devices = ", ".join(str(d) for d in jax.devices())
    text = "\n".join(
        [
            "# Environment of the GPU run",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()} on "
            f"{platform.platform()}",
            "",
            f"* torch device: {device}",
            f"* JAX devices: {jax_devices}",
            f"* installed from the wheels folder: {', '.join(installed) or 'none'}",
            "",
            "| module | version | status |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_environment.md").write_text(text)
    print(text)
    essential = {"torch", "transformers", "jax", "numpy", "safetensors", "optax"}
    return 1 if essential & set(missing) else 0


if __name__ == "__main__":
    raise SystemExit(main())
