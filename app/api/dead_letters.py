"""``/api/v1/dead-letters`` and ``/api/v1/replay-jobs``: inspect dead letters, replay them, follow the jobs."""
from __future__ import annotations

import logging

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.api.subscriptions import accepted_job
from app.security import MANAGE, READ, current_principal, require
from app.services import dead_letters, replay_jobs
from app.services.pagination import parse_limit

logger = logging.getLogger(__name__)


class DeadLettersApi(BusApi):
    """Deliveries that ran out of attempts, in the caller's tenant."""

    resource_name = "dead-letters"
    openapi_spec_tag = "Dead letters"

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List dead letters, most recently dead first (``?subscription=&since=&until=&limit=&cursor=``).
        ---
        get:
          summary: List dead letters
          responses:
            200: {description: "{items, next}"}
            400: {description: invalid since, until or cursor}
        """
        args = request.args
        items, nxt = dead_letters.list_dead_letters(current_principal(), parse_limit(args.get("limit")),
                                                    args.get("cursor"), args.get("subscription"),
                                                    args.get("since"), args.get("until"))
        return json_response({"items": items, "next": nxt})

    @expose("/<delivery_id>", methods=("GET",))
    @require(READ)
    def get(self, delivery_id: str) -> Response:
        """Inspect a dead letter: its attempts and the event.
        ---
        get:
          summary: Inspect a dead letter
          responses:
            200: {description: the dead letter with `attempts` and `event`}
            404: {description: no such dead letter}
        """
        return json_response(dead_letters.inspect(current_principal(), delivery_id))

    @expose("/replay", methods=("POST",))
    @require(MANAGE)
    def replay(self) -> Response:
        """Replay dead letters by ``ids``, or by ``subscription``, ``since``, ``until`` and ``filter`` (a job).
        ---
        post:
          summary: Replay dead letters
          responses:
            202: {description: "`{job_id}`"}
            404: {description: unknown ids or subscription}
            422: {description: invalid selector or filter}
        """
        job, enqueued = dead_letters.replay(current_principal(), parse_object())
        return accepted_job(job.id, enqueued)


class ReplayJobsApi(BusApi):
    """Replay and recover jobs with their progress, and scheduled (cron) replays."""

    resource_name = "replay-jobs"
    openapi_spec_tag = "Dead letters"

    @expose("", methods=("POST",))
    @require(MANAGE)
    def schedule(self) -> Response:
        """Schedule a dead-letter replay of a subscription: ``{"subscription", "cron", "selector"}`` (UTC).
        ---
        post:
          summary: Schedule a replay job
          responses:
            201: {description: the scheduled job with `next_run_at`}
            404: {description: no such subscription}
            422: {description: invalid cron or selector}
        """
        job = replay_jobs.schedule_job(current_principal(), parse_object())
        return json_response(replay_jobs.job_to_json(job), 201)

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List jobs, newest first (``?subscription=&status=&kind=&limit=&cursor=``).
        ---
        get:
          summary: List replay jobs
          responses:
            200: {description: "{items, next}"}
        """
        args = request.args
        items, nxt = replay_jobs.list_jobs(current_principal(), parse_limit(args.get("limit")), args.get("cursor"),
                                           args.get("subscription"), args.get("status"), args.get("kind"))
        return json_response({"items": [replay_jobs.job_to_json(j) for j in items], "next": nxt})

    @expose("/<job_id>", methods=("GET",))
    @require(READ)
    def get(self, job_id: str) -> Response:
        """A job's status and progress (total, done, succeeded, failed).
        ---
        get:
          summary: Show a replay job
          responses:
            200: {description: the job}
            404: {description: no such job}
        """
        return json_response(replay_jobs.job_to_json(replay_jobs.get_job(current_principal(), job_id)))

    @expose("/<job_id>", methods=("DELETE",))
    @require(MANAGE)
    def delete(self, job_id: str) -> Response:
        """Cancel a scheduled job.
        ---
        delete:
          summary: Cancel a scheduled replay job
          responses:
            204: {description: cancelled}
            404: {description: no such job}
            409: {description: the job is not a scheduled one}
        """
        replay_jobs.cancel_job(current_principal(), job_id)
        return no_content()
