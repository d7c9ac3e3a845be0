"""Scripts that are not packages (``benchmarks/*.py``) loaded as modules by the tests that check them."""

import importlib.util
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """A fresh module executed from the file ``path`` under ``name`` (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
