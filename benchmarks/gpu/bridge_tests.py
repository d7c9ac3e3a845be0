"""Step 3 of ``benchmarks/gpu/run.sh``: the bridge's test files under pytest with the device visible.

Runs ``tests/test_bridge_*.py`` (not the slow SmolLM2 test) and records the summary line and every failing
test id in ``<out>/gpu_bridge_tests.md``.  On a CUDA machine the loop-level tests take the device from
``model.device = "auto"`` and train with bf16 autocast and float32 master weights.  ``--collect-only``
(the dry run) only collects them; ``--limit`` stops pytest after that many seconds (what ran is reported).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--limit", type=float, default=185.0, help="seconds before pytest is stopped")
    args = parser.parse_args(argv)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_bridge_*.py"))
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-m", "not slow", *files]
    if args.collect_only:
        command.append("--collect-only")
    begin = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.limit)
        output, code, stopped = result.stdout + result.stderr, result.returncode, False
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code, stopped = 1, True
    seconds = time.perf_counter() - begin
    lines = output.strip().splitlines()
    summary = next(
        (line for line in reversed(lines) if re.search(r"\b(passed|failed|error|tests? collected)\b", line)), ""
    )
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    text = "\n".join(
        [
            "# The bridge's tests with the device visible",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `{' '.join(command[1:])}`"
            + (" (collect only: the dry run)" if args.collect_only else ""),
            "",
            f"* summary: {summary or '(none)'}" + (f" — **stopped after {args.limit:.0f} s**" if stopped else ""),
            f"* {seconds:.0f} s, exit status {code}",
            *(["", "Failures:", ""] + [f"* `{line}`" for line in failures] if failures else []),
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bridge_tests.md").write_text(text)
    print(text)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
