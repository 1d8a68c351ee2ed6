"""Query and Mutation: thin resolvers that translate arguments, call a service and map its answer to types.

Every rule (tenant scoping, permissions, validation, pagination) stays in ``app/services``; a resolver
only checks the permission the matching REST endpoint's ``@require`` checks.
"""
from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.graphql.context import principal_for
from app.graphql.errors import service_errors
from app.graphql.types import (
    ConsumerGroup,
    ConsumerGroupPage,
    DeadLetter,
    DeadLetterPage,
    Event,
    EventPage,
    Long,
    PublishPayload,
    PublishResult,
    ReplayJob,
    ReplayJobPage,
    ReplayPayload,
    Stream,
    StreamPage,
    Viewer,
    WebhookSubscription,
    WebhookSubscriptionPage,
    consumer_group,
    event_page,
    from_json,
    group_page,
    replay_job,
    stream_type,
)
from app.security import MANAGE, PUBLISH, READ
from app.services import dead_letters, events_read, groups, replay_jobs, streams, subscriptions
from app.services.pagination import parse_limit
from app.services.publish import publish_events


def _limit(limit: int) -> int:
    # The REST rule for ?limit= (1..1000, 400 invalid_parameter otherwise).
    return parse_limit(str(limit))


def _args(**values: Any) -> dict[str, str]:
    """GraphQL arguments as the query parameters a REST list takes (absent ones left out)."""
    return {name: str(value) for name, value in values.items() if value is not None}


def list_events(info: Info, stream: str, limit: int, cursor: str | None, partition: int | None, offset: int | None,
                from_time: str | None, type: str | None, key: str | None, q: str | None) -> EventPage:
    """A page of a stream's events (GET /streams/{name}/events)."""
    with service_errors():
        args = _args(limit=limit, cursor=cursor, partition=partition, offset=offset, from_time=from_time, type=type,
                     key=key, q=q)
        return event_page(events_read.list_events(principal_for(info, READ), stream, args))


def list_groups(info: Info, limit: int, cursor: str | None, stream: str | None) -> ConsumerGroupPage:
    """The tenant's consumer groups with lag (GET /groups)."""
    with service_errors():
        return group_page(groups.list_groups(principal_for(info, READ), _limit(limit), cursor, stream))


def list_subscriptions(info: Info, limit: int, cursor: str | None, stream: str | None,
                       status: str | None) -> WebhookSubscriptionPage:
    """The tenant's webhook subscriptions (GET /subscriptions)."""
    with service_errors():
        rows, nxt = subscriptions.list_subscriptions(principal_for(info, READ), _limit(limit), cursor, stream, status)
        items = [from_json(WebhookSubscription, subscriptions.subscription_to_json(s)) for s in rows]
    return WebhookSubscriptionPage(items=items, next=nxt)


def dead_letter_page(info: Info, limit: int, cursor: str | None, subscription: str | None = None,
                     since: str | None = None, until: str | None = None) -> DeadLetterPage:
    """The tenant's dead letters, most recently dead first (GET /dead-letters)."""
    with service_errors():
        items, nxt = dead_letters.list_dead_letters(principal_for(info, READ), _limit(limit), cursor, subscription,
                                                    since, until)
    return DeadLetterPage(items=[from_json(DeadLetter, d) for d in items], next=nxt)


