"""Alert rules, their instances (pending -> firing -> resolved, kept as history) and process heartbeats."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import new_id, utcnow

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
OPEN_STATES = (PENDING, FIRING)


class AlertRule(Model):
    """A condition watched by the evaluator for one tenant, and whom to tell when it holds."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_alert_rules_tenant_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    target: Mapped[dict] = mapped_column(JSON, nullable=False)  # {"stream", "group", "subscription", "process"}
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    for_s: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    window_s: Mapped[int] = mapped_column(Integer, nullable=False, default=300)  # rate and throughput kinds
    renotify_s: Mapped[int | None] = mapped_column(Integer)  # None: one notification per firing
    # [{"webhook": url, "subscription": managed subscription id} | {"email": address}]
    notify: Mapped[list] = mapped_column(JSON, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    silenced_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)


class Alert(Model):
    """One episode of a rule's condition: pending while it holds for less than ``for_s``, then firing, then resolved."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_tenant_state", "tenant_id", "state", "since"),
        Index("ix_alerts_rule", "rule_id", "since"),
        # At most one open episode per rule, even with two evaluators racing: ``open_rule_id`` is the rule's
        # id while the alert is pending or firing and NULL once resolved (NULLs never collide).
        UniqueConstraint("open_rule_id", name="uq_alerts_open_rule"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False)
    open_rule_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # the condition began
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    value: Mapped[float | None] = mapped_column(Float)  # the latest measured value
    last_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notifications: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    rule: Mapped[AlertRule] = relationship(AlertRule)


class ProcessHeartbeat(Model):
    """The last sign of life of a worker or beat process (read by ``worker_silent`` rules)."""

    __tablename__ = "process_heartbeats"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "worker" | "beat"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # hostname:pid
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
