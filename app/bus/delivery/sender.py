"""Async webhook HTTP sender: one pooled keep-alive httpx client, bounded response reads, no exceptions."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from app.bus.delivery.retry import parse_retry_after

logger = logging.getLogger(__name__)

MAX_EXCERPT_BYTES = 4096
# After the excerpt we drain at most this much more so that the connection can go back to the pool;
# a longer body costs more than a new connection, so we drop the connection instead.
MAX_DRAIN_BYTES = 64 * 1024


@dataclass
class AttemptResult:
    """One delivery attempt; ``error`` is set exactly when no HTTP status was received (status_code None)."""

    status_code: int | None
    duration_ms: float
    response_excerpt: str | None
    error: str | None
    retry_after_s: float | None


class WebhookSender:
    """POSTs deliveries over one pooled HTTP/1.1 keep-alive client; create and use it inside one event loop."""

    def __init__(
        self, timeout_s: float = 15.0, max_connections: int = 1000, user_agent: str = "apg-event-bus/0.1"
    ) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            http1=True,
            http2=False,
            # A redirect is the receiver's misconfiguration, and following it would bypass the SSRF check.
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # No proxies, .netrc credentials or env CA overrides picked up by accident: deliveries go
            # straight to the checked URL and never carry credentials meant for something else.
            trust_env=False,
            headers={"user-agent": user_agent, "accept-encoding": "identity"},
        )

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> AttemptResult:
        """POST body to url; never raises for network trouble (timeouts and errors land in the result)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        excerpt = bytearray()

        def result(error: str | None) -> AttemptResult:
            text = excerpt.decode("utf-8", errors="replace") if status is not None else None
            return AttemptResult(status, (time.perf_counter() - started) * 1000.0, text, error, retry_after)

        try:
            # httpx timeouts are per read/write/connect; the outer deadline bounds the whole attempt
            # so that a receiver dripping one byte at a time cannot hold a delivery slot forever.
            async with asyncio.timeout(timeout):
                async with self._client.stream(
                    "POST", url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout)
                ) as response:
                    status = response.status_code
                    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
                    await self._read_excerpt(response, excerpt)
        except (TimeoutError, httpx.TimeoutException):
            if status is None:
                return result(f"timeout after {timeout:g}s")
            # The receiver answered; a slow body does not change its verdict.
            logger.debug("timeout reading the response body from %s", url)
        except (httpx.HTTPError, OSError) as exc:
            if status is None:
                return result(_describe(exc))
            logger.debug("error reading the response body from %s: %s", url, exc)
        return result(None)

    @staticmethod
    async def _read_excerpt(response: httpx.Response, excerpt: bytearray) -> None:
        """Keep the first 4 KB of the body; drain a little more to reuse the connection, else drop it."""
        drained = 0
        async for chunk in response.aiter_raw():
            room = MAX_EXCERPT_BYTES - len(excerpt)
            if room > 0:
                excerpt += chunk[:room]
                drained += max(0, len(chunk) - room)
            else:
                drained += len(chunk)
            if drained > MAX_DRAIN_BYTES:
                # Leaving the stream unread makes httpcore close the connection instead of pooling it.
                break

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()


def _describe(exc: BaseException) -> str:
    """A readable one-line reason for a failed request (some httpx errors have an empty message)."""
    if isinstance(exc, httpx.ConnectError):
        prefix = "connection failed"
    elif isinstance(exc, httpx.RemoteProtocolError):
        prefix = "protocol error"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        prefix = "invalid URL"
    else:
        prefix = type(exc).__name__
    message = str(exc).strip()
    return f"{prefix}: {message}" if message else prefix
