"""Without its framework installed, an integration fails at import with one line naming the pip install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent_sdk.integrations import MissingExtra
from mesh.errors import MeshError

# Importing the integration with its framework made unimportable (as if it were not installed).
PROBE = """
import sys
sys.modules[{blocked!r}] = None
try:
    import agent_sdk.integrations.{module}
except ImportError as exc:
    print(type(exc).__name__, "|", exc)
"""


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [("openai_agents", "agents", "openai-agents"), ("langgraph", "langgraph", "langgraph"), ("mcp", "mcp", "mcp")],
)
def test_a_missing_framework_names_the_extra_to_install(module: str, blocked: str, extra: str) -> None:
    code = PROBE.format(blocked=blocked, module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    kind, message = out.stdout.strip().split(" | ", 1)
    assert kind == "MissingExtra"
    assert message == f"agent_sdk.integrations.{module} needs {blocked}: pip install 'agent-mesh[{extra}]'"
    assert "\n" not in message


def test_the_error_is_a_mesh_error_and_an_import_error() -> None:
    assert issubclass(MissingExtra, MeshError) and issubclass(MissingExtra, ImportError)
