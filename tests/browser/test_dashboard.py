"""The dashboard as an operator uses it, in real headless Chromium: live fleet, kill, audit, resume."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from tests.browser.conftest import AGENT, BYSTANDER, TOKEN, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
#: The README's screenshot is refreshed only on request, so that `make test` leaves the tree clean:
#: MESH_UPDATE_SCREENSHOT=1 make test
SCREENSHOT = ROOT / "docs" / "dashboard.png"
#: Generous deadlines for what the page must show (auto-waiting, no sleeps, no timing assertion).
SOON = 15_000
N = 3


def _instances(page: Any, status: str | None = None) -> Any:
    selector = f'tr[data-testid="instance"][data-agent="{AGENT}"]'
    if status:
        selector += f'[data-status="{status}"]'
    return page.locator(selector)


def test_kill_and_resume_an_agent_from_the_page(
    settings: Settings, page_factory: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with running_stack(settings, token=TOKEN, instances=N, bystanders=1) as stack:
        page, errors = page_factory()
        page.goto(stack.url)

        # The fleet arrives by server-sent events: 3 active instances of the agent, grouped by org/env.
        expect(_instances(page, "active")).to_have_count(N, timeout=SOON)
        expect(page.locator('[data-testid="env"][data-env="acme/prod"]')).to_be_visible()
        expect(page.locator('[data-testid="env"][data-env="acme/staging"]')).to_be_visible()
        expect(page.locator('#summary [data-status="active"]')).to_have_attribute("data-count", str(N + 1))
        expect(page.get_by_test_id("live")).to_have_text("live")

        # Read-only until the operator token is entered.
        agent = page.locator(f'article[data-agent="{AGENT}"]')
        kill = agent.locator('.agent-head button[data-action="kill"]')
        expect(kill).to_be_disabled()
        expect(page.get_by_test_id("readonly-hint")).to_be_visible()
        page.locator("#user").fill("alice")
        page.locator("#token").fill(TOKEN)
        page.locator("#token-save").click()
        expect(page.get_by_test_id("mode")).to_have_attribute("data-mode", "operator")
        expect(kill).to_be_enabled()

        # Kill the agent: reason, confirmation, then the per-instance report.
        kill.click()
        dialog = page.get_by_test_id("confirm")
        expect(dialog).to_be_visible()
        expect(page.get_by_test_id("confirm-ok")).to_be_disabled()
        page.get_by_test_id("reason").fill("bad template in the spring campaign")
        page.get_by_test_id("confirm-ok").click()
        report = page.get_by_test_id("report")
        expect(report).to_be_visible(timeout=SOON)
        expect(report.locator('[data-testid="report-row"][data-status="paused"]')).to_have_count(N)
        expect(report.locator("#report-summary")).to_contain_text(f"{N} of {N}")
        expect(report.locator("#report-summary")).to_contain_text("dashboard:alice")

        # Without reloading, every instance turns paused and the kill is in the audit log.
        expect(_instances(page, "paused")).to_have_count(N, timeout=SOON)
        kill_entry = page.locator('#audit li[data-type="kill"]').first
        expect(kill_entry).to_contain_text(AGENT)
        expect(kill_entry).to_contain_text("by dashboard:alice")
        expect(kill_entry).to_contain_text("bad template in the spring campaign")
        expect(page.locator('#audit li[data-type="halted"]')).to_have_count(N, timeout=SOON)
        page.get_by_test_id("report-close").click()
        expect(report).to_be_hidden()
        expect(page.locator('#summary [data-status="paused"]')).to_have_attribute("data-count", str(N))
        bystander = page.locator(f'tr[data-testid="instance"][data-agent="{BYSTANDER}"]')
        expect(bystander).to_have_attribute("data-status", "active")
        shot = SCREENSHOT if os.environ.get("MESH_UPDATE_SCREENSHOT") else tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000  # a real rendering, not a blank page

        # Resume: the instances become active again, still without a reload.
        agent.locator('.agent-head button[data-action="resume"]').click()
        page.get_by_test_id("reason").fill("template fixed")
        page.get_by_test_id("confirm-ok").click()
        expect(report).to_be_visible(timeout=SOON)
        expect(report.locator("#report-title")).to_have_text(f"Resume {AGENT}")
        page.get_by_test_id("report-close").click()
        expect(_instances(page, "active")).to_have_count(N, timeout=SOON)
        expect(page.locator('#audit li[data-type="resume"]').first).to_contain_text("template fixed")

        # One instance only: its own Kill button halts it and leaves its siblings running.
        one = _instances(page).first
        one.locator('button[data-action="kill"]').click()
        page.get_by_test_id("reason").fill("this replica loops")
        page.get_by_test_id("confirm-ok").click()
        expect(report.locator('[data-testid="report-row"]')).to_have_count(1, timeout=SOON)
        page.get_by_test_id("report-close").click()
        expect(one).to_have_attribute("data-status", "paused", timeout=SOON)
        expect(_instances(page, "active")).to_have_count(N - 1)
        one.locator('button[data-action="resume"]').click()
        page.get_by_test_id("reason").fill("fixed")
        page.get_by_test_id("confirm-ok").click()
        expect(report).to_be_visible(timeout=SOON)
        page.get_by_test_id("report-close").click()
        expect(_instances(page, "active")).to_have_count(N, timeout=SOON)

        # "Stop everything" needs the typed confirmation before its button unlocks.
        page.get_by_test_id("stop-all").click()
        page.get_by_test_id("reason").fill("drill")
        expect(page.get_by_test_id("confirm-ok")).to_be_disabled()
        page.get_by_test_id("typed-confirm").fill("stop everything")
        expect(page.get_by_test_id("confirm-ok")).to_be_disabled()
        # The exact text unlocks it, and it stops every agent, the bystander in another env too.
        page.get_by_test_id("typed-confirm").fill("STOP EVERYTHING")
        expect(page.get_by_test_id("confirm-ok")).to_be_enabled()
        page.get_by_test_id("confirm-ok").click()
        expect(report).to_be_visible(timeout=SOON)
        expect(report.locator('[data-testid="report-row"][data-status="paused"]')).to_have_count(
            N + 1, timeout=SOON
        )
        page.get_by_test_id("report-close").click()
        expect(_instances(page, "paused")).to_have_count(N, timeout=SOON)
        expect(bystander).to_have_attribute("data-status", "paused", timeout=SOON)
        assert [r.target for r in stack.call(_records, stack.settings)] == ["agent://*/*/*"]

        # The API itself refuses a kill without the token, or with a wrong one.
        body = json.dumps({"target": AGENT, "reason": "no token", "user": "mallory"})
        headers = {"Content-Type": "application/json"}
        assert page.request.post(f"{stack.url}api/kill", data=body, headers=headers).status == 401
        wrong = {**headers, "Authorization": "Bearer not-the-token"}
        assert page.request.post(f"{stack.url}api/kill", data=body, headers=wrong).status == 403
        everything = json.dumps({"target": "agent://*/*/*", "reason": "x", "user": "alice"})
        right = {**headers, "Authorization": f"Bearer {TOKEN}"}
        assert page.request.post(f"{stack.url}api/kill", data=everything, headers=right).status == 400

        errors.check()
        page.close()


def test_without_a_token_the_dashboard_is_read_only(settings: Settings, page_factory: Any) -> None:
    from playwright.sync_api import expect

    with running_stack(settings, token=None, instances=1) as stack:
        page, errors = page_factory()
        page.goto(stack.url)
        expect(_instances(page, "active")).to_have_count(1, timeout=SOON)
        expect(page.get_by_test_id("mode")).to_have_attribute("data-mode", "readonly")
        hint = page.get_by_test_id("readonly-hint")
        expect(hint).to_be_visible()
        expect(hint).to_contain_text("MESH_DASHBOARD_TOKEN")
        expect(page.locator("#token-form")).to_be_hidden()
        for button in page.locator("button[data-action]").all():
            expect(button).to_be_disabled()
        expect(page.get_by_test_id("stop-all")).to_be_disabled()

        body = json.dumps({"target": AGENT, "reason": "nope", "user": "mallory"})
        for headers in ({}, {"Authorization": "Bearer anything-at-all"}):
            response = page.request.post(
                f"{stack.url}api/kill", data=body, headers={"Content-Type": "application/json", **headers}
            )
            assert response.status == 403
            assert re.search("read-only", response.json()["error"])
        assert (
            page.request.post(
                f"{stack.url}api/resume", data=body, headers={"Content-Type": "application/json"}
            ).status
            == 403
        )
        # Nothing was killed: no kill record, no KILL event (each refusal was answered after any
        # write it could have made), and the instance is still listed active.
        assert stack.call(_records, stack.settings) == []
        assert [e for e in stack.call(_events, stack.settings) if e.type.value == "kill"] == []
        expect(_instances(page, "active")).to_have_count(1)
        errors.check()
        page.close()


async def _records(settings: Settings) -> list[Any]:
    async with AsyncMesh(settings) as op:
        return list(await op.records())


async def _events(settings: Settings) -> list[Any]:
    async with AsyncMesh(settings) as op:
        return [e async for e in op.events()]


def test_page_errors_are_collected(page_factory: Any) -> None:
    """The error check itself works: a page that throws is caught."""
    page, errors = page_factory()
    page.set_content("<script>throw new Error('boom')</script>")
    assert any("boom" in m for m in errors.messages)
    with pytest.raises(AssertionError, match="boom"):
        errors.check()
    errors.messages.clear()
    errors.check()  # and passes once nothing is left
