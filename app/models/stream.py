"""Stream metadata; the events themselves live in the event log."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import new_id, utcnow
from app.models.tenant import Tenant


class Stream(Model):
    """A named, partitioned stream of events of one tenant."""

    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_streams_tenant_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    partitions: Mapped[int] = mapped_column(Integer, nullable=False)
    retention_ms: Mapped[int | None] = mapped_column(BigInteger)
    schema_subject: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)

    tenant: Mapped[Tenant] = relationship(Tenant)

    @property
    def log_name(self) -> str:
        """The stream's name in the event log (and its Kafka topic): ``<tenant>.<stream>``."""
        return f"{self.tenant.slug}.{self.name}"
