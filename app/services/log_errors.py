"""Map event-log errors to the API's errors, in one place for publish, reads and consumer groups."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError

from app.bus.log import InvalidOffset, InvalidPartition, LogError, StreamNotFound
from app.services.errors import Invalid, NotFound, Unavailable

logger = logging.getLogger(__name__)


@contextmanager
def log_errors(stream: str) -> Iterator[None]:
    """Turn the log's errors into 404 / 422 / 503 for the public stream name ``stream``."""
    try:
        yield
    except StreamNotFound as exc:
        # The metadata row exists but the log has no such stream (deleted meanwhile, or a topic removed by hand).
        raise NotFound(f"no stream {stream!r}", code="stream_not_found", details={"stream": stream}) from exc
    except InvalidPartition as exc:
        raise Invalid(str(exc), code="invalid_partition", details={"stream": stream}) from exc
    except InvalidOffset as exc:
        raise Invalid(str(exc), code="invalid_offset", details={"stream": stream}) from exc
    except (LogError, OperationalError) as exc:
        # A broker or database that cannot be reached: the client may retry; nothing is half-done for it to fix.
        logger.exception("event log failure on %s", stream)
        raise Unavailable("the event log is unavailable, retry later", code="event_log_unavailable",
                          details={"stream": stream, "retry_after": 1}) from exc
