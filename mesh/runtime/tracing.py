"""Optional OpenTelemetry spans of a kill (the ``agent-mesh[otel]`` extra); without it, all no-ops.

The trace context travels as W3C trace-context headers (``traceparent``...) in the kill record and
in the instance's halt acknowledgement, so a kill is one trace across the operator and every
instance, whichever processes export it. Spans are only recorded where the application has set
an OpenTelemetry tracer provider; mesh never configures one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mesh.protocol.models import KillRecord
    from mesh.protocol.reports import AckRow

__all__ = ["carrier", "end", "end_kill", "record_span", "start", "use_provider"]

TRACER = "agent-mesh"
_provider: Any = None

#: W3C trace-context headers (``traceparent``, ``tracestate``): what records and acks carry.
Carrier = dict[str, str]


@functools.cache
def _otel() -> Any:
    """The OpenTelemetry API modules, imported on first use (never at ``import mesh``), or None."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return None
    return propagate, trace


def use_provider(provider: Any) -> None:
    """Record with ``provider`` rather than OpenTelemetry's global one (None: the global again).

    For an application that keeps its own provider, and for tests (the global can be set once).
    """
    global _provider
    _provider = provider


def _tracer(trace: Any) -> Any:
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    return provider.get_tracer(TRACER)


def start(name: str, parent: Carrier | None = None, attributes: dict[str, Any] | None = None) -> Any:
    """Start a span (a child of ``parent`` when given, else of the current context); None without
    OpenTelemetry. End it with :func:`end`."""
    otel = _otel()
    if otel is None:
        return None
    propagate, trace = otel
    context = propagate.extract(parent) if parent else None
    return _tracer(trace).start_span(name, context=context, attributes=attributes or {})


def end(span: Any, **attributes: Any) -> None:
    if span is not None:
        if attributes:
            span.set_attributes(attributes)
        span.end()


def carrier(span: Any) -> Carrier | None:
    """``span``'s context as trace-context headers; None when there is nothing to carry."""
    otel = _otel()
    if otel is None or span is None:
        return None
    propagate, trace = otel
    out: Carrier = {}
    propagate.inject(out, context=trace.set_span_in_context(span))
    return out or None


def record_span(name: str, parent: Any, start_at: datetime, end_at: datetime, **attributes: Any) -> None:
    """A finished span between two known times (an acknowledgement's arrival, seen afterwards)."""
    otel = _otel()
    if otel is None or parent is None:
        return
    _, trace = otel
    span = _tracer(trace).start_span(
        name,
        context=trace.set_span_in_context(parent),
        start_time=int(start_at.timestamp() * 1e9),
        attributes=attributes,
    )
    span.end(end_time=max(int(end_at.timestamp() * 1e9), int(start_at.timestamp() * 1e9)))


def end_kill(span: Any, record: KillRecord, acks: Iterable[AckRow]) -> None:
    """End a kill's span, with one child per acknowledgement: kill issued → ack (who was slow)."""
    if span is None:
        return
    acked = 0
    for row in acks:
        acked += 1
        if row.time is not None:
            record_span(
                "mesh.kill.ack",
                span,
                record.issued_at,
                row.time,
                **{"mesh.agent_uri": row.agent_uri, "mesh.instance": row.instance, "mesh.status": row.status},
            )
    end(span, **{"mesh.command_id": record.command_id, "mesh.acked": acked})
