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


ROOT = CORE.parent
PLUGIN_TREES = [ROOT / "plugins", ROOT / "examples"]


def _plugin_sources() -> list[Path]:
    """Every Python file of the built-in plugins and the example plugins (not their build
    output, which setuptools copies from these files)."""
    return [p for tree in PLUGIN_TREES for p in sorted(tree.rglob("*.py"))
            if "build" not in p.relative_to(tree).parts]


def test_plugins_and_examples_import_only_the_plugin_api_from_the_core():
    offenders = [f"{p.relative_to(ROOT)}:{line}: {name}"
                 for p in _plugin_sources() for line, name in _imports(p)
                 if (name == "harness" or name.startswith("harness."))
                 and not (name == "harness.api" or name.startswith("harness.api."))]
    assert not offenders, ("plugins reach past harness.api into the core:\n"
                           + "\n".join(offenders))
    assert len(_plugin_sources()) > 20      # the walk really saw the plugins


def test_every_public_name_of_the_plugin_api_resolves():
    import harness.api as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing, f"harness.api.__all__ names what it cannot provide: {missing}"


def test_importing_the_plugin_api_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, harness.api, harness.api.registry, harness.api.params; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
