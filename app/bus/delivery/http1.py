"""A lean HTTP/1.1 client for webhook POSTs: asyncio transports, llhttp parsing (httptools), keep-alive pools.

Why not aiohttp, which delivered webhooks until stop 15: its client spent ~100 us of CPU per POST on the
benchmark machine, most of it Python (session, request and response objects, multidicts, stream readers,
timers, tracing hooks), and the dispatcher is GIL-bound: half of its time went there. A webhook POST needs
much less — one request at a time per connection, no redirects, cookies, proxies, compression or streamed
uploads — so this module does only that, on asyncio's own transports (TLS included) with responses parsed by
llhttp through httptools (uvicorn's parser): 37-48 us a POST. ``bench/deliver.py`` measures both.

What it keeps from the aiohttp setup it replaces: pooled keep-alive connections per (scheme, host, port),
dropped after ``keepalive_s`` idle; a cap on open connections; one deadline over connect, send and the whole
response; a DNS cache with a short TTL; an address check on the very answer it connects to (the SSRF guard's
rebinding defence); TLS verified against the system's CAs with SNI; header values refused if they hold CR or
LF (no header injection from event ids). A name's addresses are tried in turn within the deadline (no Happy
Eyeballs racing of IPv6 against IPv4, which aiohttp had). Responses: status, ``Retry-After`` and the first
``max_excerpt`` bytes of the body; up to ``max_drain`` more are read and dropped so that the connection can be
reused, a longer body closes it. Nothing is retried here: a POST that failed is the caller's to retry.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httptools
from yarl import URL

USER_AGENT = "apg-event-bus/0.1"
MAX_EXCERPT_BYTES = 4096  # of a response body kept (the attempt's excerpt)
# After the excerpt we drain at most this much more so that the connection can go back to the pool;
# a longer body costs more than a new connection, so we drop the connection instead.
MAX_DRAIN_BYTES = 64 * 1024
# Idle pooled connections are dropped after this: under the idle timeout of common servers (Node 5 s, nginx
# 75 s) by more than a round trip, so that a POST does not go out on a connection the server is closing (a POST
# is not retried: it would fail as "closed the connection without answering").
KEEPALIVE_S = 4.0
# A status line and headers longer than this fail the attempt (aiohttp's limit was 8 KB a line): a receiver
# must not make us buffer an endless header.
MAX_HEAD_BYTES = 64 * 1024
# Bounded caches: a dispatcher serves a few hundred URLs; anything beyond is re-parsed or re-resolved.
_MAX_TARGETS = 4096
_MAX_DNS_ENTRIES = 4096

# (host, addresses) -> None, or raises an OSError: the check every connection's addresses pass first.
AddressCheck = Callable[[str, Sequence[str]], None]


class InvalidUrl(ValueError):  # noqa: N818 - reads as what it is, like ValueError
    """Not an absolute http(s) URL this client can send to."""


class ProtocolError(Exception):
    """The peer broke HTTP/1.1: unparsable response, an upgrade, or the connection closed before a status."""


@dataclass(slots=True)
class Response:
    """What a POST got back: status, ``Retry-After`` as sent, the body's first bytes, and whether it was all read."""

    status: int
    retry_after: str | None
    excerpt: bytes
    complete: bool


