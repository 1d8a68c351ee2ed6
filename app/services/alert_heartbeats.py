"""Heartbeats of worker and beat processes: written every ALERT_HEARTBEAT_S, read by ``worker_silent`` rules."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import ProcessHeartbeat

logger = logging.getLogger(__name__)

WORKER, BEAT = "worker", "beat"
PROCESS_KINDS = (WORKER, BEAT)


def beat(kind: str, name: str, now: datetime | None = None) -> None:
    """Record that process ``name`` of ``kind`` is alive now; commit."""
    at = now or datetime.now(UTC)
    # Update first (the common case), insert when the process is new; a racing twin insert is harmless to lose.
    done = db.session.execute(update(ProcessHeartbeat).where(ProcessHeartbeat.kind == kind,
                                                            ProcessHeartbeat.name == name)
                              .values(seen_at=at).execution_options(synchronize_session=False)).rowcount
    if not done:
        db.session.add(ProcessHeartbeat(kind=kind, name=name, seen_at=at))
    db.session.commit()


def last_seen(kind: str, name: str | None = None) -> datetime | None:
    """The newest heartbeat of any process of ``kind`` (or of the one named ``name``), as aware UTC."""
    query = select(func.max(ProcessHeartbeat.seen_at)).where(ProcessHeartbeat.kind == kind)
    if name:
        query = query.where(ProcessHeartbeat.name == name)
    seen = db.session.execute(query).scalar_one_or_none()
    if seen is None:
        return None
    return seen if seen.tzinfo else seen.replace(tzinfo=UTC)  # SQLite drops the zone


def processes() -> list[dict[str, object]]:
    """Every process that ever beat, newest first (for the console)."""
    rows = db.session.execute(select(ProcessHeartbeat).order_by(ProcessHeartbeat.seen_at.desc())).scalars()
    return [{"kind": r.kind, "name": r.name,
             "seen_at": r.seen_at if r.seen_at.tzinfo else r.seen_at.replace(tzinfo=UTC)} for r in rows]
