"""Fresh Python processes for tests that need one (imports, exits): ``python -c CODE`` from the repository."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c code`` run from the repository, its output captured as text (any exit status)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=timeout)


def python_output(code: str, timeout: float = 300) -> str:
    """What ``python -c code`` prints (stripped), run from the repository; it must exit with 0."""
    result = run_python(code, timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()
