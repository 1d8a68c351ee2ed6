"""Console: dead letters (browse, inspect, replay selected or all matching) and replay jobs (progress, schedules)."""
from __future__ import annotations

import logging
from typing import Any

from flask import flash, jsonify, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.security import MANAGE, READ, Principal
from app.services import console_queries, dead_letters, replay_jobs
from app.services.errors import Invalid, ServiceError
from app.services.pagination import parse_limit
from app.views.console_actions import PAGE_SIZE, act, acting, capabilities, describe, integer, refuse, text

logger = logging.getLogger(__name__)

WINDOW_ARGS = ("subscription", "since", "until")


class DeadLettersView(BaseView):
    """Deliveries that ran out of attempts; Operators and Admins replay them as jobs."""

    route_base = "/console/dead-letters"
    default_view = "list"
    method_permission_name = {"list": "list", "detail": "show", "replay": "add"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """Most recently dead first, filtered by subscription and time; a capped count of all that match."""
        principal = acting(READ)
        window = {k: request.args.get(k) or None for k in WINDOW_ARGS}
        try:
            rows, nxt = dead_letters.list_dead_letters(principal, parse_limit(request.args.get("limit"), PAGE_SIZE),
                                                       request.args.get("cursor"), **window)
            count, capped = console_queries.count_dead_letters(principal, **window)
        except ServiceError as exc:
            flash(describe(exc), "danger")
            rows, nxt, count, capped = [], None, 0, False
        return self.render_template(
            "bus/dead_letters.html", tenant=principal.tenant_slug, rows=rows, next_cursor=nxt, count=count,
            capped=capped, window={k: v or "" for k, v in window.items()},
            labels=console_queries.subscription_labels(principal, sorted({r["subscription"] for r in rows})),
            subscriptions=console_queries.subscription_labels(principal), **capabilities(principal))

    @expose("/<delivery_id>")
    @has_access
    def detail(self, delivery_id: str) -> str:
        """One dead letter: every attempt and the event it carries (pretty JSON)."""
        principal = acting(READ)
        try:
            row = dead_letters.inspect(principal, delivery_id)
        except ServiceError as exc:
            refuse(exc)
        return self.render_template("bus/dead_letter_detail.html", tenant=principal.tenant_slug, d=row,
                                    **capabilities(principal))

    @expose("/replay", methods=["POST"])
    @has_access
    def replay(self) -> Response:
        """Replay the selected dead letters (``ids``) or all that match the window and a filter (``all``)."""
        def work(principal: Principal) -> str:
            if request.form.get("scope") == "all":
                body: dict[str, Any] = {k: text(k) for k in WINDOW_ARGS}
                body["filter"] = text("filter")
            else:
                ids = [i for i in request.form.getlist("ids") if i]
                if not ids:
                    raise Invalid("select at least one dead letter", code="invalid_field", details={"field": "ids"})
                body = {"ids": ids}
            job, enqueued = dead_letters.replay(principal, body)
            note = "" if enqueued else " (stored, not yet handed to a worker)"
            return f"Replay job {job.id} queued{note}."

        return act(MANAGE, work, url_for("ReplayJobsView.list"))


class ReplayJobsView(BaseView):
    """Replay and recover jobs with their progress, and scheduled (cron) replays."""

    route_base = "/console/replay-jobs"
    default_view = "list"
    method_permission_name = {"list": "list", "progress": "show", "schedule": "add", "cancel": "delete"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """Jobs newest first; running ones update themselves by polling their progress."""
        principal = acting(READ)
        args = request.args
        try:
            jobs, nxt = replay_jobs.list_jobs(principal, parse_limit(args.get("limit"), PAGE_SIZE), args.get("cursor"),
                                              args.get("subscription") or None, args.get("status") or None,
                                              args.get("kind") or None)
        except ServiceError as exc:
            flash(describe(exc), "danger")
            jobs, nxt = [], None
        return self.render_template("bus/replay_jobs.html", tenant=principal.tenant_slug, next_cursor=nxt,
                                    jobs=[replay_jobs.job_to_json(j) for j in jobs], status=args.get("status") or "",
                                    states=replay_jobs.JOB_STATES,
                                    subscriptions=console_queries.subscription_labels(principal),
                                    **capabilities(principal))

    @expose("/<job_id>/progress")
    @has_access
    def progress(self, job_id: str) -> Response:
        """A job's status and progress as JSON, for the page's poll."""
        principal = acting(READ)
        try:
            job = replay_jobs.get_job(principal, job_id)
        except ServiceError as exc:
            refuse(exc)
        return jsonify(replay_jobs.job_to_json(job))

    @expose("/schedule", methods=["POST"])
    @has_access
    def schedule(self) -> Response:
        """Schedule a cron replay of a subscription's dead letters (UTC)."""
        def work(principal: Principal) -> str:
            selector = {"filter": text("filter"), "max_age_s": integer("max_age_s")}
            job = replay_jobs.schedule_job(principal, {"subscription": text("subscription") or "",
                                                       "cron": text("cron") or "", "selector": selector})
            return f"Scheduled replay {job.id}: {job.cron}, next run {job.next_run_at:%Y-%m-%d %H:%M} UTC."

        return act(MANAGE, work, url_for("ReplayJobsView.list"))

    @expose("/<job_id>/cancel", methods=["POST"])
    @has_access
    def cancel(self, job_id: str) -> Response:
        """Cancel a scheduled replay."""
        def work(principal: Principal) -> str:
            replay_jobs.cancel_job(principal, job_id)
            return f"Scheduled replay {job_id} cancelled."

        return act(MANAGE, work, url_for("ReplayJobsView.list"))
