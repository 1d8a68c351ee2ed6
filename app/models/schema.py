"""Schema registry metadata: schemas, subject versions, references, compatibility configs and modes, per tenant."""
from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import utcnow

SUBJECT_LENGTH = 255


class RegistrySchema(Model):
    """One distinct schema of a tenant; its integer id is the id Confluent's wire format carries."""

    __tablename__ = "registry_schemas"
    # why: one row per (tenant, fingerprint) is what makes registering the same schema twice return the same id
    # why sqlite_autoincrement: SQLite would otherwise reuse the highest id after a permanent delete, and
    # records in Kafka carrying that id would then decode with another schema.
    __table_args__ = (UniqueConstraint("tenant_id", "fingerprint", name="uq_registry_schemas_tenant_fp"),
                      {"sqlite_autoincrement": True})
    # Global integer ids like Confluent's; another tenant's id answers 404 (every query filters on tenant).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    schema_type: Mapped[str] = mapped_column(String(16), nullable=False)
    schema_text: Mapped[str] = mapped_column(Text, nullable=False)
    # SHA-256 of the core fingerprint and the references (name, subject, version) the schema was registered with.
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class RegistrySchemaReference(Model):
    """A reference of a schema to a version of another subject (Confluent's ``references``)."""

    __tablename__ = "registry_schema_references"
    __table_args__ = (
        UniqueConstraint("schema_id", "position", name="uq_registry_refs_schema_position"),
        Index("ix_registry_refs_target", "tenant_id", "subject", "version"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    schema_id: Mapped[int] = mapped_column(ForeignKey("registry_schemas.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(1024), nullable=False)
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class RegistrySubjectVersion(Model):
    """Version ``version`` of ``subject``: a schema id, soft-deletable."""

    __tablename__ = "registry_subject_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject", "version", name="uq_registry_versions_subject_version"),
        Index("ix_registry_versions_schema", "tenant_id", "schema_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    schema_id: Mapped[int] = mapped_column(ForeignKey("registry_schemas.id", ondelete="CASCADE"), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class RegistryConfig(Model):
    """A compatibility level: the tenant's global one (subject NULL) or a subject's."""

    __tablename__ = "registry_configs"
    # why: NULLs never collide in a unique constraint, so the global row's uniqueness is kept by the service
    # (it reads the first row and updates or deletes every matching one).
    __table_args__ = (UniqueConstraint("tenant_id", "subject", name="uq_registry_configs_tenant_subject"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    compatibility: Mapped[str] = mapped_column(String(32), nullable=False)
    normalize: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)


class RegistryMode(Model):
    """A registry mode (READWRITE, READONLY, READONLY_OVERRIDE, IMPORT): global (subject NULL) or a subject's."""

    __tablename__ = "registry_modes"
    __table_args__ = (UniqueConstraint("tenant_id", "subject", name="uq_registry_modes_tenant_subject"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    mode: Mapped[str] = mapped_column(String(32), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 nullable=False)
