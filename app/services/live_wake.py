"""Telling every web process that a stream has new data: Redis pub/sub, off the publish hot path.

A publish in this process wakes its own readers directly (``LiveHub.wake``); this module carries the
same news to the other processes. ``announce`` only adds the stream's name to a set (the request pays a
lock and a set insert); a sender thread PUBLISHes the names gathered so far in one pipeline, so a burst
of requests costs one round trip. A listener thread receives the other processes' names and wakes the
local readers. Messages are ``<origin>|<log stream name>``; a process ignores its own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "bus:live:wake"
RETRY_S = 1.0  # Redis away: try again after this long (readers keep polling meanwhile)


class RedisWake:
    """Announces this process's appends and hears the other processes' ones on one Redis channel."""

    def __init__(self, url: str, channel: str, on_remote: Callable[[str], None]) -> None:
        import redis

        self.channel = channel
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client: Any = redis.Redis.from_url(url)
        self._on_remote = on_remote
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._has_news = threading.Event()
        self._sender: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    def announce(self, log_name: str) -> None:
        """Queue ``log_name`` for the other processes (never blocks on the network)."""
        with self._lock:
            self._pending.add(log_name)
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="live-wake-send", daemon=True)
                self._sender.start()
        self._has_news.set()

    def listen(self) -> None:
        """Start hearing the other processes (idempotent)."""
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen_loop, name="live-wake-listen", daemon=True)
                self._listener.start()

    def stop(self) -> None:
        """Stop both threads (tests, shutdown)."""
        self._stop.set()
        self._has_news.set()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._has_news.wait()
            self._has_news.clear()
            with self._lock:
                names, self._pending = self._pending, set()
            if not names:
                continue
            try:
                pipe = self._client.pipeline(transaction=False)
                for name in names:
                    pipe.publish(self.channel, f"{self.origin}|{name}")
                pipe.execute()
            except Exception:  # noqa: BLE001 - the other processes' readers still poll; do not stop
                logger.warning("live feed: Redis PUBLISH failed", exc_info=True)
                self._stop.wait(RETRY_S)

    def _listen_loop(self) -> None:
        mine = f"{self.origin}|".encode()
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data: bytes = message["data"]
                    if data.startswith(mine):
                        continue
                    _, _, name = data.decode("utf-8", "replace").partition("|")
                    if name:
                        self._on_remote(name)
            except Exception:  # noqa: BLE001 - Redis restarted: subscribe again after a moment
                logger.warning("live feed: Redis subscription lost; retrying", exc_info=True)
                self._stop.wait(RETRY_S)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()