@strawberry.type
class Query:
    """Reads of the caller's tenant; each needs the read permission (every role and key scope has it)."""

    @strawberry.field(description="Who the credentials act as: tenant, actor and permissions.")
    def me(self, info: Info) -> Viewer:
        principal = principal_for(info, READ)
        return Viewer(tenant=principal.tenant_slug, actor=principal.actor, permissions=sorted(principal.permissions))

    @strawberry.field(description="The tenant's streams by name.")
    def streams(self, info: Info, limit: int = 100, cursor: str | None = None) -> StreamPage:
        with service_errors():
            rows, nxt = streams.list_streams(principal_for(info, READ), _limit(limit), cursor)
        return StreamPage(items=[stream_type(streams.stream_to_json(s)) for s in rows], next=nxt)

    @strawberry.field(description="One stream; error stream_not_found when absent (or another tenant's).")
    def stream(self, info: Info, name: str) -> Stream | None:
        with service_errors():
            return stream_type(streams.stream_to_json(streams.get_stream(principal_for(info, READ), name)))

    @strawberry.field(description="A stream's events in offset order per partition (filters as REST's).")
    def events(self, info: Info, stream: str, limit: int = 100, cursor: str | None = None,
               partition: int | None = None, offset: Long | None = None, from_time: str | None = None,
               type: str | None = None, key: str | None = None, q: str | None = None) -> EventPage:
        return list_events(info, stream, limit, cursor, partition, offset, from_time, type, key, q)

    @strawberry.field(description="One event by partition and offset; error event_not_found outside the log.")
    def event(self, info: Info, stream: str, partition: int, offset: Long) -> Event | None:
        with service_errors():
            view = events_read.get_event(principal_for(info, READ), stream, str(partition), str(offset))
        return from_json(Event, view)

    @strawberry.field(description="The tenant's consumer groups (of one stream when given) with their lag.")
    def groups(self, info: Info, stream: str | None = None, limit: int = 100,
               cursor: str | None = None) -> ConsumerGroupPage:
        return list_groups(info, limit, cursor, stream)

    @strawberry.field(description="One consumer group's committed offsets, ends and lag per partition.")
    def group(self, info: Info, stream: str, group: str) -> ConsumerGroup | None:
        with service_errors():
            return consumer_group(groups.group_lag(principal_for(info, READ), stream, group))

    @strawberry.field(description="The tenant's webhook subscriptions, oldest first.")
    def subscriptions(self, info: Info, stream: str | None = None, status: str | None = None, limit: int = 100,
                      cursor: str | None = None) -> WebhookSubscriptionPage:
        return list_subscriptions(info, limit, cursor, stream, status)

    @strawberry.field(description="One webhook subscription.")
    def subscription(self, info: Info, id: strawberry.ID) -> WebhookSubscription | None:
        with service_errors():
            sub = subscriptions.get_subscription(principal_for(info, READ), str(id))
            return from_json(WebhookSubscription, subscriptions.subscription_to_json(sub))

    @strawberry.field(description="Dead letters, most recently dead first; since/until are RFC 3339.")
    def dead_letters(self, info: Info, subscription: strawberry.ID | None = None, since: str | None = None,
                     until: str | None = None, limit: int = 100, cursor: str | None = None) -> DeadLetterPage:
        return dead_letter_page(info, limit, cursor, None if subscription is None else str(subscription), since,
                                until)

    @strawberry.field(description="One dead letter (select event and attempts for the details).")
    def dead_letter(self, info: Info, id: strawberry.ID) -> DeadLetter | None:
        with service_errors():
            row = dead_letters.get_dead_letter(principal_for(info, READ), str(id))
            return from_json(DeadLetter, dead_letters.dead_letter_to_json(row))

    @strawberry.field(description="Replay and recover jobs, newest first.")
    def replay_jobs(self, info: Info, subscription: strawberry.ID | None = None, status: str | None = None,
                    kind: str | None = None, limit: int = 100, cursor: str | None = None) -> ReplayJobPage:
        with service_errors():
            rows, nxt = replay_jobs.list_jobs(principal_for(info, READ), _limit(limit), cursor,
                                              None if subscription is None else str(subscription), status, kind)
        return ReplayJobPage(items=[replay_job(replay_jobs.job_to_json(j)) for j in rows], next=nxt)

    @strawberry.field(description="One replay job with its progress.")
    def replay_job(self, info: Info, id: strawberry.ID) -> ReplayJob | None:
        with service_errors():
            return replay_job(replay_jobs.job_to_json(replay_jobs.get_job(principal_for(info, READ), str(id))))


@strawberry.input(description="An event to publish: type and data are required, the rest as in REST.")
class EventInput:
    type: str
    data: JSON | None = strawberry.UNSET
    id: str | None = strawberry.UNSET
    source: str | None = strawberry.UNSET
    time: str | None = strawberry.UNSET
    subject: str | None = strawberry.UNSET
    key: str | None = strawberry.UNSET
    headers: JSON | None = strawberry.UNSET
    datacontenttype: str | None = strawberry.UNSET
    dataschema: str | None = strawberry.UNSET


def _event_body(event: EventInput) -> dict[str, Any]:
    # Only what the client sent: the publish service tells "absent" from null exactly as for REST bodies.
    return {name: value for name, value in vars(event).items() if value is not strawberry.UNSET}


@strawberry.type
class Mutation:
    """Writes: publish (publish permission) and replay (manage permission), as over REST."""

    @strawberry.mutation(description="Append events to a stream, all or nothing; positions once durable.")
    def publish(self, info: Info, stream: str, events: list[EventInput],
                idempotency_key: str | None = None) -> PublishPayload:
        with service_errors():
            principal = principal_for(info, PUBLISH)
            _, body = publish_events(principal, stream, {"events": [_event_body(e) for e in events]},
                                     idempotency_key)
        return PublishPayload(results=[PublishResult(**r) for r in body["results"]])

    @strawberry.mutation(description="Replay dead letters as a job: by ids, or by subscription, window and CEL filter.")
    def replay_dead_letters(self, info: Info, ids: list[strawberry.ID] | None = None,
                            subscription: strawberry.ID | None = None, since: str | None = None,
                            until: str | None = None, filter: str | None = None) -> ReplayPayload:
        # Everything given goes to the service, which refuses ids mixed with a window as REST does.
        body: dict[str, Any] = {name: value for name, value in (
            ("ids", None if ids is None else [str(i) for i in ids]), ("subscription", subscription),
            ("since", since), ("until", until), ("filter", filter)) if value is not None}
        with service_errors():
            job, enqueued = dead_letters.replay(principal_for(info, MANAGE), body)
            return ReplayPayload(job=replay_job(replay_jobs.job_to_json(job)), enqueued=enqueued)
