"""notebooks/build_ipynb.py without its optional packages: a one-paragraph error naming the extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_missing_jupytext_gives_the_install_hint_not_a_traceback():
    blocked = (
        "import runpy, sys; sys.modules['jupytext'] = None; sys.argv = ['build_ipynb.py']; "
        "runpy.run_path('notebooks/build_ipynb.py', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: notebooks/build_ipynb.py needs jupytext")
    assert '".[notebooks]"' in result.stderr and "Traceback" not in result.stderr


def test_notebooks_extra_installs_a_notebook_ui():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {requirement.split(">")[0].split("=")[0].strip() for requirement in extras["notebooks"]}
    assert {"jupyterlab", "jupytext", "ipykernel"} <= names
    assert "jupyter lab notebooks/" in (ROOT / "notebooks" / "README.md").read_text()
