"""Service errors as GraphQL errors: API.md's error codes in ``extensions``.

A resolver that calls a service runs inside ``service_errors()``; a refusal becomes a GraphQL error
whose ``extensions`` carry ``code`` (the REST error code), ``status`` (the REST status) and
``details``, so a client branches on the same codes over REST and GraphQL.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from graphql import GraphQLError

from app.services.errors import ServiceError


def to_graphql_error(exc: ServiceError) -> GraphQLError:
    """The GraphQL form of a service refusal."""
    extensions: dict[str, Any] = {"code": exc.code, "status": exc.status}
    if exc.details:
        extensions["details"] = exc.details
    return GraphQLError(exc.message, extensions=extensions)


@contextmanager
def service_errors() -> Iterator[None]:
    """Re-raise a ServiceError raised inside as a GraphQLError with its code."""
    try:
        yield
    except ServiceError as exc:
        raise to_graphql_error(exc) from exc


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors that are not ours nor GraphQL's: their message may hold internals, so it is masked."""
    original = error.original_error
    return original is not None and not isinstance(original, (GraphQLError, ServiceError))
