"""structlog setup: readable console output on a terminal, JSON lines otherwise, always on stderr."""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure_logging", "ensure_configured"]


def configure_logging(level: str | int | None = None, *, json: bool | None = None) -> None:
    """Configure structlog once for a process. ``MESH_LOG_LEVEL`` / ``MESH_LOG_FORMAT`` override.

    Logs go to stderr: only the CLI writes to stdout.
    """
    level = level or os.environ.get("MESH_LOG_LEVEL", "INFO")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    fmt = os.environ.get("MESH_LOG_FORMAT")
    if json is None:
        json = fmt == "json" if fmt else not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def ensure_configured() -> None:
    """Send our logs to stderr unless the application has configured structlog itself.

    structlog's unconfigured default prints to stdout, and only the CLI may write there.
    """
    if not structlog.is_configured():
        configure_logging()
