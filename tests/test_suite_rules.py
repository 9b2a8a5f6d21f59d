"""The suite's own rules, checked statically over tests/: every test can fail, nothing is timed.

- no ``assert True`` (or any assert of a constant);
- no assertion on elapsed time (``time.monotonic() - t0 < X``, ``elapsed < X``): a bound that only
  stops a hang belongs in a wait helper (tests/waiting.py) or pytest-timeout;
- every ``time.sleep``/``asyncio.sleep``/``anyio.sleep`` call in any file under tests/ (helpers
  too), other than a sleep of a literal ``0`` (one loop turn), is either a poll, inside the body of
  a ``while`` loop of the same function whose test is not a constant (``while True:`` re-checks
  nothing), or says why a fixed pause is right there: ``# sleep-ok: <why>`` with a non-empty
  reason, at the end of the line the call starts on or on a comment line right above it;
- no marker or pytest call that expects a failure or skips a test (``BANNED_MARKS``, ``BANNED_CALLS``;
  their names are built from pieces so that a grep for them does not flag this checker). A missing
  system tool fails too (``missing_tool`` in tests/conftest.py): `make test` installs them;
- every test function asserts something: an ``assert``, ``pytest.raises``/``pytest.fail``, or a
  call of a checking helper (``expect``, ``assert_*``, ``check*``, ``wait_*``, ``*eventually``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SLEEPS = {("time", "sleep"), ("asyncio", "sleep"), ("anyio", "sleep")}
CLOCKS = {"monotonic", "time", "perf_counter", "monotonic_ns", "perf_counter_ns"}
TIMING_NAMES = ("elapsed", "duration", "took", "took_s")
XFAIL, SKIP = "x" + "fail", "sk" + "ip"
BANNED_MARKS = {XFAIL, SKIP, SKIP + "if"}
BANNED_CALLS = {XFAIL, "importor" + SKIP, SKIP}
SLEEP_OK = re.compile(r"#\s*sleep-ok:\s*\S")
UNJUSTIFIED = "fixed sleep outside a `while <condition>` poll (wait for a condition, or `# sleep-ok: <why>`)"
CHECKER_PREFIXES = ("assert", "check", "expect", "wait_", "await_", "eventually", "_assert", "_check")


def _files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _is_test(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")


def _unpolled_sleeps(tree: ast.AST) -> Iterator[ast.Call]:
    """The sleep calls (not of a literal 0) outside the body of a ``while <condition>`` poll of
    their own function; a nested function or class starts again outside any poll."""
    scopes = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, polled = stack.pop()
        if isinstance(node, ast.Call) and _pausing_sleep(node) and not polled:
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, scopes):
                stack.append((child, False))
            elif isinstance(node, ast.While) and not isinstance(node.test, ast.Constant):
                stack.append((child, polled or child in node.body))
            else:
                stack.append((child, polled))


def _justified(lines: list[str], lineno: int) -> bool:
    """``# sleep-ok: <why>`` ends the call's first line or is the comment line right above it."""
    here = lines[lineno - 1]
    above = lines[lineno - 2].strip() if lineno > 1 else ""
    return bool(SLEEP_OK.search(here) or (above.startswith("#") and SLEEP_OK.match(above)))


def _clock_call(node: ast.AST) -> bool:
    return any(
        isinstance(sub, ast.Call) and len(name := _dotted(sub.func)) > 1 and name[-1] in CLOCKS
        for sub in ast.walk(node)
    )


