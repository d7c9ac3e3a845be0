"""Every public function and method of sim/, bandits/ and llm_bridge/ annotates its parameters and return."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "bandits", "llm_bridge")


def _public_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes whose names do not start with "_"."""
    functions = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            functions += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [f for f in functions if not f.name.startswith("_")]


def _missing_annotations() -> list[str]:
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for function in _public_functions(tree):
                arguments = [a for a in function.args.args + function.args.kwonlyargs if a.arg not in ("self", "cls")]
                if any(a.annotation is None for a in arguments) or function.returns is None:
                    missing.append(f"{path.relative_to(ROOT)}:{function.lineno} {function.name}")
    return missing


def test_public_functions_are_fully_annotated() -> None:
    missing = _missing_annotations()
    assert not missing, "public functions without full annotations:\n" + "\n".join(missing)
