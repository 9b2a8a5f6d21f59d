"""The gateway's pure parts alone: usage parsing, prices, config, keys, refusal grouping, formats."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import InstanceNotAllowed, Refused, RevokedKey, UnknownKey
from gateway.formats import error_body, sse_error_event
from gateway.keys import DEFAULT_INSTANCE, KeyRecord, check_key_shape, hash_key, new_key, resolve_identity
from gateway.mcp import tool_counter
from gateway.prices import DEFAULT_PRICES, PriceTable, load_prices
from gateway.refusals import Refusals
from gateway.usage import SSEUsage, usage_from_body
from mesh.errors import ConfigError
from mesh.protocol.models import EventType, KillRecord, utcnow


def test_usage_from_bodies_of_each_api() -> None:
    chat = usage_from_body(b'{"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}')
    assert (chat.model, chat.input_tokens, chat.output_tokens) == ("gpt-4o", 5, 2)
    resp = usage_from_body(
        b'{"model": "m", "usage": {"input_tokens": 9, "output_tokens": 3,'
        b' "input_tokens_details": {"cached_tokens": 4}}}'
    )
    assert (resp.input_tokens, resp.output_tokens, resp.cached_input_tokens) == (9, 3, 4)
    claude = usage_from_body(
        b'{"model": "c", "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 6,'
        b' "cache_creation_input_tokens": 2}}'
    )
    assert (claude.input_tokens, claude.cached_input_tokens) == (18, 6)
    for junk in (b"not json", b"[]", b'{"usage": "lots"}', b'{"usage": {"prompt_tokens": -5}}'):
        assert not usage_from_body(junk)


def test_sse_usage_survives_chunks_split_anywhere() -> None:
    stream = (
        b'data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"x"}}]}\n\n'
        b'data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    for size in (1, 7, 64, len(stream)):
        m = SSEUsage("openai")
        for i in range(0, len(stream), size):
            m.feed(stream[i : i + size])
        assert (m.usage.model, m.usage.input_tokens, m.usage.output_tokens) == ("gpt-4o-mini", 20, 3)


def test_sse_usage_anthropic_start_and_delta() -> None:
    m = SSEUsage("anthropic")
    start = {
        "type": "message_start",
        "message": {"model": "claude-x", "usage": {"input_tokens": 25, "output_tokens": 1}},
    }
    m.feed(b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n")
    m.feed(b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":4}}\n\n')
    assert (m.usage.model, m.usage.input_tokens, m.usage.output_tokens) == ("claude-x", 25, 4)


def test_prices_longest_prefix_and_unknown() -> None:
    table = load_prices()
    assert table.price("gpt-4o-mini-2024-07-18") == table.models["gpt-4o-mini"]
    assert table.price("gpt-4o-2024-08-06") == table.models["gpt-4o"]
    assert table.cost("no-such-model", 10, 10) is None
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    # Cached input priced at its own rate.
    assert table.cost("gpt-4o-mini", 1_000_000, 0, cached_input=1_000_000) == pytest.approx(0.075)
    assert DEFAULT_PRICES.is_file()
    assert PriceTable({}).cost("x", 1, 1) is None


def test_bad_price_tables(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[models."m"]\ninput = -1\noutput = 1\n')
    with pytest.raises(ConfigError, match="input"):
        load_prices(bad)
    bad.write_text("[models\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_prices(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_prices(tmp_path / "missing.toml")


def test_config_credentials_only_by_reference(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text('[upstreams.openai]\nkind = "openai"\nbase_url = "http://x/v1"\napi_key = "sk-inline"\n')
    with pytest.raises(ConfigError, match="not in the config file") as info:
        load_config(f, env={})
    assert "sk-inline" not in str(info.value)
    f.write_text('[upstreams.openai]\nkind = "openai"\nbase_url = "http://x/v1"\napi_key_env = "K"\n')
    with pytest.raises(ConfigError, match="K"):
        load_config(f, env={})
    cfg = load_config(f, env={"K": "sk-from-env"})
    up = cfg.upstreams["openai"]
    assert up.api_key is not None and up.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(cfg) and "sk-from-env" not in cfg.model_dump_json()
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n")
    f.write_text(f'[upstreams.a]\nkind = "anthropic"\nbase_url = "http://y"\napi_key_file = "{secret}"\n')
    cfg = load_config(f, env={}, port=1234)
    assert cfg.port == 1234 and cfg.default_upstream("anthropic") is not None
    assert cfg.upstreams["a"].api_key.get_secret_value() == "sk-from-file"  # type: ignore[union-attr]
    f.write_text('[upstreams.a]\nkind = "nope"\nbase_url = "ftp://y"\n')
    with pytest.raises(ConfigError, match="invalid gateway config"):
        load_config(f, env={})


def test_keys_identity_and_instance_narrowing() -> None:
    key = new_key()
    assert key.startswith("mk-") and len(hash_key(key)) == 64 and hash_key(key) != hash_key(new_key())
    assert check_key_shape(key) == key
    for bad in (None, "", "sk-openai", "mk-" + "x" * 200, "mk-é"):
        with pytest.raises(UnknownKey):
            check_key_shape(bad)
    free = KeyRecord(id="a" * 12, agent_uri="agent://acme/prod/mailer")
    assert resolve_identity(free, None).instance == DEFAULT_INSTANCE
    assert resolve_identity(free, "w7").instance == "w7"
    with pytest.raises(InstanceNotAllowed):
        resolve_identity(free, "bad.instance")
    pinned = free.model_copy(update={"instance": "w1"})
    assert resolve_identity(pinned, None).instance == "w1"
    assert resolve_identity(pinned, "w1").instance == "w1"
    with pytest.raises(InstanceNotAllowed, match="w1"):
        resolve_identity(pinned, "w2")
    with pytest.raises(RevokedKey, match="a" * 12):
        resolve_identity(free.model_copy(update={"revoked_at": utcnow()}), None)
    with pytest.raises(UnknownKey):
        resolve_identity(None, None)


def test_refusals_group_per_instance_and_record() -> None:
    r = Refusals()
    t = utcnow()
    for i in range(100):
        r.add(
            "agent://a/b/c",
            "i1",
            "/v1/chat/completions",
            "killed",
            command_id="k1",
            now=t + timedelta(milliseconds=i),
        )
    r.add("agent://a/b/c", "i1", "/v1/messages", "killed", command_id="k1", now=t)
    r.add("agent://a/b/c", "i2", "/v1/messages", "killed", command_id="k1", now=t)
    r.add("agent://a/b/c", "i1", "/v1/messages", "killed again", command_id="k2", now=t)
    events = r.drain("gw")
    assert len(events) == 3 and len(r) == 0 and r.total == 103
    first = next(e for e in events if e.instance == "i1" and e.command_id == "k1")
    assert first.type == EventType.GATEWAY_REFUSED and first.data["count"] == 101
    assert first.data["routes"] == {"/v1/chat/completions": 100, "/v1/messages": 1}
    assert r.drain("gw") == []


def test_error_formats_name_the_record() -> None:
    rec = KillRecord(target="agent://acme/*/*", actor="alice", reason="stop")
    exc = Refused("agent killed by alice", rec, "acme._._")
    oa = error_body("openai", exc)
    assert oa["error"]["code"] == "agent_killed" and oa["error"]["mesh"]["actor"] == "alice"
    an = error_body("anthropic", exc)
    assert an["type"] == "error" and an["error"]["type"] == "permission_error"
    assert an["mesh"]["key"] == "acme._._"
    assert sse_error_event("anthropic", exc).startswith(b"event: error\ndata: ")
    assert json.loads(sse_error_event("openai", exc)[6:])["error"]["mesh"]["reason"] == "stop"
    closed = error_body("openai", Refused("fail closed"))
    assert closed["error"]["mesh"]["fail_closed"] is True


def test_tool_counter_is_a_valid_counter_name() -> None:
    assert tool_counter("mail", "send_email") == "mcp_mail_send_email"
    assert tool_counter("mail", "send.email/v2 ü") == "mcp_mail_send_email_v2__"
    assert len(tool_counter("m", "x" * 200)) == 64


def test_sse_usage_responses_api_completed_event() -> None:
    m = SSEUsage("openai")
    created = {"type": "response.created", "response": {"model": "gpt-4o", "usage": None}}
    m.feed(b"event: response.created\ndata: " + json.dumps(created).encode() + b"\n\n")
    m.feed(b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n')
    done = {
        "type": "response.completed",
        "response": {"model": "gpt-4o", "usage": {"input_tokens": 9, "output_tokens": 3}},
    }
    m.feed(b"event: response.completed\ndata: " + json.dumps(done).encode() + b"\n\n")
    assert (m.usage.model, m.usage.input_tokens, m.usage.output_tokens) == ("gpt-4o", 9, 3)
