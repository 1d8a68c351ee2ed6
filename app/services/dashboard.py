"""The dashboard's figures: the last hour at once (``snapshot``) and then one ``tick`` a second.

Shapes (times are epoch milliseconds):
- ``rates``: ``{metric: {subject: [[t, per second], ...]}}`` — events in per stream, deliveries succeeded /
  failed and newly dead letters per stream. Minutes from the roll-ups (average per second, at the
  minute's middle), the last few minutes per second from the live store (seconds with nothing are absent:
  the client draws zeros over ``live_from`` .. ``until``).
- ``gauges``: ``{metric: {subject: [[t, value], ...]}}`` — consumer lag per ``stream/group`` and dead letters.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from app.security import Principal
from app.services import metric_gauges, metric_rollups
from app.services.live_counters import Seconds
from app.services.live_metrics import RATES, live

logger = logging.getLogger(__name__)

HOUR_S = 3600
LIVE_MINUTES = 2  # whole minutes before the current one drawn per second: every process has flushed older ones
TICK_WINDOW_S = 3  # each tick re-sends the last seconds: late pushes from other processes still land

Series = dict[str, dict[str, list[list[float]]]]


def _seconds(slug: str, start: int, end: int) -> Seconds:
    lm = live()
    return lm.store.seconds(slug, start, end) if lm is not None else {}


def _rates_of(seconds: Seconds) -> Series:
    out: Series = {m: {} for m in RATES}
    for sec in sorted(seconds):
        for (metric, subject), n in seconds[sec].items():
            if metric in out:
                out[metric].setdefault(subject, []).append([sec * 1000, n])
    return out


def current_gauges(tenants: Mapping[int, str]) -> dict[int, dict[str, dict[str, float]]]:
    """``{tenant id: {metric: {subject: value}}}`` read now: lag per group and dead letters."""
    lags = metric_gauges.lag_by_tenant(tenants)
    dead = metric_gauges.dead_letters_by_tenant(list(tenants))
    return {tid: {metric_gauges.CONSUMER_LAG: {s: float(v) for s, v in lags.get(tid, {}).items()},
                  metric_gauges.DEAD_LETTERS: {"": float(dead.get(tid, 0))}}
            for tid in tenants}


def snapshot(principal: Principal, now: float | None = None) -> dict[str, Any]:
    """The tenant's last hour: roll-ups for the older minutes, live seconds for the last few, gauges now."""
    now = time.time() if now is None else now
    sec = int(now)
    minute = metric_rollups.minute_of(now)
    live_from = minute - timedelta(minutes=LIVE_MINUTES)
    since = minute - timedelta(seconds=HOUR_S)
    rates = _rates_of(_seconds(principal.tenant_slug, int(live_from.timestamp()), sec))
    gauges: Series = {metric_gauges.CONSUMER_LAG: {}, metric_gauges.DEAD_LETTERS: {}}
    history: Series = {m: {} for m in RATES}
    for at, metric, subject, value in metric_rollups.history(principal.tenant_id, since, minute + timedelta(minutes=1)):
        mid_ms = int(at.timestamp()) * 1000 + 30_000
        if metric in gauges:
            gauges[metric].setdefault(subject, []).append([mid_ms, value])
        elif metric in history and at < live_from:  # newer minutes are drawn from the seconds
            history[metric].setdefault(subject, []).append([mid_ms, value / 60.0])
    for metric, subjects in current_gauges({principal.tenant_id: principal.tenant_slug})[principal.tenant_id].items():
        for subject, value in subjects.items():
            gauges[metric].setdefault(subject, []).append([sec * 1000, value])
    for metric, subjects in history.items():
        for subject, points in subjects.items():
            rates[metric][subject] = points + rates[metric].get(subject, [])
    return {"tenant": principal.tenant_slug, "since": int(since.timestamp()) * 1000,
            "live_from": int(live_from.timestamp()) * 1000, "until": sec * 1000, "rates": rates, "gauges": gauges}


def ticks(tenants: Mapping[int, str], now: float | None = None) -> dict[int, dict[str, Any]]:
    """One tick per tenant: the last complete seconds of every rate, and the gauges read now."""
    now = time.time() if now is None else now
    sec = int(now)
    start = sec - TICK_WINDOW_S
    gauges = current_gauges(tenants)
    out: dict[int, dict[str, Any]] = {}
    for tid, slug in tenants.items():
        out[tid] = {"tenant": slug, "live_from": start * 1000, "until": sec * 1000,
                    "rates": _rates_of(_seconds(slug, start, sec)),
                    "gauges": {m: {s: [[sec * 1000, v]] for s, v in subjects.items()}
                               for m, subjects in gauges[tid].items()}}
    return out
