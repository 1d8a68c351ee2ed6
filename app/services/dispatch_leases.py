"""Partition leases: which dispatcher consumes which partition of each subscription's stream.

One mechanism for both log backends. The log's consumer groups only store offsets: the Kafka backend
reads with assigned partitions and never joins a Kafka group (no rebalance protocol, no session), and
the SQL backend has no membership at all. So the dispatchers agree among themselves, in the database
they already share, with time-limited rows in ``consumer_leases``:

- partition rows ``(subscription, p >= 0)``: only ``owner`` consumes p until ``expires_at``; renewed on
  every refresh; a dead owner's rows expire and are taken over (at-least-once: the taker re-reads from
  the committed offset);
- membership rows ``(subscription, p < 0)``: each dispatcher heartbeats one row per subscription (its
  negative slot), so every dispatcher knows the live members and the share it should hold.

Partitions are spread round-robin over the sorted live members, rotated per subscription so that
one-partition streams do not all land on the same member. A dispatcher hands a partition over only
between batches (after its batch is recorded and committed), which is what keeps the happy path free
of double deliveries when members come and go.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.extensions import db
from app.models import ConsumerLease
from app.models.base import utcnow

logger = logging.getLogger(__name__)

# Membership rows are kept this long after expiring, then swept.
_SWEEP_AFTER = timedelta(minutes=5)
_LEASES = ConsumerLease.__table__


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def member_slot(owner: str) -> int:
    """The negative partition number of ``owner``'s membership rows."""
    return -1 - (zlib.crc32(owner.encode()) & 0x7FFFFFFF)


def _insert() -> type:
    return pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert  # type: ignore[return-value]


def desired_partitions(owner: str, members: Sequence[str], subscription_id: str, partitions: int) -> set[int]:
    """The partitions ``owner`` should hold: round-robin over sorted members, rotated per subscription."""
    ordered = sorted(set(members) | {owner})
    n = len(ordered)
    turn = zlib.crc32(subscription_id.encode()) % n
    return {p for p in range(partitions) if ordered[(p + turn) % n] == owner}


def sync(owner: str, subs: Mapping[str, int], busy: Mapping[str, set[int]], ttl_s: float) -> dict[str, set[int]]:
    """Heartbeat, take, renew and hand over leases for ``subs`` ({id: partitions}); the wanted ones now held.

    ``busy`` holds, per subscription, partitions being fetched or delivered: they are renewed even when no
    longer desired, and released on a later call, once idle. Commits.
    """
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    slot = member_slot(owner)
    owned: dict[str, set[int]] = {}
    if not subs:
        return owned
    ins = _insert()
    # Sorted everywhere: two dispatchers touching the same rows in the same order cannot deadlock.
    member_rows = [{"subscription_id": s, "partition": slot, "owner": owner, "expires_at": expires}
                   for s in sorted(subs)]
    stmt = ins(ConsumerLease)
    db.session.execute(stmt.on_conflict_do_update(index_elements=["subscription_id", "partition"],
                                                  set_={"owner": owner, "expires_at": expires}), member_rows)
    rows = db.session.execute(
        select(ConsumerLease.subscription_id, ConsumerLease.partition, ConsumerLease.owner,
               ConsumerLease.expires_at).where(ConsumerLease.subscription_id.in_(list(subs)))).all()
    members: dict[str, set[str]] = {s: set() for s in subs}
    for sub_id, partition, row_owner, row_expires in rows:
        if partition < 0 and _aware(row_expires) > now:
            members[sub_id].add(row_owner)
    for sub_id, count in sorted(subs.items()):
        want = desired_partitions(owner, sorted(members[sub_id]), sub_id, count)
        keep = set(busy.get(sub_id, set())) - want
        if want:
            db.session.execute(ins(ConsumerLease).on_conflict_do_nothing(),
                               [{"subscription_id": sub_id, "partition": p, "owner": owner, "expires_at": expires}
                                for p in sorted(want)])
            # Renews ours and takes over expired ones in one statement: a live lease of another owner is left
            # alone (it hands the partition over when it sees the new membership).
            db.session.execute(
                update(ConsumerLease)
                .where(ConsumerLease.subscription_id == sub_id, ConsumerLease.partition.in_(sorted(want)),
                       (ConsumerLease.owner == owner) | (ConsumerLease.expires_at <= now))
                .values(owner=owner, expires_at=expires).execution_options(synchronize_session=False))
        if keep:
            db.session.execute(
                update(ConsumerLease)
                .where(ConsumerLease.subscription_id == sub_id, ConsumerLease.partition.in_(sorted(keep)),
                       ConsumerLease.owner == owner)
                .values(expires_at=expires).execution_options(synchronize_session=False))
        # Partitions neither wanted nor busy are handed over now.
        db.session.execute(
            delete(ConsumerLease).where(ConsumerLease.subscription_id == sub_id, ConsumerLease.owner == owner,
                                        ConsumerLease.partition >= 0,
                                        ConsumerLease.partition.not_in(sorted(want | keep) or [-1]))
            .execution_options(synchronize_session=False))
        db.session.execute(
            delete(ConsumerLease).where(ConsumerLease.subscription_id == sub_id, ConsumerLease.partition < 0,
                                        ConsumerLease.expires_at < now - _SWEEP_AFTER)
            .execution_options(synchronize_session=False))
        held = db.session.execute(
            select(ConsumerLease.partition).where(ConsumerLease.subscription_id == sub_id,
                                                  ConsumerLease.owner == owner, ConsumerLease.partition >= 0,
                                                  ConsumerLease.partition < count)).scalars()
        owned[sub_id] = set(held) & want
    db.session.commit()
    return owned


def fence(owner: str, subscription_id: str, partitions: Sequence[int], ttl_s: float) -> set[int]:
    """Renew the leases of ``partitions`` still held by ``owner`` (in the caller's transaction); those held."""
    if not partitions:
        return set()
    params = {"sid": subscription_id, "parts": sorted(partitions), "holder": owner,
              "until": utcnow() + timedelta(seconds=ttl_s)}
    return set(db.session.execute(_FENCE, params).scalars())


# One Core UPDATE ... RETURNING (PostgreSQL, SQLite >= 3.35), built once with bind parameters: it runs for
# every recorded batch.
_FENCE = (update(_LEASES)
          .where(_LEASES.c.subscription_id == bindparam("sid"),
                 _LEASES.c.partition.in_(bindparam("parts", expanding=True)), _LEASES.c.owner == bindparam("holder"))
          .values(expires_at=bindparam("until"))
          .returning(_LEASES.c.partition))


def release_all(owner: str) -> None:
    """Drop every lease and membership row of ``owner`` (clean shutdown: others take over at once). Commits."""
    db.session.execute(delete(ConsumerLease).where(ConsumerLease.owner == owner)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def release(owner: str, subscription_id: str) -> None:
    """Drop ``owner``'s rows of one subscription (it stopped serving it). Commits."""
    db.session.execute(delete(ConsumerLease).where(ConsumerLease.owner == owner,
                                                   ConsumerLease.subscription_id == subscription_id)
                       .execution_options(synchronize_session=False))
    db.session.commit()
