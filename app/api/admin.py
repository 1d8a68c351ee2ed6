"""Placeholder."""
from __future__ import annotations

from app.api.base import BusApi


class ApiKeysApi(BusApi):
    resource_name = "api-keys"


class TenantsApi(BusApi):
    resource_name = "tenants"


class UsersApi(BusApi):
    resource_name = "users"
