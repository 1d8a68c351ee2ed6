"""Column helpers shared by the models."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_id() -> str:
    """A new UUID string (API.md: ids are UUID strings)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.now(UTC)
