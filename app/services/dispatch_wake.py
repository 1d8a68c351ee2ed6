"""Waking the dispatcher's idle runners when their stream gets new events, instead of waiting for a poll.

Publishing already announces every append on Redis pub/sub for the live feed (``live_feed.published`` ->
``live_wake.RedisWake``: ``<origin>|<log stream name>`` on ``LIVE_WAKE_CHANNEL``). The dispatcher listens
on the same channel: one signal per publish, whichever process published. Without Redis there is no
signal and runners keep the event log's own long poll; with it, an idle runner still polls every
``WEBHOOK_IDLE_POLL_S``, so a lost message (Redis restarting) costs latency, never an event.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from app.services.live_wake import DEFAULT_CHANNEL, RedisWake

logger = logging.getLogger(__name__)


class Wakeups:
    """asyncio.Events per log stream, one per runner, all set from the Redis listener thread on an append.

    Each runner has its own event (``listen``): a runner clearing its event before a read must not swallow
    an announcement another runner of the same stream has not seen yet.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, redis: Any) -> None:
        self._loop = loop
        # Weak: a retired runner's event goes with the runner.
        self._events: dict[str, weakref.WeakSet[asyncio.Event]] = {}
        self._redis = redis

    @classmethod
    def start(cls, config: Mapping[str, Any], loop: asyncio.AbstractEventLoop) -> Wakeups | None:
        """Listen on the app's wake-up channel; None when the app has no Redis (runners poll the log)."""
        url = config.get("REDIS_URL")
        if not url:
            return None
        wake = cls(loop, None)
        wake._redis = RedisWake(url, config.get("LIVE_WAKE_CHANNEL") or DEFAULT_CHANNEL, wake.heard)
        wake._redis.listen()
        return wake

    def listen(self, log_name: str) -> asyncio.Event:
        """A new event, set whenever ``log_name`` is appended to (loop thread only; clear it before you look)."""
        ev = asyncio.Event()
        self._events.setdefault(log_name, weakref.WeakSet()).add(ev)
        return ev

    def heard(self, log_name: str) -> None:
        """Called from the listener thread: wake the runners of ``log_name``."""
        if not self._events.get(log_name):  # streams nobody here consumes are ignored without a loop hop
            return
        try:
            self._loop.call_soon_threadsafe(self._set, log_name)
        except RuntimeError:  # the loop closed: the dispatcher stopped
            pass

    def _set(self, log_name: str) -> None:
        for ev in list(self._events.get(log_name, ())):
            ev.set()

    def stop(self) -> None:
        """Stop listening."""
        if self._redis is not None:
            self._redis.stop()
