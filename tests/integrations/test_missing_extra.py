"""Without its framework installed, an integration fails at import with one line naming the pip install."""

from __future__ import annotations

import subprocess
import sys

from agent_sdk.integrations import MissingExtra
from mesh.errors import MeshError

CASES = [
    ("openai_agents", "agents", "openai-agents"),
    ("langgraph", "langgraph", "langgraph"),
    ("mcp", "mcp", "mcp"),
]

# Each integration imported with its framework made unimportable (as if it were not installed).
PROBE = """
import importlib, sys
for module, blocked in {cases!r}:
    saved = {{k: v for k, v in sys.modules.items() if k == blocked or k.startswith(blocked + ".")}}
    for k in saved:
        del sys.modules[k]
    sys.modules[blocked] = None
    try:
        importlib.import_module("agent_sdk.integrations." + module)
        print(module, "|", "imported")
    except ImportError as exc:
        print(module, "|", type(exc).__name__, "|", exc)
    del sys.modules[blocked]
    sys.modules.update(saved)
"""


def test_a_missing_framework_names_the_extra_to_install() -> None:
    code = PROBE.format(cases=[(m, b) for m, b, _ in CASES])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines == [
        f"{module} | MissingExtra | agent_sdk.integrations.{module} needs {blocked}: "
        f"pip install 'agent-mesh[{extra}]'"
        for module, blocked, extra in CASES
    ]


def test_the_error_is_a_mesh_error_and_an_import_error() -> None:
    assert issubclass(MissingExtra, MeshError) and issubclass(MissingExtra, ImportError)
