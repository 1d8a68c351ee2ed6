"""``/api/v1/subscriptions``: webhook subscriptions, their secrets, recover windows and deliveries."""
from __future__ import annotations

import logging

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.security import MANAGE, READ, current_principal, require
from app.services import subscription_ops, subscriptions
from app.services.pagination import parse_limit

logger = logging.getLogger(__name__)

DELIVERIES_DEFAULT_LIMIT, DELIVERIES_MAX_LIMIT = 50, 500


def accepted_job(job_id: str, enqueued: bool) -> Response:
    # 202 either way: the job is stored; ``enqueued`` false means the runner has not been told yet.
    return json_response({"job_id": job_id, "status": "queued", "enqueued": enqueued}, 202)


class SubscriptionsApi(BusApi):
    """Webhook subscriptions of the caller's tenant."""

    resource_name = "subscriptions"
    openapi_spec_tag = "Subscriptions"

    @expose("", methods=("POST",))
    @require(MANAGE)
    def create(self) -> Response:
        """Create a subscription; its signing secret is in this answer only.
        ---
        post:
          summary: Create a webhook subscription
          responses:
            201: {description: "the subscription, with `secret` (whsec_...) shown this once"}
            404: {description: no such stream}
            422: {description: "invalid field, unsafe_url, invalid_filter, invalid_retry_schedule"}
        """
        sub, secret = subscriptions.create_subscription(current_principal(), parse_object())
        return json_response(subscriptions.subscription_to_json(sub, secret), 201)

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List the tenant's subscriptions (``?stream=&status=&limit=&cursor=``).
        ---
        get:
          summary: List subscriptions
          responses:
            200: {description: "{items, next}"}
        """
        args = request.args
        items, nxt = subscriptions.list_subscriptions(current_principal(), parse_limit(args.get("limit")),
                                                      args.get("cursor"), args.get("stream"), args.get("status"))
        return json_response({"items": [subscriptions.subscription_to_json(s) for s in items], "next": nxt})

    @expose("/<subscription_id>", methods=("GET",))
    @require(READ)
    def get(self, subscription_id: str) -> Response:
        """Show a subscription (never its secrets).
        ---
        get:
          summary: Show a subscription
          responses:
            200: {description: the subscription}
            404: {description: no such subscription}
        """
        sub = subscriptions.get_subscription(current_principal(), subscription_id)
        return json_response(subscriptions.subscription_to_json(sub))

    @expose("/<subscription_id>", methods=("PATCH",))
    @require(MANAGE)
    def patch(self, subscription_id: str) -> Response:
        """Change a subscription's settings; its stream cannot change.
        ---
        patch:
          summary: Change a subscription
          responses:
            200: {description: the subscription}
            404: {description: no such subscription}
            422: {description: invalid change}
        """
        sub = subscriptions.update_subscription(current_principal(), subscription_id, parse_object())
        return json_response(subscriptions.subscription_to_json(sub))

    @expose("/<subscription_id>", methods=("DELETE",))
    @require(MANAGE)
    def delete(self, subscription_id: str) -> Response:
        """Delete a subscription with its deliveries and dead letters.
        ---
        delete:
          summary: Delete a subscription
          responses:
            204: {description: deleted}
            404: {description: no such subscription}
        """
        subscriptions.delete_subscription(current_principal(), subscription_id)
        return no_content()

    @expose("/<subscription_id>/pause", methods=("POST",))
    @require(MANAGE)
    def pause(self, subscription_id: str) -> Response:
        """Stop delivering; events wait in the log.
        ---
        post:
          summary: Pause a subscription
          responses:
            200: {description: the subscription}
            404: {description: no such subscription}
        """
        parse_object(required=False)
        sub = subscription_ops.pause(current_principal(), subscription_id)
        return json_response(subscriptions.subscription_to_json(sub))

    @expose("/<subscription_id>/resume", methods=("POST",))
    @require(MANAGE)
    def resume(self, subscription_id: str) -> Response:
        """Deliver again; re-activates a disabled subscription.
        ---
        post:
          summary: Resume a subscription
          responses:
            200: {description: the subscription}
            404: {description: no such subscription}
        """
        parse_object(required=False)
        sub = subscription_ops.resume(current_principal(), subscription_id)
        return json_response(subscriptions.subscription_to_json(sub))

    @expose("/<subscription_id>/rotate-secret", methods=("POST",))
    @require(MANAGE)
    def rotate_secret(self, subscription_id: str) -> Response:
        """A new signing secret; the previous ones keep signing for the grace period (body ``{"grace_s"}``).
        ---
        post:
          summary: Rotate a subscription's signing secret
          responses:
            200: {description: "`{secret, secrets}`: the new secret, shown this once, and the live secrets' expiries"}
            404: {description: no such subscription}
            422: {description: invalid grace_s}
        """
        sub, secret = subscription_ops.rotate_secret(current_principal(), subscription_id,
                                                     parse_object(required=False))
        view = subscriptions.subscription_to_json(sub)
        return json_response({"id": sub.id, "secret": secret, "secrets": view["secrets"]})

    @expose("/<subscription_id>/recover", methods=("POST",))
    @require(MANAGE)
    def recover(self, subscription_id: str) -> Response:
        """Deliver again every event of the stream in ``[since, until)`` (a replay job).
        ---
        post:
          summary: Recover a time window
          responses:
            202: {description: "`{job_id}`"}
            404: {description: no such subscription}
            422: {description: invalid window}
        """
        job, enqueued = subscription_ops.recover(current_principal(), subscription_id, parse_object())
        return accepted_job(job.id, enqueued)

    @expose("/<subscription_id>/deliveries", methods=("GET",))
    @require(READ)
    def deliveries(self, subscription_id: str) -> Response:
        """The subscription's deliveries, newest first, with their attempts (``?status=&limit=&cursor=``).
        ---
        get:
          summary: List a subscription's deliveries
          responses:
            200: {description: "{items, next}"}
            404: {description: no such subscription}
        """
        args = request.args
        limit = parse_limit(args.get("limit"), DELIVERIES_DEFAULT_LIMIT, DELIVERIES_MAX_LIMIT)
        items, nxt = subscription_ops.list_deliveries(current_principal(), subscription_id, limit,
                                                      args.get("cursor"), args.get("status"))
        return json_response({"items": items, "next": nxt})
