"""A real local webhook receiver for tests: records every request, answers as each path is told to."""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """One programmed answer: a status, extra headers, and how long to wait before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes = b"ok"


OK = Reply()


def ok() -> Reply:
    """200."""
    return OK


def fail(status: int = 500) -> Reply:
    """A failure status (500 by default)."""
    return Reply(status, body=b"boom")


def hang(seconds: float) -> Reply:
    """Answer 200 only after ``seconds``: longer than the sender's timeout, it is a timeout."""
    return Reply(200, delay_s=seconds)


def gone() -> Reply:
    """410 Gone: the subscription must be disabled."""
    return Reply(410, body=b"gone")


def too_many(retry_after: str) -> Reply:
    """429 with a Retry-After header."""
    return Reply(429, {"Retry-After": retry_after}, body=b"slow down")


@dataclass(frozen=True)
class Received:
    """A request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        """The body as JSON."""
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        """The webhook-id header."""
        return self.headers["webhook-id"]


class Receiver:
    """A threaded HTTP server on 127.0.0.1 with a script per path: replies are used in turn, the last repeats."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._scripts: dict[tuple[str, str | None], list[Reply]] = {}
        self._received: list[Received] = []
        self._counts: dict[str | None, int] = {None: 0}
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests seen being answered at once
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the sender pools connections

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm holds the body
                # back until the client's delayed ACK (~40 ms a request on keep-alive connections).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                reply = receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the sender gave up (timeout) and closed the connection
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 512  # the default backlog of 5 drops connections when 50 open at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A sender that timed out or was killed resets its connections: expected here, not news.
                logger.debug("receiver: connection from %s ended abruptly", client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="receiver")

    def start(self) -> Receiver:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply, webhook_id: str | None = None) -> None:
        """Answer requests to ``path`` (of one webhook-id, if given) with ``replies`` in turn; the last repeats."""
        with self._lock:
            self._scripts[(path, webhook_id)] = list(replies) or [OK]

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self._received.append(Received(path, headers, body, time.monotonic()))
            self._counts[path] = self._counts.get(path, 0) + 1
            self._counts[None] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            script = (self._scripts.get((path, headers.get("webhook-id"))) or self._scripts.get((path, None))
                      or [OK])
            reply = script.pop(0) if len(script) > 1 else script[0]
            self._lock.notify_all()
            return reply

    def requests(self, path: str | None = None) -> list[Received]:
        """Requests received so far (to ``path``, or all), in arrival order."""
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 20.0) -> list[Received]:
        """Wait until ``count`` requests (to ``path``) arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._counts.get(path, 0) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self._counts.get(path, 0)} of {count} requests to {path or 'any path'} "
                                         f"after {timeout}s")
                self._lock.wait(min(left, 0.5))
        return self.requests(path)

    def wait_ids(self, ids: set[str], path: str | None = None, timeout: float = 20.0) -> set[str]:
        """Wait until every webhook-id in ``ids`` arrived at least once; returns those still missing at timeout."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        checked = 0
        while True:
            with self._lock:  # polled, not notified: thousands of requests must not wake it thousands of times
                fresh = self._received[checked:]
                checked = len(self._received)
            seen.update(r.headers.get("webhook-id", "") for r in fresh if path is None or r.path == path)
            missing = ids - seen
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.1)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A started receiver, stopped afterwards."""
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()
