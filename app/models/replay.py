"""Replay jobs: dead-letter replays, recover windows, and scheduled (cron) replays."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import new_id, utcnow

KIND_DEAD_LETTERS, KIND_RECOVER = "dead_letters", "recover"
QUEUED, RUNNING, SUCCEEDED, FAILED, SCHEDULED = "queued", "running", "succeeded", "failed", "scheduled"


class ReplayJob(Model):
    """A replay run by a Celery task, with progress; a ``cron`` job is re-run by beat."""

    __tablename__ = "replay_jobs"
    __table_args__ = (Index("ix_replay_jobs_tenant", "tenant_id", "created_at"),
                      Index("ix_replay_jobs_due", "status", "next_run_at"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # {"ids": [...]} or {"since", "until", "filter"}: what to replay.
    selector: Mapped[dict] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, nullable=False)
    cron: Mapped[str | None] = mapped_column(String(100))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    done: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    succeeded: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    failed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
