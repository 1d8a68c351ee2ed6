"""Column helpers shared by the models."""
from __future__ import annotations

from datetime import UTC, datetime

from app.bus.ids import new_id

__all__ = ["new_id", "utcnow"]


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.now(UTC)
