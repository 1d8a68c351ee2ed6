"""SQLAlchemy models, one module per domain. They share Flask-AppBuilder's declarative base."""
from __future__ import annotations

from app.models.alert import Alert, AlertRule, ProcessHeartbeat
from app.models.api_key import ApiKey
from app.models.audit import AuditRecord
from app.models.delivery import Delivery, DeliveryAttempt
from app.models.idempotency import IdempotencyRecord
from app.models.lease import ConsumerLease
from app.models.metric import MetricRollup
from app.models.replay import ReplayJob
from app.models.stream import Stream
from app.models.subscription import Subscription
from app.models.tenant import Tenant, user_tenants

__all__ = ["Alert", "AlertRule", "ApiKey", "AuditRecord", "ConsumerLease", "Delivery", "DeliveryAttempt",
           "IdempotencyRecord", "MetricRollup", "ProcessHeartbeat", "ReplayJob", "Stream", "Subscription", "Tenant",
           "user_tenants"]
