"""The Celery app the peer benchmark's workers run: one remote-control command, ``bench_halt``.

Started as ``celery -A bench.peer_celery_app worker ...`` by :mod:`bench.peer_celery`; the broker
is a local redis-server on loopback, given in ``BENCH_CELERY_BROKER``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.worker.control import control_command

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("bench_peer", broker=BROKER, backend=None)
app.conf.update(
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    control_queue_ttl=60,
    control_queue_expires=120,
)

HALTED = {"count": 0}


@control_command()  # type: ignore[untyped-decorator]
def bench_halt(state: Any, **kwargs: Any) -> dict[str, Any]:
    """The same job as our kill: flip a flag and acknowledge with a small report."""
    HALTED["count"] += 1
    return {"ok": "halted", "pid": os.getpid(), "count": HALTED["count"]}
