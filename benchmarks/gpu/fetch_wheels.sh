#!/usr/bin/env bash
# Make benchmarks/gpu/wheels/ (git-ignored) on a machine with a registry: the small pure-Python wheels the
# bridge and its tests need beyond torch, transformers, JAX and accelerate, which the GPU machine lacks
# a registry to install.  benchmarks/gpu/environment.py installs from it only what is missing there.
# Versions follow constraints-cpu.txt when it pins them.  A few MB in all (no binary wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/benchmarks/gpu/wheels"
mkdir -p "$DEST"
CONSTRAINT=()
[ -f "$ROOT/constraints-cpu.txt" ] && CONSTRAINT=(-c "$ROOT/constraints-cpu.txt")
python -m pip download --no-deps --only-binary=:all: --platform any --python-version "$(python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')" \
  "${CONSTRAINT[@]}" -d "$DEST" optax chex toolz absl-py vaderSentiment pytest pluggy iniconfig tqdm peft gguf
du -sh "$DEST"
