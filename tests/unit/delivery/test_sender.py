"""WebhookSender against a real local aiohttp server."""
from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from app.bus.delivery.http1 import MAX_EXCERPT_BYTES
from app.bus.delivery.sender import AttemptResult, WebhookSender

pytestmark = pytest.mark.timeout(60)

BODY = b'{"specversion":"1.0","id":"evt-1","type":"t","source":"/"}'
HEADERS = {"webhook-id": "evt-1", "content-type": "application/cloudevents+json"}


@dataclass
class Server:
    """The test server's address and what it saw."""

    base: str
    peers: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def serve() -> AsyncIterator[Server]:
    """Start an aiohttp server on 127.0.0.1:0 with the endpoints the tests need."""
    server = Server(base="")

    async def record(request: web.Request) -> None:
        server.peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        server.bodies.append(await request.read())
        server.headers.append(dict(request.headers))

    def status(code: int, **headers: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            await record(request)
            return web.Response(status=code, text=f"status {code}", headers=headers)

        return handler

    async def hang(request: web.Request) -> web.StreamResponse:
        await record(request)
        await server.release.wait()
        return web.Response(text="late")

    async def slow_body(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(status=200)
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"partial ")
        await server.release.wait()
        return response

    async def huge(request: web.Request) -> web.StreamResponse:
        await record(request)
        return web.Response(body="é".encode() * 2_000_000, content_type="text/plain")  # 4 MB, multi-byte chars

    async def small_extra(request: web.Request) -> web.StreamResponse:
        await record(request)
        return web.Response(body=b"x" * 10_000)  # over the excerpt, under the drain limit

    async def gzipped(request: web.Request) -> web.StreamResponse:
        await record(request)
        return web.Response(body=gzip.compress(b"plain text"), headers={"Content-Encoding": "gzip"})

    async def cookie(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.Response(text="ok")
        response.set_cookie("session", "secret")
        return response

    app = web.Application()
    app.router.add_post("/ok", status(200))
    app.router.add_post("/created", status(201))
    app.router.add_post("/fail", status(500))
    app.router.add_post("/gone", status(410))
    app.router.add_post("/busy", status(429, **{"Retry-After": "7"}))
    app.router.add_post("/unavailable", status(503, **{"Retry-After": "garbage"}))
    app.router.add_post("/redirect", status(302, Location="/ok"))
    app.router.add_post("/hang", hang)
    app.router.add_post("/slow-body", slow_body)
    app.router.add_post("/huge", huge)
    app.router.add_post("/small-extra", small_extra)
    app.router.add_post("/gzipped", gzipped)
    app.router.add_post("/cookie", cookie)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def run(test: Callable[[Server, WebhookSender], Awaitable[None]], timeout_s: float = 5.0) -> None:
    """Run an async test with a fresh server and sender inside one event loop."""

    async def main() -> None:
        async with serve() as server:
            sender = WebhookSender(timeout_s=timeout_s, allow_private=True)  # the test server is on loopback
            try:
                await test(server, sender)
            finally:
                await sender.aclose()

    asyncio.run(main())


def test_success_sends_body_and_headers() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/ok", BODY, HEADERS)
        assert isinstance(result, AttemptResult)
        assert result.status_code == 200
        assert result.error is None
        assert result.response_excerpt == "status 200"
        assert result.retry_after_s is None
        assert result.duration_ms >= 0
        assert server.bodies == [BODY]
        seen = {k.lower(): v for k, v in server.headers[0].items()}
        assert seen["webhook-id"] == "evt-1"
        assert seen["content-type"] == "application/cloudevents+json"
        assert seen["user-agent"] == "apg-event-bus/0.1"
        assert (await sender.send(server.base + "/created", BODY, HEADERS)).status_code == 201

    run(body)


@pytest.mark.parametrize(("path", "code"), [("/fail", 500), ("/gone", 410)])
def test_error_statuses(path: str, code: int) -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + path, BODY, HEADERS)
        assert result.status_code == code
        assert result.error is None
        assert result.response_excerpt == f"status {code}"

    run(body)


def test_retry_after_is_parsed() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        busy = await sender.send(server.base + "/busy", BODY, HEADERS)
        assert busy.status_code == 429 and busy.retry_after_s == 7.0
        unavailable = await sender.send(server.base + "/unavailable", BODY, HEADERS)
        assert unavailable.status_code == 503 and unavailable.retry_after_s is None

    run(body)


def test_redirect_is_not_followed() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/redirect", BODY, HEADERS)
        assert result.status_code == 302
        assert len(server.bodies) == 1  # /ok never called

    run(body)


def test_hanging_endpoint_times_out() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/hang", BODY, HEADERS, timeout_s=0.5)
        assert result.status_code is None
        assert result.error == "timeout after 0.5s"
        assert result.response_excerpt is None
        # The sender stays usable after a timeout.
        assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200

    run(body)


def test_default_timeout_comes_from_constructor() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/hang", BODY, HEADERS)
        assert result.error == "timeout after 0.5s"

    run(body, timeout_s=0.5)


def test_slow_body_keeps_the_status() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/slow-body", BODY, HEADERS, timeout_s=0.5)
        assert result.status_code == 200
        assert result.error is None
        assert result.response_excerpt == "partial "

    run(body)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.

    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(f"http://127.0.0.1:{port}/x", BODY, HEADERS)
        assert result.status_code is None
        assert result.error is not None and result.error.startswith("connection failed")
        assert result.response_excerpt is None

    run(body)


def test_invalid_url_does_not_raise() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send("ftp://127.0.0.1/x", BODY, HEADERS)
        assert result.status_code is None and result.error is not None

    run(body)


def test_huge_body_is_truncated() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/huge", BODY, HEADERS)
        assert result.status_code == 200
        assert result.error is None
        excerpt = result.response_excerpt
        assert excerpt is not None and len(excerpt.encode("utf-8")) <= MAX_EXCERPT_BYTES + 3
        assert excerpt.startswith("é" * 100)
        # The dropped connection does not break the next delivery.
        assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200

    run(body)


def test_keep_alive_reuses_one_connection() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        for path in ["/ok", "/fail", "/gone", "/busy", "/small-extra", "/ok"]:
            result = await sender.send(server.base + path, BODY, HEADERS)
            assert result.status_code is not None
        assert len(server.peers) == 6
        assert len(set(server.peers)) == 1  # one TCP connection for every request

    run(body)


def test_concurrent_sends() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        results = await asyncio.gather(*(sender.send(server.base + "/ok", BODY, HEADERS) for _ in range(20)))
        assert [r.status_code for r in results] == [200] * 20

    run(body)


def test_async_context_manager() -> None:
    async def main() -> None:
        async with serve() as server, WebhookSender(timeout_s=2, allow_private=True) as sender:
            assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200

    asyncio.run(main())


def test_identity_encoding_and_no_decompression() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        result = await sender.send(server.base + "/gzipped", BODY, HEADERS)
        assert result.status_code == 200
        assert server.headers[0]["Accept-Encoding"] == "identity"
        # A receiver that compresses anyway: the excerpt is its bytes as sent, not inflated.
        assert result.response_excerpt is not None and "plain text" not in result.response_excerpt

    run(body)


def test_cookies_are_not_kept() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        assert (await sender.send(server.base + "/cookie", BODY, HEADERS)).status_code == 200
        assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200
        assert "Cookie" not in server.headers[1]

    run(body)


def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def body(server: Server, sender: WebhookSender) -> None:
        assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200

    run(body)


def test_oversized_body_drops_the_connection() -> None:
    async def body(server: Server, sender: WebhookSender) -> None:
        assert (await sender.send(server.base + "/huge", BODY, HEADERS)).status_code == 200
        assert (await sender.send(server.base + "/ok", BODY, HEADERS)).status_code == 200
        assert server.peers[0] != server.peers[1]  # not drained: a new connection for the next request

    run(body)


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the first loop's session is left open on purpose
def test_one_session_per_event_loop() -> None:
    sender = WebhookSender(timeout_s=2, allow_private=True)  # made outside any loop, as a long-lived object may be

    async def main(close: bool) -> list[int | None]:
        async with serve() as server:
            codes = [(await sender.send(server.base + "/ok", BODY, HEADERS)).status_code for _ in range(2)]
            if close:
                await sender.aclose()
            return codes

    # A loop ends without closing the sender (a thread's asyncio.Runner replaced): the next loop gets its own.
    assert asyncio.run(main(close=False)) == [200, 200]
    assert asyncio.run(main(close=True)) == [200, 200]


def test_names_resolving_to_private_addresses_are_refused_when_connecting() -> None:
    # The sender checks the addresses it connects to, whatever was checked before: "localhost" resolves (from
    # /etc/hosts) to loopback, so without WEBHOOK_ALLOW_PRIVATE no request leaves; with it, the same URL works.
    async def main() -> None:
        async with serve() as server:
            url = server.base.replace("127.0.0.1", "localhost") + "/ok"
            async with WebhookSender(timeout_s=2) as guarded:
                refused = await guarded.send(url, BODY, HEADERS)
                # An IP literal cannot rebind, and the dispatcher checks URLs before a batch; the sender refuses
                # it all the same, so that no caller can skip the guard.
                literal = await guarded.send(server.base + "/ok", BODY, HEADERS)
            for result in (refused, literal):
                assert result.status_code is None
                assert result.error is not None and result.error.startswith("refused: ")
                assert "loopback" in result.error
            assert server.bodies == []
            async with WebhookSender(timeout_s=2, allow_private=True) as open_sender:
                allowed = await open_sender.send(url, BODY, HEADERS)
            assert allowed.status_code == 200
            assert server.bodies == [BODY]

    asyncio.run(main())


def test_https_is_verified_and_a_bad_certificate_is_a_connection_failure() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def main() -> None:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="secure")

        app = web.Application()
        app.router.add_post("/ok", ok)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}/ok"
        try:
            async with WebhookSender(timeout_s=2, allow_private=True, ssl_context=trusting) as sender:
                good = await sender.send(url, BODY, HEADERS)
            async with WebhookSender(timeout_s=2, allow_private=True) as sender:  # the system's CAs only
                bad = await sender.send(url, BODY, HEADERS)
        finally:
            await runner.cleanup()
        assert (good.status_code, good.response_excerpt, good.error) == (200, "secure", None)
        assert bad.status_code is None and bad.error is not None
        assert bad.error.startswith("connection failed: ") and "CERTIFICATE_VERIFY_FAILED" in bad.error

    asyncio.run(main())
