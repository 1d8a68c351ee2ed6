"""``/api/v1/api-keys``, ``/api/v1/tenants``, ``/api/v1/users``: credentials, tenants and users."""
from __future__ import annotations

import logging

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.security import ADMIN, MANAGE, current_principal, require
from app.services import api_keys, tenants, users
from app.services.pagination import parse_limit

logger = logging.getLogger(__name__)


class ApiKeysApi(BusApi):
    """API keys of the caller's tenant (an Admin may create one for any tenant)."""

    resource_name = "api-keys"
    openapi_spec_tag = "API keys"

    @expose("", methods=("POST",))
    @require(MANAGE)
    def create(self) -> Response:
        """Create an API key; the key is in this answer only.
        ---
        post:
          summary: Create an API key
          responses:
            201: {description: "the key, with `key` shown this once"}
            403: {description: scopes the caller does not hold}
            404: {description: unknown tenant}
            422: {description: invalid name or scopes}
        """
        row, slug, key = api_keys.create_api_key(current_principal(), parse_object())
        return json_response(api_keys.api_key_to_json(row, slug, key), 201)

    @expose("", methods=("GET",))
    @require(MANAGE)
    def list(self) -> Response:
        """List the tenant's API keys (never the keys themselves).
        ---
        get:
          summary: List API keys
          responses:
            200: {description: "{items, next}"}
        """
        principal = current_principal()
        items, nxt = api_keys.list_api_keys(principal, parse_limit(request.args.get("limit")),
                                            request.args.get("cursor"))
        return json_response({"items": [api_keys.api_key_to_json(k, principal.tenant_slug) for k in items],
                              "next": nxt})

    @expose("/<key_id>", methods=("GET",))
    @require(MANAGE)
    def get(self, key_id: str) -> Response:
        """Show an API key.
        ---
        get:
          summary: Show an API key
          responses:
            200: {description: the key's metadata}
            404: {description: no such key}
        """
        principal = current_principal()
        return json_response(api_keys.api_key_to_json(api_keys.get_api_key(principal, key_id),
                                                      principal.tenant_slug))

    @expose("/<key_id>", methods=("DELETE",))
    @require(MANAGE)
    def delete(self, key_id: str) -> Response:
        """Revoke an API key: it is refused with 401 from now on.
        ---
        delete:
          summary: Revoke an API key
          responses:
            204: {description: revoked}
            404: {description: no such key}
        """
        api_keys.revoke_api_key(current_principal(), key_id)
        return no_content()


class TenantsApi(BusApi):
    """Tenants of the bus (Admins only)."""

    resource_name = "tenants"
    openapi_spec_tag = "Tenants"

    @expose("", methods=("POST",))
    @require(ADMIN)
    def create(self) -> Response:
        """Create a tenant.
        ---
        post:
          summary: Create a tenant
          responses:
            201: {description: the tenant}
            409: {description: the slug is taken}
            422: {description: invalid slug or name}
        """
        tenant = tenants.create_tenant(current_principal(), parse_object())
        return json_response(tenants.tenant_to_json(tenant), 201)

    @expose("", methods=("GET",))
    @require(ADMIN)
    def list(self) -> Response:
        """List tenants.
        ---
        get:
          summary: List tenants
          responses:
            200: {description: "{items, next}"}
        """
        items, nxt = tenants.list_tenants(parse_limit(request.args.get("limit")), request.args.get("cursor"))
        return json_response({"items": [tenants.tenant_to_json(t) for t in items], "next": nxt})


class UsersApi(BusApi):
    """Console and API users, for scripted set-up (Admins only)."""

    resource_name = "users"
    openapi_spec_tag = "Users"

    @expose("", methods=("POST",))
    @require(ADMIN)
    def create(self) -> Response:
        """Create a user with a role in some tenants.
        ---
        post:
          summary: Create a user
          responses:
            201: {description: the user (no password)}
            409: {description: the username or email is taken}
            422: {description: unknown role or tenant, weak password}
        """
        user = users.create_user(current_principal(), parse_object())
        slugs = users.tenant_slugs_by_user([user.id])[user.id]
        return json_response(users.user_to_json(user, slugs), 201)

    @expose("", methods=("GET",))
    @require(ADMIN)
    def list(self) -> Response:
        """List users with their roles and tenants.
        ---
        get:
          summary: List users
          responses:
            200: {description: "{items, next}"}
        """
        items, nxt = users.list_users(parse_limit(request.args.get("limit")), request.args.get("cursor"))
        slugs = users.tenant_slugs_by_user([u.id for u in items])
        return json_response({"items": [users.user_to_json(u, slugs[u.id]) for u in items], "next": nxt})
