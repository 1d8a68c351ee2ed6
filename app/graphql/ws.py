"""``/graphql`` over WebSocket (graphql-transport-ws) on the app's own port, under Werkzeug and gunicorn.

Strawberry serves subscriptions from its async integrations only; the bus is a WSGI app (Flask under
Werkzeug in ``run.py``, gunicorn with threads in production). So a small WSGI middleware takes the
WebSocket upgrade of ``/graphql`` before Flask routes it, accepts it with ``simple-websocket`` (what
Flask-SocketIO's threading mode already uses, subprotocol negotiation included) and runs strawberry's own
graphql-transport-ws protocol handler in an asyncio loop on the connection's thread. Protocol logic
(connection_init/ack, ping/pong, subscribe/next/error/complete, the init timeout, duplicate ids) stays
strawberry's; this module only adapts the socket and authenticates ``connection_init``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import simple_websocket
from flask import Flask
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived, WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types.unset import UNSET

from app.extensions import db
from app.graphql.context import BusContext
from app.security import Principal, resolve_principal
from app.services import credentials
from app.services.dispatch_config import setting  # config, else the environment (12-factor)
from app.services.errors import ServiceError

logger = logging.getLogger(__name__)

RECEIVE_POLL_S = 1.0  # a blocked receive re-checks the connection this often (so shutdown never hangs)
WS_PING_S = 25  # WebSocket-level pings: keep proxies from timing the socket out, notice dead clients
MAX_MESSAGE_BYTES = 1024 * 1024
CLOSE_WAIT_S = 2.0  # how long the closing handshake may take before the connection is cut

StartResponse = Callable[..., Any]


class SimpleWebSocketAdapter(AsyncWebSocketAdapter):
    """strawberry's socket interface over a blocking ``simple_websocket.Server``."""

    def __init__(self, view: Any, ws: simple_websocket.Server) -> None:
        super().__init__(view)
        self.ws = ws

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        while True:
            try:
                message = await asyncio.to_thread(self.ws.receive, RECEIVE_POLL_S)
            except simple_websocket.ConnectionClosed:
                return
            if message is None:
                if not self.ws.connected:
                    return
                continue
            if isinstance(message, bytes):
                raise NonTextMessageReceived
            try:
                yield self.view.decode_json(message)
            except json.JSONDecodeError as exc:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from exc

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            self.ws.send(self.view.encode_json(message).decode("utf-8"))
        except (simple_websocket.ConnectionClosed, OSError) as exc:
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            self.ws.close(reason=code, message=reason)
        except (simple_websocket.ConnectionClosed, OSError):
            pass


@dataclass
class WebSocketContext(BusContext):
    """A connection's context: credentials from connection_init's payload, else the upgrade's headers."""

    app: Any = None
    environ: dict[str, Any] = field(default_factory=dict)
    opened_by: Principal | None = None  # who connection_init authenticated: re-checked while the socket lives

    def resolve(self) -> Principal:
        environ = dict(self.environ)
        params = self.connection_params if isinstance(self.connection_params, dict) else {}
        for name, key in (("authorization", "HTTP_AUTHORIZATION"), ("x-tenant", "HTTP_X_TENANT")):
            value = next((v for k, v in params.items() if k.lower() == name and isinstance(v, str)), None)
            if value is not None:
                environ[key] = value  # browsers cannot set headers on a WebSocket: the payload stands in
        # The REST API's own resolution, run on a request that carries those headers.
        with self.app.request_context(environ):
            return resolve_principal()


class WebSocketView:
    """What strawberry's protocol handler asks of a view: JSON codecs and the connection_init hook."""

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        return json.loads(data)

    async def on_ws_connect(self, context: WebSocketContext) -> Any:
        """Refuse the connection (4403) unless connection_init (or the upgrade) carries valid credentials."""
        try:
            # Each operation resolves again (OperationScope), and the socket is re-checked while it lives
            # (_watch_credentials): a revocation stops both the next operation and the running subscriptions.
            context.opened_by = context.resolve()
        except ServiceError as exc:
            logger.info("graphql websocket refused: %s", exc.code)
            raise ConnectionRejectionError({"code": exc.code}) from exc
        finally:
            db.session.close()  # a connection lives long: hold no database connection meanwhile
        return UNSET


def _wants_graphql_ws(environ: Mapping[str, Any]) -> bool:
    offered = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
    return GRAPHQL_TRANSPORT_WS_PROTOCOL in {p.strip() for p in offered.split(",")}


