#!/usr/bin/env bash
# The GPU measurements of issue 13 §6, in one script that ends within 5 minutes on one GPU: the whole run has a
# budget (--budget SECONDS: 290 by default, 600 for the CPU dry run), and each step's own limit is cut to what
# is left of it, less the 10 s a timed-out step gets to exit; a step that runs out of time is recorded and the
# next one runs, and a step left with under 5 s is recorded as skipped (the run then exits 1).
#
#   benchmarks/gpu/run.sh                 # on the GPU machine: writes benchmarks/results/gpu_*.md (+ .json)
#   benchmarks/gpu/run.sh --dry-run       # anywhere (CPU): tiny models, collect-only tests, quick exact mode
#                                         # (without --dry-run, a machine whose torch or JAX sees no GPU is
#                                         # refused with exit status 3: benchmarks/gpu/require_gpu.py)
#   benchmarks/gpu/run.sh --out DIR       # write the gpu_*.md files to DIR instead
#   benchmarks/gpu/run.sh --budget S      # the whole run's seconds (default 290; dry run 600)
#   benchmarks/gpu/run.sh --speed         # issue 14's GPU run instead, under 5 minutes: step 1, then
#                                         # benchmarks/run_all.py's per_seed and compute_bound sections on
#                                         # the device (its memory bandwidth and float64 / float32 matmul
#                                         # peaks, measured there) -> gpu_speed_targets.md
#
# Steps (each under its own time limit; a failing step is recorded and the next one runs):
#   1. environment: device, versions; packages the bridge needs that are missing are installed from
#      benchmarks/gpu/wheels/ when it exists (make it here with benchmarks/gpu/fetch_wheels.sh: the
#      GPU machine has no registry) -> gpu_environment.md
#   2. benchmarks/gpu/cuda_checks.py: the bridge's numerics on the device (log-probs, bf16 autocast with
#      float32 masters, exact sampling) -> gpu_cuda_checks.md
#   3. the bridge's test files (pytest, not slow) with CUDA visible: the loop-level tests take the
#      device from model.device = "auto" -> gpu_bridge_tests.md
#   4. benchmarks/gpu/throughput.py: generation tokens/s, one step per rule vs DPO, peak memory per APO
#      form, for SmolLM2-135M's shape and a ~1B Llama shape (random weights) -> gpu_throughput.md
#   5. benchmarks/exact_updates.py on the accelerator (JAX picks the GPU) -> gpu_exact_updates.md
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DRY=0
SPEED=0
OUT="$ROOT/benchmarks/results"
BUDGET_S=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --speed) SPEED=1 ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a directory" >&2; exit 2; }; shift; OUT="$1" ;;
    --budget)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "error: --budget needs a whole number of seconds" >&2; exit 2; }
      shift; BUDGET_S="$1" ;;
    *) echo "error: unknown argument $1 (use --dry-run, --speed, --out DIR and/or --budget SECONDS)" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-python}"
STARTED=$(date +%s)
# the whole run, the GPU check included: within 5 minutes on the GPU; the dry run's steps on a busy CPU take longer
[ -z "$BUDGET_S" ] && { [ $DRY = 1 ] && BUDGET_S=600 || BUDGET_S=290; }
DEADLINE=$(( STARTED + BUDGET_S ))
if [ $DRY = 0 ]; then
  # a measured run needs the GPU it measures (--speed: JAX's; the full run: torch's and JAX's); without one
  # it stops here, exit status 3, before writing anything
  if [ $SPEED = 1 ]; then NEEDS=(--jax); else NEEDS=(--torch --jax); fi
  timeout --kill-after=5 30 "$PYTHON" benchmarks/gpu/require_gpu.py "${NEEDS[@]}" || exit 3