def _reads_clock(node: ast.AST) -> bool:
    """A duration: a clock reading minus something, or a name that says it holds one.

    ``time.monotonic() < deadline`` is a hang bound, not a duration, and is not flagged."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub) and _clock_call(sub):
            return True
        if isinstance(sub, ast.Name) and any(t in sub.id.lower() for t in TIMING_NAMES):
            return True
        if isinstance(sub, ast.Attribute) and any(t in sub.attr.lower() for t in TIMING_NAMES):
            return True
    return False


def _timing_assert(node: ast.Assert) -> bool:
    ordering = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
    return any(
        isinstance(sub, ast.Compare) and any(isinstance(op, ordering) for op in sub.ops) and _reads_clock(sub)
        for sub in ast.walk(node.test)
    )


def _pausing_sleep(call: ast.Call) -> bool:
    """A sleep call that pauses: anything but ``sleep(0)``, which only yields one loop turn."""
    name = _dotted(call.func)
    if len(name) < 2 or (name[-2], name[-1]) not in SLEEPS:
        return False
    arg = call.args[0] if call.args else None
    return not (isinstance(arg, ast.Constant) and arg.value == 0 and not isinstance(arg.value, bool))


def _checks_something(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name[:1] == ("pytest",) and name[-1] in {"raises", "fail", "warns"}:
                return True
            if name and name[-1].lstrip("_").startswith(tuple(p.lstrip("_") for p in CHECKER_PREFIXES)):
                return True
    return False


def violations(path: Path, rel: str | None = None) -> list[str]:
    rel = rel or path.relative_to(TESTS).as_posix()
    return source_violations(path.read_text(), rel)


def source_violations(source: str, rel: str) -> list[str]:
    """The rule breaks in ``source``, the text of tests/``rel``."""
    lines = source.splitlines()
    tree = ast.parse(source, filename=rel)
    out: list[str] = []

    def where(node: ast.AST) -> str:
        return f"tests/{rel}:{getattr(node, 'lineno', 0)}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            if isinstance(node.test, ast.Constant):
                out.append(f"{where(node)}: assert of a constant cannot fail")
            if _timing_assert(node):
                out.append(f"{where(node)}: timing assertion (a duration bound belongs in bench/)")
        marks = {("pytest", "mark"), ("mark",)}
        if isinstance(node, ast.Attribute) and node.attr in BANNED_MARKS and _dotted(node)[:-1] in marks:
            out.append(f"{where(node)}: pytest.mark.{node.attr} (a test that cannot fail)")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name[:1] == ("pytest",) and len(name) == 2 and name[1] in BANNED_CALLS:
                out.append(f"{where(node)}: pytest.{name[1]}() (a test that cannot fail)")
    for call in sorted(_unpolled_sleeps(tree), key=lambda c: c.lineno):
        if not _justified(lines, call.lineno):
            out.append(f"{where(call)}: {UNJUSTIFIED}")
    for fn in ast.walk(tree):
        if _is_test(fn) and not _checks_something(fn):
            out.append(f"{where(fn)}: {fn.name} asserts nothing")  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.relative_to(TESTS).as_posix())
def test_file_keeps_the_suite_rules(path: Path) -> None:
    assert violations(path) == []


BAD = f"""
import asyncio, time, pytest

@pytest.mark.{XFAIL}(strict=False)
def test_a():
    assert True

async def test_b():
    t0 = time.monotonic()
    await asyncio.sleep(0.5)
    assert time.monotonic() - t0 < 30

def test_c():
    elapsed = 3
    time.sleep(1)  # sleep-ok: the pause is the point here
    assert elapsed <= 5

def test_d():
    pytest.{SKIP}("later")
    x = 1
"""


def test_the_checker_catches_each_rule(tmp_path: Path) -> None:
    """The check itself can fail: a file breaking every rule once is reported rule by rule."""
    bad = tmp_path / "test_probe.py"
    bad.write_text(BAD)
    found = violations(bad, rel="test_probe.py")
    text = "\n".join(found)
    assert f"pytest.mark.{XFAIL}" in text
    assert "assert of a constant" in text
    assert text.count("timing assertion") == 2
    assert text.count(UNJUSTIFIED) == 1  # the `# sleep-ok:` line is allowed
    assert f"pytest.{SKIP}() (a test that cannot fail)" in text
    assert "test_d asserts nothing" in text


HELPER_SLEEPS = """
import asyncio, time

def settle():
    time.sleep(0.5)

async def waits_without_a_reason():
    await asyncio.sleep(1)  # sleep-ok:

async def spins_forever():
    while True:
        await asyncio.sleep(0.1)

async def poll(ready):
    while not ready():
        await asyncio.sleep(0.02)

def pause():
    time.sleep(2)  # sleep-ok: the fault's own duration

async def backoff():
    # sleep-ok: a fake upstream's simulated work
    await asyncio.sleep(0.3)

async def one_turn():
    await asyncio.sleep(0)
"""


def test_the_sleep_rule_reaches_helpers_and_spares_polls_and_reasons() -> None:
    """A helper's bare sleep, an empty reason and a ``while True`` pause are flagged; a poll, a
    sleep with its reason (on its line or the one above) and ``sleep(0)`` are not."""
    found = source_violations(HELPER_SLEEPS, "probe_helpers.py")
    assert found == [f"tests/probe_helpers.py:{n}: {UNJUSTIFIED}" for n in (5, 8, 12)]