@dataclass(slots=True, frozen=True)
class _Target:
    """A parsed URL: where to connect and the constant start of every request to it."""

    key: tuple[str, str, int]  # (scheme, host, port): the pool a connection belongs to
    host: str  # IDNA-encoded name or IP literal (no brackets)
    port: int
    tls: bool
    literal: bool  # the host is an IP address: nothing to resolve
    head: bytes  # request line, Host, User-Agent, Accept-Encoding


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, its response parsed as it arrives."""

    def __init__(self, pool: Http1Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None  # the request in flight
        self.status = 0
        self.retry_after: str | None = None
        self.excerpt = bytearray()
        self.dropped = 0  # body bytes read past the excerpt
        self.head_bytes = 0  # bytes read before the headers were complete
        self.reusable = False  # the last response was read whole and the server keeps the connection open
        self.closed = False
        self.registered = False  # holds one of the pool's connection slots (given back by ``forget``)
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.registered = True
        self.pool.adopt(self)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection can no longer be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid response: {exc}"))
        else:
            if not self.status:  # still in the status line or headers after this chunk
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    self._fail(ProtocolError(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.waiter is not None and not self.waiter.done():
            if self.status:
                # Headers were read: a body delimited by the end of the connection ends here, any other is cut
                # short; either way the receiver's answer is known.
                self._finish(complete=False)
            else:
                self._fail(ProtocolError("the server closed the connection without answering"))

    # -- httptools callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():  # a second answer to one request
            self.reusable = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = self.pool.max_excerpt - len(self.excerpt)
        if room > 0:
            self.excerpt += body[:room]
        if len(body) > room:
            self.dropped += len(body) - max(room, 0)
            if self.dropped > self.pool.max_drain:  # a new connection is cheaper than reading all of this
                self._finish(complete=False)
                self.close()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.status, self.retry_after = 0, None
            return
        self._finish(complete=True)

    # -- requests ----------------------------------------------------------------------------------
    def send(self, payload: bytes, waiter: asyncio.Future[Response]) -> None:
        """Write one request; ``waiter`` gets its response."""
        self.waiter = waiter
        self.status, self.retry_after, self.dropped, self.head_bytes, self.reusable = 0, None, 0, 0, False
        self.excerpt = bytearray()
        assert self.transport is not None  # noqa: S101 - set by connection_made before the pool hands it out
        self.transport.write(payload)

    def expire(self) -> None:
        """The request's deadline passed: keep the answer if headers came, else fail with TimeoutError."""
        if self.waiter is not None and not self.waiter.done():
            if self.status:
                self._finish(complete=False)
            else:
                self.waiter.set_exception(TimeoutError())
        self.close()

    def _finish(self, complete: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.reusable = complete and self.parser.should_keep_alive()
        waiter.set_result(Response(self.status, self.retry_after, bytes(self.excerpt), complete))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        """Close now (abort: nothing of ours is left to flush that anyone waits for)."""
        self.reusable = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            self.pool.forget(self)


class Http1Pool:
    """Keep-alive HTTP/1.1 connections for POSTs from one event loop (create it, use it and close it there)."""

    def __init__(self, *, limit: int = 1000, keepalive_s: float = KEEPALIVE_S, dns_ttl_s: float = 10.0,
                 check: AddressCheck | None = None, user_agent: str = USER_AGENT,
                 ssl_context: ssl.SSLContext | None = None, max_excerpt: int = MAX_EXCERPT_BYTES,
                 max_drain: int = MAX_DRAIN_BYTES) -> None:
        """``check``: called with every resolved (or literal) address list before connecting; may raise OSError."""
        self.max_excerpt = max_excerpt
        self.max_drain = max_drain
        self._keepalive_s = keepalive_s
        self._dns_ttl_s = dns_ttl_s
        self._check = check
        self._user_agent = user_agent
        self._ssl = ssl_context
        self._limit = limit  # open connections, busy or idle
        self._connecting = 0  # connections being made: they count against the limit too
        self._waiters: list[asyncio.Future[None]] = []  # posts waiting for a connection slot
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._next_sweep = 0.0
        self.closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Response:
        """POST ``body`` to ``url``: the response, or TimeoutError, OSError (connecting), ProtocolError, ValueError.

        The deadline covers everything; once the status arrived, a body that stalls or breaks off still
        returns the response (``complete`` False).
        """
        if self.closed:
            raise RuntimeError("the pool is closed")
        target = self._targets.get(url) or self._target(url)
        payload = _request(target.head, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        conn = self._take(target.key)
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._open(target)
        waiter: asyncio.Future[Response] = loop.create_future()
        timer = loop.call_at(deadline, conn.expire)
        try:
            conn.send(payload, waiter)
            return await waiter
        finally:
            timer.cancel()
            conn.waiter = None
            self._release(conn)

    async def close(self) -> None:
        """Close every connection, idle or busy (their requests fail)."""
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()

    # -- connections -------------------------------------------------------------------------------
    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        """The most recently used idle connection to ``key`` that is still fresh, if any."""
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        """Back to the idle list when the last response was read whole and the server keeps it open."""
        if not conn.reusable or conn.closed or self.closed:
            conn.close()
            return
        now = conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._waiters:
            self._wake()
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close connections idle longer than the keep-alive (least recently used first in every list)."""
        self._next_sweep = now + self._keepalive_s
        for key, idle in list(self._idle.items()):
            stale = [c for c in idle if now - c.idle_since >= self._keepalive_s]
            for conn in stale:
                conn.close()
            if not self._idle.get(key):
                self._idle.pop(key, None)

    def adopt(self, conn: _Connection) -> None:
        """A connection was made: it now holds the slot its ``_connect`` reserved, until ``forget``."""
        self._all.add(conn)
        self._connecting -= 1

    def forget(self, conn: _Connection) -> None:
        """A connection closed: its slot is free, it leaves the idle list (called by the connection)."""
        if conn in self._all:
            self._all.discard(conn)
            self._wake()
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _wake(self) -> None:
        """Let one post waiting for a slot look again (a connection went idle or closed)."""
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _open(self, target: _Target) -> _Connection:
        """A connection to ``target``: a new one within the limit, else one that goes idle meanwhile."""
        while True:
            if len(self._all) + self._connecting < self._limit:
                return await self._connect(target)
            victim = next((idle[0] for idle in self._idle.values() if idle), None)
            if victim is not None:  # at the cap: an idle connection to another host makes room
                victim.close()
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            conn = self._take(target.key)
            if conn is not None:
                return conn

    async def _connect(self, target: _Target) -> _Connection:
        """A new connection to the first reachable checked address of ``target`` (within the caller's deadline)."""
        self._connecting += 1
        made: list[_Connection] = []

        def factory() -> _Connection:
            made.append(_Connection(self, target.key))
            return made[-1]

        try:
            addresses = await self._addresses(target)
            loop = asyncio.get_running_loop()
            error: OSError | None = None
            for address in addresses:
                try:
                    _, conn = await loop.create_connection(
                        factory, address, target.port,
                        ssl=self._tls() if target.tls else None, server_hostname=target.host if target.tls else None)
                except OSError as exc:
                    error = exc
                    continue
                return conn
            raise error or OSError(f"no address to connect to for {target.host}")
        except BaseException:
            # Once made, the connection holds the slot (``forget`` frees it); else the reservation ends here.
            if not any(c.registered for c in made):
                self._connecting -= 1
                self._wake()
            raise

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # the system's CAs, hostname checked
        return self._ssl

    async def _addresses(self, target: _Target) -> list[str]:
        """The addresses to try for ``target``'s host (cached for the DNS TTL), after the address check."""
        host, port = target.host, target.port
        if target.literal:
            addresses = [host]
        else:
            now = time.monotonic()
            cached = self._dns.get((host, port))
            if cached is not None and cached[0] > now:
                addresses = cached[1]
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                if len(self._dns) >= _MAX_DNS_ENTRIES:
                    self._dns.clear()
                self._dns[(host, port)] = (now + self._dns_ttl_s, addresses)
        if self._check is not None:
            self._check(host, addresses)  # the answer connected to is the answer checked (DNS rebinding)
        return addresses

    def _target(self, url: str) -> _Target:
        """Parse and cache ``url``; ValueError when it is not an absolute http(s) URL."""
        try:
            parsed = URL(url)
            scheme, raw_host = parsed.scheme, parsed.raw_host
        except (TypeError, ValueError) as exc:  # UnicodeError (IDNA) is a ValueError
            raise InvalidUrl(str(exc)) from None
        if scheme not in ("http", "https") or not raw_host:
            raise InvalidUrl(f"not an http(s) URL: {url[:200]!r}")
        if parsed.user is not None or parsed.password is not None:
            raise InvalidUrl("URLs with credentials are not sent")
        host, port = raw_host, parsed.port or (443 if scheme == "https" else 80)
        head = (f"POST {parsed.raw_path_qs} HTTP/1.1\r\nHost: {parsed.host_port_subcomponent}\r\n"
                f"User-Agent: {self._user_agent}\r\nAccept-Encoding: identity\r\n")
        _refuse_line_breaks(head, 4)
        target = _Target((scheme, host, port), host, port, scheme == "https", _is_ip(host), head.encode("ascii"))
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        self._targets[url] = target
        return target


def _request(head: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
    """The whole request: head, the caller's headers, Content-Length, body (one write, one send)."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    _refuse_line_breaks(lines, len(headers))
    return b"".join((head, lines.encode("utf-8"), b"Content-Length: %d\r\n\r\n" % len(body), body))


def _refuse_line_breaks(lines: str, count: int) -> None:
    """ValueError unless ``lines`` holds exactly ``count`` CRLFs: a CR or LF inside a name or value would
    let its sender add headers (or a second request) of its own."""
    if lines.count("\n") != count or lines.count("\r") != count:
        raise ValueError("a header name or value contains a line break")


def _is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (yarl gives IPv6 without brackets)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
