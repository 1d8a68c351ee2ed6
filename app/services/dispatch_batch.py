"""One fetched batch of one subscription: filter, order, send (``deliver``), and record (``record``), in that order.

The batch is recorded in one transaction (deliveries, attempts, subscription health, lease renewal)
and only then may the caller commit the log offsets: an offset moves past an event once the event is
delivered or durably pending (retrying, waiting, dead, or discarded by a 410). A crash in between
re-reads the batch; ``recorded_offsets`` then skips what was recorded, so only the events that were
sent but not yet recorded are sent twice. The dispatcher pipelines batches (``dispatch.Runner``): it
sends batch N+1 while ``record`` runs for batch N, and commits the offsets in batch order.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, or_, select

from app.bus.delivery import plan_lanes, split_after_failure
from app.bus.envelope import Record, event_to_json
from app.extensions import db
from app.models import Delivery
from app.models.base import utcnow
from app.models.delivery import DEAD, DISCARDED, ORIGIN_LIVE, RETRYING, WAITING
from app.services import dispatch_leases
from app.services.dispatch_config import DeliverySettings
from app.services.dispatch_record import DISABLE, IN_CHUNK, SUCCESS, Item, insert_new, settle
from app.services.dispatch_send import Courier, SubSpec, body_of, refused
from app.services.wire_format import decode_records, might_be_wire

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]


def recorded_offsets(subscription_id: str, spans: dict[int, tuple[int, int]]) -> set[tuple[int, int]]:
    """(partition, offset) of live deliveries already recorded within ``spans`` ({partition: (first, last)})."""
    if not spans:
        return set()
    where = or_(*(and_(Delivery.partition == p, Delivery.offset.between(lo, hi)) for p, (lo, hi) in spans.items()))
    rows = db.session.execute(select(Delivery.partition, Delivery.offset).where(
        Delivery.subscription_id == subscription_id, Delivery.origin == ORIGIN_LIVE, where)).all()
    return {(p, o) for p, o in rows}


def blocked_keys(subscription_id: str, keys: Sequence[str]) -> set[str]:
    """Keys of an ordered subscription with an earlier event retrying, waiting or dead: later events wait."""
    out: set[str] = set()
    for start in range(0, len(keys), IN_CHUNK):
        chunk = list(keys[start:start + IN_CHUNK])
        out.update(db.session.execute(select(Delivery.event_key).distinct().where(
            Delivery.subscription_id == subscription_id, Delivery.status.in_((RETRYING, WAITING, DEAD)),
            Delivery.event_key.in_(chunk))).scalars())
    return out


def record_batch(spec: SubSpec, items: Sequence[Item], owner: str, partitions: Sequence[int], ttl_s: float,
                 next_offsets: Mapping[int, int] | None = None, log: Any = None) -> set[int]:
    """Insert the batch's deliveries and renew its leases in one transaction; the partitions still held.

    With ``log`` (the SQL event log, in this same database) the group's ``next_offsets`` of the partitions
    still held are committed in that transaction too: one durable commit for a batch instead of two.
    """
    try:
        insert_new(spec, items, throttle_health=True)
        held = dispatch_leases.fence(owner, spec.id, partitions, ttl_s)
        if log is not None and next_offsets:
            mine = {p: o for p, o in next_offsets.items() if p in held}
            if mine:
                log.commit_in(db.session.connection(), spec.group, spec.stream, mine)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return held


def select_items(spec: SubSpec, records: Sequence[Record], skip: set[tuple[int, int]]) -> list[Item]:
    """The records this subscription wants (types, filter), not yet recorded, as items to deliver."""
    items = []
    for rec in records:
        if (rec.partition, rec.offset) in skip:
            continue
        event = rec.event
        view = event_to_json(event) if spec.filter_expr else None
        if not spec.matches(event, view):
            continue
        items.append(Item(event.id, event.type, event.key, rec.partition, rec.offset, body_of(event)))
    return items


async def send_lanes(spec: SubSpec, items: list[Item], blocked: set[str], courier: Courier,
                     settings: DeliverySettings) -> None:
    """Send the items lane by lane (concurrent lanes, sequential within one); settle each item's state.

    A fixed pool of up to ``max_in_flight`` sender coroutines takes lanes in order, rather than a task per
    lane waiting on the courier's semaphore: the same concurrency for much less event-loop work per event.
    """
    lanes, held = plan_lanes(items, lambda i: i.key, spec.ordered, blocked)
    for item in held:
        item.status = WAITING
    if not lanes:
        return
    refusal = await courier.url_refusal(spec)
    gone = False

    def is_gone() -> bool:  # read late, when a queued send finally gets its slot
        return gone

    async def run(lane: list[Item]) -> None:
        nonlocal gone
        for index, item in enumerate(lane):
            if gone:  # the endpoint said 410: nothing more goes out, the rest is recorded as discarded
                item.status = DISCARDED
                continue
            at = utcnow()
            result = refused(refusal) if refusal else await courier.send(spec, item.event_id, item.body, is_gone)
            if result is None:
                item.status = DISCARDED
                continue
            kind = settle(item, result, at, spec, settings)
            if kind == DISABLE:
                gone = True
            if kind != SUCCESS and spec.ordered and item.key is not None:
                behind = {RETRYING: WAITING, DEAD: DEAD}.get(item.status or "", DISCARDED)
                for rest in split_after_failure(lane, index):
                    rest.status = behind
                return

    todo = iter(lanes)  # shared by the pool: each coroutine takes the next lane when it is free

    async def sender() -> None:
        for lane in todo:
            await run(lane)

    await asyncio.gather(*(sender() for _ in range(min(spec.max_in_flight, len(lanes)))))


def pending_keys(items: Sequence[Item]) -> set[str]:
    """Keys that must wait behind these (sent, not yet recorded) items: the ones retrying, waiting or dead."""
    return {i.key for i in items if i.key is not None and i.status in (RETRYING, WAITING, DEAD)}


async def deliver(spec: SubSpec, records: Sequence[Record], dedup: bool, courier: Courier,
                  settings: DeliverySettings, run_db: DbCall, unrecorded: Sequence[Item] = ()) -> list[Item]:
    """Select and send one batch; the settled items, to be recorded.

    ``unrecorded``: items of an earlier batch that were sent but are still being recorded (the pipeline);
    for an ordered subscription their failed keys block this batch just as recorded ones would.
    """
    skip: set[tuple[int, int]] = set()
    if dedup:
        spans: dict[int, tuple[int, int]] = {}
        for r in records:
            lo, hi = spans.get(r.partition, (r.offset, r.offset))
            spans[r.partition] = (min(lo, r.offset), max(hi, r.offset))
        skip = await run_db(recorded_offsets, spec.id, spans)
        if skip:
            logger.info("subscription %s: %d events of this batch were recorded before a restart; not sent again",
                        spec.id, len(skip))
    if any(might_be_wire(r.event) for r in records):
        # Records a Confluent serializer wrote into the topic: webhook bodies carry the decoded JSON.
        records = await run_db(decode_records, spec.tenant_id, records)
    items = select_items(spec, records, skip)
    if items:
        blocked: set[str] = set()
        if spec.ordered:
            # Taken before the query: an earlier batch recorded meanwhile is then surely in the database.
            local = pending_keys(unrecorded)
            keys = sorted({i.key for i in items if i.key is not None})
            blocked = (await run_db(blocked_keys, spec.id, keys) if keys else set()) | local
        await send_lanes(spec, items, blocked, courier, settings)
    return items


def next_offsets(records: Sequence[Record]) -> dict[int, int]:
    """{partition: the offset after the last of ``records`` in it}: what a group commits once they are recorded."""
    nxt: dict[int, int] = {}
    for r in records:
        if r.offset + 1 > nxt.get(r.partition, -1):
            nxt[r.partition] = r.offset + 1
    return nxt


async def record(spec: SubSpec, records: Sequence[Record], items: list[Item], settings: DeliverySettings,
                 owner: str, run_db: DbCall, log: Any = None) -> tuple[dict[int, int], bool]:
    """Record a sent batch (one transaction, leases renewed); the offsets ({partition: next}) to commit, and
    whether they are committed already (``log``: the SQL event log in the app's database, see ``record_batch``)."""
    partitions = sorted({r.partition for r in records})
    nxt = next_offsets(records)
    held = await run_db(record_batch, spec, items, owner, partitions, settings.lease_ttl_s, nxt, log)
    lost = set(partitions) - held
    if lost:
        # Another dispatcher took these over (we stalled past the lease): it re-reads from the committed
        # offset; committing ours could only move its position backwards or forwards under its feet.
        logger.warning("subscription %s: lease of partitions %s lost mid-batch; not committing them", spec.id,
                       sorted(lost))
    return {p: o for p, o in nxt.items() if p in held}, log is not None


async def process(spec: SubSpec, records: Sequence[Record], dedup: bool, courier: Courier,
                  settings: DeliverySettings, owner: str, run_db: DbCall) -> dict[int, int]:
    """Deliver and record one batch; the offsets ({partition: next}) that may now be committed."""
    items = await deliver(spec, records, dedup, courier, settings, run_db)
    offsets, _ = await record(spec, records, items, settings, owner, run_db)
    return offsets
