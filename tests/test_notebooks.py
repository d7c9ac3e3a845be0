"""Execute every notebook (jupytext percent-format ``notebooks/NN_*.py``) at the CI scale.

Each notebook is run as a script in a subprocess (``PREFSIM_NOTEBOOK_SCALE=ci``, figures written
under a temporary directory), so an ``assert`` that fails inside a notebook fails its test here.
The notebooks' claims are their final assertion cells; the budget for all of them together is about
8 minutes on 2 CPU cores.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
TIMEOUT_SECONDS = 420


def run_notebook(path: Path, out_dir: Path, scale: str = "ci") -> subprocess.CompletedProcess:
    """Run a percent-format notebook as a script; return the finished process."""
    env = dict(os.environ, PREFSIM_NOTEBOOK_SCALE=scale, PREFSIM_NOTEBOOK_OUT=str(out_dir), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_valid_jupytext_and_ends_with_assertions(path):
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert code and "assert " in code[-1].source, "the last code cell must hold the notebook's assertions"
    assert "PREFSIM_NOTEBOOK_SCALE" in "\n".join(cell.source for cell in code)
    assert "## Results" in markdown, "a markdown cell must record the settings and numbers of the last run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_assertions_hold(path, tmp_path):
    result = run_notebook(path, tmp_path)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "all assertions passed" in result.stdout
    assert list(tmp_path.rglob("*.png")), "the notebook should write its figures"


def test_a_failing_notebook_assertion_fails_the_harness(tmp_path):
    broken = tmp_path / "99_broken.py"
    broken.write_text(
        "# %%\nimport os\nscale = os.environ['PREFSIM_NOTEBOOK_SCALE']\n# %%\nassert 1 + 1 == 3, 'claim fails'\n"
    )
    result = run_notebook(broken, tmp_path / "out")
    assert result.returncode != 0 and "claim fails" in result.stderr


THEORY_EXAMPLES = [
    "inpo_theorem4",
    "inpo_eta_crit",
    "apo_exact",
    "apo_tv_gap",
    "reviewer_d3_online_ipo",
    "reviewer_d8_rankings",
    "reviewer_d11_last_vs_average",
]


@pytest.mark.parametrize("name", THEORY_EXAMPLES)
def test_notebook_figure_specs_parse(name):
    import sim

    spec = sim.load_spec(ROOT / "examples" / f"{name}.toml")
    assert spec.raw["name"] == name and spec.iterations >= 150
