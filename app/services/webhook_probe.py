"""Send a test event: one signed delivery of a ``bus.test`` event straight to a subscription's URL.

The event is not published: a test must not add to the stream that every other consumer reads. It goes
through the same courier as live deliveries (SSRF check at send time, Standard Webhooks signature with
every live secret, the subscription's timeout) and is recorded as a delivery of origin ``test`` with its
one attempt, so it shows in the delivery log. It is never retried and never becomes a dead letter, it
bypasses the subscription's type globs and filter, and it leaves the subscription's health alone (a 410
to a test does not disable anything). Paused and disabled subscriptions can be tested too: that is when
an operator wants to know whether the endpoint is back.
"""
from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import insert

from app.bus.delivery import AttemptResult
from app.bus.delivery.filters import FilterError
from app.bus.envelope import Event, now_rfc3339
from app.extensions import db
from app.models import Delivery, DeliveryAttempt
from app.models.base import new_id, utcnow
from app.models.delivery import DISCARDED, SUCCEEDED
from app.security import Principal
from app.services import audit
from app.services.dispatch_config import settings as delivery_settings
from app.services.dispatch_send import Courier, body_of, refused, run_sync, spec_of
from app.services.errors import Invalid
from app.services.subscriptions import get_subscription
from app.services.webhook_secrets import SecretKeyError

logger = logging.getLogger(__name__)

ORIGIN_TEST = "test"
TEST_EVENT_TYPE = "bus.test"
NOT_FROM_LOG = -1  # partition and offset of a delivery that no log position carries


def send_test_event(principal: Principal, subscription_id: str) -> dict[str, Any]:
    """Deliver a ``bus.test`` event to the subscription now; returns the recorded delivery and its attempt."""
    sub = get_subscription(principal, subscription_id)
    config = delivery_settings(current_app.config)
    try:
        spec = spec_of(sub, config)
    except (FilterError, SecretKeyError) as exc:
        raise Invalid(f"the subscription cannot be delivered to: {exc}", code="subscription_unusable",
                      details={"id": sub.id}) from exc
    event = Event(type=TEST_EVENT_TYPE, source="/console", subject=sub.id, time=now_rfc3339(),
                  data=orjson.dumps({"test": True, "subscription": sub.id, "requested_by": principal.actor}))
    body = body_of(event)

    async def deliver(courier: Courier) -> AttemptResult:
        refusal = await courier.url_refusal(spec)
        if refusal is not None:
            return refused(refusal)
        result = await courier.send(spec, event.id, body)
        return result if result is not None else refused("cancelled")

    # The request waits for the endpoint (bounded by the subscription's timeout): the operator wants the answer.
    result = run_sync(config, deliver)
    at = utcnow()
    ok = result.status_code is not None and 200 <= result.status_code < 300
    delivery_id = new_id()
    db.session.execute(insert(Delivery).values(
        id=delivery_id, tenant_id=principal.tenant_id, subscription_id=sub.id, event_id=event.id,
        event_type=event.type, event_key=None, partition=NOT_FROM_LOG, offset=NOT_FROM_LOG,
        status=SUCCEEDED if ok else DISCARDED, origin=ORIGIN_TEST, attempts=1, next_attempt_at=None,
        last_status_code=result.status_code, last_error=result.error, body=None, created_at=at, updated_at=at))
    db.session.execute(insert(DeliveryAttempt).values(
        delivery_id=delivery_id, at=at, duration_ms=round(result.duration_ms, 3), status_code=result.status_code,
        response_excerpt=result.response_excerpt, error=result.error))
    audit.record(principal, "subscription.test", "subscription", sub.id,
                 {"event_id": event.id, "status_code": result.status_code, "error": result.error})
    db.session.commit()
    logger.info("test event %s to subscription %s: %s", event.id, sub.id, result.status_code or result.error)
    return {"delivery_id": delivery_id, "event_id": event.id, "ok": ok, "status_code": result.status_code,
            "duration_ms": result.duration_ms, "error": result.error, "response_excerpt": result.response_excerpt}
