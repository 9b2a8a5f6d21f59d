"""The web dashboard: the fleet live over server-sent events, kill and resume buttons, the audit log.

A service beside the controller: it reads the instances bucket and the audit stream, and sends
kills and resumes through the ``mesh`` operator API with its own NATS credentials.
Start it with ``mesh dashboard`` (see :func:`controller.dashboard.server.run_dashboard`).
"""

from __future__ import annotations

from controller.dashboard.config import DashboardConfig

__all__ = ["DashboardConfig"]
