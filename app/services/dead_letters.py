"""Dead letters: deliveries out of attempts. List, inspect, and replay them as a job."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from app.extensions import db
from app.models import Delivery, ReplayJob
from app.models.delivery import DEAD
from app.models.replay import KIND_DEAD_LETTERS
from app.security import Principal
from app.services.errors import Invalid, NotFound
from app.services.replay_jobs import create_job
from app.services.subscription_ops import attempts_of, delivery_to_json
from app.services.subscriptions import get_subscription
from app.services.validation import check_keys
from app.services.webhook_checks import check_filter
from app.services.windows import check_window, iso, newest_first, page, parse_time

logger = logging.getLogger(__name__)

MAX_REPLAY_IDS = 10_000
_ID_CHUNK = 500  # ids per IN (...) query: well under every database's bound-parameter limit
WINDOW_FIELDS = {"subscription", "since", "until", "filter"}


def dead_letter_query(tenant_id: int, subscription_id: str | None = None, since: datetime | None = None,
                      until: datetime | None = None) -> Select[tuple[Delivery]]:
    """Dead letters of a tenant (and subscription), dead in [since, until): the one definition of the window.

    The time a delivery became dead is its ``updated_at``. The replay runner uses this for window selectors
    and evaluates the selector's CEL filter on each row's event itself.
    """
    query = select(Delivery).where(Delivery.tenant_id == tenant_id, Delivery.status == DEAD)
    if subscription_id:
        query = query.where(Delivery.subscription_id == subscription_id)
    if since is not None:
        query = query.where(Delivery.updated_at >= since)
    if until is not None:
        query = query.where(Delivery.updated_at < until)
    return query


def list_dead_letters(principal: Principal, limit: int, cursor: str | None, subscription: str | None = None,
                      since: str | None = None, until: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's dead letters, most recently dead first, without attempts or bodies (see ``inspect``)."""
    start, end = parse_time(since, "since", param=True), parse_time(until, "until", param=True)
    query = newest_first(dead_letter_query(principal.tenant_id, subscription, start, end),
                         Delivery.updated_at, Delivery.id, cursor)
    rows, nxt = page(list(db.session.execute(query.limit(limit + 1)).scalars()), limit, lambda d: d.updated_at)
    return [dead_letter_to_json(d) for d in rows], nxt


def get_dead_letter(principal: Principal, delivery_id: str) -> Delivery:
    """The tenant's dead letter; 404 when absent, another tenant's, or not dead (any more)."""
    row = db.session.execute(
        dead_letter_query(principal.tenant_id).where(Delivery.id == delivery_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no dead letter {delivery_id!r}", code="dead_letter_not_found", details={"id": delivery_id})
    return row


def inspect(principal: Principal, delivery_id: str) -> dict[str, Any]:
    """One dead letter with every attempt and the event it carries."""
    row = get_dead_letter(principal, delivery_id)
    out = delivery_to_json(row, attempts_of([row.id]).get(row.id, []), with_event=True)
    out["dead_at"] = row.updated_at
    return out


def replay(principal: Principal, body: dict[str, Any]) -> tuple[ReplayJob, bool]:
    """A job re-delivering dead letters, chosen by ``ids`` or by subscription, window and filter."""
    if "ids" in body:
        check_keys(body, {"ids"})
        return _replay_ids(principal, body["ids"])
    check_keys(body, WINDOW_FIELDS)
    sub_id = body.get("subscription")
    if sub_id is not None and not isinstance(sub_id, str):
        raise Invalid("subscription must be a subscription id", code="invalid_field",
                      details={"field": "subscription"})
    since, until = parse_time(body.get("since"), "since"), parse_time(body.get("until"), "until")
    check_window(since, until)
    selector = {"subscription": sub_id, "since": iso(since), "until": iso(until),
                "filter": check_filter(body.get("filter"))}
    if sub_id is not None:
        get_subscription(principal, sub_id)  # 404 for another tenant's
    return create_job(principal, KIND_DEAD_LETTERS, selector, sub_id, "dead_letters.replay")


def _replay_ids(principal: Principal, ids: Any) -> tuple[ReplayJob, bool]:
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_REPLAY_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)):
        raise Invalid(f"ids must be a list of 1 to {MAX_REPLAY_IDS} dead-letter ids", code="invalid_field",
                      details={"field": "ids"})
    unique = list(dict.fromkeys(ids))
    found: dict[str, str] = {}
    for start in range(0, len(unique), _ID_CHUNK):
        chunk = unique[start:start + _ID_CHUNK]
        query = select(Delivery.id, Delivery.subscription_id).where(
            Delivery.tenant_id == principal.tenant_id, Delivery.status == DEAD, Delivery.id.in_(chunk))
        found.update({row.id: row.subscription_id for row in db.session.execute(query)})
    missing = [i for i in unique if i not in found]
    if missing:
        # All or nothing, like publishing: a typo should not quietly replay a subset.
        raise NotFound(f"{len(missing)} of the ids are not dead letters of this tenant", code="dead_letter_not_found",
                       details={"ids": missing[:20], "missing": len(missing)})
    subs = set(found.values())
    sub_id = subs.pop() if len(subs) == 1 else None
    return create_job(principal, KIND_DEAD_LETTERS, {"ids": unique}, sub_id, "dead_letters.replay",
                      total=len(unique))


def dead_letter_to_json(row: Delivery) -> dict[str, Any]:
    """A dead letter in a list: the delivery's view plus when it died."""
    out = delivery_to_json(row)
    out["dead_at"] = row.updated_at
    return out
