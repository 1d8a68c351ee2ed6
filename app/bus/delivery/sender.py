"""Async webhook HTTP sender: one pooled keep-alive aiohttp session per event loop, bounded reads, no exceptions."""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from app.bus.delivery.retry import RETRY_AFTER_STATUSES, parse_retry_after
from app.bus.delivery.ssrf import GuardedResolver, RefusedAddress

logger = logging.getLogger(__name__)

MAX_EXCERPT_BYTES = 4096
# After the excerpt we drain at most this much more so that the connection can go back to the pool;
# a longer body costs more than a new connection, so we drop the connection instead.
MAX_DRAIN_BYTES = 64 * 1024
# Idle pooled connections are dropped after this (httpx's default, kept): at or under the idle timeout of
# common servers (Node 5 s, nginx 75 s), so that a request rarely goes out on a connection being closed.
KEEPALIVE_S = 5.0


@dataclass(slots=True)
class AttemptResult:
    """One delivery attempt; ``error`` is set exactly when no HTTP status was received (status_code None)."""

    status_code: int | None
    duration_ms: float
    response_excerpt: str | None
    error: str | None
    retry_after_s: float | None


class WebhookSender:
    """POSTs deliveries over a pooled HTTP/1.1 keep-alive session, one per event loop it is used from."""

    def __init__(
        self,
        timeout_s: float = 15.0,
        max_connections: int = 1000,
        user_agent: str = "apg-event-bus/0.1",
        dns_cache_ttl_s: int = 10,
        allow_private: bool = False,
    ) -> None:
        """``allow_private``: connect to names resolving to loopback, private or link-local addresses too."""
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.max_connections = max_connections
        self.user_agent = user_agent
        # Short: the SSRF guard checks the name's addresses per batch, the pool should not outlive a DNS change.
        self.dns_cache_ttl_s = dns_cache_ttl_s
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # An aiohttp session belongs to the loop it was created in: created lazily, in the loop that sends.
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        weakref.finalize(self, _close_abandoned, self._sessions)

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _session(self) -> aiohttp.ClientSession:
        """The running loop's session, created on first use."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._new_session(loop)
        return session

    def _new_session(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        """A session for ``loop`` (replacing a closed one), with the pool and guard every delivery goes through."""
        for old in [lp for lp in self._sessions if lp.is_closed()]:
            del self._sessions[old]  # its loop is gone: nothing can close it any more
        session = self._sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.max_connections, ttl_dns_cache=self.dns_cache_ttl_s, keepalive_timeout=KEEPALIVE_S,
                # The SSRF guard on the addresses actually connected to (DNS rebinding), not only on a lookup
                # made before; with private targets allowed there is nothing to check.
                resolver=None if self.allow_private else GuardedResolver(),
            ),
            timeout=self._timeout(self.timeout_s),
            # No proxies, .netrc credentials or env CA overrides picked up by accident: deliveries go
            # straight to the checked URL and never carry credentials meant for something else.
            trust_env=False,
            # The excerpt is the bytes as sent; a compressed answer is not inflated (no zip bombs).
            auto_decompress=False,
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
            cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies must never reach another
            raise_for_status=False,
        )
        return session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """One overall deadline (connect, pool wait, send, headers and body read), cached per value."""
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> AttemptResult:
        """POST body to url; never raises for network trouble (timeouts and errors land in the result)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        excerpt = bytearray()
        error: str | None = None
        try:
            # The total timeout bounds the whole attempt, body included, so that a receiver dripping one
            # byte at a time cannot hold a delivery slot forever. A redirect is the receiver's
            # misconfiguration, and following it would bypass the SSRF check.
            async with self._session().post(
                url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout(timeout)
            ) as response:
                status = response.status
                if status in RETRY_AFTER_STATUSES:  # the only answers whose Retry-After is honoured
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                await _read_excerpt(response, excerpt)
        except TimeoutError:  # aiohttp's timeouts (ServerTimeoutError, ...) are TimeoutErrors too
            if status is None:
                error = f"timeout after {timeout:g}s"
            else:  # the receiver answered; a slow body does not change its verdict
                logger.debug("timeout reading the response body from %s", url)
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a URL yarl cannot parse
            if status is None:
                error = _describe(exc)
            else:
                logger.debug("error reading the response body from %s: %s", url, exc)
        # Inline rather than a helper: this runs once per delivery, on the dispatcher's busiest thread.
        text = excerpt.decode("utf-8", errors="replace") if status is not None else None
        return AttemptResult(status, (time.perf_counter() - started) * 1000.0, text, error, retry_after)

    async def aclose(self) -> None:
        """Close the pooled connections: this loop's session now, another running loop's on that loop."""
        sessions = dict(self._sessions)
        self._sessions.clear()
        current = asyncio.get_running_loop()
        for loop, session in sessions.items():
            if loop is current:
                await session.close()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(session.close(), loop)  # not awaited: that loop may wait on us
            # A closed or idle loop's session cannot be closed from here; its sockets close when collected.


def _close_abandoned(sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession]) -> None:
    """Close the sessions a sender dropped (or alive at exit) without aclose(), where their idle loop allows it."""
    # A thread's long-lived loop (dispatch_send.run_sync) is idle between runs and never closes its courier:
    # close its connections here instead of leaving aiohttp to log "Unclosed client session" at exit.
    for loop, session in list(sessions.items()):
        if session.closed or loop.is_running() or loop.is_closed():
            continue
        try:
            loop.run_until_complete(session.close())
        except RuntimeError:  # another loop runs in this thread: leave it to the garbage collector
            pass
    sessions.clear()


async def _read_excerpt(response: aiohttp.ClientResponse, excerpt: bytearray) -> None:
    """Keep the first 4 KB of the body; drain a little more to reuse the connection, else drop it."""
    content = response.content
    while len(excerpt) < MAX_EXCERPT_BYTES:
        chunk = await content.read(MAX_EXCERPT_BYTES - len(excerpt))
        if not chunk:
            return  # the whole body read: the connection goes back to the pool
        excerpt += chunk
        if content.at_eof():
            return  # the usual short answer: read in one go, no second read to find the end
    drained = 0
    while drained <= MAX_DRAIN_BYTES:
        chunk = await content.read(MAX_DRAIN_BYTES + 1 - drained)
        if not chunk:
            return
        drained += len(chunk)
    response.close()  # too much left to read: a new connection is cheaper than draining this one


def _describe(exc: BaseException) -> str:
    """A readable one-line reason for a failed request (some aiohttp errors have an empty message)."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
        return f"refused: {exc.os_error}"  # as when the check before the batch refuses the URL
    if isinstance(exc, aiohttp.ClientConnectorError):
        prefix = "connection failed"
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        prefix = "protocol error"
    elif isinstance(exc, aiohttp.InvalidURL | ValueError):
        prefix = "invalid URL"
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        prefix = "connection error"
    else:
        prefix = type(exc).__name__
    message = str(exc).strip()
    return f"{prefix}: {message}" if message else prefix
