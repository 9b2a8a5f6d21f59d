"""SIGTERM stops an agent the way Ctrl+C does, so it reports ``stopped`` instead of vanishing.

Only where the application left SIGTERM at its default (the process would die without cleanup)
and only in the main thread: an application that handles SIGTERM itself keeps its handler.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType

__all__ = ["TERM_EXIT_CODE", "release_sigterm", "stop_on_sigterm"]

TERM_EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_lock = threading.Lock()
_holders = 0
_tasks: set[asyncio.Task[object]] = set()
_loop: asyncio.AbstractEventLoop | None = None


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(TERM_EXIT_CODE)


def _cancel_tasks() -> None:
    for task in list(_tasks):
        task.cancel()


def stop_on_sigterm(task: asyncio.Task[object] | None = None) -> bool:
    """Turn SIGTERM into a stop while an agent runs; True if this call holds the handler.

    Sync agents get ``SystemExit`` raised in the main thread (their ``with`` block unwinds);
    async agents get ``task`` (the one that started the agent) cancelled, as asyncio.run does
    for Ctrl+C. Every holder must call ``release_sigterm`` once.
    """
    global _holders, _loop
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if _holders == 0:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return False
            if task is None:
                signal.signal(signal.SIGTERM, _raise_exit)
            else:
                _loop = task.get_loop()
                _loop.add_signal_handler(signal.SIGTERM, _cancel_tasks)
        elif task is not None and _loop is None:
            return False  # a sync agent holds SIGTERM already; its SystemExit covers us too
        _holders += 1
        if task is not None:
            _tasks.add(task)
        return True


def release_sigterm(task: asyncio.Task[object] | None = None) -> None:
    """Give the handler back; the last holder restores SIGTERM's default."""
    global _holders, _loop
    with _lock:
        if task is not None:
            _tasks.discard(task)
        _holders = max(0, _holders - 1)
        if _holders:
            return
        if _loop is not None:
            if not _loop.is_closed():
                _loop.remove_signal_handler(signal.SIGTERM)
            _loop = None
        elif threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
