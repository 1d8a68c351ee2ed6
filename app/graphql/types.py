"""GraphQL object types: the REST API's JSON views (API.md) as typed objects, fields in camelCase.

Each type is built from the dict a service already returns (``from_json``), so the GraphQL view of a
stream, event, group, dead letter or job is the REST view, field for field. Fields that cost a read of
the event log or another query (a stream's partitions, a dead letter's attempts) resolve only when
selected.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, NewType, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.graphql.context import principal_for
from app.graphql.errors import service_errors
from app.security import READ
from app.services.windows import as_utc

# Offsets, watermarks and lag are 64-bit (Kafka's int64); GraphQL's Int is 32-bit.
Long = strawberry.scalar(NewType("Long", int), name="Long", serialize=int, parse_value=int,
                         description="A 64-bit integer (offsets, watermarks, lag, counts).")

T = TypeVar("T")
# Default page size of lists nested in another list's items (a stream's events, groups, ...): nested
# defaults multiply in the cost limit, so they are smaller than the top-level default of 100.
NESTED_LIMIT = 10


def from_json(cls: type[T], data: dict[str, Any], **extra: Any) -> T:
    """An instance of the strawberry type ``cls`` from a service's JSON view (snake_case keys)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue  # a field with a resolver of its own
        if f.name in extra:
            values[f.name] = extra[f.name]
            continue
        value = data.get(f.name)
        # SQLite hands back naive UTC datetimes: RFC 3339 needs the offset.
        values[f.name] = as_utc(value) if isinstance(value, datetime) else value
    return cls(**values)


@strawberry.type(description="Where a partition's retained events start and end (high: the next offset).")
class Partition:
    partition: int
    low: Long
    high: Long


@strawberry.type(description="An event: the CloudEvents 1.0 envelope plus key, headers and its place in the log.")
class Event:
    id: str
    specversion: str
    source: str | None
    type: str
    time: str | None
    subject: str | None
    datacontenttype: str | None
    dataschema: str | None
    key: str | None
    headers: JSON | None
    data: JSON | None = strawberry.field(description="JSON data as JSON, other text as a string.")
    data_base64: str | None = strawberry.field(description="Binary data, base64 (then data is null).")
    partition: int
    offset: Long
    logtime: str | None = strawberry.field(description="When the log stored the event (RFC 3339).")


@strawberry.type(description="A page of events; pass next as cursor to continue (null: the end for now).")
class EventPage:
    items: list[Event]
    next: str | None


def event_page(body: dict[str, Any]) -> EventPage:
    """An EventPage from events_read.list_events' answer."""
    return EventPage(items=[from_json(Event, e) for e in body["items"]], next=body["next"])


@strawberry.type(description="A consumer group's position in one partition.")
class PartitionLag:
    partition: int
    committed: Long | None = strawberry.field(description="Next offset to read; null before the first commit.")
    end: Long
    lag: Long


@strawberry.type(description="A pull consumer group on one stream, with its lag.")
class ConsumerGroup:
    group: str
    stream: str
    lag: Long
    partitions: list[PartitionLag]


def consumer_group(view: dict[str, Any]) -> ConsumerGroup:
    """A ConsumerGroup from the groups service's lag view."""
    return ConsumerGroup(group=view["group"], stream=view["stream"], lag=view["lag"],
                         partitions=[from_json(PartitionLag, p) for p in view["partitions"]])


@strawberry.type
class ConsumerGroupPage:
    items: list[ConsumerGroup]
    next: str | None


def group_page(body: dict[str, Any]) -> ConsumerGroupPage:
    """A ConsumerGroupPage from groups.list_groups' answer."""
    return ConsumerGroupPage(items=[consumer_group(g) for g in body["items"]], next=body["next"])


@strawberry.type(description="A webhook subscription (its secrets are never shown here).")
class WebhookSubscription:
    id: strawberry.ID
    stream: str
    url: str
    event_types: list[str] | None
    filter: str | None
    ordered: bool
    rate_limit_per_s: float | None
    max_in_flight: int
    retry_schedule: list[int] | None
    timeout_s: float | None
    description: str | None
    status: str
    disabled_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    last_success_at: datetime | None
    failing_since: datetime | None

    @strawberry.field(description="This subscription's dead letters, most recently dead first.")
    def dead_letters(self, info: Info, limit: int = NESTED_LIMIT, cursor: str | None = None) -> DeadLetterPage:
        from app.graphql.resolvers import dead_letter_page

        return dead_letter_page(info, limit, cursor, subscription=str(self.id))


@strawberry.type
class WebhookSubscriptionPage:
    items: list[WebhookSubscription]
    next: str | None


@strawberry.type(description="One HTTP attempt of a delivery.")
class DeliveryAttempt:
    at: datetime | None
    duration_ms: float | None
    status_code: int | None
    response_excerpt: str | None
    error: str | None