def _refuse(start_response: StartResponse, status: str, message: str) -> Iterable[bytes]:
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": "bad_request"}}]})
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def _run(handler: BaseGraphQLTransportWSHandler, max_operations: int, recheck_s: float) -> None:
    # Blocking calls leave the loop through to_thread: the socket's receive, each open subscription's
    # next_batch and the credential re-check. Enough workers for all of them (made lazily), so that one never
    # waits for another.
    executor = ThreadPoolExecutor(max_workers=max_operations + 2, thread_name_prefix="graphql-ws")
    asyncio.get_running_loop().set_default_executor(executor)
    watch = asyncio.ensure_future(_watch_credentials(handler, recheck_s))
    try:
        await handler.handle()
    finally:
        watch.cancel()


async def _watch_credentials(handler: BaseGraphQLTransportWSHandler, every_s: float) -> None:
    """Close the socket with 4403 once the credential connection_init carried lapses (key revoked, user removed)."""
    context: WebSocketContext = handler.context
    while True:
        await asyncio.sleep(every_s)
        if context.opened_by is None:
            continue  # not acknowledged yet: connection_init is checked when it comes
        if await asyncio.to_thread(_lapsed, context.app, context.opened_by):
            logger.info("graphql websocket of %s closed: its credential lapsed", context.opened_by.actor)
            await handler.websocket.close(4403, "Forbidden")
            return


def _lapsed(app: Flask, principal: Principal) -> bool:
    with app.app_context():  # a context (and database session) of its own, on the executor's thread
        return bool(credentials.lapsed({0: principal}))


def _finish(ws: simple_websocket.Server) -> None:
    """Complete the closing handshake, then end the TCP connection (the server closes first, RFC 6455 7.1.1)."""
    if ws.connected:
        try:
            ws.close()
        except (simple_websocket.ConnectionClosed, OSError):
            pass
    ws.thread.join(CLOSE_WAIT_S)  # the reader ends once the client's close frame arrives
    try:
        # Shut down, not just close: the server's own file objects still hold the socket, and Werkzeug
        # would otherwise wait on it for a next request that never comes.
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class GraphQLWebSocketMiddleware:
    """WSGI middleware: WebSocket upgrades of ``path`` go to the GraphQL handler, everything else to ``wsgi_app``."""

    def __init__(self, wsgi_app: Callable[..., Any], app: Flask, path: str = "/graphql") -> None:
        self.wsgi_app, self.app, self.path = wsgi_app, app, path

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path or environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return self.wsgi_app(environ, start_response)
        if not _wants_graphql_ws(environ):
            return _refuse(start_response, "400 Bad Request",
                           f"GraphQL over WebSocket speaks the {GRAPHQL_TRANSPORT_WS_PROTOCOL} subprotocol only")
        try:
            ws = simple_websocket.Server(environ, subprotocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
                                         ping_interval=WS_PING_S, max_message_size=MAX_MESSAGE_BYTES)
        except RuntimeError:  # a server that does not hand out its socket
            return _refuse(start_response, "501 Not Implemented", "this server cannot serve WebSockets")
        try:
            self._serve(ws, environ)
        finally:
            _finish(ws)
        # The response was the WebSocket itself: tell the server not to write one (as engineio does).
        if ws.mode == "gunicorn":
            raise StopIteration()
        raise ConnectionError("websocket closed")

    def _serve(self, ws: simple_websocket.Server, environ: dict[str, Any]) -> None:
        config = self.app.config
        view = WebSocketView()
        # The upgrade's request context stays pushed for the connection: resolvers see current_app, and
        # the asyncio tasks inherit it (contextvars), each task running on this thread.
        with self.app.request_context(environ):
            handler = BaseGraphQLTransportWSHandler(
                view=view,  # type: ignore[arg-type]
                websocket=SimpleWebSocketAdapter(view, ws),
                context=WebSocketContext(app=self.app, environ=environ),
                root_value=None,
                schema=self.app.extensions["graphql_schema"],
                connection_init_wait_timeout=timedelta(seconds=float(config["GRAPHQL_WS_INIT_TIMEOUT_S"])),
                max_subscriptions_per_connection=int(config["GRAPHQL_WS_MAX_OPERATIONS"]),
            )
            recheck_s = setting(config, "SOCKET_AUTH_RECHECK_S", credentials.DEFAULT_RECHECK_S, float)
            asyncio.run(_run(handler, int(config["GRAPHQL_WS_MAX_OPERATIONS"]), recheck_s))
