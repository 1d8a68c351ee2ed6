"""Http1Pool against scripted HTTP servers (raw asyncio sockets), for what a well-behaved aiohttp server never does."""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trustme

from app.bus.delivery.http1 import Http1Pool, InvalidUrl, ProtocolError, Response
from app.bus.delivery.ssrf import RefusedAddress, refuse_private

pytestmark = pytest.mark.timeout(60)

BODY = b'{"id":"evt-1"}'
HEADERS = {"webhook-id": "evt-1", "content-type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# What a scripted server does with one request: write an answer (or not), maybe close.
Script = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A server answering every request with ``script``; what it saw."""

    url: str
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request (head and Content-Length body), or None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


@asynccontextmanager
async def scripted(script: Script, ssl_context: ssl.SSLContext | None = None,
                   host: str = "127.0.0.1") -> AsyncIterator[Scripted]:
    """Serve ``script`` on ``host``:0 (https with ``ssl_context``)."""
    seen = Scripted(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve_one(reader, writer)
        except asyncio.CancelledError:  # the test ended with this connection open
            pass

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        seen.open_now += 1
        seen.most_open = max(seen.most_open, seen.open_now)
        try:
            while (request := await _read_request(reader)) is not None:
                seen.requests.append(request)
                await script(request, writer)
                if writer.is_closing():
                    break
        finally:
            seen.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, host, 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    seen.url = f"{'https' if ssl_context else 'http'}://{host}:{port}/hook?x=1"
    try:
        yield seen
    finally:
        server.close()


def answer(raw: bytes, close: bool = False) -> Script:
    async def script(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return script


def run(test: Callable[[Http1Pool], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        pool = Http1Pool(**options)  # type: ignore[arg-type]
        try:
            await test(pool)
        finally:
            await pool.close()

    asyncio.run(main())


def response_to(raw: bytes) -> Response:
    """What the pool makes of ``raw`` as the answer to one POST."""
    got: list[Response] = []

    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(raw)) as server:
            got.append(await pool.post(server.url, BODY, HEADERS, 5))

    run(body)
    return got[0]


def test_request_is_framed_as_http_1_1() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK)) as server:
            response = await pool.post(server.url, BODY, HEADERS, 5)
        assert (response.status, response.excerpt, response.complete) == (200, b"ok", True)
        head, _, sent = server.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
        assert f"Host: {server.url.split('/')[2]}".encode() in lines
        assert b"webhook-id: evt-1" in lines and b"Accept-Encoding: identity" in lines
        assert f"Content-Length: {len(BODY)}".encode() in lines
        assert sent == BODY

    run(body)


def test_chunked_answers_are_read_whole_and_keep_the_connection() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"

    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(chunked)) as server:
            first = await pool.post(server.url, BODY, HEADERS, 5)
            second = await pool.post(server.url, BODY, HEADERS, 5)
        assert first.excerpt == b"abcdefg" and first.complete and second.status == 200
        assert server.connections == 1

    run(body)


def test_body_delimited_by_the_end_of_the_connection() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(b"HTTP/1.0 200 OK\r\n\r\nuntil close", close=True)) as server:
            first = await pool.post(server.url, BODY, HEADERS, 5)
            second = await pool.post(server.url, BODY, HEADERS, 5)
        assert (first.status, first.excerpt) == (200, b"until close")
        assert second.status == 200 and server.connections == 2  # not reused: the server closed it

    run(body)


def test_connection_close_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(closing)) as server:
            for _ in range(3):
                assert (await pool.post(server.url, BODY, HEADERS, 5)).status == 200
        assert server.connections == 3

    run(body)


def test_interim_100_continue_is_skipped() -> None:
    response = response_to(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert (response.status, response.excerpt) == (200, b"ok")


def test_retry_after_is_kept_as_sent() -> None:
    response = response_to(b"HTTP/1.1 429 Too Many\r\nRETRY-after: 7\r\nContent-Length: 0\r\n\r\n")
    assert (response.status, response.retry_after, response.excerpt) == (429, "7", b"")


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "closed the connection without answering"),
    (b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 100_000, "headers exceed"),
    (b"SMTP ready\r\n\r\n", "invalid response"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "switched protocols"),
])
def test_broken_answers_are_protocol_errors(raw: bytes, message: str) -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(raw, close=True)) as server:
            with pytest.raises(ProtocolError, match=message):
                await pool.post(server.url, BODY, HEADERS, 5)
        assert pool._all == set()  # noqa: SLF001 - the broken connection was closed and its slot given back

    run(body)


def test_line_breaks_in_headers_are_refused_before_anything_is_sent() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK)) as server:
            for bad in ({"webhook-id": "evt\r\nX-Injected: 1"}, {"webhook-id": "evt\nX: 1"}, {"a\rb": "v"}):
                with pytest.raises(ValueError, match="line break"):
                    await pool.post(server.url, BODY, bad, 5)
            assert server.requests == [] and server.connections == 0

    run(body)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "http://user:pw@127.0.0.1/x", "not a url"])
def test_invalid_urls(url: str) -> None:
    async def body(pool: Http1Pool) -> None:
        with pytest.raises(InvalidUrl):
            await pool.post(url, BODY, HEADERS, 5)

    run(body)


def test_idle_connections_expire_after_the_keepalive() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK)) as server:
            await pool.post(server.url, BODY, HEADERS, 5)
            await pool.post(server.url, BODY, HEADERS, 5)
            assert server.connections == 1
            await asyncio.sleep(0.3)
            await pool.post(server.url, BODY, HEADERS, 5)
            assert server.connections == 2
            await asyncio.sleep(0.05)
            assert server.open_now == 1  # the expired one was closed, not left open

    run(body, keepalive_s=0.2)


def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK, close=True)) as server:
            # The server answers with keep-alive semantics, then closes: the pool notices before the next request.
            await pool.post(server.url, BODY, HEADERS, 5)
            await asyncio.sleep(0.05)
            assert (await pool.post(server.url, BODY, HEADERS, 5)).status == 200
        assert server.connections == 2

    run(body)


def test_bytes_on_an_idle_connection_close_it() -> None:
    async def twice(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(OK + OK)  # one answer too many
        await writer.drain()

    async def body(pool: Http1Pool) -> None:
        async with scripted(twice) as server:
            assert (await pool.post(server.url, BODY, HEADERS, 5)).excerpt == b"ok"
            await asyncio.sleep(0.05)
            assert (await pool.post(server.url, BODY, HEADERS, 5)).status == 200
        assert server.connections == 2  # the confused connection was not reused

    run(body)


def test_the_pool_caps_open_connections() -> None:
    release = asyncio.Event()

    async def slow(_: bytes, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(OK)
        await writer.drain()

    async def body(pool: Http1Pool) -> None:
        async with scripted(slow) as server:
            sends = [asyncio.ensure_future(pool.post(server.url, BODY, HEADERS, 5)) for _ in range(5)]
            await asyncio.sleep(0.2)
            assert server.open_now == 2  # three wait for a slot
            release.set()
            results = await asyncio.gather(*sends)
        assert [r.status for r in results] == [200] * 5
        assert server.most_open == 2 and server.connections == 2

    run(body, limit=2)


def test_a_timeout_before_the_status_frees_the_slot() -> None:
    async def silent(_: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def body(pool: Http1Pool) -> None:
        async with scripted(silent) as server:
            for _ in range(3):  # with one slot, a leaked one would make the second wait for ever
                with pytest.raises(TimeoutError):
                    await pool.post(server.url, BODY, HEADERS, 0.2)
        assert server.connections == 3

    run(body, limit=1)


def test_the_address_check_sees_the_answer_that_is_connected_to() -> None:
    # No DNS server can run here: the loop's getaddrinfo is scripted. The first answer is loopback (refused by
    # the guard, nothing connects); the pool then resolves again only after the DNS TTL.
    answers = [["127.0.0.1"], ["127.0.0.1"]]
    lookups: list[str] = []

    async def body(pool: Http1Pool) -> None:
        loop = asyncio.get_running_loop()

        async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
            lookups.append(host)
            return [(2, 1, 6, "", (addr, port)) for addr in answers.pop(0)]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        async with scripted(answer(OK)) as server:
            url = server.url.replace("127.0.0.1", "hooks.example")
            with pytest.raises(RefusedAddress, match="loopback"):
                await pool.post(url, BODY, HEADERS, 5)
            assert server.connections == 0
            open_pool = Http1Pool(dns_ttl_s=60)
            try:
                assert (await open_pool.post(url, BODY, HEADERS, 5)).status == 200
                await asyncio.sleep(0)
                assert (await open_pool.post(url.replace("/hook?", "/other?"), BODY, HEADERS, 5)).status == 200
            finally:
                await open_pool.close()
        assert lookups == ["hooks.example", "hooks.example"]  # once per pool: the second was cached
        host_line = next(line for line in server.requests[0].split(b"\r\n") if line.startswith(b"Host:"))
        assert host_line.startswith(b"Host: hooks.example:")

    run(body, check=refuse_private)


def test_tls_verifies_the_certificate_and_the_name() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK), ssl_context=server_ctx) as server:
            assert server.url.startswith("https://127.0.0.1:")
            response = await pool.post(server.url, BODY, HEADERS, 5)
            assert (response.status, response.excerpt) == (200, b"ok")
            assert (await pool.post(server.url, BODY, HEADERS, 5)).status == 200
            assert server.connections == 1  # kept alive over TLS too
            untrusting = Http1Pool()  # the system's CAs: the test CA is not among them
            try:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await untrusting.post(server.url, BODY, HEADERS, 5)
            finally:
                await untrusting.close()

    run(body, ssl_context=trusting)


def test_at_the_cap_an_idle_connection_to_another_host_makes_room() -> None:
    async def body(pool: Http1Pool) -> None:
        async with scripted(answer(OK)) as first, scripted(answer(OK)) as second:
            assert (await pool.post(first.url, BODY, HEADERS, 5)).status == 200
            assert (await pool.post(second.url, BODY, HEADERS, 5)).status == 200  # no wait for the idle one
            await asyncio.sleep(0.05)
            assert (first.open_now, second.open_now) == (0, 1)

    run(body, limit=1)


def test_closing_the_pool_fails_the_requests_in_flight() -> None:
    async def silent(_: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def body(pool: Http1Pool) -> None:
        async with scripted(silent) as server:
            send = asyncio.ensure_future(pool.post(server.url, BODY, HEADERS, 5))
            await asyncio.sleep(0.1)
            await pool.close()
            with pytest.raises(ProtocolError):
                await send
            with pytest.raises(RuntimeError, match="closed"):
                await pool.post(server.url, BODY, HEADERS, 5)

    run(body)
