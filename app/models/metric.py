"""Per-minute roll-ups of the console's figures (events in, deliveries, lag, dead letters), kept for days."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import DateTime, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

# Counters add up what every process counted in the minute; gauges keep the last sample taken in it.
KIND_COUNTER, KIND_GAUGE = "counter", "gauge"


class MetricRollup(Model):
    """One figure of one tenant's stream (or group) in one UTC minute."""

    __tablename__ = "metric_rollups"
    # why this key order: every read is "one tenant, a time window", and the upsert conflicts on the whole key
    __table_args__ = (Index("ix_metric_rollups_minute", "minute"),)  # retention deletes by minute alone
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    # A stream name for rates, "<stream>/<group>" for consumer lag, "" for tenant-wide figures.
    subject: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
