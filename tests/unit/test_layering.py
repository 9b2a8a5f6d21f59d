"""The layout's import rules: ``mesh`` imports none of the others, nothing imports ``cli``, the layers
inside ``mesh`` import only downwards, and only ``mesh/transport`` imports nats-py."""

from __future__ import annotations

import ast
import subprocess
import sys
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


#: The layers of ``mesh``, bottom up: each may import itself and the ones before it (under
#: ``TYPE_CHECKING`` too). ``mesh/errors.py`` is the floor every layer stands on.
MESH_LAYERS = ["mesh.errors", "mesh.protocol", "mesh.runtime", "mesh.transport", "mesh.client"]
#: Packages a pure module may not load: the network client, the event loops, threads, logging.
IMPURE = {"nats", "anyio", "asyncio", "threading", "socketserver", "subprocess", "structlog"}
#: Outside ``mesh/transport``, nothing uses nats-py (``nats.micro`` too is wrapped there).
NATS_OUTSIDE_TRANSPORT: set[str] = set()


def _modules(path: Path) -> set[str]:
    """Every module ``path`` imports, in full (``from mesh import x`` counts as ``mesh.x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _modules(path)} & OURS


def _layer(module: str) -> str | None:
    """The layer of a ``mesh`` module, ``None`` for ``mesh`` itself (the public face)."""
    return next((layer for layer in MESH_LAYERS if module == layer or module.startswith(layer + ".")), None)


def _source_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


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


def test_mesh_is_layered() -> None:
    """Every module of ``mesh`` is in a layer, and imports only its own layer and those below."""
    for path in sorted((ROOT / "mesh").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module == "mesh.__init__":
            continue
        own = _layer(module.removesuffix(".__init__"))
        assert own is not None, f"{path.relative_to(ROOT)} is in no layer of {MESH_LAYERS}"
        allowed = set(MESH_LAYERS[: MESH_LAYERS.index(own) + 1])
        for imported in _modules(path):
            if imported.startswith("mesh."):  # ``from mesh import X`` (the public face) is in no layer
                layer = _layer(imported)
                assert layer in allowed, f"{path.relative_to(ROOT)} ({own}) imports {imported} ({layer})"


def test_protocol_is_pure() -> None:
    for path in sorted((ROOT / "mesh" / "protocol").rglob("*.py")):
        impure = {name.split(".")[0] for name in _modules(path)} & IMPURE
        assert not impure, f"{path.relative_to(ROOT)} imports {sorted(impure)}"


def test_only_the_transport_imports_nats() -> None:
    transport = ROOT / "mesh" / "transport"
    for path in _source_files("mesh", "agent_sdk", "controller", "cli", "gateway"):
        if transport in path.parents or str(path.relative_to(ROOT)) in NATS_OUTSIDE_TRANSPORT:
            continue
        nats = sorted(name for name in _modules(path) if name == "nats" or name.startswith("nats."))
        assert not nats, f"{path.relative_to(ROOT)} imports {nats}: use mesh.transport"


@pytest.mark.parametrize(
    "module", ["mesh", "mesh.protocol.target", "mesh.protocol.killcommand", "mesh.protocol.models"]
)
def test_pure_imports_load_no_network_client(module: str) -> None:
    """``import mesh`` and the protocol modules load neither nats-py nor anyio (a fresh interpreter)."""
    probe = (
        f"import sys, {module}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {{'nats', 'anyio'}}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import {module} loads {out.stdout.strip()}"
