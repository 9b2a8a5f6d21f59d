"""The layout's import rules: ``mesh`` imports none of the others, and nothing imports ``cli``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"mesh", "agent_sdk", "controller", "cli"}
ALLOWED = {
    "mesh": {"mesh"},
    "agent_sdk": {"mesh", "agent_sdk"},
    "controller": {"mesh", "controller"},
    "cli": {"mesh", "controller", "cli"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_upward(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        bad = _imports(path) - ALLOWED[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_nothing_outside_cli_imports_cli() -> None:
    for folder in ("mesh", "agent_sdk", "controller", "examples", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            assert "cli" not in _imports(path), f"{path.relative_to(ROOT)} imports cli"
