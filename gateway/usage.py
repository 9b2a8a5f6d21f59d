"""Token usage out of LLM responses (pure): whole JSON bodies, and SSE streams event by event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SSEUsage", "Usage", "usage_from_body"]

Api = Literal["openai", "anthropic"]


@dataclass(slots=True)
class Usage:
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _read(usage: Any, into: Usage) -> None:
    """OpenAI chat (prompt/completion_tokens), Responses and Anthropic (input/output_tokens)."""
    if not isinstance(usage, dict):
        return
    into.input_tokens = (
        _int(usage.get("prompt_tokens")) or _int(usage.get("input_tokens")) or into.input_tokens
    )
    # Anthropic counts cache reads and writes apart from input_tokens; they are input too.
    into.input_tokens += _int(usage.get("cache_creation_input_tokens")) + _int(
        usage.get("cache_read_input_tokens")
    )
    out = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens"))
    into.output_tokens = out or into.output_tokens
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    if isinstance(details, dict):
        into.cached_input_tokens = _int(details.get("cached_tokens")) or into.cached_input_tokens
    into.cached_input_tokens += _int(usage.get("cache_read_input_tokens"))


def usage_from_body(body: bytes) -> Usage:
    """The usage of a non-streamed response; empty when the body has none (or is not JSON)."""
    out = Usage()
    try:
        data = json.loads(body)
    except ValueError:
        return out
    if not isinstance(data, dict):
        return out
    if isinstance(data.get("model"), str):
        out.model = data["model"]
    _read(data.get("usage"), out)
    return out


class SSEUsage:
    """Fed the raw bytes of a stream as they pass; keeps the usage the events report.

    OpenAI chat sends usage in a last chunk (with ``stream_options.include_usage``); the Responses
    API in ``response.completed``; Anthropic input in ``message_start`` and output in
    ``message_delta``. Only ``data:`` lines that mention usage are parsed, so the cost per chunk
    is a substring search.
    """

    def __init__(self, api: Api) -> None:
        self.api = api
        self.usage = Usage()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > 1024 * 1024:  # a line without end: not SSE as we know it; stop buffering
            self._tail = b""
        for line in lines:
            if line.startswith(b"data:") and (b'"usage"' in line or b'"model"' in line[:200]):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        # Anthropic: {"type": "message_start", "message": {"model", "usage"}}; Responses: "response".
        inner = data.get("message") or data.get("response")
        holder = inner if isinstance(inner, dict) else data
        if isinstance(holder.get("model"), str) and not self.usage.model:
            self.usage.model = holder["model"]
        usage = holder.get("usage") if "usage" in holder else data.get("usage")
        if self.api == "anthropic" and isinstance(usage, dict):
            # message_delta carries the running output count (and repeats input as 0 or a total).
            if _int(usage.get("input_tokens")) or _int(usage.get("cache_read_input_tokens")):
                self.usage.input_tokens = 0
                self.usage.cached_input_tokens = 0
                _read(usage, self.usage)
            else:
                self.usage.output_tokens = _int(usage.get("output_tokens")) or self.usage.output_tokens
            return
        _read(usage, self.usage)
