"""History charts of one consumer group (lag) and one subscription (success rate, latency) for the console.

Both come from the per-minute roll-ups (``metric_rollups``), read minute by minute through the primary key, so
a page costs the same whatever the number of the tenant's other groups and subscriptions; long ranges read
every n-th minute's lag sample and the subscription's hourly sums, a few hundred rows whatever the range.
Shapes (times are epoch milliseconds, one point per bucket of ``bucket_s`` seconds, oldest first):

- group: ``{since, until, bucket_s, points: [[t, lag or null]], now: [t, lag], current}`` — the highest lag
  sampled in each bucket (beat samples every group once a minute), the lag read now, and ``current``: the
  group's lag view now (``groups.group_lag``: committed, end and lag per partition).
- subscription: ``{since, until, bucket_s, points: [{t, ok, failed, success_rate, latency_ms}]}`` — attempts
  that succeeded and failed in each bucket, the share that succeeded (%) and their average duration (ms);
  ``null`` where nothing was attempted. The last minutes come from the live per-second store (every process's
  counts), older ones from the roll-ups.
"""
from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app.security import Principal
from app.services import groups, metric_gauges, metric_rollups, subscriptions
from app.services.dashboard import LIVE_MINUTES
from app.services.errors import Invalid
from app.services.live_metrics import HOURLY, SUB_FAILED, SUB_LATENCY_MS, SUB_OK, SUBSCRIPTION_FIGURES, live

logger = logging.getLogger(__name__)

# Range name -> (seconds shown, bucket seconds): a few hundred points at most, whatever the range.
RANGES: dict[str, tuple[int, int]] = {"1h": (3600, 60), "6h": (6 * 3600, 300), "24h": (86400, 900),
                                      "7d": (7 * 86400, 3600)}
DEFAULT_RANGE = "1h"
LAG_SAMPLES_PER_BUCKET = 4
HOUR = timedelta(hours=1)


def parse_range(value: str | None) -> str:
    """The range asked for (``1h``, ``6h``, ``24h``, ``7d``); blank: one hour."""
    if not value:
        return DEFAULT_RANGE
    if value not in RANGES:
        raise Invalid(f"range is one of {', '.join(RANGES)}", code="invalid_field", details={"field": "range"})
    return value


