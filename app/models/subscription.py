"""Webhook subscriptions: where a stream's events are delivered, and how."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import new_id, utcnow
from app.models.stream import Stream

STATUS_ACTIVE, STATUS_PAUSED, STATUS_DISABLED = "active", "paused", "disabled"


def consumer_group_name(tenant_slug: str, subscription_id: str) -> str:
    """The log group of a subscription (tenant-prefixed like every group of the tenant)."""
    return f"{tenant_slug}.__sub.{subscription_id}"


class Subscription(Model):
    """A webhook endpoint subscribed to one stream of its tenant."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_tenant", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), nullable=False, index=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    event_types: Mapped[list | None] = mapped_column(JSON)  # globs, e.g. ["order.*"]; None: every type
    filter: Mapped[str | None] = mapped_column(Text)  # CEL expression over the event
    ordered: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)
    max_in_flight: Mapped[int] = mapped_column(Integer, default=10, nullable=False)
    retry_schedule: Mapped[list | None] = mapped_column(JSON)  # seconds; None: the default schedule
    timeout_s: Mapped[float | None] = mapped_column(Float)  # None: WEBHOOK_TIMEOUT_S
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_ACTIVE, nullable=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Live signing secrets, newest first: [{"enc": Fernet token, "expires_at": ISO time or None}].
    secrets: Mapped[list] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # first failure after a success

    stream: Mapped[Stream] = relationship(Stream)

    @property
    def consumer_group(self) -> str:
        """The log group through which this subscription reads its stream."""
        return consumer_group_name(self.stream.tenant.slug, self.id)
