"""Long-running loops stop when their owner closes, whatever state their connection is in (issue 22)."""

from __future__ import annotations

import asyncio

from controller.lifecycle import LifecycleFeed
from controller.state import Fleet
from controller.stats import Stats
from mesh.runtime.aio import stop_tasks
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

HANG_BOUND = 10.0  # only stops a hang; a loop that ends at all ends in well under a second


async def _ok() -> bool:
    return True


def _feed(conn: Connection) -> LifecycleFeed:
    return LifecycleFeed(conn, Fleet(), Stats(), lambda _t: None, _ok, durable="test-lifecycle")


async def _until_consuming(conn: Connection) -> None:
    """Wait until the feed's durable exists: it is then inside its fetch loop."""
    for _ in range(200):
        try:
            await conn.js.consumer_info(conn.ns.audit_stream, "test-lifecycle")
            return
        except Exception:
            # sleep-ok: the poll interval: the loop retries the lookup until the consumer exists
            await asyncio.sleep(0.05)
    raise AssertionError("the lifecycle feed never created its consumer")


async def test_the_lifecycle_feed_ends_by_itself_when_its_connection_is_closed_under_it(
    settings: Settings, conn: Connection
) -> None:
    own = await Connection.open(settings, name="feed")
    task = asyncio.create_task(_feed(own).run())
    await _until_consuming(conn)
    await own.close()
    # Before the fix the feed retried "not connected" every few seconds, forever.
    done, _ = await asyncio.wait({task}, timeout=HANG_BOUND)
    assert task in done, "the feed kept retrying on a closed connection"
    assert task.exception() is None


async def test_the_lifecycle_feed_ends_on_cancel_while_its_connection_closes(
    settings: Settings, conn: Connection
) -> None:
    own = await Connection.open(settings, name="feed")
    task = asyncio.create_task(_feed(own).run())
    await _until_consuming(conn)
    # The shape of `mesh up`'s Ctrl+C: the owner closes the connection and cancels the task at once,
    # so nats-py's fetch sees the cancel on a closing connection and raises ConnectionClosedError.
    closing = asyncio.create_task(own.close())
    task.cancel()
    stuck = await stop_tasks([task], timeout=HANG_BOUND)
    await closing
    assert stuck == set()
    assert task.cancelled() or task.exception() is None