def _window(range_name: str, now: float) -> tuple[datetime, datetime, int, list[datetime]]:
    """(since, end, bucket seconds, every minute of [since, end)); ``end`` is the minute after the current one."""
    span_s, bucket_s = RANGES[range_name]
    end = metric_rollups.minute_of(now) + timedelta(minutes=1)
    since = datetime.fromtimestamp(int(end.timestamp()) - span_s, UTC)
    since -= timedelta(seconds=int(since.timestamp()) % bucket_s)  # buckets start at round times
    minutes = [since + timedelta(minutes=i) for i in range(int((end - since).total_seconds()) // 60)]
    return since, end, bucket_s, minutes


def _bucket_ms(at: datetime, bucket_s: int) -> int:
    sec = int(at.timestamp())
    return (sec - sec % bucket_s) * 1000


def _starts(since: datetime, end: datetime, bucket_s: int) -> list[int]:
    return [t * 1000 for t in range(int(since.timestamp()), int(end.timestamp()), bucket_s)]


def group_lag_history(principal: Principal, stream: str, group: str, range_name: str = DEFAULT_RANGE,
                      now: float | None = None) -> dict[str, Any]:
    """The group's total lag over the range (404 for a stream or group name that is not the tenant's)."""
    now = time.time() if now is None else now
    current = groups.group_lag(principal, stream, group)  # checks the stream is the tenant's
    since, end, bucket_s, minutes = _window(range_name, now)
    highest: dict[int, float] = {}
    subject = f"{current['stream']}/{current['group']}"
    # Long ranges read every n-th minute's sample (at most LAG_SAMPLES_PER_BUCKET a bucket): a week is then
    # 672 lookups, not 10,080, and a lag that lasts is seen all the same.
    stride = max(1, bucket_s // 60 // LAG_SAMPLES_PER_BUCKET)
    for at, _, value in metric_rollups.minutes_of(principal.tenant_id, [metric_gauges.CONSUMER_LAG], subject,
                                                  minutes[::-1][::stride]):
        t = _bucket_ms(at, bucket_s)
        highest[t] = max(highest.get(t, value), value)
    return {"since": int(since.timestamp()) * 1000, "until": int(now * 1000), "bucket_s": bucket_s,
            "points": [[t, highest.get(t)] for t in _starts(since, end, bucket_s)],
            "now": [int(now * 1000), current["lag"]], "current": current}


def _live_minutes(slug: str, subject: str, start: int, end: int) -> dict[int, dict[str, float]]:
    """Per-minute sums (minute start, epoch s) of the subscription's figures counted live in ``[start, end)``."""
    lm = live()
    if lm is None:
        return {}
    out: dict[int, dict[str, float]] = {}
    for sec, counts in lm.store.seconds(slug, start, end).items():
        for (metric, subj), n in counts.items():
            if subj == subject and metric in SUBSCRIPTION_FIGURES:
                minute = out.setdefault(sec - sec % 60, {})
                minute[metric] = minute.get(metric, 0.0) + n
    return out


def subscription_history(principal: Principal, sub_id: str, range_name: str = DEFAULT_RANGE,
                         now: float | None = None) -> dict[str, Any]:
    """The subscription's attempts, success rate and average latency over the range (404 if not the tenant's)."""
    now = time.time() if now is None else now
    sub = subscriptions.get_subscription(principal, sub_id)
    since, end, bucket_s, minutes = _window(range_name, now)
    # Minutes from live_from on may not be flushed by every process yet: they are read from the live store.
    live_from = metric_rollups.minute_of(now) - timedelta(minutes=LIVE_MINUTES)
    # Hourly buckets read the hourly sums of the hours before the one live_from falls in (complete, and not
    # counted again from the live store); that hour and the next are read by the minute.
    cut = live_from - timedelta(minutes=live_from.minute) if bucket_s % 3600 == 0 else since
    hours = [since + HOUR * i for i in range(int((cut - since) / HOUR))]
    per_minute: dict[int, dict[str, float]] = {}
    for at, metric, value in metric_rollups.minutes_of(principal.tenant_id, [f + HOURLY for f in SUBSCRIPTION_FIGURES],
                                                       sub.id, hours):
        per_minute.setdefault(int(at.timestamp()), {})[metric.removesuffix(HOURLY)] = value
    for at, metric, value in metric_rollups.minutes_of(principal.tenant_id, SUBSCRIPTION_FIGURES, sub.id,
                                                       [m for m in minutes if cut <= m < live_from]):
        per_minute.setdefault(int(at.timestamp()), {})[metric] = value
    per_minute.update(_live_minutes(principal.tenant_slug, sub.id, int(live_from.timestamp()), int(now) + 1))
    buckets: dict[int, dict[str, float]] = {}
    for minute, figures in per_minute.items():
        bucket = buckets.setdefault((minute - minute % bucket_s) * 1000, {})
        for metric, value in figures.items():
            bucket[metric] = bucket.get(metric, 0.0) + value
    points = []
    for t in _starts(since, end, bucket_s):
        b = buckets.get(t, {})
        ok, failed = int(b.get(SUB_OK, 0)), int(b.get(SUB_FAILED, 0))
        attempts = ok + failed
        points.append({"t": t, "ok": ok, "failed": failed,
                       "success_rate": round(100.0 * ok / attempts, 2) if attempts else None,
                       "latency_ms": round(b.get(SUB_LATENCY_MS, 0.0) / attempts, 2) if attempts else None})
    return {"since": int(since.timestamp()) * 1000, "until": int(now * 1000), "bucket_s": bucket_s,
            "points": points}
