"""Running replay jobs (the ``replay.run_job`` task) and starting scheduled ones (``replay.schedule_due``).

Safe to run twice: a finished job is not run again, and a job found ``running`` (its worker died; the
task was redelivered) resumes. Progress and the deliveries it produced are committed together, every
``replay_chunk`` items, so a resumed job neither skips nor repeats work:

- dead letters: the job takes the selected dead letters that were not touched since it started
  (a replayed one is either delivered, or still dead with ``updated_at`` after the start);
- recover: events are walked in (partition, offset) order and ``done`` counts the ones behind us.

Replayed and recovered deliveries carry the event id as webhook-id, as the original delivery did.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from app.bus.delivery import compile_filter
from app.bus.envelope import Record
from app.extensions import db
from app.models import Delivery, ReplayJob, Stream, Subscription
from app.models.base import utcnow
from app.models.delivery import DEAD, ORIGIN_RECOVER, ORIGIN_REPLAY, SUCCEEDED
from app.models.replay import FAILED, KIND_DEAD_LETTERS, KIND_RECOVER, QUEUED, RUNNING, SCHEDULED
from app.models.replay import SUCCEEDED as JOB_SUCCEEDED
from app.services.dead_letters import dead_letter_query
from app.services.dispatch_batch import send_lanes
from app.services.dispatch_config import DeliverySettings, settings
from app.services.dispatch_record import Item, insert_new, update_existing
from app.services.dispatch_send import SubSpec, body_of, run_sync, spec_of
from app.services.event_log import event_log
from app.services.windows import as_utc, iso, parse_time
from app.services.wire_format import decode_records

logger = logging.getLogger(__name__)

_ID_CHUNK = 500


def run_job(job_id: str) -> None:
    """Run (or resume) replay job ``job_id``; a finished, unknown or scheduled (template) job is left alone."""
    job = db.session.get(ReplayJob, job_id)
    if job is None or job.status not in (QUEUED, RUNNING):
        logger.info("replay job %s: nothing to run (%s)", job_id, job.status if job else "absent")
        return
    if job.status == QUEUED:
        started = db.session.execute(
            update(ReplayJob).where(ReplayJob.id == job_id, ReplayJob.status == QUEUED)
            .values(status=RUNNING, started_at=utcnow(), error=None)
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if not started:  # another worker took it between our read and the claim
            return
    else:
        logger.warning("replay job %s was running when its worker stopped; resuming at %d", job_id, job.done)
    db.session.expire_all()
    job = db.session.get(ReplayJob, job_id)
    config = settings(current_app.config)
    try:
        if job.kind == KIND_DEAD_LETTERS:
            _dead_letters(job, config)
        elif job.kind == KIND_RECOVER:
            _recover(job, config)
        else:
            raise ValueError(f"unknown replay job kind {job.kind!r}")
        job.status, job.finished_at = JOB_SUCCEEDED, utcnow()
        db.session.commit()
        logger.info("replay job %s done: %d of %d, %d delivered, %d failed", job.id, job.done, job.total,
                    job.succeeded, job.failed)
    except Exception as exc:
        db.session.rollback()
        logger.exception("replay job %s failed", job_id)
        db.session.execute(update(ReplayJob).where(ReplayJob.id == job_id)
                           .values(status=FAILED, finished_at=utcnow(), error=f"{type(exc).__name__}: {exc}"[:1000])
                           .execution_options(synchronize_session=False))
        db.session.commit()


# -- dead letters ---------------------------------------------------------------------------------
def _candidates(job: ReplayJob) -> list[str]:
    """Ids of the dead letters the job still has to replay, in delivery order (partition, offset)."""
    started = job.started_at
    sel: dict[str, Any] = job.selector or {}
    if "ids" in sel:
        found: list[tuple[int, int, str]] = []
        for start in range(0, len(sel["ids"]), _ID_CHUNK):
            chunk = sel["ids"][start:start + _ID_CHUNK]
            found += db.session.execute(select(Delivery.partition, Delivery.offset, Delivery.id).where(
                Delivery.tenant_id == job.tenant_id, Delivery.id.in_(chunk), Delivery.status == DEAD,
                Delivery.updated_at < started)).tuples()
        return [row_id for _, _, row_id in sorted(found)]
    query = dead_letter_query(job.tenant_id, sel.get("subscription") or job.subscription_id,
                              parse_time(sel.get("since"), "since"), parse_time(sel.get("until"), "until"))
    query = query.where(Delivery.updated_at < started).order_by(Delivery.partition, Delivery.offset)
    expr = sel.get("filter")
    if not expr:
        return list(db.session.execute(query.with_only_columns(Delivery.id)).scalars())
    flt = compile_filter(expr)
    out = []
    for row_id, body in db.session.execute(query.with_only_columns(Delivery.id, Delivery.body)).yield_per(500):
        if body is not None and flt.matches(orjson.loads(body)):
            out.append(row_id)
    return out


def _dead_letters(job: ReplayJob, config: DeliverySettings) -> None:
    ids = _candidates(job)
    job.total = job.done + len(ids)
    db.session.commit()
    specs: dict[str, SubSpec] = {}
    for start in range(0, len(ids), config.replay_chunk):
        rows = db.session.execute(select(Delivery).where(Delivery.id.in_(ids[start:start + config.replay_chunk]),
                                                         Delivery.status == DEAD)
                                  .order_by(Delivery.partition, Delivery.offset)).scalars().all()
        by_sub: dict[str, list[Item]] = {}
        for r in rows:
            if r.body is None:
                continue
            if r.subscription_id not in specs:
                specs[r.subscription_id] = _spec(r.subscription_id, config)
            by_sub.setdefault(r.subscription_id, []).append(
                Item(r.event_id, r.event_type, r.event_key, r.partition, r.offset, bytes(r.body),
                     delivery_id=r.id, attempts=r.attempts))
        db.session.rollback()  # nothing held open while sending
        for sub_id, items in by_sub.items():
            _send(specs[sub_id], items, config)
            for item in items:
                if item.status != SUCCEEDED:
                    # A replay is one more try: a failure leaves the dead letter dead, with the attempt on record.
                    item.status, item.next_attempt_at = DEAD, None
            update_existing(specs[sub_id], items, origin=ORIGIN_REPLAY, only_status=DEAD)
        sent = [i for items in by_sub.values() for i in items]
        _progress(job, len(ids[start:start + config.replay_chunk]), sent)


def _send(spec: SubSpec, items: list[Item], config: DeliverySettings) -> None:
    """Send items concurrently (within the subscription's limits) in one go, no ordering lanes between keys."""
    run_sync(config, lambda courier: send_lanes(spec, items, set(), courier, config))


def _progress(job: ReplayJob, done: int, items: list[Item]) -> None:
    ok = sum(1 for i in items if i.status == SUCCEEDED)
    job.done += done
    job.succeeded += ok
    job.failed += sum(1 for i in items if i.result is not None) - ok
    db.session.commit()


def _spec(subscription_id: str, config: DeliverySettings) -> SubSpec:
    sub = db.session.execute(select(Subscription).where(Subscription.id == subscription_id)
                             .options(joinedload(Subscription.stream).joinedload(Stream.tenant))).scalar_one()
    return spec_of(sub, config)


# -- recover --------------------------------------------------------------------------------------
def _ms(value: datetime) -> int:
    return int(as_utc(value).timestamp() * 1000)


def _spans(spec: SubSpec, since: datetime, until: datetime) -> list[tuple[int, int, int]]:
    """(partition, first offset, end offset) of the window in every partition."""
    log = event_log()
    lows = {w.partition: w.low for w in log.watermarks(spec.stream)}
    out = []
    for p in range(spec.partitions):
        first = max(lows.get(p, 0), log.offset_for_time(spec.stream, p, _ms(since)))
        end = log.offset_for_time(spec.stream, p, _ms(until))
        out.append((p, first, max(first, end)))
    return out


def _walk(spec: SubSpec, spans: list[tuple[int, int, int]], skip: int, chunk: int) -> Iterator[list[Record]]:
    """The window's records in chunks, after the first ``skip`` (already done)."""
    log = event_log()
    for partition, first, end in spans:
        if skip >= end - first:
            skip -= end - first
            continue
        pos, skip = first + skip, 0
        while pos < end:
            records = [r for r in log.read(spec.stream, partition, from_offset=pos, limit=min(chunk, end - pos))
                       if r.offset < end]
            if not records:
                break
            pos = records[-1].offset + 1
            yield records


def _recover(job: ReplayJob, config: DeliverySettings) -> None:
    sel = job.selector or {}
    since = parse_time(sel.get("since"), "since")
    until = parse_time(sel.get("until"), "until") or utcnow()
    if since is None or job.subscription_id is None:
        raise ValueError("a recover job needs a subscription and since")
    spec = _spec(job.subscription_id, config)
    spans = _spans(spec, since, until)
    job.total = sum(end - first for _, first, end in spans)
    db.session.commit()
    logger.info("replay job %s: recovering %d events of %s in [%s, %s)", job.id, job.total, spec.stream,
                iso(since), iso(until))
    for records in _walk(spec, spans, job.done, config.replay_chunk):
        records = decode_records(spec.tenant_id, records)  # wire-format data (Confluent serializers) as JSON
        items = [Item(r.event.id, r.event.type, r.event.key, r.partition, r.offset, body_of(r.event))
                 for r in records if spec.matches(r.event)]
        db.session.rollback()
        if items:
            _send(spec, items, config)
            # Recovered deliveries are new deliveries: failures follow the subscription's retry schedule.
            insert_new(spec, items, origin=ORIGIN_RECOVER)
        _progress(job, len(records), items)


# -- scheduled jobs -------------------------------------------------------------------------------
def schedule_due(now: datetime | None = None) -> int:
    """Start a run of every scheduled job whose cron time has come; advance its next run. How many started."""
    from app.services.replay_jobs import next_run, send

    moment = now or utcnow()
    due = db.session.execute(select(ReplayJob).where(ReplayJob.status == SCHEDULED,
                                                     ReplayJob.next_run_at <= moment)).scalars().all()
    runs: list[ReplayJob] = []
    for template in due:
        following = next_run(template.cron or "@daily", moment)
        # Compare-and-set on next_run_at: of two beats (or a task run twice) only one starts the run.
        claimed = db.session.execute(
            update(ReplayJob).where(ReplayJob.id == template.id, ReplayJob.status == SCHEDULED,
                                    ReplayJob.next_run_at == template.next_run_at)
            .values(next_run_at=following).execution_options(synchronize_session=False)).rowcount
        if not claimed:
            continue
        sel = template.selector or {}
        max_age = sel.get("max_age_s")
        since = None if max_age is None else moment - timedelta(seconds=int(max_age))
        run = ReplayJob(tenant_id=template.tenant_id, subscription_id=template.subscription_id,
                        kind=KIND_DEAD_LETTERS, status=QUEUED, created_by=f"schedule:{template.id}",
                        selector={"subscription": template.subscription_id, "since": iso(since),
                                  "until": iso(moment), "filter": sel.get("filter")})
        db.session.add(run)
        runs.append(run)
    db.session.commit()
    for run in runs:
        send(run)
    return len(runs)
