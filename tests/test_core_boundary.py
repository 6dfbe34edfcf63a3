"""The core never imports the built-in plugins: they are reached through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "harness"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_nothing_under_harness_imports_harness_plugins():
    offenders = [f"{p.relative_to(CORE.parent)}:{line}: {name}"
                 for p in sorted(CORE.rglob("*.py")) for line, name in _imports(p)
                 if name == "harness_plugins" or name.startswith("harness_plugins.")]
    assert not offenders, "the core imports built-in plugins:\n" + "\n".join(offenders)
    assert len(list(CORE.rglob("*.py"))) > 20      # the walk really saw the core