@strawberry.type(description="A delivery that ran out of attempts.")
class DeadLetter:
    id: strawberry.ID
    subscription: str
    event_id: str
    event_type: str | None
    event_key: str | None
    partition: int | None
    offset: Long | None
    status: str
    origin: str | None
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime | None
    dead_at: datetime | None

    @strawberry.field(description="The CloudEvent the delivery carries (one more query).")
    def event(self, info: Info) -> JSON | None:
        return self._inspect(info).get("event")

    @strawberry.field(description="Every attempt, oldest first (one more query).")
    def attempts(self, info: Info) -> list[DeliveryAttempt]:
        return [from_json(DeliveryAttempt, a) for a in self._inspect(info).get("attempts", [])]

    def _inspect(self, info: Info) -> dict[str, Any]:
        # Kept on this object (one per operation): event and attempts cost one query between them.
        view = self.__dict__.get("_inspected")
        if view is None:
            from app.services import dead_letters

            with service_errors():
                view = dead_letters.inspect(principal_for(info, READ), str(self.id))
            self.__dict__["_inspected"] = view
        return view


@strawberry.type
class DeadLetterPage:
    items: list[DeadLetter]
    next: str | None


@strawberry.type
class ReplayProgress:
    total: int
    done: int
    succeeded: int
    failed: int


@strawberry.type(description="A replay (or recover) job and its progress.")
class ReplayJob:
    id: strawberry.ID
    kind: str
    subscription: str | None
    selector: JSON | None
    status: str
    cron: str | None
    next_run_at: datetime | None
    progress: ReplayProgress
    error: str | None
    created_by: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


def replay_job(view: dict[str, Any]) -> ReplayJob:
    """A ReplayJob from replay_jobs.job_to_json."""
    return from_json(ReplayJob, view, progress=ReplayProgress(**view["progress"]))


@strawberry.type
class ReplayJobPage:
    items: list[ReplayJob]
    next: str | None


@strawberry.type(description="A stream of the caller's tenant.")
class Stream:
    id: strawberry.ID
    name: str
    partition_count: int
    retention_ms: Long | None
    schema_subject: str | None
    description: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @strawberry.field(description="Each partition's low and high offsets (reads the log's watermarks).")
    def partitions(self, info: Info) -> list[Partition]:
        return [from_json(Partition, p) for p in self._detail(info)["partitions"]]

    @strawberry.field(description="Events retained, over all partitions (reads the log's watermarks).")
    def event_count(self, info: Info) -> Long:
        return self._detail(info)["events"]

    @strawberry.field(description="The stream's events, as Query.events.")
    def events(self, info: Info, limit: int = NESTED_LIMIT, cursor: str | None = None, partition: int | None = None,
               offset: Long | None = None, from_time: str | None = None, type: str | None = None,
               key: str | None = None, q: str | None = None) -> EventPage:
        from app.graphql.resolvers import list_events

        return list_events(info, self.name, limit, cursor, partition, offset, from_time, type, key, q)

    @strawberry.field(description="The stream's consumer groups with their lag.")
    def groups(self, info: Info, limit: int = NESTED_LIMIT, cursor: str | None = None) -> ConsumerGroupPage:
        from app.graphql.resolvers import list_groups

        return list_groups(info, limit, cursor, self.name)

    @strawberry.field(description="The stream's webhook subscriptions.")
    def subscriptions(self, info: Info, limit: int = NESTED_LIMIT, cursor: str | None = None,
                      status: str | None = None) -> WebhookSubscriptionPage:
        from app.graphql.resolvers import list_subscriptions

        return list_subscriptions(info, limit, cursor, self.name, status)

    def _detail(self, info: Info) -> dict[str, Any]:
        # Kept on this object (one per operation): partitions and eventCount cost one watermark read.
        view = self.__dict__.get("_detail_view")
        if view is None:
            from app.services import streams

            with service_errors():
                stream = streams.get_stream(principal_for(info, READ), self.name)
                view = streams.stream_to_json(stream, with_partitions=True)
            self.__dict__["_detail_view"] = view
        return view


def stream_type(view: dict[str, Any]) -> Stream:
    """A Stream from streams.stream_to_json (list form: partitions is the count)."""
    return from_json(Stream, view, partition_count=view.get("partition_count", view["partitions"]))


@strawberry.type
class StreamPage:
    items: list[Stream]
    next: str | None


@strawberry.type(description="Who the credentials act as.")
class Viewer:
    tenant: str
    actor: str
    permissions: list[str]


@strawberry.type(description="Where one published event landed.")
class PublishResult:
    id: str
    partition: int
    offset: Long


@strawberry.type
class PublishPayload:
    results: list[PublishResult]


@strawberry.type(description="A replay job created by a mutation; enqueued is false when the runner was not told yet.")
class ReplayPayload:
    job: ReplayJob
    enqueued: bool


@strawberry.type(description="Events a slow subscriber missed in one partition: resume from fromOffset.")
class Missed:
    partition: int
    from_offset: Long
    count: Long


@strawberry.type(description="What the events subscription pushes: new events, and any it had to drop before them.")
class EventBatch:
    events: list[Event]
    missed: list[Missed]
