"""Who is asking: the ``Principal``, resolved with the REST API's own rules once per operation."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from app.extensions import db
from app.graphql.errors import to_graphql_error
from app.security import Principal, resolve_principal
from app.services.errors import ServiceError


@dataclass
class BusContext:
    """The GraphQL context: the caller, resolved lazily from the request's Authorization header."""

    connection_params: dict[str, Any] = field(default_factory=dict)  # connection_init's payload (WebSocket)
    principal_value: Principal | None = None
    _error: ServiceError | None = None

    @property
    def principal(self) -> Principal:
        """The caller; a GraphQL error ``unauthorized`` / ``invalid_credentials`` without valid credentials."""
        if self.principal_value is None and self._error is None:
            try:
                self.principal_value = self.resolve()
            except ServiceError as exc:
                self._error = exc  # one look-up per operation, however many fields ask
        if self._error is not None:
            raise to_graphql_error(self._error)
        assert self.principal_value is not None
        return self.principal_value

    def resolve(self) -> Principal:
        """The very function behind every REST endpoint's @require: Bearer JWT or API key, Basic."""
        return resolve_principal()

    def forget(self) -> None:
        """Resolve again on next use: a WebSocket's context outlives its operations."""
        self.principal_value, self._error = None, None


class OperationScope(SchemaExtension):
    """Each operation is a unit, like an HTTP request, also on a long-lived WebSocket.

    It resolves its caller anew (a key revoked or a JWT expired stops the next operation) and gives its
    database connection back when done (a socket must not hold one, idle in a transaction, between
    operations).
    """

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, BusContext):
            context.forget()
        try:
            yield
        finally:
            db.session.close()


def principal_for(info: Info, permission: str) -> Principal:
    """The caller, checked for ``permission`` (GraphQL error ``forbidden`` otherwise)."""
    principal = info.context.principal
    try:
        principal.require(permission)
    except ServiceError as exc:
        raise to_graphql_error(exc) from exc
    return principal
