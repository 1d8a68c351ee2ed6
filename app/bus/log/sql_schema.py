"""Tables of the SQL event log (SQLAlchemy Core). The app creates them through Alembic migrations."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

log_streams = sa.Table(
    "log_streams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(300), nullable=False, unique=True),
    sa.Column("partitions", sa.Integer, nullable=False),
    sa.Column("retention_ms", sa.BigInteger, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

# One row per partition: the head that appends lock, so offsets are assigned without gaps.
log_partitions = sa.Table(
    "log_partitions",
    metadata,
    sa.Column("stream_id", sa.Integer, sa.ForeignKey("log_streams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("low", sa.BigInteger, nullable=False),  # first offset still kept
    sa.Column("last_ts_ms", sa.BigInteger, nullable=False),  # keeps log time monotonic per partition
)

# No foreign key on events: it would cost a lookup per inserted row on the hot path. delete_stream
# removes a stream's events explicitly, after locking its partition heads.
events = sa.Table(
    "events",
    metadata,
    sa.Column("stream_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    # Attributes are TEXT, unbounded: events mirrored from Kafka need not respect the API's limits.
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("time", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("datacontenttype", sa.Text, nullable=False),
    sa.Column("dataschema", sa.Text, nullable=True),
    sa.Column("key", sa.Text, nullable=True),
    sa.Column("headers", sa.Text, nullable=True),  # JSON object; NULL when there are none
    sa.Column("data", sa.LargeBinary, nullable=False),
    # (ts_ms, offset): reads by time find the first offset straight from the index.
    sa.Index("ix_events_time", "stream_id", "partition", "ts_ms", "offset"),
)

group_offsets = sa.Table(
    "group_offsets",
    metadata,
    sa.Column("group_name", sa.String(300), primary_key=True),
    sa.Column("stream_id", sa.Integer, sa.ForeignKey("log_streams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Index("ix_group_offsets_stream", "stream_id"),
)

# Columns of an event row in insert order; sql.py builds its rows and COPY lines in this order.
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in events.columns)
