"""Deliveries of events to subscriptions, and every attempt made."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import new_id, utcnow

# succeeded: a 2xx came back. retrying: due again at next_attempt_at. waiting: an ordered
# subscription holds it behind an earlier event of the same key. dead: out of attempts (a dead letter).
# discarded: the subscription was disabled (410) or deleted while it was pending.
SUCCEEDED, RETRYING, WAITING, DEAD, DISCARDED = "succeeded", "retrying", "waiting", "dead", "discarded"
PENDING_STATES = (RETRYING, WAITING)
# Where a delivery came from: the live consumer, a dead-letter replay, or a recover window.
ORIGIN_LIVE, ORIGIN_REPLAY, ORIGIN_RECOVER = "live", "replay", "recover"

# The rows each partial index keeps (the queries that use them say as much in their WHERE clauses).
_DUE = text("next_attempt_at IS NOT NULL")
_UNSETTLED = text("status IN ('retrying', 'waiting', 'dead')")


class Delivery(Model):
    """One event for one subscription: its state, and the event itself while it is not delivered."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Partial: only retries have a due time, and only ordered keys with something retrying, waiting or
        # dead block later events; delivered rows, almost all of them, are left out of both indexes.
        Index("ix_deliveries_due", "status", "next_attempt_at", postgresql_where=_DUE, sqlite_where=_DUE),
        Index("ix_deliveries_sub_created", "subscription_id", "created_at"),
        Index("ix_deliveries_sub_key_status", "subscription_id", "event_key", "status",
              postgresql_where=_UNSETTLED, sqlite_where=_UNSETTLED),
        Index("ix_deliveries_tenant_status", "tenant_id", "status", "updated_at"),
        # A restarted dispatcher skips events of its first batch that are already recorded.
        Index("ix_deliveries_sub_position", "subscription_id", "partition", "offset"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # No foreign key of its own: a delivery's tenant is its subscription's, and the subscription's key already
    # removes it with its tenant (tenant -> subscriptions -> deliveries, both ON DELETE CASCADE). The check
    # ran for every row the dispatcher records (docs/performance.md).
    tenant_id: Mapped[int] = mapped_column(Integer, nullable=False)
    # No foreign keys on the two columns the dispatcher writes per row either (it checked every row it recorded,
    # a third of the database's work per delivery): the recording takes a share lock on the subscription once
    # per batch instead (``dispatch_record``), and a trigger deletes a subscription's deliveries, and a
    # delivery's attempts, as ON DELETE CASCADE did (migration c4e7a91d3b20; docs/webhooks.md).
    subscription_id: Mapped[str] = mapped_column(String(36), nullable=False)
    event_id: Mapped[str] = mapped_column(Text, nullable=False)  # the webhook-id, the same on every attempt
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    event_key: Mapped[str | None] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    origin: Mapped[str] = mapped_column(String(16), default=ORIGIN_LIVE, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The CloudEvents structured JSON body, kept until delivered so retries survive log retention.
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)

    attempt_list: Mapped[list[DeliveryAttempt]] = relationship(
        "DeliveryAttempt", primaryjoin="Delivery.id == foreign(DeliveryAttempt.delivery_id)",
        order_by="DeliveryAttempt.id", cascade="all, delete-orphan", passive_deletes=True)


class DeliveryAttempt(Model):
    """One HTTP attempt: when, how long, what came back."""

    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)  # see Delivery.subscription_id
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # at most 4 KB
    error: Mapped[str | None] = mapped_column(Text)
