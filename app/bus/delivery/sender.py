"""Async webhook HTTP sender: a keep-alive connection pool (``http1``) per event loop, bounded reads, no exceptions."""
from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.bus.delivery.http1 import USER_AGENT, Http1Pool, InvalidUrl, ProtocolError
from app.bus.delivery.retry import RETRY_AFTER_STATUSES, parse_retry_after
from app.bus.delivery.ssrf import RefusedAddress, refuse_private


@dataclass(slots=True)
class AttemptResult:
    """One delivery attempt; ``error`` is set exactly when no HTTP status was received (status_code None)."""

    status_code: int | None
    duration_ms: float
    response_excerpt: str | None
    error: str | None
    retry_after_s: float | None


class WebhookSender:
    """POSTs deliveries over pooled HTTP/1.1 keep-alive connections, one pool per event loop it is used from."""

    def __init__(
        self,
        timeout_s: float = 15.0,
        max_connections: int = 1000,
        user_agent: str = USER_AGENT,
        dns_cache_ttl_s: int = 10,
        allow_private: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``allow_private``: connect to names resolving to loopback, private or link-local addresses too.

        ``ssl_context``: the TLS settings of https deliveries (default: the system's CAs, hostnames checked).
        """
        self.timeout_s = timeout_s
        # Every loop's pool is built alike. The SSRF guard runs on the addresses actually connected to (DNS
        # rebinding), not only on a lookup made before; with private targets allowed there is nothing to check.
        # The DNS TTL is short: the guard checks the name's addresses per batch, the pool should not outlive a
        # DNS change.
        self._pool_options: dict[str, Any] = {
            "limit": max_connections, "dns_ttl_s": dns_cache_ttl_s, "user_agent": user_agent,
            "check": None if allow_private else refuse_private, "ssl_context": ssl_context}
        # A pool belongs to the loop it was created in (its transports do): created lazily, in the loop that sends.
        self._pools: dict[asyncio.AbstractEventLoop, Http1Pool] = {}
        weakref.finalize(self, _close_abandoned, self._pools)

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _pool(self) -> Http1Pool:
        """The running loop's pool, created on first use."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None or pool.closed:
            pool = self._new_pool(loop)
        return pool

    def _new_pool(self, loop: asyncio.AbstractEventLoop) -> Http1Pool:
        """A pool for ``loop`` (replacing a closed one), with the address check every connection goes through."""
        for old in [lp for lp in self._pools if lp.is_closed()]:
            del self._pools[old]  # its loop is gone: nothing can close it any more
        # No proxies, .netrc credentials, cookies or redirects exist in the pool: deliveries go straight to the
        # checked URL and never carry credentials meant for something else.
        pool = self._pools[loop] = Http1Pool(**self._pool_options)
        return pool

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> AttemptResult:
        """POST body to url; never raises for network trouble (timeouts and errors land in the result).

        The timeout bounds the whole attempt, body included, so that a receiver dripping one byte at a time
        cannot hold a delivery slot forever; once the status arrived, a slow or broken body keeps it. A
        redirect is the receiver's misconfiguration and is not followed (it would bypass the SSRF check).
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        try:
            response = await self._pool().post(url, body, headers, timeout)
        except TimeoutError:
            return AttemptResult(None, (time.perf_counter() - started) * 1000.0, None,
                                 f"timeout after {timeout:g}s", None)
        except (OSError, ProtocolError, ValueError) as exc:
            return AttemptResult(None, (time.perf_counter() - started) * 1000.0, None, _describe(exc), None)
        status = response.status
        retry_after = None
        if status in RETRY_AFTER_STATUSES:  # the only answers whose Retry-After is honoured
            retry_after = parse_retry_after(response.retry_after, time.time())
        return AttemptResult(status, (time.perf_counter() - started) * 1000.0,
                             response.excerpt.decode("utf-8", errors="replace"), None, retry_after)

    async def aclose(self) -> None:
        """Close the pooled connections: this loop's pool now, another running loop's on that loop."""
        pools = dict(self._pools)
        self._pools.clear()
        current = asyncio.get_running_loop()
        for loop, pool in pools.items():
            if loop is current:
                await pool.close()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(pool.close(), loop)  # not awaited: that loop may wait on us
            # A closed or idle loop's pool cannot be closed from here; its sockets close when collected.


def _close_abandoned(pools: dict[asyncio.AbstractEventLoop, Http1Pool]) -> None:
    """Close the pools a sender dropped (or alive at exit) without aclose(), where their idle loop allows it."""
    # A thread's long-lived loop (dispatch_send.run_sync) is idle between runs and never closes its courier:
    # close its connections here rather than leave open sockets to the garbage collector.
    for loop, pool in list(pools.items()):
        if pool.closed or loop.is_running() or loop.is_closed():
            continue
        try:
            loop.run_until_complete(pool.close())
        except RuntimeError:  # another loop runs in this thread: leave it to the garbage collector
            pass
    pools.clear()


def _describe(exc: BaseException) -> str:
    """A readable one-line reason for a failed request (some errors have an empty message)."""
    if isinstance(exc, RefusedAddress):
        return f"refused: {exc}"  # as when the check before the batch refuses the URL
    if isinstance(exc, InvalidUrl):
        prefix = "invalid URL"
    elif isinstance(exc, ProtocolError):
        prefix = "protocol error"
    elif isinstance(exc, OSError):  # only connecting raises it (resolving, TCP, TLS); later trouble is a ProtocolError
        prefix = "connection failed"  # checked before ValueError: a certificate error is both
    else:
        prefix = "invalid request"
    message = str(exc).strip()
    return f"{prefix}: {message}" if message else f"{prefix}: {type(exc).__name__}"
