"""Kill-switch integrations for agent frameworks: each module is an optional extra of its own."""

from __future__ import annotations

from mesh.errors import MeshError

__all__ = ["MissingExtra", "require"]


class MissingExtra(MeshError, ImportError):
    """An integration whose framework is not installed; the message names the pip install."""

    def __init__(self, integration: str, extra: str, missing: str) -> None:
        self.integration = integration
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"agent_sdk.integrations.{integration} needs {missing}: pip install 'agent-mesh[{extra}]'"
        )


def require(integration: str, extra: str, exc: ImportError) -> MissingExtra:
    """The error to raise when importing the framework behind ``integration`` failed with ``exc``."""
    return MissingExtra(integration, extra, (exc.name or str(exc)).split(".")[0])
