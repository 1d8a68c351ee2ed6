"""The ``events`` subscription: a live tail of a stream (``app/services/live_feed.py``) pushed over WebSocket.

``Tail.next_batch`` blocks, so it runs on a worker thread (``asyncio.to_thread``) in an app context of its
own: the connection's event loop stays free to answer pings and other operations meanwhile. Completing
the operation (or closing the socket) cancels the generator, whose ``finally`` closes the tail.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from flask import Flask, current_app
from strawberry.types import Info

from app.extensions import db
from app.graphql.context import principal_for
from app.graphql.errors import service_errors, to_graphql_error
from app.graphql.types import Event, EventBatch, Long, Missed, from_json
from app.security import READ
from app.services import live_feed
from app.services.errors import ServiceError

logger = logging.getLogger(__name__)

POLL_S = 1.0  # how long one next_batch waits: also how soon a cancelled operation's thread is free again


@strawberry.input(description="What the events subscription keeps: the same rules as the event browser.")
class EventFilter:
    type: str | None = strawberry.field(default=None, description="Event type, exact or a glob (order.*).")
    key: str | None = strawberry.field(default=None, description="Partition key, exactly.")
    expression: str | None = strawberry.field(default=None, description="A CEL expression over the event.")
    q: str | None = strawberry.field(default=None, description="A substring of the data (JSON text).")
    partition: int | None = strawberry.field(default=None, description="Only this partition.")


@strawberry.input(description="Where to resume in one partition (a Missed's fromOffset, or the last offset + 1).")
class PartitionOffset:
    partition: int
    offset: Long


def _start(value: str, offsets: list[PartitionOffset] | None) -> str | int | dict[int, int]:
    """What open_tail takes: "latest", "earliest", one offset, or exact offsets per partition (a resume)."""
    if offsets is not None:
        return {o.partition: int(o.offset) for o in offsets}
    return int(value) if value.isdigit() else value  # anything else is the service's to refuse


def _next_batch(app: Flask, tail: live_feed.Tail, timeout: float) -> live_feed.TailBatch | None:
    # An app context of this thread's own: Flask-SQLAlchemy scopes sessions by app context, and a
    # session must never be shared with the connection's thread.
    with app.app_context():
        return tail.next_batch(timeout)


def _batch(batch: live_feed.TailBatch) -> EventBatch:
    return EventBatch(events=[from_json(Event, e) for e in batch.events],
                      missed=[Missed(partition=m.partition, from_offset=m.from_offset, count=m.count)
                              for m in batch.missed])


@strawberry.type
class Subscription:
    """Live data over WebSocket (graphql-transport-ws)."""

    @strawberry.subscription(description="New events of a stream as they are published, in batches.")
    async def events(self, info: Info, stream: str, filter: EventFilter | None = None,
                     start: Annotated[str, strawberry.argument(name="from", description=(
                         '"latest" (the default: only new events), "earliest" (everything kept, then new ones) '
                         "or an offset, in every partition (or the filter's partition)."))] = "latest",
                     from_offsets: Annotated[list[PartitionOffset] | None, strawberry.argument(description=(
                         "Exact offsets per partition, instead of from: how a client resumes after missed "
                         "events or a reconnect."))] = None,
                     ) -> AsyncGenerator[EventBatch, None]:
        wanted = filter or EventFilter()
        with service_errors():
            principal = principal_for(info, READ)
            tail = live_feed.open_tail(principal, stream, _start(start, from_offsets), partition=wanted.partition,
                                       event_type=wanted.type, key=wanted.key, expression=wanted.expression,
                                       q=wanted.q)
        app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
        db.session.close()  # a subscription lives long: hold no database connection meanwhile
        try:
            while not tail.closed:
                batch = await asyncio.to_thread(_next_batch, app, tail, POLL_S)
                if batch is not None and (batch.events or batch.missed):
                    yield _batch(batch)
            # Closed by the reader (the stream was deleted, the log failed): say why, then complete.
            if isinstance(tail.error, ServiceError):
                raise to_graphql_error(tail.error)
            if tail.error is not None:
                logger.warning("live tail of %s closed: %r", stream, tail.error)
        finally:
            tail.close()
