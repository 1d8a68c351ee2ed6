"""The naive design, for bench/deliver.py only: one Celery task per event, each POSTing one signed webhook.

``celery -A bench.naive_celery worker --pool threads -c 16 -Q bench_naive``; the broker from BENCH_NAIVE_BROKER.
Celery settings as the bus's own (workers/__init__.py: late acks, prefetch 1, JSON); a keep-alive client per
thread, so what it measures is the per-event task, not connection set-up.
"""
from __future__ import annotations

import os
import threading

import httpx
from celery import Celery

from app.bus.delivery.signing import webhook_headers

app = Celery("bench_naive", broker=os.environ.get("BENCH_NAIVE_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="bench_naive",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_local = threading.local()


@app.task(name="bench_naive.deliver")
def deliver(url: str, event_id: str, body: str, secret: str) -> int:
    """Sign and POST one event; raise on a non-2xx answer (Celery would retry it)."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=15.0, trust_env=False, follow_redirects=False,
                                              headers={"user-agent": "apg-event-bus/0.1",
                                                       "accept-encoding": "identity"})
    data = body.encode()
    resp = client.post(url, content=data, headers=webhook_headers(event_id, [secret], data))
    resp.raise_for_status()
    return resp.status_code
