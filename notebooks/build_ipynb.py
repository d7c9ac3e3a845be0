"""Write the paired ``.ipynb`` of each percent-format notebook, optionally executed with nbclient.

Usage (from the repository root)::

    .venv/bin/python notebooks/build_ipynb.py            # notebooks/NN_*.ipynb, no outputs
    .venv/bin/python notebooks/build_ipynb.py --execute  # the same, executed (outputs and figures inline)
    .venv/bin/python notebooks/build_ipynb.py --execute notebooks/02_apo_exact.py

Execution uses the ``python3`` Jupyter kernel (ipykernel) with the repository root as working
directory, so figures land in ``results/notebooks/`` as when the notebook runs as a script; the
scale follows ``PREFSIM_NOTEBOOK_SCALE`` (default ``ci``).  Equivalent to ``jupytext --to ipynb``
(which needs nbconvert for ``--execute``; nbclient is enough here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


INSTALL_HINT = (
    'install the notebook tools with `pip install -e ".[notebooks]"` (jupytext, nbformat, nbclient, '
    "ipykernel, JupyterLab), using the constraints file of the README"
)


def _require(*modules: str) -> None:
    """Exit with a one-paragraph error when an optional notebook package is missing."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        print(f"error: notebooks/build_ipynb.py needs {', '.join(missing)}; {INSTALL_HINT}.", file=sys.stderr)
        raise SystemExit(2)


def build(path: Path, execute: bool, timeout: int) -> Path:
    # jupytext, nbformat and nbclient are optional (the `notebooks` extra): imported here, after
    # main() has checked them, so that this script can say what to install instead of a traceback
    import jupytext
    import nbformat

    notebook = jupytext.read(path)
    if execute:
        from nbclient import NotebookClient

        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    target = path.with_suffix(".ipynb")
    nbformat.write(notebook, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="percent-format notebooks (default: notebooks/NN_*.py)")
    parser.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell when executing")
    args = parser.parse_args(argv)
    _require("jupytext", "nbformat", *(("nbclient", "ipykernel") if args.execute else ()))
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for path in paths:
        print(build(Path(path).resolve(), args.execute, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