fi
mkdir -p "$OUT"
LOG="$OUT/gpu_run_log.md"
[ $SPEED = 1 ] && LOG="$OUT/gpu_speed_log.md"
{
  echo "# benchmarks/gpu/run.sh $([ $SPEED = 1 ] && echo "--speed ")$([ $DRY = 1 ] && echo "--dry-run (CPU, tiny; not a GPU measurement)")"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
} > "$LOG"

step() {  # step NAME LIMIT_SECONDS COMMAND...: the limit is cut to what is left of the run's budget
  local name="$1" limit="$2"; shift 2
  local begin=$(date +%s) status left
  left=$(( DEADLINE - begin - 10 ))
  [ $left -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    echo "| $name | SKIPPED (the run's ${BUDGET_S} s budget is spent) | 0 |" >> "$LOG"
    echo "== $name: SKIPPED (the run's ${BUDGET_S} s budget is spent)"
    return
  fi
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  status=$?
  case $status in
    0) label="ok" ;;
    124|137) label="TIMED OUT after ${limit}s" ;;
    *) label="FAILED (exit $status)" ;;
  esac
  echo "| $name | $label | $(( $(date +%s) - begin )) |" >> "$LOG"
  echo "== $name: $label"
}

# 1. environment and missing packages
step environment 45 "$PYTHON" benchmarks/gpu/environment.py --out "$OUT" --wheels benchmarks/gpu/wheels

if [ $SPEED = 1 ]; then
  # issue 14 on the accelerator: the per-seed cases against its measured batched P·v bandwidth, the
  # compute-bound case against its float64 and float32 matmul peaks (NumPy's baselines run on the host)
  if [ $DRY = 1 ]; then
    step speed_targets 150 "$PYTHON" benchmarks/run_all.py --quick --repeats 1 --only per_seed,compute_bound \
      --out "$OUT/gpu_speed_targets"
  else
    step speed_targets 230 "$PYTHON" benchmarks/run_all.py --repeats 2 --only per_seed,compute_bound \
      --out "$OUT/gpu_speed_targets"
  fi
  echo >> "$LOG"
  echo "total $(( $(date +%s) - STARTED )) s" >> "$LOG"
  cat "$LOG"
  ! grep -q "FAILED\|TIMED OUT\|SKIPPED" "$LOG"
  exit $?
fi

# 2. numerics on the device
step cuda_checks 60 "$PYTHON" benchmarks/gpu/cuda_checks.py --out "$OUT"

# 3. the bridge's tests (collect-only in the dry run)
if [ $DRY = 1 ]; then
  step bridge_tests 60 "$PYTHON" benchmarks/gpu/bridge_tests.py --out "$OUT" --collect-only
else
  # 90 s at most: before it, the GPU check, environment and cuda_checks take ≤ 35 + 45 + 60 s, so the budget never
  # cuts this step's limit below its own and pytest's --limit (which still writes what ran) comes first
  step bridge_tests 90 "$PYTHON" benchmarks/gpu/bridge_tests.py --out "$OUT" --limit 75
fi

# 4. throughput and memory
if [ $DRY = 1 ]; then
  step throughput 90 "$PYTHON" benchmarks/gpu/throughput.py --tiny --pairs 2 --prompt-tokens 8 \
    --response-tokens 8 --batch 2 --new-tokens 4 --repeats 1 --out "$OUT"
else
  step throughput 120 "$PYTHON" benchmarks/gpu/throughput.py --out "$OUT"
fi

# 5. exact mode on the accelerator
if [ $DRY = 1 ]; then
  step exact_updates 90 "$PYTHON" benchmarks/exact_updates.py --quick --repeats 1 --out "$OUT/gpu_exact_updates"
else
  step exact_updates 150 "$PYTHON" benchmarks/exact_updates.py --repeats 1 --out "$OUT/gpu_exact_updates"
fi

echo >> "$LOG"
echo "total $(( $(date +%s) - STARTED )) s" >> "$LOG"
cat "$LOG"
! grep -q "FAILED\|TIMED OUT\|SKIPPED" "$LOG"
